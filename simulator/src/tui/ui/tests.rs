//! The views drawn into a `TestBackend` and read back as text and colours: what a person sees at
//! 80×24, and that every view survives any size.

use gateway::ratelimit::Algorithm;
use gateway::vocab::StageId;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::buffer::Buffer;
use ratatui::crossterm::event::KeyCode;
use ratatui::style::{Color, Modifier};

use super::{draw, stage_colour};
use crate::tui::app::App;
use crate::tui::app::tests::{mixed, preflight, press, record};

/// The screen as text, one string per row.
fn screen(app: &App, width: u16, height: u16) -> Vec<String> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("terminal");
    terminal.draw(|f| draw(f, app)).expect("draw");
    rows(terminal.backend().buffer())
}

fn rows(buffer: &Buffer) -> Vec<String> {
    let area = buffer.area;
    (0..area.height)
        .map(|y| {
            (0..area.width)
                .map(|x| buffer[(x, y)].symbol())
                .collect::<String>()
        })
        .collect()
}

fn show(lines: &[String]) -> String {
    lines.join("\n")
}

#[test]
fn the_pipeline_view_is_the_chain_of_stages_with_stops_share_and_rate_at_80x24() {
    let mut app = mixed();
    app.tick(1_000_000_000);
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('j'));
    press(&mut app, KeyCode::Char('j'));
    let s = screen(&app, 80, 24);
    let expected = [
        " 1 Pipeline │ 2 Requests │ 3 Latency │ 4 Compare                    10 req  10/s",
        "┌ Pipeline — where requests stopped, in stage order ───────────────────────────┐",
        "│stage                stopped  share     /s                                    │",
        "│┌ tls                      0   0.0%     0.0                                   │",
        "││ authn                    0   0.0%     0.0                                   │",
        "││ authz                    0   0.0%     0.0                                   │",
        "││ ratelimit                3  30.0%     3.0 █████████                         │",
        "││ route                    1  10.0%     1.0 ███                               │",
        "││ mutate_request           0   0.0%     0.0                                   │",
        "││ forward                  0   0.0%     0.0                                   │",
        "││ mutate_response          0   0.0%     0.0                                   │",
        "│├ gateway answered         0   0.0%     0.0                                   │",
        "│└ upstream answered        6  60.0%     6.0 ██████████████████                │",
        "└──────────────────────────────────────────────────────────────────────────────┘",
        "┌ Why requests stopped at ratelimit ───────────────────────────────────────────┐",
        "│       3  quota-exceeded                                                      │",
    ];
    assert_eq!(&s[..expected.len()], expected, "\n{}", show(&s));
    assert!(s[23].starts_with("q quit ? help Tab views"), "{}", s[23]);
    // The highlighted stage is reversed; stopped stages wear their colour.
    let buffer = {
        let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        t.draw(|f| draw(f, &app)).expect("draw");
        t.backend().buffer().clone()
    };
    assert!(buffer[(3, 6)].modifier.contains(Modifier::REVERSED));
    assert_eq!(buffer[(3, 6)].fg, Color::Yellow);
    assert_eq!(buffer[(3, 3)].fg, Color::DarkGray, "no stop at tls");
    assert_eq!(buffer[(3, 12)].fg, Color::Green);
}

#[test]
fn the_upstream_row_shows_its_status_classes_and_preflights_are_answered_at_the_gateway() {
    let mut app = mixed();
    app.ingest(preflight(20));
    let mut failed = (*record(21, None, None, "/api/v1/users/*", 1_000_000)).clone();
    failed.status = 503;
    app.ingest(std::sync::Arc::new(failed));
    press(&mut app, KeyCode::Char('G'));
    let s = screen(&app, 80, 24);
    assert!(
        s[11].starts_with("│├ gateway answered         1"),
        "{}",
        show(&s)
    );
    assert!(
        s[12].starts_with("│└ upstream answered        7"),
        "{}",
        s[12]
    );
    let expected = [
        "┌ Answered by the upstream ────────────────────────────────────────────────────┐",
        "│       7  passed every stage; the upstream's status:                          │",
        "│       6  2xx                                                                 │",
        "│       1  5xx                                                                 │",
    ];
    assert_eq!(&s[14..18], expected, "\n{}", show(&s));
    press(&mut app, KeyCode::Up);
    let s = show(&screen(&app, 80, 24));
    assert!(
        s.contains("Answered at the gateway without a stop (CORS preflights)"),
        "{s}"
    );
    assert!(s.contains("       1  cors-preflight"), "{s}");
}

