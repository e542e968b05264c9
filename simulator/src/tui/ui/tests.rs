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
use crate::tui::app::tests::{mixed, press, record};

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
    assert_eq!(buffer[(3, 11)].fg, Color::Green);
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
    assert!(s[4].contains("429 ratelimit") && s[4].contains("quota-exceeded"));
    assert!(s[7].contains("200 → users-svc"));
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
        "identity  alice, tenant acme, api key key-2",
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
    assert!(s[3].starts_with("│/api/v1/users/*"), "{}", s[3]);
    assert!(
        s[3].contains("      9     3.01     7.01     7.01     7.01"),
        "{}",
        s[3]
    );
    assert!(s[4].contains("/api/*"));
    assert!(s[6].contains("Histogram — /api/v1/users/*"));
    assert!(show(&s).contains("<.5m   1ms   2ms   5ms"));
    press(&mut app, KeyCode::Down);
    assert!(show(&screen(&app, 80, 24)).contains("Histogram — /api/*"));
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
    assert!(s[4].contains("admitted") && s[4].contains("f.allow") && s[4].contains("f.deny"));
    for (row, name) in [
        (5, "token-bucket"),
        (7, "fixed-window"),
        (9, "sliding-window-counter"),
    ] {
        assert!(s[row].starts_with(&format!("│{name}")), "{}", s[row]);
    }
    assert!(
        s[5].contains("       100       200"),
        "10 of each burst of 30: {}",
        s[5]
    );
    assert!(text.contains("Admitted /s, all algorithms"));
    assert!(text.contains("token-bucket: admitted vs rejected"));
    press(&mut app, KeyCode::Char('R'));
    let s = screen(&app, 80, 24);
    assert!(s[1].starts_with("rate 12 per 1.00s  burst 12"), "{}", s[1]);
    // Not 120: T = ⌈1 s / 12⌉ rounds up, so a second refills a hair under 12 tokens.
    assert!(
        s[5].contains("       118       182"),
        "re-run at once: {}",
        s[5]
    );
    assert!(s[23].contains("r/R rate"));
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
