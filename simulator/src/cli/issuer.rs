//! `simulator issuer`: the fake issuer as its own process, with its keys kept in a directory so
//! they survive restarts and `simulator token` can sign with them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::fake::issuer::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, FakeIssuer, KeyDir};

#[derive(clap::Args, Debug)]
pub struct IssuerArgs {
    /// Where to serve the JWKS (port 0 picks a free one; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The key directory: made if missing, reused if not.
    #[arg(long, value_name = "DIR")]
    pub keys: PathBuf,
    /// Rotate this often: publish a new key and sign with it; the previous key stays published
    /// until the next rotation, so tokens it signed keep verifying that long.
    #[arg(long, value_name = "DURATION", value_parser = super::parse_duration)]
    pub rotate_every: Option<Duration>,
    /// The `iss` that `simulator token` signs (recorded in the key directory).
    #[arg(long, default_value = DEFAULT_ISSUER)]
    pub issuer: String,
    /// The `aud` that `simulator token` signs (recorded in the key directory).
    #[arg(long, default_value = DEFAULT_AUDIENCE)]
    pub audience: String,
}

/// Serves until interrupted; 3 when the keys cannot be loaded or the address cannot be bound.
pub async fn run(args: IssuerArgs) -> ExitCode {
    let started = KeyDir::open(&args.keys)
        .map(|keys| FakeIssuer::start_with_keys(args.listen, keys, &args.issuer, &args.audience));
    let fake = match started {
        Ok(starting) => starting.await,
        Err(e) => Err(e),
    };
    let fake = match fake {
        Ok(f) => f,
        Err(e) => {
            eprintln!("simulator issuer: {e}");
            return ExitCode::from(3);
        }
    };
    // One `name value` per line, so a script can pick out the line it needs.
    println!("address   {}", fake.address);
    println!("jwks_url  {}", fake.jwks_url());
    println!("issuer    {}", fake.issuer);
    println!("audience  {}", fake.audience);
    println!("keys      {}", args.keys.display());
    println!("signing   {}", fake.signing_kid());
    let rotations = async {
        let Some(every) = args.rotate_every.filter(|d| !d.is_zero()) else {
            return std::future::pending::<()>().await;
        };
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await; // the first tick is immediate
        loop {
            ticks.tick().await;
            match fake.rotate_keeping_previous() {
                Ok(kid) => println!(
                    "rotated   signing {kid}; published {}",
                    fake.published_kids().join(", ")
                ),
                Err(e) => eprintln!("simulator issuer: rotation failed: {e}"),
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = rotations => {}
    }
    ExitCode::SUCCESS
}
