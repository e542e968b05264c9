//! What a replay works on, whatever the file it came from: an [`Exchange`] per recorded request
//! (a Gatehouse recording line, a HAR entry or a GoReplay record), and what one run made of it,
//! an [`ExchangeOutcome`]. Every other replay module speaks these types.

use std::fmt;
use std::path::PathBuf;

use gateway::record::RequestRecord;
use gateway::record::recording::format::{CredentialRef, RecordedResponse, RecordedTls};
use gateway::vocab::LimitDecision;
use serde::{Deserialize, Serialize};

/// The formats a replay reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Gatehouse's recording lines (`recording:` in the gateway config; `simulator import` output).
    Gatehouse,
    /// HAR 1.2.
    Har,
    /// GoReplay's `.gor` files.
    Gor,
}

/// One recorded request, ready to send again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exchange {
    /// Where it was in its file: 1-based line (Gatehouse), entry (HAR) or record (GoReplay).
    pub position: u64,
    /// The recorded request id, or one made from the source's own id; unique in a recording.
    pub id: String,
    /// When it was sent, nanoseconds since the Unix epoch.
    pub unix_nanos: u64,
    /// Whose traffic this is: the partitioning key of `--shard` and the unit whose order a
    /// replay keeps (a credential's subject or key id, else the client address, else `-`).
    pub client: String,
    /// Requests with the same connection key were sent on one connection, in this order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    pub method: String,
    /// The request-target as sent, query included.
    pub target: String,
    /// `HTTP/1.0`, `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    /// Header fields in order, names lowercased, without HTTP/2 pseudo-headers (`:authority`
    /// becomes `host`).
    pub headers: Vec<(String, String)>,
    /// The body as recorded (a prefix when `body_truncated`), base64 in JSON.
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Vec::is_empty")]
    pub body: Vec<u8>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RecordedTls>,
    /// The redacted credentials to mint again (Gatehouse recordings only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<CredentialRef>,
    /// What the recording gateway decided (Gatehouse recordings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<RequestRecord>,
    /// The response the client got, when the source kept it (HAR, GoReplay type 2, a Gatehouse
    /// recording with `responses: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RecordedResponse>,
}

/// A recording read into memory: its exchanges in send order, and what had to be forgiven.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub exchanges: Vec<Exchange>,
    /// Problems that did not stop the import (a Content-Length that disagrees with the bytes, a
    /// leading blank line, an HTTP/1.0 request), counted by kind.
    pub warnings: Vec<Warning>,
    /// Records `--skip-bad` skipped; empty without it (a bad record is then an error).
    pub skipped: Vec<LoadError>,
}

/// Something forgiven while reading a file: where, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub position: u64,
    /// A stable token counting warnings by kind (`content-length-mismatch`, `blank-line`, ...).
    pub kind: String,
    pub message: String,
}

/// Where in a file a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "unit", content = "n")]
pub enum Position {
    Line(u64),
    Entry(u64),
    Record(u64),
    /// The file as a whole (unreadable, not a format we know).
    File,
}

/// A file, or one record of it, that cannot be read: names the file, the place and what was
/// wrong. Exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadError {
    pub file: PathBuf,
    pub at: Position,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match self.at {
            Position::Line(n) => write!(f, "{file}:{n}: {}", self.message),
            Position::Entry(n) => write!(f, "{file}: entry {n}: {}", self.message),
            Position::Record(n) => write!(f, "{file}: record {n}: {}", self.message),
            Position::File => write!(f, "{file}: {}", self.message),
        }
    }
}

impl std::error::Error for LoadError {}

