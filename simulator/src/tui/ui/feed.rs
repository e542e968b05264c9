//! The Requests view: the newest records, each coloured by where it stopped, and the whole of
//! one record when it is opened — the place to see why one particular request ended as it did.

use gateway::record::RequestRecord;
use gateway::vocab::StageId;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::style::{bar, block, clock, duration, stage_colour};
use crate::tui::app::App;

fn feed_row(r: &RequestRecord) -> Row<'static> {
    let where_ = match (r.stopped_at, &r.upstream) {
        (Some(stage), _) => stage.as_str().to_owned(),
        (None, Some(upstream)) => format!("→ {upstream}"),
        (None, None) => "passed".to_owned(),
    };
    Row::new(vec![
        Cell::from(clock(r.unix_millis)[..8].to_owned()),
        Cell::from(r.method.to_string()),
        Cell::from(r.path.clone()),
        Cell::from(r.status.to_string()),
        Cell::from(where_),
        Cell::from(r.reason.as_deref().unwrap_or("").to_owned()),
        Cell::from(format!("{:>8}", duration(r.duration_ns))),
    ])
    .style(Style::default().fg(stage_colour(r.stopped_at)))
}

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
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
        if let Some(k) = &i.api_key_id {
            parts.push(format!("api key {k}"));
        }
        if let Some(k) = &i.signing_key_id {
            parts.push(format!("signed by {k}"));
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
