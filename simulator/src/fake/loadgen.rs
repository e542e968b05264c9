//! Maximum-rate load: `connections` workers, each on its own keep-alive connection, sending the
//! next request as soon as the last one is answered. This is how the load generator is compared
//! with wrk or oha against a fixed target: if it cannot saturate a target they can, latencies
//! would measure the generator, not the gateway. (Scenario phases use the pooled client of
//! `scenario::run`, since open-model arrivals need more connections than workers.)
//!
//! The report tells what happened, as oha and wrk do: every status seen, every failure by kind
//! (refused, reset, timeout, TLS, …) with the first message of each, and latency quantiles of
//! the answered requests. A run in which nothing succeeded is reported as such, not as a rate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use http_body_util::{BodyExt, Full};
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

/// Latencies above this (a minute, in µs) are clamped: the histogram's upper bound.
const MAX_LATENCY_US: u64 = 60_000_000;

/// After a failed connect a worker pauses this long, so a closed port is not a busy loop.
const RECONNECT_PAUSE: Duration = Duration::from_millis(10);

/// How a target's certificate is checked (https only).
#[derive(Debug, Clone, Default)]
pub enum TlsTrust {
    /// The platform's trusted roots.
    #[default]
    Platform,
    /// The CA certificates of this PEM file (for self-signed or private-CA targets).
    CaFile(PathBuf),
    /// Any certificate at all: the handshake still happens and still costs what it costs, but
    /// nothing is verified. For measuring, never for trusting.
    Insecure,
}

/// What to send, where, and for how long.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub url: String,
    pub connections: usize,
    pub duration: Duration,
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// One request (connect included) that takes longer counts as a `timeout` error.
    pub timeout: Duration,
    pub tls: TlsTrust,
}

impl LoadOptions {
    /// GET `url` with no headers or body, a 10 s timeout and the platform's roots.
    pub fn get(url: &str, connections: usize, duration: Duration) -> LoadOptions {
        LoadOptions {
            url: url.to_string(),
            connections,
            duration,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout: Duration::from_secs(10),
            tls: TlsTrust::Platform,
        }
    }
}

/// Parses a `--header` argument, `Name: value` (the space after the colon is optional).
pub fn parse_header(text: &str) -> Result<(HeaderName, HeaderValue), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not a header: write it as `Name: value`"))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .map_err(|_| format!("`{}` is not a valid header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim())
        .map_err(|_| format!("the value of header `{name}` is not valid in a header"))?;
    Ok((name, value))
}

/// Why a request got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Nothing listens there (the connect was refused).
    Refused,
    /// The peer closed or reset the connection before the response was complete.
    Reset,
    /// No response (or no connection) within the timeout.
    Timeout,
    /// The TLS handshake failed: an untrusted or mismatched certificate, or a peer not speaking TLS.
    Tls,
    /// The peer answered something that is not HTTP/1.1.
    Protocol,
    /// Anything else (a name that does not resolve, an unreachable network, …).
    Other,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Refused => "refused",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Other => "other",
        }
    }
}

/// How many errors of one kind, and the first one's message (they are usually all alike).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ErrorCount {
    pub count: u64,
    pub first: String,
}

/// Latency of answered requests, in microseconds, from an HdrHistogram (3 significant digits).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Quantiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub mean: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub url: String,
    pub method: String,
    pub connections: usize,
    pub elapsed_seconds: f64,
    /// Requests attempted: responses plus errors.
    pub requests: u64,
    /// Requests answered with an HTTP response, whatever its status.
    pub responses: u64,
    /// Responses with a 2xx or 3xx status.
    pub succeeded: u64,
    /// Responses per second.
    pub rate_per_second: f64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Failed requests by kind.
    pub errors: BTreeMap<ErrorKind, ErrorCount>,
    pub latency_us: Quantiles,
}

impl LoadReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().map(|e| e.count).sum()
    }

    /// Console text: one fact per line, names first, so it reads and greps alike.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "target     {} {} ({} connections)\n",
            self.method, self.url, self.connections
        ));
        out.push_str(&format!(
            "requests   {} in {:.2}s: {} responses ({:.0}/s), {} succeeded (2xx/3xx), {} errors\n",
            self.requests,
            self.elapsed_seconds,
            self.responses,
            self.rate_per_second,
            self.succeeded,
            self.error_count()
        ));
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(status, n)| format!("{status}: {n}"))
            .collect();
        out.push_str(&format!(
            "statuses   {}\n",
            if statuses.is_empty() {
                "none".to_string()
            } else {
                statuses.join(", ")
            }
        ));
        if self.errors.is_empty() {
            out.push_str("errors     none\n");
        } else {
            for (i, (kind, e)) in self.errors.iter().enumerate() {
                out.push_str(&format!(
                    "{}{}: {} (first: {})\n",
                    if i == 0 { "errors     " } else { "           " },
                    kind.name(),
                    e.count,
                    e.first
                ));
            }
        }
        let q = &self.latency_us;
        if self.responses > 0 {
            out.push_str(&format!(
                "latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {}\n",
                micros(q.p50),
                micros(q.p90),
                micros(q.p99),
                micros(q.p99_9),
                micros(q.max),
                micros(q.mean.round() as u64)
            ));
        } else {
            out.push_str("latency    none (no responses)\n");
        }
        out
    }
}

