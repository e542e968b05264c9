//! Drawing the TUI: a pure function of [`App`] onto a ratatui frame — no input, no clock, no I/O,
//! so every view is tested against a `TestBackend` buffer. Laid out to be usable at 80×24.

use gateway::ratelimit::Algorithm;
use gateway::record::RequestRecord;
use gateway::vocab::StageId;
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols;
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{
    Axis, Bar, BarChart, BarGroup, Block, Borders, Cell, Chart, Clear, Dataset, GraphType,
    Paragraph, Row, Table, TableState, Tabs,
};

use super::app::{App, LabTraffic, View};

/// The colour of a request by where it stopped (`None`: the upstream answered).
pub fn stage_colour(stopped_at: Option<StageId>) -> Color {
    match stopped_at {
        None => Color::Green,
        Some(StageId::Tls) => Color::LightRed,
        Some(StageId::Authn) => Color::Magenta,
        Some(StageId::Authz) => Color::LightMagenta,
        Some(StageId::Ratelimit) => Color::Yellow,
        Some(StageId::Route) => Color::LightBlue,
        Some(StageId::MutateRequest) => Color::Cyan,
        Some(StageId::Forward) => Color::Red,
        Some(StageId::MutateResponse) => Color::LightCyan,
    }
}

/// One colour per algorithm (the same order as the report's plots).
pub fn algorithm_colour(algorithm: Algorithm) -> Color {
    match algorithm {
        Algorithm::TokenBucket => Color::Blue,
        Algorithm::Gcra => Color::Rgb(255, 127, 14),
        Algorithm::FixedWindow => Color::Green,
        Algorithm::SlidingLog => Color::Red,
        Algorithm::SlidingWindowCounter => Color::Magenta,
    }
}

/// `812ns`, `12.3µs`, `4.56ms`, `1.23s`.
pub fn duration(nanos: u64) -> String {
    match nanos {
        0..1_000 => format!("{nanos}ns"),
        1_000..1_000_000 => format!("{:.1}µs", nanos as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", nanos as f64 / 1e6),
        _ => format!("{:.2}s", nanos as f64 / 1e9),
    }
}

/// `HH:MM:SS.mmm` (UTC) of a record's arrival.
pub fn clock(unix_millis: u64) -> String {
    let ms = unix_millis % 1_000;
    let s = unix_millis / 1_000 % 86_400;
    format!("{:02}:{:02}:{:02}.{ms:03}", s / 3_600, s / 60 % 60, s % 60)
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    draw_header(frame, header, app);
    match app.view {
        View::Pipeline => draw_pipeline(frame, body, app),
        View::Feed => draw_feed(frame, body, app),
        View::Latency => draw_latency(frame, body, app),
        View::Compare => draw_compare(frame, body, app),
    }
    draw_footer(frame, footer, app);
    if app.show_help {
        draw_help(frame, frame.area());
    }
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App) {
    let titles: Vec<Line> = View::ALL
        .iter()
        .enumerate()
        .map(|(i, v)| Line::from(format!("{} {}", i + 1, v.title())))
        .collect();
    let selected = View::ALL.iter().position(|v| *v == app.view).unwrap_or(0);
    let tabs = Tabs::new(titles)
        .select(selected)
        .style(Style::default().fg(Color::Gray))
        .highlight_style(Style::default().fg(Color::Black).bg(Color::Cyan).bold())
        .divider("│")
        .padding(" ", " ");
    let mut right = format!("{} req  {:.0}/s", app.total, app.rate());
    if app.paused {
        right.push_str("  PAUSED");
    }
    let width = u16::try_from(right.chars().count() + 1).unwrap_or(u16::MAX);
    let [left, right_area] =
        Layout::horizontal([Constraint::Min(0), Constraint::Length(width)]).areas(area);
    frame.render_widget(tabs, left);
    let style = if app.paused {
        Style::default().fg(Color::Black).bg(Color::Yellow)
    } else {
        Style::default().fg(Color::Gray)
    };
    frame.render_widget(
        Paragraph::new(right)
            .style(style)
            .alignment(Alignment::Right),
        right_area,
    );
}

fn draw_footer(frame: &mut Frame, area: Rect, app: &App) {
    let line = if app.editing_filter {
        Line::from(vec![
            Span::styled(" / ", Style::default().fg(Color::Black).bg(Color::Yellow)),
            Span::raw(format!(" {}▏ ", app.filter)),
            Span::styled(
                "Enter keep · Esc clear",
                Style::default().fg(Color::DarkGray),
            ),
        ])
    } else {
        let mut hints = vec![
            key("q"),
            Span::raw(" quit "),
            key("?"),
            Span::raw(" help "),
            key("Tab"),
            Span::raw(" views "),
        ];
        match app.view {
            View::Feed => hints.extend([
                key("↑↓"),
                Span::raw(" select "),
                key("Enter"),
                Span::raw(" details "),
                key("p"),
                Span::raw(" pause "),
                key("/"),
                Span::raw(" filter "),
            ]),
            View::Compare => hints.extend([
                key("r/R"),
                Span::raw(" rate "),
                key("b/B"),
                Span::raw(" burst "),
                key("w/W"),
                Span::raw(" window "),
                key("c"),
                Span::raw(" re-run "),
            ]),
            View::Pipeline | View::Latency => hints.extend([
                key("↑↓"),
                Span::raw(" select "),
                key("p"),
                Span::raw(" pause "),
                key("/"),
                Span::raw(" filter "),
            ]),
        }
        let mut notes = Vec::new();
        if !app.filter.is_empty() {
            notes.push(format!("filter: {}", app.filter));
        }
        if app.paused && app.held > 0 {
            notes.push(format!("{} held", app.held));
        }
        if app.lost > 0 {
            notes.push(format!("{} lost", app.lost));
        }
        if !app.status.is_empty() {
            notes.push(app.status.clone());
        }
        if !notes.is_empty() {
            hints.push(Span::styled(
                format!(" {}", notes.join(" · ")),
                Style::default().fg(Color::DarkGray),
            ));
        }
        Line::from(hints)
    };
    frame.render_widget(Paragraph::new(line), area);
}

fn key(k: &str) -> Span<'_> {
    Span::styled(k, Style::default().fg(Color::Cyan).bold())
}

