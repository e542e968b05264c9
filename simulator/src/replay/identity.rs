//! Credentials minted afresh for replay time: tokens re-signed for the recorded identity (or the
//! same kind of invalid token), API keys mapped to test keys by key id.
//!
//! A recording never holds a secret: each redacted field has a [`CredentialRef`] saying who it
//! spoke for and, when the gateway refused it, why. [`Minter::prepare`] turns one recorded
//! exchange into the target and headers to send now — a token signed by the issuer's current key
//! (so a replay follows a key rotation), valid from now for the recorded remaining lifetime, or
//! an invalid token the gateway refuses for the recorded reason ([`recipe`]); an API key from the
//! key-id map; cookies dropped. HAR and GoReplay files carry raw headers instead: they pass
//! unchanged, or with `--resign` their JWT's claims are read (never trusted) and signed again.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use gateway::config::Runtime;
use gateway::identity::issuer::ClaimNames;
use gateway::record::recording::format::{
    CredentialKind, CredentialPlace, CredentialRef, REDACTED,
};

use crate::fake::issuer::{
    DEFAULT_MAX_TOKEN_BYTES, FakeIssuer, Hostile, IdentitySpec, MintOptions,
};
use crate::fake::keys::{CurrentKey, KeyDir};
use crate::replay::model::Exchange;
use crate::scenario::fakes::{Fakes, spawn_issuer_timeline};
use crate::scenario::model::{IssuerChange, RotateStep};

mod api_keys;
mod recipes;

use api_keys::read_api_key_map;
pub use api_keys::test_api_keys;
use recipes::who;
pub use recipes::{Recipe, decode_claims, recipe};

/// The flags of `replay` that decide how credentials are minted.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct IdentityArgs {
    /// For HAR and GoReplay recordings: re-sign the JWTs found in `Authorization` as this issuer
    /// (its `name` in the gateway config); without it their headers pass through unchanged.
    #[arg(long, value_name = "ISSUER")]
    pub resign: Option<String>,
    /// For `--target` runs: the key directory of the issuer the target trusts (`simulator
    /// issuer --keys DIR`), whose current key signs the minted tokens.
    #[arg(long, value_name = "DIR")]
    pub keys: Option<PathBuf>,
    /// For `--target` runs: a YAML map of API key id to the key to send for it.
    #[arg(long, value_name = "FILE")]
    pub api_keys: Option<PathBuf>,
    /// Rotate the fake issuer's keys during the replay, at offsets from its start:
    /// `publish@10s,sign@20s,retire@30s,abrupt@40s`. Minted tokens always use the current key.
    #[arg(long, value_name = "TIMELINE", value_parser = parse_rotation)]
    pub rotate: Option<Rotation>,
}

/// A `--rotate` timeline: rotation steps at offsets from the replay's start, in time order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rotation(pub Vec<(Duration, RotateStep)>);

/// Parses `STEP@OFFSET,...` (steps `publish`, `sign`, `retire`, `abrupt`; offsets as `10s`,
/// `1m30s`, `500ms`). Steps are sorted by offset; two at the same offset keep their order.
pub fn parse_rotation(text: &str) -> Result<Rotation, String> {
    let mut steps = Vec::new();
    for (i, item) in text.split(',').map(str::trim).enumerate() {
        let at = || format!("--rotate item {} (`{item}`)", i + 1);
        let (step, offset) = item
            .split_once('@')
            .ok_or_else(|| format!("{}: expected STEP@OFFSET, e.g. `publish@10s`", at()))?;
        let step = match step.trim() {
            "publish" => RotateStep::Publish,
            "sign" => RotateStep::Sign,
            "retire" => RotateStep::Retire,
            "abrupt" | "abruptly" => RotateStep::Abruptly,
            other => {
                return Err(format!(
                    "{}: `{other}` is not a rotation step: publish, sign, retire or abrupt",
                    at()
                ));
            }
        };
        let offset = humantime::parse_duration(offset.trim())
            .map_err(|e| format!("{}: `{}` is not a duration: {e}", at(), offset.trim()))?;
        steps.push((offset, step));
    }
    steps.sort_by_key(|(offset, _)| *offset);
    Ok(Rotation(steps))
}

