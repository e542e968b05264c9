//! The replay report: counts, latency and schedule-gap quantiles, offered against achieved rate,
//! every outcome (so shard reports can be merged), as text for the terminal and as JSON; and
//! merging the reports of `--shard` runs into one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::model::{ExchangeOutcome, Format, Recording};
use super::responses::{Noise, ResponseDiff};
use super::run::RunResult;

/// The flags of `replay` that choose its outputs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutputArgs {
    /// Write the JSON report here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write JUnit XML here: one testcase per transition group.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Write the SVG plots and the HTML report into this folder.
    #[arg(long, value_name = "DIR")]
    pub html: Option<PathBuf>,
    /// Watch the replay in the TUI (docs/tui.md).
    #[arg(long)]
    pub tui: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub quiet: bool,
}

/// Latencies above a minute (in µs) are clamped: the histogram's upper bound.
const MAX_US: u64 = 60_000_000;

/// Quantiles in microseconds, from an HdrHistogram (3 significant digits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
    pub max: u64,
    pub mean: f64,
}

impl Quantiles {
    pub fn of(values_ns: impl Iterator<Item = u64>) -> Quantiles {
        let Ok(mut h) = Histogram::<u64>::new_with_bounds(1, MAX_US, 3) else {
            return Quantiles::default();
        };
        for ns in values_ns {
            let _ = h.record((ns / 1_000).clamp(1, MAX_US));
        }
        if h.is_empty() {
            return Quantiles::default();
        }
        Quantiles {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p99_9: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

/// What one run through one target did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The config path or URL replayed through.
    pub target: String,
    /// The plan's time zero, Unix nanoseconds.
    pub started_unix_nanos: u64,
    /// Sends planned (0 for `--loop` until interrupted).
    pub planned: u64,
    /// Sends that left.
    pub sent: u64,
    /// Sends answered with a status.
    pub answered: u64,
    /// Sends without an answer, by kind (`refused`, `reset`, `timeout`, `interrupted`, ...;
    /// `unsendable`: the request could not be built, so it never left).
    pub errors: BTreeMap<String, u64>,
    /// The first message of each error kind (they are usually all alike).
    #[serde(default)]
    pub first_errors: BTreeMap<String, String>,
    pub statuses: BTreeMap<u16, u64>,
    /// Decisions by the stage that stopped the request (`none`: it reached its upstream).
    pub stopped_at: BTreeMap<String, u64>,
    pub reasons: BTreeMap<String, u64>,
    /// Whether the target's records were seen (decisions come from them).
    pub records_seen: bool,
    /// Answered sends whose record never arrived.
    pub records_missing: u64,
    /// From the scheduled time to the response's end (coordinated omission corrected).
    pub latency_us: Quantiles,
    /// From the scheduled time to the actual send: the sender's own lateness.
    pub schedule_gap_us: Quantiles,
    /// Sends a second the plan asked for, over the span of the sends that left.
    pub offered_rate: f64,
    /// Sends a second that actually left.
    pub achieved_rate: f64,
    /// From the first scheduled send to the last answer, seconds.
    pub duration_s: f64,
    pub interrupted: bool,
    pub outcomes: Vec<ExchangeOutcome>,
}

impl RunReport {
    /// Counts and quantiles recomputed from outcomes (their times from `started_unix_nanos`).
    pub fn from_outcomes(
        target: String,
        started_unix_nanos: u64,
        planned: u64,
        records_seen: bool,
        interrupted: bool,
        outcomes: Vec<ExchangeOutcome>,
    ) -> RunReport {
        let mut report = RunReport {
            target,
            started_unix_nanos,
            planned,
            records_seen,
            interrupted,
            ..RunReport::default()
        };
        for outcome in &outcomes {
            match outcome.status {
                Some(status) => {
                    report.answered += 1;
                    *report.statuses.entry(status).or_default() += 1;
                }
                None => {
                    let kind = outcome
                        .error
                        .as_deref()
                        .and_then(|e| e.split_once(':').map(|(kind, _)| kind))
                        .unwrap_or("other");
                    *report.errors.entry(kind.to_string()).or_default() += 1;
                    if let Some(error) = &outcome.error {
                        report
                            .first_errors
                            .entry(kind.to_string())
                            .or_insert_with(|| error.clone());
                    }
                }
            }
            match &outcome.decision {
                Some(decision) => {
                    let stage = decision.stopped_at.as_deref().unwrap_or("none");
                    *report.stopped_at.entry(stage.to_string()).or_default() += 1;
                    if let Some(reason) = &decision.reason {
                        *report.reasons.entry(reason.clone()).or_default() += 1;
                    }
                }
                None if records_seen && outcome.status.is_some() => report.records_missing += 1,
                None => {}
            }
        }
        report.sent = outcomes
            .iter()
            .filter(|o| {
                !o.error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("unsendable:"))
            })
            .count() as u64;
        report.latency_us = Quantiles::of(
            outcomes
                .iter()
                .filter(|o| o.status.is_some())
                .map(|o| o.latency_ns),
        );
        report.schedule_gap_us = Quantiles::of(
            outcomes
                .iter()
                .map(|o| o.sent_ns.saturating_sub(o.scheduled_ns)),
        );
        let first_due = outcomes.iter().map(|o| o.scheduled_ns).min().unwrap_or(0);
        let last_due = outcomes.iter().map(|o| o.scheduled_ns).max().unwrap_or(0);
        let first_sent = outcomes.iter().map(|o| o.sent_ns).min().unwrap_or(0);
        let last_sent = outcomes.iter().map(|o| o.sent_ns).max().unwrap_or(0);
        let last_end = outcomes
            .iter()
            .map(|o| o.scheduled_ns + o.latency_ns)
            .max()
            .unwrap_or(0);
        // n sends over a span hold n − 1 gaps.
        let rate = |n: u64, span_ns: u64| {
            if n > 1 && span_ns > 0 {
                (n - 1) as f64 / (span_ns as f64 / 1e9)
            } else {
                0.0
            }
        };
        report.offered_rate = rate(report.sent, last_due - first_due);
        report.achieved_rate = rate(report.sent, last_sent - first_sent);
        report.duration_s = last_end.saturating_sub(first_due) as f64 / 1e9;
        report.outcomes = outcomes;
        report
    }

    pub fn from_run(run: RunResult) -> RunReport {
        RunReport::from_outcomes(
            run.target,
            run.started_unix_nanos,
            run.planned,
            run.records_seen,
            run.interrupted,
            run.outcomes,
        )
    }

    /// The runs of several shards as one: outcomes put on the earliest shard's clock, every
    /// count and quantile recomputed from them.
    pub fn merge(runs: &[RunReport]) -> RunReport {
        let start = runs.iter().map(|r| r.started_unix_nanos).min().unwrap_or(0);
        let mut outcomes = Vec::new();
        for run in runs {
            let shift = run.started_unix_nanos - start;
            outcomes.extend(run.outcomes.iter().cloned().map(|mut o| {
                o.scheduled_ns += shift;
                o.sent_ns += shift;
                o
            }));
        }
        outcomes.sort_by_key(|o| o.scheduled_ns);
        let mut targets: Vec<&str> = runs.iter().map(|r| r.target.as_str()).collect();
        targets.dedup();
        RunReport::from_outcomes(
            targets.join(", "),
            start,
            runs.iter().map(|r| r.planned).sum(),
            runs.iter().all(|r| r.records_seen),
            runs.iter().any(|r| r.interrupted),
            outcomes,
        )
    }
}

/// The whole report of one `simulator replay` (or of several merged).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub recording: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The shard replayed (`2/4`), or every shard merged (`1/4, 2/4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// How many reports were merged into this one (1 for a single run).
    pub merged: u32,
    /// Exchanges in the recording (before `--shard`).
    pub exchanges: u64,
    /// Problems forgiven while reading, by kind.
    pub warnings: BTreeMap<String, u64>,
    /// Records `--skip-bad` skipped.
    pub skipped: u64,
    pub interrupted: bool,
    /// The run through `--config` or `--target`.
    pub run: RunReport,
    /// The run through `--against`'s config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub against: Option<RunReport>,
    /// The config review: decisions compared request by request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<serde_json::Value>,
    /// `--predict`: the lab's counts per policy next to the gateway's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<serde_json::Value>,
    /// `--diff-responses`: the responses compared with the recorded ones (or, with `--against`,
    /// the candidate's with the baseline's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses: Option<ResponseDiff>,
    /// `--noise-runs`: what varied on its own between the baseline runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<Noise>,
}

