//! `simulator report merge A.json B.json …`: shard results merged into one report.

use std::process::ExitCode;

use crate::replay::report::ReplayReport;

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
        /// Write the merged JSON report here.
        #[arg(long, value_name = "FILE")]
        json: Option<std::path::PathBuf>,
    },
}

/// Exit codes: 0 merged, 2 a report that cannot be read or reports that do not belong together,
/// 3 the merged report cannot be written.
pub async fn run(args: ReportArgs) -> ExitCode {
    match args.command {
        ReportCommand::Merge { reports, json } => {
            let mut read = Vec::with_capacity(reports.len());
            for path in &reports {
                match ReplayReport::read(path) {
                    Ok(r) => read.push(r),
                    Err(e) => {
                        eprintln!("simulator report merge: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            let merged = match ReplayReport::merge(&read) {
                Ok(m) => m,
                Err(e) => {
                    eprintln!("simulator report merge: {e}");
                    return ExitCode::from(2);
                }
            };
            print!("{}", merged.render_text());
            if let Some(path) = json
                && let Err(e) = merged.write(&path)
            {
                eprintln!("simulator report merge: {e}");
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
    }
}
