//! Raw → compiled: resolves names, parses addresses, patterns and header names, and checks meaning.
//! Returns every problem found as `(field path, message)`; [`super::check`] adds file and line.

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Method, StatusCode};

use super::compiled::*;
use super::raw::*;
use crate::routing::pattern::RoutePattern;
use crate::routing::table::{RouteTable, route_order};
use crate::vocab::fields;

pub use super::problem::Problem;

/// Headers that identify the caller to upstreams. Only `mutate_request` may set them, from a
/// verified identity; anything a client sends under these names is removed.
pub const IDENTITY_HEADERS: [&str; 3] = ["x-user-id", "x-tenant-id", "x-auth-scopes"];

pub fn compile(raw: &RawConfig, source: &str, text: &str) -> Result<Runtime, Vec<Problem>> {
    let mut problems = Vec::new();

    let mut listener_names = HashSet::new();
    for (i, l) in raw.listeners.iter().enumerate() {
        if !listener_names.insert(l.name.as_str()) {
            problems.push((
                format!("listeners[{i}].name"),
                format!("duplicate listener name `{}`", l.name),
            ));
        }
    }
    let listeners = raw
        .listeners
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let tls = super::tls::compile_listener_tls(
                l.tls.as_ref(),
                &format!("listeners[{i}].tls"),
                source,
                &mut problems,
            );
            parse_addr(
                &l.address,
                &format!("listeners[{i}].address"),
                &mut problems,
            )
            .map(|address| ListenerConfig {
                name: l.name.clone(),
                address,
                tls,
                paths: l.paths,
            })
        })
        .collect();

    let admin = raw
        .admin
        .as_ref()
        .and_then(|a| parse_addr(&a.address, "admin.address", &mut problems));

    if raw.limits.max_stream_duration == Some(std::time::Duration::ZERO) {
        problems.push((
            "limits.max_stream_duration".into(),
            "a stream needs more than 0s: leave the field out to not bound streams".into(),
        ));
    }

    check_protective_limits(&raw.limits, &mut problems);

    let mut internal_headers: Vec<HeaderName> = IDENTITY_HEADERS
        .iter()
        .map(|h| HeaderName::from_static(h))
        .collect();
    for (i, name) in raw.internal_headers.iter().enumerate() {
        match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(h) if !internal_headers.contains(&h) => internal_headers.push(h),
            Ok(_) => {}
            Err(_) => problems.push((
                format!("internal_headers[{i}]"),
                format!("`{name}` is not a valid header name"),
            )),
        }
    }

    let recording = raw
        .recording
        .as_ref()
        .filter(|r| r.enabled)
        .and_then(|r| compile_recording(r, source, &mut problems));

    let cors = raw
        .cors
        .as_ref()
        .and_then(|c| compile_cors(c, &mut problems));

    if raw.workers == Some(0) {
        problems.push((
            "workers".into(),
            "at least one worker thread serves requests; leave it out for one per core".into(),
        ));
    }
    let mut upstreams: HashMap<Arc<str>, Arc<Upstream>> = HashMap::new();
    for (name, up) in &raw.upstreams {
        let path = format!("upstreams.{name}");
        if up.instances.is_empty() {
            problems.push((
                format!("{path}.instances"),
                "an upstream needs at least one instance".into(),
            ));
        }
        let instances = up
            .instances
            .iter()
            .enumerate()
            .filter_map(|(i, inst)| {
                let field = match inst {
                    RawInstance::Address(_) => format!("{path}.instances[{i}]"),
                    RawInstance::Detailed(_) => format!("{path}.instances[{i}].address"),
                };
                let address = parse_addr(inst.address(), &field, &mut problems)?;
                let weight = match inst {
                    RawInstance::Address(_) => 1,
                    RawInstance::Detailed(d) => d.weight,
                };
                if weight == 0 {
                    problems.push((
                        format!("{path}.instances[{i}].weight"),
                        "weight must be at least 1".into(),
                    ));
                }
                let authority = address.to_string().parse().ok()?;
                Some(Instance {
                    address,
                    weight,
                    authority,
                })
            })
            .collect();
        let tls = super::tls::compile_upstream_tls(
            up.tls.as_ref(),
            &format!("{path}.tls"),
            source,
            &mut problems,
        );
        check_protocol(up, &path, &mut problems);
        if up.idle_timeout.is_zero() {
            problems.push((
                format!("{path}.idle_timeout"),
                "an upstream needs more than 0s to send its body's next bytes".into(),
            ));
        }
        let name: Arc<str> = Arc::from(name.as_str());
        upstreams.insert(
            name.clone(),
            Arc::new(Upstream {
                name,
                instances,
                connect_timeout: up.connect_timeout,
                request_timeout: up.request_timeout,
                idle_timeout: up.idle_timeout,
                resilience: super::resilience::compile_upstream(
                    super::resilience::RawUpstreamResilience {
                        load_balancing: up.load_balancing.as_ref(),
                        health_check: up.health_check.as_ref(),
                        outlier_ejection: up.outlier_ejection.as_ref(),
                        circuit_breaker: up.circuit_breaker.as_ref(),
                        retries: up.retries.as_ref(),
                        total_timeout: up.total_timeout,
                    },
                    &path,
                    &mut problems,
                ),
                protocol: up.protocol,
                http2: up.http2.clone(),
                scheme: if up.tls.is_some() {
                    http::uri::Scheme::HTTPS
                } else {
                    http::uri::Scheme::HTTP
                },
                tls,
            }),
        );
    }

    let mut routes = Vec::with_capacity(raw.routes.len());
    let mut seen_names: HashMap<&str, usize> = HashMap::new();
    for (i, r) in raw.routes.iter().enumerate() {
        if let Some(first) = seen_names.insert(r.name.as_str(), i) {
            problems.push((
                format!("routes[{i}].name"),
                format!(
                    "duplicate route name `{}` (first used by routes[{first}])",
                    r.name
                ),
            ));
        }
        if let Some(route) = compile_route(i, r, raw, &upstreams, &mut problems) {
            routes.push(Arc::new(route));
        }
    }

    let auth = super::auth::compile_auth(raw, source, &mut problems);

    if problems.is_empty() {
        check_shadowing(&routes, &mut problems);
        check_catch_all(&routes, &mut problems);
    }
    let route_names: Vec<&str> = raw.routes.iter().map(|r| r.name.as_str()).collect();
    let rate_limits = super::ratelimit::compile(
        &raw.rate_limits,
        &route_names,
        &auth.api_key_tiers,
        &mut problems,
    );

    if !problems.is_empty() {
        return Err(problems);
    }
    let mut response_fields_removed = fields::SOFTWARE_FIELDS.to_vec();
    for name in &internal_headers {
        if !response_fields_removed.contains(name) {
            response_fields_removed.push(name.clone());
        }
    }
    let mut request_fields_removed = internal_headers;
    for name in auth
        .credential_headers
        .iter()
        .chain(&fields::CLIENT_CERT_FIELDS)
    {
        if !request_fields_removed.contains(name) {
            request_fields_removed.push(name.clone());
        }
    }
    Ok(Runtime {
        source: source.to_string(),
        hash: content_hash(text),
        listeners,
        admin,
        limits: raw.limits.clone(),
        request_fields_removed,
        response_fields_removed,
        access_log: raw.access_log.clone(),
        workers: raw.workers,
        recording,
        cors,
        upstreams,
        routes: RouteTable::new(routes),
        auth,
        rate_limits,
    })
}

