//! Where a comparison's arrivals come from: a recording (Gatehouse's JSON-lines request records,
//! the access log or a saved `/records` stream) or a synthetic profile — steady, bursty, a retry
//! storm, many keys — generated deterministically from a seed.
//!
//! A recording's arrival time is each record's `unix_millis` (so arrivals are 1 ms apart at
//! best); its key is the field named by [`KeyField`]. Every record is one arrival of cost 1,
//! whatever the recorded outcome was: the comparison replays what clients *asked*, not what the
//! recorded gateway decided.
//!
//! With a gateway config ([`policy_traces`]), a recording — request records or recording lines,
//! such as `simulator generate` writes — is split by the config's own policies: each policy's
//! arrivals are the requests it selects (route, tier, key), keyed as it keys them.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use gateway::clock::Nanos;
use gateway::ratelimit::{Limiter, Quota, SlidingLog, SlidingLogState};
use gateway::record::RequestRecord;

use super::Trace;

/// Most arrivals a trace may hold (16 bytes each), so a typo in a profile cannot eat the memory.
pub const MAX_ARRIVALS: usize = 20_000_000;

const NANOS_PER_SEC: f64 = 1e9;

/// Which field of a record a limit is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyField {
    /// `identity.api_key_id`, else `identity.subject` (a JWT caller), else the peer's IP — what
    /// the gateway's `api_key` policies count by, with the subject standing in for JWT traffic.
    #[default]
    Auto,
    /// `identity.api_key_id`: the API key that authenticated the request.
    ApiKey,
    Subject,
    Tenant,
    /// The peer's IP address (without the port).
    Peer,
    /// The matched route's name.
    Route,
}

impl KeyField {
    pub const NAMES: &'static str = "auto, api-key, subject, tenant, peer, route";

    /// The record's key; records without the field share the key `-`.
    pub fn of<'r>(&self, record: &'r RequestRecord) -> Cow<'r, str> {
        let identity = record.identity.as_ref();
        let field = match self {
            KeyField::Auto => identity.and_then(|i| i.api_key_id.as_deref()).or_else(|| {
                identity
                    .map(|i| i.subject.as_str())
                    .filter(|s| !s.is_empty())
            }),
            KeyField::ApiKey => identity.and_then(|i| i.api_key_id.as_deref()),
            KeyField::Subject => identity.map(|i| i.subject.as_str()),
            KeyField::Tenant => identity.and_then(|i| i.tenant.as_deref()),
            KeyField::Peer => return Cow::Owned(record.peer.ip().to_string()),
            KeyField::Route => record.route.as_deref(),
        };
        match (field, self) {
            (Some(key), _) => Cow::Borrowed(key),
            (None, KeyField::Auto) => Cow::Owned(record.peer.ip().to_string()),
            (None, _) => Cow::Borrowed("-"),
        }
    }
}

impl FromStr for KeyField {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => KeyField::Auto,
            "api-key" | "api_key" => KeyField::ApiKey,
            "subject" => KeyField::Subject,
            "tenant" => KeyField::Tenant,
            "peer" => KeyField::Peer,
            "route" => KeyField::Route,
            other => {
                return Err(format!(
                    "unknown key field `{other}`, expected one of: {}",
                    Self::NAMES
                ));
            }
        })
    }
}

/// Why traffic could not be had.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrafficError {
    /// A bad profile or missing file: exit 1.
    #[error("{0}")]
    Usage(String),
    /// A recording line that is not a request record: exit 2.
    #[error("{file}:{line}: {message}")]
    Parse {
        file: String,
        line: usize,
        message: String,
    },
    /// The file could not be read: exit 2.
    #[error("{file}: {message}")]
    Read { file: String, message: String },
}

