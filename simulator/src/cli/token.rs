//! `simulator token`: prints a token signed with a key directory's current key, for
//! `curl -H "Authorization: Bearer $(simulator token …)"` against a gateway trusting the issuer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use gateway::clock::Clock;

use crate::fake::issuer::{Hostile, IdentitySpec, KeyDir};

#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// The key directory `simulator issuer --keys` serves (made with a fresh key if missing).
    #[arg(long, value_name = "DIR")]
    pub keys: PathBuf,
    /// The `sub` claim.
    #[arg(long)]
    pub sub: String,
    /// A scope (repeat, or separate several with spaces): the `scope` claim.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// The `tier` claim (e.g. free, paid).
    #[arg(long)]
    pub tier: Option<String>,
    /// The `tenant` claim.
    #[arg(long)]
    pub tenant: Option<String>,
    /// A role (repeat for more): the `roles` claim.
    #[arg(long = "role")]
    pub roles: Vec<String>,
    /// The `aud` claim (default: the one the issuer recorded in DIR).
    #[arg(long)]
    pub audience: Option<String>,
    /// The `iss` claim (default: the one the issuer recorded in DIR).
    #[arg(long)]
    pub issuer: Option<String>,
    /// How long the token lives.
    #[arg(long, default_value = "1h", value_parser = super::parse_duration)]
    pub expires_in: Duration,
    /// A token the gateway must refuse: expired, not_yet_valid, wrong_issuer, wrong_audience,
    /// alg_none, unknown_kid or bad_signature.
    #[arg(long, value_name = "KIND", conflicts_with = "expires_in")]
    pub hostile: Option<Hostile>,
}

/// Prints the token; 1 when the key directory cannot be used.
pub fn run(args: TokenArgs) -> ExitCode {
    let who = IdentitySpec {
        subject: args.sub.clone(),
        tenant: args.tenant.clone(),
        scopes: args
            .scopes
            .iter()
            .flat_map(|s| s.split_whitespace())
            .map(str::to_string)
            .collect(),
        roles: args.roles.clone(),
        tier: args.tier.clone(),
    };
    let now_unix = gateway::clock::SystemClock::new().unix_millis() / 1000;
    let minted = KeyDir::open(&args.keys).and_then(|keys| {
        keys.mint(
            &who,
            now_unix,
            args.expires_in,
            args.hostile,
            args.issuer.as_deref(),
            args.audience.as_deref(),
        )
    });
    match minted {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("simulator token: {e}");
            ExitCode::from(1)
        }
    }
}