/// What to send for one exchange: the request-target and the headers, credentials in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub target: String,
    pub headers: Vec<(String, String)>,
}

/// A valid token's lifetime when the recording does not say (`expires_in_s` absent, `--resign`).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// The shortest lifetime minted: a recorded token seconds from expiry still reaches the gateway.
const MIN_LIFETIME: Duration = Duration::from_secs(10);
/// The longest: the gateway's default `max_lifetime`.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Who signs the minted tokens.
enum Signer {
    /// Nobody: bearer references cannot be minted.
    None,
    /// The in-process fake issuer the gateway's config was pointed at.
    Fake(Arc<Fakes>),
    /// A key directory a running `simulator issuer` keeps; the key is re-read when its index
    /// changes (a rotation).
    Dir {
        dir: KeyDir,
        current: Mutex<(Option<SystemTime>, Arc<CurrentKey>)>,
    },
}

/// How many minted valid tokens are kept for reuse before the store starts over.
const MAX_REUSED_TOKENS: usize = 100_000;

/// A valid token minted for one recorded token, kept while it can stand for it.
struct Reused {
    token: String,
    /// The key that signed it: after a rotation the next request gets a token of the new key.
    kid: String,
    exp: u64,
}

/// Mints the credentials of recorded exchanges. One per replay; [`Minter::prepare`] is called
/// once per request, just before it is sent (from any task: a `Minter` is `Send + Sync`).
///
/// The requests a recorded token made share one minted token, as long as the signing key is
/// unchanged and it has time left, so the gateway's verified-token cache sees the recording's
/// reuse instead of a new token per request.
pub struct Minter {
    signer: Signer,
    /// API key id → the key to send.
    api_keys: BTreeMap<String, String>,
    /// `--resign`: re-sign the JWTs of exchanges without references.
    resign: bool,
    rotation: Rotation,
    claim_names: ClaimNames,
    max_token_bytes: usize,
    max_lifetime: Duration,
    /// Minted valid tokens by the recorded token they stand for.
    reused: Mutex<HashMap<String, Reused>>,
}

impl Minter {
    fn with_signer(
        signer: Signer,
        api_keys: BTreeMap<String, String>,
        args: &IdentityArgs,
    ) -> Self {
        Minter {
            signer,
            api_keys,
            resign: args.resign.is_some(),
            rotation: args.rotate.clone().unwrap_or_default(),
            claim_names: ClaimNames::default(),
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            max_lifetime: MAX_LIFETIME,
            reused: Mutex::new(HashMap::new()),
        }
    }

    /// HAR and GoReplay without `--resign`: headers as recorded, redacted values dropped.
    pub fn passthrough() -> Minter {
        Minter::with_signer(Signer::None, BTreeMap::new(), &IdentityArgs::default())
    }

    /// In-process and `--process` runs: tokens from the fake issuer the config was pointed at,
    /// API keys from [`test_api_keys`].
    pub fn for_fakes(
        args: &IdentityArgs,
        fakes: Arc<Fakes>,
        api_keys: BTreeMap<String, String>,
    ) -> Result<Minter, String> {
        if args.keys.is_some() || args.api_keys.is_some() {
            return Err(
                "--keys and --api-keys are for --target runs: with --config the fake \
                        issuer signs the tokens and test keys replace the config's API keys"
                    .into(),
            );
        }
        if fakes.issuer.is_none() {
            if let Some(issuer) = &args.resign {
                return Err(format!(
                    "--resign {issuer}: the gateway config has no issuer to sign for"
                ));
            }
            if args.rotate.is_some() {
                return Err("--rotate: the gateway config has no issuer whose keys rotate".into());
            }
        }
        Ok(Minter::with_signer(Signer::Fake(fakes), api_keys, args))
    }

