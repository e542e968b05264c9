//! The request record's top-level field names, in the order a record writes them, and a chosen
//! subset of them: what `access_log.fields` names. They live here, below the config that
//! validates them and the record that writes them; `record`'s tests keep the list equal to
//! `RequestRecord`'s own.

/// Every top-level field of the request record, in its serialization order (docs/records.md).
pub const RECORD_FIELDS: [&str; 26] = [
    "request_id",
    "trace_id",
    "unix_millis",
    "peer",
    "method",
    "host",
    "path",
    "target",
    "route",
    "route_template",
    "status",
    "grpc_status",
    "stopped_at",
    "reason",
    "stage_ns",
    "duration_ns",
    "identity",
    "limit",
    "upstream",
    "upstream_instance",
    "upstream_path",
    "retries",
    "breaker",
    "bytes_in",
    "bytes_out",
    "completed",
];

/// A subset of [`RECORD_FIELDS`], one bit per field by its position: a line's writer tests a
/// bit per field instead of comparing names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSet(u32);

impl FieldSet {
    /// The fields named, in any order; a repeated name counts once. The error names the first
    /// name that is not a record field.
    pub fn of<S: AsRef<str>>(names: &[S]) -> Result<Self, String> {
        let mut bits = 0;
        for name in names {
            let name = name.as_ref();
            let Some(at) = RECORD_FIELDS.iter().position(|f| *f == name) else {
                return Err(format!(
                    "unknown record field `{name}`, expected one of {}",
                    RECORD_FIELDS.map(|f| format!("`{f}`")).join(", ")
                ));
            };
            bits |= 1 << at;
        }
        Ok(Self(bits))
    }

    /// Whether the field at `position` in [`RECORD_FIELDS`] is in the set.
    pub fn holds(self, position: usize) -> bool {
        position < RECORD_FIELDS.len() && self.0 & (1 << position) != 0
    }

    /// The names in the set, in the record's order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        RECORD_FIELDS
            .into_iter()
            .enumerate()
            .filter(move |(at, _)| self.holds(*at))
            .map(|(_, name)| name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_holds_what_it_names_and_nothing_else() {
        let set = FieldSet::of(&["status", "peer", "status"]).expect("known names");
        assert_eq!(set.names().collect::<Vec<_>>(), ["peer", "status"]);
        assert!(set.holds(3) && set.holds(10));
        assert!(!set.holds(0) && !set.holds(RECORD_FIELDS.len()) && !set.holds(40));
    }

    #[test]
    fn an_unknown_name_is_refused_by_name() {
        let error = FieldSet::of(&["status", "user_agent"]).expect_err("not a record field");
        assert!(
            error.starts_with("unknown record field `user_agent`, expected one of `request_id`"),
            "{error}"
        );
    }

    #[test]
    fn the_list_fits_the_set() {
        assert!(RECORD_FIELDS.len() <= 32);
    }
}
