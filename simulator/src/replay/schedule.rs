//! When each exchange is sent: pacing (as recorded, `--speed`, `--rate`, `--max-wait`, `--loop`),
//! `--start-at` and `--shard K/N` partitions by client. Pure arithmetic over the recording: the
//! sender only follows the plan made here.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::model::Exchange;

/// The flags of `replay` that decide when each exchange is sent and which ones.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PacingArgs {
    /// Send N times faster than recorded (0.5 is half speed).
    #[arg(long, value_name = "N", conflicts_with = "rate")]
    pub speed: Option<f64>,
    /// Send at a fixed R requests per second, in recorded order, nothing dropped.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Cap every idle gap of the recording at this duration (`2s`).
    #[arg(long, value_name = "D", value_parser = humantime::parse_duration)]
    pub max_wait: Option<Duration>,
    /// Replay the recording this many times back to back (`--loop` alone: until Ctrl-C).
    #[arg(long = "loop", value_name = "N", num_args = 0..=1, default_missing_value = "0")]
    pub loops: Option<u32>,
    /// Replay only the K-th of N partitions by client (`--shard 2/4`).
    #[arg(long, value_name = "K/N")]
    pub shard: Option<String>,
    /// Start at this Unix time (seconds), so shards on several hosts start together.
    #[arg(long, value_name = "UNIX_TIME")]
    pub start_at: Option<f64>,
    /// Skip records that cannot be read (counted in the report) instead of stopping.
    #[arg(long)]
    pub skip_bad: bool,
    /// Run the in-process gateway on a virtual clock: one request at a time in plan order, the
    /// clock set to each one's due time, so every window edge falls the same way on every run
    /// (deterministic config reviews). Only with `--config`, in-process.
    #[arg(
        long,
        requires = "config",
        conflicts_with_all = ["process", "target", "start_at", "rotate"]
    )]
    pub virtual_time: bool,
}

/// How the gaps between exchanges are replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spacing {
    /// The recorded gaps divided by `speed` (1 = as recorded), each capped at `max_wait`.
    Recorded {
        speed: f64,
        max_wait: Option<Duration>,
    },
    /// A fixed `per_second` rate in recorded order.
    Rate { per_second: f64 },
}

/// How many times the recording is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loops {
    Times(u32),
    /// `--loop` alone: pass after pass until interrupted.
    UntilInterrupted,
}

/// The pacing flags, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Pacing {
    pub spacing: Spacing,
    pub loops: Loops,
    pub shard: Option<Shard>,
    /// Unix time, seconds, at which the first exchange is due.
    pub start_at: Option<f64>,
    /// Virtual time (`--virtual-time`): the gateway's clock is set to each send's due time and
    /// the sends go one at a time; see `send::send_virtual`.
    pub virtual_time: bool,
}

impl Default for Pacing {
    fn default() -> Self {
        Pacing {
            spacing: Spacing::Recorded {
                speed: 1.0,
                max_wait: None,
            },
            loops: Loops::Times(1),
            shard: None,
            start_at: None,
            virtual_time: false,
        }
    }
}

impl Pacing {
    /// Checks the flags; the message names the flag (a usage error, exit 1).
    pub fn from_args(args: &PacingArgs) -> Result<Pacing, String> {
        let positive = |flag: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(v)
            } else {
                Err(format!("--{flag} {v}: write a number above 0"))
            }
        };
        let spacing = match (args.rate, args.speed) {
            (Some(rate), _) => {
                if args.max_wait.is_some() {
                    return Err(
                        "--max-wait caps recorded gaps; --rate has none (drop one of them)".into(),
                    );
                }
                Spacing::Rate {
                    per_second: positive("rate", rate)?,
                }
            }
            (None, speed) => Spacing::Recorded {
                speed: positive("speed", speed.unwrap_or(1.0))?,
                max_wait: args.max_wait,
            },
        };
        let loops = match args.loops {
            None => Loops::Times(1),
            Some(0) => Loops::UntilInterrupted,
            Some(n) => Loops::Times(n),
        };
        let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
        if let Some(at) = args.start_at
            && !(at.is_finite() && at > 0.0)
        {
            return Err(format!("--start-at {at}: write a Unix time in seconds"));
        }
        if args.virtual_time && args.start_at.is_some() {
            return Err(
                "--start-at lines up wall clocks; --virtual-time runs on its own clock, from the \
                 recording's first request (drop one of them)"
                    .into(),
            );
        }
        Ok(Pacing {
            spacing,
            loops,
            shard,
            start_at: args.start_at,
            virtual_time: args.virtual_time,
        })
    }
}

