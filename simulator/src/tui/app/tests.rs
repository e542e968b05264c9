//! The TUI's state driven by records, ticks and key presses, with no terminal; the helpers that
//! build records and press keys are shared with the drawing tests.

use std::sync::Arc;

use gateway::ratelimit::Quota;
use gateway::record::RequestRecord;
use gateway::vocab::StageId;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};

use super::counts::SECOND;
use super::{
    Answered, App, DEFAULT_LIVE_RATE, FEED_CAPACITY, LabPolicy, View, answered, policies_of,
};
use crate::compare::{CompareParams, Trace};

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
        "identity": {"subject": "alice", "tenant": "acme", "api_key_id": format!("key-{}", i % 3)},
        "limit": {"policy": "paid", "subject": "alice", "remaining": 7},
        "upstream": "users-svc",
        "upstream_instance": "127.0.0.1:9101",
        "bytes_in": 0,
        "bytes_out": 64,
        "completed": true,
    });
    Arc::new(serde_json::from_value(value).expect("a record"))
}

/// A CORS preflight the gateway answered itself: no stop, no upstream, 204.
pub(crate) fn preflight(i: u64) -> Arc<RequestRecord> {
    let value = serde_json::json!({
        "request_id": format!("req-{i}"),
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "unix_millis": 1_700_000_000_000u64 + i,
        "peer": "127.0.0.1:50000",
        "method": "OPTIONS",
        "path": "/api/v1/users/1",
        "route": "users-v1",
        "route_template": "/api/v1/users/*",
        "status": 204,
        "stopped_at": null,
        "reason": "cors-preflight",
        "stage_ns": {"tls": 1_000, "authn": 0},
        "duration_ns": 30_000,
        "peer_addr": "127.0.0.1:50000",
        "bytes_in": 0,
        "bytes_out": 0,
        "completed": true,
    });
    Arc::new(serde_json::from_value(value).expect("a preflight record"))
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
    // Latency apart by who answered: the upstream's 6 answers, the gateway's 3 + 1 stops.
    let latency: Vec<(&str, Answered, u64)> = app
        .routes()
        .iter()
        .map(|r| (&*r.route, r.answered, r.histogram.len()))
        .collect();
    assert_eq!(
        latency,
        vec![
            ("/api/v1/users/*", Answered::Upstream, 6),
            ("/api/v1/users/*", Answered::Gateway, 3),
            ("/api/*", Answered::Gateway, 1),
        ]
    );
}

#[test]
fn a_cors_preflight_is_answered_at_the_gateway_never_by_the_upstream() {
    let mut app = mixed();
    app.ingest(preflight(20));
    assert_eq!((app.total, app.passed), (11, 6), "not an upstream answer");
    assert_eq!(app.answered_here.total, 1);
    assert_eq!(
        app.answered_here.reasons,
        vec![("cors-preflight".to_string(), 1)]
    );
    assert_eq!(answered(&preflight(21)), Answered::Gateway);
    let latency = app
        .routes()
        .iter()
        .find(|r| r.answered == Answered::Gateway && &*r.route == "/api/v1/users/*")
        .expect("the preflight's latency is the gateway's");
    assert_eq!(latency.histogram.len(), 4);
}

#[test]
fn upstream_answers_are_counted_by_status_class() {
    let mut app = App::live("test");
    for (i, status) in [200u16, 201, 404, 503, 503].into_iter().enumerate() {
        let mut r = (*record(i as u64, None, None, "/r", 1_000)).clone();
        r.status = status;
        app.ingest(Arc::new(r));
    }
    assert_eq!(app.upstream_classes, [0, 2, 0, 1, 2]);
    assert_eq!(app.passed, 5);
}

#[test]
fn esc_closes_the_details_first_then_clears_the_filter() {
    let mut app = mixed();
    press(&mut app, KeyCode::Char('/'));
    for c in "quota".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!((app.filter.as_str(), app.editing_filter), ("quota", false));
    press(&mut app, KeyCode::Enter);
    assert!(app.pinned.is_some());
    press(&mut app, KeyCode::Esc);
    assert!(app.pinned.is_none());
    assert_eq!(app.filter, "quota", "the first Esc only closes the details");
    press(&mut app, KeyCode::Esc);
    assert_eq!(app.filter, "");
    assert_eq!(app.feed().count(), 10);
}

