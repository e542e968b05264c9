//! The HTTP/1.1 wire as the gateway reads it, strictly, before hyper does: the request-head
//! parser ([`request_head`]), the chunked-body validator ([`chunked`]), the walk over a
//! connection's messages ([`stream`]), the stream guard that applies it to a connection
//! ([`guard`]), and the HTTP/2 frame watch that finds the requests h2 refused by itself
//! ([`h2_frames`]). Pure rules over bytes, plus one IO adapter; no request, config or gateway state.

pub mod chunked;
pub mod guard;
pub mod h2_frames;
pub mod request_head;
pub mod stream;

pub use guard::{Exchanges, GuardReport, Guarded, MalformedBody};
pub use request_head::{HeadLimits, parse_request_head};
pub use stream::MessageStream;
