//! `gateway run` as a process: the bound addresses on stdout and in `--ready-file` when given
//! port 0, a busy port reported in one plain line, JSON logs, and no colour without a terminal.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn config_on(dir: &Path, address: &str) -> String {
    let path = dir.join("gateway.yaml");
    std::fs::write(
        &path,
        format!(
            r#"listeners: [{{ name: public, address: "{address}" }}]
admin: {{ address: "127.0.0.1:0" }}
access_log: off
upstreams:
  svc: {{ instances: ["127.0.0.1:9"] }}
routes:
  - {{ name: svc, match: {{ path: /* }}, upstream: svc }}
"#
        ),
    )
    .expect("write config");
    path.display().to_string()
}

fn spawn(args: &[&str], envs: &[(&str, &str)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn gateway run")
}

/// How often a waiting test looks again, and how many looks make the ten seconds it allows.
const POLL: Duration = Duration::from_millis(20);
const POLLS: u32 = 500;

/// Waits for the process to end on its own, killing it after about ten seconds so a regression
/// fails instead of hanging the suite.
fn wait_for_exit(child: &mut Child) -> i32 {
    for _ in 0..POLLS {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().unwrap_or(-1);
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    panic!("gateway did not exit within {:?}", POLL * POLLS);
}

fn output_of(child: &mut Child) -> (String, String) {
    let (mut stdout, mut stderr) = (String::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        s.read_to_string(&mut stdout).expect("stdout");
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut stderr).expect("stderr");
    }
    (stdout, stderr)
}

fn wait_for_file(path: &Path, child: &mut Child) -> String {
    for _ in 0..POLLS {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        if child.try_wait().expect("wait").is_some() {
            let (stdout, stderr) = output_of(child);
            panic!("gateway exited before it was ready: {stdout}{stderr}");
        }
        std::thread::sleep(POLL);
    }
    let _ = child.kill();
    panic!("no ready file at {}", path.display());
}

fn terminate(child: &mut Child) -> i32 {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    wait_for_exit(child)
}

#[test]
fn a_busy_port_is_reported_once_and_plainly_with_exit_3() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = busy.local_addr().expect("addr").to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_on(dir.path(), &address);
    let mut child = spawn(&["run", "--config", &config], &[]);
    let code = wait_for_exit(&mut child);
    let (stdout, stderr) = output_of(&mut child);
    assert_eq!(code, 3, "{stdout}{stderr}");
    assert_eq!(
        stderr,
        format!(
            "error: cannot listen on {address} (listeners[0] \"public\"): address already in use\n"
        ),
        "one line, nothing else"
    );
    assert_eq!(stdout, "", "nothing was bound, so nothing is announced");
}

/// `listening public http://127.0.0.1:PORT` → (`public`, the address).
fn parse_listening(text: &str) -> Vec<(String, std::net::SocketAddr)> {
    text.lines()
        .map(|line| {
            let mut words = line.split(' ');
            assert_eq!(words.next(), Some("listening"), "{line}");
            let name = words.next().expect("name").to_string();
            let url = words.next().expect("url");
            let address = url.strip_prefix("http://").expect("http URL");
            (name, address.parse().expect("a resolved address"))
        })
        .collect()
}

#[test]
fn port_0_is_announced_on_stdout_at_every_log_level_and_in_the_ready_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_on(dir.path(), "127.0.0.1:0");
    let ready = dir.path().join("ready");
    let ready_arg = ready.display().to_string();
    let mut child = spawn(
        &["run", "--config", &config, "--ready-file", &ready_arg],
        &[("RUST_LOG", "off")],
    );
    let announced = parse_listening(&wait_for_file(&ready, &mut child));
    let names: Vec<&str> = announced.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["public", "admin"]);
    for (name, address) in &announced {
        assert_ne!(
            address.port(),
            0,
            "{name}: the bound port, not the configured 0"
        );
        std::net::TcpStream::connect(address).expect("listening when announced");
    }
    let code = terminate(&mut child);
    let (stdout, stderr) = output_of(&mut child);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(parse_listening(&stdout), announced, "stdout says the same");
    assert_eq!(stderr, "", "RUST_LOG=off: no logs, and stdout still spoke");
    assert!(!ready.exists(), "the ready file goes with the gateway");
}

#[test]
fn log_format_json_logs_one_object_per_line_and_no_colour_without_a_terminal() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_on(dir.path(), "127.0.0.1:0");
    for (format, envs) in [
        ("json", vec![("RUST_LOG", "info")]),
        ("text", vec![("RUST_LOG", "info"), ("NO_COLOR", "1")]),
    ] {
        let ready = dir.path().join(format!("ready-{format}"));
        let ready_arg = ready.display().to_string();
        let mut child = spawn(
            &[
                "run",
                "--config",
                &config,
                "--ready-file",
                &ready_arg,
                "--log-format",
                format,
            ],
            &envs,
        );
        wait_for_file(&ready, &mut child);
        assert_eq!(terminate(&mut child), 0);
        let (_, stderr) = output_of(&mut child);
        assert!(!stderr.contains('\x1b'), "{format}: no ANSI: {stderr:?}");
        if format == "json" {
            let messages: Vec<String> = stderr
                .lines()
                .map(|l| {
                    let event: serde_json::Value =
                        serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
                    assert!(event["level"].is_string(), "{l}");
                    event["fields"]["message"]
                        .as_str()
                        .unwrap_or("")
                        .to_string()
                })
                .collect();
            assert!(messages.iter().any(|m| m == "listening"), "{messages:?}");
            assert!(messages.iter().any(|m| m == "stopped"), "{messages:?}");
        } else {
            assert!(stderr.contains("listening"), "{stderr}");
        }
    }
}

#[test]
fn a_ready_file_that_cannot_be_written_stops_the_gateway_with_exit_3() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_on(dir.path(), "127.0.0.1:0");
    let ready = dir.path().join("no-such-dir/ready").display().to_string();
    let mut child = spawn(
        &["run", "--config", &config, "--ready-file", &ready],
        &[("RUST_LOG", "off")],
    );
    let code = wait_for_exit(&mut child);
    let (_, stderr) = output_of(&mut child);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.starts_with(&format!("error: cannot write the ready file {ready}: ")),
        "{stderr}"
    );
}

/// Threads of `pid` whose name starts with `prefix` (the kernel keeps 15 bytes of a name).
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("task dir")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn workers_sets_the_threads_that_serve_requests() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_on(dir.path(), "127.0.0.1:0");
    for workers in [1, 3] {
        let text = std::fs::read_to_string(&config).expect("config");
        let with = format!(
            "workers: {workers}\n{}",
            text.trim_start_matches(|c| c != 'l')
        );
        std::fs::write(&config, with).expect("write config");
        let ready = dir.path().join(format!("ready-{workers}"));
        let ready_arg = ready.display().to_string();
        let mut child = spawn(
            &["run", "--config", &config, "--ready-file", &ready_arg],
            &[("RUST_LOG", "off")],
        );
        wait_for_file(&ready, &mut child);
        // A worker names itself once it runs, which on a loaded machine can come after the
        // ready file: wait a while for the count (never past it) before asking once more.
        // `workers: 1` is one thread of tokio's current-thread scheduler, more are tokio's
        // multi-threaded workers; the gateway names both `gatehouse-worker`.
        let named = |child: &Child| threads_named(child.id(), "gatehouse-work");
        for _ in 0..250 {
            if named(&child) >= workers {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let threads = named(&child);
        // Stopped before asserting, so a failure never leaves a gateway running.
        assert_eq!(terminate(&mut child), 0);
        assert_eq!(threads, workers);
    }
}
