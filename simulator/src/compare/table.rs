//! The console form of a [`Comparison`]: a heading naming the traffic and the quota, one row per
//! algorithm, and the keys with the most rejections.

use std::fmt::Write as _;

use super::{Comparison, RedisCost};

fn range(r: (u8, u8)) -> String {
    if r.0 == r.1 {
        r.0.to_string()
    } else {
        format!("{}-{}", r.0, r.1)
    }
}

/// `1 RT, 1 key, 3 cmds` — one EVALSHA round trip, keys touched, commands inside the script.
pub fn redis_cell(cost: &RedisCost) -> String {
    let (lo, hi) = (
        cost.commands_admitted.0.min(cost.commands_refused.0),
        cost.commands_admitted.1.max(cost.commands_refused.1),
    );
    format!(
        "{} RT, {} key{}, {} cmds",
        cost.round_trips,
        cost.keys_touched,
        if cost.keys_touched == 1 { "" } else { "s" },
        range((lo, hi))
    )
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0.0%".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// Renders the comparison for a terminal.
pub fn render(c: &Comparison) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "traffic: {} — {} arrivals, {} key{}, {:.1} s",
        c.trace.source,
        c.trace.arrivals,
        c.trace.keys,
        if c.trace.keys == 1 { "" } else { "s" },
        c.trace.span_ms / 1000.0
    );
    let _ = writeln!(
        out,
        "quota:   {} per {}, burst {} (T = {}); false allow: over the limit; false deny: refused what the exact sliding log admitted",
        c.quota.limit,
        human_ms(c.quota.period_ms),
        c.quota.burst,
        human_ms(c.quota.emission_interval_ms)
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<22} {:>9} {:>9} {:>13} {:>13} {:>6} {:>18} {:>11} {:>22} {:>8}",
        "algorithm",
        "admitted",
        "rejected",
        "false allows",
        "false denies",
        "burst",
        "recover ms avg/max",
        "state B/key",
        "redis per decision",
        "fairness"
    );
    for r in &c.results {
        let total = r.admitted + r.rejected;
        let state = if r.state_bytes_per_key.mean == r.state_bytes_per_key.max as f64 {
            format!("{}", r.state_bytes_per_key.max)
        } else {
            format!(
                "{:.0}/{}",
                r.state_bytes_per_key.mean, r.state_bytes_per_key.max
            )
        };
        let redis = match &r.lease {
            Some(l) => format!("{:.3} RT, 1 key, 3 cmds", l.round_trips_per_decision),
            None => redis_cell(&r.redis),
        };
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>9} {:>13} {:>13} {:>6} {:>18} {:>11} {:>22} {:>8.3}",
            r.name(),
            r.admitted,
            r.rejected,
            format!("{} {}", r.false_allows, pct(r.false_allows, total)),
            format!("{} {}", r.false_denies, pct(r.false_denies, total)),
            r.largest_burst,
            format!(
                "{:.0}/{:.0}",
                r.recovery.retry_after_mean_ms, r.recovery.retry_after_max_ms
            ),
            state,
            redis,
            r.fairness
        );
    }
    let leases: Vec<_> = c
        .results
        .iter()
        .filter_map(|r| Some((r, r.lease?)))
        .collect();
    if !leases.is_empty() {
        let _ = writeln!(out);
        for (r, l) in leases {
            let _ = writeln!(
                out,
                "{}: {} nodes, {} units per fetch, sync interval {}; {} fetches; at most {} beyond {}'s own admissions in any interval",
                r.name(),
                l.nodes,
                l.size,
                human_ms(l.sync_interval_ms),
                l.fetches,
                l.extra_bound,
                r.algorithm
            );
        }
    }
    if !c.top_rejected_keys.is_empty() && c.trace.keys > 1 {
        let _ = writeln!(out);
        let _ = write!(out, "{:<22} {:>9}", "most rejected keys", "arrivals");
        for r in &c.results {
            let _ = write!(out, " {:>14}", short(&r.name()));
        }
        let _ = writeln!(out);
        for k in &c.top_rejected_keys {
            let _ = write!(out, "{:<22} {:>9}", truncate(&k.key, 22), k.arrivals);
            for n in &k.rejected {
                let _ = write!(out, " {n:>14}");
            }
            let _ = writeln!(out);
        }
    }
    if let Some(measured) = &c.redis_measured {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<22} {:>9} {:>11} {:>13}  commands by name (INFO commandstats, per decision)",
            "measured in Redis", "decisions", "round trips", "commands"
        );
        for m in measured {
            let names: Vec<String> = m
                .by_command
                .iter()
                .map(|(name, per)| format!("{name} {per:.2}"))
                .collect();
            let _ = writeln!(
                out,
                "{:<22} {:>9} {:>11.2} {:>13.2}  {}",
                m.algorithm.as_str(),
                m.decisions,
                m.round_trips,
                m.commands,
                names.join(", ")
            );
        }
    }
    out
}

/// `1s`, `60ms`, `333ms 333us 334ns`: milliseconds as humantime writes a duration.
pub fn human_ms(ms: f64) -> String {
    let nanos = (ms * 1e6).round();
    if !(0.0..1.8e19).contains(&nanos) {
        return format!("{ms} ms");
    }
    humantime::format_duration(std::time::Duration::from_nanos(nanos as u64)).to_string()
}

fn short(name: &str) -> String {
    match name {
        "sliding-window-counter" => "sliding-counter".into(),
        other => truncate(other.replace("sliding-window-counter", "swc").as_str(), 14),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}
