//! The TUI driven as a person would: the `simulator` binary on a pseudo-terminal (portable-pty),
//! its screen read back through a terminal emulator (vt100), keys sent, the view seen to change,
//! `q` to quit — exit code 0 and the terminal restored (main screen, cursor shown, cooked mode).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};

use super::util::eventually_blocking;

/// A child on a pty, with its screen.
struct Session {
    master: Box<dyn MasterPty + Send>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    screen: Arc<Mutex<vt100::Parser>>,
}

const ROWS: u16 = 24;
const COLS: u16 = 80;

impl Session {
    fn start(args: &[&str]) -> Self {
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("a pseudo-terminal");
        let mut command = CommandBuilder::new(env!("CARGO_BIN_EXE_simulator"));
        command.args(args);
        command.env("TERM", "xterm-256color");
        command.cwd(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
        let child = pty.slave.spawn_command(command).expect("spawn on the pty");
        drop(pty.slave);
        let mut reader = pty.master.try_clone_reader().expect("reader");
        let writer = pty.master.take_writer().expect("writer");
        let screen = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let feed = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    return;
                }
                feed.lock().expect("screen").process(&buf[..n]);
            }
        });
        Self {
            master: pty.master,
            writer,
            child,
            screen,
        }
    }

    fn contents(&self) -> String {
        self.screen.lock().expect("screen").screen().contents()
    }

    /// Waits until the screen shows `text`; fails with the screen after 30 s.
    fn wait_for(&self, text: &str) {
        self.wait_until(text, |s| s.contains(text));
    }

    fn wait_until(&self, what: &str, ok: impl Fn(&str) -> bool) {
        eventually_blocking(
            &format!("the screen shows {what}"),
            Duration::from_secs(30),
            || {
                let screen = self.contents();
                if ok(&screen) {
                    Ok(())
                } else {
                    Err(format!("\n{screen}"))
                }
            },
        );
    }

    fn send(&mut self, keys: &str) {
        self.writer.write_all(keys.as_bytes()).expect("send keys");
        self.writer.flush().expect("flush");
    }

    /// Quits with `q` and checks the exit code and that the terminal is as it was.
    fn quit_and_check_restored(self) {
        self.quit_and_check_restored_then(|_| {});
    }

    /// The same, then hands what is on the (main) screen to `after`.
    fn quit_and_check_restored_then(mut self, after: impl FnOnce(&str)) {
        self.send("q");
        // On timeout the panic drops `self`, which kills the child.
        let (child, screen) = (&mut self.child, &self.screen);
        let status = eventually_blocking("q quits", Duration::from_secs(20), || {
            match child.try_wait().expect("wait") {
                Some(status) => Ok(status),
                None => Err(format!(
                    "still running:\n{}",
                    screen.lock().expect("screen").screen().contents()
                )),
            }
        });
        assert_eq!(status.exit_code(), 0, "{}", self.contents());
        // The reader takes the last bytes (leaving the alternate screen) after the exit.
        eventually_blocking("the terminal is restored", Duration::from_secs(5), || {
            let parser = self.screen.lock().expect("screen");
            if parser.screen().alternate_screen() {
                Err("still on the alternate screen")
            } else if parser.screen().hide_cursor() {
                Err("the cursor is still hidden")
            } else {
                Ok(())
            }
        });
        // Cooked mode again: the pty's line discipline echoes and edits lines.
        let tty = self.master.tty_name().expect("the pty's name");
        let stty = std::process::Command::new("stty")
            .arg("-a")
            .arg("-F")
            .arg(&tty)
            .output()
            .expect("stty");
        let modes = String::from_utf8_lossy(&stty.stdout);
        let flags: Vec<&str> = modes.split_whitespace().collect();
        assert!(
            flags.contains(&"icanon") && flags.contains(&"echo"),
            "raw mode left on: {modes}"
        );
        after(&self.contents());
    }
}

impl Drop for Session {
    /// A test that fails midway leaves no simulator running on the pty.
    fn drop(&mut self) {
        // `try_wait` first: a child already reaped must not be signalled (its pid may be reused).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
    }
}

