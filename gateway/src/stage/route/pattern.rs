//! Route path patterns: `/exact`, `/prefix/*`, `/users/{id}`. (Interface stub: the routing helper fills it in.)

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePattern {
    pub raw: String,
}

impl RoutePattern {
    pub fn parse(raw: &str) -> Result<Self, String> {
        Ok(Self {
            raw: raw.to_string(),
        })
    }

    /// True when every normalized path that `other` matches is also matched by `self`.
    pub fn covers(&self, other: &RoutePattern) -> bool {
        self == other
    }

    /// The slow, obviously-correct matcher used by `gateway routes`' reference checks and proptests.
    pub fn matches(&self, normalized_path: &str) -> bool {
        self.raw == normalized_path
    }

    pub fn is_prefix(&self) -> bool {
        self.raw.ends_with("/*")
    }
}
