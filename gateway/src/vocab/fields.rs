//! Field lookups that cost less on the short heads most requests carry. `HeaderMap` hashes the
//! name on every lookup — 80 to 130 instructions a lookup in the profile (docs/PERFORMANCE.md) —
//! and most of the lookups a request meets are of fields it does not carry: `X-Request-Id`,
//! `traceparent`, `Origin`, `TE`, `Upgrade`, `Connection`, `Content-Type` on a `GET`. Up to
//! [`WALKED_UP_TO`] names — a client's head as it arrives, not the request the gateway sends on
//! with its own fields added — a walk over the names present, compared by value, says "absent"
//! for a few instructions a name; the hash lookup runs only when the name is there. Removals
//! likewise: [`remove_named`] removes only the names a walk found. And the fixed lists of names
//! the gateway removes or writes itself, which the config's compiled removal lists take in.

use http::header::{self, ValueIter};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The two fields the gateway writes from a verified client chain: the leaf, then the rest of
/// the chain. One array so stripping and writing agree.
pub static CLIENT_CERT_FIELDS: [HeaderName; 2] = [
    HeaderName::from_static("client-cert"),
    HeaderName::from_static("client-cert-chain"),
];

/// What names the upstream's software, removed from every response.
pub static SOFTWARE_FIELDS: [HeaderName; 2] =
    [header::SERVER, HeaderName::from_static("x-powered-by")];

/// The most distinct names a map may hold for a walk to be cheaper than a hash lookup: the walk
/// cost about 12 instructions a name, a lookup 85 to 110.
const WALKED_UP_TO: usize = 6;

/// Whether `headers` may hold `name`: `false` only when it surely does not.
fn may_hold(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers.keys_len() > WALKED_UP_TO || headers.keys().any(|present| present == name)
}

/// The first value of `name`, as [`HeaderMap::get`] gives it.
pub fn first<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if may_hold(headers, name) {
        headers.get(name)
    } else {
        None
    }
}

/// Every value of `name` in order, as [`HeaderMap::get_all`] gives them.
pub fn all<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Values<'a> {
    Values(may_hold(headers, name).then(|| headers.get_all(name).iter()))
}

/// The values [`all`] found: none when the walk found no such name.
pub struct Values<'a>(Option<ValueIter<'a, HeaderValue>>);

impl<'a> Iterator for Values<'a> {
    type Item = &'a HeaderValue;

    fn next(&mut self) -> Option<&'a HeaderValue> {
        self.0.as_mut()?.next()
    }
}

/// Whether `headers` holds `name`, as [`HeaderMap::contains_key`] says.
pub fn holds(headers: &HeaderMap, name: &HeaderName) -> bool {
    may_hold(headers, name) && headers.contains_key(name)
}

/// Removes every field named in `names`. One pass over the map's names — a handful on most
/// requests — finds which are there, so only those pay a hashed removal, and most requests
/// carry none. (Names past the 63rd share one bit: any of them present removes them all.)
pub fn remove_named(headers: &mut HeaderMap, names: &[HeaderName]) {
    if names.is_empty() {
        return;
    }
    let mut present = 0u64;
    for name in headers.keys() {
        if let Some(i) = names.iter().position(|n| n == name) {
            present |= 1 << i.min(63);
        }
    }
    if present == 0 {
        return;
    }
    for (i, name) in names.iter().enumerate() {
        if i >= 63 || present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 6] = ["host", "accept", "te", "x-request-id", "x-a", "traceparent"];

    proptest! {
        /// Short maps and long ones, names repeated or not: each helper answers as the map's
        /// own lookup does.
        #[test]
        fn each_lookup_answers_as_the_maps_own(
            fields in proptest::collection::vec((0..NAMES.len() + 20, 0u8..4), 0..40),
            asked in 0..NAMES.len() + 20,
        ) {
            let name_of = |i: usize| {
                let name = NAMES.get(i).map_or_else(|| format!("x-extra-{i}"), |n| n.to_string());
                HeaderName::from_bytes(name.as_bytes()).expect("a name")
            };
            let mut headers = HeaderMap::new();
            for (name, value) in &fields {
                headers.append(name_of(*name), HeaderValue::from(u16::from(*value)));
            }
            let name = name_of(asked);
            prop_assert_eq!(first(&headers, &name), headers.get(&name));
            prop_assert_eq!(holds(&headers, &name), headers.contains_key(&name));
            let ours: Vec<_> = all(&headers, &name).collect();
            let theirs: Vec<_> = headers.get_all(&name).iter().collect();
            prop_assert_eq!(ours, theirs);
        }
    }

    #[test]
    fn remove_named_removes_every_value_of_each_name_listed_and_nothing_else() {
        let mut headers = HeaderMap::new();
        headers.append("server", HeaderValue::from_static("a"));
        headers.append("server", HeaderValue::from_static("b"));
        headers.append("x-keep", HeaderValue::from_static("c"));
        headers.append("x-powered-by", HeaderValue::from_static("d"));
        let names = [
            HeaderName::from_static("server"),
            HeaderName::from_static("x-absent"),
            HeaderName::from_static("x-powered-by"),
        ];
        remove_named(&mut headers, &names);
        let left: Vec<_> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(left, [("x-keep", "c")]);
        // More names than the bitmask has bits: those past it are removed when any is present.
        let many: Vec<HeaderName> = (0..70)
            .map(|i| HeaderName::from_bytes(format!("x-{i}").as_bytes()).expect("a name"))
            .collect();
        headers.insert("x-69", HeaderValue::from_static("e"));
        headers.insert("x-1", HeaderValue::from_static("f"));
        remove_named(&mut headers, &many);
        let left: Vec<_> = headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(left, ["x-keep"]);
        remove_named(&mut headers, &[]);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn a_short_map_is_walked_and_a_long_one_is_not() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("a"));
        assert!(!may_hold(&headers, &HeaderName::from_static("te")));
        for i in 0..WALKED_UP_TO {
            headers.insert(
                HeaderName::from_bytes(format!("x-{i}").as_bytes()).expect("a name"),
                HeaderValue::from_static("v"),
            );
        }
        // Past the bound the walk is skipped: the map's lookup decides.
        assert!(may_hold(&headers, &HeaderName::from_static("te")));
        assert!(!holds(&headers, &HeaderName::from_static("te")));
    }
}