/// `850µs`, `12.3ms`, `1.20s`: short enough to line up, precise enough to compare.
fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

/// Where and how to connect, resolved once from the URL.
struct Target {
    /// `host:port` to connect to.
    address: String,
    /// The `Host` header value.
    authority: String,
    path: String,
    /// Set for https: the config and the name the certificate must carry.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl Target {
    fn resolve(url: &str, trust: &TlsTrust) -> Result<Target, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(format!("`{url}`: scheme `{other}` is not http or https")),
            None => {
                return Err(format!(
                    "`{url}` has no scheme: write http://… or https://…"
                ));
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("`{url}` names no host"))?;
        let host = authority.host();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
        let tls = if https {
            // ServerName wants an IPv6 address without its URL brackets.
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(bare.to_string())
                .map_err(|e| format!("`{host}` is not a name a certificate can carry: {e}"))?;
            let config = client_config(trust)?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Target {
            address: format!("{host}:{port}"),
            authority: authority.as_str().to_string(),
            path,
            tls,
        })
    }
}

fn client_config(trust: &TlsTrust) -> Result<ClientConfig, String> {
    use gateway::identity::tls;
    let mut config = match trust {
        TlsTrust::Platform => tls::client_config(tls::platform_roots(), None)?,
        TlsTrust::CaFile(path) => tls::client_config(tls::root_store(path)?, None)?,
        TlsTrust::Insecure => {
            let provider = tls::provider();
            ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                .with_no_client_auth()
        }
    };
    // The workers speak HTTP/1.1; a server that would pick h2 must be told so.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `--insecure`: accepts any certificate, but still checks the handshake signatures, so the
/// TLS work measured is the same as with verification.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What one worker saw.
struct Tally {
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorKind, ErrorCount>,
    latencies: Histogram<u64>,
}

impl Tally {
    fn new() -> Result<Tally, String> {
        Ok(Tally {
            statuses: BTreeMap::new(),
            errors: BTreeMap::new(),
            latencies: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .map_err(|e| e.to_string())?,
        })
    }

    fn error(&mut self, kind: ErrorKind, message: String) {
        self.errors
            .entry(kind)
            .and_modify(|e| e.count += 1)
            .or_insert(ErrorCount {
                count: 1,
                first: message,
            });
    }

    fn merge(&mut self, other: Tally) -> Result<(), String> {
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_default() += n;
        }
        for (kind, e) in other.errors {
            self.errors
                .entry(kind)
                .and_modify(|mine| mine.count += e.count)
                .or_insert(e);
        }
        self.latencies
            .add(other.latencies)
            .map_err(|e| e.to_string())
    }
}

