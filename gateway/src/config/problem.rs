//! The shape every section compiler reports a problem in, shared by all of them without any of
//! them importing the compiler that calls it.

/// A field path (`routes[3].upstream`) and what is wrong there; `check` turns it into a
/// `file:line:col` diagnostic.
pub type Problem = (String, String);
