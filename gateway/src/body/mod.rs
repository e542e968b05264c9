//! Body types that stream: the request body on its way upstream (counted and capped by the
//! route's limit, its first bytes kept when the request is recorded) and the response body on
//! its way to the client (counted, hashed when the recording keeps responses, and the request's
//! record emitted when it ends — or when the client goes away).
//!
//! The request body is also paced ([`BodyPace`]): one that stops sending for
//! `limits.body_read_timeout`, or trickles below `limits.min_body_rate`, ends with
//! [`BodyStalled`], which `forward` answers with 408 while the upstream's request is aborted.
//!
//! A response body also keeps its client connection counted busy until it ends ([`Busy`]), so
//! the server's idle timeout never takes a stream that is still open for idleness, and ends the
//! stream when `limits.max_stream_duration` passes ([`ResponseBody::stream`]) or when the
//! upstream sends nothing for its `idle_timeout` ([`ResponseBody::idle_after`]).

mod activity;
mod pace;
mod request;
mod response;
mod upstream;

pub use activity::{Busy, ConnectionActivity, StreamTracker};
pub use pace::{BodyPace, BodyStalled, PaceState};
pub use request::{BodyMeter, BodyRefusal, BodyTooLarge, RequestBodyMeter, UpstreamRequestBody};
pub use response::{PendingRecord, ResponseBody, ResponseContent, StreamCut, UpstreamBadResponse};
pub use upstream::UpstreamBody;
