//! Two runs of one recording compared request by request: the config review of `--against`.

use std::path::PathBuf;

/// The flags of `replay` that compare two configs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DiffArgs {
    /// Replay the recording through this config too and compare it, request by request, with
    /// the run through `--config`.
    #[arg(long, value_name = "NEW.yaml")]
    pub against: Option<PathBuf>,
    /// The share of changed requests (0 to 1) above which the replay exits 4.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE")]
    pub max_changed: f64,
    /// Write every changed request as JSON here.
    #[arg(long, value_name = "FILE")]
    pub changed: Option<PathBuf>,
}