fn compile_route(
    i: usize,
    r: &RawRoute,
    raw: &RawConfig,
    upstreams: &HashMap<Arc<str>, Arc<Upstream>>,
    problems: &mut Vec<Problem>,
) -> Option<CompiledRoute> {
    let at = |field: &str| format!("routes[{i}].{field}");
    let before = problems.len();

    let pattern = RoutePattern::parse(&r.match_.path)
        .map_err(|e| problems.push((at("match.path"), e)))
        .ok();

    let mut methods = Vec::with_capacity(r.match_.methods.len());
    for (j, m) in r.match_.methods.iter().enumerate() {
        const KNOWN: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
        ];
        let upper = m.to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            // A typo such as `GETT` would otherwise be a valid extension method no client sends.
            Ok(m) if KNOWN.contains(&upper.as_str()) => methods.push(m),
            _ => problems.push((
                at(&format!("match.methods[{j}]")),
                format!("`{m}` is not an HTTP method (one of {})", KNOWN.join(", ")),
            )),
        }
    }

    let mut headers = Vec::new();
    for (name, value) in &r.match_.headers {
        match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(h) => headers.push((h, value_match(value))),
            Err(_) => problems.push((
                at(&format!("match.headers.{name}")),
                format!("`{name}` is not a valid header name"),
            )),
        }
    }
    let query = r
        .match_
        .query
        .iter()
        .map(|(k, v)| (k.clone(), value_match(v)))
        .collect();

    let action = match (&r.upstream, &r.respond) {
        (Some(name), None) => match upstreams.get(name.as_str()) {
            Some(up) => Some(RouteAction::Forward {
                upstream: up.clone(),
            }),
            None => {
                let known: Vec<&str> = raw.upstreams.keys().map(String::as_str).collect();
                problems.push((
                    at("upstream"),
                    format!(
                        "unknown upstream `{name}` (known: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
                None
            }
        },
        (None, Some(respond)) => match StatusCode::from_u16(respond.status) {
            Ok(status) if status.is_client_error() || status.is_server_error() => {
                Some(RouteAction::Respond {
                    status,
                    detail: Arc::from(
                        respond
                            .detail
                            .as_deref()
                            .unwrap_or("no route serves this path"),
                    ),
                })
            }
            _ => {
                problems.push((
                    at("respond.status"),
                    format!("`{}` is not a 4xx or 5xx status", respond.status),
                ));
                None
            }
        },
        (Some(_), Some(_)) => {
            problems.push((
                at("respond"),
                "a route either forwards to an `upstream` or `respond`s, not both".into(),
            ));
            None
        }
        (None, None) => {
            problems.push((
                format!("routes[{i}]"),
                "a route needs an `upstream` to forward to or a `respond` answer".into(),
            ));
            None
        }
    };

    let rewrite = r.rewrite.as_ref().map(|rw| {
        for (field, value) in [
            ("rewrite.strip_prefix", &rw.strip_prefix),
            ("rewrite.add_prefix", &rw.add_prefix),
        ] {
            if let Some(v) = value {
                if !v.starts_with('/') {
                    problems.push((at(field), format!("`{v}` must start with `/`")));
                }
            }
        }
        Rewrite {
            strip_prefix: rw
                .strip_prefix
                .as_ref()
                .map(|p| p.trim_end_matches('/').to_string()),
            add_prefix: rw.add_prefix.clone(),
        }
    });

    let deprecation = super::resilience::compile_deprecation(
        r.deprecation.as_ref(),
        &format!("routes[{i}]"),
        problems,
    );
    if r.max_concurrent_requests == Some(0) {
        problems.push((
            at("max_concurrent_requests"),
            "a route with room for 0 requests refuses all of them: leave the field out for no limit"
                .into(),
        ));
    }
    if r.websocket && r.respond.is_some() {
        problems.push((
            at("websocket"),
            "`websocket` applies to routes that forward to an `upstream`".into(),
        ));
    }
    if r.websocket && r.grpc {
        problems.push((
            at("grpc"),
            "a route serves gRPC or WebSocket upgrades, not both: gRPC never upgrades".into(),
        ));
    }

    if problems.len() != before {
        return None;
    }
    Some(CompiledRoute {
        name: Arc::from(r.name.as_str()),
        declaration_index: i,
        priority: r.priority,
        pattern: pattern?,
        template: Arc::from(r.match_.path.as_str()),
        methods,
        host: r.match_.host.as_ref().map(|h| h.to_ascii_lowercase()),
        headers,
        query,
        action: action?,
        rewrite,
        max_body_bytes: r.max_body_bytes.unwrap_or(raw.limits.max_body_bytes),
        max_concurrent_requests: r.max_concurrent_requests,
        websocket: r.websocket,
        forward_client_cert: r.forward_client_cert,
        grpc: r.grpc,
        deprecation,
    })
}

/// The limits that protect the gateway itself: a zero would refuse everything or cut everything
/// at once, which no one means — leaving the field out is how a limit is turned off.
fn check_protective_limits(limits: &RawLimits, problems: &mut Vec<Problem>) {
    for (field, value) in [
        ("tls_handshake_timeout", limits.tls_handshake_timeout),
        ("body_read_timeout", limits.body_read_timeout),
    ] {
        if value.is_zero() {
            problems.push((
                format!("limits.{field}"),
                "a timeout of 0s would cut every connection at once: give it a duration".into(),
            ));
        }
    }
    if limits.min_body_rate == Some(0) {
        problems.push((
            "limits.min_body_rate".into(),
            "a rate of 0 bytes per second requires nothing: leave the field out to not require a rate"
                .into(),
        ));
    }
    for (field, value) in [
        ("max_concurrent_requests", limits.max_concurrent_requests),
        ("max_connections", limits.max_connections),
    ] {
        if value == Some(0) {
            problems.push((
                format!("limits.{field}"),
                "a limit of 0 refuses everything: leave the field out for no limit".into(),
            ));
        }
    }
}

fn value_match(v: &str) -> ValueMatch {
    if v == "*" {
        ValueMatch::Present
    } else {
        ValueMatch::Exact(v.to_string())
    }
}

/// True when every request `b` accepts is accepted by `a` (ignoring the path).
fn attributes_cover(a: &CompiledRoute, b: &CompiledRoute) -> bool {
    let methods = a.methods.is_empty()
        || (!b.methods.is_empty() && b.methods.iter().all(|m| a.methods.contains(m)));
    let host = a.host.is_none() || a.host == b.host;
    let headers = a.headers.iter().all(|(name, m)| {
        b.headers
            .iter()
            .any(|(n, bm)| n == name && covers_value(m, bm))
    });
    let query = a.query.iter().all(|(name, m)| {
        b.query
            .iter()
            .any(|(n, bm)| n == name && covers_value(m, bm))
    });
    methods && host && headers && query
}

fn covers_value(a: &ValueMatch, b: &ValueMatch) -> bool {
    match a {
        ValueMatch::Present => true,
        ValueMatch::Exact(_) => a == b,
    }
}

/// A route that can never match: an earlier-ranked route accepts everything it accepts.
fn check_shadowing(routes: &[Arc<CompiledRoute>], problems: &mut Vec<Problem>) {
    let mut ranked: Vec<&Arc<CompiledRoute>> = routes.iter().collect();
    ranked.sort_by(|a, b| route_order(a.as_ref(), b.as_ref()));
    for (pos, b) in ranked.iter().enumerate() {
        if let Some(a) = ranked[..pos]
            .iter()
            .find(|a| a.pattern.covers(&b.pattern) && attributes_cover(a, b))
        {
            problems.push((
                format!("routes[{}]", b.declaration_index),
                format!(
                    "route `{}` can never match: `{}` (routes[{}], priority {}) ranks higher and accepts every request it would",
                    b.name, a.name, a.declaration_index, a.priority
                ),
            ));
        }
    }
}

/// Every route must sit under a catch-all: an unconstrained prefix route (any method, host, header
/// and query) whose pattern covers it, so a near-miss is answered on purpose, not by accident.
fn check_catch_all(routes: &[Arc<CompiledRoute>], problems: &mut Vec<Problem>) {
    let catch_alls: Vec<&Arc<CompiledRoute>> = routes
        .iter()
        .filter(|r| {
            r.pattern.is_prefix()
                && r.methods.is_empty()
                && r.host.is_none()
                && r.headers.is_empty()
                && r.query.is_empty()
        })
        .collect();
    let mut reported = HashSet::new();
    for r in routes {
        let covered = catch_alls.iter().any(|c| c.pattern.covers(&r.pattern));
        if !covered && reported.insert(r.declaration_index) {
            problems.push((
                format!("routes[{}].match.path", r.declaration_index),
                format!(
                    "no catch-all route covers `{}`: add an unconstrained prefix route (e.g. `path: /*` with `respond: {{status: 404}}`) so unmatched requests are answered on purpose",
                    r.template
                ),
            ));
        }
    }
    if routes.is_empty() {
        problems.push((
            "routes".into(),
            "no routes: add at least a catch-all route".into(),
        ));
    }
}

fn compile_cors(c: &RawCors, problems: &mut Vec<Problem>) -> Option<CorsPolicy> {
    let any_origin = c.allowed_origins.iter().any(|o| o == "*");
    if any_origin && c.allow_credentials {
        problems.push((
            "cors.allowed_origins".into(),
            "`*` cannot be combined with allow_credentials: browsers reject it; list exact origins"
                .into(),
        ));
        return None;
    }
    let join = |items: &[String], field: &str, problems: &mut Vec<Problem>| {
        if items.is_empty() {
            return None;
        }
        HeaderValue::from_str(&items.join(", "))
            .map_err(|_| problems.push((format!("cors.{field}"), "invalid header value".into())))
            .ok()
    };
    if c.allowed_methods.is_empty() {
        // Without this, `join` answers None and CORS would be switched off without a word.
        problems.push((
            "cors.allowed_methods".into(),
            "list at least one method, or leave the field out for the default (GET, HEAD, POST, PUT, PATCH, DELETE)".into(),
        ));
        return None;
    }
    let allowed_methods = join(&c.allowed_methods, "allowed_methods", problems)?;
    Some(CorsPolicy {
        any_origin,
        allowed_origins: c.allowed_origins.clone(),
        allowed_methods,
        allowed_headers: join(&c.allowed_headers, "allowed_headers", problems),
        expose_headers: join(&c.expose_headers, "expose_headers", problems),
        allow_credentials: c.allow_credentials,
        max_age: c.max_age.map(|d| HeaderValue::from(d.as_secs())),
    })
}

fn compile_recording(
    r: &RawRecording,
    source: &str,
    problems: &mut Vec<Problem>,
) -> Option<RecordingConfig> {
    let before = problems.len();
    let path = match r.path.as_deref() {
        None | Some("") => {
            problems.push((
                "recording.path".into(),
                "required when recording is on: the file recorded lines are appended to".into(),
            ));
            None
        }
        Some(path) => {
            let resolved = super::files::resolve(source, path);
            let dir = resolved
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new("."));
            if !dir.is_dir() {
                problems.push((
                    "recording.path".into(),
                    format!("the directory `{}` does not exist", dir.display()),
                ));
            }
            Some(resolved)
        }
    };
    if !(0.0..=1.0).contains(&r.sample) {
        problems.push((
            "recording.sample".into(),
            format!(
                "`{}` is not a share of requests: use a number from 0 to 1",
                r.sample
            ),
        ));
    }
    if r.rotate_bytes != 0 && r.rotate_bytes < 4096 {
        problems.push((
            "recording.rotate_bytes".into(),
            "rotate at 4096 bytes or more, or 0 to never rotate".into(),
        ));
    }
    if r.rotate_bytes != 0 && r.keep == 0 {
        problems.push((
            "recording.keep".into(),
            "keep at least 1 rotated file, or set `rotate_bytes: 0` to never rotate".into(),
        ));
    }
    if r.queue == 0 {
        problems.push(("recording.queue".into(), "must be at least 1".into()));
    }
    let max_body_bytes = usize::try_from(r.max_body_bytes).unwrap_or(usize::MAX);
    let mut redact_headers = Vec::new();
    for (i, name) in r.redact_headers.iter().enumerate() {
        match HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()) {
            Ok(h) => redact_headers.push(h),
            Err(_) => problems.push((
                format!("recording.redact_headers[{i}]"),
                format!("`{name}` is not a valid header name"),
            )),
        }
    }
    if problems.len() != before {
        return None;
    }
    // The draw is a uniform u64; `sample` of them fall below the threshold.
    let always = r.sample >= 1.0;
    let sample_below = if always {
        u64::MAX
    } else {
        (r.sample * 18_446_744_073_709_551_616.0) as u64
    };
    Some(RecordingConfig {
        path: path?,
        sample: r.sample,
        sample_below,
        always,
        max_body_bytes,
        rotate_bytes: r.rotate_bytes,
        keep: r.keep,
        redact_headers,
        responses: r.responses,
        queue: r.queue,
    })
}

