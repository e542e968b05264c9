//! `gateway routes --test CASES.yaml`: table-driven route tests. Each case is a request in and
//! what must come out — the route, the upstream, the path the upstream sees, or the stop (stage,
//! status, reason). The run ends with a coverage line naming routes no case exercised.
//!
//! Cases are evaluated offline with the pipeline's own routing code (`stage::route::resolve`,
//! `verdict` and the route's rewrite), so a passing case means the running gateway routes the
//! same way. The host is decided as the gateway decides it (`routing::authority`: an
//! absolute-form `path`'s authority over `host`; an invalid one stops at `tls`), and paths are
//! normalized under the `paths:` options of the config's first listener (the defaults when it
//! has none) — a case is evaluated as if it arrived there.
//!
//! `--junit FILE` writes the same run as JUnit XML for CI dashboards ([`RunOutcome::junit`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use serde::Deserialize;

use crate::clock::Clock;
use crate::config::Runtime;
use crate::config::yaml::{self, Diagnostic};
use crate::routing::authority::request_authority;
use crate::routing::normalize::PathOptions;
use crate::stage::route::resolve;
use crate::vocab::StageId;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    #[serde(default)]
    pub name: Option<String>,
    pub request: CaseRequest,
    pub expect: Expect,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseRequest {
    #[serde(default = "default_method")]
    pub method: String,
    /// Path and optional query, as the client sends it (not yet normalized).
    pub path: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_method() -> String {
    "GET".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub route: Option<String>,
    pub upstream: Option<String>,
    /// The path the upstream receives after normalization and rewriting.
    pub path: Option<String>,
    pub stopped_at: Option<StageId>,
    pub status: Option<u16>,
    pub reason: Option<String>,
}

pub fn load_cases(path: &Path) -> Result<CaseFile, Diagnostic> {
    let text = yaml::read(path)?;
    parse_cases(&path.display().to_string(), &text)
}

/// The first problem in `text`, in serde's words (see [`yaml::load`]); the tests pin its text.
pub fn parse_cases(file: &str, text: &str) -> Result<CaseFile, Diagnostic> {
    yaml::load(file, text)
}

/// What routing decided for one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub route: Option<String>,
    pub upstream: Option<String>,
    pub path: Option<String>,
    pub stopped_at: Option<StageId>,
    pub status: Option<u16>,
    pub reason: Option<String>,
}

pub fn evaluate(runtime: &Runtime, request: &CaseRequest) -> Result<Verdict, String> {
    let method = Method::from_bytes(request.method.as_bytes())
        .map_err(|_| format!("`{}` is not an HTTP method", request.method))?;
    let uri: Uri = request
        .path
        .parse()
        .map_err(|_| format!("`{}` is not a request target", request.path))?;
    let mut headers = HeaderMap::new();
    for (name, value) in &request.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("`{name}` is not a header name"))?;
        let value =
            HeaderValue::from_str(value).map_err(|_| format!("`{value}` is not a header value"))?;
        headers.append(name, value);
    }
    if let Some(host) = &request.host {
        let value = HeaderValue::from_str(host).map_err(|_| format!("`{host}` is not a host"))?;
        headers.insert(http::header::HOST, value);
    }
    // HTTP/1.0's rules: the target's authority wins, and a case need not name a host.
    let authority = request_authority(Version::HTTP_10, &uri, &headers);
    if let Some(problem) = authority.problem {
        let stop = crate::stage::tls::host_rejection(problem);
        return Ok(Verdict {
            stopped_at: Some(stop.stage),
            status: Some(stop.status.as_u16()),
            reason: Some(stop.reason.to_string()),
            ..Verdict::default()
        });
    }
    let paths = runtime
        .listeners
        .first()
        .map_or_else(PathOptions::default, |l| l.paths);
    let found = resolve(
        runtime,
        &method,
        &uri,
        authority.value.as_ref(),
        &headers,
        &paths,
    );
    let mut verdict = Verdict {
        route: found.route().map(|r| r.name.to_string()),
        ..Verdict::default()
    };
    match crate::stage::route::verdict(&found) {
        Ok((route, upstream)) => {
            verdict.upstream = Some(upstream.name.to_string());
            let path = found.path().unwrap_or("/");
            verdict.path = Some(match &route.rewrite {
                Some(rewrite) => rewrite.apply(path),
                None => path.to_string(),
            });
        }
        Err(stop) => {
            verdict.stopped_at = Some(stop.stage);
            verdict.status = Some(stop.status.as_u16());
            verdict.reason = Some(stop.reason.to_string());
        }
    }
    Ok(verdict)
}

pub struct CaseOutcome {
    pub label: String,
    /// Empty when the case passed.
    pub mismatches: Vec<String>,
    /// How long evaluating the case took (JUnit's `time`).
    pub elapsed_nanos: u64,
}

pub struct RunOutcome {
    pub cases: Vec<CaseOutcome>,
    /// When the run started, for JUnit's `timestamp`.
    pub started_unix_millis: u64,
    pub unexercised: Vec<String>,
    pub total_routes: usize,
}

impl RunOutcome {
    pub fn failed(&self) -> usize {
        self.cases
            .iter()
            .filter(|c| !c.mismatches.is_empty())
            .count()
    }

    /// `coverage: 3/4 routes exercised; not exercised: admin`.
    pub fn coverage_line(&self) -> String {
        let exercised = self.total_routes - self.unexercised.len();
        if self.unexercised.is_empty() {
            format!(
                "coverage: {exercised}/{} routes exercised",
                self.total_routes
            )
        } else {
            format!(
                "coverage: {exercised}/{} routes exercised; not exercised: {}",
                self.total_routes,
                self.unexercised.join(", ")
            )
        }
    }

