//! `simulator report merge A.json B.json …`: shard results merged into one report.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReportCommand {
    /// Merge the JSON reports of `replay --shard` runs into one.
    Merge {
        #[arg(required = true)]
        reports: Vec<std::path::PathBuf>,
    },
}

pub async fn run(_args: ReportArgs) -> ExitCode {
    eprintln!("simulator report: not built yet");
    ExitCode::from(3)
}
