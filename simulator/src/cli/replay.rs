//! `simulator replay RECORDING`: the replay's front end (docs/replay.md). The flags are grouped by
//! the module that reads them.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::replay::diff::DiffArgs;
use crate::replay::identity::IdentityArgs;
use crate::replay::report::OutputArgs;
use crate::replay::responses::ResponseDiffArgs;
use crate::replay::schedule::PacingArgs;

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// A Gatehouse recording (`.jsonl`), a HAR file or a GoReplay `.gor` file.
    pub recording: PathBuf,
    /// The gateway config to replay through (in-process, with fake upstreams and issuer).
    #[arg(long, value_name = "GATEWAY.yaml")]
    pub config: Option<PathBuf>,
    /// Run the `gateway` binary as a child process instead of in-process.
    #[arg(long, requires = "config")]
    pub process: bool,
    /// Replay against a running gateway at this URL instead (its admin `/records` stream is read
    /// when `--admin` names it).
    #[arg(long, value_name = "URL", conflicts_with_all = ["config", "process"])]
    pub target: Option<String>,
    /// The running gateway's admin address, for its records (`--target` runs).
    #[arg(long, value_name = "URL", requires = "target")]
    pub admin: Option<String>,
    /// Print, per rate-limit policy, the lab's predicted admitted/refused counts next to the
    /// gateway's decisions.
    #[arg(long, requires = "config")]
    pub predict: bool,
    #[command(flatten)]
    pub pacing: PacingArgs,
    #[command(flatten)]
    pub identity: IdentityArgs,
    #[command(flatten)]
    pub diff: DiffArgs,
    #[command(flatten)]
    pub responses: ResponseDiffArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub async fn run(args: ReplayArgs) -> ExitCode {
    eprintln!(
        "simulator replay {}: not built yet",
        args.recording.display()
    );
    ExitCode::from(3)
}
