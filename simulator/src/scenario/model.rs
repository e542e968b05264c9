//! Scenario files as written (YAML): the gateway config under test, the fakes it needs, and the
//! steps — single requests or load phases — each with what must be true afterwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::config::yaml::{self, At, Diagnostic, Finding, LineIndex, schema};
use gateway::vocab::{GrpcCode, StageId};
use serde::Deserialize;

use crate::fake::issuer::{Hostile, IdentitySpec, IssuerMode};
use crate::fake::upstream::{Behaviour, Protocol};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub gateway: GatewayUnderTest,
    /// Fake behaviour per upstream named in the gateway config. Upstreams not listed get one
    /// instance answering 200 at once.
    #[serde(default)]
    pub upstreams: BTreeMap<String, FakeUpstream>,
    /// A fake issuer standing in for one of the config's `auth.issuers` (its `jwks_url` is
    /// pointed at the fake; tokens carry that issuer's `issuer` and first audience).
    #[serde(default)]
    pub issuer: Option<FakeIssuerSpec>,
    /// Named identities requests can act as (`as: alice`).
    #[serde(default)]
    pub identities: BTreeMap<String, IdentitySpec>,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeIssuerSpec {
    /// The config issuer's `name`; default: the first issuer.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub timeline: Vec<IssuerChange>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerChange {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// `publish` a new key, `sign` with the newest, `retire` the others, or all three `abruptly`.
    #[serde(default)]
    pub rotate: Option<RotateStep>,
    /// `up`, `down`, `hang` or `garbage`.
    #[serde(default)]
    pub mode: Option<IssuerMode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotateStep {
    Publish,
    Sign,
    Retire,
    Abruptly,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayUnderTest {
    /// Path of the gateway config, relative to the scenario file.
    pub config: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FakeUpstream {
    #[serde(default = "one")]
    pub instances: usize,
    /// How the fakes speak: `http1`, `h2c`, `h2` or `auto`, as the gateway's
    /// `upstreams.NAME.protocol`. Default: what the gateway config says for this upstream, so
    /// the two agree unless a scenario sets them apart on purpose.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    #[serde(default)]
    pub behaviour: Behaviour,
    /// Behaviour changes along the scenario: at `at` after the scenario started, every instance
    /// (or the one at `instance`) switches to `behaviour`.
    #[serde(default)]
    pub timeline: Vec<TimelineChange>,
}

fn one() -> usize {
    1
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineChange {
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    #[serde(default)]
    pub instance: Option<usize>,
    pub behaviour: Behaviour,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub name: String,
    /// One request ...
    #[serde(default)]
    pub request: Option<RequestSpec>,
    /// ... or a load phase.
    #[serde(default)]
    pub load: Option<LoadSpec>,
    /// Wait before the step runs (lets a timeline change or a breaker cool down).
    #[serde(default, with = "humantime_serde")]
    pub after: Option<Duration>,
    #[serde(default)]
    pub expect: Expect,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// Default: `GET`, or `POST` for a gRPC call.
    #[serde(default)]
    pub method: Option<String>,
    /// With `grpc`, `/package.Service/Method`.
    pub path: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// Send `Authorization: Bearer <token>` minted by the fake issuer for this identity.
    #[serde(default, rename = "as")]
    pub as_identity: Option<String>,
    /// Make that token hostile: `expired`, `not_yet_valid`, `wrong_issuer`, `wrong_audience`,
    /// `alg_none`, `unknown_kid`, `bad_signature`.
    #[serde(default)]
    pub hostile: Option<Hostile>,
    /// Send over HTTP/2 (h2c, prior knowledge). Default: with `grpc`, yes.
    #[serde(default)]
    pub http2: Option<bool>,
    /// Send as a gRPC call: `content-type: application/grpc`, `te: trailers`, the messages
    /// length-prefixed in the body.
    #[serde(default)]
    pub grpc: Option<GrpcCall>,
}

impl RequestSpec {
    pub fn method(&self) -> &str {
        match (&self.method, &self.grpc) {
            (Some(method), _) => method,
            (None, Some(_)) => "POST",
            (None, None) => "GET",
        }
    }

    pub fn http2(&self) -> bool {
        self.http2.unwrap_or(self.grpc.is_some())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcCall {
    /// The request's messages, each text sent as one message's bytes. Default: one empty
    /// message, a unary call's request.
    #[serde(default = "one_empty_message")]
    pub messages: Vec<String>,
    /// Sent as `grpc-timeout`: the call's deadline.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

fn one_empty_message() -> Vec<String> {
    vec![String::new()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadSpec {
    /// Written as a one-key map: `{steady: {rate: 100, duration: 2s}}`.
    #[serde(with = "serde_yaml_ng::with::singleton_map")]
    pub profile: crate::fake::client::Profile,
    pub request: RequestSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    // Single requests.
    #[serde(default)]
    pub status: Option<u16>,
    /// `none` when the upstream must have answered; a stage id when that stage must have stopped it.
    #[serde(default)]
    pub stopped_at: Option<StoppedAt>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Headers the client must see (`"*"` = present with any value).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers the client must not see.
    #[serde(default)]
    pub absent_headers: Vec<String>,
    /// What the upstream must have received for this request.
    #[serde(default)]
    pub upstream: Option<ExpectUpstream>,
    /// `grpc-status` of the answer: from its trailers, or from its head when it has none (a
    /// trailers-only answer).
    #[serde(default)]
    pub grpc_status: Option<GrpcStatus>,
    /// `grpc-message` of the answer, percent-decoded.
    #[serde(default)]
    pub grpc_message: Option<String>,
    /// Trailers the client must see (`"*"` = present with any value).
    #[serde(default)]
    pub trailers: BTreeMap<String, String>,
    /// Trailers the client must not see.
    #[serde(default)]
    pub absent_trailers: Vec<String>,
    /// The answer's gRPC messages: how many, and when they arrived.
    #[serde(default)]
    pub messages: Option<ExpectMessages>,
    // Load phases.
    /// Count of requests per status (`"200"`, `"4xx"`) over the phase.
    #[serde(default)]
    pub status_counts: BTreeMap<String, CountRule>,
    /// Count of requests per stopping stage (`none` = reached the upstream and came back).
    #[serde(default)]
    pub stopped_counts: BTreeMap<String, CountRule>,
    /// Latency quantiles over the phase, measured from each request's scheduled send time.
    #[serde(default)]
    pub latency: BTreeMap<String, LatencyRule>,
    /// Requests each fake upstream received during the step.
    #[serde(default)]
    pub upstream_hits: BTreeMap<String, CountRule>,
    /// JWKS fetches the fake issuer served during the step.
    #[serde(default)]
    pub issuer_fetches: Option<CountRule>,
}

impl Expect {
    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.stopped_at.is_none()
            && self.reason.is_none()
            && self.headers.is_empty()
            && self.absent_headers.is_empty()
            && self.upstream.is_none()
            && self.grpc_status.is_none()
            && self.grpc_message.is_none()
            && self.trailers.is_empty()
            && self.absent_trailers.is_empty()
            && self.messages.is_none()
            && self.status_counts.is_empty()
            && self.stopped_counts.is_empty()
            && self.latency.is_empty()
            && self.upstream_hits.is_empty()
            && self.issuer_fetches.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoppedAt {
    None,
    Stage(StageId),
}

impl<'de> Deserialize<'de> for StoppedAt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text == "none" {
            return Ok(StoppedAt::None);
        }
        StageId::parse(&text).map(StoppedAt::Stage).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown stage `{text}`: expected `none` or one of tls, authn, authz, ratelimit, route, mutate_request, forward, mutate_response"
            ))
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectUpstream {
    /// `none` when the request must not have reached any upstream.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default)]
    pub absent_headers: Vec<String>,
    /// How the gateway spoke to the upstream: `"1.1"` or `"2"`.
    #[serde(default)]
    pub version: Option<HttpVersion>,
    /// gRPC messages in the body the upstream received.
    #[serde(default)]
    pub messages: Option<u64>,
}

/// A gRPC status code as a scenario writes it: its number (`4`) or its name
/// (`DEADLINE_EXCEEDED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcStatus(pub GrpcCode);

impl<'de> Deserialize<'de> for GrpcStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(i64),
            Name(String),
        }
        let known = || GrpcCode::ALL.map(GrpcCode::name).join(", ");
        match Written::deserialize(d)? {
            Written::Number(n) => u16::try_from(n)
                .ok()
                .and_then(GrpcCode::from_u16)
                .map(GrpcStatus)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "{n} is not a gRPC status code: expected 0 to 16 or a name ({})",
                        known()
                    ))
                }),
            Written::Name(name) => GrpcCode::ALL
                .into_iter()
                .find(|c| c.name() == name)
                .map(GrpcStatus)
                .ok_or_else(|| {
                    serde::de::Error::custom(format!(
                        "unknown gRPC status `{name}`: expected 0 to 16 or a name ({})",
                        known()
                    ))
                }),
        }
    }
}

/// An HTTP version as written in a scenario: `"1.1"` or `"2"` (quoted or not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersion {
    Http11,
    Http2,
}

