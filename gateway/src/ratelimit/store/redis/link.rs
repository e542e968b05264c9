//! The batch driver's own connection to one Redis: a TCP (or Unix) socket the driver's task
//! reads and writes itself, with calls pipelined and their replies read back in order.
//!
//! It replaces redis-rs only where the profile put its cost (see [`super::resp`]): the
//! driver's script calls. It does what the driver needs and no more: connect, authenticate
//! and select the database the URL names, write a command, read the next reply. Reconnecting
//! is the driver's: a connection that failed, or whose reply came too late, is dropped, and the
//! next call opens a new one.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::call::StoreError;
use super::resp::{Command, Reply, parse};

/// Where the connection goes and who it says it is, from the store's `url`.
#[derive(Debug, Clone)]
pub struct Endpoint {
    address: Address,
    db: i64,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Debug, Clone)]
enum Address {
    Tcp(String, u16),
    Unix(PathBuf),
}

impl Endpoint {
    /// The endpoint of a parsed `url`; `None` for an address kind this connection does not
    /// speak (TLS), whose calls then stay on redis-rs.
    pub fn from_info(info: &ConnectionInfo) -> Option<Self> {
        let address = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Address::Tcp(host.clone(), *port),
            ConnectionAddr::Unix(path) => Address::Unix(path.clone()),
            _ => return None,
        };
        let settings = info.redis_settings();
        Some(Self {
            address,
            db: settings.db(),
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
        })
    }
}

enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// One open connection.
pub struct Link {
    stream: Stream,
    /// Bytes read and not yet taken by a reply.
    read: BytesMut,
}

impl Link {
    /// Connects and, when the URL says so, authenticates and selects the database, all within
    /// `timeout`.
    pub async fn connect(endpoint: &Endpoint, timeout: Duration) -> Result<Self, StoreError> {
        tokio::time::timeout(timeout, Self::open(endpoint))
            .await
            .map_err(|_| StoreError::Timeout(timeout))?
    }

    async fn open(endpoint: &Endpoint) -> Result<Self, StoreError> {
        let unreachable = |e: io::Error| StoreError::Connection(format!("cannot connect: {e}"));
        let stream = match &endpoint.address {
            Address::Tcp(host, port) => {
                let stream = TcpStream::connect((host.as_str(), *port))
                    .await
                    .map_err(unreachable)?;
                // A call is one small write the answer waits on: never hold it back.
                stream.set_nodelay(true).map_err(unreachable)?;
                Stream::Tcp(stream)
            }
            Address::Unix(path) => {
                Stream::Unix(UnixStream::connect(path).await.map_err(unreachable)?)
            }
        };
        let mut link = Self {
            stream,
            read: BytesMut::with_capacity(4096),
        };
        let mut cmd = Command::default();
        if let Some(password) = &endpoint.password {
            cmd.arg(b"AUTH");
            if let Some(user) = &endpoint.username {
                cmd.arg(user.as_bytes());
            }
            cmd.arg(password.as_bytes());
            link.expect_ok(&cmd, "AUTH").await?;
        }
        if endpoint.db != 0 {
            cmd.clear();
            cmd.arg(b"SELECT").arg(endpoint.db.to_string().as_bytes());
            link.expect_ok(&cmd, "SELECT").await?;
        }
        Ok(link)
    }

    async fn expect_ok(&mut self, cmd: &Command, what: &str) -> Result<(), StoreError> {
        let mut out = Vec::new();
        cmd.write_to(&mut out);
        self.send(&out).await?;
        match self.reply().await? {
            Reply::Simple(_) => Ok(()),
            Reply::Error(e) => Err(StoreError::Connection(format!("{what} refused: {e}"))),
            other => Err(StoreError::Connection(format!("{what} answered {other:?}"))),
        }
    }

    /// Writes one or more framed commands.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let written = match &mut self.stream {
            Stream::Tcp(s) => s.write_all(bytes).await,
            Stream::Unix(s) => s.write_all(bytes).await,
        };
        written.map_err(|e| StoreError::Connection(format!("cannot write to Redis: {e}")))
    }

    /// The next reply. Cancel-safe: bytes read before a cancellation stay for the next call.
    pub async fn reply(&mut self) -> Result<Reply, StoreError> {
        loop {
            if let Some((reply, used)) =
                parse(&self.read).map_err(|e| StoreError::Connection(e.to_string()))?
            {
                self.read.advance(used);
                return Ok(reply);
            }
            self.read.reserve(4096);
            let read = match &mut self.stream {
                Stream::Tcp(s) => s.read_buf(&mut self.read).await,
                Stream::Unix(s) => s.read_buf(&mut self.read).await,
            };
            match read {
                Ok(0) => return Err(StoreError::Connection("Redis closed the connection".into())),
                Ok(_) => {}
                Err(e) => {
                    return Err(StoreError::Connection(format!(
                        "cannot read from Redis: {e}"
                    )));
                }
            }
        }
    }
}
