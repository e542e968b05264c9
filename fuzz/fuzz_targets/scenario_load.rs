//! The simulator's scenario loader: any text gives a scenario or located diagnostics, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

const SOURCE: &str = "fuzz-scenario.yaml";

fuzz_target!(|data: &[u8]| {
    // Scenario files are read as UTF-8 text; other bytes never reach the parser.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Err(diagnostics) = simulator::scenario::model::parse(SOURCE, text) else {
        return;
    };
    assert!(!diagnostics.is_empty(), "refused without a diagnostic");
    let last_line = yaml_lines(text);
    for d in &diagnostics {
        assert_eq!(d.file, SOURCE);
        assert!(!d.message.is_empty(), "an empty message: {d:?}");
        if let Some(line) = d.line {
            assert!(
                (1..=last_line).contains(&line),
                "line out of the file: {d:?}"
            );
        }
        let _ = d.to_string();
    }
});

/// Lines as YAML counts them: CR LF, a lone CR, LF, and YAML 1.1's NEL, LS and PS each end one.
fn yaml_lines(text: &str) -> usize {
    let breaks = text
        .matches(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        .count();
    breaks - text.matches("\r\n").count() + 1
}
