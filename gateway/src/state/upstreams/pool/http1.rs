//! HTTP/1.1 connections of one instance: a stack of idle senders, each carrying one request at a
//! time. A request pops the most recently returned one (warm, least likely to have been closed by
//! the upstream's idle timer), and its lease pushes it back when the response body has ended.

use std::time::Duration;

use hyper::client::conn::http1::SendRequest;
use parking_lot::Mutex;

use crate::body::UpstreamRequestBody;

/// Idle connections kept per instance; more are closed when their exchange ends.
const MAX_IDLE: usize = 256;

pub type Sender = SendRequest<UpstreamRequestBody>;

#[derive(Default)]
pub struct Idle {
    senders: Mutex<Vec<Sender>>,
}

impl Idle {
    /// A connection ready for a request, if one is idle. A sender returned a moment ago may still
    /// be finishing its last response on its connection's task: that wait is short and bounded.
    pub async fn checkout(&self, bound: Duration) -> Option<Sender> {
        loop {
            let mut sender = self.senders.lock().pop()?;
            if sender.is_closed() {
                continue;
            }
            if sender.is_ready() {
                return Some(sender);
            }
            if let Ok(Ok(())) = tokio::time::timeout(bound, sender.ready()).await {
                return Some(sender);
            }
        }
    }

    pub fn give_back(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut senders = self.senders.lock();
        if senders.len() < MAX_IDLE {
            senders.push(sender);
        }
    }
}

/// The connection's task: hyper needs its future polled for bytes to move. Upgrades stay on so a
/// WebSocket handshake can take the connection over.
pub async fn handshake(stream: Box<dyn super::connect::Stream>) -> Result<Sender, hyper::Error> {
    let (sender, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(hyper_util::rt::TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}
