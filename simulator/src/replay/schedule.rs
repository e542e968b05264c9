//! When each exchange is sent: pacing (as recorded, `--speed`, `--rate`, `--max-wait`, `--loop`)
//! and `--shard K/N` partitions by client.

use std::time::Duration;

/// The flags of `replay` that decide when each exchange is sent and which ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PacingArgs {
    /// Send N times faster than recorded (0.5 is half speed).
    #[arg(long, value_name = "N", conflicts_with = "rate")]
    pub speed: Option<f64>,
    /// Send at a fixed R requests per second, in recorded order, nothing dropped.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Cap every idle gap of the recording at this duration (`2s`).
    #[arg(long, value_name = "D", value_parser = crate::cli::parse_duration)]
    pub max_wait: Option<Duration>,
    /// Replay the recording this many times back to back (`--loop` alone: until Ctrl-C).
    #[arg(long = "loop", value_name = "N", num_args = 0..=1, default_missing_value = "0")]
    pub loops: Option<u32>,
    /// Replay only the K-th of N partitions by client (`--shard 2/4`).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Start at this Unix time (seconds), so shards on several hosts start together.
    #[arg(long, value_name = "UNIX_TIME")]
    pub start_at: Option<f64>,
    /// Skip records that cannot be read (counted in the report) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
}
