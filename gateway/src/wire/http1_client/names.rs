//! The response field names a connection read last, so that the next response's names — an
//! upstream sends the same ones in the same order, response after response — are each known by
//! one comparison with the bytes as sent instead of being parsed again. Parsing a name into a
//! `HeaderName` cost about 115 instructions in the profile (docs/PERFORMANCE.md); a name found
//! here costs a comparison and a clone.

use http::HeaderName;
use http::header::InvalidHeaderName;

/// Positions remembered at most, and bytes of names: enough for a typical response head, small
/// enough that an idle connection holds little.
const POSITIONS: usize = 24;
const RAW_BYTES: usize = 384;

/// What a response field is, as this client reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum FieldKind {
    /// `Connection`: read for this connection's keep-alive; kept only when it names fields.
    Connection,
    /// `Keep-Alive`: speaks of this connection only, never handed on.
    KeepAlive,
    Other(HeaderName),
}

impl FieldKind {
    fn of(raw: &[u8]) -> Result<Self, InvalidHeaderName> {
        if raw.eq_ignore_ascii_case(b"connection") {
            Ok(Self::Connection)
        } else if raw.eq_ignore_ascii_case(b"keep-alive") {
            Ok(Self::KeepAlive)
        } else {
            HeaderName::from_bytes(raw).map(Self::Other)
        }
    }
}

/// The names of the last response, by position.
#[derive(Default)]
pub(super) struct RecentNames {
    /// The names as sent, back to back.
    raw: Vec<u8>,
    /// For each position from the first: where its name ends in `raw`, and what it is.
    known: Vec<(usize, FieldKind)>,
}

impl RecentNames {
    /// What the field at `position` of a head, its name sent as `raw`, is. Positions are asked
    /// in order from 0 for each head; a name that differs from the last response's at its
    /// position makes this one and those after it learned again.
    pub(super) fn kind(
        &mut self,
        position: usize,
        raw: &[u8],
    ) -> Result<FieldKind, InvalidHeaderName> {
        let start = match position.checked_sub(1) {
            None => 0,
            Some(before) => match self.known.get(before) {
                Some(&(end, _)) => end,
                // An earlier position was not remembered: neither is this one.
                None => return FieldKind::of(raw),
            },
        };
        if let Some((end, kind)) = self.known.get(position) {
            if self.raw.get(start..*end) == Some(raw) {
                return Ok(kind.clone());
            }
        }
        self.known.truncate(position);
        self.raw.truncate(start);
        let kind = FieldKind::of(raw)?;
        if position < POSITIONS && start + raw.len() <= RAW_BYTES {
            self.raw.extend_from_slice(raw);
            self.known.push((self.raw.len(), kind.clone()));
        }
        Ok(kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_LENGTH, DATE, SERVER};

    fn kinds(names: &mut RecentNames, head: &[&str]) -> Vec<FieldKind> {
        head.iter()
            .enumerate()
            .map(|(i, raw)| names.kind(i, raw.as_bytes()).expect("a name"))
            .collect()
    }

    #[test]
    fn each_position_gives_the_name_sent_there_whether_remembered_or_not() {
        let mut names = RecentNames::default();
        let first = ["Server", "Date", "Connection", "Content-Length"];
        let expected = vec![
            FieldKind::Other(SERVER),
            FieldKind::Other(DATE),
            FieldKind::Connection,
            FieldKind::Other(CONTENT_LENGTH),
        ];
        assert_eq!(kinds(&mut names, &first), expected);
        // The same head again: every name comes from memory, and is the same.
        assert_eq!(kinds(&mut names, &first), expected);
        assert_eq!(names.known.len(), 4);
        // A head that differs in its second name: the rest are read afresh and remembered.
        let second = ["Server", "X-Trace", "Keep-Alive", "content-length", "Date"];
        assert_eq!(
            kinds(&mut names, &second),
            vec![
                FieldKind::Other(SERVER),
                FieldKind::Other(HeaderName::from_static("x-trace")),
                FieldKind::KeepAlive,
                FieldKind::Other(CONTENT_LENGTH),
                FieldKind::Other(DATE),
            ]
        );
        assert_eq!(names.raw, b"ServerX-TraceKeep-Alivecontent-lengthDate");
        // A shorter head, then the first again: still the names sent.
        assert_eq!(kinds(&mut names, &["Date"]), vec![FieldKind::Other(DATE)]);
        assert_eq!(kinds(&mut names, &first), expected);
    }

    #[test]
    fn a_name_that_is_not_one_is_refused_every_time_and_never_remembered() {
        let mut names = RecentNames::default();
        assert!(names.kind(0, b"Server").is_ok());
        assert!(names.kind(1, b"bad name").is_err());
        assert_eq!(names.known.len(), 1);
        assert!(names.kind(1, b"bad name").is_err());
        // A prefix of a remembered name is not that name.
        assert_eq!(
            names.kind(0, b"Serve").expect("a name"),
            FieldKind::Other(HeaderName::from_static("serve"))
        );
    }

    #[test]
    fn a_long_head_is_remembered_only_up_to_its_bounds() {
        let mut names = RecentNames::default();
        let head: Vec<String> = (0..40).map(|i| format!("x-field-{i}")).collect();
        let head: Vec<&str> = head.iter().map(String::as_str).collect();
        let first = kinds(&mut names, &head);
        assert_eq!(names.known.len(), POSITIONS);
        assert!(names.raw.len() <= RAW_BYTES);
        assert_eq!(kinds(&mut names, &head), first);
        for (kind, raw) in first.iter().zip(&head) {
            assert_eq!(
                kind,
                &FieldKind::Other(HeaderName::from_bytes(raw.as_bytes()).expect("a name"))
            );
        }
    }
}