impl ReplayReport {
    pub fn new(
        recording_path: &Path,
        recording: &Recording,
        format: Option<Format>,
        shard: Option<String>,
        run: RunReport,
        against: Option<RunReport>,
    ) -> ReplayReport {
        let mut warnings = BTreeMap::new();
        for w in &recording.warnings {
            *warnings.entry(w.kind.clone()).or_default() += 1;
        }
        ReplayReport {
            recording: recording_path.display().to_string(),
            format,
            shard,
            merged: 1,
            exchanges: recording.exchanges.len() as u64,
            warnings,
            skipped: recording.skipped.len() as u64,
            interrupted: run.interrupted || against.as_ref().is_some_and(|a| a.interrupted),
            run,
            against,
            diff: None,
            prediction: None,
            responses: None,
            noise: None,
        }
    }

    /// Shard reports merged: sums of what was counted, outcomes put together and every quantile
    /// recomputed from them. The diff and prediction are not carried over (they are recomputed
    /// from the merged outcomes by whoever knows how).
    pub fn merge(reports: &[ReplayReport]) -> Result<ReplayReport, String> {
        let first = reports.first().ok_or("nothing to merge")?;
        for r in reports {
            if r.recording != first.recording {
                return Err(format!(
                    "these reports are of different recordings: {} and {}",
                    first.recording, r.recording
                ));
            }
            if r.against.is_some() != first.against.is_some() {
                return Err("some reports compare two configs (--against) and some do not".into());
            }
        }
        let mut warnings = BTreeMap::new();
        for r in reports {
            for (kind, n) in &r.warnings {
                *warnings.entry(kind.clone()).or_default() += n;
            }
        }
        let runs: Vec<RunReport> = reports.iter().map(|r| r.run.clone()).collect();
        let against: Option<Vec<RunReport>> = reports.iter().map(|r| r.against.clone()).collect();
        let shards: Vec<String> = reports.iter().filter_map(|r| r.shard.clone()).collect();
        Ok(ReplayReport {
            recording: first.recording.clone(),
            format: first.format,
            shard: (!shards.is_empty()).then(|| shards.join(", ")),
            merged: reports.iter().map(|r| r.merged.max(1)).sum(),
            // Every shard read the whole recording; they agree on its size.
            exchanges: first.exchanges,
            warnings,
            skipped: first.skipped,
            interrupted: reports.iter().any(|r| r.interrupted),
            run: RunReport::merge(&runs),
            against: against.map(|a| RunReport::merge(&a)),
            diff: None,
            prediction: None,
            responses: None,
            noise: None,
        })
    }

