//! One exchange on the wire, shared by both senders: connections from the pool, the request
//! built from its exchange (the identity hook included), the answer read to its end and hashed
//! when responses are kept, and the outcome it makes.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use gateway::record::recording::format::RecordedResponse;
use http::Request;
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::{Connection, Job, MAX_POOLED_CONNECTIONS, REQUEST_TIMEOUT, Shared};
use crate::fake::loadgen::{ErrorKind, classify_hyper, classify_io};
use crate::replay::model::ExchangeOutcome;
use crate::replay::schedule::Planned;

impl Shared {
    pub(super) fn elapsed_ns(&self) -> u64 {
        u64::try_from(
            Instant::now()
                .saturating_duration_since(self.start)
                .as_nanos(),
        )
        .unwrap_or(u64::MAX)
    }

    pub(super) fn idle(&self) -> Option<Connection> {
        let mut pool = self.pool.lock();
        while let Some(connection) = pool.pop() {
            if connection.is_ready() {
                return Some(connection);
            }
            self.pooled_open.fetch_sub(1, Ordering::AcqRel);
        }
        None
    }

    /// An idle pooled connection, a new one while fewer than [`MAX_POOLED_CONNECTIONS`] are
    /// open, or else the next one returned.
    pub(super) async fn checkout(&self) -> Result<Connection, (ErrorKind, String)> {
        loop {
            if let Some(connection) = self.idle() {
                return Ok(connection);
            }
            let open = self.pooled_open.fetch_add(1, Ordering::AcqRel);
            if open < MAX_POOLED_CONNECTIONS {
                return self.connect().await.inspect_err(|_| {
                    self.pooled_open.fetch_sub(1, Ordering::AcqRel);
                });
            }
            self.pooled_open.fetch_sub(1, Ordering::AcqRel);
            let returned = self.returned.notified();
            if let Some(connection) = self.idle() {
                return Ok(connection);
            }
            returned.await;
        }
    }

    pub(super) async fn connect(&self) -> Result<Connection, (ErrorKind, String)> {
        let connecting = async {
            let stream = tokio::net::TcpStream::connect(self.options.address.as_str())
                .await
                .map_err(|e| {
                    (
                        classify_io(&e),
                        format!("connect {}: {e}", self.options.address),
                    )
                })?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                    .await
                    .map_err(classify_hyper)?;
            tokio::spawn(connection);
            Ok(sender)
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, connecting).await {
            Ok(result) => result,
            Err(_) => Err((
                ErrorKind::Timeout,
                format!(
                    "no connection to {} within {REQUEST_TIMEOUT:?}",
                    self.options.address
                ),
            )),
        }
    }

    /// The request to send for a job: the hook's head, the recorded method, version and body,
    /// the job's request id.
    pub(super) fn request(&self, job: &Job) -> Result<Request<Full<Bytes>>, String> {
        let scheduled_unix = (self.start_unix_nanos + job.planned.due_ns) / 1_000_000_000;
        self.request_at(job, scheduled_unix)
    }

    /// [`Shared::request`] with its credentials minted for `now_unix` (Unix seconds).
    pub(super) fn request_at(
        &self,
        job: &Job,
        now_unix: u64,
    ) -> Result<Request<Full<Bytes>>, String> {
        let exchange = &self.exchanges[job.planned.index];
        let head = (self.options.prepare)(exchange, now_unix)?;
        let version = match exchange.version.as_str() {
            "HTTP/1.0" => http::Version::HTTP_10,
            // HTTP/2 recordings are replayed over HTTP/1.1: the same request, one protocol.
            _ => http::Version::HTTP_11,
        };
        let mut builder = Request::builder()
            .method(exchange.method.as_str())
            .uri(head.target.as_str())
            .version(version);
        let mut has_host = false;
        for (name, value) in &head.headers {
            match name.to_ascii_lowercase().as_str() {
                // Framing and the connection are this sender's own; the id is the job's.
                "content-length" | "transfer-encoding" | "connection" | "keep-alive"
                | "upgrade" | "proxy-connection" | "te" | "trailer" | "x-request-id" => continue,
                "host" => has_host = true,
                _ => {}
            }
            builder = builder.header(name.as_str(), value.as_str());
        }
        if !has_host {
            builder = builder.header(http::header::HOST, self.options.authority.as_str());
        }
        builder
            .header("x-request-id", job.wire.as_str())
            .body(Full::new(self.bodies[job.planned.index].clone()))
            .map_err(|e| {
                format!(
                    "{} {}: not a request hyper can send: {e}",
                    exchange.method, head.target
                )
            })
    }

