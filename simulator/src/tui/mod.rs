//! The terminal UI: where each request stopped and why, latency per route, and the rate-limit
//! algorithms side by side. Split as ratatui's own demo is: [`app`] holds the state and how keys
//! and records change it (no drawing), [`ui`] draws it (no side effects), [`term`] owns the
//! terminal and the loop.
//!
//! Opened by `simulator demo` on a terminal, by `--tui` on `run` and `compare`, and by
//! `simulator tui --attach ADMIN` on a running gateway's `/records` stream.

pub mod app;
pub mod term;
pub mod ui;