    pub fn read(path: &Path) -> Result<ReplayReport, String> {
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&text).map_err(|e| {
            format!(
                "{}: not a replay report (`simulator replay --json`): {e}",
                path.display()
            )
        })
    }

    pub fn write(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let body = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        std::fs::write(path, body).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Terminal text: one fact per line, names first, so it reads and greps alike.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let format = self.format.map_or(String::new(), |f| {
            format!(
                " ({})",
                serde_json::to_string(&f)
                    .unwrap_or_default()
                    .trim_matches('"')
            )
        });
        out.push_str(&format!(
            "recording  {}{format}: {} exchanges",
            self.recording, self.exchanges
        ));
        if let Some(shard) = &self.shard {
            out.push_str(&format!(", shard {shard}"));
        }
        if self.merged > 1 {
            out.push_str(&format!(", {} reports merged", self.merged));
        }
        out.push('\n');
        if !self.warnings.is_empty() || self.skipped > 0 {
            out.push_str(&format!(
                "read       {} skipped, warnings: {}\n",
                self.skipped,
                counts(&self.warnings)
            ));
        }
        render_run(&mut out, "", &self.run);
        if let Some(against) = &self.against {
            render_run(&mut out, "against ", against);
        }
        if self.interrupted {
            out.push_str("interrupted: the report covers what was sent before Ctrl-C\n");
        }
        out
    }
}

fn render_run(out: &mut String, prefix: &str, run: &RunReport) {
    out.push_str(&format!("{prefix}target     {}\n", run.target));
    let planned = if run.planned > 0 {
        format!(" of {}", run.planned)
    } else {
        String::new()
    };
    out.push_str(&format!(
        "{prefix}sent       {}{planned} in {:.2}s: {} answered, {} errors ({})\n",
        run.sent,
        run.duration_s,
        run.answered,
        run.errors.values().sum::<u64>(),
        counts(&run.errors)
    ));
    for error in run.first_errors.values() {
        out.push_str(&format!("{prefix}first      {error}\n"));
    }
    out.push_str(&format!(
        "{prefix}rate       offered {:.0}/s, achieved {:.0}/s\n",
        run.offered_rate, run.achieved_rate
    ));
    out.push_str(&format!("{prefix}statuses   {}\n", counts(&run.statuses)));
    if run.records_seen {
        out.push_str(&format!("{prefix}stopped at {}\n", counts(&run.stopped_at)));
        if !run.reasons.is_empty() {
            out.push_str(&format!("{prefix}reasons    {}\n", counts(&run.reasons)));
        }
        if run.records_missing > 0 {
            out.push_str(&format!(
                "{prefix}records    {} answered requests had no record\n",
                run.records_missing
            ));
        }
    } else {
        out.push_str(&format!(
            "{prefix}decisions  not seen (give --admin to read the target's records)\n"
        ));
    }
    out.push_str(&format!(
        "{prefix}latency    {}\n",
        quantiles(&run.latency_us)
    ));
    out.push_str(&format!(
        "{prefix}sched gap  {}\n",
        quantiles(&run.schedule_gap_us)
    ));
}

