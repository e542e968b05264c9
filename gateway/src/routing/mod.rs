//! Routing as pure code: path normalization, route patterns and the segment-trie table that
//! finds the route for a request. No request context and no config: the `route` stage and
//! `gateway routes --test` call it.

pub mod normalize;
pub mod pattern;
pub mod table;
