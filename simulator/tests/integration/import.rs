//! `simulator import` on the committed HAR, GoReplay and Gatehouse fixtures: what it prints,
//! its exit codes, what it writes (read back through `replay::read::load`), and the documented
//! errors of bad recordings, with and without `--skip-bad`.

use std::path::{Path, PathBuf};
use std::process::Command;

use simulator::replay::model::Exchange;
use simulator::replay::read::{self, ReadOptions};

fn fixture(path: &str) -> String {
    format!("simulator/tests/fixtures/{path}")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `simulator import` from the repository root, as the docs do.
fn import(args: &[&str]) -> Ran {
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .arg("import")
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("run simulator");
    Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Imports `file` into a temporary directory; returns what ran and the exchanges written.
fn import_ok(file: &str) -> (Ran, Vec<Exchange>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("out.jsonl");
    let ran = import(&[&fixture(file), "--to", out.to_str().expect("utf-8 path")]);
    assert_eq!(ran.code, 0, "{}", ran.stderr);
    let written = read::load(&out, &ReadOptions::default()).expect("the output reads back");
    assert!(written.warnings.is_empty() && written.skipped.is_empty());
    (ran, written.exchanges, dir)
}

fn summary_of(ran: &Ran, dir: &tempfile::TempDir) -> String {
    ran.stdout
        .trim_end()
        .replace(dir.path().to_str().expect("utf-8 path"), "TMP")
}

fn header<'e>(exchange: &'e Exchange, name: &str) -> Option<&'e str> {
    exchange
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn import_converts_a_devtools_har_with_h1_and_h2_entries() {
    let (ran, exchanges, dir) = import_ok("import/chrome-devtools.har");
    assert_eq!(
        summary_of(&ran, &dir),
        "imported 4 exchanges from simulator/tests/fixtures/import/chrome-devtools.har (HAR) to TMP/out.jsonl; 2 warnings: 1 no-response, 1 unknown-http-version"
    );
    assert!(ran.stderr.contains(
        "warning: simulator/tests/fixtures/import/chrome-devtools.har: entry 4: no response (status 0: blocked, cancelled or failed); nothing to diff (no-response)"
    ));
    // Sent order, not file order: the blocked tracker (entry 4) went out before the logo (entry 3).
    let ids: Vec<_> = exchanges.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["har-1", "har-4", "har-3", "har-2"]);

    let products = &exchanges[0];
    assert_eq!(products.version, "HTTP/2.0");
    assert_eq!(products.target, "/api/v1/products?page=1&sort=price");
    assert_eq!(
        products.headers[0],
        ("host".into(), "shop.example.com".into())
    );
    assert!(products.headers.iter().all(|(n, _)| !n.starts_with(':')));
    assert_eq!(products.client, "user-42", "the bearer token's subject");
    assert_eq!(products.unix_nanos, 1_709_630_130_250_000_000);
    let response = products.response.as_ref().expect("kept");
    assert_eq!((response.status, response.body_len), (200, 25));

    let logo = &exchanges[2];
    assert_eq!(logo.connection, products.connection, "one h2 connection");
    let png = logo.response.as_ref().expect("kept");
    assert_eq!(png.body_len, 29, "the base64 body decoded");
    assert_eq!(png.body_sha256.as_deref().map(str::len), Some(64));

    let cart = &exchanges[3];
    assert_eq!(cart.version, "HTTP/1.1");
    assert_eq!(cart.target, "/api/v1/cart");
    assert_eq!(cart.body, br#"{"sku":"A-1001","qty":2}"#);
    assert_eq!(
        header(cart, "content-length"),
        Some("24"),
        "it agrees, so it stays"
    );
    assert!(cart.client.starts_with("cookie#"), "{}", cart.client);
    assert!(!cart.client.contains("s3cr3t"));
    let set_cookie = cart.response.as_ref().and_then(|r| {
        r.headers
            .iter()
            .find(|(n, _)| n == "set-cookie")
            .map(|(_, v)| v.clone())
    });
    assert_eq!(set_cookie.as_deref(), Some("<redacted>"));
    assert!(exchanges[1].response.is_none(), "the blocked entry");
}

#[test]
fn import_converts_a_proxy_har_with_binary_bodies_and_messy_entries() {
    let (ran, exchanges, dir) = import_ok("import/proxy.har");
    assert_eq!(
        summary_of(&ran, &dir),
        "imported 3 exchanges from simulator/tests/fixtures/import/proxy.har (HAR) to TMP/out.jsonl; 2 warnings: 1 content-length-mismatch, 1 http-1.0"
    );
    let [put, status, post] = &exchanges[..] else {
        panic!("three exchanges");
    };
    assert_eq!(
        put.body,
        [0x00, 0x01, 0xfe, 0xff],
        "postData.encoding: base64"
    );
    assert_eq!(
        put.unix_nanos, 1_709_629_200_000_000_000,
        "+02:00 read as such"
    );
    assert_eq!(put.client, post.client, "the same API key, hashed");
    assert!(put.client.starts_with("x-api-key#") && !put.client.contains("ak_live"));
    assert_eq!(put.connection, post.connection);
    assert_ne!(put.connection, status.connection);
    assert_eq!(status.version, "HTTP/1.0");
    assert_eq!(
        header(status, "host"),
        Some("legacy.example.com"),
        "from the URL"
    );
    assert_eq!(
        header(post, "content-length"),
        None,
        "64 disagreed with 17 bytes"
    );
    assert_eq!(put.response.as_ref().map(|r| r.status), Some(204));
}

#[test]
fn import_converts_a_goreplay_file_with_every_messy_case() {
    let (ran, exchanges, dir) = import_ok("import/capture.gor");
    assert_eq!(
        summary_of(&ran, &dir),
        "imported 4 exchanges from simulator/tests/fixtures/import/capture.gor (GoReplay) to TMP/out.jsonl; 4 warnings: 1 blank-line, 1 content-length-mismatch, 1 http-1.0, 1 replayed-response"
    );
    let ids: Vec<_> = exchanges.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "8e5f3c2a9b1d4e7f0a6c5b3d2e1f0a9b8c7d6e5f",
            "b7",
            "a1",
            "c0ffee"
        ],
        "sorted by timestamp, ids of any length"
    );
    let products = &exchanges[0];
    assert_eq!(products.client, "user-42");
    let response = products.response.as_ref().expect("the type 2 record");
    assert_eq!((response.status, response.body_len), (200, 25));
    assert_eq!(exchanges[1].version, "HTTP/1.0");
    assert_eq!(
        exchanges[2].body.len(),
        24,
        "the bytes, not Content-Length: 40"
    );
    assert_eq!(header(&exchanges[2], "content-length"), None);
    assert_eq!(exchanges[3].body, b"hello world", "chunked, decoded");
    assert_eq!(
        exchanges[3].position, 4,
        "read back: its line in the output"
    );
}