#[test]
fn the_feed_colours_each_request_by_where_it_stopped() {
    let mut app = mixed();
    press(&mut app, KeyCode::Char('2'));
    let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    t.draw(|f| draw(f, &app)).expect("draw");
    let buffer = t.backend().buffer().clone();
    let s = rows(&buffer);
    assert!(
        s[2].contains("time") && s[2].contains("stopped at"),
        "{}",
        show(&s)
    );
    assert!(
        s[3].contains("404 route") && s[3].contains("no-route"),
        "{}",
        s[3]
    );
    assert!(s[4].contains("429 ratelimit   quota-exceeded"), "{}", s[4]);
    assert!(s[7].contains("200 → users-svc"), "{}", s[7]);
    // Newest first, the selected row reversed; colours by stage.
    assert!(buffer[(1, 3)].modifier.contains(Modifier::REVERSED));
    assert_eq!(buffer[(1, 3)].fg, stage_colour(Some(StageId::Route)));
    assert_eq!(buffer[(1, 4)].fg, Color::Yellow);
    assert_eq!(buffer[(1, 7)].fg, Color::Green);
    assert!(s[23].contains("Enter details"));
}

#[test]
fn enter_opens_the_whole_record_with_timings_identity_limit_and_upstream() {
    let mut app = mixed();
    press(&mut app, KeyCode::Char('2'));
    press(&mut app, KeyCode::Down);
    press(&mut app, KeyCode::Enter);
    let s = show(&screen(&app, 80, 24));
    for needle in [
        "Record req-8",
        "GET /api/v1/users/8 → 429",
        "stopped   ratelimit (quota-exceeded)",
        "identity  alice, tenant acme, api key",
        "limit     paid for alice: 7 left",
        "upstream  users-svc @ 127.0.0.1:9101",
        "time per stage",
        "authn               3.4µs",
        "forward                 —",
    ] {
        assert!(s.contains(needle), "{needle} missing:\n{s}");
    }
}

#[test]
fn the_latency_view_shows_quantiles_per_route_and_a_histogram() {
    let mut app = mixed();
    press(&mut app, KeyCode::Char('3'));
    let s = screen(&app, 80, 24);
    assert!(
        s[2].contains("p50 ms") && s[2].contains("p99 ms"),
        "{}",
        show(&s)
    );
    // Quantiles apart by who answered: the upstream's milliseconds, the gateway's microseconds.
    let expected = [
        "│route                     answered   count   p50 ms   p90 ms   p99 ms   max ms│",
        "│/api/v1/users/*           upstream       6     4.01     7.01     7.01     7.01│",
        "│/api/v1/users/*           gateway        3     0.09     0.09     0.09     0.09│",
        "│/api/*                    gateway        1     0.04     0.04     0.04     0.04│",
    ];
    assert_eq!(&s[2..6], expected, "\n{}", show(&s));
    assert!(s[7].contains("Histogram — /api/v1/users/*, answered by the upstream"));
    press(&mut app, KeyCode::Down);
    assert!(show(&screen(&app, 80, 24)).contains("answered by the gateway"));
}

#[test]
fn the_compare_view_shows_the_algorithms_side_by_side_with_their_charts() {
    let trace = crate::compare::Trace::from_events(
        "bursts",
        (0..300u64).map(|i| ((i / 30) * 1_000_000_000 + i % 30, "k", 1)),
    );
    let mut app = App::comparing(
        trace,
        crate::compare::CompareParams::new(
            gateway::ratelimit::Quota::per_second(10),
            Algorithm::ALL.to_vec(),
        ),
    );
    let s = screen(&app, 80, 24);
    let text = show(&s);
    assert!(s[1].starts_with("rate 10 per 1.00s  burst 10"), "{text}");
    assert!(
        s[2].contains("traffic: bursts — 300 arrivals, 1 keys"),
        "{text}"
    );
    assert!(
        s[3].starts_with("compared 300 arrivals: 10 per 1000 ms, burst 10"),
        "the view's own news, in the view: {text}"
    );
    assert!(s[5].contains("admitted") && s[5].contains("f.allow") && s[5].contains("f.deny"));
    for (row, name) in [
        (6, "token-bucket"),
        (8, "fixed-window"),
        (10, "sliding-window-counter"),
    ] {
        assert!(s[row].starts_with(&format!("│{name}")), "{}", s[row]);
    }
    assert!(
        s[6].contains("       100       200"),
        "10 of each burst of 30: {}",
        s[6]
    );
    assert!(text.contains("Admitted /s, all algorithms"));
    assert!(text.contains("token-bucket: admitted vs rejected"));
    press(&mut app, KeyCode::Char('R'));
    let s = screen(&app, 80, 24);
    assert!(s[1].starts_with("rate 12 per 1.00s  burst 12"), "{}", s[1]);
    // Not 120: T = ⌈1 s / 12⌉ rounds up, so a second refills a hair under 12 tokens.
    assert!(
        s[6].contains("       118       182"),
        "re-run at once: {}",
        s[6]
    );
    assert!(s[23].contains("r/R rate"));
    assert!(
        !s[23].contains("compared"),
        "not in the shared footer: {}",
        s[23]
    );
    press(&mut app, KeyCode::Char('1'));
    assert!(
        !show(&screen(&app, 80, 24)).contains("compared"),
        "the compare view's status stays in it"
    );
}

