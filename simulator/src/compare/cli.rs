//! `simulator compare`: flags, their validation, and the outputs — the text table on stdout,
//! `--json`, `--plots` (SVG), `--report` (HTML), `--export-records`, `--tui` — and, with
//! `--config GATEWAY.yaml`, the config's own policies on a recording, one table per policy.
//!
//! Exit codes as the rest of the simulator: 0 ok, 1 usage, 2 a recording could not be parsed
//! (the message names file and line), 3 a runtime failure (an output could not be written, the
//! terminal could not be set up).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use gateway::ratelimit::lease::{LeaseSettings, LeaseSize};
use gateway::ratelimit::{Algorithm, Quota};

use super::{
    CompareParams, KeyField, LeaseParams, TrafficError, TrafficSpec, compare, policies, table,
    traffic,
};

/// The arguments of `simulator compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// A recording (Gatehouse JSON-lines request records) or a profile: steady, bursty,
    /// retry-storm, many-keys, with optional parameters as `NAME:k=v,k=v`.
    pub traffic: String,
    /// Algorithms to compare, comma-separated, or `all`; `lease:<algorithm>` (`lease` alone:
    /// `lease:token-bucket`) adds that algorithm shared by `--lease-nodes` nodes deciding from
    /// local leases (`all` does not include them).
    #[arg(long, default_value = "all")]
    pub algorithms: String,
    /// Lease rows: gateway nodes behind a round-robin balancer, sharing one counter.
    #[arg(long, default_value_t = 3)]
    pub lease_nodes: u32,
    /// Lease rows: units per fetch, or a share of what the quota admits at once (`10%`).
    #[arg(long, default_value = "10%")]
    pub lease_size: String,
    /// Lease rows: how long a slice (or a refusal) is good for.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub lease_sync_interval: Duration,
    /// Sustained limit: requests per period, the same for every algorithm (a whole number
    /// above 0). Read as a number so that 0, -1 or NaN get the lab's own message and exit 2.
    #[arg(long, default_value_t = 10.0, allow_negative_numbers = true)]
    pub rate: f64,
    /// The period of the limit (above 0).
    #[arg(long, default_value = "1s", allow_hyphen_values = true)]
    pub period: String,
    /// Most requests admitted at once by the token bucket and GCRA (default: the rate; a whole
    /// number above 0). The window algorithms admit `rate` per window whatever the burst.
    #[arg(long, allow_negative_numbers = true)]
    pub burst: Option<f64>,
    /// Which record field a recording is limited by: auto, api-key, subject, tenant, peer, route.
    #[arg(long, default_value = "auto")]
    pub key: KeyField,
    /// Width of a time bin in the plots (default: about 120 bins over the trace).
    #[arg(long, value_parser = parse_duration)]
    pub bin: Option<Duration>,
    /// Write the whole comparison as JSON to this file (`-`: stdout, instead of the table).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the SVG plots into this directory (compare-admitted.svg, compare-rejections.svg).
    #[arg(long)]
    pub plots: Option<PathBuf>,
    /// Write one self-contained HTML report (table and plots) to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Write the traffic's arrivals as request records (JSON lines) to this file, to keep a
    /// synthetic profile as a recording.
    #[arg(long)]
    pub export_records: Option<PathBuf>,
    /// Open the TUI's compare view on this traffic (keys change rate, burst and window).
    #[arg(long)]
    pub tui: bool,
    /// Also run each algorithm through the gateway's Redis store against this Redis (e.g.
    /// redis://127.0.0.1:6379) and report the commands per decision measured from its
    /// `INFO commandstats`.
    #[arg(long)]
    pub redis: Option<String>,
    /// Run the rate-limit policies of this gateway config on the recording instead of one
    /// quota: each policy on the requests it selects (route, tier), keyed by its own key, with
    /// its own quota (`--rate`, `--period`, `--burst` and `--key` are then not read).
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// `all`, or names separated by commas (lease rows left out: see [`parse_contenders`]).
pub fn parse_algorithms(text: &str) -> Result<Vec<Algorithm>, String> {
    parse_contenders(text).map(|(algorithms, _)| algorithms)
}