#[test]
fn import_reads_crlf_goreplay_files_without_a_final_separator() {
    let (ran, exchanges, dir) = import_ok("import/crlf-no-final-separator.gor");
    assert_eq!(
        summary_of(&ran, &dir),
        "imported 2 exchanges from simulator/tests/fixtures/import/crlf-no-final-separator.gor (GoReplay) to TMP/out.jsonl; no warnings"
    );
    let [delete, get] = &exchanges[..] else {
        panic!("two exchanges");
    };
    assert_eq!(
        (delete.id.as_str(), delete.method.as_str()),
        ("d2", "DELETE")
    );
    assert_eq!(header(delete, "content-length"), Some("0"));
    assert_eq!(get.target, "/api/v1/users/7");
    assert!(get.body.is_empty());
    let response = get
        .response
        .as_ref()
        .expect("the type 2 record, last in the file");
    assert_eq!((response.status, response.body_len), (404, 2));
}

/// `(fixture, the error, what --skip-bad imports)`.
const BAD: [(&str, &str, usize); 4] = [
    (
        "recordings/truncated.jsonl",
        "simulator/tests/fixtures/recordings/truncated.jsonl:3: truncated line (the file ends in the middle of a record): EOF while parsing a string at column 180",
        2,
    ),
    (
        "recordings/corrupt-line.jsonl",
        "simulator/tests/fixtures/recordings/corrupt-line.jsonl:2: not valid JSON: expected `:` at column 98",
        3,
    ),
    (
        "recordings/unknown-version.jsonl",
        "simulator/tests/fixtures/recordings/unknown-version.jsonl:3: unknown recording version 7; this simulator reads version 1",
        3,
    ),
    (
        "recordings/missing-field.jsonl",
        "simulator/tests/fixtures/recordings/missing-field.jsonl:2: request: missing field `method`",
        2,
    ),
];

#[test]
fn a_bad_recording_names_file_line_and_problem_and_exits_2() {
    for (file, error, _) in BAD {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out.jsonl");
        let ran = import(&[&fixture(file), "--to", out.to_str().expect("utf-8")]);
        assert_eq!(ran.code, 2, "{file}");
        assert_eq!(ran.stderr, format!("error: {error}\n"));
        assert_eq!(ran.stdout, "");
        assert!(!out.exists(), "nothing written for {file}");
    }
}

