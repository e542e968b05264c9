//! What can be checked in a scenario without running it: the names it uses (identities, the
//! config's upstreams and issuers, stages) must exist, and a gRPC call's path must name a method. A scenario that fails here is reported with
//! file, line and field before any fake or gateway starts (exit 2), rather than after its steps
//! time out against something that was never there.

use std::path::Path;

use gateway::config::yaml::suggest::is_typo_of;
use gateway::config::yaml::{self, At, Diagnostic, Finding, LineIndex};
use gateway::vocab::StageId;
use serde_yaml_ng::Value;

use super::model::{self, RequestSpec, Scenario};

/// Stopping-stage keys a load phase's `stopped_counts` may use besides the stage ids: `none`
/// (the upstream answered) and `no-record` (no record arrived), as the phase summary counts them.
const STOPPED_COUNT_EXTRAS: [&str; 2] = ["none", "no-record"];

/// Reads, parses and checks the scenario at `path` against the gateway config it names. On
/// error: every problem found, the scenario's first (in file order), then the config's.
pub fn check_file(path: &Path) -> Result<Scenario, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = yaml::read(path).map_err(|d| vec![d])?;
    let scenario = model::parse(&file, &text)?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut findings = names_inside(&scenario);
    let mut config_problems = Vec::new();
    let config_path = dir.join(&scenario.gateway.config);
    match std::fs::read_to_string(&config_path) {
        Err(e) => findings.push(Finding::new(
            "gateway.config",
            format!(
                "cannot read the gateway config {}: {e}",
                config_path.display()
            ),
            At::Node,
        )),
        Ok(config_text) => match gateway::config::load_file(&config_path) {
            Err(diagnostics) => config_problems = diagnostics,
            Ok(_) => {
                let source = config_path.display().to_string();
                let config: Value = serde_yaml_ng::from_str(&config_text).unwrap_or_default();
                findings.extend(names_in_config(&scenario, &source, &config));
            }
        },
    }
    if findings.is_empty() && config_problems.is_empty() {
        return Ok(scenario);
    }
    let mut diagnostics = yaml::located(&file, &LineIndex::build(&text), findings);
    diagnostics.extend(config_problems);
    Err(diagnostics)
}

/// Names the scenario uses that it must define itself: identities (and the issuer that mints
/// their tokens) and stages.
fn names_inside(scenario: &Scenario) -> Vec<Finding> {
    let mut findings = Vec::new();
    let identities: Vec<&str> = scenario.identities.keys().map(String::as_str).collect();
    for (i, step) in scenario.steps.iter().enumerate() {
        let requests = [
            ("request", step.request.as_ref()),
            ("load.request", step.load.as_ref().map(|l| &l.request)),
        ];
        for (field, spec) in requests {
            if let Some(spec) = spec.filter(|s| s.grpc.is_some()) {
                if !is_grpc_path(&spec.path) {
                    findings.push(Finding::new(
                        format!("steps[{i}].{field}.path"),
                        format!(
                            "a gRPC call's path is `/package.Service/Method`, not `{}`",
                            spec.path
                        ),
                        At::Node,
                    ));
                }
            }
            let Some(RequestSpec {
                as_identity: Some(name),
                ..
            }) = spec
            else {
                continue;
            };
            let path = format!("steps[{i}].{field}.as");
            if scenario.issuer.is_none() {
                findings.push(Finding::new(
                    path,
                    format!(
                        "`as: {name}` needs a fake issuer to mint the token: add `issuer: {{}}` to the scenario"
                    ),
                    At::Node,
                ));
            } else if !scenario.identities.contains_key(name) {
                findings.push(Finding::new(
                    path,
                    unknown_name("identity", name, "`identities:`", &identities),
                    At::Node,
                ));
            }
        }
        let stages: Vec<&str> = StageId::ALL
            .iter()
            .map(|s| s.as_str())
            .chain(STOPPED_COUNT_EXTRAS)
            .collect();
        for key in step.expect.stopped_counts.keys() {
            if !stages.contains(&key.as_str()) {
                findings.push(Finding::new(
                    format!("steps[{i}].expect.stopped_counts.{key}"),
                    unknown_name("stage", key, "the pipeline", &stages),
                    At::Key,
                ));
            }
        }
    }
    findings
}