#[test]
fn compare_tui_on_a_pty_switches_views_and_quits_with_the_terminal_restored() {
    let mut s = Session::start(&["compare", "bursty:duration=20s", "--tui"]);
    s.wait_for("Algorithms on the same arrivals");
    s.wait_for("sliding-window-counter");
    assert!(s.contents().contains("rate 10 per 1.00s  burst 10"));
    s.send("R");
    s.wait_for("rate 12 per 1.00s  burst 12");
    s.send("\t");
    s.wait_for("Pipeline — where requests stopped");
    s.send("?");
    s.wait_for("switch view");
    s.send("x");
    s.wait_until("the help closed", |c| !c.contains("switch view"));
    s.quit_and_check_restored();
}

#[test]
fn demo_on_a_terminal_opens_the_tui_on_live_records() {
    let mut s = Session::start(&["demo"]);
    s.wait_for("Pipeline — where requests stopped");
    // Records flow: some request stopped at route (the unknown route in the mix) and others passed.
    s.wait_until("stops counted at route", |c| {
        c.lines()
            .any(|l| l.contains("│ route") && !l.contains("       0 "))
    });
    s.send("2");
    s.wait_for("Requests, newest first");
    s.wait_for("GET");
    s.send("\r");
    s.wait_for("time per stage");
    s.quit_and_check_restored();
}

fn reference_config() -> String {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/reference.yaml");
    std::fs::read_to_string(path)
        .expect("reference config")
        .replace("access_log: stdout", "access_log: off")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tui_attaches_to_a_running_gateways_record_stream() {
    let runtime = gateway::config::load_str("reference.yaml", &reference_config())
        .unwrap_or_else(|d| panic!("{d:?}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let handle = gateway::start(
        runtime,
        gateway::StartOptions {
            listeners: Some(vec![listener]),
            admin_listener: Some(admin),
            ..Default::default()
        },
    )
    .await
    .expect("gateway");
    let (address, admin) = (handle.address(), handle.admin_address().expect("admin"));
    let admin_url = format!("http://{admin}");
    let mut s = tokio::task::spawn_blocking(move || {
        let s = Session::start(&["tui", "--attach", &admin_url]);
        s.wait_for("Pipeline — where requests stopped");
        s
    })
    .await
    .expect("session");
    // Three requests to a path only the catch-all serves: stopped at route.
    for _ in 0..3 {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        tokio::io::AsyncWriteExt::write_all(
            &mut stream,
            b"GET /api/nothing-here HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        )
        .await
        .expect("send");
        let mut answer = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer).await;
    }
    tokio::task::spawn_blocking(move || {
        s.wait_for("3 req");
        s.send("2");
        s.wait_for("catch-all");
        s.quit_and_check_restored();
    })
    .await
    .expect("session");
    handle.shutdown().await;
}

#[test]
fn run_with_tui_shows_the_scenarios_records_and_prints_the_report_after_quitting() {
    let mut s = Session::start(&["run", "scenarios/unknown-route.yaml", "--tui"]);
    s.wait_for("Pipeline — where requests stopped");
    // The single-request steps' records arrive as the scenario finishes.
    s.wait_until("records counted", |c| {
        c.lines()
            .next()
            .is_some_and(|header| header.contains(" req") && !header.contains(" 0 req"))
    });
    s.send("2");
    s.wait_for("catch-all");
    s.quit_and_check_restored_then(|screen| {
        assert!(
            screen.contains("1 passed, 0 failed"),
            "the report after the TUI:\n{screen}"
        );
    });
}

/// `simulator demo` piped, as a first try would run it: its address lines and its summary.
fn headless_demo(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .output()
        .expect("run the demo");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_demo_passes_most_traffic_shows_every_stop_and_ends_with_its_summary() {
    let (code, stdout, stderr) = headless_demo(&["demo", "--duration", "10s"]);
    assert_eq!(code, 0, "{stderr}");
    // Where to look next: the gateway, its admin listener, the command to attach.
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("gateway on http://127.0.0.1:")
            && first.contains("admin on http://127.0.0.1:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("simulator tui --attach http://127.0.0.1:"),
        "{stdout}"
    );
    // The summary: most traffic passes, and every stop the mix aims at shows.
    let passed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("passed the gateway: "))
        .unwrap_or_else(|| panic!("no summary line:\n{stdout}"));
    let share: f64 = passed
        .rsplit_once('(')
        .and_then(|(_, p)| p.trim_end_matches("%)").parse().ok())
        .unwrap_or_else(|| panic!("{passed}"));
    assert!((60.0..=80.0).contains(&share), "{share}% passed:\n{stdout}");
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("stopped at"))
        .collect();
    for stage in [
        "tls",
        "authn",
        "authz",
        "ratelimit",
        "route",
        "forward",
        "passed",
    ] {
        assert!(
            table.iter().any(|l| l.starts_with(&format!("{stage} "))),
            "{stage} missing from the summary:\n{stdout}"
        );
    }
}

#[test]
fn a_duration_without_a_unit_says_what_to_write() {
    let (code, _, stderr) = headless_demo(&["demo", "--duration", "10"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("write a duration such as 10s"), "{stderr}");
}

#[test]
fn the_demo_tui_says_when_the_clients_have_stopped() {
    let s = Session::start(&["demo", "--duration", "2s"]);
    s.wait_for("Pipeline — where requests stopped");
    s.wait_for("the clients have stopped");
    s.quit_and_check_restored();
}

#[test]
fn ctrl_c_ends_the_headless_demo_with_its_summary() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_simulator"))
        .args(["demo", "--duration", "60s"])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run the demo");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The first per-second line: the clients are sending.
    let started = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.starts_with("t="));
    assert!(started.is_some(), "the demo printed no progress");
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(interrupted.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("the demo exits");
    assert!(status.success(), "{status:?}");
    assert!(rest.iter().any(|l| l == "interrupted"), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.starts_with("passed the gateway: ")),
        "{rest:?}"
    );
}

