//! Scenario files: the model as written, running one, checking what it expects.

pub mod expect;
pub mod model;
pub mod process;
pub mod run;
