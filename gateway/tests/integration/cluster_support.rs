//! Harness for the Redis Cluster tests: a real cluster of `redis-server` processes on free
//! loopback ports (masters, optionally one replica each so a failover can happen), made with
//! `redis-cli --cluster create`, its nodes' files in a temporary directory; every node is killed
//! and the directory removed on drop.
//!
//! `redis-server` and `redis-cli` must be installed (`./scripts/test` installs them when missing).
//! Tests that need them fail (never skip) without them.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::eventually::eventually_blocking;

/// Cluster nodes declare a peer failed after this long unreachable; small so that a failover
/// takes a few seconds.
const NODE_TIMEOUT_MS: u64 = 1_000;

struct Node {
    port: u16,
    child: Option<Child>,
}

pub struct RedisCluster {
    /// Declared before `dir`: dropped (killed) first, so no node writes into a removed directory.
    nodes: Vec<Node>,
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// `masters` masters and, with `replicas`, one replica each; returns once every node says
    /// `cluster_state:ok`, knows every other node, and every replica's link to its master is up.
    pub fn start(masters: usize, replicas: bool) -> RedisCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let count = if replicas { masters * 2 } else { masters };
        let mut cluster = RedisCluster {
            nodes: free_ports(count)
                .into_iter()
                .map(|port| Node { port, child: None })
                .collect(),
            dir,
        };
        for i in 0..count {
            cluster.spawn(i);
        }
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        if replicas {
            create.args(["--cluster-replicas", "1"]);
        }
        let mut child = KillOnDrop(
            create
                .arg("--cluster-yes")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("cannot run redis-cli ({e}): install it, e.g. by running ./scripts/test")
                }),
        );
        let created = eventually_blocking(
            "redis-cli --cluster create finishes",
            Duration::from_secs(30),
            || match child.0.try_wait() {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err("still running".to_string()),
                Err(e) => Err(e.to_string()),
            },
        );
        assert!(created.success(), "redis-cli --cluster create: {created}");
        cluster.wait_until_ok(count);
        if replicas {
            for port in cluster.ports() {
                eventually_blocking(
                    &format!("node {port} is a master or a synced replica"),
                    Duration::from_secs(20),
                    || match command(port, "INFO replication") {
                        Some(info) if info.contains("role:master") => Ok(()),
                        Some(info) if info.contains("master_link_status:up") => Ok(()),
                        other => Err(format!("{other:?}")),
                    },
                );
            }
        }
        cluster
    }

    fn spawn(&mut self, i: usize) {
        let port = self.nodes[i].port;
        let dir = self.dir.path();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes", "--cluster-config-file"])
            .arg(dir.join(format!("nodes-{port}.conf")))
            .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}): install it, e.g. by running ./scripts/test")
            });
        self.nodes[i].child = Some(child);
        eventually_blocking(
            &format!("redis-server on port {port} answers PING"),
            Duration::from_secs(5),
            || match command(port, "PING") {
                Some(reply) if reply.starts_with("+PONG") => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
    }

    /// Every live node says `cluster_state:ok` and knows `known` nodes.
    pub fn wait_until_ok(&self, known: usize) {
        for port in self.ports() {
            eventually_blocking(
                &format!("node {port} reports cluster_state:ok with {known} nodes"),
                Duration::from_secs(20),
                || match command(port, "CLUSTER INFO") {
                    Some(info)
                        if info.contains("cluster_state:ok")
                            && info.contains(&format!("cluster_known_nodes:{known}\r")) =>
                    {
                        Ok(())
                    }
                    other => Err(format!("{other:?}")),
                },
            );
        }
    }

    /// The ports of the live nodes.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
            .collect()
    }

    /// The seed list for `rate_limits.redis.cluster_nodes`, as YAML: every node.
    pub fn nodes_yaml(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"redis://127.0.0.1:{}\"", n.port))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("redis://127.0.0.1:{}", n.port))
            .collect()
    }

    /// The live masters: (port, node id), as a live node sees them.
    pub fn masters(&self) -> Vec<(u16, String)> {
        let port = self.ports()[0];
        let nodes = command(port, "CLUSTER NODES").expect("CLUSTER NODES");
        nodes
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| {
                let mut fields = l.split(' ');
                let id = fields.next()?.to_string();
                let address = fields.next()?;
                let port = address.split(['@', ':']).nth(1)?.parse().ok()?;
                Some((port, id))
            })
            .collect()
    }

    /// The master serving `key`'s slot: the one that does not redirect it.
    pub fn owner_of(&self, key: &str) -> u16 {
        self.masters()
            .into_iter()
            .map(|(port, _)| port)
            .find(|&port| {
                command(port, &format!("EXISTS {key}")).is_some_and(|r| r.starts_with(':'))
            })
            .unwrap_or_else(|| panic!("no master serves {key}"))
    }

    /// Kills the node on `port` at once (SIGKILL): its clients see a dead peer.
    pub fn kill(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .expect("a node of this cluster");
        if let Some(mut child) = node.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The directory goes with `dir` (a tempfile::TempDir: only the directory it made).
    }
}

/// A child that must not outlive a failed wait.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` distinct free ports whose cluster-bus port (port + 10000) is free as well.
fn free_ports(n: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    let mut held = Vec::new();
    let mut seen = HashSet::new();
    while ports.len() < n {
        let listener = StdListener::bind("127.0.0.1:0").expect("a free port");
        let port = listener.local_addr().expect("address").port();
        if port >= 55_000 || !seen.insert(port) {
            continue;
        }
        // Both stay bound until every port is chosen, so none is handed out twice.
        if let Ok(bus) = StdListener::bind(("127.0.0.1", port + 10_000)) {
            ports.push(port);
            held.push((listener, bus));
        }
    }
    ports
}

/// One command (inline form) to the node on `port`; the whole reply for simple, integer and
/// bulk replies (`+`, `-`, `:`, `$`), or `None` when the node cannot be reached.
pub fn command(port: u16, inline: &str) -> Option<String> {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(format!("{inline}\r\n").as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n]);
        if complete(&reply) {
            break;
        }
    }
    Some(String::from_utf8_lossy(&reply).into_owned())
}

/// Whether `reply` is whole: a bulk string of its stated length, an array of as many one-line
/// items as it states (`SCRIPT EXISTS`), or any one-line reply.
fn complete(reply: &[u8]) -> bool {
    let Some(end) = reply.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if reply[0] == b'*' {
        let items: usize = std::str::from_utf8(&reply[1..end])
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        return reply.windows(2).filter(|w| *w == b"\r\n").count() > items;
    }
    if reply[0] != b'$' {
        return true;
    }
    let len: i64 = std::str::from_utf8(&reply[1..end])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(-1);
    len < 0 || reply.len() >= end + 2 + len as usize + 2
}
