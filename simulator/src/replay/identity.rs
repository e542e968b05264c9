//! Credentials minted afresh for replay time: tokens re-signed for the recorded identity (or the
//! same kind of invalid token), API keys mapped to test keys by key id.

use std::path::PathBuf;

/// The flags of `replay` that decide how credentials are minted.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IdentityArgs {
    /// For HAR and GoReplay recordings: re-sign the JWTs found in `Authorization` as this issuer
    /// (its `name` in the gateway config); without it their headers pass through unchanged.
    #[arg(long, value_name = "ISSUER")]
    pub resign: Option<String>,
    /// For `--target` runs: the key directory of the issuer the target trusts (`simulator
    /// issuer --keys DIR`), whose current key signs the minted tokens.
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// For `--target` runs: a YAML map of API key id to the key to send for it.
    #[arg(long, value_name = "FILE")]
    pub api_keys: Option<PathBuf>,
}
