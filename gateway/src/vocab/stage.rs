//! The stage ids: the one word each stage is known by everywhere — module name, config key,
//! metric label, record field, scenario `stopped_at` value and TUI label.

use serde::{Serialize, Serializer};

/// The stable identifier of a stage: module name, config key, metric label, scenario `stopped_at`
/// value and TUI label are all this one snake_case word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StageId {
    Tls,
    Authn,
    Authz,
    Ratelimit,
    Route,
    MutateRequest,
    Forward,
    MutateResponse,
}

impl StageId {
    pub const ALL: [StageId; 8] = [
        StageId::Tls,
        StageId::Authn,
        StageId::Authz,
        StageId::Ratelimit,
        StageId::Route,
        StageId::MutateRequest,
        StageId::Forward,
        StageId::MutateResponse,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            StageId::Tls => "tls",
            StageId::Authn => "authn",
            StageId::Authz => "authz",
            StageId::Ratelimit => "ratelimit",
            StageId::Route => "route",
            StageId::MutateRequest => "mutate_request",
            StageId::Forward => "forward",
            StageId::MutateResponse => "mutate_response",
        }
    }

    pub fn parse(name: &str) -> Option<StageId> {
        StageId::ALL.into_iter().find(|s| s.as_str() == name)
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for StageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for StageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for StageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        StageId::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown stage `{name}`, expected one of: tls, authn, authz, ratelimit, route, mutate_request, forward, mutate_response"
            ))
        })
    }
}
