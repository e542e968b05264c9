//! Recording: the requests as sent, redacted, beside their records — the input of
//! `simulator replay`. [`format`] is the line format both sides share.

pub mod format;
