//! The replay report: text, JSON, and merging the reports of `--shard` runs.

use std::path::PathBuf;

/// The flags of `replay` that choose its outputs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write JUnit XML here: one testcase per transition group.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the SVG plots and the HTML report into this folder.
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
    /// Watch the replay in the TUI (docs/tui.md).
    #[arg(long)]
    pub tui: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub quiet: bool,
}
