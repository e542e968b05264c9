//! The Requests view: the newest records, each coloured by where it stopped, and the whole of
//! one record when it is opened — the place to see why one particular request ended as it did.

use gateway::record::RequestRecord;
use gateway::vocab::StageId;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};

use super::style::{bar, block, clock, duration, stage_colour};
use crate::tui::app::{Answered, App, answered};

/// Where a record ended, as the feed's "stopped at" column says it.
fn where_it_ended(r: &RequestRecord) -> String {
    match (r.stopped_at, answered(r), &r.upstream) {
        (Some(stage), _, _) => stage.as_str().to_owned(),
        (None, Answered::Upstream, Some(upstream)) => format!("→ {upstream}"),
        _ => "at gateway".to_owned(),
    }
}

fn feed_row(r: &RequestRecord) -> Row<'static> {
    let where_ = where_it_ended(r);
    let colour = match answered(r) {
        Answered::Gateway if r.stopped_at.is_none() => Color::Cyan,
        _ => stage_colour(r.stopped_at),
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
    .style(Style::default().fg(colour))
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
    let shown: Vec<&RequestRecord> = app.feed().skip(skip).take(visible).map(|r| &**r).collect();
    // The method and stop columns are as wide as what they show (never cut: `OPTIONS`,
    // `mutate_response`); path and reason share what is left, the path more.
    let fit = |header: &str, cells: &mut dyn Iterator<Item = usize>| {
        u16::try_from(cells.max().unwrap_or(0).max(header.len())).unwrap_or(u16::MAX)
    };
    let method_width = fit("method", &mut shown.iter().map(|r| r.method.as_str().len()));
    let where_width = fit(
        "stopped at",
        &mut shown.iter().map(|r| where_it_ended(r).chars().count()),
    );
    let rows: Vec<Row> = shown.iter().map(|r| feed_row(r)).collect();
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
            Constraint::Length(method_width),
            Constraint::Fill(3),
            Constraint::Length(3),
            Constraint::Length(where_width),
            Constraint::Fill(2),
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

/// The timings column: a stage name (16), a duration (10) and a bar of 8.
const TIMINGS_WIDTH: u16 = 34;

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
    // The timings need a fixed width (stage name, duration, a short bar); the fields take the
    // rest and wrap inside it, with a gap so the two columns never touch.
    let [left, right] =
        Layout::horizontal([Constraint::Fill(1), Constraint::Length(TIMINGS_WIDTH)])
            .spacing(2)
            .areas(inner);
    let stop = match r.stopped_at {
        Some(stage) => format!(
            "{} ({})",
            stage.as_str(),
            r.reason.as_deref().unwrap_or("-")
        ),
        None => match answered(r) {
            Answered::Upstream => "— answered by the upstream".to_owned(),
            Answered::Gateway => format!(
                "— answered at the gateway ({})",
                r.reason.as_deref().unwrap_or("-")
            ),
        },
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
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), left);

    let slowest = StageId::ALL
        .iter()
        .filter_map(|s| r.stage_ns.get(*s))
        .max()
        .unwrap_or(0)
        .max(1);
    let width = usize::from(right.width.saturating_sub(26)).max(1);
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
