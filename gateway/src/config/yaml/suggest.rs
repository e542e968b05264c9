//! serde's error messages in the words of someone writing YAML rather than Rust, and "did you
//! mean" for a misspelt field: a typo should cost one glance, not a trip to the docs.

/// serde's messages, in the words of someone writing YAML rather than Rust.
pub fn polish(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((field, expected)) = rest.split_once('`') {
            let candidates: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
            return unknown_field(field, &candidates);
        }
    }
    let mut message = message.replace("unit value", "an empty value");
    for (rust, plain) in [
        ("expected i32", "expected an integer"),
        ("expected u16", "expected an integer from 0 to 65535"),
        ("expected u32", "expected an integer from 0 to 4294967295"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        (
            "expected a duration",
            "expected a duration such as `250ms`, `30s` or `2m`",
        ),
    ] {
        if let Some(at) = message.find(rust) {
            if message[at + rust.len()..].is_empty() {
                message.replace_range(at.., plain);
            }
        }
    }
    // serde names the Rust type last: `expected struct RawRoute`.
    if let Some(at) = message.find("expected struct ") {
        message.replace_range(at.., "expected a mapping");
    }
    message
}

/// `unknown field `x``, with the closest allowed name when one is near enough to be a typo.
pub fn unknown_field(field: &str, allowed: &[&str]) -> String {
    let closest = allowed
        .iter()
        .filter(|a| is_typo_of(field, a))
        .min_by_key(|a| edit_distance(&field.to_ascii_lowercase(), a));
    match closest {
        Some(a) => format!("unknown field `{field}`, did you mean `{a}`?"),
        None if allowed.is_empty() => format!("unknown field `{field}`: no fields belong here"),
        None => format!(
            "unknown field `{field}`, expected one of {}",
            allowed
                .iter()
                .map(|a| format!("`{a}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Close enough to `intended` (two edits, ignoring case) that `written` is likely a typo of it.
pub fn is_typo_of(written: &str, intended: &str) -> bool {
    let d = edit_distance(&written.to_ascii_lowercase(), intended);
    d <= 2 && d < intended.chars().count()
}

/// Levenshtein distance, on chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_what_is_near_enough_to_be_a_typo() {
        let allowed = ["path", "methods", "host"];
        assert_eq!(
            unknown_field("pth", &allowed),
            "unknown field `pth`, did you mean `path`?"
        );
        assert_eq!(
            unknown_field("Methds", &allowed),
            "unknown field `Methds`, did you mean `methods`?"
        );
        assert_eq!(
            unknown_field("timeout", &allowed),
            "unknown field `timeout`, expected one of `path`, `methods`, `host`"
        );
        assert_eq!(
            unknown_field("x", &[]),
            "unknown field `x`: no fields belong here"
        );
        // Two edits would turn any one-letter name into any other: not a typo.
        assert!(!is_typo_of("a", "b"));
    }

    #[test]
    fn polish_names_yaml_shapes_not_rust_types() {
        assert_eq!(
            polish("invalid type: string \"x\", expected u16"),
            "invalid type: string \"x\", expected an integer from 0 to 65535"
        );
        assert_eq!(
            polish("invalid type: unit value, expected struct RawRoute"),
            "invalid type: an empty value, expected a mapping"
        );
    }
}
