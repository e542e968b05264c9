//! Drawing the TUI: a pure function of [`App`] onto a ratatui frame — no input, no clock, no I/O,
//! so every view is tested against a `TestBackend` buffer. Laid out to be usable at 80×24. This
//! file draws the frame every view shares (tabs, footer, the help over them); each view has its
//! own file.

mod changed;
mod compare;
mod feed;
mod help;
mod latency;
mod pipeline;
mod style;
#[cfg(test)]
mod tests;

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Style, Stylize};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Tabs};

pub use style::{algorithm_colour, clock, duration, stage_colour};

use super::app::{App, View};

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
        View::Pipeline => pipeline::draw(frame, body, app),
        View::Feed => feed::draw(frame, body, app),
        View::Latency => latency::draw(frame, body, app),
        View::Compare => compare::draw(frame, body, app),
        View::Changed => changed::draw(frame, body, app),
    }
    draw_footer(frame, footer, app);
    if app.show_help {
        help::draw(frame, frame.area());
    }
}

fn draw_header(frame: &mut Frame, area: Rect, app: &App) {
    let titles: Vec<Line> = app
        .views()
        .iter()
        .enumerate()
        .map(|(i, v)| Line::from(format!("{} {}", i + 1, v.title())))
        .collect();
    let selected = app.views().iter().position(|v| *v == app.view).unwrap_or(0);
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
                key("n"),
                Span::raw(" policy "),
                key("c"),
                Span::raw(" re-run "),
            ]),
            View::Changed => hints.extend([
                key("↑↓"),
                Span::raw(" select "),
                key("/"),
                Span::raw(" filter "),
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
