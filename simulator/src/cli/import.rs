//! `simulator import FILE --to recording.jsonl`: a HAR or GoReplay file converted to Gatehouse
//! recording lines (docs/replay.md).

use std::path::PathBuf;
use std::process::ExitCode;

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

pub async fn run(args: ImportArgs) -> ExitCode {
    eprintln!("simulator import {}: not built yet", args.file.display());
    ExitCode::from(3)
}
