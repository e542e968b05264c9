//! The Pipeline view: the chain of stages in order, how many requests each stopped and how fast,
//! and why the highlighted one stopped them — the first question about a gateway is where its
//! requests end.

use gateway::vocab::StageId;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::style::{bar, block, stage_colour};
use crate::tui::app::{App, PIPELINE_ROWS};

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let [chain_area, reasons_area] = Layout::vertical([
        Constraint::Length(u16::try_from(PIPELINE_ROWS).unwrap_or(10) + 3),
        Constraint::Min(3),
    ])
    .areas(area);
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
            Cell::from("├ gateway answered"),
            Cell::from(format!("{:>8}", app.answered_here.total)),
            Cell::from(format!(
                "{:>5.1}%",
                app.answered_here.total as f64 * 100.0 / total
            )),
            Cell::from(format!("{:>7.1}", app.answered_here_rate())),
            Cell::from(bar(app.answered_here.total as f64 / total, bar_width)),
        ])
        .style(if app.answered_here.total > 0 {
            Style::default().fg(Color::Cyan)
        } else {
            Style::default().fg(Color::DarkGray)
        }),
    );
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
    let mut state = TableState::default().with_selected(Some(app.selected.min(PIPELINE_ROWS - 1)));
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
        None if app.selected == StageId::ALL.len() => {
            let lines = if app.answered_here.reasons.is_empty() {
                vec![Line::from(Span::styled(
                    "none: every request stopped at a stage or reached an upstream",
                    Style::default().fg(Color::DarkGray),
                ))]
            } else {
                app.answered_here
                    .reasons
                    .iter()
                    .map(|(reason, n)| Line::from(format!("{n:>8}  {reason}")))
                    .collect()
            };
            (
                "Answered at the gateway without a stop (CORS preflights)".into(),
                lines,
            )
        }
        None => {
            let mut lines = vec![Line::from(format!(
                "{:>8}  passed every stage; the upstream's status:",
                app.passed
            ))];
            for (i, n) in app.upstream_classes.iter().enumerate() {
                if *n > 0 || i == 1 {
                    let style = match i {
                        0 | 1 => Style::default().fg(Color::Green),
                        2 => Style::default().fg(Color::Cyan),
                        3 => Style::default().fg(Color::Yellow),
                        _ => Style::default().fg(Color::Red),
                    };
                    lines.push(Line::from(vec![
                        Span::styled(format!("{n:>8}  "), style),
                        Span::raw(format!("{}xx", i + 1)),
                    ]));
                }
            }
            ("Answered by the upstream".into(), lines)
        }
    };
    frame.render_widget(Paragraph::new(lines).block(block(&title)), reasons_area);
}
