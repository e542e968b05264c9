//! Every parser that reads recorded traffic from a file: `simulator replay`'s reader (Gatehouse
//! recording lines, HAR, GoReplay, detected from the content), and the access-log record and
//! recording line as serde reads them. Never a panic; and what the reader accepts,
//! `simulator import` writes as lines the reader accepts again.
#![no_main]

use std::path::Path;

use gateway::record::RequestRecord;
use gateway::record::recording::format::RecordingLine;
use libfuzzer_sys::fuzz_target;
use simulator::replay::read::{self, ReadOptions};

/// The extension is a hint to format detection; the first byte picks one.
const NAMES: [&str; 4] = ["fuzz.jsonl", "fuzz.har", "fuzz.gor", "fuzz-recording"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let path = Path::new(NAMES[usize::from(pick & 3)]);
    let options = ReadOptions {
        skip_bad: pick & 4 != 0,
    };
    if let Ok(recording) = read::parse(path, bytes, &options) {
        let mut lines = Vec::new();
        read::write_lines(&recording.exchanges, &mut lines).expect("writes to memory");
        let again = read::parse(Path::new("imported.jsonl"), &lines, &ReadOptions::default())
            .unwrap_or_else(|e| panic!("an imported recording is refused: {e:?}"));
        assert_eq!(again.exchanges.len(), recording.exchanges.len());
    }
    // Each line as the access-log reader and a recording reader take it: a value read must
    // write back to the same value.
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(record) = serde_json::from_slice::<RequestRecord>(line) {
            let written = serde_json::to_string(&record).expect("a record serializes");
            let back: RequestRecord = serde_json::from_str(&written)
                .unwrap_or_else(|e| panic!("a written record is unreadable: {e}: {written}"));
            assert_eq!(serde_json::to_string(&back).expect("serializes"), written);
        }
        if let Ok(recording_line) = serde_json::from_slice::<RecordingLine>(line) {
            let written = serde_json::to_string(&recording_line).expect("a line serializes");
            let back: RecordingLine = serde_json::from_str(&written)
                .unwrap_or_else(|e| panic!("a written line is unreadable: {e}: {written}"));
            assert_eq!(serde_json::to_string(&back).expect("serializes"), written);
        }
    }
});