/// A synthetic traffic profile. Rates are requests per second over all keys unless said.
#[derive(Debug, Clone, PartialEq)]
pub enum Profile {
    /// Evenly spaced arrivals at `rate`, keys taken in turn.
    Steady {
        rate: f64,
        duration: Duration,
        keys: u32,
    },
    /// Poisson background at `rate`, and every `every` (from `every / 2`) a burst of `burst`
    /// arrivals at the same instant, on one key taken in turn.
    Bursty {
        rate: f64,
        burst: u32,
        every: Duration,
        duration: Duration,
        keys: u32,
        seed: u64,
    },
    /// `clients` buggy clients (spread over `keys` keys) that send, wait `think` after a success
    /// and retry a refusal after only `retry`. The loop is closed against the exact sliding log,
    /// once, so that every algorithm then sees the same arrivals.
    RetryStorm {
        clients: u32,
        think: Duration,
        retry: Duration,
        duration: Duration,
        keys: u32,
    },
    /// Poisson arrivals at `rate` over `keys` keys of Zipf popularity (exponent `skew`): a few
    /// heavy keys far over their quota and a long tail under it.
    ManyKeys {
        rate: f64,
        keys: u32,
        skew: f64,
        duration: Duration,
        seed: u64,
    },
}

/// A comparison's TRAFFIC argument, read.
#[derive(Debug, Clone, PartialEq)]
pub enum TrafficSpec {
    Recording { path: PathBuf, key: KeyField },
    Profile(Profile),
}

pub const PROFILE_NAMES: &str = "steady, bursty, retry-storm, many-keys";

impl TrafficSpec {
    /// Reads `arg`: an existing file is a recording; otherwise `NAME[:k=v,...]` names a profile,
    /// whose defaults are set relative to `quota` (see docs/compare.md).
    pub fn parse(arg: &str, key: KeyField, quota: Quota) -> Result<Self, TrafficError> {
        let path = Path::new(arg);
        if path.is_file() {
            return Ok(TrafficSpec::Recording {
                path: path.to_path_buf(),
                key,
            });
        }
        let (name, params) = arg.split_once(':').unwrap_or((arg, ""));
        let mut params = Params::parse(name, params)?;
        // The quota's sustained rate, per second, sets the defaults.
        let per_sec = quota.limit as f64 * NANOS_PER_SEC / quota.period() as f64;
        let duration_default = Duration::from_secs(60);
        let profile = match name {
            "steady" => Profile::Steady {
                rate: params.f64("rate", 1.5 * per_sec)?,
                duration: params.duration("duration", duration_default)?,
                keys: params.u32("keys", 1)?,
            },
            "bursty" => Profile::Bursty {
                rate: params.f64("rate", 0.5 * per_sec)?,
                burst: params.u32(
                    "burst",
                    u32::try_from(quota.limit.max(quota.burst).saturating_mul(3))
                        .unwrap_or(u32::MAX),
                )?,
                every: params.duration("every", Duration::from_secs(10))?,
                duration: params.duration("duration", duration_default)?,
                keys: params.u32("keys", 1)?,
                seed: params.u64("seed", 7)?,
            },
            "retry-storm" => Profile::RetryStorm {
                clients: params.u32("clients", 5)?,
                think: params.duration("think", Duration::from_millis(100))?,
                retry: params.duration("retry", Duration::from_millis(1))?,
                duration: params.duration("duration", duration_default)?,
                keys: params.u32("keys", 1)?,
            },
            "many-keys" => {
                let keys = params.u32("keys", 1_000)?;
                Profile::ManyKeys {
                    rate: params.f64("rate", 0.5 * per_sec * f64::from(keys))?,
                    keys,
                    skew: params.f64("skew", 1.0)?,
                    duration: params.duration("duration", duration_default)?,
                    seed: params.u64("seed", 7)?,
                }
            }
            _ => {
                return Err(TrafficError::Usage(format!(
                    "{arg}: no such file, and not a profile (expected a recording, or one of: {PROFILE_NAMES})"
                )));
            }
        };
        params.finish(name)?;
        Ok(TrafficSpec::Profile(profile))
    }