#[test]
fn help_lists_every_key_over_the_current_view() {
    let mut app = mixed();
    press(&mut app, KeyCode::Char('?'));
    let text = show(&screen(&app, 80, 24));
    for needle in [
        "Keys",
        "q, Ctrl-C",
        "Tab, Shift-Tab, 1-4",
        "↑ ↓, j k",
        "Enter",
        "p ",
        "/ ",
        "r R",
        "w W",
    ] {
        assert!(text.contains(needle), "{needle}:\n{text}");
    }
    assert!(text.contains("Pipeline"), "the view shows around the popup");
}

#[test]
fn the_filter_is_typed_in_the_footer_and_narrows_the_feed() {
    let mut app = mixed();
    press(&mut app, KeyCode::Char('/'));
    for c in "no-route".chars() {
        press(&mut app, KeyCode::Char(c));
    }
    let s = screen(&app, 80, 24);
    assert!(s[23].starts_with(" /  no-route▏"), "{}", s[23]);
    assert!(s[1].contains("matching “no-route”"));
    assert!(s[3].contains("no-route"));
    assert!(
        s[4].trim_matches(['│', ' ']).is_empty(),
        "one match: {}",
        s[4]
    );
}

#[test]
fn every_view_draws_at_any_size_and_adapts_when_resized() {
    let mut app = mixed();
    press(&mut app, KeyCode::Char('2'));
    press(&mut app, KeyCode::Enter);
    for view in ['1', '2', '3', '4'] {
        press(&mut app, KeyCode::Char(view));
        for (w, h) in [(80, 24), (120, 40), (40, 12), (20, 5), (1, 1)] {
            let s = screen(&app, w, h);
            assert_eq!(s.len(), usize::from(h));
        }
    }
    // The same terminal, resized: the frame fills the new size.
    let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
    t.draw(|f| draw(f, &app)).expect("draw");
    t.backend_mut().resize(120, 30);
    t.autoresize().expect("resize");
    t.draw(|f| draw(f, &app)).expect("draw");
    let s = rows(t.backend().buffer());
    assert_eq!((s.len(), s[0].chars().count()), (30, 120));
    assert!(s[0].ends_with("10 req  0/s"), "{}", s[0]);
    let _ = record;
}

#[test]
fn the_feed_at_80x24_shares_the_width_between_path_and_reason_and_never_cuts_a_method() {
    let mut app = mixed();
    app.ingest(preflight(20));
    press(&mut app, KeyCode::Char('2'));
    let s = screen(&app, 80, 24);
    let expected = [
        "┌ Requests, newest first ──────────────────────────────────────────────────────┐",
        "│time     method  path                  st  stopped at  reason         duration│",
        "│22:13:20 OPTIONS /api/v1/users/1       204 at gateway  cors-preflight   30.0µs│",
        "│22:13:20 GET     /api/v1/users/9       404 route       no-route         40.0µs│",
        "│22:13:20 GET     /api/v1/users/8       429 ratelimit   quota-exceeded   90.0µs│",
        "│22:13:20 GET     /api/v1/users/7       429 ratelimit   quota-exceeded   90.0µs│",
        "│22:13:20 GET     /api/v1/users/6       429 ratelimit   quota-exceeded   90.0µs│",
        "│22:13:20 GET     /api/v1/users/5       200 → users-svc                  7.00ms│",
    ];
    assert_eq!(&s[1..9], expected, "\n{}", show(&s));
    let buffer = {
        let mut t = Terminal::new(TestBackend::new(80, 24)).expect("terminal");
        t.draw(|f| draw(f, &app)).expect("draw");
        t.backend().buffer().clone()
    };
    assert_eq!(
        buffer[(1, 3)].fg,
        Color::Cyan,
        "a preflight: the gateway's own answer"
    );
}