fn block(title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(Color::DarkGray))
        .title(Span::styled(
            format!(" {title} "),
            Style::default().add_modifier(Modifier::BOLD),
        ))
}

fn bar(share: f64, width: usize) -> String {
    let cells = (share.clamp(0.0, 1.0) * width as f64).round() as usize;
    "█".repeat(cells)
}

fn draw_pipeline(frame: &mut Frame, area: Rect, app: &App) {
    let [chain_area, reasons_area] =
        Layout::vertical([Constraint::Length(12), Constraint::Min(3)]).areas(area);
    let total = app.total.max(1) as f64;
    let bar_width = usize::from(chain_area.width.saturating_sub(2 + 19 + 9 + 7 + 9 + 4)).max(1);
    let mut rows: Vec<Row> = StageId::ALL
        .iter()
        .enumerate()
        .map(|(i, stage)| {
            let stops = &app.stops[stage.index()];
            let glyph = if i == 0 { "┌" } else { "│" };
            let style = if stops.total > 0 {
                Style::default().fg(stage_colour(Some(*stage)))
            } else {
                Style::default().fg(Color::DarkGray)
            };
            Row::new(vec![
                Cell::from(format!("{glyph} {}", stage.as_str())),
                Cell::from(format!("{:>8}", stops.total)),
                Cell::from(format!("{:>5.1}%", stops.total as f64 * 100.0 / total)),
                Cell::from(format!("{:>7.1}", app.stage_rate(*stage))),
                Cell::from(bar(stops.total as f64 / total, bar_width)),
            ])
            .style(style)
        })
        .collect();
    rows.push(
        Row::new(vec![
            Cell::from("└ upstream answered"),
            Cell::from(format!("{:>8}", app.passed)),
            Cell::from(format!("{:>5.1}%", app.passed as f64 * 100.0 / total)),
            Cell::from(format!("{:>7.1}", app.passed_rate())),
            Cell::from(bar(app.passed as f64 / total, bar_width)),
        ])
        .style(Style::default().fg(stage_colour(None))),
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(19),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Min(1),
        ],
    )
    .header(
        Row::new(["stage", " stopped", " share", "    /s", ""])
            .style(Style::default().fg(Color::Gray).bold()),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(block("Pipeline — where requests stopped, in stage order"));
    let mut state = TableState::default().with_selected(Some(app.selected.min(8)));
    frame.render_stateful_widget(table, chain_area, &mut state);

    // Why the highlighted stage stopped requests.
    let (title, lines): (String, Vec<Line>) = match StageId::ALL.get(app.selected) {
        Some(stage) => {
            let stops = &app.stops[stage.index()];
            let mut reasons = stops.reasons.clone();
            reasons.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            let lines = if reasons.is_empty() {
                vec![Line::from(Span::styled(
                    "no request stopped here",
                    Style::default().fg(Color::DarkGray),
                ))]
            } else {
                reasons
                    .iter()
                    .map(|(reason, n)| {
                        Line::from(vec![
                            Span::styled(
                                format!("{n:>8}  "),
                                Style::default().fg(stage_colour(Some(*stage))),
                            ),
                            Span::raw(reason.clone()),
                        ])
                    })
                    .collect()
            };
            (format!("Why requests stopped at {}", stage.as_str()), lines)
        }
        None => (
            "Answered by the upstream".into(),
            vec![Line::from(format!("{:>8}  passed every stage", app.passed))],
        ),
    };
    frame.render_widget(Paragraph::new(lines).block(block(&title)), reasons_area);
}