fn counts<K: std::fmt::Display>(map: &BTreeMap<K, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn quantiles(q: &Quantiles) -> String {
    if q.count == 0 {
        return "none".into();
    }
    format!(
        "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
        micros(q.p50),
        micros(q.p90),
        micros(q.p99),
        micros(q.p99_9),
        micros(q.max)
    )
}

/// `850µs`, `12.3ms`, `1.20s`.
fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us}µs"),
        1_000..1_000_000 => format!("{:.2}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::model::Decision;

    fn outcome(id: &str, scheduled_ms: u64, status: Option<u16>) -> ExchangeOutcome {
        ExchangeOutcome {
            id: id.into(),
            position: 1,
            method: "GET".into(),
            path: "/".into(),
            status,
            error: status
                .is_none()
                .then(|| "refused: connect 127.0.0.1:1".into()),
            decision: status.map(|s| Decision {
                route: Some("r".into()),
                upstream: None,
                upstream_path: None,
                status: s,
                stopped_at: (s == 429).then(|| "ratelimit".into()),
                reason: (s == 429).then(|| "rate-limited".into()),
                limit: None,
            }),
            response: None,
            scheduled_ns: scheduled_ms * 1_000_000,
            sent_ns: scheduled_ms * 1_000_000 + 50_000,
            latency_ns: 2_000_000,
        }
    }

    #[test]
    fn a_run_is_counted_from_its_outcomes() {
        let run = RunReport::from_outcomes(
            "gw.yaml".into(),
            0,
            4,
            true,
            false,
            vec![
                outcome("a", 0, Some(200)),
                outcome("b", 10, Some(429)),
                outcome("c", 20, None),
                outcome("d", 30, Some(200)),
            ],
        );
        assert_eq!((run.sent, run.answered), (4, 3));
        assert_eq!(run.errors, BTreeMap::from([("refused".to_string(), 1)]));
        assert_eq!(run.statuses, BTreeMap::from([(200, 2), (429, 1)]));
        assert_eq!(
            run.stopped_at,
            BTreeMap::from([("none".to_string(), 2), ("ratelimit".to_string(), 1)])
        );
        assert_eq!(run.latency_us.count, 3);
        assert_eq!(run.schedule_gap_us.p99, 50);
        assert!(
            (run.offered_rate - 100.0).abs() < 1e-6,
            "{}",
            run.offered_rate
        );
        let text = ReplayReport {
            recording: "r.jsonl".into(),
            run,
            ..ReplayReport::default()
        }
        .render_text();
        assert!(text.contains("sent       4 of 4"), "{text}");
        assert!(text.contains("statuses   200: 2, 429: 1"), "{text}");
    }

    #[test]
    fn shard_reports_merge_into_sums_on_one_clock() {
        let a = RunReport::from_outcomes(
            "gw".into(),
            1_000_000_000,
            2,
            true,
            false,
            vec![outcome("a", 0, Some(200)), outcome("c", 20, Some(200))],
        );
        let b = RunReport::from_outcomes(
            "gw".into(),
            1_010_000_000,
            1,
            true,
            true,
            vec![outcome("b", 0, Some(429))],
        );
        let report = |run: RunReport, shard: &str| ReplayReport {
            recording: "r.jsonl".into(),
            shard: Some(shard.into()),
            merged: 1,
            exchanges: 3,
            warnings: BTreeMap::from([("blank-line".to_string(), 1)]),
            interrupted: run.interrupted,
            run,
            ..ReplayReport::default()
        };
        let merged =
            ReplayReport::merge(&[report(a, "1/2"), report(b, "2/2")]).expect("same recording");
        assert_eq!(merged.merged, 2);
        assert_eq!(merged.shard.as_deref(), Some("1/2, 2/2"));
        assert_eq!(merged.run.sent, 3);
        assert_eq!(merged.run.planned, 3);
        assert_eq!(merged.run.statuses, BTreeMap::from([(200, 2), (429, 1)]));
        assert_eq!(merged.warnings["blank-line"], 2);
        assert!(merged.interrupted);
        // b started 10 ms after a: its send lands between a's two.
        let ids: Vec<&str> = merged.run.outcomes.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
        assert!((merged.run.offered_rate - 100.0).abs() < 1e-6);
        // And it survives JSON, as `report merge` reads it.
        let json = serde_json::to_string(&merged).expect("serializes");
        let back: ReplayReport = serde_json::from_str(&json).expect("deserializes");
        assert_eq!(back, merged);
        let other = ReplayReport {
            recording: "other.jsonl".into(),
            ..ReplayReport::default()
        };
        assert!(ReplayReport::merge(&[merged, other]).is_err());
    }
}
