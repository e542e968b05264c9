//! HTTP/2 connections of one instance, each shared by up to `max_concurrent_streams` requests at
//! once. Past that the pool opens another connection; one that the upstream closed or sent GOAWAY
//! on takes no new streams (its in-flight streams finish) and leaves the set once closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;

use crate::body::UpstreamRequestBody;
use crate::config::raw::RawHttp2;

pub type Sender = SendRequest<UpstreamRequestBody>;

pub struct Connection {
    pub sender: Sender,
    streams: AtomicUsize,
}

/// One stream of a connection, counted until dropped (when the response body ends).
pub struct Stream(Arc<Connection>);

impl Stream {
    pub fn sender(&self) -> Sender {
        self.0.sender.clone()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Default)]
pub struct Connections {
    open: Mutex<Vec<Arc<Connection>>>,
    /// Held while a connection is being opened, so a burst opens one, not one per request.
    opening: tokio::sync::Mutex<()>,
}

impl Connections {
    /// A stream on a connection with room, dropping connections that can take no more streams.
    pub fn checkout(&self, max_streams: usize) -> Option<Stream> {
        let mut open = self.open.lock();
        open.retain(|c| !c.sender.is_closed());
        open.iter()
            .find(|c| c.sender.is_ready() && c.streams.load(Ordering::Acquire) < max_streams)
            .map(|c| {
                c.streams.fetch_add(1, Ordering::AcqRel);
                Stream(c.clone())
            })
    }

    /// Serializes opening: the caller checks out again after taking it.
    pub async fn opening(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.opening.lock().await
    }

    /// Adds a new connection and takes its first stream.
    pub fn add(&self, sender: Sender) -> Stream {
        let connection = Arc::new(Connection {
            sender,
            streams: AtomicUsize::new(1),
        });
        self.open.lock().push(connection.clone());
        Stream(connection)
    }
}

pub async fn handshake(
    stream: Box<dyn super::connect::Stream>,
    settings: &RawHttp2,
) -> Result<Sender, hyper::Error> {
    let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    builder.timer(TokioTimer::new()).adaptive_window(true);
    if !settings.keepalive_interval.is_zero() {
        builder
            .keep_alive_interval(settings.keepalive_interval)
            .keep_alive_timeout(settings.keepalive_timeout)
            .keep_alive_while_idle(true);
    }
    let (sender, connection) = builder.handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
