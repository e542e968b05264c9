//! The Latency view: quantiles per route and the highlighted route's histogram — to tell a slow
//! route from a slow gateway.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::text::Line;
use ratatui::widgets::{Bar, BarChart, BarGroup, Cell, Paragraph, Row, Table, TableState};

use super::style::block;
use crate::tui::app::App;

/// Histogram buckets in µs: upper bounds, each labelled with its unit.
const BUCKETS: [(u64, &str); 12] = [
    (500, "0.5ms"),
    (1_000, "1ms"),
    (2_000, "2ms"),
    (5_000, "5ms"),
    (10_000, "10ms"),
    (20_000, "20ms"),
    (50_000, "50ms"),
    (100_000, "100ms"),
    (500_000, "500ms"),
    (1_000_000, "1s"),
    (5_000_000, "5s"),
    (u64::MAX, ">5s"),
];
/// Every bar this wide, so every label shows whole and the bars stay even.
const BAR_WIDTH: u16 = 5;

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
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
                Cell::from(r.answered.as_str()),
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
            Constraint::Length(8),
            Constraint::Length(7),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new([
            "route", "answered", "  count", "  p50 ms", "  p90 ms", "  p99 ms", "  max ms",
        ])
        .style(Style::default().fg(Color::Gray).bold()),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(block(
        "Latency per route and who answered (arrival to last byte)",
    ));
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
    // Even bars as wide as the longest label; wider screens spread them with wider gaps.
    let width = histogram_area.width.saturating_sub(2);
    let gap = (width / BUCKETS.len() as u16)
        .saturating_sub(BAR_WIDTH)
        .clamp(1, 4);
    let chart = BarChart::default()
        .block(block(&format!(
            "Histogram — {}, answered by the {}",
            route.route,
            route.answered.as_str()
        )))
        .data(BarGroup::default().bars(&bars))
        .bar_width(BAR_WIDTH)
        .bar_gap(gap)
        .value_style(Style::default().fg(Color::Black).bg(Color::Cyan));
    frame.render_widget(chart, histogram_area);
}
