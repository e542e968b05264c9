//! Replay: recorded traffic (a Gatehouse recording, HAR or GoReplay) sent again through the real
//! gateway, paced as recorded or as asked, identities minted afresh, and — with `--against` — two
//! configs compared request by request (docs/replay.md).
//!
//! Layers, lowest first: `model`; `read`, `schedule`, `identity`, `generate`; `diff`,
//! `responses`, `predict`; `send`, `target`; `run`; `report`, `plot`. The binary's front end is
//! `cli::replay`.

pub mod diff;
pub mod expect;
pub mod generate;
pub mod identity;
pub mod junit;
pub mod model;
pub mod plot;
pub mod predict;
pub mod read;
pub mod report;
pub mod responses;
pub mod run;
pub mod schedule;
pub mod send;
pub mod target;
