//! The fakes a scenario runs against: upstreams, clients (and, with the identity stage, an issuer).

pub mod client;
pub mod issuer;
pub mod keys;
pub mod loadgen;
pub mod upstream;
