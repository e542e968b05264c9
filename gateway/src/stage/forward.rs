//! `forward`: (in progress)
