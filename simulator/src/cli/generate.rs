//! `simulator generate --to FILE`: a realistic recording generated deterministically
//! (docs/replay.md).

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Where to write the recording lines.
    #[arg(long)]
    pub to: PathBuf,
}

pub fn run(args: GenerateArgs) -> ExitCode {
    eprintln!("simulator generate {}: not built yet", args.to.display());
    ExitCode::from(3)
}
