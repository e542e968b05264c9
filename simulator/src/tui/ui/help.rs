//! The help popup over any view: every key in one place, so the footer can stay to the keys of
//! the view at hand.

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Clear, Paragraph};

use super::style::block;

/// Every key the TUI answers to (keys.rs), so a test can hold the two together.
pub(super) const HELP: &[(&str, &str)] = &[
    ("q, Ctrl-C", "quit"),
    ("?", "this help (any key closes it; q quits)"),
    ("Tab, Shift-Tab, 1-4", "switch view"),
    ("5", "Changed: what --against changed (replay --tui)"),
    ("↑ ↓, j k", "select"),
    ("g G, Home End", "first / last"),
    (
        "Enter",
        "details of the record (Requests); re-run (Compare)",
    ),
    ("Esc", "close the details, else clear the filter"),
    ("p", "pause the feed (counting goes on)"),
    (
        "/",
        "filter the feed or the changes (path, status, reason…)",
    ),
    ("  typing, Backspace", "  edit the filter"),
    ("  Enter, Esc", "  keep the filter / clear it"),
    ("r R", "Compare: rate down / up"),
    ("b B", "Compare: burst down / up"),
    ("w W", "Compare: window halved / doubled"),
    ("n", "Compare: the gateway's next rate-limit policy"),
    ("c, Space", "Compare: re-run on the traffic so far"),
];

pub(super) fn draw(frame: &mut Frame, area: Rect) {
    let width = area.width.min(76);
    let height = area.height.min(u16::try_from(HELP.len()).unwrap_or(16) + 2);
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
