//! Why a credential was refused — a token, a client certificate, an API key: a stable reason
//! token and a human detail. Its own module so that each kind of credential can say it without
//! importing another kind's checks.

use std::borrow::Cow;

use crate::vocab::Reason;

/// Why a credential was refused: a stable reason token and a human detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: Reason,
    pub detail: Cow<'static, str>,
}

impl Failure {
    pub fn new(reason: Reason, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            reason,
            detail: detail.into(),
        }
    }
}