/// The K-th (1-based) of N partitions of a recording by client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub k: u32,
    pub n: u32,
}

impl Shard {
    /// `2/4`: the second of four.
    pub fn parse(text: &str) -> Result<Shard, String> {
        let usage = || format!("--shard `{text}`: write K/N with 1 ≤ K ≤ N, such as 2/4");
        let (k, n) = text.trim().split_once('/').ok_or_else(usage)?;
        let k: u32 = k.trim().parse().map_err(|_| usage())?;
        let n: u32 = n.trim().parse().map_err(|_| usage())?;
        if k == 0 || n == 0 || k > n {
            return Err(usage());
        }
        Ok(Shard { k, n })
    }

    /// Whether this shard replays a client's traffic. A stable hash (SHA-256, never a
    /// per-process seeded one), so every host and every run agrees on the partition.
    pub fn holds(&self, client: &str) -> bool {
        partition_of(client, self.n) == self.k - 1
    }

    /// The exchanges of this shard, in recorded order.
    pub fn select(&self, exchanges: &[Exchange]) -> Vec<Exchange> {
        exchanges
            .iter()
            .filter(|e| self.holds(&e.client))
            .cloned()
            .collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.k, self.n)
    }
}

/// Which of `n` partitions (0-based) a client falls in.
pub fn partition_of(client: &str, n: u32) -> u32 {
    let digest = Sha256::digest(client.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % u64::from(n.max(1))) as u32
}

/// One send the plan asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    /// The exchange's index in the slice planned.
    pub index: usize,
    /// The id it is sent with: the exchange's, `~N` appended on the N-th pass (N ≥ 2).
    pub id: String,
    /// Which pass this is, from 1.
    pub pass: u32,
    /// When it is due, nanoseconds from the run's start.
    pub due_ns: u64,
}

/// The sends of `passes` passes over `exchanges` (in their recorded order), due times ascending.
/// A pass after the first starts one average gap after the previous pass's last send, so the
/// loop seam looks like the rest of the recording.
pub fn plan(exchanges: &[Exchange], spacing: Spacing, passes: u32) -> Vec<Planned> {
    let offsets = one_pass(exchanges, spacing);
    if offsets.is_empty() {
        return Vec::new();
    }
    let period = period_of(&offsets, spacing);
    let mut planned = Vec::with_capacity(offsets.len() * passes as usize);
    for pass in 1..=passes {
        let base = period * u64::from(pass - 1);
        for (index, (exchange, offset)) in exchanges.iter().zip(&offsets).enumerate() {
            planned.push(Planned {
                index,
                id: pass_id(&exchange.id, pass),
                pass,
                due_ns: base + offset,
            });
        }
    }
    planned
}

/// How far apart two passes start: the span of one pass and one average gap (the loop seam).
/// `--loop` until interrupted plans one pass at a time; virtual time lays them end to end with it.
pub fn pass_period(exchanges: &[Exchange], spacing: Spacing) -> u64 {
    period_of(&one_pass(exchanges, spacing), spacing)
}

fn period_of(offsets: &[u64], spacing: Spacing) -> u64 {
    let Some(&last) = offsets.last() else {
        return 0;
    };
    let seam = if offsets.len() > 1 {
        last / (offsets.len() as u64 - 1)
    } else {
        match spacing {
            Spacing::Rate { per_second } => (1e9 / per_second) as u64,
            Spacing::Recorded { .. } => 0,
        }
    };
    last + seam
}

/// The id of an exchange on a given pass: `abc`, `abc~2`, `abc~3`…
pub fn pass_id(id: &str, pass: u32) -> String {
    if pass <= 1 {
        id.to_string()
    } else {
        format!("{id}~{pass}")
    }
}

