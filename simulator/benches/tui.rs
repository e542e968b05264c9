//! Can the TUI keep up with 20,000 records per second while redrawing 10 times a second? One
//! iteration is one frame's worth of work at that rate: 2,000 records ingested (counts, rates,
//! latency histograms, the feed, the live-compare log) and one full draw of a view into a
//! ratatui `TestBackend` (the same drawing code the terminal uses, without the terminal's
//! write). Under 100 ms per iteration keeps up; the margin is how much slower a machine may be.
//!
//! `cargo bench -p simulator --bench tui -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gateway::record::RequestRecord;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use simulator::tui::app::App;
use simulator::tui::ui;

/// Records per frame at 20,000/s and 10 frames/s.
const PER_FRAME: usize = 2_000;

fn records() -> Vec<Arc<RequestRecord>> {
    let stops = [
        (None, None, "/api/v1/users/*"),
        (Some("ratelimit"), Some("quota-exceeded"), "/api/v1/users/*"),
        (Some("authn"), Some("missing-credentials"), "/api/admin/*"),
        (Some("route"), Some("catch-all"), "/api/*"),
        (
            Some("forward"),
            Some("upstream-unreachable"),
            "/api/payments/*",
        ),
    ];
    (0..PER_FRAME * 10)
        .map(|i| {
            let (stopped_at, reason, route) = stops[i % stops.len()];
            let value = serde_json::json!({
                "request_id": format!("bench-{i}"),
                "trace_id": "0af7651916cd43dd8448eb211c80319c",
                "unix_millis": 1_700_000_000_000u64 + i as u64 / 20,
                "peer": "127.0.0.1:40000",
                "method": "GET",
                "path": format!("/api/v1/users/{i}"),
                "route": "users-v1",
                "route_template": route,
                "status": if stopped_at.is_some() { 429 } else { 200 },
                "stopped_at": stopped_at,
                "reason": reason,
                "stage_ns": {"tls": 900, "authn": 4_000, "authz": 300, "ratelimit": 700, "route": 400},
                "duration_ns": 1_000_000 + (i as u64 * 7_919) % 20_000_000,
                "identity": {"subject": format!("user-{}", i % 500), "api_key_id": format!("key-{}", i % 500)},
                "bytes_in": 0,
                "bytes_out": 256,
                "completed": true,
            });
            Arc::new(serde_json::from_value(value).expect("a record"))
        })
        .collect()
}

fn key(c: char) -> KeyEvent {
    KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE)
}

fn frame(c: &mut Criterion) {
    let records = records();
    let mut group = c.benchmark_group("tui");
    group.throughput(Throughput::Elements(PER_FRAME as u64));
    for (view, size) in [
        ('1', (80, 24)),
        ('2', (80, 24)),
        ('3', (80, 24)),
        ('2', (200, 60)),
    ] {
        let mut app = App::live("bench");
        app.on_key(key(view));
        let mut terminal = Terminal::new(TestBackend::new(size.0, size.1)).expect("terminal");
        let mut next = 0usize;
        let mut now = 0u64;
        let name = format!("2000 records + draw/view {view} at {}x{}", size.0, size.1);
        group.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..PER_FRAME {
                    app.ingest(records[next % records.len()].clone());
                    next += 1;
                }
                now += 100_000_000;
                app.tick(now);
                terminal
                    .draw(|f| ui::draw(f, black_box(&app)))
                    .expect("draw");
            })
        });
    }
    group.finish();
}

criterion_group!(benches, frame);
criterion_main!(benches);
