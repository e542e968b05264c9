//! Harness for the rate-limit tests: a real `redis-server` on a free loopback port (killed on
//! drop, and killable and restartable mid-test), and a gateway on a manual clock.
//!
//! `redis-server` must be installed — `./scripts/test` installs it when missing. Tests that need
//! it fail (never skip) without it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gateway::clock::ManualClock;

use super::util::{TestGateway, eventually_blocking};

/// A `redis-server` of our own: no persistence, loopback only.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let port = StdListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn address(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Starts it (again) on the same port and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it, e.g. by running ./scripts/test")
            });
        self.child = Some(child);
        eventually_blocking(
            &format!("redis-server on port {} answers PING", self.port),
            Duration::from_secs(5),
            || match self.command("PING\r\n") {
                Some(reply) if reply.starts_with("+PONG") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }

    /// Kills it at once (SIGKILL): in-flight requests see a dead peer.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// One raw RESP command (inline form), the reply's first read.
    pub fn command(&self, inline: &str) -> Option<String> {
        let mut stream =
            TcpStream::connect_timeout(&self.address(), Duration::from_millis(200)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(inline.as_bytes()).ok()?;
        let mut buf = [0u8; 4096];
        let n = stream.read(&mut buf).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A gateway for `yaml` on a manual clock that starts at 2024-01-01T00:00:00Z.
pub async fn start_on_manual_clock(yaml: &str) -> (TestGateway, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_704_067_200_000));
    let gateway = TestGateway::start_with_clock(yaml, clock.clone()).await;
    (gateway, clock)
}

/// A config with one route to `upstream`, a catch-all, and `rate_limits` as given (indented
/// YAML of the section's body).
pub fn config_with_limits(upstream: SocketAddr, rate_limits: &str) -> String {
    format!(
        "access_log: off\nupstreams:\n  svc:\n    instances: [{upstream}]\nroutes:\n  - name: api\n    match: {{path: /api/*}}\n    upstream: svc\n  - name: other\n    match: {{path: /other/*}}\n    upstream: svc\n  - name: not-found\n    match: {{path: /*}}\n    respond: {{status: 404}}\nrate_limits:\n{rate_limits}"
    )
}

/// The admin endpoint's metrics text.
pub async fn metrics(gw: &TestGateway) -> String {
    let admin = gw.handle.admin_address().expect("admin");
    let reply = gw.get_absolute(&format!("http://{admin}/metrics")).await;
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The value of the first metric line starting with `prefix` (0 when absent).
pub fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}
