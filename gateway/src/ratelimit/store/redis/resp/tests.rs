//! The RESP2 reader and writer: every reply kind, replies cut at every byte, several in one
//! buffer, and bytes that are not RESP, which must be refused, never panic.

use proptest::prelude::*;

use super::{Command, Malformed, Reply, parse};

fn encode(reply: &Reply, out: &mut Vec<u8>) {
    match reply {
        Reply::Simple(s) => out.extend_from_slice(format!("+{s}\r\n").as_bytes()),
        Reply::Error(s) => out.extend_from_slice(format!("-{s}\r\n").as_bytes()),
        Reply::Integer(n) => out.extend_from_slice(format!(":{n}\r\n").as_bytes()),
        Reply::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
        Reply::Bulk(Some(b)) => {
            out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
            out.extend_from_slice(b);
            out.extend_from_slice(b"\r\n");
        }
        Reply::Array(None) => out.extend_from_slice(b"*-1\r\n"),
        Reply::Array(Some(items)) => {
            out.extend_from_slice(format!("*{}\r\n", items.len()).as_bytes());
            for item in items {
                encode(item, out);
            }
        }
    }
}

fn any_reply() -> impl Strategy<Value = Reply> {
    // Simple strings and errors hold no CR or LF, as on the wire.
    let line = "[a-zA-Z0-9 :._-]{0,20}";
    let leaf = prop_oneof![
        line.prop_map(Reply::Simple),
        line.prop_map(Reply::Error),
        any::<i64>().prop_map(Reply::Integer),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..40)).prop_map(Reply::Bulk),
        Just(Reply::Array(None)),
    ];
    leaf.prop_recursive(3, 64, 8, |inner| {
        prop::collection::vec(inner, 0..8).prop_map(|items| Reply::Array(Some(items)))
    })
}

#[test]
fn a_script_answer_reads_as_its_integers() {
    let wire = b"*8\r\n:1\r\n:999\r\n:0\r\n:1000\r\n:0\r\n:0\r\n:-1\r\n:9223372036854775807\r\n";
    let (reply, used) = parse(wire).expect("well formed").expect("complete");
    assert_eq!(used, wire.len());
    assert_eq!(
        reply.integers(),
        Some(vec![1, 999, 0, 1000, 0, 0, -1, i64::MAX])
    );
}

#[test]
fn an_array_with_anything_but_integers_has_no_integers() {
    let (reply, _) = parse(b"*2\r\n:1\r\n$1\r\nx\r\n").unwrap().unwrap();
    assert_eq!(reply.integers(), None);
    let (reply, _) = parse(b":7\r\n").unwrap().unwrap();
    assert_eq!(
        reply.integers(),
        None,
        "an integer alone is not the script's answer"
    );
}

#[test]
fn the_error_redis_sends_for_a_missing_script_keeps_its_text() {
    let (reply, _) = parse(b"-NOSCRIPT No matching script. Please use EVAL.\r\n")
        .unwrap()
        .unwrap();
    assert_eq!(
        reply,
        Reply::Error("NOSCRIPT No matching script. Please use EVAL.".into())
    );
}

#[test]
fn replies_are_read_one_at_a_time_from_a_shared_buffer() {
    let wire = b"+OK\r\n$-1\r\n*-1\r\n$3\r\nabc\r\n:4";
    let mut at = 0;
    let mut got = Vec::new();
    while let Some((reply, used)) = parse(&wire[at..]).expect("well formed") {
        got.push(reply);
        at += used;
    }
    assert_eq!(
        got,
        vec![
            Reply::Simple("OK".into()),
            Reply::Bulk(None),
            Reply::Array(None),
            Reply::Bulk(Some(b"abc".to_vec())),
        ]
    );
    assert_eq!(
        &wire[at..],
        b":4",
        "the unfinished integer waits for its CRLF"
    );
}

#[test]
fn bytes_that_break_resp_are_refused_with_what_broke() {
    let cases: [(&[u8], &str); 8] = [
        (b"+OK\n", "a line ending in LF alone"),
        (b"\r\n", "an empty line"),
        (b"?x\r\n", "an unknown reply type"),
        (b":12a\r\n", "an integer that is not one"),
        (b":99999999999999999999\r\n", "an integer that is not one"),
        (b":9223372036854775808\r\n", "an integer out of range"),
        (b"$-2\r\n", "a length out of range"),
        (b"$1\r\nabc\r\n", "a bulk string longer than its length"),
    ];
    for (wire, why) in cases {
        assert_eq!(parse(wire), Err(Malformed(why)), "{wire:?}");
    }
    assert_eq!(
        parse(b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n"),
        Err(Malformed("arrays nested too deep"))
    );
    assert_eq!(
        parse(b"*2000000\r\n"),
        Err(Malformed("a length out of range"))
    );
}

#[test]
fn a_command_is_an_array_of_bulk_strings() {
    let mut cmd = Command::default();
    cmd.arg(b"EVALSHA").arg(b"ab").arg_u64(0).arg_u64(u64::MAX);
    let mut out = Vec::new();
    cmd.write_to(&mut out);
    assert_eq!(
        out,
        b"*4\r\n$7\r\nEVALSHA\r\n$2\r\nab\r\n$1\r\n0\r\n$20\r\n18446744073709551615\r\n"
    );
    cmd.clear();
    cmd.arg(b"");
    out.clear();
    cmd.write_to(&mut out);
    assert_eq!(out, b"*1\r\n$0\r\n\r\n");
}

proptest! {
    #[test]
    fn any_reply_reads_back_whole_and_waits_when_cut(reply in any_reply()) {
        let mut wire = Vec::new();
        encode(&reply, &mut wire);
        prop_assert_eq!(parse(&wire), Ok(Some((reply, wire.len()))));
        for cut in 0..wire.len() {
            prop_assert_eq!(parse(&wire[..cut]), Ok(None), "cut at {}", cut);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_claim_more_than_they_hold(
        wire in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        if let Ok(Some((_, used))) = parse(&wire) {
            prop_assert!(used <= wire.len());
        }
    }
}
