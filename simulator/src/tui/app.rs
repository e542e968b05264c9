//! The TUI's state and how input changes it — no drawing, no terminal, no clock: time arrives
//! through [`App::tick`], records through [`App::ingest`], keys through [`App::on_key`], so every
//! behaviour is a plain unit test.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use gateway::clock::Nanos;
use gateway::ratelimit::Quota;
use gateway::record::RequestRecord;
use gateway::vocab::StageId;
use hdrhistogram::Histogram;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::compare::{CompareParams, Comparison, KeyField, Trace, compare};

/// The four views, in Tab order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Pipeline,
    Feed,
    Latency,
    Compare,
}

impl View {
    pub const ALL: [View; 4] = [View::Pipeline, View::Feed, View::Latency, View::Compare];

    pub const fn title(self) -> &'static str {
        match self {
            View::Pipeline => "Pipeline",
            View::Feed => "Requests",
            View::Latency => "Latency",
            View::Compare => "Compare",
        }
    }

    fn index(self) -> usize {
        match self {
            View::Pipeline => 0,
            View::Feed => 1,
            View::Latency => 2,
            View::Compare => 3,
        }
    }

    fn next(self) -> Self {
        View::ALL[(self.index() + 1) % 4]
    }

    fn previous(self) -> Self {
        View::ALL[(self.index() + 3) % 4]
    }
}

/// Records kept for the request feed (newest last).
pub const FEED_CAPACITY: usize = 2_000;
/// Arrivals kept for comparing algorithms on live traffic.
pub const LIVE_ARRIVALS: usize = 200_000;
/// Seconds of history behind the live rates.
pub const RATE_SECONDS: usize = 5;
const SECOND: Nanos = 1_000_000_000;

/// Stops at one stage, by reason, in order of first appearance (few reasons per stage, so a
/// linear scan beats hashing and never allocates once a reason is known).
#[derive(Debug, Clone, Default)]
pub struct StageStops {
    pub total: u64,
    pub reasons: Vec<(String, u64)>,
}

impl StageStops {
    fn add(&mut self, reason: &str) {
        self.total += 1;
        match self.reasons.iter_mut().find(|(r, _)| r == reason) {
            Some((_, n)) => *n += 1,
            None => self.reasons.push((reason.to_owned(), 1)),
        }
    }
}

/// Outcome slots: the eight stages, then "passed" (the upstream answered).
const OUTCOMES: usize = 9;
const PASSED: usize = 8;

/// Counts per second, for the last [`RATE_SECONDS`] complete seconds.
#[derive(Debug, Clone, Default)]
struct Rates {
    /// The second `current` counts for.
    second: u64,
    current: [u64; OUTCOMES],
    /// Complete seconds, newest last.
    history: VecDeque<[u64; OUTCOMES]>,
}

impl Rates {
    fn advance(&mut self, now: Nanos) {
        let second = now / SECOND;
        if second <= self.second {
            return;
        }
        // The second that ended, then any idle seconds after it (as zeros).
        let gap = second - self.second;
        self.history.push_back(std::mem::take(&mut self.current));
        for _ in 1..gap.min(RATE_SECONDS as u64 + 1) {
            self.history.push_back([0; OUTCOMES]);
        }
        while self.history.len() > RATE_SECONDS {
            self.history.pop_front();
        }
        self.second = second;
    }

    /// Per second over the complete seconds seen (up to RATE_SECONDS).
    fn per_second(&self, slot: usize) -> f64 {
        if self.history.is_empty() {
            return 0.0;
        }
        self.history.iter().map(|s| s[slot]).sum::<u64>() as f64 / self.history.len() as f64
    }
}

/// Latency of one route, in microseconds.
#[derive(Debug, Clone)]
pub struct RouteLatency {
    pub route: Arc<str>,
    pub histogram: Histogram<u64>,
}

/// Where the compare view's traffic comes from.
#[derive(Debug, Clone)]
pub enum LabTraffic {
    /// A fixed trace (`simulator compare --tui`).
    Fixed(Trace),
    /// The records seen so far, keyed by this field.
    Live(KeyField),
}

/// The compare view: one quota for every algorithm, re-run whenever it changes.
#[derive(Debug, Clone)]
pub struct Lab {
    pub traffic: LabTraffic,
    pub params: CompareParams,
    pub result: Option<Comparison>,
    /// Comparisons run so far.
    pub runs: u64,
}

