//! Opening one connection to an instance: TCP with the upstream's connect timeout, then TLS when
//! configured, with the ALPN offer the upstream's protocol calls for. Says which protocol the
//! connection speaks, so `auto` learns it from the handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::error::{PoolError, PoolErrorKind};
use crate::config::UpstreamProtocol;
use crate::identity::tls::UpstreamTls;

/// A connection's byte stream, plaintext or TLS: one type so both share the pool's code.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// The protocol a new connection speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoken {
    Http1,
    Http2,
}

pub struct Connector {
    connect_timeout: Duration,
    protocol: UpstreamProtocol,
    /// With the ALPN offer of `protocol`.
    tls: Option<Tls>,
    /// With ALPN `http/1.1` only: a WebSocket upgrade always goes over HTTP/1.1.
    tls_http1: Option<Tls>,
}

struct Tls {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl Tls {
    fn new(base: &UpstreamTls, alpn: &[&[u8]]) -> Self {
        let mut config: ClientConfig = base.config.clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: base.server_name.clone(),
        }
    }
}

impl Connector {
    pub fn new(
        connect_timeout: Duration,
        protocol: UpstreamProtocol,
        tls: Option<&UpstreamTls>,
    ) -> Self {
        let offer: &[&[u8]] = match protocol {
            UpstreamProtocol::H2 => &[b"h2"],
            UpstreamProtocol::Auto => &[b"h2", b"http/1.1"],
            UpstreamProtocol::Http1 | UpstreamProtocol::H2c => &[b"http/1.1"],
        };
        Self {
            connect_timeout,
            protocol,
            tls: tls.map(|t| Tls::new(t, offer)),
            tls_http1: tls.map(|t| Tls::new(t, &[b"http/1.1"])),
        }
    }

    /// A new connection to `address` in the upstream's protocol (`for_upgrade`: HTTP/1.1 always).
    pub async fn connect(
        &self,
        address: SocketAddr,
        for_upgrade: bool,
    ) -> Result<(Box<dyn Stream>, Spoken), PoolError> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| {
                PoolError::new(
                    PoolErrorKind::Unreachable,
                    format!(
                        "no connection to {address} within {:?}",
                        self.connect_timeout
                    ),
                )
            })?
            .map_err(|e| PoolError::new(PoolErrorKind::Unreachable, e))?;
        // Requests are small and latency matters more than packet count.
        let _ = tcp.set_nodelay(true);
        let tls = if for_upgrade {
            self.tls_http1.as_ref()
        } else {
            self.tls.as_ref()
        };
        let Some(tls) = tls else {
            let spoken = match self.protocol {
                UpstreamProtocol::H2c if !for_upgrade => Spoken::Http2,
                _ => Spoken::Http1,
            };
            return Ok((Box::new(tcp), spoken));
        };
        let name = tls
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(address.ip().into()));
        let stream = tokio::time::timeout(self.connect_timeout, tls.connector.connect(name, tcp))
            .await
            .map_err(|_| {
                PoolError::new(
                    PoolErrorKind::Unreachable,
                    format!(
                        "no TLS handshake with {address} within {:?}",
                        self.connect_timeout
                    ),
                )
            })?
            .map_err(|e| PoolError::new(PoolErrorKind::Unreachable, e))?;
        let agreed_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
        let spoken = match (self.protocol, agreed_h2) {
            (_, true) if !for_upgrade => Spoken::Http2,
            (UpstreamProtocol::H2, false) if !for_upgrade => {
                return Err(PoolError::new(
                    PoolErrorKind::Unreachable,
                    format!("{address} did not agree to HTTP/2 (ALPN `h2`)"),
                ));
            }
            _ => Spoken::Http1,
        };
        Ok((Box::new(stream), spoken))
    }
}