/// Each exchange's offset from the first, in nanoseconds, never decreasing: a recording slightly
/// out of timestamp order is sent in its order with a zero gap, never reordered.
fn one_pass(exchanges: &[Exchange], spacing: Spacing) -> Vec<u64> {
    match spacing {
        Spacing::Rate { per_second } => {
            let interval = 1e9 / per_second;
            (0..exchanges.len())
                .map(|i| (i as f64 * interval).round() as u64)
                .collect()
        }
        Spacing::Recorded { speed, max_wait } => {
            let cap = max_wait.map_or(u64::MAX, |d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
            let mut offsets = Vec::with_capacity(exchanges.len());
            let mut at = 0u64;
            let mut previous: Option<u64> = None;
            for exchange in exchanges {
                if let Some(before) = previous {
                    let gap = exchange.unix_nanos.saturating_sub(before);
                    let scaled = (gap as f64 / speed).round() as u64;
                    at = at.saturating_add(scaled.min(cap));
                }
                previous = Some(exchange.unix_nanos.max(previous.unwrap_or(0)));
                offsets.push(at);
            }
            offsets
        }
    }
}

/// Refused: a `--start-at` this far in the past is a mistake (a stale script), not a start.
pub const START_AT_PAST_LIMIT: Duration = Duration::from_secs(10);

/// How long to wait before the first send for `--start-at` (zero when it has just passed);
/// an error when it is far in the past.
pub fn start_delay(start_at_unix_s: f64, now_unix_nanos: u64) -> Result<Duration, String> {
    let now = now_unix_nanos as f64 / 1e9;
    let ahead = start_at_unix_s - now;
    if ahead >= 0.0 {
        Ok(Duration::from_secs_f64(ahead))
    } else if -ahead <= START_AT_PAST_LIMIT.as_secs_f64() {
        Ok(Duration::ZERO)
    } else {
        Err(format!(
            "--start-at {start_at_unix_s}: that was {:.0} s ago (now is {now:.0}); pick a time in the future",
            -ahead
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(id: &str, unix_nanos: u64, client: &str) -> Exchange {
        Exchange {
            position: 1,
            id: id.into(),
            unix_nanos,
            client: client.into(),
            connection: None,
            method: "GET".into(),
            target: "/".into(),
            version: "HTTP/1.1".into(),
            headers: Vec::new(),
            body: Vec::new(),
            body_truncated: false,
            tls: None,
            credentials: Vec::new(),
            recorded: None,
            response: None,
        }
    }

    const S: u64 = 1_000_000_000;

    fn recording() -> Vec<Exchange> {
        vec![
            exchange("a", 100 * S, "alice"),
            exchange("b", 101 * S, "bob"),
            exchange("c", 111 * S, "alice"),
            exchange("d", 111 * S + S / 2, "carol"),
        ]
    }

    fn dues(planned: &[Planned]) -> Vec<u64> {
        planned.iter().map(|p| p.due_ns).collect()
    }

    #[test]
    fn as_recorded_keeps_the_offsets_from_the_first_exchange() {
        let p = plan(&recording(), Pacing::default().spacing, 1);
        assert_eq!(dues(&p), vec![0, S, 11 * S, 11 * S + S / 2]);
        assert_eq!(
            p.iter().map(|p| p.index).collect::<Vec<_>>(),
            vec![0, 1, 2, 3]
        );
    }

    #[test]
    fn speed_divides_the_gaps_and_max_wait_caps_them() {
        let fast = Spacing::Recorded {
            speed: 2.0,
            max_wait: None,
        };
        assert_eq!(
            dues(&plan(&recording(), fast, 1)),
            vec![0, S / 2, 11 * S / 2, 11 * S / 2 + S / 4]
        );
        let capped = Spacing::Recorded {
            speed: 1.0,
            max_wait: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            dues(&plan(&recording(), capped, 1)),
            vec![0, S, 3 * S, 3 * S + S / 2]
        );
    }

    #[test]
    fn rate_spaces_evenly_in_recorded_order_and_drops_nothing() {
        let mut shuffled = recording();
        shuffled.swap(1, 2); // out of timestamp order: kept as it is
        let p = plan(&shuffled, Spacing::Rate { per_second: 4.0 }, 1);
        assert_eq!(dues(&p), vec![0, S / 4, S / 2, 3 * S / 4]);
        let ids: Vec<&str> = p.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "c", "b", "d"]);
    }

    #[test]
    fn an_out_of_order_timestamp_is_sent_in_place_with_no_gap() {
        let mut shuffled = recording();
        shuffled.swap(1, 2);
        let p = plan(&shuffled, Pacing::default().spacing, 1);
        assert_eq!(dues(&p), vec![0, 11 * S, 11 * S, 11 * S + S / 2]);
    }

    #[test]
    fn loops_repeat_with_suffixed_ids_after_one_average_gap() {
        let p = plan(&recording(), Spacing::Rate { per_second: 1.0 }, 2);
        let ids: Vec<&str> = p.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c", "d", "a~2", "b~2", "c~2", "d~2"]);
        assert_eq!(dues(&p), (0..8).map(|i| i * S).collect::<Vec<_>>());
        assert_eq!(p[4].pass, 2);
        assert_eq!(p[4].index, 0);
        assert_eq!(
            pass_period(&recording(), Spacing::Rate { per_second: 1.0 }),
            p[4].due_ns
        );
    }

    #[test]
    fn shards_parse_one_based_and_refuse_nonsense() {
        assert_eq!(Shard::parse("2/4"), Ok(Shard { k: 2, n: 4 }));
        assert_eq!(Shard::parse(" 1/1 "), Ok(Shard { k: 1, n: 1 }));
        for bad in ["0/4", "5/4", "x", "2/", "/4", "2/0", "-1/4", "2/4/6", ""] {
            let e = Shard::parse(bad).expect_err(bad);
            assert!(e.contains("K/N"), "{bad}: {e}");
        }
    }

    #[test]
    fn shards_are_disjoint_and_complete_and_keep_a_client_together() {
        let exchanges: Vec<Exchange> = (0..500)
            .map(|i| exchange(&format!("r{i}"), i * S, &format!("client-{}", i % 97)))
            .collect();
        let n = 4;
        let mut seen = std::collections::BTreeMap::new();
        for k in 1..=n {
            let shard = Shard { k, n };
            let picked = shard.select(&exchanges);
            assert!(!picked.is_empty(), "shard {shard} is empty");
            for e in picked {
                assert!(seen.insert(e.id.clone(), k).is_none(), "{} twice", e.id);
                assert!(shard.holds(&e.client));
            }
        }
        assert_eq!(seen.len(), exchanges.len());
        // A client's requests all land in one shard.
        for e in &exchanges {
            assert_eq!(seen[&e.id], partition_of(&e.client, n) + 1);
        }
        // Stable across processes: a fixed value, not a seeded hash.
        // SHA-256("alice") begins 2b d8 06 c9 7f 0e 00 af: pinned, so a change of hash shows.
        assert_eq!(partition_of("alice", 1 << 16), 0x00af);
    }

    #[test]
    fn pacing_flags_are_checked() {
        let ok = Pacing::from_args(&PacingArgs {
            rate: Some(50.0),
            loops: Some(0),
            shard: Some("1/2".into()),
            ..PacingArgs::default()
        })
        .expect("valid");
        assert_eq!(ok.spacing, Spacing::Rate { per_second: 50.0 });
        assert_eq!(ok.loops, Loops::UntilInterrupted);
        assert_eq!(ok.shard, Some(Shard { k: 1, n: 2 }));
        for bad in [
            PacingArgs {
                rate: Some(0.0),
                ..PacingArgs::default()
            },
            PacingArgs {
                speed: Some(f64::NAN),
                ..PacingArgs::default()
            },
            PacingArgs {
                shard: Some("3/2".into()),
                ..PacingArgs::default()
            },
            PacingArgs {
                rate: Some(5.0),
                max_wait: Some(Duration::from_secs(1)),
                ..PacingArgs::default()
            },
            PacingArgs {
                virtual_time: true,
                start_at: Some(1.9e9),
                ..PacingArgs::default()
            },
        ] {
            assert!(Pacing::from_args(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn start_at_waits_for_the_future_and_refuses_the_distant_past() {
        let now = 1_700_000_000 * S;
        assert_eq!(
            start_delay(1_700_000_002.5, now),
            Ok(Duration::from_millis(2500))
        );
        assert_eq!(start_delay(1_699_999_999.0, now), Ok(Duration::ZERO));
        let e = start_delay(1_699_990_000.0, now).expect_err("far past");
        assert!(e.contains("10000 s ago"), "{e}");
    }
}