    /// `--target` runs: tokens signed with the current key of `--keys DIR`, API keys from the
    /// `--api-keys FILE` map.
    pub fn for_target(args: &IdentityArgs) -> Result<Minter, String> {
        if args.rotate.is_some() {
            return Err(
                "--rotate drives the in-process fake issuer; against --target, rotate \
                        the issuer the target trusts (`simulator issuer --rotate-every`)"
                    .into(),
            );
        }
        let signer = match &args.keys {
            Some(path) => {
                if !path.is_dir() {
                    return Err(format!(
                        "--keys {}: no such key directory (`simulator issuer --keys DIR` makes one)",
                        path.display()
                    ));
                }
                let dir = KeyDir::open(path)?;
                let stamp = dir.stamp();
                let current = Arc::new(dir.current()?);
                Signer::Dir {
                    dir,
                    current: Mutex::new((stamp, current)),
                }
            }
            None if args.resign.is_some() => {
                return Err("--resign against --target needs --keys DIR to sign with".into());
            }
            None => Signer::None,
        };
        let api_keys = match &args.api_keys {
            Some(path) => read_api_key_map(path)?,
            None => BTreeMap::new(),
        };
        Ok(Minter::with_signer(signer, api_keys, args))
    }

    /// Mints for the gateway config `runtime`: its issuer's claim names and `max_lifetime`, and
    /// its `max_token_bytes` (what a `token-too-large` token must exceed).
    pub fn for_gateway(mut self, runtime: &Runtime) -> Minter {
        self.max_token_bytes = runtime.auth.max_token_bytes;
        let iss = match &self.signer {
            Signer::Fake(fakes) => fakes.issuer.as_ref().map(|i| i.issuer.clone()),
            Signer::Dir { current, .. } => current.lock().ok().map(|c| c.1.issuer.clone()),
            Signer::None => None,
        };
        if let Some(issuer) = iss.as_deref().and_then(|iss| runtime.auth.issuer_for(iss)) {
            self.claim_names = issuer.claims.clone();
            self.max_lifetime =
                Duration::from_secs(u64::try_from(issuer.max_lifetime_secs).unwrap_or(u64::MAX));
        }
        self
    }

    /// Starts the `--rotate` timeline on the fake issuer, from now; `None` without one (or
    /// without a fake issuer). Abort the handle when the replay ends.
    pub fn spawn_rotation(&self) -> Option<tokio::task::JoinHandle<()>> {
        let Signer::Fake(fakes) = &self.signer else {
            return None;
        };
        if self.rotation.0.is_empty() || fakes.issuer.is_none() {
            return None;
        }
        let changes = self
            .rotation
            .0
            .iter()
            .map(|(at, step)| IssuerChange {
                at: *at,
                rotate: Some(*step),
                mode: None,
            })
            .collect();
        Some(spawn_issuer_timeline(changes, fakes.clone()))
    }

    /// The target and headers to send `exchange` with at `now_unix`: each redacted credential
    /// replaced by a fresh one in the same header or query parameter, every other field as
    /// recorded. Redacted fields without a reference (and cookies) are dropped.
    pub fn prepare(&self, exchange: &Exchange, now_unix: u64) -> Result<Prepared, String> {
        let mut target = exchange.target.clone();
        let mut headers = exchange.headers.clone();
        let at = || format!("exchange {} (record {})", exchange.id, exchange.position);
        if !exchange.credentials.is_empty() {
            for credential in &exchange.credentials {
                let value = self
                    .credential(credential, exchange.unix_nanos / 1_000_000_000, now_unix)
                    .map_err(|e| format!("{}: {e}", at()))?;
                match &credential.place {
                    CredentialPlace::Header(name) => put_header(&mut headers, name, value),
                    CredentialPlace::Query(name) => put_query(&mut target, name, value),
                }
            }
        } else if self.resign {
            for (name, value) in &mut headers {
                if name.eq_ignore_ascii_case("authorization") {
                    if let Some(fresh) = self
                        .resigned(value, now_unix)
                        .map_err(|e| format!("{}: {e}", at()))?
                    {
                        *value = fresh;
                    }
                }
            }
        }
        headers.retain(|(_, value)| value != REDACTED);
        strip_redacted_query(&mut target);
        Ok(Prepared { target, headers })
    }