#[test]
fn the_feed_at_200x60_gives_the_extra_width_to_path_and_reason() {
    let mut app = mixed();
    let mut long = (*record(
        30,
        Some("mutate_response"),
        Some("body-too-large-for-the-rewrite-rules"),
        "/api/*",
        1_000,
    ))
    .clone();
    long.path = "/api/v1/users/12345/orders/67890/items?expand=everything".into();
    long.method = http::Method::from_bytes(b"PROPFIND").expect("method");
    app.ingest(std::sync::Arc::new(long));
    press(&mut app, KeyCode::Char('2'));
    let s = screen(&app, 200, 60);
    assert_eq!(s.len(), 60);
    let newest = &s[3];
    for whole in [
        "PROPFIND",
        "/api/v1/users/12345/orders/67890/items?expand=everything",
        "mutate_response",
        "body-too-large-for-the-rewrite-rules",
    ] {
        assert!(newest.contains(whole), "{whole} cut: {newest}");
    }
    // At 80 columns the method and the stage still show whole; path and reason give way.
    let narrow = screen(&app, 80, 24);
    assert!(
        narrow[3].contains("PROPFIND") && narrow[3].contains("mutate_response"),
        "{}",
        narrow[3]
    );
    let header = &s[2];
    let path_at = header.find("path").expect("path");
    let reason_at = header.find("reason").expect("reason");
    let duration_at = header.find("duration").expect("duration");
    assert!(
        reason_at - path_at > 60,
        "the path gets the larger share: {header}"
    );
    assert!(
        duration_at - reason_at > 40,
        "the reason gets a share: {header}"
    );
}

#[test]
fn the_details_pane_keeps_its_fields_clear_of_the_timings_at_both_sizes() {
    let mut app = mixed();
    press(&mut app, KeyCode::Char('2'));
    press(&mut app, KeyCode::Enter);
    for (w, h) in [(80u16, 24u16), (200, 60)] {
        let s = screen(&app, w, h);
        let top = s
            .iter()
            .position(|l| l.contains("Record req-9"))
            .expect("details open");
        let timings_at = s[top + 1].find("time per stage").expect("timings column");
        let column = s[top + 1][..timings_at].chars().count();
        for line in &s[top + 1..h as usize - 2] {
            let chars: Vec<char> = line.chars().collect();
            assert!(
                chars[column - 2..column].iter().all(|c| *c == ' '),
                "{w}x{h}: a gap before the timings: {line}"
            );
        }
        let text = show(&s);
        assert!(
            text.contains("identity  alice, tenant acme, api key"),
            "{text}"
        );
        assert!(text.contains("authn               3.4µs"), "{text}");
    }
}

#[test]
fn latency_buckets_carry_their_unit_and_equal_widths_at_both_sizes() {
    let mut app = mixed();
    press(&mut app, KeyCode::Char('3'));
    for (w, h) in [(80u16, 24u16), (200, 60)] {
        let s = screen(&app, w, h);
        let labels = &s[h as usize - 3];
        let words: Vec<&str> = labels.trim_matches(['│', ' ']).split_whitespace().collect();
        assert_eq!(
            words,
            [
                "0.5ms", "1ms", "2ms", "5ms", "10ms", "20ms", "50ms", "100ms", "500ms", "1s", "5s",
                ">5s"
            ],
            "{w}x{h}: {labels}"
        );
        // Every bar drawn is five cells wide.
        let bars = &s[h as usize - 4];
        let runs: Vec<usize> = bars
            .split(|c: char| c != '█' && !c.is_ascii_digit())
            .filter(|r| !r.is_empty())
            .map(|r| r.chars().count())
            .collect();
        assert!(
            !runs.is_empty() && runs.iter().all(|n| *n == 5),
            "{w}x{h}: {bars}"
        );
    }
}