#[test]
fn the_live_compare_starts_from_the_gateways_first_policy_and_n_steps_through_them() {
    let policies = vec![
        LabPolicy {
            id: "free".into(),
            quota: Quota::per_second(5),
        },
        LabPolicy {
            id: "paid".into(),
            quota: Quota::per_second(100).with_burst(20),
        },
    ];
    let mut app = App::live_with_policies("test", policies);
    assert_eq!(app.lab.params.quota, Quota::per_second(5));
    press(&mut app, KeyCode::Char('4'));
    press(&mut app, KeyCode::Char('n'));
    assert_eq!(app.lab.params.quota, Quota::per_second(100).with_burst(20));
    assert_eq!(
        app.lab.current_policy().map(|p| p.id.as_str()),
        Some("paid")
    );
    press(&mut app, KeyCode::Char('R'));
    assert_eq!(
        app.lab.current_policy(),
        None,
        "changed: no longer the policy"
    );
    press(&mut app, KeyCode::Char('n'));
    assert_eq!(app.lab.params.quota, Quota::per_second(5));
    // Without the gateway's policies: the default, and `n` says why nothing changes.
    let mut app = App::live("attached");
    assert_eq!(app.lab.params.quota, Quota::per_second(DEFAULT_LIVE_RATE));
    press(&mut app, KeyCode::Char('4'));
    press(&mut app, KeyCode::Char('n'));
    assert!(app.lab.status.contains("not known"), "{}", app.lab.status);
}

#[test]
fn the_demo_configs_policies_are_read_off_the_running_config() {
    let runtime = gateway::config::load_str("demo", crate::demo::DEMO_CONFIG).expect("config");
    let policies = policies_of(&runtime.rate_limits);
    assert!(!policies.is_empty());
    let first = &runtime.rate_limits.policies[0];
    assert_eq!(
        policies[0],
        LabPolicy {
            id: first.id.to_string(),
            quota: first.quota
        }
    );
    let app = App::live_with_policies("demo", policies);
    assert_eq!(app.lab.params.quota, first.quota);
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

fn change(i: u64) -> super::ChangedRequest {
    super::ChangedRequest {
        id: format!("paid-{i:05}"),
        method: "GET".into(),
        path: format!("/api/v1/users/{i}"),
        before: "200 users-v1".into(),
        after: "429 ratelimit quota-exceeded".into(),
    }
}

#[test]
fn the_changed_view_is_there_only_when_configs_are_compared_and_lists_newest_first() {
    let mut app = mixed();
    assert_eq!(app.views(), &View::ALL);
    press(&mut app, KeyCode::Char('5'));
    assert_ne!(app.view, View::Changed, "no fifth view without --against");

    app.enable_changes();
    assert_eq!(app.views().len(), 5);
    press(&mut app, KeyCode::Char('5'));
    assert_eq!(app.view, View::Changed);
    assert_eq!(app.changed_requests().count(), 0);
    for i in 1..=3 {
        app.changed(change(i));
    }
    let ids: Vec<&str> = app.changed_requests().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["paid-00003", "paid-00002", "paid-00001"]);
    assert_eq!(
        change(7).summary(),
        "paid-00007 GET /api/v1/users/7  200 users-v1 → 429 ratelimit quota-exceeded"
    );

    // `/` filters the changes in place; Tab wraps through all five views.
    press(&mut app, KeyCode::Char('/'));
    for c in "users/2".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    press(&mut app, KeyCode::Enter);
    assert_eq!(app.view, View::Changed);
    assert_eq!(app.changed_requests().count(), 1);
    press(&mut app, KeyCode::Tab);
    assert_eq!(app.view, View::Pipeline);
    press(&mut app, KeyCode::BackTab);
    assert_eq!(app.view, View::Changed);
}

#[test]
fn changed_requests_are_counted_past_what_the_view_keeps() {
    let mut app = App::live("replay");
    for i in 0..(super::CHANGED_CAPACITY as u64 + 5) {
        app.changed(change(i));
    }
    assert_eq!(app.views().len(), 5, "a change opens the view");
    assert_eq!(
        app.changes.as_ref().map(|c| c.total),
        Some(super::CHANGED_CAPACITY as u64 + 5)
    );
    assert_eq!(app.changed_requests().count(), super::CHANGED_CAPACITY);
}