    /// The arrivals; `quota` closes the retry storm's loop.
    pub fn load(&self, quota: Quota) -> Result<Trace, TrafficError> {
        match self {
            TrafficSpec::Recording { path, key } => read_recording(path, *key),
            TrafficSpec::Profile(profile) => profile.generate(quota),
        }
    }
}

/// `k=v` parameters of a profile, each taken once.
struct Params(BTreeMap<String, String>);

impl Params {
    fn parse(name: &str, text: &str) -> Result<Self, TrafficError> {
        let mut map = BTreeMap::new();
        for pair in text.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                TrafficError::Usage(format!("{name}: `{pair}` is not `name=value`"))
            })?;
            map.insert(k.trim().to_owned(), v.trim().to_owned());
        }
        Ok(Self(map))
    }

    fn take<T>(
        &mut self,
        key: &str,
        default: T,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<T, TrafficError> {
        match self.0.remove(key) {
            None => Ok(default),
            Some(v) => parse(&v)
                .ok_or_else(|| TrafficError::Usage(format!("`{key}={v}`: not a valid value"))),
        }
    }

    fn f64(&mut self, key: &str, default: f64) -> Result<f64, TrafficError> {
        self.take(key, default, |v| {
            v.parse().ok().filter(|x: &f64| x.is_finite() && *x >= 0.0)
        })
    }

    fn u32(&mut self, key: &str, default: u32) -> Result<u32, TrafficError> {
        self.take(key, default, |v| v.parse().ok())
    }

    fn u64(&mut self, key: &str, default: u64) -> Result<u64, TrafficError> {
        self.take(key, default, |v| v.parse().ok())
    }

    fn duration(&mut self, key: &str, default: Duration) -> Result<Duration, TrafficError> {
        self.take(key, default, |v| humantime::parse_duration(v).ok())
    }

    fn finish(self, name: &str) -> Result<(), TrafficError> {
        match self.0.keys().next() {
            None => Ok(()),
            Some(k) => Err(TrafficError::Usage(format!(
                "{name}: unknown parameter `{k}` (docs/compare.md lists each profile's)"
            ))),
        }
    }
}