impl Lab {
    pub fn new(traffic: LabTraffic, params: CompareParams) -> Self {
        Self {
            traffic,
            params,
            result: None,
            runs: 0,
        }
    }
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
    /// A line for the footer: the stream ended, records were lost, a re-run happened.
    pub status: String,
    /// Virtual "now" from the last tick.
    pub now: Nanos,

    pub total: u64,
    pub passed: u64,
    pub stops: [StageStops; 8],
    /// Records the source lost (a lagging subscriber).
    pub lost: u64,
    /// Records that arrived while paused (not in the feed).
    pub held: u64,
    rates: Rates,
    feed: VecDeque<Arc<RequestRecord>>,
    latency: HashMap<Arc<str>, usize>,
    routes: Vec<RouteLatency>,
    live: VecDeque<(u64, Box<str>)>,
    pub lab: Lab,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h at 2 significant digits: 1% resolution is plenty for a screen.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("constant, valid histogram bounds")
}

impl App {
    /// A TUI on a record stream, with the compare view on the live traffic.
    pub fn live(source: impl Into<String>) -> Self {
        Self::with_lab(
            source,
            Lab::new(
                LabTraffic::Live(KeyField::Auto),
                CompareParams::new(
                    Quota::per_second(10),
                    gateway::ratelimit::Algorithm::ALL.to_vec(),
                ),
            ),
        )
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
            stops: Default::default(),
            lost: 0,
            held: 0,
            rates: Rates::default(),
            feed: VecDeque::with_capacity(FEED_CAPACITY),
            latency: HashMap::new(),
            routes: Vec::new(),
            live: VecDeque::new(),
            lab,
        }
    }

    /// Time passes: rates move on.
    pub fn tick(&mut self, now: Nanos) {
        self.now = self.now.max(now);
        self.rates.advance(self.now);
    }

    /// One record from the stream.
    pub fn ingest(&mut self, record: Arc<RequestRecord>) {
        self.total += 1;
        let slot = match record.stopped_at {
            Some(stage) => {
                self.stops[stage.index()].add(record.reason.as_deref().unwrap_or("-"));
                stage.index()
            }
            None => {
                self.passed += 1;
                PASSED
            }
        };
        self.rates.current[slot] += 1;
        let route = record
            .route_template
            .clone()
            .unwrap_or_else(|| Arc::from("(no route)"));
        let index = match self.latency.get(&route) {
            Some(i) => *i,
            None => {
                self.routes.push(RouteLatency {
                    route: route.clone(),
                    histogram: histogram(),
                });
                self.latency.insert(route, self.routes.len() - 1);
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

    /// Latency per route, in order of first appearance.
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
            View::Pipeline => 9,
            View::Feed => self.feed().count(),
            View::Latency => self.routes.len(),
            View::Compare => self.lab.params.algorithms.len(),
        }
    }

    /// Runs the comparison again on the current parameters (and, live, on the traffic so far).
    pub fn rerun(&mut self) {
        let result = match &self.lab.traffic {
            LabTraffic::Fixed(trace) => compare(trace, &self.lab.params),
            LabTraffic::Live(_) => {
                let trace = Trace::from_events(
                    "live traffic",
                    self.live
                        .iter()
                        .map(|(ms, key)| (ms.saturating_mul(1_000_000), key.as_ref(), 1)),
                );
                compare(&trace, &self.lab.params)
            }
        };
        self.lab.runs += 1;
        self.status = format!(
            "compared {} arrivals: {} per {} ms, burst {}",
            result.trace.arrivals,
            self.lab.params.quota.limit,
            result.quota.period_ms,
            self.lab.params.quota.burst
        );
        self.lab.result = Some(result);
    }

    /// Changes the compare quota and re-runs at once.
    fn adjust(&mut self, change: QuotaChange) {
        let q = &mut self.lab.params.quota;
        let up = |n: u64| (n + (n / 4).max(1)).min(1_000_000_000);
        let down = |n: u64| n.saturating_sub((n / 5).max(1)).max(1);
        match change {
            QuotaChange::RateUp => {
                let burst_follows = q.burst == q.limit;
                q.limit = up(q.limit);
                if burst_follows {
                    q.burst = q.limit;
                }
            }
            QuotaChange::RateDown => {
                let burst_follows = q.burst == q.limit;
                q.limit = down(q.limit);
                if burst_follows {
                    q.burst = q.limit;
                }
            }
            QuotaChange::BurstUp => q.burst = up(q.burst),
            QuotaChange::BurstDown => q.burst = down(q.burst),
            QuotaChange::WindowUp => q.period_nanos = q.period().saturating_mul(2),
            QuotaChange::WindowDown => q.period_nanos = (q.period() / 2).max(1_000_000),
        }
        self.rerun();
    }

    /// One key press.
    pub fn on_key(&mut self, key: KeyEvent) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            self.should_quit = true;
            return;
        }
        if self.editing_filter {
            match key.code {
                KeyCode::Enter => self.editing_filter = false,
                KeyCode::Esc => {
                    self.editing_filter = false;
                    self.filter.clear();
                }
                KeyCode::Backspace => {
                    self.filter.pop();
                }
                KeyCode::Char(c) => self.filter.push(c),
                _ => {}
            }
            self.selected = 0;
            return;
        }
        if self.show_help {
            // Any key closes the help; q still quits.
            self.show_help = false;
            if key.code == KeyCode::Char('q') {
                self.should_quit = true;
            }
            return;
        }
        match key.code {
            KeyCode::Char('q') => self.should_quit = true,
            KeyCode::Char('?') => self.show_help = true,
            KeyCode::Tab => self.switch(self.view.next()),
            KeyCode::BackTab => self.switch(self.view.previous()),
            KeyCode::Char(c @ '1'..='4') => {
                self.switch(View::ALL[usize::from(c as u8 - b'1')]);
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.selected = (self.selected + 1).min(self.rows().saturating_sub(1));
            }
            KeyCode::Up | KeyCode::Char('k') => self.selected = self.selected.saturating_sub(1),
            KeyCode::Home | KeyCode::Char('g') => self.selected = 0,
            KeyCode::End | KeyCode::Char('G') => self.selected = self.rows().saturating_sub(1),
            KeyCode::Enter => self.enter(),
            KeyCode::Esc => self.pinned = None,
            KeyCode::Char('p') => {
                self.paused = !self.paused;
                if !self.paused {
                    self.held = 0;
                }
            }
            KeyCode::Char('/') => {
                self.editing_filter = true;
                if self.view != View::Feed {
                    self.switch(View::Feed);
                }
            }
            KeyCode::Char(c) if self.view == View::Compare => {
                let change = match c {
                    'r' => QuotaChange::RateDown,
                    'R' => QuotaChange::RateUp,
                    'b' => QuotaChange::BurstDown,
                    'B' => QuotaChange::BurstUp,
                    'w' => QuotaChange::WindowDown,
                    'W' => QuotaChange::WindowUp,
                    'c' | ' ' => {
                        self.rerun();
                        return;
                    }
                    _ => return,
                };
                self.adjust(change);
            }
            _ => {}
        }
    }

    fn switch(&mut self, view: View) {
        if self.view != view {
            self.view = view;
            self.selected = 0;
        }
        if view == View::Compare && self.lab.result.is_none() {
            self.rerun();
        }
    }

    fn enter(&mut self) {
        match self.view {
            View::Feed => {
                let selected = self.selected_record().cloned();
                self.pinned = match (&self.pinned, selected) {
                    (Some(open), Some(s)) if Arc::ptr_eq(open, &s) => None,
                    (_, s) => s,
                };
            }
            View::Compare => self.rerun(),
            View::Pipeline | View::Latency => {}
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum QuotaChange {
    RateUp,
    RateDown,
    BurstUp,
    BurstDown,
    WindowUp,
    WindowDown,
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ratatui::crossterm::event::KeyEventState;

    /// A record as the gateway would emit it, built from JSON so it follows the record's format.
    pub(crate) fn record(
        i: u64,
        stopped_at: Option<&str>,
        reason: Option<&str>,
        route: &str,
        duration_ns: u64,
    ) -> Arc<RequestRecord> {
        let status = match stopped_at {
            None => 200,
            Some("ratelimit") => 429,
            Some("authn") => 401,
            Some("route") => 404,
            Some(_) => 502,
        };
        let value = serde_json::json!({
            "request_id": format!("req-{i}"),
            "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "unix_millis": 1_700_000_000_000u64 + i,
            "peer": "127.0.0.1:50000",
            "method": "GET",
            "path": format!("/api/v1/users/{i}"),
            "route": "users-v1",
            "route_template": route,
            "status": status,
            "stopped_at": stopped_at,
            "reason": reason,
            "stage_ns": {"tls": 1_200, "authn": 3_400, "authz": 500, "ratelimit": 800},
            "duration_ns": duration_ns,
            "identity": {"subject": "alice", "tenant": "acme", "key_id": format!("key-{}", i % 3)},
            "limit": {"policy": "paid", "subject": "alice", "remaining": 7},
            "upstream": "users-svc",
            "upstream_instance": "127.0.0.1:9101",
            "bytes_in": 0,
            "bytes_out": 64,
            "completed": true,
        });
        Arc::new(serde_json::from_value(value).expect("a record"))
    }

    pub(crate) fn press(app: &mut App, code: KeyCode) {
        app.on_key(KeyEvent {
            code,
            modifiers: if matches!(code, KeyCode::Char(c) if c.is_ascii_uppercase()) {
                KeyModifiers::SHIFT
            } else {
                KeyModifiers::NONE
            },
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        });
    }

    /// A small mix: 6 passed, 3 refused by the rate limit, 1 with no route.
    pub(crate) fn mixed() -> App {
        let mut app = App::live("test");
        for i in 0..10 {
            let r = match i {
                0..6 => record(i, None, None, "/api/v1/users/*", 2_000_000 + i * 1_000_000),
                6..9 => record(
                    i,
                    Some("ratelimit"),
                    Some("quota-exceeded"),
                    "/api/v1/users/*",
                    90_000,
                ),
                _ => record(i, Some("route"), Some("no-route"), "/api/*", 40_000),
            };
            app.ingest(r);
        }
        app
    }

    #[test]
    fn ingest_counts_stops_by_stage_and_reason_and_keeps_the_feed_newest_first() {
        let app = mixed();
        assert_eq!((app.total, app.passed), (10, 6));
        assert_eq!(app.stops[StageId::Ratelimit.index()].total, 3);
        assert_eq!(
            app.stops[StageId::Ratelimit.index()].reasons,
            vec![("quota-exceeded".to_string(), 3)]
        );
        assert_eq!(app.stops[StageId::Route.index()].total, 1);
        let ids: Vec<&str> = app.feed().map(|r| r.request_id.as_str()).take(2).collect();
        assert_eq!(ids, vec!["req-9", "req-8"]);
        assert_eq!(app.routes().len(), 2);
        assert_eq!(app.routes()[0].histogram.len(), 9);
    }

    #[test]
    fn the_feed_keeps_only_its_capacity() {
        let mut app = App::live("test");
        for i in 0..(FEED_CAPACITY as u64 + 10) {
            app.ingest(record(i, None, None, "/r", 1_000));
        }
        assert_eq!(app.feed().count(), FEED_CAPACITY);
        assert_eq!(app.total, FEED_CAPACITY as u64 + 10);
    }

    #[test]
    fn rates_average_the_last_complete_seconds() {
        let mut app = mixed();
        assert_eq!(app.rate(), 0.0, "no complete second yet");
        app.tick(SECOND);
        assert_eq!(app.rate(), 10.0);
        assert_eq!(app.stage_rate(StageId::Ratelimit), 3.0);
        assert_eq!(app.passed_rate(), 6.0);
        app.tick(2 * SECOND + 5);
        assert_eq!(app.rate(), 5.0);
        // Long idle: the window holds only zeros.
        app.tick(100 * SECOND);
        assert_eq!(app.rate(), 0.0);
    }

    #[test]
    fn tab_and_number_keys_switch_views_and_q_quits() {
        let mut app = mixed();
        assert_eq!(app.view, View::Pipeline);
        press(&mut app, KeyCode::Tab);
        assert_eq!(app.view, View::Feed);
        press(&mut app, KeyCode::BackTab);
        press(&mut app, KeyCode::BackTab);
        assert_eq!(app.view, View::Compare);
        assert!(
            app.lab.result.is_some(),
            "opening the compare view compares"
        );
        press(&mut app, KeyCode::Char('3'));
        assert_eq!(app.view, View::Latency);
        assert!(!app.should_quit);
        press(&mut app, KeyCode::Char('q'));
        assert!(app.should_quit);
    }

    #[test]
    fn help_opens_with_question_mark_and_any_key_closes_it() {
        let mut app = mixed();
        press(&mut app, KeyCode::Char('?'));
        assert!(app.show_help);
        press(&mut app, KeyCode::Tab);
        assert!(!app.show_help);
        assert_eq!(
            app.view,
            View::Pipeline,
            "the closing key does nothing else"
        );
    }

    #[test]
    fn arrows_and_jk_select_and_enter_pins_the_records_details() {
        let mut app = mixed();
        press(&mut app, KeyCode::Tab);
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Char('j'));
        press(&mut app, KeyCode::Char('k'));
        assert_eq!(app.selected, 1);
        press(&mut app, KeyCode::Enter);
        assert_eq!(
            app.pinned.as_ref().map(|r| r.request_id.as_str()),
            Some("req-8")
        );
        // New records do not move what is pinned.
        app.ingest(record(20, None, None, "/r", 1));
        assert_eq!(
            app.pinned.as_ref().map(|r| r.request_id.as_str()),
            Some("req-8")
        );
        press(&mut app, KeyCode::Esc);
        assert!(app.pinned.is_none());
        press(&mut app, KeyCode::Char('G'));
        assert_eq!(app.selected, 10);
        for _ in 0..5 {
            press(&mut app, KeyCode::Down);
        }
        assert_eq!(app.selected, 10, "selection stops at the last row");
    }

    #[test]
    fn slash_filters_the_feed_and_esc_clears_it() {
        let mut app = mixed();
        press(&mut app, KeyCode::Char('/'));
        assert!(app.editing_filter);
        assert_eq!(app.view, View::Feed);
        for c in "quota".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        assert_eq!(app.feed().count(), 3);
        press(&mut app, KeyCode::Char('q'));
        assert!(!app.should_quit, "q is text while filtering");
        press(&mut app, KeyCode::Backspace);
        press(&mut app, KeyCode::Enter);
        assert!(!app.editing_filter);
        assert_eq!(app.filter, "quota");
        press(&mut app, KeyCode::Char('/'));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.filter, "");
        assert_eq!(app.feed().count(), 10);
    }

    #[test]
    fn pause_freezes_the_feed_but_not_the_counts() {
        let mut app = mixed();
        press(&mut app, KeyCode::Char('p'));
        app.ingest(record(11, None, None, "/r", 1));
        assert_eq!(app.feed().count(), 10);
        assert_eq!((app.total, app.held), (11, 1));
        press(&mut app, KeyCode::Char('p'));
        app.ingest(record(12, None, None, "/r", 1));
        assert_eq!(app.feed().count(), 11);
        assert_eq!(app.held, 0);
    }

    #[test]
    fn compare_keys_change_rate_burst_and_window_and_rerun_at_once() {
        let trace = Trace::from_events("t", (0..100u64).map(|i| (i * 50_000_000, "k", 1)));
        let mut app = App::comparing(
            trace,
            CompareParams::new(
                Quota::per_second(10),
                gateway::ratelimit::Algorithm::ALL.to_vec(),
            ),
        );
        assert_eq!(app.view, View::Compare);
        assert_eq!(app.lab.runs, 1);
        let admitted = |app: &App| app.lab.result.as_ref().map(|c| c.results[0].admitted);
        let before = admitted(&app);
        press(&mut app, KeyCode::Char('R'));
        assert_eq!(
            (app.lab.params.quota.limit, app.lab.params.quota.burst),
            (12, 12)
        );
        assert_eq!(app.lab.runs, 2);
        assert!(admitted(&app) > before, "a higher rate admits more");
        press(&mut app, KeyCode::Char('b'));
        assert_eq!(
            (app.lab.params.quota.limit, app.lab.params.quota.burst),
            (12, 10)
        );
        press(&mut app, KeyCode::Char('r'));
        assert_eq!(
            (app.lab.params.quota.limit, app.lab.params.quota.burst),
            (10, 10)
        );
        press(&mut app, KeyCode::Char('W'));
        assert_eq!(app.lab.params.quota.period_nanos, 2 * SECOND);
        press(&mut app, KeyCode::Char('w'));
        press(&mut app, KeyCode::Char('w'));
        assert_eq!(app.lab.params.quota.period_nanos, SECOND / 2);
        assert_eq!(app.lab.runs, 7);
        press(&mut app, KeyCode::Char('j'));
        assert_eq!(app.selected, 1, "j highlights the next algorithm");
    }

    #[test]
    fn the_compare_view_runs_on_the_live_traffic_keyed_by_identity() {
        let mut app = mixed();
        press(&mut app, KeyCode::Char('4'));
        let c = app.lab.result.as_ref().expect("compared");
        assert_eq!(c.trace.arrivals, 10);
        assert_eq!(c.trace.keys, 3, "key-0, key-1, key-2");
        app.ingest(record(30, None, None, "/r", 1));
        press(&mut app, KeyCode::Char('c'));
        assert_eq!(app.lab.result.as_ref().map(|c| c.trace.arrivals), Some(11));
    }
}