    /// The value to send for one reference of a request that arrived at `arrived` (Unix
    /// seconds); `None` drops it.
    fn credential(
        &self,
        credential: &CredentialRef,
        arrived: u64,
        now: u64,
    ) -> Result<Option<String>, String> {
        let recipe = recipe(credential.invalid.as_deref());
        match credential.kind {
            CredentialKind::Opaque => Ok(None),
            CredentialKind::ApiKey => Ok(match recipe {
                Recipe::Drop => None,
                Recipe::Valid => Some(
                    credential
                        .identity
                        .as_ref()
                        .and_then(|i| i.api_key_id.as_ref())
                        .and_then(|id| self.api_keys.get(id))
                        .cloned()
                        // A key id the map lacks is a key the gateway no longer holds.
                        .unwrap_or_else(unknown_api_key),
                ),
                Recipe::Hostile(_) | Recipe::OtherScheme | Recipe::UnknownApiKey => {
                    Some(unknown_api_key())
                }
            }),
            CredentialKind::Bearer => {
                let token = match recipe {
                    Recipe::Drop => return Ok(None),
                    Recipe::OtherScheme => {
                        let scheme = credential
                            .scheme
                            .as_deref()
                            .filter(|s| !s.eq_ignore_ascii_case("bearer"))
                            .unwrap_or("Basic");
                        return Ok(Some(format!("{scheme} {}", random_text())));
                    }
                    Recipe::Valid => {
                        let lifetime = credential
                            .expires_in_s
                            .and_then(|s| u64::try_from(s).ok())
                            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
                        // The recorded token: who it spoke for, which key signed it, its `exp`.
                        let recorded_exp = credential
                            .expires_in_s
                            .map(|s| i64::try_from(arrived).unwrap_or(i64::MAX).saturating_add(s));
                        let key = format!("ref {:?} {recorded_exp:?}", credential.identity);
                        self.reused_or_minted(key, &who(credential), now, lifetime)?
                    }
                    Recipe::Hostile(kind) => {
                        self.mint(&who(credential), now, DEFAULT_LIFETIME, Some(kind))?
                    }
                    Recipe::UnknownApiKey => self.mint(
                        &who(credential),
                        now,
                        DEFAULT_LIFETIME,
                        Some(Hostile::Malformed),
                    )?,
                };
                Ok(Some(match (&credential.place, &credential.scheme) {
                    (CredentialPlace::Query(_), _) => token,
                    (CredentialPlace::Header(_), Some(scheme)) => format!("{scheme} {token}"),
                    (CredentialPlace::Header(name), None) if name == "authorization" => {
                        format!("Bearer {token}")
                    }
                    (CredentialPlace::Header(_), None) => token,
                }))
            }
        }
    }

    /// A fresh `Authorization` value for a recorded `Bearer <jwt>`; `None` when the value holds
    /// no JWT whose claims can be read (it is sent as recorded).
    fn resigned(&self, value: &str, now: u64) -> Result<Option<String>, String> {
        let Some((scheme, token)) = value.split_once(' ') else {
            return Ok(None);
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(None);
        }
        let Ok(who) = decode_claims(token.trim(), &ClaimNames::default()) else {
            return Ok(None);
        };
        let token = self.reused_or_minted(format!("jwt {token}"), &who, now, DEFAULT_LIFETIME)?;
        Ok(Some(format!("{scheme} {token}")))
    }

    /// The valid token standing for the recorded token `key`: the one minted for it before,
    /// while the same key signs and it has at least [`MIN_LIFETIME`] left, else a fresh one.
    fn reused_or_minted(
        &self,
        key: String,
        who: &IdentitySpec,
        now: u64,
        lifetime: Duration,
    ) -> Result<String, String> {
        let kid = self.signing_kid()?;
        let fresh_enough = now + MIN_LIFETIME.as_secs();
        if let Some(reused) = self
            .reused
            .lock()
            .map_err(|_| "token store poisoned")?
            .get(&key)
        {
            if reused.kid == kid && reused.exp >= fresh_enough {
                return Ok(reused.token.clone());
            }
        }
        let token = self.mint(who, now, lifetime, None)?;
        let exp = now + self.lifetime(lifetime).as_secs();
        let mut store = self.reused.lock().map_err(|_| "token store poisoned")?;
        if store.len() >= MAX_REUSED_TOKENS {
            store.clear();
        }
        let reused = Reused {
            token: token.clone(),
            kid,
            exp,
        };
        store.insert(key, reused);
        Ok(token)
    }

    fn lifetime(&self, recorded: Duration) -> Duration {
        recorded.clamp(MIN_LIFETIME, self.max_lifetime.max(MIN_LIFETIME))
    }