fn feed_row(r: &RequestRecord) -> Row<'static> {
    let where_ = match (r.stopped_at, &r.upstream) {
        (Some(stage), _) => stage.as_str().to_owned(),
        (None, Some(upstream)) => format!("→ {upstream}"),
        (None, None) => "passed".to_owned(),
    };
    Row::new(vec![
        Cell::from(clock(r.unix_millis)[..8].to_owned()),
        Cell::from(r.method.clone()),
        Cell::from(r.path.clone()),
        Cell::from(r.status.to_string()),
        Cell::from(where_),
        Cell::from(r.reason.as_deref().unwrap_or("").to_owned()),
        Cell::from(format!("{:>8}", duration(r.duration_ns))),
    ])
    .style(Style::default().fg(stage_colour(r.stopped_at)))
}

fn draw_feed(frame: &mut Frame, area: Rect, app: &App) {
    let (list_area, detail_area) = match &app.pinned {
        Some(_) => {
            let [list, detail] =
                Layout::vertical([Constraint::Min(6), Constraint::Length(15)]).areas(area);
            (list, Some(detail))
        }
        None => (area, None),
    };
    // Only the rows that can show are built (the feed may hold thousands).
    let visible = usize::from(list_area.height.saturating_sub(3));
    let skip = app.selected.saturating_sub(visible.saturating_sub(1));
    let rows: Vec<Row> = app
        .feed()
        .skip(skip)
        .take(visible)
        .map(|r| feed_row(r))
        .collect();
    let matches = if app.filter.is_empty() {
        String::new()
    } else {
        format!(" matching “{}”", app.filter)
    };
    let title = format!(
        "Requests, newest first{matches}{}",
        if app.paused { " — paused" } else { "" }
    );
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Min(10),
            Constraint::Length(3),
            Constraint::Length(14),
            Constraint::Length(16),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new([
            "time",
            "method",
            "path",
            "st",
            "stopped at",
            "reason",
            "duration",
        ])
        .style(Style::default().fg(Color::Gray).bold()),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(block(&title));
    let mut state = TableState::default().with_selected(Some(app.selected - skip));
    frame.render_stateful_widget(table, list_area, &mut state);
    if let (Some(record), Some(area)) = (&app.pinned, detail_area) {
        draw_detail(frame, area, record);
    }
}

fn field<'a>(name: &'a str, value: String) -> Line<'a> {
    Line::from(vec![
        Span::styled(format!("{name:<10}"), Style::default().fg(Color::Gray)),
        Span::raw(value),
    ])
}