    pub fn render(&self, file: &str) -> String {
        let mut out = String::new();
        for case in &self.cases {
            if case.mismatches.is_empty() {
                let _ = writeln!(out, "ok    {}", case.label);
            } else {
                let _ = writeln!(out, "FAIL  {}", case.label);
                for m in &case.mismatches {
                    let _ = writeln!(out, "        {m}");
                }
            }
        }
        let _ = writeln!(
            out,
            "{file}: {} passed, {} failed",
            self.cases.len() - self.failed(),
            self.failed()
        );
        let _ = writeln!(out, "{}", self.coverage_line());
        out
    }
}

/// Runs every case in `file`; `clock` times them (the real clock from the CLI, a manual one in
/// tests).
impl RunOutcome {
    /// The run as a JUnit XML report: one `testsuite` named `suite` (the cases file's stem), one
    /// `testcase` per case with `classname` = `suite`, a `failure` per failed case carrying
    /// every expected/got mismatch, `time` in seconds and `timestamp` in UTC (JUnit's schema
    /// allows no zone suffix). The coverage line goes to the suite's `system-out`.
    pub fn junit(&self, suite: &str) -> String {
        let seconds = |nanos: u64| format!("{:.6}", nanos as f64 / 1e9);
        let total: u64 = self.cases.iter().map(|c| c.elapsed_nanos).sum();
        let timestamp = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.started_unix_millis),
        )
        .to_string();
        let timestamp = timestamp.trim_end_matches('Z');
        let suite = xml_escape(suite);
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{}\">",
            self.cases.len(),
            self.failed(),
            seconds(total)
        );
        let _ = writeln!(
            out,
            "  <testsuite name=\"{suite}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"0\" time=\"{}\" timestamp=\"{timestamp}\">",
            self.cases.len(),
            self.failed(),
            seconds(total)
        );
        for case in &self.cases {
            let name = xml_escape(&case.label);
            let time = seconds(case.elapsed_nanos);
            if case.mismatches.is_empty() {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{suite}\" name=\"{name}\" time=\"{time}\"/>"
                );
            } else {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{suite}\" name=\"{name}\" time=\"{time}\">"
                );
                let _ = writeln!(
                    out,
                    "      <failure type=\"mismatch\" message=\"{}\">{}</failure>",
                    xml_escape(&case.mismatches.join("; ")),
                    xml_escape(&case.mismatches.join("\n"))
                );
                let _ = writeln!(out, "    </testcase>");
            }
        }
        let _ = writeln!(
            out,
            "    <system-out>{}</system-out>",
            xml_escape(&self.coverage_line())
        );
        out.push_str("  </testsuite>\n</testsuites>\n");
        out
    }
}

/// `text` safe inside an XML attribute or element; characters XML 1.0 cannot hold at all (most
/// control characters) become U+FFFD rather than making the report unreadable.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

pub fn run_cases(runtime: &Runtime, file: &CaseFile, clock: &dyn Clock) -> RunOutcome {
    let started_unix_millis = clock.unix_millis();
    let mut exercised = BTreeSet::new();
    let cases = file
        .cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            let label = case.name.clone().unwrap_or_else(|| {
                format!("cases[{i}] {} {}", case.request.method, case.request.path)
            });
            let start = clock.now();
            let mismatches = match evaluate(runtime, &case.request) {
                Ok(got) => {
                    if let Some(route) = &got.route {
                        exercised.insert(route.clone());
                    }
                    compare(&case.expect, &got)
                }
                Err(e) => vec![format!("bad request in case: {e}")],
            };
            CaseOutcome {
                label,
                mismatches,
                elapsed_nanos: clock.now().saturating_sub(start),
            }
        })
        .collect();
    let routes = runtime.routes.routes();
    RunOutcome {
        cases,
        started_unix_millis,
        unexercised: routes
            .iter()
            .filter(|r| !exercised.contains(r.name.as_ref()))
            .map(|r| r.name.to_string())
            .collect(),
        total_routes: routes.len(),
    }
}

fn compare(expect: &Expect, got: &Verdict) -> Vec<String> {
    let mut mismatches = Vec::new();
    let expects_something = expect.route.is_some()
        || expect.upstream.is_some()
        || expect.path.is_some()
        || expect.stopped_at.is_some()
        || expect.status.is_some()
        || expect.reason.is_some();
    if !expects_something {
        mismatches.push("the case expects nothing, so it could never fail".to_string());
    }
    let mut check = |field: &str, want: Option<String>, got: &Option<String>| {
        if let Some(want) = want {
            if got.as_ref() != Some(&want) {
                mismatches.push(format!(
                    "{field}: expected {want}, got {}",
                    got.as_deref().unwrap_or("(none)")
                ));
            }
        }
    };
    check("route", expect.route.clone(), &got.route);
    check("upstream", expect.upstream.clone(), &got.upstream);
    check("path", expect.path.clone(), &got.path);
    check(
        "stopped_at",
        expect.stopped_at.map(|s| s.to_string()),
        &got.stopped_at.map(|s| s.to_string()),
    );
    check(
        "status",
        expect.status.map(|s| s.to_string()),
        &got.status.map(|s| s.to_string()),
    );
    check("reason", expect.reason.clone(), &got.reason);
    // A case that expects a forward must not pass because nothing was checked about the stop.
    if expect.stopped_at.is_none() && expect.status.is_none() && expect.reason.is_none() {
        if let Some(stage) = got.stopped_at {
            mismatches.push(format!(
                "expected the request to be forwarded, but {stage} stopped it ({})",
                got.reason.as_deref().unwrap_or("")
            ));
        }
    }
    mismatches
}

#[cfg(test)]
mod tests;
