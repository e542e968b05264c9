//! Scenario files: the model as written, running one (or a suite of them) against the real
//! gateway, checking what it expects. Nothing here knows about the TUI: whoever watches a run
//! passes a [`sink::RecordSink`] in its [`run::RunOptions`].

pub mod check;
pub mod expect;
pub mod fakes;
pub mod interrupt;
pub mod model;
pub mod outcome;
pub mod run;
pub mod sink;
pub mod suite;
pub mod under_test;
