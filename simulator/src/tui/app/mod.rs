//! The TUI's state and how input changes it — no drawing, no terminal, no clock: time arrives
//! through [`App::tick`], records through [`App::ingest`], keys through [`App::on_key`], so every
//! behaviour is a plain unit test. This file holds the state and the records' effect on it; keys
//! are in `keys.rs`, the counts in `counts.rs`, the compare view's state in `lab.rs`.

mod counts;
mod keys;
mod lab;
#[cfg(test)]
pub(crate) mod tests;
mod view;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use gateway::clock::Nanos;
use gateway::ratelimit::Quota;
use gateway::record::RequestRecord;
use gateway::vocab::StageId;

use crate::compare::{CompareParams, KeyField, Trace};
use counts::{ANSWERED_HERE, OUTCOMES, PASSED, Rates, histogram};
pub use counts::{Answered, RATE_SECONDS, RouteLatency, StageStops};
pub use lab::{Lab, LabPolicy, LabTraffic, policies_of, policies_of_admin_config};
pub use view::View;

/// Records kept for the request feed (newest last).
pub const FEED_CAPACITY: usize = 2_000;
/// The live compare view's rate per second when the gateway's policies are not known.
pub const DEFAULT_LIVE_RATE: u64 = 10;
/// Arrivals kept for comparing algorithms on live traffic.
pub const LIVE_ARRIVALS: usize = 200_000;
/// Changed requests kept for the Changed view (newest last); the count goes on past it.
pub const CHANGED_CAPACITY: usize = 2_000;

/// One request whose decision differs between the two configs of `replay --against`: what the
/// Changed view lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedRequest {
    pub id: String,
    pub method: String,
    pub path: String,
    /// The baseline's decision in a few words (`200 users-v1`, `429 ratelimit quota-exceeded`).
    pub before: String,
    /// The candidate's.
    pub after: String,
}

impl ChangedRequest {
    /// `id METHOD path  before → after`: the line the view shows and the filter reads.
    pub fn summary(&self) -> String {
        format!(
            "{} {} {}  {} → {}",
            self.id, self.method, self.path, self.before, self.after
        )
    }
}

/// The Changed view's state: present only on a replay that compares two configs.
#[derive(Debug, Default)]
pub struct Changes {
    lines: VecDeque<ChangedRequest>,
    /// Every changed request pushed, including those no longer kept.
    pub total: u64,
}

/// The whole TUI state.
#[derive(Debug)]
pub struct App {
    pub view: View,
    /// Where records come from, for the header (`demo`, `attach http://…`, a trace name).
    pub source: String,
    pub show_help: bool,
    pub paused: bool,
    pub should_quit: bool,
    /// The feed filter (case-insensitive substring of the record's summary line).
    pub filter: String,
    /// `/` was pressed: keys edit the filter until Enter or Esc.
    pub editing_filter: bool,
    /// Highlighted row of the current view's list (feed: 0 is the newest match).
    pub selected: usize,
    /// The record whose details are open (Enter on the feed).
    pub pinned: Option<Arc<RequestRecord>>,
    /// A line for the footer of every view: the stream ended, the clients stopped. (The compare
    /// view's own news is [`Lab::status`], shown in that view only.)
    pub status: String,
    /// Virtual "now" from the last tick.
    pub now: Nanos,

    pub total: u64,
    /// Answered by the upstream.
    pub passed: u64,
    /// Upstream answers by status class: 1xx … 5xx.
    pub upstream_classes: [u64; 5],
    /// Answered at the gateway without a stop (a CORS preflight), by reason.
    pub answered_here: StageStops,
    pub stops: [StageStops; 8],
    /// Records the source lost (a lagging subscriber).
    pub lost: u64,
    /// Records that arrived while paused (not in the feed).
    pub held: u64,
    rates: Rates,
    feed: VecDeque<Arc<RequestRecord>>,
    latency: HashMap<(Arc<str>, bool), usize>,
    routes: Vec<RouteLatency>,
    live: VecDeque<(u64, Box<str>)>,
    pub lab: Lab,
    /// The Changed view (`replay --against --tui`); `None` elsewhere, and the view is not shown.
    pub changes: Option<Changes>,
}