#[test]
fn help_lists_every_key_the_tui_answers_to() {
    let text: String = super::help::HELP
        .iter()
        .map(|(k, what)| format!("{k} {what}\n"))
        .collect();
    for key in [
        "q",
        "Ctrl-C",
        "?",
        "Tab",
        "Shift-Tab",
        "1-4",
        "↑ ↓",
        "j k",
        "g G",
        "Home End",
        "Enter",
        "Esc",
        "p",
        "/",
        "Backspace",
        "r R",
        "b B",
        "w W",
        "n",
        "c, Space",
    ] {
        assert!(text.contains(key), "{key} missing from the help:\n{text}");
    }
    let mut app = mixed();
    press(&mut app, KeyCode::Char('?'));
    for (w, h) in [(80u16, 24u16), (200, 60)] {
        let screen = show(&screen(&app, w, h));
        for (k, _) in super::help::HELP {
            assert!(screen.contains(k), "{w}x{h}: {k} not on screen:\n{screen}");
        }
    }
}

#[test]
fn every_view_at_200x60_fills_the_screen_with_its_panes() {
    let mut app = mixed();
    app.tick(1_000_000_000);
    let s = screen(&app, 200, 60);
    assert_eq!(s[0].chars().count(), 200);
    assert!(s[0].ends_with("10 req  10/s"), "{}", s[0]);
    assert!(s[59].starts_with("q quit ? help Tab views"), "{}", s[59]);
    assert!(
        s[14].starts_with("┌ Why requests stopped at tls"),
        "{}",
        show(&s)
    );
    assert!(
        s[58].starts_with("└") && s[58].ends_with("┘"),
        "the reasons pane reaches the footer"
    );
    press(&mut app, KeyCode::Char('4'));
    let s = show(&screen(&app, 200, 60));
    assert!(s.contains("Admitted /s, all algorithms"), "{s}");
}

#[test]
fn coinciding_algorithms_both_show_in_the_compare_chart() {
    // The token bucket and GCRA decide alike on any trace: both colours are in the chart.
    let trace = crate::compare::Trace::from_events(
        "bursts",
        (0..300u64).map(|i| ((i / 30) * 1_000_000_000 + i % 30, "k", 1)),
    );
    let app = App::comparing(
        trace,
        crate::compare::CompareParams::new(
            gateway::ratelimit::Quota::per_second(10),
            vec![Algorithm::TokenBucket, Algorithm::Gcra],
        ),
    );
    for (w, h) in [(80u16, 24u16), (200, 60)] {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        t.draw(|f| draw(f, &app)).expect("draw");
        let buffer = t.backend().buffer();
        let chart_top = rows(buffer)
            .iter()
            .position(|l| l.contains("Admitted /s, all algorithms"))
            .expect("chart") as u16;
        let colours: Vec<Color> = (chart_top + 1..h - 3)
            .flat_map(|y| (1..w / 2 - 8).map(move |x| (x, y)))
            .filter(|&(x, y)| !matches!(buffer[(x, y)].symbol(), " " | "│" | "─" | "└"))
            .map(|(x, y)| buffer[(x, y)].fg)
            .collect();
        for a in [Algorithm::TokenBucket, Algorithm::Gcra] {
            assert!(
                colours.contains(&super::algorithm_colour(a)),
                "{w}x{h}: {a} hidden"
            );
        }
    }
}

#[test]
fn the_changed_view_lists_before_and_after_and_its_tab_shows_only_when_comparing() {
    let mut app = mixed();
    assert!(!show(&screen(&app, 80, 24)).contains("Changed"));
    app.changed(crate::tui::app::ChangedRequest {
        id: "free-00042".into(),
        method: "GET".into(),
        path: "/api/v2/users/9".into(),
        before: "200 users-v2".into(),
        after: "404 route no-route".into(),
    });
    press(&mut app, KeyCode::Char('5'));
    let s = screen(&app, 80, 24);
    let text = show(&s);
    assert!(s[0].contains("5 Changed"), "{}", s[0]);
    assert!(text.contains("Changed requests: 1"), "{text}");
    assert!(text.contains("free-00042"), "{text}");
    assert!(text.contains("/api/v2/users/9"), "{text}");
    assert!(text.contains("→ 404 route"), "{text}");
    for (w, h) in [(120, 40), (40, 12), (20, 5), (1, 1)] {
        assert_eq!(screen(&app, w, h).len(), usize::from(h));
    }
}