impl HttpVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersion::Http11 => "1.1",
            HttpVersion::Http2 => "2",
        }
    }

    /// How a received request's version is written: `1.1`, `2`, or hyper's name for others.
    pub fn show(version: http::Version) -> String {
        match version {
            http::Version::HTTP_11 => "1.1".into(),
            http::Version::HTTP_2 => "2".into(),
            other => format!("{other:?}"),
        }
    }
}

impl<'de> Deserialize<'de> for HttpVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Text(String),
            Number(f64),
        }
        let text = match Written::deserialize(d)? {
            Written::Text(t) => t,
            Written::Number(n) => n.to_string(),
        };
        match text.as_str() {
            "1.1" => Ok(HttpVersion::Http11),
            "2" | "2.0" => Ok(HttpVersion::Http2),
            _ => Err(serde::de::Error::custom(format!(
                "unknown HTTP version `{text}`: expected \"1.1\" or \"2\""
            ))),
        }
    }
}

/// What the answer's gRPC messages must show. Times count from sending the request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectMessages {
    /// How many arrived: `3` or `{min: 1, max: 9}`.
    #[serde(default)]
    pub count: Option<CountRule>,
    /// The first one arrived this soon.
    #[serde(default, with = "humantime_serde")]
    pub first_within: Option<Duration>,
    /// Every pause between one message and the next: `{min: 80ms}` shows they were passed on
    /// as they came, not held until the stream ended.
    #[serde(default)]
    pub gap: Option<DurationRange>,
}