/// `/package.Service/Method`: two non-empty segments, no query.
fn is_grpc_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    let mut parts = rest.split('/');
    matches!(
        (parts.next(), parts.next(), parts.next()),
        (Some(service), Some(method), None)
            if !service.is_empty() && !method.is_empty() && !path.contains('?')
    )
}

/// Names the scenario takes from its gateway config: upstreams and the issuer it fakes.
fn names_in_config(scenario: &Scenario, source: &str, config: &Value) -> Vec<Finding> {
    let mut findings = Vec::new();
    let upstreams: Vec<&str> = config
        .get("upstreams")
        .and_then(Value::as_mapping)
        .map(|m| m.keys().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let place = format!("the gateway config {source}");
    let mut check_upstream = |path: String, name: &str, at: At| {
        if !upstreams.contains(&name) {
            findings.push(Finding::new(
                path,
                unknown_name("upstream", name, &place, &upstreams),
                at,
            ));
        }
    };
    for name in scenario.upstreams.keys() {
        check_upstream(format!("upstreams.{name}"), name, At::Key);
    }
    for (i, step) in scenario.steps.iter().enumerate() {
        for name in step.expect.upstream_hits.keys() {
            check_upstream(
                format!("steps[{i}].expect.upstream_hits.{name}"),
                name,
                At::Key,
            );
        }
        if let Some(name) = step
            .expect
            .upstream
            .as_ref()
            .and_then(|u| u.name.as_deref())
        {
            // `none`: the request must not have reached any upstream.
            if name != "none" {
                check_upstream(format!("steps[{i}].expect.upstream.name"), name, At::Node);
            }
        }
    }
    if let Some(spec) = &scenario.issuer {
        let issuers: Vec<&str> = config
            .get("auth")
            .and_then(|a| a.get("issuers"))
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(|i| i.get("name").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        if issuers.is_empty() {
            findings.push(Finding::new(
                "issuer",
                format!(
                    "the fake issuer stands in for one of `auth.issuers`, but {place} has none"
                ),
                At::Key,
            ));
        } else if let Some(name) = spec.name.as_deref().filter(|n| !issuers.contains(n)) {
            findings.push(Finding::new(
                "issuer.name",
                unknown_name(
                    "issuer",
                    name,
                    &format!("`auth.issuers` of {place}"),
                    &issuers,
                ),
                At::Node,
            ));
        }
    }
    findings
}

/// "no upstream `x` in <place>", with the closest known name when it looks like a typo, or
/// every known name otherwise (the list is short, and seeing it is the quickest fix).
fn unknown_name(kind: &str, name: &str, place: &str, known: &[&str]) -> String {
    let closest = known.iter().find(|k| is_typo_of(name, k));
    match closest {
        Some(k) => format!("no {kind} `{name}` in {place}, did you mean `{k}`?"),
        None if known.is_empty() => format!("no {kind} `{name}` in {place}: it defines none"),
        None => format!(
            "no {kind} `{name}` in {place} (it has: {})",
            known
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grpc_call_must_name_a_service_and_a_method() {
        for good in ["/demo.Greeter/SayHello", "/Greeter/Hi"] {
            assert!(is_grpc_path(good), "{good}");
        }
        for bad in [
            "/demo.Greeter",
            "/demo.Greeter/",
            "//Hi",
            "/a/b/c",
            "/a/b?x=1",
            "a/b",
            "/",
        ] {
            assert!(!is_grpc_path(bad), "{bad}");
        }
        let text = "name: t\ngateway: {config: g.yaml}\nsteps:\n  - name: a\n    request: {path: /demo.Greeter, grpc: {}}\n    expect: {grpc_status: 0}\n  - name: b\n    request: {path: /demo.Greeter, http2: true}\n    expect: {status: 200}\n";
        let scenario = model::parse("s.yaml", text).expect("parses");
        let diagnostics = yaml::located("s.yaml", &LineIndex::build(text), names_inside(&scenario));
        let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "s.yaml:5:21: steps[0].request.path: a gRPC call's path is `/package.Service/Method`, not `/demo.Greeter`"
            ],
            "only the gRPC call is held to it"
        );
    }
}