fn draw_detail(frame: &mut Frame, area: Rect, r: &RequestRecord) {
    let outer = block(&format!("Record {}", r.request_id));
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(inner);
    let stop = match r.stopped_at {
        Some(stage) => format!(
            "{} ({})",
            stage.as_str(),
            r.reason.as_deref().unwrap_or("-")
        ),
        None => "— answered by the upstream".to_owned(),
    };
    let identity = r.identity.as_ref().map_or("anonymous".to_owned(), |i| {
        let mut parts = vec![i.subject.clone()];
        if let Some(t) = &i.tenant {
            parts.push(format!("tenant {t}"));
        }
        if let Some(k) = &i.key_id {
            parts.push(format!("key {k}"));
        }
        if let Some(t) = &i.tier {
            parts.push(format!("tier {t}"));
        }
        parts.join(", ")
    });
    let limit = r.limit.as_ref().map_or("no limit applied".to_owned(), |l| {
        let mut s = format!("{} for {}: {} left", l.policy, l.subject, l.remaining);
        if let Some(retry) = l.retry_after_secs {
            s.push_str(&format!(", retry after {retry} s"));
        }
        if l.store_fallback {
            s.push_str(" (store down: fallback)");
        }
        s
    });
    let upstream = match (&r.upstream, r.upstream_instance) {
        (Some(u), Some(i)) => format!("{u} @ {i}"),
        (Some(u), None) => u.to_string(),
        _ => "-".to_owned(),
    };
    let mut lines = vec![
        Line::from(vec![Span::styled(
            format!("{} {} → {}", r.method, r.path, r.status),
            Style::default().bold(),
        )]),
        field("stopped", stop).style(Style::default().fg(stage_colour(r.stopped_at))),
        field(
            "route",
            format!(
                "{} {}",
                r.route.as_deref().unwrap_or("-"),
                r.route_template.as_deref().unwrap_or("")
            ),
        ),
        field("identity", identity),
        field("limit", limit),
        field("upstream", upstream),
        field(
            "up. path",
            r.upstream_path.clone().unwrap_or_else(|| "-".into()),
        ),
        field("peer", r.peer.to_string()),
        field(
            "time",
            format!(
                "{} UTC, {} total",
                clock(r.unix_millis),
                duration(r.duration_ns)
            ),
        ),
        field(
            "bytes",
            format!(
                "{} in, {} out{}",
                r.bytes_in,
                r.bytes_out,
                if r.completed { "" } else { ", incomplete" }
            ),
        ),
        field("trace", r.trace_id.clone()),
    ];
    if r.retries > 0 {
        lines.push(field("retries", r.retries.to_string()));
    }
    frame.render_widget(Paragraph::new(lines), left);

    let slowest = StageId::ALL
        .iter()
        .filter_map(|s| r.stage_ns.get(*s))
        .max()
        .unwrap_or(0)
        .max(1);
    let width = usize::from(right.width.saturating_sub(27)).max(1);
    let mut timings = vec![Line::from(Span::styled(
        "time per stage",
        Style::default().fg(Color::Gray),
    ))];
    for stage in StageId::ALL {
        let line = match r.stage_ns.get(stage) {
            Some(ns) => {
                let style = if r.stopped_at == Some(stage) {
                    Style::default().fg(stage_colour(Some(stage))).bold()
                } else {
                    Style::default()
                };
                Line::from(vec![
                    Span::styled(format!("{:<16}", stage.as_str()), style),
                    Span::raw(format!("{:>9} ", duration(ns))),
                    Span::styled(
                        bar(ns as f64 / slowest as f64, width),
                        Style::default().fg(Color::Cyan),
                    ),
                ])
            }
            None => Line::from(Span::styled(
                format!("{:<16}{:>9}", stage.as_str(), "—"),
                Style::default().fg(Color::DarkGray),
            )),
        };
        timings.push(line);
    }
    frame.render_widget(Paragraph::new(timings), right);
}

/// Histogram buckets in µs: upper bounds.
const BUCKETS: [(u64, &str); 12] = [
    (500, "<.5m"),
    (1_000, "1ms"),
    (2_000, "2ms"),
    (5_000, "5ms"),
    (10_000, "10m"),
    (20_000, "20m"),
    (50_000, "50m"),
    (100_000, ".1s"),
    (500_000, ".5s"),
    (1_000_000, "1s"),
    (5_000_000, "5s"),
    (u64::MAX, ">5s"),
];

