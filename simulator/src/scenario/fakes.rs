//! The fakes a scenario runs against: one fake upstream per instance and the fake issuer, the
//! gateway config rewritten to point at them, and the timelines that change their behaviour as
//! the scenario goes on. Starting these is separate from starting the gateway so the demo can
//! reuse it on its embedded config.
//!
//! A fake speaks the protocol the config gives its upstream (`protocol`, `tls`) unless the
//! scenario says otherwise; fakes that speak TLS share one throwaway CA, written to a file that
//! the config's `tls.ca_file` is pointed at and that lives as long as the fakes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::model::{FakeIssuerSpec, FakeUpstream, IssuerChange, RequestSpec, RotateStep, Scenario};
use super::outcome::RunError;
use crate::fake::issuer::{FakeIssuer, IdentitySpec};
use crate::fake::tls::FakeCa;
use crate::fake::upstream::{Behaviour, FakeInstance, Protocol, Serving};

/// The fakes of one scenario, by upstream name.
#[derive(Default)]
pub struct Fakes {
    pub upstreams: BTreeMap<String, Vec<FakeInstance>>,
    pub issuer: Option<FakeIssuer>,
    pub identities: BTreeMap<String, IdentitySpec>,
    /// Holds the fake CA's certificate while the gateway may read it; removed with the fakes.
    pub ca_dir: Option<tempfile::TempDir>,
}

impl Fakes {
    pub fn issuer_fetches(&self) -> u64 {
        self.issuer.as_ref().map_or(0, FakeIssuer::fetches)
    }

    /// `Authorization` for a request acting as an identity, minted now.
    pub fn authorization(&self, spec: &RequestSpec) -> Result<Option<String>, String> {
        let Some(name) = &spec.as_identity else {
            return Ok(None);
        };
        let issuer = self
            .issuer
            .as_ref()
            .ok_or_else(|| format!("`as: {name}` needs an `issuer:` in the scenario"))?;
        let who = self
            .identities
            .get(name)
            .ok_or_else(|| format!("no identity named `{name}` in `identities:`"))?;
        let now = gateway::clock::Clock::unix_millis(&gateway::clock::SystemClock::new()) / 1000;
        let token = match spec.hostile {
            Some(kind) => issuer.mint_hostile(who, now, kind)?,
            None => issuer.mint(who, now, Duration::from_secs(300))?,
        };
        Ok(Some(format!("Bearer {token}")))
    }
}

impl Fakes {
    pub fn hits(&self) -> BTreeMap<String, u64> {
        self.upstreams
            .iter()
            .map(|(name, instances)| (name.clone(), instances.iter().map(FakeInstance::hits).sum()))
            .collect()
    }
}

