//! `simulator compare` through the binary: the table, JSON, SVG plots and the HTML report from
//! the committed recording and from profiles, and the exit codes for bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn recording() -> String {
    root()
        .join("fixtures/recordings/bursty-3-keys.jsonl")
        .to_string_lossy()
        .into_owned()
}

fn simulator(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(args)
        .output()
        .expect("run simulator");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gatehouse-compare-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn the_committed_recording_compares_every_algorithm_in_a_table() {
    let (code, stdout, stderr) = simulator(&["compare", &recording(), "--algorithms", "all"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("156 arrivals, 3 keys"), "{stdout}");
    assert!(stdout.contains("quota:   10 per 1s, burst 10"), "{stdout}");
    for name in [
        "token-bucket",
        "gcra",
        "fixed-window",
        "sliding-log",
        "sliding-window-counter",
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(name)),
            "{name}: {stdout}"
        );
    }
    assert!(
        stdout.contains("1 RT, 2 keys, 7-9 cmds"),
        "the sliding log's Redis cost"
    );
    assert!(stdout.contains("most rejected keys"));
}

#[test]
fn json_plots_and_the_html_report_are_written_where_asked() {
    let dir = temp_dir("outputs");
    let json = dir.join("compare.json");
    let report = dir.join("compare.html");
    let plots = dir.join("plots");
    let (code, stdout, stderr) = simulator(&[
        "compare",
        "many-keys:keys=50,rate=400,duration=10s",
        "--algorithms",
        "gcra,fixed-window",
        "--rate",
        "5",
        "--period",
        "1s",
        "--burst",
        "3",
        "--json",
        json.to_str().expect("utf8"),
        "--plots",
        plots.to_str().expect("utf8"),
        "--report",
        report.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    assert_eq!(value["quota"]["limit"], 5);
    assert_eq!(value["quota"]["burst"], 3);
    let results = value["results"].as_array().expect("results");
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["algorithm"], "gcra");
    assert_eq!(results[1]["algorithm"], "fixed-window");
    let arrivals = value["trace"]["arrivals"].as_u64().expect("arrivals");
    let decided = results[0]["admitted"].as_u64().expect("admitted")
        + results[0]["rejected"].as_u64().expect("rejected");
    assert_eq!(decided, arrivals);
    assert!(results[0]["redis"]["round_trips"] == 1);
    for name in ["compare-admitted.svg", "compare-rejections.svg"] {
        let svg = std::fs::read_to_string(plots.join(name)).expect("svg written");
        assert!(svg.starts_with("<svg"), "{name}");
    }
    let page = std::fs::read_to_string(&report).expect("report written");
    assert_eq!(page.matches("<svg").count(), 2);
    assert!(page.contains("<td>fixed-window</td>"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn json_to_stdout_replaces_the_table() {
    let (code, stdout, stderr) =
        simulator(&["compare", "steady:rate=20,duration=2s", "--json", "-"]);
    assert_eq!(code, 0, "{stderr}");
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("json on stdout");
    // 20/s for 2 s against 10/s with a burst of 10: exactly 40 arrivals, and the sliding log
    // admits the first 10 of the first second, then one every 100 ms.
    assert_eq!(value["trace"]["arrivals"], 40);
    let log = value["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["algorithm"] == "sliding-log")
        .expect("sliding log");
    assert_eq!(log["false_allows"], 0);
    assert_eq!(log["false_denies"], 0);
}

#[test]
fn a_bad_recording_line_exits_2_naming_file_and_line() {
    let dir = temp_dir("bad");
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("bad.jsonl");
    let mut text: String = std::fs::read_to_string(recording())
        .expect("recording")
        .lines()
        .take(3)
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str("{\"request_id\": \"x\", \"unix_millis\": \"soon\"}\n");
    std::fs::write(&file, text).expect("write");
    let (code, _, stderr) = simulator(&["compare", file.to_str().expect("utf8")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("bad.jsonl:4:"), "{stderr}");
    assert!(stderr.contains("not a request record"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn usage_errors_exit_1_and_unwritable_outputs_exit_3() {
    for args in [
        &["compare", "steady", "--algorithms", "leaky-bucket"][..],
        &["compare", "no-such-profile-or-file"],
        &["compare", "steady:rate=fast"],
        &["compare", "bursty:colour=red"],
        &["compare"],
    ] {
        let (code, _, stderr) = simulator(args);
        assert_eq!(code, 1, "{args:?}: {stderr}");
    }
    let (code, _, stderr) = simulator(&["compare", "steady", "--algorithms", "leaky-bucket"]);
    assert!(stderr.contains("`leaky-bucket`"), "{stderr}");
    let (code3, _, stderr3) = simulator(&[
        "compare",
        "steady:duration=1s",
        "--report",
        "/dev/null/compare.html",
    ]);
    assert_eq!((code, code3), (1, 3), "{stderr3}");
    assert!(stderr3.contains("/dev/null"), "{stderr3}");
}

#[test]
fn impossible_quotas_exit_2_with_a_message_naming_the_flag() {
    for (args, flag) in [
        (&["compare", "steady", "--rate", "0"][..], "--rate 0"),
        (&["compare", "steady", "--rate", "-1"], "--rate -1"),
        (&["compare", "steady", "--rate", "NaN"], "--rate NaN"),
        (&["compare", "steady", "--rate", "0.5"], "lengthen --period"),
        (&["compare", "steady", "--burst", "0"], "--burst 0"),
        (&["compare", "steady", "--burst", "-3"], "--burst -3"),
        (&["compare", "steady", "--period", "0s"], "--period 0s"),
        (&["compare", "steady", "--period", "-1s"], "--period -1s"),
    ] {
        let (code, stdout, stderr) = simulator(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: nothing compared: {stdout}");
    }
}

#[test]
fn the_sample_recording_is_what_its_documented_command_makes() {
    // docs/compare.md: how fixtures/recordings/bursty-3-keys.jsonl was made.
    let dir = temp_dir("export");
    let out = dir.join("again.jsonl");
    let (code, _, stderr) = simulator(&[
        "compare",
        "bursty:keys=3,duration=20s,seed=7",
        "--rate",
        "10",
        "--export-records",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&out).expect("exported"),
        std::fs::read_to_string(recording()).expect("committed")
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A `redis-server` of the test's own on a free loopback port, killed on drop (as the gateway's
/// rate-limit tests start one).
struct RedisServer {
    port: u16,
    child: std::process::Child,
}

impl RedisServer {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it (./scripts/test does)")
            });
        super::util::eventually_blocking(
            "redis-server accepts connections",
            std::time::Duration::from_secs(5),
            || std::net::TcpStream::connect(("127.0.0.1", port)).map(drop),
        );
        Self { port, child }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn redis_operations_per_decision_are_measured_from_a_real_redis() {
    let redis = RedisServer::start();
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let (code, stdout, stderr) = simulator(&[
        "compare",
        "bursty:duration=20s",
        "--rate",
        "10",
        "--redis",
        &url,
        "--json",
        "-",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let measured = json["redis_measured"].as_array().expect("measured");
    assert_eq!(measured.len(), 5, "{measured:?}");
    for m in measured {
        let algorithm = m["algorithm"].as_str().expect("name");
        let decisions = m["decisions"].as_u64().expect("decisions");
        let admitted = m["admitted"].as_u64().expect("admitted");
        assert!(
            0 < admitted && admitted < decisions,
            "admitted and refused paths: {m}"
        );
        assert_eq!(
            m["round_trips"].as_f64(),
            Some(1.0),
            "{algorithm}: one EVALSHA each"
        );
        let commands = m["commands"].as_f64().expect("commands");
        let by = &m["by_command"];
        if algorithm == "sliding-log" {
            // HMGET, ZRANGEBYSCORE, ZRANGE, HSET, PEXPIRE ×2 at least; ZADD on admissions.
            assert!((6.0..=10.0).contains(&commands), "{algorithm}: {m}");
            assert!(by["zadd"].as_f64().is_some_and(|n| n > 0.0), "{m}");
        } else {
            // A read of the state, HSET, PEXPIRE: three, admitted or refused. GCRA's state is
            // one field, read with HGET; the others' are two or three, read with HMGET.
            assert!((commands - 3.0).abs() < 1e-9, "{algorithm}: {m}");
            let read = if algorithm == "gcra" { "hget" } else { "hmget" };
            assert_eq!(by[read].as_f64(), Some(1.0), "{m}");
            assert_eq!(by["hset"].as_f64(), Some(1.0), "{m}");
        }
        // The store decides as the engine: the same admissions.
        let engine = json["results"]
            .as_array()
            .and_then(|r| r.iter().find(|r| r["algorithm"] == algorithm))
            .and_then(|r| r["admitted"].as_u64());
        assert_eq!(m["admitted"].as_u64(), engine, "{algorithm}");
    }
}

#[test]
fn lease_rows_join_the_table_and_the_json_and_the_sliding_log_takes_no_lease() {
    let (code, stdout, stderr) = simulator(&[
        "compare",
        "bursty:rate=5,burst=100,every=5s,duration=20s",
        "--rate",
        "50",
        "--period",
        "5s",
        "--algorithms",
        "gcra,lease:gcra,lease:fixed-window",
        "--lease-nodes",
        "4",
        "--lease-size",
        "20%",
        "--lease-sync-interval",
        "500ms",
        "--json",
        "-",
    ]);
    assert_eq!(code, 0, "{stderr}");
    let value: serde_json::Value = serde_json::from_str(&stdout).expect("json on stdout");
    let results = value["results"].as_array().expect("results");
    assert_eq!(results.len(), 3);
    assert!(
        results[0].get("lease").is_none(),
        "a plain row has no lease"
    );
    assert_eq!(results[1]["algorithm"], "gcra");
    assert_eq!(results[1]["lease"]["nodes"], 4);
    assert_eq!(results[1]["lease"]["size"], 10, "20% of 50");
    // E = min(4 × 10, ⌈500 ms / 100 ms⌉) for the bucket; a window's slices end with it.
    assert_eq!(results[1]["lease"]["extra_bound"], 5);
    assert_eq!(results[2]["lease"]["extra_bound"], 0);
    assert!(results[1]["lease"]["fetches"].as_u64().expect("fetches") > 0);

    let (code, stdout, stderr) = simulator(&[
        "compare",
        &recording(),
        "--algorithms",
        "fixed-window,lease:fixed-window",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("lease:fixed-window ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("lease:fixed-window: 3 nodes, 1 units per fetch, sync interval 100ms"),
        "{stdout}"
    );

    let (code, _, stderr) =
        simulator(&["compare", &recording(), "--algorithms", "lease:sliding-log"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("takes no lease"), "{stderr}");
    let (code, _, stderr) = simulator(&[
        "compare",
        &recording(),
        "--algorithms",
        "lease",
        "--lease-size",
        "11",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("more than token-bucket admits at once (10)"),
        "{stderr}"
    );
}