fn draw_latency(frame: &mut Frame, area: Rect, app: &App) {
    let routes = app.routes();
    let table_height = u16::try_from(routes.len().min(8) + 3).unwrap_or(11).max(4);
    let [table_area, histogram_area] =
        Layout::vertical([Constraint::Length(table_height), Constraint::Min(5)]).areas(area);
    let ms = |us: u64| format!("{:>8.2}", us as f64 / 1e3);
    let rows: Vec<Row> = routes
        .iter()
        .map(|r| {
            let h = &r.histogram;
            Row::new(vec![
                Cell::from(r.route.to_string()),
                Cell::from(format!("{:>7}", h.len())),
                Cell::from(ms(h.value_at_quantile(0.5))),
                Cell::from(ms(h.value_at_quantile(0.9))),
                Cell::from(ms(h.value_at_quantile(0.99))),
                Cell::from(ms(h.max())),
            ])
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Min(16),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new([
            "route", "  count", "  p50 ms", "  p90 ms", "  p99 ms", "  max ms",
        ])
        .style(Style::default().fg(Color::Gray).bold()),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(block("Latency per route (arrival to last byte)"));
    let mut state = TableState::default().with_selected(
        (!routes.is_empty()).then_some(app.selected.min(routes.len().saturating_sub(1))),
    );
    frame.render_stateful_widget(table, table_area, &mut state);

    let Some(route) = routes.get(app.selected.min(routes.len().saturating_sub(1))) else {
        frame.render_widget(
            Paragraph::new("no requests yet").block(block("Histogram")),
            histogram_area,
        );
        return;
    };
    let mut low = 0u64;
    let bars: Vec<Bar> = BUCKETS
        .iter()
        .map(|&(high, label)| {
            let n = route
                .histogram
                .iter_recorded()
                .filter(|v| v.value_iterated_to() >= low && v.value_iterated_to() < high)
                .map(|v| v.count_since_last_iteration())
                .sum::<u64>();
            low = high;
            Bar::default()
                .value(n)
                .label(Line::from(label))
                .style(Style::default().fg(Color::Cyan))
        })
        .collect();
    let width = histogram_area.width.saturating_sub(2);
    let bar_width = (width / BUCKETS.len() as u16).saturating_sub(1).clamp(1, 6);
    let chart = BarChart::default()
        .block(block(&format!("Histogram — {}", route.route)))
        .data(BarGroup::default().bars(&bars))
        .bar_width(bar_width)
        .bar_gap(1)
        .value_style(Style::default().fg(Color::Black).bg(Color::Cyan));
    frame.render_widget(chart, histogram_area);
}

fn draw_compare(frame: &mut Frame, area: Rect, app: &App) {
    let lab = &app.lab;
    let rows_needed = u16::try_from(lab.params.algorithms.len()).unwrap_or(5) + 3;
    let [info, table_area, charts] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(rows_needed),
        Constraint::Min(4),
    ])
    .areas(area);
    let q = lab.params.quota;
    let traffic = match &lab.traffic {
        LabTraffic::Fixed(t) => t.source.clone(),
        LabTraffic::Live(_) => "the live traffic so far".to_owned(),
    };
    let summary = lab.result.as_ref().map_or(String::new(), |c| {
        format!(
            " — {} arrivals, {} keys, {:.1} s",
            c.trace.arrivals,
            c.trace.keys,
            c.trace.span_ms / 1e3
        )
    });
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled("rate ", Style::default().fg(Color::Gray)),
                Span::styled(format!("{}", q.limit), Style::default().bold()),
                Span::styled(" per ", Style::default().fg(Color::Gray)),
                Span::styled(duration(q.period()), Style::default().bold()),
                Span::styled("  burst ", Style::default().fg(Color::Gray)),
                Span::styled(format!("{}", q.burst), Style::default().bold()),
                Span::styled(
                    "  (same for all; windows admit the rate at once)",
                    Style::default().fg(Color::DarkGray),
                ),
            ]),
            Line::from(Span::styled(
                format!("traffic: {traffic}{summary}"),
                Style::default().fg(Color::Gray),
            )),
        ]),
        info,
    );
    let Some(c) = &lab.result else {
        frame.render_widget(
            Paragraph::new("press c to compare").block(block("Compare")),
            table_area,
        );
        return;
    };
    let rows: Vec<Row> = c
        .results
        .iter()
        .map(|r| {
            Row::new(vec![
                Cell::from(r.algorithm.as_str()),
                Cell::from(format!("{:>9}", r.admitted)),
                Cell::from(format!("{:>9}", r.rejected)),
                Cell::from(format!("{:>8}", r.false_allows)),
                Cell::from(format!("{:>8}", r.false_denies)),
                Cell::from(format!("{:>6}", r.largest_burst)),
                Cell::from(format!("{:>8.0}", r.recovery.retry_after_max_ms)),
            ])
            .style(Style::default().fg(algorithm_colour(r.algorithm)))
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(22),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(6),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new([
            "algorithm",
            " admitted",
            " rejected",
            " f.allow",
            "  f.deny",
            " burst",
            "recov ms",
        ])
        .style(Style::default().fg(Color::Gray).bold()),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(block(
        "Algorithms on the same arrivals (false: against the exact sliding log)",
    ));
    let mut state = TableState::default()
        .with_selected(Some(app.selected.min(c.results.len().saturating_sub(1))));
    frame.render_stateful_widget(table, table_area, &mut state);

    let [left, right] =
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(charts);
    let per_sec = 1000.0 / c.bin_ms.max(f64::MIN_POSITIVE);
    let series = |bins: &[u64]| -> Vec<(f64, f64)> {
        bins.iter()
            .enumerate()
            .map(|(i, n)| ((i as f64 + 0.5) * c.bin_ms / 1e3, *n as f64 * per_sec))
            .collect()
    };
    let admitted: Vec<(Algorithm, Vec<(f64, f64)>)> = c
        .results
        .iter()
        .map(|r| (r.algorithm, series(&r.admitted_per_bin)))
        .collect();
    let x_max = (c.offered_per_bin.len() as f64 * c.bin_ms / 1e3).max(1e-3);
    let y_max = |sets: &[&[(f64, f64)]]| {
        sets.iter()
            .flat_map(|s| s.iter().map(|p| p.1))
            .fold(1.0f64, f64::max)
            * 1.1
    };
    let all: Vec<&[(f64, f64)]> = admitted.iter().map(|(_, s)| s.as_slice()).collect();
    let top = y_max(&all);
    let datasets: Vec<Dataset> = admitted
        .iter()
        .map(|(a, points)| {
            Dataset::default()
                .name(short(*a))
                .marker(symbols::Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::default().fg(algorithm_colour(*a)))
                .data(points)
        })
        .collect();
    frame.render_widget(
        chart(datasets, "Admitted /s, all algorithms", x_max, top),
        left,
    );

    let chosen = &c.results[app.selected.min(c.results.len().saturating_sub(1))];
    let ok = series(&chosen.admitted_per_bin);
    let refused = series(&chosen.rejected_per_bin);
    let top = y_max(&[&ok, &refused]);
    let datasets = vec![
        Dataset::default()
            .name("admitted")
            .marker(symbols::Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Green))
            .data(&ok),
        Dataset::default()
            .name("rejected")
            .marker(symbols::Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::default().fg(Color::Red))
            .data(&refused),
    ];
    frame.render_widget(
        chart(
            datasets,
            &format!("{}: admitted vs rejected /s", chosen.algorithm.as_str()),
            x_max,
            top,
        ),
        right,
    );
}

