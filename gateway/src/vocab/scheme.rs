//! The client side's scheme: decides X-Forwarded-Proto and the record's view of the connection.

use serde::Serialize;

/// Whether the client reached us over TLS; decides X-Forwarded-Proto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub const fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}