fn parse_addr(text: &str, path: &str, problems: &mut Vec<Problem>) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    // `localhost:9000` is resolved once here, not per request.
    match text.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(addr)) => Some(addr),
        _ => {
            problems.push((
                path.to_string(),
                format!("`{text}` is not a `host:port` address"),
            ));
            None
        }
    }
}

/// FNV-1a over the source text: stable across runs and platforms, enough to tell two configs apart.
pub fn content_hash(text: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.as_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The protocol and TLS must agree: ALPN (`h2`, `auto`) needs TLS, and `h2c` is cleartext by name.
fn check_protocol(up: &RawUpstream, path: &str, problems: &mut Vec<(String, String)>) {
    use super::compiled::UpstreamProtocol;
    let tls = up.tls.is_some();
    let message = match up.protocol {
        UpstreamProtocol::H2 if !tls => {
            Some("`h2` is HTTP/2 agreed over TLS: add `tls`, or use `h2c` for cleartext HTTP/2")
        }
        UpstreamProtocol::Auto if !tls => Some(
            "`auto` picks the protocol by ALPN, which needs `tls`: use `http1` or `h2c` for a cleartext upstream",
        ),
        UpstreamProtocol::H2c if tls => {
            Some("`h2c` is cleartext HTTP/2: with `tls`, use `h2` (or `auto`)")
        }
        _ => None,
    };
    if let Some(message) = message {
        problems.push((format!("{path}.protocol"), message.into()));
    }
    if up.http2.max_concurrent_streams == 0 {
        problems.push((
            format!("{path}.http2.max_concurrent_streams"),
            "a connection must carry at least one stream".into(),
        ));
    }
}