/// The algorithms named by `--algorithms` and, apart, those named as `lease:<algorithm>`.
pub fn parse_contenders(text: &str) -> Result<(Vec<Algorithm>, Vec<Algorithm>), String> {
    let mut out = Vec::new();
    let mut leased = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name == "all" {
            for a in Algorithm::ALL {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
            continue;
        }
        let (lease, name) = match name.strip_prefix("lease") {
            Some("") => (true, "token-bucket"),
            Some(rest) if rest.starts_with(':') => (true, &rest[1..]),
            _ => (false, name),
        };
        let algorithm: Algorithm = name.parse().map_err(|e| format!("{e}"))?;
        if lease && algorithm == Algorithm::SlidingLog {
            return Err("--algorithms lease:sliding-log: the sliding log is the exact limit and takes no lease; lease token-bucket, gcra, fixed-window or sliding-window-counter".into());
        }
        let list = if lease { &mut leased } else { &mut out };
        if !list.contains(&algorithm) {
            list.push(algorithm);
        }
    }
    if out.is_empty() && leased.is_empty() {
        return Err("--algorithms: name at least one algorithm, or `all`".into());
    }
    Ok((out, leased))
}

/// The lease rows for `leased` under `quota`, with the `--lease-*` flags.
pub fn lease_params(
    args: &CompareArgs,
    quota: Quota,
    leased: &[Algorithm],
) -> Result<Vec<LeaseParams>, ParamsError> {
    if leased.is_empty() {
        return Ok(Vec::new());
    }
    if args.lease_nodes == 0 {
        return Err(ParamsError::Impossible(
            "--lease-nodes 0: lease at least one node".into(),
        ));
    }
    let size = LeaseSize::parse(&args.lease_size).ok_or_else(|| {
        ParamsError::Impossible(format!(
            "--lease-size {}: a number of units (`20`) or a share from `1%` to `100%`",
            args.lease_size
        ))
    })?;
    let sync = u64::try_from(args.lease_sync_interval.as_nanos()).unwrap_or(u64::MAX);
    if sync == 0 {
        return Err(ParamsError::Impossible(
            "--lease-sync-interval: must be above 0".into(),
        ));
    }
    leased
        .iter()
        .map(|&algorithm| {
            let capacity = match algorithm {
                Algorithm::TokenBucket | Algorithm::Gcra => quota.burst,
                _ => quota.limit,
            };
            let units = size.units(capacity);
            if units > capacity {
                return Err(ParamsError::Impossible(format!(
                    "--lease-size {}: more than {algorithm} admits at once ({capacity})",
                    args.lease_size
                )));
            }
            Ok(LeaseParams {
                algorithm,
                nodes: args.lease_nodes,
                settings: LeaseSettings {
                    size: units,
                    sync_interval: sync,
                },
            })
        })
        .collect()
}

/// Why the flags cannot be compared: a usage slip (exit 1) or a quota no limiter can have
/// (exit 2, as a recording that cannot be parsed: the input is well-formed but meaningless).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParamsError {
    Usage(String),
    Impossible(String),
}

impl ParamsError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ParamsError::Usage(_) => 1,
            ParamsError::Impossible(_) => 2,
        }
    }
}

impl std::fmt::Display for ParamsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamsError::Usage(m) | ParamsError::Impossible(m) => f.write_str(m),
        }
    }
}

/// A count of requests from a flag: a whole number of at least 1.
fn whole_count(flag: &str, value: f64) -> Result<u64, ParamsError> {
    if value.is_finite() && value >= 1.0 && value.fract() == 0.0 && value <= 1e15 {
        return Ok(value as u64);
    }
    let hint = if value.is_finite() && value > 0.0 && value < 1.0 {
        " (for less than one request per period, lengthen --period)"
    } else {
        ""
    };
    Err(ParamsError::Impossible(format!(
        "{flag} {value}: must be a whole number of requests, at least 1{hint}"
    )))
}