/// What one run made of one exchange: the gateway's decision (from its record, when the replay
/// could see the records) and the response the replayer got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExchangeOutcome {
    /// The id the request was sent with (the exchange's id; `~N` appended on the N-th `--loop`).
    pub id: String,
    /// The exchange's position in its recording.
    pub position: u64,
    pub method: String,
    /// The path as sent, without the query.
    pub path: String,
    /// The status the replayer got; absent when the request failed without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why no status came back (connect refused, reset, timed out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The gateway's decision, from its record; absent against a `--target` without a record
    /// stream.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The response, for response diffs (`--target` runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<RecordedResponse>,
    /// When it was due, nanoseconds from the run's start.
    pub scheduled_ns: u64,
    /// When it left, nanoseconds from the run's start.
    pub sent_ns: u64,
    /// From the scheduled send time to the response's end: the coordinated-omission-corrected
    /// latency.
    pub latency_ns: u64,
}

/// The fields of a record a config review compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_path: Option<String>,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitDecision>,
}

impl Decision {
    pub fn of(record: &RequestRecord) -> Self {
        Decision {
            route: record.route.as_deref().map(str::to_owned),
            upstream: record.upstream.as_deref().map(str::to_owned),
            upstream_path: record.upstream_path.clone(),
            status: record.status,
            stopped_at: record.stopped_at.map(|s| s.as_str().to_owned()),
            reason: record.reason.as_deref().map(str::to_owned),
            limit: record.limit.clone(),
        }
    }
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

impl ExchangeOutcome {
    /// What the recording gateway made of an exchange, as an outcome: the baseline a replay of a
    /// Gatehouse recording is compared with. `None` when the source holds no gateway record.
    pub fn recorded(exchange: &Exchange) -> Option<ExchangeOutcome> {
        let record = exchange.recorded.as_ref()?;
        Some(ExchangeOutcome {
            id: exchange.id.clone(),
            position: exchange.position,
            method: exchange.method.clone(),
            path: exchange
                .target
                .split_once('?')
                .map_or(exchange.target.as_str(), |(path, _)| path)
                .to_owned(),
            status: Some(record.status),
            error: None,
            decision: Some(Decision::of(record)),
            response: exchange.response.clone(),
            scheduled_ns: 0,
            sent_ns: 0,
            latency_ns: record.duration_ns,
        })
    }
}

/// Which request an example or a report line is about: enough to find it in the recording.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestRef {
    pub id: String,
    pub method: String,
    pub path: String,
}

impl From<&ExchangeOutcome> for RequestRef {
    fn from(outcome: &ExchangeOutcome) -> Self {
        RequestRef {
            id: outcome.id.clone(),
            method: outcome.method.clone(),
            path: outcome.path.clone(),
        }
    }
}

impl fmt::Display for RequestRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}  {} {}", self.id, self.method, self.path)
    }
}

/// Two runs' outcomes matched by request id: the pairs in the baseline's order, then what only
/// one run has. An id sent twice in a run (it should not be) pairs its n-th occurrence with the
/// other run's n-th.
#[derive(Debug, Default)]
pub struct Pairing<'a> {
    pub pairs: Vec<(&'a ExchangeOutcome, &'a ExchangeOutcome)>,
    pub only_baseline: Vec<&'a ExchangeOutcome>,
    pub only_candidate: Vec<&'a ExchangeOutcome>,
}

impl<'a> Pairing<'a> {
    pub fn by_id(baseline: &'a [ExchangeOutcome], candidate: &'a [ExchangeOutcome]) -> Self {
        let mut by_id: std::collections::HashMap<&str, std::collections::VecDeque<usize>> =
            std::collections::HashMap::with_capacity(candidate.len());
        for (i, outcome) in candidate.iter().enumerate() {
            by_id.entry(outcome.id.as_str()).or_default().push_back(i);
        }
        let mut taken = vec![false; candidate.len()];
        let mut pairing = Pairing::default();
        for before in baseline {
            match by_id
                .get_mut(before.id.as_str())
                .and_then(std::collections::VecDeque::pop_front)
            {
                Some(i) => {
                    taken[i] = true;
                    pairing.pairs.push((before, &candidate[i]));
                }
                None => pairing.only_baseline.push(before),
            }
        }
        pairing.only_candidate = candidate
            .iter()
            .zip(&taken)
            .filter(|(_, taken)| !**taken)
            .map(|(outcome, _)| outcome)
            .collect();
        pairing
    }
}