/// `{min: 80ms, max: 1s}`, either bound optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DurationRange {
    #[serde(default, with = "humantime_serde")]
    pub min: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub max: Option<Duration>,
}

/// `5`, `{min: 1, max: 9}`, or `{ratio: [0.4, 0.6]}` (a share of the phase's requests).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum CountRule {
    Exact(u64),
    Range {
        #[serde(default)]
        min: Option<u64>,
        #[serde(default)]
        max: Option<u64>,
    },
    Ratio {
        ratio: [f64; 2],
    },
}

/// `{max: 50ms}` for a quantile such as `p99`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyRule {
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

/// One problem in a scenario file, with where: the gateway's YAML diagnostic, so a scenario and
/// the config it names report problems alike (`file:line:column: field: message`).
pub type ScenarioError = Diagnostic;

/// Reads and parses the scenario at `path`; every problem the loader can find at once.
pub fn load(path: &Path) -> Result<Scenario, Vec<ScenarioError>> {
    let text = yaml::read(path).map_err(|d| vec![d])?;
    parse(&path.display().to_string(), &text)
}

/// Parses a scenario in two passes, as the gateway's config check does: YAML syntax first (one
/// error, where the parser stopped), then the schema with every problem at once — each unknown
/// field with a "did you mean" — placed by line and column.
pub fn parse(file: &str, text: &str) -> Result<Scenario, Vec<ScenarioError>> {
    let index = LineIndex::build(text);
    let value = syntax(file, text, &index)?;
    let mut findings = Vec::new();
    if value.is_null() {
        findings.push(Finding::new(
            "",
            "the file is empty: a scenario needs `name`, `gateway` and `steps`",
            At::Nowhere,
        ));
        return Err(yaml::located(file, &index, findings));
    }
    let scenario =
        schema::deserialize_all::<Scenario>(&value, "", &mut findings, |_, _, _, _| false);
    let Some(scenario) = scenario else {
        if findings.is_empty() {
            findings.push(Finding::new("", "the scenario cannot be read", At::Nowhere));
        }
        return Err(yaml::located(file, &index, findings));
    };
    for (i, step) in scenario.steps.iter().enumerate() {
        let problem = match (&step.request, &step.load) {
            (Some(_), Some(_)) => Some("a step is either a `request` or a `load` phase, not both"),
            (None, None) => Some("a step needs a `request` or a `load` phase"),
            _ => None,
        };
        if let Some(message) = problem {
            findings.push(Finding::new(format!("steps[{i}]"), message, At::Node));
        }
    }
    if findings.is_empty() {
        Ok(scenario)
    } else {
        Err(yaml::located(file, &index, findings))
    }
}

/// The document as a YAML value, or the one syntax error that stopped the parser, its position
/// given once (serde_yaml_ng repeats it at the end of its message) — or every duplicate key,
/// each where it is written the second time.
fn syntax(
    file: &str,
    text: &str,
    index: &LineIndex,
) -> Result<serde_yaml_ng::Value, Vec<ScenarioError>> {
    let mut d = match yaml::load::<serde_yaml_ng::Value>(file, text) {
        Ok(value) => return Ok(value),
        Err(d) => d,
    };
    if d.message.contains("duplicate entry") && !index.duplicate_keys().is_empty() {
        let findings = index
            .duplicate_keys()
            .iter()
            .map(|dup| {
                let key = dup.path.rsplit('.').next().unwrap_or(&dup.path);
                Finding::new(
                    dup.path.clone(),
                    format!(
                        "duplicate key `{key}` (first written on line {}): YAML keeps only one of them",
                        dup.first_line
                    ),
                    At::Position(dup.at),
                )
            })
            .collect();
        return Err(yaml::located(file, index, findings));
    }
    if let Some(at) = d.message.rfind(" at line ") {
        d.message.truncate(at);
    }
    if d.path == "." {
        d.path.clear();
    }
    if d.message.contains("more than one document") {
        d.message =
            "the file holds more than one YAML document (`---`); a scenario is a single document"
                .into();
        d.line = None;
        d.column = None;
    }
    Err(vec![d])
}

#[cfg(test)]
mod tests;
