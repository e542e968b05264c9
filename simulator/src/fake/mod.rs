//! The fakes a scenario runs against: upstreams (HTTP/1.1, HTTP/2, TLS, gRPC answers), clients
//! (and, with the identity stage, an issuer).

mod answer_body;
pub mod client;
pub mod grpc;
pub mod issuer;
pub mod keys;
pub mod loadgen;
pub mod tls;
pub mod upstream;
