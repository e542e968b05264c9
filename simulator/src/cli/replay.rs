//! `simulator replay RECORDING`: the replay's front end (docs/replay.md). The flags are grouped by
//! the module that reads them.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A Gatehouse recording (`.jsonl`), a HAR file or a GoReplay `.gor` file.
    pub recording: PathBuf,
    /// The gateway config to replay through (in-process, with fake upstreams and issuer).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub async fn run(args: ReplayArgs) -> ExitCode {
    eprintln!("simulator replay {}: not built yet", args.recording.display());
    ExitCode::from(3)
}