impl App {
    /// A TUI on a record stream, with the compare view on the live traffic, starting from the
    /// current default quota (the source's policies are not known).
    pub fn live(source: impl Into<String>) -> Self {
        Self::live_with_policies(source, Vec::new())
    }

    /// A TUI on a record stream whose gateway runs these rate-limit policies: the compare view
    /// starts from the first and `n` steps through them, so the lab answers "how would another
    /// algorithm do with *my* quota".
    pub fn live_with_policies(source: impl Into<String>, policies: Vec<LabPolicy>) -> Self {
        let quota = policies
            .first()
            .map_or(Quota::per_second(DEFAULT_LIVE_RATE), |p| p.quota);
        let mut lab = Lab::new(
            LabTraffic::Live(KeyField::Auto),
            CompareParams::new(quota, gateway::ratelimit::Algorithm::ALL.to_vec()),
        );
        lab.policies = policies;
        Self::with_lab(source, lab)
    }

    /// A TUI opened on the compare view of a fixed trace (already compared).
    pub fn comparing(trace: Trace, params: CompareParams) -> Self {
        let source = trace.source.clone();
        let mut app = Self::with_lab(source, Lab::new(LabTraffic::Fixed(trace), params));
        app.view = View::Compare;
        app.rerun();
        app
    }

    fn with_lab(source: impl Into<String>, lab: Lab) -> Self {
        Self {
            view: View::Pipeline,
            source: source.into(),
            show_help: false,
            paused: false,
            should_quit: false,
            filter: String::new(),
            editing_filter: false,
            selected: 0,
            pinned: None,
            status: String::new(),
            now: 0,
            total: 0,
            passed: 0,
            upstream_classes: [0; 5],
            answered_here: StageStops::default(),
            stops: Default::default(),
            lost: 0,
            held: 0,
            rates: Rates::default(),
            feed: VecDeque::with_capacity(FEED_CAPACITY),
            latency: HashMap::new(),
            routes: Vec::new(),
            live: VecDeque::new(),
            lab,
            changes: None,
        }
    }