/// Runs the load and reports it. `Err` only for options that cannot work (a bad URL, an
/// unreadable CA file); failures against the target are counted in the report.
pub async fn run(options: &LoadOptions) -> Result<LoadReport, String> {
    let target = Arc::new(Target::resolve(&options.url, &options.tls)?);
    let started = tokio::time::Instant::now();
    let deadline = started + options.duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..options.connections.max(1) {
        let target = target.clone();
        let options = options.clone();
        workers.spawn(async move { worker(&target, &options, deadline).await });
    }
    let mut total = Tally::new()?;
    while let Some(done) = workers.join_next().await {
        total.merge(done.map_err(|e| e.to_string())??)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let responses: u64 = total.statuses.values().sum();
    let succeeded = total
        .statuses
        .iter()
        .filter(|(status, _)| (200..400).contains(*status))
        .map(|(_, n)| n)
        .sum();
    let errors: u64 = total.errors.values().map(|e| e.count).sum();
    let h = &total.latencies;
    let latency_us = if responses > 0 {
        Quantiles {
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    } else {
        Quantiles::default()
    };
    Ok(LoadReport {
        url: options.url.clone(),
        method: options.method.to_string(),
        connections: options.connections.max(1),
        elapsed_seconds: elapsed,
        requests: responses + errors,
        responses,
        succeeded,
        rate_per_second: responses as f64 / elapsed.max(f64::EPSILON),
        statuses: total.statuses,
        errors: total.errors,
        latency_us,
    })
}

/// Writes the report as pretty JSON.
pub fn write_json(report: &LoadReport, path: &Path) -> Result<(), String> {
    let body = serde_json::to_vec_pretty(report).map_err(|e| e.to_string())?;
    std::fs::write(path, body).map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive connection owned by one worker, as wrk and oha do: no pool lookups or locks
/// between requests. A connection that fails is replaced.
async fn worker(
    target: &Target,
    options: &LoadOptions,
    deadline: tokio::time::Instant,
) -> Result<Tally, String> {
    let mut tally = Tally::new()?;
    let mut sender: Option<Sender> = None;
    while tokio::time::Instant::now() < deadline {
        let t0 = tokio::time::Instant::now();
        if sender.is_none() {
            match tokio::time::timeout(options.timeout, connect(target)).await {
                Ok(Ok(s)) => sender = Some(s),
                Ok(Err((kind, message))) => {
                    tally.error(kind, message);
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    continue;
                }
                Err(_) => {
                    tally.error(
                        ErrorKind::Timeout,
                        format!("no connection within {:?}", options.timeout),
                    );
                    continue;
                }
            }
        }
        let Some(s) = sender.as_mut() else { continue };
        let mut request = http::Request::builder()
            .method(options.method.clone())
            .uri(target.path.as_str())
            .body(Full::new(options.body.clone()))
            .map_err(|e| e.to_string())?;
        *request.headers_mut() = options.headers.clone();
        if !request.headers().contains_key(http::header::HOST) {
            let host = HeaderValue::from_str(&target.authority).map_err(|e| e.to_string())?;
            request.headers_mut().insert(http::header::HOST, host);
        }
        let exchange = async {
            let response = s.send_request(request).await.map_err(classify_hyper)?;
            let status = response.status().as_u16();
            response
                .into_body()
                .collect()
                .await
                .map_err(classify_hyper)?;
            Ok::<u16, (ErrorKind, String)>(status)
        };
        match tokio::time::timeout(options.timeout, exchange).await {
            Ok(Ok(status)) => {
                *tally.statuses.entry(status).or_default() += 1;
                let us = u64::try_from(t0.elapsed().as_micros()).unwrap_or(MAX_LATENCY_US);
                let _ = tally.latencies.record(us.clamp(1, MAX_LATENCY_US));
            }
            Ok(Err((kind, message))) => {
                tally.error(kind, message);
                sender = None;
            }
            Err(_) => {
                tally.error(
                    ErrorKind::Timeout,
                    format!("no response within {:?}", options.timeout),
                );
                sender = None;
            }
        }
    }
    Ok(tally)
}

async fn connect(target: &Target) -> Result<Sender, (ErrorKind, String)> {
    let stream = tokio::net::TcpStream::connect(target.address.as_str())
        .await
        .map_err(|e| (classify_io(&e), format!("connect {}: {e}", target.address)))?;
    let _ = stream.set_nodelay(true);
    match &target.tls {
        None => handshake(stream).await,
        Some((connector, name)) => {
            let stream = connector
                .connect(name.clone(), stream)
                .await
                .map_err(|e| (ErrorKind::Tls, format!("TLS handshake: {e}")))?;
            handshake(stream).await
        }
    }
}

async fn handshake<S>(stream: S) -> Result<Sender, (ErrorKind, String)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(classify_hyper)?;
    tokio::spawn(connection);
    Ok(sender)
}

/// The kind of a failed connect or read (shared with replay's sender).
pub fn classify_io(e: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match e.kind() {
        Io::ConnectionRefused => ErrorKind::Refused,
        Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => {
            ErrorKind::Reset
        }
        Io::TimedOut => ErrorKind::Timeout,
        _ => ErrorKind::Other,
    }
}

/// The kind of a failed HTTP exchange and its message (shared with replay's sender).
pub fn classify_hyper(e: hyper::Error) -> (ErrorKind, String) {
    let kind = if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_parse() || e.is_parse_status() || e.is_parse_too_large() {
        ErrorKind::Protocol
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        ErrorKind::Reset
    } else {
        // An I/O error underneath says which kind; a reset mid-body arrives this way.
        let mut source = std::error::Error::source(&e);
        let mut kind = ErrorKind::Other;
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                kind = classify_io(io);
                break;
            }
            source = s.source();
        }
        kind
    };
    let message = match std::error::Error::source(&e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    };
    (kind, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_with_or_without_a_space() {
        let (name, value) = parse_header("X-Api-Key:abc").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("x-api-key", "abc")
        );
        let (name, value) = parse_header("Authorization: Bearer a:b").unwrap();
        assert_eq!(name.as_str(), "authorization");
        assert_eq!(value.to_str().unwrap(), "Bearer a:b");
    }

    #[test]
    fn a_header_without_a_colon_or_with_a_bad_name_is_refused_with_the_reason() {
        assert!(
            parse_header("no-colon")
                .unwrap_err()
                .contains("Name: value")
        );
        assert!(
            parse_header("bad name: x")
                .unwrap_err()
                .contains("not a valid header name")
        );
    }

    #[test]
    fn urls_without_http_or_https_are_refused() {
        let trust = TlsTrust::Platform;
        assert!(
            Target::resolve("ftp://x/", &trust)
                .err()
                .unwrap()
                .contains("not http or https")
        );
        assert!(
            Target::resolve("127.0.0.1:80", &trust)
                .err()
                .unwrap()
                .contains("scheme")
        );
        let t = Target::resolve("https://[::1]/a?b", &trust).unwrap();
        assert_eq!((t.address.as_str(), t.path.as_str()), ("[::1]:443", "/a?b"));
    }

    #[test]
    fn latencies_print_in_a_readable_unit() {
        assert_eq!(micros(850), "850µs");
        assert_eq!(micros(12_345), "12.35ms");
        assert_eq!(micros(1_200_000), "1.20s");
    }
}