/// The quota and algorithms the flags ask for.
pub fn params(args: &CompareArgs) -> Result<CompareParams, ParamsError> {
    let period = parse_duration(&args.period)
        .map_err(|e| ParamsError::Impossible(format!("--period {}: {e}", args.period)))?;
    let period = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
    if period == 0 {
        return Err(ParamsError::Impossible(format!(
            "--period {}: must be above 0",
            args.period
        )));
    }
    let rate = whole_count("--rate", args.rate)?;
    let burst = match args.burst {
        Some(b) => whole_count("--burst", b)?,
        None => rate,
    };
    let quota = Quota::new(rate, period).with_burst(burst);
    let (algorithms, leased) = parse_contenders(&args.algorithms).map_err(ParamsError::Usage)?;
    let mut params = CompareParams::new(quota, algorithms);
    params.leases = lease_params(args, quota, &leased)?;
    if let Some(bin) = args.bin {
        params.bin_nanos = u64::try_from(bin.as_nanos()).unwrap_or(u64::MAX).max(1);
    }
    Ok(params)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// One policy's comparison, as `--config --json` writes it.
#[derive(Debug, serde::Serialize)]
pub struct PolicyComparison {
    pub policy: String,
    /// The algorithm the config gives the policy (its row is marked in the table).
    pub algorithm: String,
    pub key: String,
    pub comparison: super::Comparison,
}

/// What `--config --json` writes.
#[derive(Debug, serde::Serialize)]
pub struct ConfigComparison {
    pub config: String,
    pub recording: String,
    pub tally: policies::ConfigTally,
    pub policies: Vec<PolicyComparison>,
}

/// The key of a policy as written in the config (`subject`, `tenant+route`).
fn key_text(policy: &gateway::config::ratelimit::CompiledPolicy) -> String {
    use gateway::config::ratelimit::KeyPart;
    let parts: Vec<String> = policy
        .key
        .iter()
        .map(|k| match k {
            KeyPart::ApiKey => "api_key".to_owned(),
            KeyPart::Subject => "subject".to_owned(),
            KeyPart::Tenant => "tenant".to_owned(),
            KeyPart::ClientIp => "client_ip".to_owned(),
            KeyPart::Route => "route".to_owned(),
            KeyPart::Header(h) => format!("header:{h}"),
        })
        .collect();
    parts.join("+")
}

/// `simulator compare RECORDING --config GATEWAY.yaml`: every policy of the config on the
/// requests it selects, each algorithm run with that policy's quota.
fn run_config(args: &CompareArgs, config: &Path) -> ExitCode {
    for (flag, given) in [
        ("--tui", args.tui),
        ("--plots", args.plots.is_some()),
        ("--report", args.report.is_some()),
        ("--export-records", args.export_records.is_some()),
        ("--redis", args.redis.is_some()),
    ] {
        if given {
            eprintln!("simulator compare: {flag} does not go with --config");
            return ExitCode::from(1);
        }
    }
    let path = Path::new(&args.traffic);
    if !path.is_file() {
        eprintln!(
            "simulator compare: {}: no such file (--config runs a recording, not a profile)",
            args.traffic
        );
        return ExitCode::from(1);
    }
    let runtime = match gateway::config::load_file(config) {
        Ok(r) => r,
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            return ExitCode::from(2);
        }
    };
    let (algorithms, leased) = match parse_contenders(&args.algorithms) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("simulator compare: {e}");
            return ExitCode::from(1);
        }
    };
    let (traces, tally) = match policies::policy_traces(path, &runtime) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("simulator compare: {e}");
            return ExitCode::from(match e {
                TrafficError::Usage(_) => 1,
                TrafficError::Parse { .. } | TrafficError::Read { .. } => 2,
            });
        }
    };
    let mut policies: Vec<PolicyComparison> = Vec::with_capacity(traces.len());
    for t in &traces {
        // The policy's own algorithm always runs, first when it was not asked for.
        let mut own = algorithms.clone();
        if !own.contains(&t.policy.algorithm) {
            own.insert(0, t.policy.algorithm);
        }
        let mut params = CompareParams::new(t.policy.quota, own);
        params.leases = match lease_params(args, t.policy.quota, &leased) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("simulator compare: policy {}: {e}", t.policy.id);
                return ExitCode::from(e.exit_code());
            }
        };
        if let Some(bin) = args.bin {
            params.bin_nanos = u64::try_from(bin.as_nanos()).unwrap_or(u64::MAX).max(1);
        }
        policies.push(PolicyComparison {
            policy: t.policy.id.to_string(),
            algorithm: t.policy.algorithm.as_str().to_owned(),
            key: key_text(&t.policy),
            comparison: compare(&t.trace, &params),
        });
    }
    let result = ConfigComparison {
        config: config.display().to_string(),
        recording: args.traffic.clone(),
        tally,
        policies,
    };
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let text = if json_to_stdout {
        match serde_json::to_string_pretty(&result) {
            Ok(text) => text + "\n",
            Err(e) => {
                eprintln!("simulator compare: cannot write JSON: {e}");
                return ExitCode::from(3);
            }
        }
    } else {
        render_config(&result)
    };
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    if let Some(path) = args.json.as_deref().filter(|_| !json_to_stdout) {
        let written = serde_json::to_vec_pretty(&result)
            .map_err(|e| format!("cannot write JSON: {e}"))
            .and_then(|bytes| write(path, &bytes));
        if let Err(e) = written {
            eprintln!("simulator compare: {e}");
            return ExitCode::from(3);
        }
    }
    ExitCode::SUCCESS
}

