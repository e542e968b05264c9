//! `simulator import FILE --to recording.jsonl`: a HAR or GoReplay file (or a Gatehouse
//! recording) converted to Gatehouse recording lines (docs/replay.md). Exit 0 when written, 2 when
//! the input cannot be read, 3 when the output cannot be written.

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::replay::model::{Format, LoadError, Position, Recording};
use crate::replay::read::{self, ReadOptions};

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The HAR (`.har`) or GoReplay (`.gor`) file.
    pub file: PathBuf,
    /// Where to write the recording lines.
    #[arg(long)]
    pub to: PathBuf,
    /// Skip records that cannot be read (counted in the summary) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
}

/// How many warnings of one kind are printed one by one; the rest are counted.
const WARNINGS_SHOWN_PER_KIND: usize = 3;

pub async fn run(args: ImportArgs) -> ExitCode {
    let options = ReadOptions {
        skip_bad: args.skip_bad,
    };
    let loaded = read::detect(&args.file)
        .and_then(|format| read::load(&args.file, &options).map(|r| (format, r)));
    let (format, recording) = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    for skipped in &recording.skipped {
        eprintln!("skipped: {skipped}");
    }
    print_warnings(&args, format, &recording);
    if let Err(error) = write(&args, &recording) {
        eprintln!("error: {}: cannot write: {error}", args.to.display());
        return ExitCode::from(3);
    }
    println!("{}", summary(&args, format, &recording));
    ExitCode::SUCCESS
}

fn write(args: &ImportArgs, recording: &Recording) -> std::io::Result<()> {
    let mut out = BufWriter::new(std::fs::File::create(&args.to)?);
    read::write_lines(&recording.exchanges, &mut out)?;
    out.flush()
}

fn print_warnings(args: &ImportArgs, format: Format, recording: &Recording) {
    let mut shown: BTreeMap<&str, usize> = BTreeMap::new();
    for warning in &recording.warnings {
        let count = shown.entry(warning.kind.as_str()).or_default();
        *count += 1;
        if *count <= WARNINGS_SHOWN_PER_KIND {
            let at = LoadError {
                file: args.file.clone(),
                at: position(format, warning.position),
                message: format!("{} ({})", warning.message, warning.kind),
            };
            eprintln!("warning: {at}");
        }
    }
    for (kind, count) in shown {
        if count > WARNINGS_SHOWN_PER_KIND {
            eprintln!(
                "warning: ... and {} more {kind}",
                count - WARNINGS_SHOWN_PER_KIND
            );
        }
    }
}

fn position(format: Format, n: u64) -> Position {
    match format {
        Format::Gatehouse => Position::Line(n),
        Format::Har => Position::Entry(n),
        Format::Gor => Position::Record(n),
    }
}

/// `imported 42 exchanges from x.har (HAR) to out.jsonl; 3 warnings: 2 content-length-mismatch,
/// 1 http-1.0`, and the count `--skip-bad` skipped.
fn summary(args: &ImportArgs, format: Format, recording: &Recording) -> String {
    let exchanges = recording.exchanges.len();
    let mut line = format!(
        "imported {exchanges} exchange{} from {} ({}) to {}; ",
        plural(exchanges),
        args.file.display(),
        read::format_name(format),
        args.to.display()
    );
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for warning in &recording.warnings {
        *by_kind.entry(warning.kind.as_str()).or_default() += 1;
    }
    if by_kind.is_empty() {
        line.push_str("no warnings");
    } else {
        let mut kinds: Vec<(&str, usize)> = by_kind.into_iter().collect();
        kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let total = recording.warnings.len();
        let listed: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
        line.push_str(&format!(
            "{total} warning{}: {}",
            plural(total),
            listed.join(", ")
        ));
    }
    let skipped = recording.skipped.len();
    if skipped > 0 {
        line.push_str(&format!(
            "; skipped {skipped} bad {}{} (--skip-bad)",
            read::position_unit(format),
            plural(skipped)
        ));
    }
    line
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