    /// The views this TUI has, in Tab order: the Changed view only when it compares configs.
    pub fn views(&self) -> &'static [View] {
        if self.changes.is_some() {
            &View::WITH_CHANGES
        } else {
            &View::ALL
        }
    }

    /// Adds the Changed view (a replay comparing two configs), empty until requests change.
    pub fn enable_changes(&mut self) {
        self.changes.get_or_insert_with(Changes::default);
    }

    /// One request the two configs decided differently (enables the Changed view).
    pub fn changed(&mut self, change: ChangedRequest) {
        let changes = self.changes.get_or_insert_with(Changes::default);
        changes.total += 1;
        if changes.lines.len() == CHANGED_CAPACITY {
            changes.lines.pop_front();
        }
        changes.lines.push_back(change);
    }

    /// Changed requests kept, newest first, that match the filter.
    pub fn changed_requests(&self) -> impl Iterator<Item = &ChangedRequest> {
        let needle = self.filter.to_lowercase();
        self.changes
            .iter()
            .flat_map(|c| c.lines.iter().rev())
            .filter(move |c| needle.is_empty() || c.summary().to_lowercase().contains(&needle))
    }

    /// Time passes: rates move on.
    pub fn tick(&mut self, now: Nanos) {
        self.now = self.now.max(now);
        self.rates.advance(self.now);
    }

    /// One record from the stream.
    pub fn ingest(&mut self, record: Arc<RequestRecord>) {
        self.total += 1;
        let reason = record.reason.as_deref().unwrap_or("-");
        let slot = match (record.stopped_at, answered(&record)) {
            (Some(stage), _) => {
                self.stops[stage.index()].add(reason);
                stage.index()
            }
            (None, Answered::Gateway) => {
                self.answered_here.add(reason);
                ANSWERED_HERE
            }
            (None, Answered::Upstream) => {
                self.passed += 1;
                if let Some(n) = self
                    .upstream_classes
                    .get_mut(usize::from(record.status / 100).wrapping_sub(1))
                {
                    *n += 1;
                }
                PASSED
            }
        };
        self.rates.current[slot] += 1;
        let route = record
            .route_template
            .clone()
            .unwrap_or_else(|| Arc::from("(no route)"));
        let by = answered(&record);
        let key = (route, by == Answered::Upstream);
        let index = match self.latency.get(&key) {
            Some(i) => *i,
            None => {
                self.routes.push(RouteLatency {
                    route: key.0.clone(),
                    answered: by,
                    histogram: histogram(),
                });
                self.latency.insert(key, self.routes.len() - 1);
                self.routes.len() - 1
            }
        };
        self.routes[index]
            .histogram
            .saturating_record((record.duration_ns / 1_000).max(1));
        if let LabTraffic::Live(key) = self.lab.traffic {
            if self.live.len() == LIVE_ARRIVALS {
                self.live.pop_front();
            }
            self.live
                .push_back((record.unix_millis, key.of(&record).into()));
        }
        if self.paused {
            self.held += 1;
            return;
        }
        if self.feed.len() == FEED_CAPACITY {
            self.feed.pop_front();
        }
        self.feed.push_back(record);
    }

    /// The source lost `n` records (a subscriber fell behind).
    pub fn lagged(&mut self, n: u64) {
        self.lost += n;
    }

    /// Requests per second over the last complete seconds: all, and those stopped at `stage`.
    pub fn rate(&self) -> f64 {
        (0..OUTCOMES).map(|s| self.rates.per_second(s)).sum()
    }

    pub fn stage_rate(&self, stage: StageId) -> f64 {
        self.rates.per_second(stage.index())
    }

    pub fn passed_rate(&self) -> f64 {
        self.rates.per_second(PASSED)
    }

    pub fn answered_here_rate(&self) -> f64 {
        self.rates.per_second(ANSWERED_HERE)
    }

    /// Latency per route and who answered, in order of first appearance.
    pub fn routes(&self) -> &[RouteLatency] {
        &self.routes
    }

    /// Records in the feed, newest first, that match the filter.
    pub fn feed(&self) -> impl Iterator<Item = &Arc<RequestRecord>> {
        let needle = self.filter.to_lowercase();
        self.feed
            .iter()
            .rev()
            .filter(move |r| needle.is_empty() || summary(r).to_lowercase().contains(&needle))
    }

    /// The highlighted record of the feed.
    pub fn selected_record(&self) -> Option<&Arc<RequestRecord>> {
        self.feed().nth(self.selected)
    }

    /// Rows the current view's selection moves over.
    fn rows(&self) -> usize {
        match self.view {
            View::Pipeline => PIPELINE_ROWS,
            View::Feed => self.feed().count(),
            View::Latency => self.routes.len(),
            View::Compare => self.lab.params.algorithms.len(),
            View::Changed => self.changed_requests().count(),
        }
    }
}

/// Rows of the pipeline view: the eight stages, answered at the gateway, answered upstream.
pub const PIPELINE_ROWS: usize = 10;

/// Who answered: the upstream, or the gateway itself — a stop, or an answer without a stop and
/// without an upstream (a CORS preflight, `cors-preflight`, 204), which never reached one.
pub fn answered(r: &RequestRecord) -> Answered {
    let preflight = r.reason.as_deref() == Some("cors-preflight");
    if r.stopped_at.is_some() || r.upstream.is_none() || preflight {
        Answered::Gateway
    } else {
        Answered::Upstream
    }
}

/// The one-line summary a record is filtered on (and that the feed shows).
pub fn summary(r: &RequestRecord) -> String {
    format!(
        "{} {} {} {} {} {}",
        r.method,
        r.path,
        r.status,
        r.stopped_at.map_or("passed", StageId::as_str),
        r.reason.as_deref().unwrap_or(""),
        r.route.as_deref().unwrap_or("")
    )
}
