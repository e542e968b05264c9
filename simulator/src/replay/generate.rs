//! A realistic recording, generated deterministically: a day-shaped mix of clients against the
//! routes of `fixtures/testbed.yaml`, compressed into a short span (docs/replay.md, "Fixtures and
//! prediction").
//!
//! The same options (seed included) give the same lines, byte for byte: one seeded
//! `fastrand::Rng`, no hash-map iteration, a fixed epoch. The mix, as shares of the requests:
//!
//! | kind | share | what |
//! |---|---|---|
//! | `paid` | the rest × 0.6 | steady paid-tier users (Zipf-weighted), following the day's rate |
//! | `free` | the rest × 0.4 | steady free-tier users, the same way |
//! | `cron` | 6 % | a cron storm: one service identity, all of it within 3 s at 02:00 |
//! | `retry` | 4 % | a buggy client re-sending the same request every ~25 ms at 15:00 |
//! | `over-quota` | 4 % | three free users each far above their limit for 6 s |
//! | `bad-token` | 2 % | expired, badly signed and unknown-kid tokens, spread over the day |
//! | `unknown-route` | 2 % | paths no API serves, some with a token, some without |
//!
//! Every line has `record: None` (the generator knows no gateway outcome); every bearer token is
//! the header value [`REDACTED`] with the [`CredentialRef`] a gateway would have recorded for it.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gateway::record::recording::format::{
    CredentialKind, CredentialPlace, CredentialRef, FORMAT_VERSION, REDACTED, RecordedRequest,
    RecordingLine,
};
use gateway::vocab::Identity;
use serde::Serialize;

/// The issuer of `fixtures/testbed.yaml`'s `main` issuer.
pub const ISSUER: &str = "https://issuer.gatehouse.test/";
/// The `host` every generated request carries.
pub const HOST: &str = "api.gatehouse.test";
/// 2023-11-14T22:13:20Z: the fixed epoch the generated day starts at (the lab's export uses it
/// too), so the output does not depend on when it was generated.
pub const DEFAULT_START_UNIX_MICROS: u64 = 1_700_000_000_000_000;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateOptions {
    pub requests: usize,
    pub seed: u64,
    /// The day, compressed into this span.
    pub span: Duration,
    pub start_unix_micros: u64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            requests: 10_000,
            seed: 11,
            span: Duration::from_secs(600),
            start_unix_micros: DEFAULT_START_UNIX_MICROS,
        }
    }
}

/// Which client a generated request belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Paid,
    Free,
    Cron,
    Retry,
    OverQuota,
    BadToken,
    UnknownRoute,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Paid,
        Kind::Free,
        Kind::Cron,
        Kind::Retry,
        Kind::OverQuota,
        Kind::BadToken,
        Kind::UnknownRoute,
    ];

    /// The word ids start with (`cron-00042`) and the summary prints.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Paid => "paid",
            Kind::Free => "free",
            Kind::Cron => "cron",
            Kind::Retry => "retry",
            Kind::OverQuota => "over-quota",
            Kind::BadToken => "bad-token",
            Kind::UnknownRoute => "unknown-route",
        }
    }

    /// The kind of a generated request id (`over-quota-00017`).
    pub fn of_id(id: &str) -> Option<Kind> {
        let (word, _) = id.rsplit_once('-')?;
        Kind::ALL.into_iter().find(|k| k.as_str() == word)
    }

    /// Its share of the requests, in percent; `None` for the steady users, who get the rest.
    const fn percent(self) -> Option<usize> {
        match self {
            Kind::Paid | Kind::Free => None,
            Kind::Cron => Some(6),
            Kind::Retry | Kind::OverQuota => Some(4),
            Kind::BadToken | Kind::UnknownRoute => Some(2),
        }
    }
}

/// One generated request and the kind of client that sent it.
#[derive(Debug, Clone)]
pub struct Generated {
    pub kind: Kind,
    pub line: RecordingLine,
}

