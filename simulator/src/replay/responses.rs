//! Response diffs against recorded responses, with noise learned from repeated baseline runs.

/// The flags of `replay` that compare responses with the recorded ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ResponseDiffArgs {
    /// Compare each response with the recorded one (status, `--diff-header`s, body hash).
    #[arg(long)]
    pub diff_responses: bool,
    /// A response header compared too (repeatable); `date`, `x-request-id` and the like are never
    /// compared unless named.
    #[arg(long = "diff-header", value_name = "NAME")]
    pub diff_headers: Vec<String>,
    /// A response field never compared (repeatable): `header:NAME` or `body`.
    #[arg(long = "ignore", value_name = "FIELD")]
    pub ignore: Vec<String>,
    /// Replay this many times against the baseline first to learn which fields vary on their own.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub noise_runs: u32,
}