#[test]
fn replay_with_tui_shows_the_records_and_the_changed_requests_then_prints_the_report() {
    // The candidate: users-v2 needs a scope no recorded token has, so every request to it is
    // refused at authz (a change that does not hang on timing, as a limit's would).
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let testbed =
        std::fs::read_to_string(root.join("fixtures/testbed.yaml")).expect("the testbed config");
    let v2_scopes = "strip_prefix: /api/v2 }\n    auth: { scopes: [users:read] }";
    assert!(testbed.contains(v2_scopes));
    let dir = tempfile::tempdir().expect("temp dir");
    let candidate = dir.path().join("tight.yaml");
    std::fs::write(
        &candidate,
        testbed.replacen(
            v2_scopes,
            "strip_prefix: /api/v2 }\n    auth: { scopes: [users:admin] }",
            1,
        ),
    )
    .expect("write the candidate");
    let candidate = candidate.display().to_string();
    let mut s = Session::start(&[
        "replay",
        "fixtures/recordings/day.jsonl",
        "--config",
        "fixtures/testbed.yaml",
        "--against",
        &candidate,
        "--shard",
        "1/8",
        // Virtual time: only the scope change changes anything (in real time a limit's window
        // edges flip a few requests too, and their groups can scroll the one checked away).
        "--virtual-time",
        "--max-changed",
        "1",
        "--tui",
    ]);
    s.wait_for("Pipeline — where requests stopped");
    // The records reach the TUI through the sink as both runs send.
    s.wait_until("records counted", |c| {
        c.lines()
            .next()
            .is_some_and(|header| header.contains(" req") && !header.contains(" 0 req"))
    });
    s.wait_for("replay finished");
    // The Changed view: the requests the candidate now refuses, before → after.
    s.send("5");
    s.wait_for(" → 403 authz");
    s.quit_and_check_restored_then(|screen| {
        // The config diff's groups (its headline has scrolled off the 24 rows).
        assert!(
            screen.contains("→ users-v2: authz/insufficient-scope"),
            "the report after the TUI:\n{screen}"
        );
    });
}
