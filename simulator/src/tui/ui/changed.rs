//! The Changed view of `replay --against --tui`: the requests the candidate config decides
//! differently from the baseline, newest first — id, method, path, and the decision before and
//! after — as the replay finds them.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::widgets::{Cell, Row, Table, TableState};

use super::style::block;
use crate::tui::app::App;

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let total = app.changes.as_ref().map_or(0, |c| c.total);
    let visible = usize::from(area.height.saturating_sub(3));
    let skip = app.selected.saturating_sub(visible.saturating_sub(1));
    let rows: Vec<Row> = app
        .changed_requests()
        .skip(skip)
        .take(visible)
        .map(|c| {
            Row::new(vec![
                Cell::from(c.id.clone()),
                Cell::from(c.method.clone()),
                Cell::from(c.path.clone()),
                Cell::from(c.before.clone()).style(Style::default().fg(Color::Gray)),
                Cell::from(format!("→ {}", c.after)).style(Style::default().fg(Color::Yellow)),
            ])
        })
        .collect();
    let title = if app.filter.is_empty() {
        format!("Changed requests: {total}")
    } else {
        format!("Changed requests: {total}, matching “{}”", app.filter)
    };
    let table = Table::new(
        rows,
        [
            Constraint::Length(18),
            Constraint::Length(7),
            Constraint::Min(12),
            Constraint::Min(12),
            Constraint::Min(14),
        ],
    )
    .header(
        Row::new(["id", "method", "path", "before", "after"])
            .style(Style::default().add_modifier(Modifier::BOLD)),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(block(&title));
    let mut state =
        TableState::default().with_selected(Some(app.selected - skip.min(app.selected)));
    frame.render_stateful_widget(table, area, &mut state);
}
