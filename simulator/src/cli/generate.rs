//! `simulator generate --to FILE`: a realistic recording generated deterministically
//! (docs/replay.md, "Fixtures and prediction"). Exit codes: 0 written, 1 usage, 3 the file could
//! not be written.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::replay::generate::{self, GenerateOptions, Kind};

#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Where to write the recording lines.
    #[arg(long)]
    pub to: PathBuf,
    /// How many requests.
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    /// The generator's seed: the same seed gives the same bytes.
    #[arg(long, default_value_t = 11)]
    pub seed: u64,
    /// The day, compressed into this span.
    #[arg(long, default_value = "10m", value_parser = super::parse_duration)]
    pub span: Duration,
}

pub fn run(args: GenerateArgs) -> ExitCode {
    if args.span.is_zero() {
        eprintln!("simulator generate: --span must be above 0");
        return ExitCode::from(1);
    }
    let options = GenerateOptions {
        requests: args.requests,
        seed: args.seed,
        span: args.span,
        ..GenerateOptions::default()
    };
    let generated = generate::generate(&options);
    let mut bytes = Vec::with_capacity(generated.len() * 512);
    let written = generate::write_lines(&generated, &mut bytes)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            if let Some(dir) = args.to.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            std::fs::write(&args.to, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", args.to.display()))
        });
    if let Err(e) = written {
        eprintln!("simulator generate: {e}");
        return ExitCode::from(3);
    }
    let mix = generate::mix(&generated);
    let parts: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{} {}", k.as_str(), mix.get(k).copied().unwrap_or(0)))
        .collect();
    println!(
        "wrote {} requests over {} to {}: {}",
        generated.len(),
        humantime::format_duration(args.span),
        args.to.display(),
        parts.join(", ")
    );
    ExitCode::SUCCESS
}