/// Relative request rate per hour of the day: a night trough, the morning ramp, the midday peak,
/// an afternoon plateau and an evening bump.
const HOURLY: [f64; 24] = [
    0.15, 0.12, 0.10, 0.10, 0.12, 0.20, 0.40, 0.70, 1.00, 1.25, 1.45, 1.60, 1.70, 1.60, 1.45, 1.35,
    1.25, 1.15, 1.20, 1.30, 1.10, 0.80, 0.50, 0.30,
];

const PAID_USERS: usize = 20;
const FREE_USERS: usize = 60;
const TENANTS: [&str; 4] = ["acme", "globex", "initech", "umbrella"];
const USER_AGENTS: [&str; 4] = ["app-ios/4.2", "app-android/4.1", "web/2025.11", "curl/8.5"];
const UNKNOWN_PATHS: [&str; 7] = [
    "/api/v3/users/7",
    "/api/v1/orders",
    "/api/v1/userz/3",
    "/favicon.ico",
    "/robots.txt",
    "/.env",
    "/wp-login.php",
];
const BAD_TOKENS: [&str; 3] = ["token-expired", "bad-signature", "unknown-kid"];

/// A request before it has its place in time order (and so its id).
struct Draft {
    kind: Kind,
    at_ns: u64,
    client: String,
    method: &'static str,
    target: String,
    user_agent: &'static str,
    body: Option<Vec<u8>>,
    credential: Option<CredentialRef>,
}

/// A steady user: who they are and how much of their tier's traffic they send.
struct User {
    identity: Identity,
    weight: f64,
}

fn users(tier: &str, count: usize) -> Vec<User> {
    (0..count)
        .map(|i| {
            let (subject, tenant, scopes, roles) = if tier == "paid" {
                let roles = if i < 2 {
                    vec!["admin".to_owned()]
                } else {
                    vec![]
                };
                (
                    format!("paid-user-{:02}", i + 1),
                    TENANTS[i % TENANTS.len()].to_owned(),
                    vec!["users:read".to_owned(), "users:write".to_owned()],
                    roles,
                )
            } else {
                (
                    format!("free-user-{:03}", i + 1),
                    "free".to_owned(),
                    vec!["users:read".to_owned()],
                    vec![],
                )
            };
            User {
                identity: Identity {
                    subject,
                    tenant: Some(tenant),
                    scopes,
                    roles,
                    tier: Some(tier.to_owned()),
                    ..Identity::default()
                },
                // Zipf-like: a few heavy users, a long tail.
                weight: 1.0 / ((i + 1) as f64).powf(0.8),
            }
        })
        .collect()
}

fn pick<'u>(rng: &mut fastrand::Rng, users: &'u [User]) -> &'u User {
    let total: f64 = users.iter().map(|u| u.weight).sum();
    let mut u = rng.f64() * total;
    for user in users {
        if u < user.weight {
            return user;
        }
        u -= user.weight;
    }
    &users[users.len() - 1]
}

/// A bearer credential as the recording gateway redacts it: who it spoke for, and why it was
/// refused when it was.
pub fn bearer(identity: Identity, expires_in_s: i64, invalid: Option<&str>) -> CredentialRef {
    CredentialRef {
        kind: CredentialKind::Bearer,
        place: CredentialPlace::Header("authorization".into()),
        scheme: Some("Bearer".into()),
        identity: Some(identity),
        issuer: Some(ISSUER.into()),
        // The issuer's own audience: a replay mints for the config it runs against.
        audience: None,
        expires_in_s: Some(expires_in_s),
        invalid: invalid.map(str::to_owned),
    }
}