fn nanos(d: Duration) -> Nanos {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn too_many() -> TrafficError {
    TrafficError::Usage(format!(
        "the profile would make more than {MAX_ARRIVALS} arrivals; lower its rate or duration"
    ))
}

/// Exponential gap for a Poisson process at `rate` per second, in ns.
fn exp_gap(rng: &mut fastrand::Rng, rate: f64) -> Nanos {
    let u = 1.0 - rng.f64(); // (0, 1]
    (-u.ln() / rate * NANOS_PER_SEC) as Nanos
}

impl Profile {
    fn describe(&self) -> String {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        match self {
            Profile::Steady {
                rate,
                duration,
                keys,
            } => format!("steady:rate={rate},duration={},keys={keys}", d(duration)),
            Profile::Bursty {
                rate,
                burst,
                every,
                duration,
                keys,
                seed,
            } => format!(
                "bursty:rate={rate},burst={burst},every={},duration={},keys={keys},seed={seed}",
                d(every),
                d(duration)
            ),
            Profile::RetryStorm {
                clients,
                think,
                retry,
                duration,
                keys,
            } => format!(
                "retry-storm:clients={clients},think={},retry={},duration={},keys={keys}",
                d(think),
                d(retry),
                d(duration)
            ),
            Profile::ManyKeys {
                rate,
                keys,
                skew,
                duration,
                seed,
            } => format!(
                "many-keys:rate={rate},keys={keys},skew={skew},duration={},seed={seed}",
                d(duration)
            ),
        }
    }

    /// The profile's arrivals, deterministic for its parameters (and seed); `quota` is what the
    /// retry storm's clients are refused by (the other profiles do not read it).
    pub fn generate(&self, quota: Quota) -> Result<Trace, TrafficError> {
        let source = self.describe();
        let key_names = |n: u32| {
            (0..n.max(1))
                .map(|i| format!("key-{i}"))
                .collect::<Vec<_>>()
        };
        let mut trace = Trace {
            source,
            arrivals: Vec::new(),
            keys: Vec::new(),
        };
        match self {
            Profile::Steady {
                rate,
                duration,
                keys,
            } => {
                trace.keys = key_names(*keys);
                if *rate > 0.0 {
                    let n = (duration.as_secs_f64() * rate).floor();
                    if n > MAX_ARRIVALS as f64 {
                        return Err(too_many());
                    }
                    let gap = NANOS_PER_SEC / rate;
                    let k = trace.keys.len() as u64;
                    trace.arrivals = (0..n as u64)
                        .map(|i| super::Arrival {
                            at: (i as f64 * gap) as Nanos,
                            key: (i % k) as u32,
                            cost: 1,
                        })
                        .collect();
                }
            }
            Profile::Bursty {
                rate,
                burst,
                every,
                duration,
                keys,
                seed,
            } => {
                trace.keys = key_names(*keys);
                let k = trace.keys.len() as u32;
                let end = nanos(*duration);
                let mut rng = fastrand::Rng::with_seed(*seed);
                let mut events = Vec::new();
                if *rate > 0.0 {
                    let mut at = exp_gap(&mut rng, *rate);
                    while at < end {
                        events.push((at, rng.u32(0..k)));
                        at = at.saturating_add(exp_gap(&mut rng, *rate));
                        if events.len() > MAX_ARRIVALS {
                            return Err(too_many());
                        }
                    }
                }
                let every = nanos(*every).max(1);
                let mut at = every / 2;
                let mut turn = 0u32;
                while at < end {
                    for _ in 0..*burst {
                        events.push((at, turn % k));
                    }
                    if events.len() > MAX_ARRIVALS {
                        return Err(too_many());
                    }
                    turn += 1;
                    at = at.saturating_add(every);
                }
                events.sort_by_key(|e| e.0);
                trace.arrivals = events
                    .into_iter()
                    .map(|(at, key)| super::Arrival { at, key, cost: 1 })
                    .collect();
            }
            Profile::RetryStorm {
                clients,
                think,
                retry,
                duration,
                keys,
            } => {
                trace.keys = key_names(*keys);
                let k = trace.keys.len() as u32;
                let end = nanos(*duration);
                let (think, retry) = (nanos(*think), nanos(*retry).max(1));
                let log = SlidingLog::new(quota);
                let mut states = vec![SlidingLogState::default(); k as usize];
                // Clients start spread over the first think time, then follow their own loop.
                let mut next: BinaryHeap<Reverse<(Nanos, u32)>> = (0..*clients)
                    .map(|c| Reverse((think * u64::from(c) / u64::from((*clients).max(1)), c)))
                    .collect();
                while let Some(Reverse((at, client))) = next.pop() {
                    if at >= end {
                        continue;
                    }
                    let key = client % k;
                    trace.arrivals.push(super::Arrival { at, key, cost: 1 });
                    if trace.arrivals.len() > MAX_ARRIVALS {
                        return Err(too_many());
                    }
                    let admitted = log.decide(&mut states[key as usize], at, 1).allowed;
                    let wait = if admitted { think.max(1) } else { retry };
                    next.push(Reverse((at.saturating_add(wait), client)));
                }
            }
            Profile::ManyKeys {
                rate,
                keys,
                skew,
                duration,
                seed,
            } => {
                trace.keys = key_names(*keys);
                let mut rng = fastrand::Rng::with_seed(*seed);
                // Zipf: key i (from 0) has weight 1 / (i + 1)^skew.
                let mut cdf: Vec<f64> = Vec::with_capacity(trace.keys.len());
                let mut total = 0.0;
                for i in 0..trace.keys.len() {
                    total += 1.0 / ((i + 1) as f64).powf(*skew);
                    cdf.push(total);
                }
                let end = nanos(*duration);
                if *rate > 0.0 {
                    if duration.as_secs_f64() * rate > MAX_ARRIVALS as f64 {
                        return Err(too_many());
                    }
                    let mut at = exp_gap(&mut rng, *rate);
                    while at < end {
                        let u = rng.f64() * total;
                        let key = cdf.partition_point(|c| *c <= u).min(cdf.len() - 1);
                        trace.arrivals.push(super::Arrival {
                            at,
                            key: key as u32,
                            cost: 1,
                        });
                        at = at.saturating_add(exp_gap(&mut rng, *rate));
                    }
                }
            }
        }
        // Normalise: time starts at the first arrival, as for a recording.
        let origin = trace.arrivals.first().map_or(0, |a| a.at);
        for a in &mut trace.arrivals {
            a.at -= origin;
        }
        Ok(trace)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Reads a recording: one request record per line; blank lines and the admin stream's
/// `{"lagged": n}` lines are skipped. Any other line that is not a record is an error naming
/// the file and line.
pub fn read_recording(path: &Path, key: KeyField) -> Result<Trace, TrafficError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| TrafficError::Read {
        file: name.clone(),
        message: e.to_string(),
    })?;
    let mut events = Vec::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| TrafficError::Read {
            file: name.clone(),
            message: e.to_string(),
        })?;
        let text = line.trim();
        if text.is_empty() || text.starts_with("{\"lagged\"") {
            continue;
        }
        let record: RequestRecord =
            serde_json::from_str(text).map_err(|e| TrafficError::Parse {
                file: name.clone(),
                line: index + 1,
                message: format!("not a request record: {e}"),
            })?;
        events.push((
            record.unix_millis.saturating_mul(1_000_000),
            key.of(&record).into_owned(),
            1,
        ));
        if events.len() > MAX_ARRIVALS {
            return Err(TrafficError::Usage(format!(
                "{name}: more than {MAX_ARRIVALS} records"
            )));
        }
    }
    Ok(Trace::from_events(name, events))
}