/// The console form of `--config`: a line for the recording, then per policy its own heading
/// and the algorithms' table (the config's algorithm marked `*`).
pub fn render_config(result: &ConfigComparison) -> String {
    let mut out = format!(
        "config: {} — {} requests in {}, {} stopped before ratelimit (authn, authz)\n",
        result.config, result.tally.requests, result.recording, result.tally.stopped_before
    );
    for p in &result.policies {
        out.push_str(&format!(
            "\npolicy {} ({}, key {}): {} of its requests\n",
            p.policy, p.algorithm, p.key, p.comparison.trace.arrivals
        ));
        let table = table::render(&p.comparison);
        for line in table.lines() {
            if line.is_empty() {
                out.push('\n');
                continue;
            }
            let own = line.trim_start().starts_with(&p.algorithm)
                && line.trim_start()[p.algorithm.len()..].starts_with(' ');
            out.push_str(if own { "* " } else { "  " });
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Runs `simulator compare`.
pub async fn run(args: CompareArgs) -> ExitCode {
    if let Some(config) = args.config.clone() {
        return run_config(&args, &config);
    }
    let params = match params(&args) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("simulator compare: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let trace = match TrafficSpec::parse(&args.traffic, args.key, params.quota)
        .and_then(|spec| spec.load(params.quota))
    {
        Ok(t) => t,
        Err(e) => {
            eprintln!("simulator compare: {e}");
            return ExitCode::from(match e {
                TrafficError::Usage(_) => 1,
                TrafficError::Parse { .. } | TrafficError::Read { .. } => 2,
            });
        }
    };
    if let Some(path) = &args.export_records {
        let mut out = Vec::new();
        // A fixed epoch (2023-11-14T22:13:20Z) keeps exported recordings reproducible.
        let written = traffic::write_records(&trace, 1_700_000_000_000, &mut out)
            .map_err(|e| e.to_string())
            .and_then(|()| write(path, &out));
        if let Err(e) = written {
            eprintln!("simulator compare: {e}");
            return ExitCode::from(3);
        }
    }
    if args.tui {
        return match crate::tui::term::run_compare(trace, params).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("simulator compare --tui: {e:#}");
                ExitCode::from(3)
            }
        };
    }
    let mut comparison = compare(&trace, &params);
    if let Some(url) = &args.redis {
        match super::redis::measure(url, &trace, params.quota, &params.algorithms).await {
            Ok(measured) => comparison.redis_measured = Some(measured),
            Err(e) => {
                eprintln!("simulator compare: {e}");
                return ExitCode::from(3);
            }
        }
    }
    let json_to_stdout = args.json.as_deref() == Some(Path::new("-"));
    let text = if json_to_stdout {
        match serde_json::to_string_pretty(&comparison) {
            Ok(text) => text + "\n",
            Err(e) => {
                eprintln!("simulator compare: cannot write JSON: {e}");
                return ExitCode::from(3);
            }
        }
    } else {
        table::render(&comparison)
    };
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    let mut failed = Vec::new();
    if let Some(path) = args.json.as_deref().filter(|_| !json_to_stdout) {
        match serde_json::to_vec_pretty(&comparison) {
            Ok(bytes) => failed.extend(write(path, &bytes).err()),
            Err(e) => failed.push(format!("cannot write JSON: {e}")),
        }
    }
    if let Some(dir) = &args.plots {
        let plots = [
            (
                "compare-admitted.svg",
                crate::report::plot::admitted_over_time(&comparison),
            ),
            (
                "compare-rejections.svg",
                crate::report::plot::rejections_per_key(&comparison),
            ),
        ];
        for (name, svg) in plots {
            match svg {
                Ok(svg) => failed.extend(write(&dir.join(name), svg.as_bytes()).err()),
                Err(e) => failed.push(e.to_string()),
            }
        }
    }
    if let Some(path) = &args.report {
        match crate::report::html::render(&comparison) {
            Ok(page) => failed.extend(write(path, page.as_bytes()).err()),
            Err(e) => failed.push(e.to_string()),
        }
    }
    for e in &failed {
        eprintln!("simulator compare: {e}");
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}
