//! HTTP/1.1 connections of one instance: a stack of idle senders, each carrying one request at a
//! time. A request pops the most recently returned one (warm, least likely to have been closed by
//! the upstream's idle timer), and its lease pushes it back when the response body has ended.
//! Every connection's responses are read through the strict checks of `checked.rs`.
//!
//! Bodiless requests go over our own exchange (`wire::http1_client`) instead, on connections of
//! their own stack ([`OwnIdle`]): no task per connection, and the connection goes back from the
//! response body itself. A request with a body takes an idle connection of that stack when its
//! own is empty (hyper's client takes the stream over); hyper's connections never come back,
//! since their streams live inside hyper's tasks.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::http1::SendRequest;
use parking_lot::Mutex;

use super::checked::{Checked, Exchange};
use crate::body::UpstreamRequestBody;
use crate::wire::http1_client::Connection;

/// Idle connections kept per instance; more are closed when their exchange ends.
const MAX_IDLE: usize = 256;

/// One connection's sender, with what its response checks must know of each request.
pub struct Sender {
    send: SendRequest<UpstreamRequestBody>,
    exchange: Arc<Exchange>,
}

impl Sender {
    pub fn is_closed(&self) -> bool {
        self.send.is_closed()
    }

    pub fn is_ready(&self) -> bool {
        self.send.is_ready()
    }

    pub async fn ready(&mut self) -> Result<(), hyper::Error> {
        self.send.ready().await
    }

    pub fn try_send_request(
        &mut self,
        request: Request<UpstreamRequestBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, TrySendError<Request<UpstreamRequestBody>>>>
    {
        self.exchange.sending(request.method());
        self.send.try_send_request(request)
    }

    pub fn send_request(
        &mut self,
        request: Request<UpstreamRequestBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, hyper::Error>> {
        self.exchange.sending(request.method());
        self.send.send_request(request)
    }
}

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
/// WebSocket handshake can take the connection over. hyper reads through [`Checked`]: its own
/// parser is lenient about response framing, the checks are not.
pub async fn handshake(stream: Box<dyn super::connect::Stream>) -> Result<Sender, hyper::Error> {
    handshake_checked(Checked::new(stream, Arc::new(Exchange::default()))).await
}

/// hyper's client over an idle connection of our own exchange, when it is one of the pool's.
pub async fn take_over(connection: Connection) -> Option<Sender> {
    let io = connection.into_io()?.into_any();
    let checked = io
        .downcast::<Checked<Box<dyn super::connect::Stream>>>()
        .ok()?;
    handshake_checked(*checked).await.ok()
}

async fn handshake_checked(
    checked: Checked<Box<dyn super::connect::Stream>>,
) -> Result<Sender, hyper::Error> {
    let exchange = checked.exchange();
    let (send, connection) = hyper::client::conn::http1::Builder::new()
        .handshake(hyper_util::rt::TokioIo::new(checked))
        .await?;
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(Sender { send, exchange })
}

/// Idle connections of our own exchange, most recently returned on top.
#[derive(Default)]
pub struct OwnIdle {
    connections: Mutex<Vec<Connection>>,
}

impl OwnIdle {
    /// An idle connection still open and quiet, if there is one; closed ones are dropped.
    pub fn checkout(&self) -> Option<Connection> {
        loop {
            let mut connection = self.connections.lock().pop()?;
            if connection.is_reusable() {
                return Some(connection);
            }
        }
    }

    pub fn give_back(&self, connection: Connection) {
        let mut connections = self.connections.lock();
        if connections.len() < MAX_IDLE {
            connections.push(connection);
        }
    }
}

/// A new connection for our own exchange, read through the same checks as hyper's.
pub fn own_connection(stream: Box<dyn super::connect::Stream>) -> Connection {
    Connection::new(Box::new(Checked::locating_heads(
        stream,
        Arc::new(Exchange::default()),
        crate::wire::http1_client::MAX_HEADERS,
    )))
}