/// Builds a trace from records already in memory (the TUI's live traffic).
pub fn trace_from_records<'a>(
    source: &str,
    records: impl IntoIterator<Item = &'a RequestRecord>,
    key: KeyField,
) -> Trace {
    Trace::from_events(
        source,
        records
            .into_iter()
            .map(|r| (r.unix_millis.saturating_mul(1_000_000), key.of(r), 1)),
    )
}

/// Writes a trace as request records, one JSON line each, so a synthetic profile can be kept as
/// a recording: `unix_millis` from `epoch_millis` plus the arrival time (rounded down to the
/// millisecond, as a real recording is), the key as `identity.subject` and `identity.api_key_id`,
/// and the rest of the record filled as an admitted `GET /api/v1/users/1` from a documentation
/// address (192.0.2.1, RFC 5737).
pub fn write_records(
    trace: &Trace,
    epoch_millis: u64,
    out: &mut impl std::io::Write,
) -> std::io::Result<()> {
    for (i, a) in trace.arrivals.iter().enumerate() {
        let key = &trace.keys[a.key as usize];
        let line = serde_json::json!({
            "request_id": format!("sample-{i:06}"),
            "trace_id": format!("{:032x}", i + 1),
            "unix_millis": epoch_millis + a.at / 1_000_000,
            "peer": "192.0.2.1:40000",
            "method": "GET",
            "path": "/api/v1/users/1",
            "route": "users-v1",
            "route_template": "/api/v1/users/*",
            "status": 200,
            "stopped_at": null,
            "reason": null,
            "stage_ns": {},
            "duration_ns": 0,
            "identity": {"subject": key, "api_key_id": key},
            "bytes_in": 0,
            "bytes_out": 0,
            "completed": true,
        });
        serde_json::to_writer(&mut *out, &line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
