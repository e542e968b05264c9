//! Gatehouse's testbed. It embeds the real gateway (the `gateway` crate) and reuses its types —
//! stage ids, the request record, the rate-limit algorithms — instead of copying them.
//!
//! - [`fake`]: upstreams with scripted behaviour, load profiles;
//! - [`scenario`]: scenario files, the runner, expectations, suites;
//! - [`report`]: console text, JUnit XML, JSON;
//! - [`demo`]: the whole testbed in-process on embedded defaults;
//! - [`compare`]: the rate-limit algorithm lab (the gateway's algorithms in virtual time);
//! - [`tui`]: the terminal UI (state in `app`, drawing in `ui`, the terminal loop in `term`);
//! - [`http_client`]: the one HTTP client the others share;
//! - [`cli`]: the commands run by hand (`loadgen`, `issuer`, `token`; docs/by-hand.md);
//! - [`replay`]: recorded traffic sent again through the real gateway, two configs compared
//!   request by request (docs/replay.md).
//!
//! Layers, lowest first: `fake` and `http_client`; `scenario` (which hands records to whoever
//! watches a run through the [`scenario::sink::RecordSink`] it is given, never to the TUI
//! directly) and the `compare` engine; `report`; `tui`. Front ends sit on top: `demo`,
//! `compare::cli` and the binary. A module imports only from layers below it.

pub mod cli;
pub mod compare;
pub mod demo;
pub mod fake;
pub mod http_client;
pub mod replay;
pub mod report;
pub mod scenario;
pub mod tui;