#[test]
fn skip_bad_imports_the_rest_and_counts_what_it_skipped() {
    for (file, error, kept) in BAD {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out.jsonl");
        let ran = import(&[
            &fixture(file),
            "--to",
            out.to_str().expect("utf-8"),
            "--skip-bad",
        ]);
        assert_eq!(ran.code, 0, "{file}: {}", ran.stderr);
        assert_eq!(ran.stderr, format!("skipped: {error}\n"));
        assert_eq!(
            summary_of(&ran, &dir),
            format!(
                "imported {kept} exchanges from simulator/tests/fixtures/{file} (Gatehouse) to TMP/out.jsonl; no warnings; skipped 1 bad line (--skip-bad)"
            )
        );
        let written = read::load(&out, &ReadOptions::default()).expect("reads back");
        assert_eq!(written.exchanges.len(), kept);
    }
}

#[test]
fn an_unwritable_output_exits_3_and_unreadable_input_exits_2() {
    let ran = import(&[
        &fixture("import/proxy.har"),
        "--to",
        "/nonexistent-dir/out.jsonl",
    ]);
    assert_eq!(ran.code, 3);
    assert!(
        ran.stderr
            .contains("\nerror: /nonexistent-dir/out.jsonl: cannot write: "),
        "{}",
        ran.stderr
    );
    let ran = import(&[&fixture("import/missing.har"), "--to", "/dev/null"]);
    assert_eq!(ran.code, 2);
    assert!(
        ran.stderr
            .starts_with("error: simulator/tests/fixtures/import/missing.har: cannot read: ")
    );
}

#[test]
fn what_import_writes_reads_back_as_the_same_exchanges() {
    for file in [
        "import/chrome-devtools.har",
        "import/proxy.har",
        "import/capture.gor",
        "import/crlf-no-final-separator.gor",
        "recordings/valid.jsonl",
    ] {
        let path = repo_root().join(fixture(file));
        let original = read::load(&path, &ReadOptions::default()).expect("reads");
        let mut lines = Vec::new();
        read::write_lines(&original.exchanges, &mut lines).expect("writes");
        let dir = tempfile::tempdir().expect("temp dir");
        let written = dir.path().join("out.jsonl");
        std::fs::write(&written, &lines).expect("write");
        let again = read::load(&written, &ReadOptions::default()).expect("reads back");
        // Lines keep microseconds; a GoReplay timestamp's nanoseconds below that are dropped.
        let comparable = |exchanges: &[Exchange]| {
            let mut exchanges = exchanges.to_vec();
            for (n, e) in exchanges.iter_mut().enumerate() {
                e.unix_nanos -= e.unix_nanos % 1000;
                // A line's position is its line number in the file it was read from.
                e.position = n as u64;
            }
            serde_json::to_value(exchanges).expect("serializes")
        };
        assert_eq!(
            comparable(&original.exchanges),
            comparable(&again.exchanges),
            "{file}"
        );
        // Importing what was imported changes nothing.
        let mut twice = Vec::new();
        read::write_lines(&again.exchanges, &mut twice).expect("writes");
        assert_eq!(lines, twice, "{file}");
    }
}

#[test]
fn a_gatehouse_line_keeps_its_record_identity_and_connection() {
    let path = repo_root().join(fixture("recordings/valid.jsonl"));
    assert_eq!(
        read::detect(&path).ok(),
        Some(simulator::replay::model::Format::Gatehouse)
    );
    let recording = read::load(&path, &ReadOptions::default()).expect("reads");
    let first = &recording.exchanges[0];
    assert_eq!(first.id, "req-0001");
    assert_eq!(first.client, "user-42", "the credential's subject");
    assert_eq!(first.connection.as_deref(), Some("3"));
    assert_eq!(first.unix_nanos, 1_709_630_130_250_000_000);
    assert_eq!(first.recorded.as_ref().map(|r| r.status), Some(200));
    assert_eq!(first.credentials.len(), 1);
    assert_eq!(header(first, "authorization"), Some("<redacted>"));
}

#[test]
fn every_cut_of_every_fixture_reads_or_fails_with_a_located_error_never_a_panic() {
    for file in [
        "import/chrome-devtools.har",
        "import/proxy.har",
        "import/capture.gor",
        "import/crlf-no-final-separator.gor",
        "recordings/valid.jsonl",
    ] {
        let path = repo_root().join(fixture(file));
        let bytes = std::fs::read(&path).expect("fixture");
        for cut in (0..bytes.len()).step_by(3) {
            for skip_bad in [false, true] {
                let options = ReadOptions { skip_bad };
                match read::parse(&path, &bytes[..cut], &options) {
                    Ok(recording) => {
                        assert!(recording.exchanges.len() <= 6, "{file} cut at {cut}");
                    }
                    Err(error) => assert!(
                        error.to_string().starts_with(&path.display().to_string()),
                        "{file} cut at {cut}: {error}"
                    ),
                }
            }
        }
    }
}