/// A time in the compressed day, by the hourly profile.
fn day_time(rng: &mut fastrand::Rng, span_ns: u64) -> u64 {
    let total: f64 = HOURLY.iter().sum();
    let mut u = rng.f64() * total;
    let mut hour = 0;
    while hour < 23 && u >= HOURLY[hour] {
        u -= HOURLY[hour];
        hour += 1;
    }
    let fraction = (hour as f64 + rng.f64()) / 24.0;
    ((span_ns as f64) * fraction) as u64
}

/// The start of an event at `hour` of the compressed day, leaving room for its `length` within
/// the span.
fn at_hour(hour: f64, length_ns: u64, span_ns: u64) -> u64 {
    let start = ((span_ns as f64) * hour / 24.0) as u64;
    start.min(span_ns.saturating_sub(length_ns))
}

/// A steady user's request: mostly reads, some writes, v2 and payments, the admins' dashboard.
fn steady(rng: &mut fastrand::Rng, kind: Kind, user: &User, at_ns: u64) -> Draft {
    let roll = rng.u32(0..100);
    let id = rng.u32(1..5_000);
    let (method, target, body) = match (kind, roll) {
        (_, 0..55) => ("GET", format!("/api/v1/users/{id}"), None),
        (_, 55..70) => ("GET", format!("/api/v2/users/{id}"), None),
        (_, 70..73) => ("GET", format!("/api/v1/users/{id}?expand=orders"), None),
        (_, 73..81) => (
            "POST",
            "/api/v1/users".to_owned(),
            Some(format!("{{\"name\":\"user {id}\",\"plan\":\"{}\"}}", kind.as_str()).into_bytes()),
        ),
        (Kind::Paid, 81..86) => ("GET", "/api/admin/stats".to_owned(), None),
        _ => ("GET", format!("/api/payments/inv-{id}"), None),
    };
    Draft {
        kind,
        at_ns,
        client: user.identity.subject.clone(),
        method,
        target,
        user_agent: USER_AGENTS[rng.usize(0..USER_AGENTS.len())],
        body,
        credential: Some(bearer(user.identity.clone(), rng.i64(60..3_600), None)),
    }
}

fn service_identity() -> Identity {
    Identity {
        subject: "svc-nightly-report".into(),
        tenant: Some("internal".into()),
        scopes: vec!["users:read".into()],
        tier: Some("paid".into()),
        ..Identity::default()
    }
}

fn buggy_identity() -> Identity {
    Identity {
        subject: "free-user-buggy".into(),
        tenant: Some("free".into()),
        scopes: vec!["users:read".into()],
        tier: Some("free".into()),
        ..Identity::default()
    }
}

/// How many requests each kind gets: the fixed shares, and the rest split 60/40 paid/free.
pub fn counts(requests: usize) -> BTreeMap<Kind, usize> {
    let mut out = BTreeMap::new();
    let mut special = 0;
    for kind in Kind::ALL {
        if let Some(percent) = kind.percent() {
            let n = requests * percent / 100;
            special += n;
            out.insert(kind, n);
        }
    }
    let rest = requests - special;
    let paid = rest * 6 / 10;
    out.insert(Kind::Paid, paid);
    out.insert(Kind::Free, rest - paid);
    out
}