/// Starts one fake per upstream instance named in the config file and rewrites the config to
/// point at them; listeners move to a free loopback port, the access log is turned off.
pub async fn prepare(
    scenario: &Scenario,
    scenario_dir: &Path,
) -> Result<(String, String, Fakes), RunError> {
    let config_path = scenario_dir.join(&scenario.gateway.config);
    if let Err(diagnostics) = gateway::config::load_file(&config_path) {
        return Err(RunError::Parse(
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    let text = std::fs::read_to_string(&config_path)
        .map_err(|e| RunError::Parse(format!("{}: {e}", config_path.display())))?;
    let source = config_path.display().to_string();
    let (rewritten, mut fakes) = point_config_at_fakes(
        &source,
        &text,
        &scenario.upstreams,
        scenario.issuer.as_ref(),
    )
    .await?;
    fakes.identities = scenario.identities.clone();
    Ok((source, rewritten, fakes))
}

/// Starts the fake issuer for the config's issuer named in `spec` (or its first) and points that
/// issuer's `jwks_url` at it.
async fn point_issuer_at_fake(
    source: &str,
    config: &mut serde_yaml_ng::Value,
    spec: &FakeIssuerSpec,
) -> Result<FakeIssuer, RunError> {
    let issuers = config
        .get_mut("auth")
        .and_then(|a| a.get_mut("issuers"))
        .and_then(|i| i.as_sequence_mut())
        .ok_or_else(|| {
            RunError::Parse(format!(
                "issuer: the gateway config {source} has no auth.issuers"
            ))
        })?;
    let entry = issuers
        .iter_mut()
        .find(|i| {
            spec.name
                .as_deref()
                .is_none_or(|n| i.get("name").and_then(|v| v.as_str()) == Some(n))
        })
        .ok_or_else(|| RunError::Parse(format!("issuer.name: no such issuer in {source}")))?;
    let iss = entry
        .get("issuer")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let aud = entry
        .get("audiences")
        .and_then(|v| v.as_sequence())
        .and_then(|a| a.first())
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    let fake = FakeIssuer::start(&iss, &aud)
        .await
        .map_err(RunError::Parse)?;
    if let Some(map) = entry.as_mapping_mut() {
        map.insert("jwks_url".into(), fake.jwks_url().into());
    }
    Ok(fake)
}

/// Starts the fakes for every upstream of a config text and returns the text pointing at them.
pub async fn point_config_at_fakes(
    source: &str,
    text: &str,
    specs: &BTreeMap<String, FakeUpstream>,
    issuer: Option<&FakeIssuerSpec>,
) -> Result<(String, Fakes), RunError> {
    let mut value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| RunError::Parse(format!("{source}: {e}")))?;
    let mut fakes = Fakes::default();
    let mut ca: Option<(FakeCa, String)> = None;
    if let Some(spec) = issuer {
        fakes.issuer = Some(point_issuer_at_fake(source, &mut value, spec).await?);
    }
    let names: Vec<String> = value
        .get("upstreams")
        .and_then(|u| u.as_mapping())
        .map(|m| {
            m.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for name in specs.keys() {
        if !names.contains(name) {
            return Err(RunError::Parse(format!(
                "upstreams.{name}: the gateway config {source} has no upstream `{name}` (it has: {})",
                names.join(", ")
            )));
        }
    }
    for name in &names {
        let spec = specs.get(name);
        let count = spec.map_or(1, |s| s.instances.max(1));
        let behaviour = spec.map(|s| s.behaviour.clone()).unwrap_or_default();
        let upstream = value
            .get_mut("upstreams")
            .and_then(|u| u.get_mut(name.as_str()));
        let serving = match upstream {
            Some(upstream) => serving_for(
                source,
                name,
                upstream,
                spec.and_then(|s| s.protocol),
                &mut ca,
                &mut fakes,
            )?,
            None => Serving::default(),
        };
        let mut instances = Vec::with_capacity(count);
        for _ in 0..count {
            let fake = FakeInstance::start_serving(
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                behaviour.clone(),
                serving.clone(),
            )
            .await
            .map_err(|e| RunError::Parse(format!("cannot start a fake upstream: {e}")))?;
            instances.push(fake);
        }
        let addresses: Vec<serde_yaml_ng::Value> = instances
            .iter()
            .map(|i| serde_yaml_ng::Value::String(i.address.to_string()))
            .collect();
        if let Some(upstream) = value
            .get_mut("upstreams")
            .and_then(|u| u.get_mut(name.as_str()))
            .and_then(|u| u.as_mapping_mut())
        {
            upstream.insert(
                "instances".into(),
                serde_yaml_ng::Value::Sequence(addresses),
            );
        }
        fakes.upstreams.insert(name.clone(), instances);
    }
    if let Some(map) = value.as_mapping_mut() {
        let listener: serde_yaml_ng::Value =
            serde_yaml_ng::from_str("[{name: public, address: \"127.0.0.1:0\"}]")
                .unwrap_or_default();
        map.insert("listeners".into(), listener);
        map.insert("access_log".into(), "off".into());
        map.remove("admin");
    }
    let rewritten = serde_yaml_ng::to_string(&value)
        .map_err(|e| RunError::Parse(format!("cannot rewrite the config: {e}")))?;
    Ok((rewritten, fakes))
}

/// How the fakes of upstream `name` serve: the scenario's `protocol`, else the config's; over TLS
/// when that protocol needs it or an `http1` upstream has a `tls:` section. For TLS, the run's CA
/// is made (once) and the config's `tls.ca_file` pointed at it; the leaf also carries the
/// configured `tls.server_name`.
fn serving_for(
    source: &str,
    name: &str,
    upstream: &mut Value,
    chosen: Option<Protocol>,
    ca: &mut Option<(FakeCa, String)>,
    fakes: &mut Fakes,
) -> Result<Serving, RunError> {
    let configured = match upstream.get("protocol") {
        None => None,
        Some(written) => Some(
            serde_yaml_ng::from_value::<Protocol>(written.clone()).map_err(|_| {
                RunError::Parse(format!(
                    "upstreams.{name}.protocol: the gateway config {source} asks for {}, which no fake upstream speaks (they speak http1, h2c, h2 and auto)",
                    serde_yaml_ng::to_string(written).unwrap_or_default().trim()
                ))
            })?,
        ),
    };
    let protocol = chosen.or(configured).unwrap_or_default();
    let has_tls = upstream.get("tls").is_some_and(Value::is_mapping);
    if !(protocol.needs_tls() || (protocol == Protocol::Http1 && has_tls)) {
        return Ok(Serving {
            protocol,
            tls: None,
        });
    }
    let problem = |e: String| RunError::Parse(format!("cannot make a TLS fake upstream: {e}"));
    if ca.is_none() {
        let made = FakeCa::generate().map_err(problem)?;
        let dir = tempfile::tempdir().map_err(|e| problem(e.to_string()))?;
        let path = dir.path().join("fake-ca.pem");
        std::fs::write(&path, made.pem()).map_err(|e| problem(e.to_string()))?;
        *ca = Some((made, path.display().to_string()));
        fakes.ca_dir = Some(dir);
    }
    let Some((authority, ca_file)) = ca.as_ref() else {
        return Err(problem("no CA".into()));
    };
    let server_name: Vec<String> = upstream
        .get("tls")
        .and_then(|t| t.get("server_name"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .into_iter()
        .collect();
    let config = authority
        .server_config(&server_name, protocol.alpn())
        .map_err(problem)?;
    if let Some(map) = upstream.as_mapping_mut() {
        let tls = map
            .entry("tls".into())
            .or_insert_with(|| Value::Mapping(Default::default()));
        if let Some(tls) = tls.as_mapping_mut() {
            tls.insert("ca_file".into(), ca_file.clone().into());
        }
    }
    Ok(Serving {
        protocol,
        tls: Some(config),
    })
}

/// Applies the fake issuer's timeline (rotation steps, modes) from now on.
pub fn spawn_issuer_timeline(
    changes: Vec<IssuerChange>,
    fakes: Arc<Fakes>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for change in changes {
            tokio::time::sleep_until(start + change.at).await;
            let Some(issuer) = &fakes.issuer else { return };
            if let Some(mode) = change.mode {
                issuer.set_mode(mode);
            }
            let rotated = match change.rotate {
                Some(RotateStep::Publish) => issuer.publish_next_key().map(drop),
                Some(RotateStep::Sign) => {
                    issuer.sign_with_newest();
                    Ok(())
                }
                Some(RotateStep::Retire) => {
                    issuer.retire_old_keys();
                    Ok(())
                }
                Some(RotateStep::Abruptly) => issuer.rotate_abruptly(),
                None => Ok(()),
            };
            if let Err(e) = rotated {
                tracing::warn!(error = %e, "the fake issuer could not rotate");
            }
        }
    })
}

/// Applies the scenario's timelines (upstreams and issuer); abort the returned tasks when the scenario ends.
pub fn spawn_timelines(scenario: &Scenario, fakes: Arc<Fakes>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut changes: Vec<(Duration, String, Option<usize>, Behaviour)> = scenario
        .upstreams
        .iter()
        .flat_map(|(name, spec)| {
            spec.timeline
                .iter()
                .map(move |c| (c.at, name.clone(), c.instance, c.behaviour.clone()))
        })
        .collect();
    changes.sort_by_key(|c| c.0);
    let issuer_changes: Vec<IssuerChange> = scenario
        .issuer
        .as_ref()
        .map(|i| i.timeline.clone())
        .unwrap_or_default();
    let mut tasks = vec![spawn_issuer_timeline(issuer_changes, fakes.clone())];
    tasks.push(tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for (at, name, instance, behaviour) in changes {
            tokio::time::sleep_until(start + at).await;
            if let Some(instances) = fakes.upstreams.get(&name) {
                for (i, fake) in instances.iter().enumerate() {
                    if instance.is_none_or(|want| want == i) {
                        fake.set_behaviour(behaviour.clone());
                    }
                }
            }
        }
    }));
    tasks
}
