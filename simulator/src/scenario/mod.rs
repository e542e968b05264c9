//! Scenario files: the model as written, running one, checking what it expects.

pub mod expect;
pub mod fakes;
pub mod model;
pub mod outcome;
pub mod run;
pub mod sink;
pub mod suite;
pub mod under_test;