    /// The kid of the key tokens are signed with now.
    fn signing_kid(&self) -> Result<String, String> {
        match &self.signer {
            Signer::Fake(fakes) => Ok(fakes
                .issuer
                .as_ref()
                .map(FakeIssuer::signing_kid)
                .unwrap_or_default()),
            Signer::Dir { .. } => Ok(self.dir_key()?.kid().to_owned()),
            Signer::None => Ok(String::new()),
        }
    }

    /// The key directory's current key, read again when its index changed (a rotation).
    fn dir_key(&self) -> Result<Arc<CurrentKey>, String> {
        let Signer::Dir { dir, current } = &self.signer else {
            return Err("no key directory".into());
        };
        let mut current = current.lock().map_err(|_| "key cache poisoned")?;
        let stamp = dir.stamp();
        if stamp.is_none() || stamp != current.0 {
            *current = (stamp, Arc::new(dir.current()?));
        }
        Ok(current.1.clone())
    }

    fn mint(
        &self,
        who: &IdentitySpec,
        now: u64,
        lifetime: Duration,
        hostile: Option<Hostile>,
    ) -> Result<String, String> {
        let options = MintOptions {
            now_unix: now,
            lifetime: self.lifetime(lifetime),
            hostile,
            claim_names: self.claim_names.clone(),
            min_token_bytes: self.max_token_bytes,
        };
        match &self.signer {
            Signer::Fake(fakes) => fakes
                .issuer
                .as_ref()
                .ok_or("a bearer token to mint, but the gateway config has no issuer")?
                .mint_with(who, &options),
            Signer::Dir { .. } => self.dir_key()?.mint(who, &options),
            Signer::None => Err("a bearer token to mint, but nothing to sign it with \
                                 (--keys DIR for --target runs)"
                .into()),
        }
    }
}

/// Puts `value` in the first redacted `name` header (or appends it); `None` removes that header.
fn put_header(headers: &mut Vec<(String, String)>, name: &str, value: Option<String>) {
    let slot = headers
        .iter()
        .position(|(n, v)| n.eq_ignore_ascii_case(name) && v == REDACTED);
    match (slot, value) {
        (Some(i), Some(value)) => headers[i].1 = value,
        (Some(i), None) => {
            headers.remove(i);
        }
        (None, Some(value)) => headers.push((name.to_owned(), value)),
        (None, None) => {}
    }
}

/// The redacted marker as it appears in a query string.
const REDACTED_IN_QUERY: [&str; 2] = [REDACTED, "%3Credacted%3E"];

/// Puts `value` in the first redacted `name` parameter of `target`'s query (or appends it);
/// `None` removes that parameter.
fn put_query(target: &mut String, name: &str, value: Option<String>) {
    let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let slot = pairs.iter().position(|p| {
        p.split_once('=').is_some_and(|(k, v)| {
            k == name && REDACTED_IN_QUERY.iter().any(|r| v.eq_ignore_ascii_case(r))
        })
    });
    match (slot, value) {
        (Some(i), Some(value)) => pairs[i] = format!("{name}={value}"),
        (Some(i), None) => {
            pairs.remove(i);
        }
        (None, Some(value)) => pairs.push(format!("{name}={value}")),
        (None, None) => {}
    }
    *target = join_query(path, &pairs);
}

/// Drops every query parameter still holding the redacted marker.
fn strip_redacted_query(target: &mut String) {
    let Some((path, query)) = target.split_once('?') else {
        return;
    };
    let redacted = |p: &&str| {
        p.split_once('=')
            .is_some_and(|(_, v)| REDACTED_IN_QUERY.iter().any(|r| v.eq_ignore_ascii_case(r)))
    };
    if !query.split('&').any(|p| redacted(&p)) {
        return;
    }
    let kept: Vec<String> = query
        .split('&')
        .filter(|p| !redacted(p))
        .map(str::to_owned)
        .collect();
    *target = join_query(path, &kept);
}

fn join_query(path: &str, pairs: &[String]) -> String {
    if pairs.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", pairs.join("&"))
    }
}

/// 32 random hex digits.
fn random_text() -> String {
    format!("{:032x}", fastrand::u128(..))
}

fn unknown_api_key() -> String {
    format!("replay-unknown-{}", random_text())
}

#[cfg(test)]
mod tests;