/// Generates the recording: lines in time order, ids `KIND-NNNNN` numbered in that order.
pub fn generate(options: &GenerateOptions) -> Vec<Generated> {
    let mut rng = fastrand::Rng::with_seed(options.seed);
    let span_ns = u64::try_from(options.span.as_nanos())
        .unwrap_or(u64::MAX)
        .max(1);
    let counts = counts(options.requests);
    let n = |kind: Kind| counts.get(&kind).copied().unwrap_or(0);
    let paid = users("paid", PAID_USERS);
    let free = users("free", FREE_USERS);
    let mut drafts: Vec<Draft> = Vec::with_capacity(options.requests);

    for (kind, users) in [(Kind::Paid, &paid), (Kind::Free, &free)] {
        for _ in 0..n(kind) {
            let at = day_time(&mut rng, span_ns);
            let user = pick(&mut rng, users);
            drafts.push(steady(&mut rng, kind, user, at));
        }
    }

    // The cron storm: an export job walking the users, within 3 s at 02:00.
    let storm_ns = 3_000_000_000;
    let storm_start = at_hour(2.0, storm_ns, span_ns);
    for i in 0..n(Kind::Cron) {
        drafts.push(Draft {
            kind: Kind::Cron,
            at_ns: storm_start + rng.u64(0..storm_ns.min(span_ns)),
            client: "svc-nightly-report".into(),
            method: "GET",
            target: format!("/api/v1/users/{}", i + 1),
            user_agent: "report-exporter/1.0",
            body: None,
            credential: Some(bearer(service_identity(), 900, None)),
        });
    }

    // The buggy retry loop: the same request every ~25 ms, from 15:00.
    let mut at = at_hour(15.0, 25_000_000 * n(Kind::Retry) as u64, span_ns);
    for _ in 0..n(Kind::Retry) {
        drafts.push(Draft {
            kind: Kind::Retry,
            at_ns: at,
            client: "free-user-buggy".into(),
            method: "GET",
            target: "/api/v1/users/42".into(),
            user_agent: "app-android/3.9",
            body: None,
            credential: Some(bearer(buggy_identity(), 1_200, None)),
        });
        at += rng.u64(20_000_000..30_000_000);
    }

    // Over-quota bursts: three free users, each far above the free tier for 6 s; the second one
    // on v2, where the beta's own limit applies too.
    let bursts = [
        (10.0, 4, "/api/v1/users"),
        (12.5, 16, "/api/v2/users"),
        (19.0, 32, "/api/v1/users"),
    ];
    let burst_ns = 6_000_000_000;
    let per_burst = n(Kind::OverQuota) / bursts.len();
    for (b, (hour, user, prefix)) in bursts.iter().enumerate() {
        let start = at_hour(*hour, burst_ns, span_ns);
        let count = if b + 1 == bursts.len() {
            n(Kind::OverQuota) - per_burst * (bursts.len() - 1)
        } else {
            per_burst
        };
        let identity = &free[*user].identity;
        for _ in 0..count {
            drafts.push(Draft {
                kind: Kind::OverQuota,
                at_ns: start + rng.u64(0..burst_ns.min(span_ns)),
                client: identity.subject.clone(),
                method: "GET",
                target: format!("{prefix}/{}", rng.u32(1..5_000)),
                user_agent: "python-requests/2.32",
                body: None,
                credential: Some(bearer(identity.clone(), 1_800, None)),
            });
        }
    }

    // Bad tokens, over the day, claiming to be one of the steady users.
    for i in 0..n(Kind::BadToken) {
        let at = day_time(&mut rng, span_ns);
        let users = if rng.bool() { &paid } else { &free };
        let user = pick(&mut rng, users);
        let reason = BAD_TOKENS[i % BAD_TOKENS.len()];
        let expires = if reason == "token-expired" {
            -rng.i64(60..86_400)
        } else {
            rng.i64(60..3_600)
        };
        drafts.push(Draft {
            kind: Kind::BadToken,
            at_ns: at,
            client: user.identity.subject.clone(),
            method: "GET",
            target: format!("/api/v1/users/{}", rng.u32(1..5_000)),
            user_agent: USER_AGENTS[rng.usize(0..USER_AGENTS.len())],
            body: None,
            credential: Some(bearer(user.identity.clone(), expires, Some(reason))),
        });
    }

    // Paths no API serves: scanners without a token, clients with stale links with one.
    for _ in 0..n(Kind::UnknownRoute) {
        let at = day_time(&mut rng, span_ns);
        let path = UNKNOWN_PATHS[rng.usize(0..UNKNOWN_PATHS.len())];
        let (client, credential) = if rng.bool() {
            let user = pick(&mut rng, &paid);
            (
                user.identity.subject.clone(),
                Some(bearer(user.identity.clone(), 1_800, None)),
            )
        } else {
            ("-".to_owned(), None)
        };
        drafts.push(Draft {
            kind: Kind::UnknownRoute,
            at_ns: at,
            client,
            method: "GET",
            target: path.to_owned(),
            user_agent: "curl/8.5",
            body: None,
            credential,
        });
    }

    // Time order; a stable sort keeps same-time requests in the order they were made.
    drafts.sort_by_key(|d| d.at_ns);
    drafts
        .into_iter()
        .enumerate()
        .map(|(i, d)| Generated {
            kind: d.kind,
            line: line(i + 1, d, options.start_unix_micros),
        })
        .collect()
}

