//! `compare --redis URL`: each algorithm's decisions on the trace made by the gateway's own Redis
//! store (its Lua script, one `EVALSHA` per decision) against a real Redis, with the commands
//! Redis ran counted from `INFO commandstats` before and after — the cost per decision measured,
//! not read off the script.

use std::collections::BTreeMap;
use std::time::Duration;

use gateway::ratelimit::metrics::RateLimitMetrics;
use gateway::ratelimit::store::redis::RedisStore;
use gateway::ratelimit::store::{Check, RedisConfig, TICK_NANOS};
use gateway::ratelimit::{Algorithm, AnyLimiter, Quota};
use serde::Serialize;

use super::Trace;

/// Arrivals sent to Redis at most: enough for stable averages, few enough to finish in seconds.
pub const MAX_REDIS_ARRIVALS: usize = 20_000;

/// What one algorithm cost in a real Redis, per decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisMeasured {
    pub algorithm: Algorithm,
    pub decisions: u64,
    pub admitted: u64,
    /// Script invocations (`EVALSHA`, `EVAL`) per decision: the round trips.
    pub round_trips: f64,
    /// Commands Redis ran inside the script, per decision (every `cmdstat_*` but the script
    /// invocations and this measurement's own `INFO`).
    pub commands: f64,
    /// The commands, by name, per decision.
    pub by_command: BTreeMap<String, f64>,
}

/// `cmdstat_<name>:calls=<n>,…` lines of `INFO commandstats`, as name → calls.
pub fn parse_commandstats(info: &str) -> BTreeMap<String, u64> {
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|kv| kv.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Commands that are this measurement's own or the script's invocation, not the script's work.
fn is_invocation(name: &str) -> bool {
    matches!(name, "evalsha" | "eval" | "evalsha_ro" | "eval_ro")
}

fn is_own(name: &str) -> bool {
    matches!(
        name,
        "info" | "script|load" | "script" | "ping" | "hello" | "client|setinfo"
    )
}

async fn commandstats(
    conn: &mut redis::aio::MultiplexedConnection,
) -> Result<BTreeMap<String, u64>, String> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .map_err(|e| format!("INFO commandstats: {e}"))?;
    Ok(parse_commandstats(&info))
}

/// Runs each algorithm over (up to [`MAX_REDIS_ARRIVALS`] of) the trace through the gateway's
/// Redis store at `url`, under a key prefix of its own.
pub async fn measure(
    url: &str,
    trace: &Trace,
    quota: Quota,
    algorithms: &[Algorithm],
) -> Result<Vec<RedisMeasured>, String> {
    if quota.period() % TICK_NANOS != 0 {
        return Err(format!(
            "--redis: the period must be a whole number of microseconds (the store's tick), not {} ns",
            quota.period()
        ));
    }
    let ticks = Quota::new(quota.limit, quota.period() / TICK_NANOS).with_burst(quota.burst);
    let client = redis::Client::open(url).map_err(|e| format!("--redis {url}: {e}"))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| format!("--redis {url}: no answer within 5 s"))?
    .map_err(|e| format!("--redis {url}: {e}"))?;
    let run = std::process::id();
    let config = RedisConfig {
        url: url.to_owned(),
        cluster_nodes: Vec::new(),
        key_prefix: format!("gatehouse-compare:{run}:"),
        timeout: Duration::from_secs(5),
        breaker_failures: u32::MAX,
        breaker_cooldown: Duration::from_secs(1),
        max_batch: gateway::ratelimit::store::batch::DEFAULT_MAX_BATCH,
    };
    let store = RedisStore::new(&config, RateLimitMetrics::default())
        .map_err(|e| format!("--redis {url}: {e}"))?;
    // Wall time the script sees: a fixed epoch (2023-11-14T22:13:20Z) plus the trace's time.
    let epoch_ticks = 1_700_000_000_000_000u64;
    let arrivals = &trace.arrivals[..trace.arrivals.len().min(MAX_REDIS_ARRIVALS)];
    let mut out = Vec::new();
    for &algorithm in algorithms {
        let limiter = AnyLimiter::new(algorithm, ticks);
        let policy = format!("{algorithm}");
        // One decision first, on a key of its own, so loading the script is not counted.
        let warm = Check {
            policy: "warm-up",
            subject: &policy,
            limiter: &limiter,
            cost: 1,
        };
        store
            .decide_all(&[warm], epoch_ticks, 0)
            .await
            .map_err(|e| format!("--redis {url}: {e}"))?;
        let before = commandstats(&mut conn).await?;
        let mut admitted = 0u64;
        for a in arrivals {
            let check = Check {
                policy: &policy,
                subject: &trace.keys[a.key as usize],
                limiter: &limiter,
                cost: u64::from(a.cost),
            };
            let decisions = store
                .decide_all(&[check], epoch_ticks + a.at / TICK_NANOS, 0)
                .await
                .map_err(|e| format!("--redis {url}: {e}"))?;
            admitted += u64::from(decisions.first().is_some_and(|d| d.allowed));
        }
        let after = commandstats(&mut conn).await?;
        let n = arrivals.len().max(1) as f64;
        let delta = |name: &str| {
            after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0)
        };
        let by_command: BTreeMap<String, f64> = after
            .keys()
            .filter(|name| !is_invocation(name) && !is_own(name))
            .map(|name| (name.clone(), delta(name) as f64 / n))
            .filter(|(_, per)| *per > 0.0)
            .collect();
        let invocations: u64 = after
            .keys()
            .filter(|k| is_invocation(k))
            .map(|k| delta(k))
            .sum();
        out.push(RedisMeasured {
            algorithm,
            decisions: arrivals.len() as u64,
            admitted,
            round_trips: invocations as f64 / n,
            commands: by_command.values().sum(),
            by_command,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_lines_read_as_calls_per_command() {
        let info = "# Commandstats\r\ncmdstat_hset:calls=12,usec=30,usec_per_call=2.5,rejected_calls=0,failed_calls=0\r\ncmdstat_evalsha:calls=4,usec=99\r\ncmdstat_client|setinfo:calls=2,usec=1\r\n";
        let stats = parse_commandstats(info);
        assert_eq!(
            stats,
            BTreeMap::from([
                ("client|setinfo".to_string(), 2),
                ("evalsha".to_string(), 4),
                ("hset".to_string(), 12),
            ])
        );
        assert!(is_invocation("evalsha") && is_own("client|setinfo") && !is_own("hset"));
    }
}