fn short(a: Algorithm) -> &'static str {
    match a {
        Algorithm::TokenBucket => "bucket",
        Algorithm::Gcra => "gcra",
        Algorithm::FixedWindow => "fixed",
        Algorithm::SlidingLog => "log",
        Algorithm::SlidingWindowCounter => "counter",
    }
}

fn chart<'a>(datasets: Vec<Dataset<'a>>, title: &'a str, x_max: f64, y_max: f64) -> Chart<'a> {
    Chart::new(datasets)
        .block(block(title))
        .x_axis(
            Axis::default()
                .bounds([0.0, x_max])
                .labels(["0".to_owned(), format!("{x_max:.0}s")])
                .style(Style::default().fg(Color::DarkGray)),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, y_max])
                .labels(["0".to_owned(), compact(y_max)])
                .style(Style::default().fg(Color::DarkGray)),
        )
        .legend_position(Some(ratatui::widgets::LegendPosition::TopRight))
        .hidden_legend_constraints((Constraint::Percentage(60), Constraint::Percentage(60)))
}

/// `950`, `11k`, `2.5M`: an axis label that fits four cells.
fn compact(n: f64) -> String {
    match n {
        n if n < 1e4 => format!("{n:.0}"),
        n if n < 1e6 => format!("{:.0}k", n / 1e3),
        n => format!("{:.1}M", n / 1e6),
    }
}

const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("?", "this help (any key closes it)"),
    ("Tab, Shift-Tab, 1-4", "switch view"),
    ("↑ ↓, j k, g G", "select"),
    (
        "Enter",
        "details of the record (Requests); re-run (Compare)",
    ),
    ("Esc", "close the details"),
    ("p", "pause the feed (counting goes on)"),
    ("/", "filter the feed (path, status, stage, reason…)"),
    ("r R", "Compare: rate down / up"),
    ("b B", "Compare: burst down / up"),
    ("w W", "Compare: window halved / doubled"),
    ("c", "Compare: re-run on the traffic so far"),
];

fn draw_help(frame: &mut Frame, area: Rect) {
    let width = area.width.min(76);
    let height = area.height.min(u16::try_from(HELP.len()).unwrap_or(12) + 4);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<22}"), Style::default().fg(Color::Cyan).bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(Text::from(lines))
            .block(block("Keys").border_style(Style::default().fg(Color::Cyan))),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::Buffer;
    use ratatui::crossterm::event::KeyCode;

    use super::*;
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
            "identity  alice, tenant acme, key key-2",
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
}
