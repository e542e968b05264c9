//! The HTTP/1.1 wire as the gateway reads it, strictly, before hyper does: the request-head
//! parser ([`request_head`]), the chunked-body validator ([`chunked`]), the walk over a
//! connection's messages ([`stream`]), the stream guard that applies it to a connection
//! ([`guard`]), the HTTP/2 frame watch that finds the requests h2 refused by itself
//! ([`h2_frames`]), our own HTTP/1.1 client exchange for bodiless upstream requests
//! ([`http1_client`]), and the byte classes they all read by ([`octets`]). Rules over bytes and
//! the IO that applies them; no config or gateway state.

pub mod chunked;
pub mod guard;
pub mod h2_frames;
pub mod http1_client;
pub mod octets;
pub mod request_head;
pub mod stream;

pub use guard::{Exchanges, GuardReport, Guarded, MalformedBody};
pub use request_head::{HeadLimits, parse_request_head};
pub use stream::MessageStream;
