//! Routing as pure code: the request's authority (host validation), path normalization, route
//! patterns and the segment-trie table that finds the route for a request. No request context
//! and no config: the `route` and `tls` stages and `gateway routes --test` call it.

pub mod authority;
pub mod normalize;
pub mod pattern;
pub mod table;