    /// Virtual time's send: one request on `connection` (opened, or opened again when the
    /// gateway closed it), its answer awaited; the connection kept for the next when it can take
    /// one.
    pub(super) async fn exchange_alone(
        &self,
        job: &Job,
        now_unix: u64,
        connection: &mut Option<Connection>,
    ) -> ExchangeOutcome {
        let request = match self.request_at(job, now_unix) {
            Ok(r) => r,
            Err(e) => return self.failed(job, None, "unsendable", e),
        };
        let kept = connection.take().filter(|c| !c.is_closed());
        let reused = kept.is_some();
        let mut sender = match kept {
            Some(kept) => kept,
            None => match self.connect().await {
                Ok(fresh) => fresh,
                Err((kind, message)) => return self.failed(job, None, kind.name(), message),
            },
        };
        if let Err(e) = sender.ready().await {
            // A kept connection the gateway closed meanwhile: once more on a fresh one.
            let fresh = if reused {
                match self.connect().await {
                    Ok(mut fresh) => fresh.ready().await.map(|()| fresh),
                    Err((kind, message)) => return self.failed(job, None, kind.name(), message),
                }
            } else {
                Err(e)
            };
            match fresh {
                Ok(fresh) => sender = fresh,
                Err(e) => {
                    let (kind, message) = classify_hyper(e);
                    return self.failed(job, None, kind.name(), message);
                }
            }
        }
        self.options.progress.sent.fetch_add(1, Ordering::Relaxed);
        let answer = sender.send_request(request);
        let outcome = self.finish(job, job.planned.due_ns, answer).await;
        if outcome.status.is_some() {
            *connection = Some(sender);
        }
        outcome
    }

    /// Waits for the answer and its body; the outcome with its latency from the scheduled time.
    pub(super) async fn finish(
        &self,
        job: &Job,
        sent_ns: u64,
        answer: impl Future<Output = hyper::Result<http::Response<hyper::body::Incoming>>>,
    ) -> ExchangeOutcome {
        let keep = self.options.keep_responses;
        let exchange = async {
            let response = answer.await.map_err(classify_hyper)?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await.map_err(classify_hyper)?.to_bytes();
            let kept = keep.then(|| RecordedResponse {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.as_str().to_string(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body_sha256: Some(
                    Sha256::digest(&bytes)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect(),
                ),
                body_len: bytes.len() as u64,
            });
            Ok::<_, (ErrorKind, String)>((parts.status.as_u16(), kept))
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Ok((status, response))) => {
                self.options
                    .progress
                    .answered
                    .fetch_add(1, Ordering::Relaxed);
                let mut outcome = self.outcome(job, sent_ns);
                outcome.status = Some(status);
                outcome.response = response;
                outcome
            }
            Ok(Err((kind, message))) => self.failed(job, Some(sent_ns), kind.name(), message),
            Err(_) => self.failed(
                job,
                Some(sent_ns),
                "timeout",
                format!("no answer within {REQUEST_TIMEOUT:?}"),
            ),
        }
    }

    /// An outcome without an answer; `kind` leads the error text (`refused: connect …`), which
    /// is what the report counts errors by.
    pub(super) fn failed(
        &self,
        job: &Job,
        sent_ns: Option<u64>,
        kind_name: &str,
        message: String,
    ) -> ExchangeOutcome {
        self.options.progress.failed.fetch_add(1, Ordering::Relaxed);
        let mut outcome = self.outcome(job, sent_ns.unwrap_or_else(|| self.elapsed_ns()));
        outcome.error = Some(format!("{kind_name}: {message}"));
        outcome
    }

    pub(super) fn outcome(&self, job: &Job, sent_ns: u64) -> ExchangeOutcome {
        let exchange = &self.exchanges[job.planned.index];
        let now = self.elapsed_ns();
        ExchangeOutcome {
            id: job.planned.id.clone(),
            position: exchange.position,
            method: exchange.method.clone(),
            path: exchange
                .target
                .split_once('?')
                .map_or(exchange.target.as_str(), |(path, _)| path)
                .to_string(),
            status: None,
            error: None,
            decision: None,
            response: None,
            scheduled_ns: job.planned.due_ns,
            sent_ns,
            latency_ns: now.saturating_sub(job.planned.due_ns),
        }
    }

    /// A send handed to its lane that had no answer when the replay stopped.
    pub(super) fn unanswered(&self, planned: &Planned) -> ExchangeOutcome {
        let job = Job {
            slot: 0,
            planned: planned.clone(),
            wire: String::new(),
            request: None,
        };
        let mut outcome = self.outcome(&job, planned.due_ns);
        outcome.error = Some("interrupted: no answer before the replay stopped".into());
        outcome
    }
}
