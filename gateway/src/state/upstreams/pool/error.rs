//! Why a request got no response from the pool: the kinds `forward` answers differently, and
//! how each client's error (hyper's, our own exchange's) is sorted into them.

use std::error::Error as StdError;

use crate::body::{BodyStalled, BodyTooLarge, UpstreamBadResponse};

/// Why a request got no response head from the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolErrorKind {
    /// No connection: refused, not accepted in time, TLS failed. The upstream never saw it.
    Unreachable,
    /// The upstream refused the stream (`REFUSED_STREAM`) or said by GOAWAY that it will not
    /// process it: not processed, so always safe to send again.
    Refused,
    /// The connection closed or the stream was reset before the response head.
    Reset,
    /// The client's streamed body grew past the route's limit.
    BodyTooLarge,
    /// The response head broke the strict HTTP/1.1 checks (`checked.rs`), and its connection is
    /// closed, never reused; or the h2 library found an HTTP/2 response malformed and reset it.
    BadResponse,
    /// The client's chunked body was malformed (the stream guard cut it): the client's fault.
    MalformedBody,
    /// The client's streamed body stalled or came too slowly (`limits.body_read_timeout`,
    /// `limits.min_body_rate`). The upstream's request was aborted: an HTTP/1.1 connection is
    /// closed (hyper closes it when a request body fails, and its sender is dropped, never given
    /// back), an HTTP/2 stream reset.
    BodyTimeout,
}

#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct PoolError {
    pub kind: PoolErrorKind,
    source: Box<dyn StdError + Send + Sync>,
}

impl PoolError {
    pub(super) fn new(
        kind: PoolErrorKind,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            source: source.into(),
        }
    }

    /// Classifies hyper's error for a request that was sent (or partly sent).
    pub(super) fn sent(error: hyper::Error) -> Self {
        let mut cause: Option<&(dyn StdError + 'static)> = Some(&error);
        let mut kind = PoolErrorKind::Reset;
        if UpstreamBadResponse::is_in(&error) {
            return Self::new(PoolErrorKind::BadResponse, error);
        }
        while let Some(e) = cause {
            if e.downcast_ref::<BodyTooLarge>().is_some() {
                kind = PoolErrorKind::BodyTooLarge;
                break;
            }
            if crate::wire::MalformedBody::in_chain(e).is_some() {
                kind = PoolErrorKind::MalformedBody;
                break;
            }
            if e.downcast_ref::<BodyStalled>().is_some() {
                kind = PoolErrorKind::BodyTimeout;
                break;
            }
            if let Some(h2) = e.downcast_ref::<h2::Error>() {
                if h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                    || (h2.is_go_away() && h2.is_remote())
                {
                    kind = PoolErrorKind::Refused;
                }
                break;
            }
            cause = e.source();
        }
        Self::new(kind, error)
    }

    /// Classifies our own exchange's error for a request that was sent.
    pub(super) fn sent_own(error: std::io::Error) -> Self {
        let kind = if UpstreamBadResponse::is_in(&error) {
            PoolErrorKind::BadResponse
        } else {
            PoolErrorKind::Reset
        };
        Self::new(kind, error)
    }
}
