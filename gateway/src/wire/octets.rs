//! HTTP/1.1's byte classes — token characters (RFC 9110 §5.6.2) and field-value bytes (§5.5) —
//! as tables, and the runs of them that the request-head parser and the upstream response scan
//! read at every byte of every head. A value run is read a word at a time: a value such as a
//! `Date` took about six instructions a byte one byte at a time (docs/PERFORMANCE.md).

/// RFC 9110 §5.6.2 `tchar`.
pub const fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`'
        | b'|' | b'~' | b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z')
}

/// A field value's bytes (RFC 9110 §5.5) — the same for a reason phrase and a chunk extension:
/// visible ASCII, obs-text, SP and HTAB; never NUL, CR, LF, another control byte or DEL.
pub const fn is_value_byte(b: u8) -> bool {
    matches!(b, b'\t' | b' '..=b'~' | 0x80..=0xff)
}

/// A class as a table: one load per byte in the scanning loops.
pub type Class = [bool; 256];

/// The table of a `const fn(u8) -> bool` class, built at compile time.
macro_rules! class_table {
    ($class:path) => {{
        let mut t = [false; 256];
        let mut b = 0;
        while b < 256 {
            t[b] = $class(b as u8);
            b += 1;
        }
        t
    }};
}
pub(crate) use class_table;

pub static TCHAR: Class = class_table!(is_tchar);
pub static VALUE: Class = class_table!(is_value_byte);

/// How many bytes at the start of `bytes` are token characters.
#[inline]
pub fn token_run(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| TCHAR[usize::from(b)]).count()
}

/// How many bytes at the start of `bytes` are field-value bytes.
///
/// Sixteen at a time while a whole block is value bytes: the block is judged without an early
/// exit, which the compiler turns into a few vector compares — a bearer token is hundreds of
/// bytes. Then eight at a time: the word-at-a-time tests of "Bit Twiddling Hacks" (a byte less
/// than n, a byte equal to n) flag the bytes below SP and DEL, and the lowest flag of such a test
/// is always a true one, so the first flagged byte (the word read little-endian) ends the run —
/// unless it is an HTAB, a value byte below SP, after which the rest is read byte by byte.
#[inline]
pub fn value_run(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let mut at = 0;
    while let Some(block) = bytes.get(at..at + 16) {
        let mut stop = false;
        for &b in block {
            stop |= !is_value_byte(b);
        }
        if stop {
            break;
        }
        at += 16;
    }
    while let Some(word) = bytes.get(at..at + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("eight bytes"));
        let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
        let del = w ^ (ONES * 0x7f);
        let del = del.wrapping_sub(ONES) & !del & HIGH;
        let flagged = below_space | del;
        if flagged != 0 {
            at += (flagged.trailing_zeros() / 8) as usize;
            if bytes[at] != b'\t' {
                return at;
            }
            break;
        }
        at += 8;
    }
    at + bytes[at..]
        .iter()
        .take_while(|&&b| VALUE[usize::from(b)])
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value_run_bytewise(bytes: &[u8]) -> usize {
        bytes.iter().take_while(|&&b| is_value_byte(b)).count()
    }

    #[test]
    fn the_classes_are_the_rfcs() {
        let tchar: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        assert_eq!(
            tchar,
            b"!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz|~"
        );
        let refused: Vec<u8> = (0..=255u8).filter(|&b| !is_value_byte(b)).collect();
        let expected: Vec<u8> = (0..0x20u8).filter(|&b| b != b'\t').chain([0x7f]).collect();
        assert_eq!(refused, expected);
    }

    #[test]
    fn a_value_run_stops_at_every_byte_that_is_not_one_wherever_it_sits() {
        for stop in (0..=255u8).filter(|&b| !is_value_byte(b)) {
            // Blocks of sixteen, then words of eight, then single bytes: a stop in each.
            for at in 0..40 {
                let mut bytes = vec![b'a'; 43];
                bytes[at] = stop;
                assert_eq!(value_run(&bytes), at, "byte {stop:#x} at {at}");
            }
        }
        // Text to the end, with tabs and obs-text in whole words.
        let text = b"Fri, 04 Dec 2026\t18:33:00 GMT \x80\xff";
        assert_eq!(value_run(text), text.len());
        assert_eq!(value_run(b""), 0);
        // A tab, then the run's end, in one word; two stops in a word, the first counts; a
        // stop whose borrow runs into the next byte (0x00 then 0x20).
        assert_eq!(value_run(b"ab\tcd\x01efgh"), 5);
        assert_eq!(value_run(b"abcd\r\n\x7fxyz"), 4);
        assert_eq!(value_run(b"abcdefgh\x00 \x20jklmnop"), 8);
        assert_eq!(value_run(b"\t\t\t\t\t\t\t\t\t\r"), 9);
    }

    proptest! {
        #[test]
        fn a_value_run_is_the_bytewise_run(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(value_run(&bytes), value_run_bytewise(&bytes));
        }

        /// Mostly text, as real values are, so that long runs and late stops are drawn often.
        #[test]
        fn a_mostly_text_value_run_is_the_bytewise_run(
            bytes in proptest::collection::vec(
                prop_oneof![8 => 0x20u8..0x7f, 1 => any::<u8>()], 0..80),
        ) {
            prop_assert_eq!(value_run(&bytes), value_run_bytewise(&bytes));
        }
    }
}