fn line(number: usize, draft: Draft, start_unix_micros: u64) -> RecordingLine {
    let mut headers = vec![
        ("host".to_owned(), HOST.to_owned()),
        ("user-agent".to_owned(), draft.user_agent.to_owned()),
    ];
    if draft.credential.is_some() {
        headers.push(("authorization".to_owned(), REDACTED.to_owned()));
    }
    let body_len = draft.body.as_ref().map_or(0, Vec::len) as u64;
    if draft.body.is_some() {
        headers.push(("content-type".to_owned(), "application/json".to_owned()));
        headers.push(("content-length".to_owned(), body_len.to_string()));
    }
    RecordingLine {
        v: FORMAT_VERSION,
        id: format!("{}-{number:05}", draft.kind.as_str()),
        unix_micros: start_unix_micros + draft.at_ns / 1_000,
        // Anonymous scanners have no identity to be partitioned by: the replayer decides.
        client: (draft.client != "-").then_some(draft.client),
        record: None,
        request: RecordedRequest {
            method: draft.method.to_owned(),
            target: draft.target,
            version: "HTTP/1.1".to_owned(),
            headers,
            body_base64: draft.body.as_ref().map(|b| STANDARD.encode(b)),
            body_len,
            body_truncated: false,
            connection: None,
            tls: None,
        },
        credentials: draft.credential.into_iter().collect(),
        response: None,
    }
}

/// Writes the lines, one JSON object each.
pub fn write_lines(generated: &[Generated], out: &mut impl Write) -> std::io::Result<()> {
    for g in generated {
        serde_json::to_writer(&mut *out, &g.line)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Requests per kind.
pub fn mix(generated: &[Generated]) -> BTreeMap<Kind, usize> {
    let mut out = BTreeMap::new();
    for g in generated {
        *out.entry(g.kind).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(options: &GenerateOptions) -> Vec<u8> {
        let mut out = Vec::new();
        write_lines(&generate(options), &mut out).expect("written");
        out
    }

    #[test]
    fn the_same_seed_gives_the_same_bytes_and_another_seed_others() {
        let options = GenerateOptions {
            requests: 2_000,
            ..GenerateOptions::default()
        };
        assert_eq!(bytes(&options), bytes(&options));
        let other = GenerateOptions {
            seed: 12,
            ..options.clone()
        };
        assert_ne!(bytes(&options), bytes(&other));
    }

    #[test]
    fn the_mix_has_every_kind_in_its_share() {
        let generated = generate(&GenerateOptions::default());
        assert_eq!(generated.len(), 10_000);
        let mix = mix(&generated);
        let within = |kind: Kind, low: usize, high: usize| {
            let n = mix.get(&kind).copied().unwrap_or(0);
            assert!((low..=high).contains(&n), "{kind:?}: {n}");
        };
        within(Kind::Paid, 4_800, 5_100);
        within(Kind::Free, 3_200, 3_400);
        within(Kind::Cron, 550, 650);
        within(Kind::Retry, 350, 450);
        within(Kind::OverQuota, 350, 450);
        within(Kind::BadToken, 150, 250);
        within(Kind::UnknownRoute, 150, 250);
    }

    #[test]
    fn lines_are_in_time_order_with_unique_ids_and_redacted_bearer_tokens() {
        let generated = generate(&GenerateOptions::default());
        let mut ids = std::collections::BTreeSet::new();
        let mut last = 0;
        for g in &generated {
            let line = &g.line;
            assert_eq!(line.v, FORMAT_VERSION);
            assert!(line.record.is_none());
            assert!(ids.insert(line.id.clone()), "{} twice", line.id);
            assert_eq!(Kind::of_id(&line.id), Some(g.kind));
            assert!(line.unix_micros >= last);
            last = line.unix_micros;
            let auth = line
                .request
                .headers
                .iter()
                .find(|(name, _)| name == "authorization");
            match (auth, line.credentials.as_slice()) {
                (Some((_, value)), [credential]) => {
                    assert_eq!(value, REDACTED);
                    assert_eq!(credential.kind, CredentialKind::Bearer);
                    assert_eq!(
                        credential.place,
                        CredentialPlace::Header("authorization".into())
                    );
                    assert_eq!(credential.scheme.as_deref(), Some("Bearer"));
                    let tier = credential.identity.as_ref().and_then(|i| i.tier.as_deref());
                    assert!(matches!(tier, Some("paid" | "free")), "{}", line.id);
                }
                (None, []) => assert_eq!(g.kind, Kind::UnknownRoute, "{}", line.id),
                other => panic!("{}: {other:?}", line.id),
            }
        }
        let span = last - DEFAULT_START_UNIX_MICROS;
        assert!(span <= 600_000_000, "the day fits the span: {span} µs");
    }

    #[test]
    fn the_day_has_a_night_trough_and_a_midday_peak() {
        let generated = generate(&GenerateOptions::default());
        // Steady traffic per compressed hour (25 s of the 10 min).
        let mut per_hour = [0usize; 24];
        for g in generated
            .iter()
            .filter(|g| matches!(g.kind, Kind::Paid | Kind::Free))
        {
            let hour = (g.line.unix_micros - DEFAULT_START_UNIX_MICROS) / 25_000_000;
            per_hour[hour.min(23) as usize] += 1;
        }
        assert!(per_hour[3] * 5 < per_hour[12], "{per_hour:?}");
        assert!(
            per_hour[7] < per_hour[10],
            "the morning ramps up: {per_hour:?}"
        );
    }

    #[test]
    fn the_storms_are_short_and_from_one_identity() {
        let generated = generate(&GenerateOptions::default());
        let times = |kind: Kind| -> Vec<u64> {
            generated
                .iter()
                .filter(|g| g.kind == kind)
                .map(|g| g.line.unix_micros)
                .collect()
        };
        let cron = times(Kind::Cron);
        assert!(cron.last().expect("cron") - cron[0] <= 3_000_000);
        let clients: std::collections::BTreeSet<_> = generated
            .iter()
            .filter(|g| g.kind == Kind::Cron)
            .map(|g| g.line.client.clone())
            .collect();
        assert_eq!(clients.len(), 1);
        let targets: std::collections::BTreeSet<_> = generated
            .iter()
            .filter(|g| g.kind == Kind::Retry)
            .map(|g| g.line.request.target.clone())
            .collect();
        assert_eq!(targets.len(), 1, "the retry loop re-sends one request");
        let invalid: std::collections::BTreeSet<_> = generated
            .iter()
            .filter(|g| g.kind == Kind::BadToken)
            .filter_map(|g| g.line.credentials[0].invalid.clone())
            .collect();
        assert_eq!(invalid.len(), 3, "{invalid:?}");
    }

    #[test]
    fn tiny_and_empty_recordings_do_not_panic() {
        for requests in [0, 1, 7] {
            let generated = generate(&GenerateOptions {
                requests,
                span: Duration::from_secs(1),
                ..GenerateOptions::default()
            });
            assert_eq!(generated.len(), requests);
        }
    }
}
