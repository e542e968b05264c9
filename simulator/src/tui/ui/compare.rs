//! The Compare view: the rate-limit algorithms on the same arrivals and the same quota, their
//! counts against the exact sliding log and their admitted rate over time — so choosing an
//! algorithm is a matter of looking, and changing the quota shows its effect at once.

use gateway::ratelimit::Algorithm;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Cell, Chart, Dataset, GraphType, LegendPosition, Paragraph, Row, Table, TableState,
};

use super::style::{algorithm_colour, block, duration};
use crate::tui::app::{App, LabTraffic};

pub(super) fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let lab = &app.lab;
    let rows_needed = u16::try_from(lab.params.algorithms.len()).unwrap_or(5) + 3;
    let [info, table_area, charts] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(rows_needed),
        Constraint::Min(4),
    ])
    .areas(area);
    let q = lab.params.quota;
    let traffic = match &lab.traffic {
        LabTraffic::Fixed(t) => t.source.clone(),
        LabTraffic::Live(_) => "the live traffic so far".to_owned(),
    };
    let origin = match (lab.current_policy(), lab.policies.is_empty()) {
        (Some(p), _) => format!("  policy {} (n: next)", p.id),
        (None, false) => "  (changed from the gateway's policy; n: a policy)".to_owned(),
        (None, true) => String::new(),
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
                Span::styled(origin, Style::default().fg(Color::Cyan)),
                Span::styled(
                    "  (same for all; windows admit the rate at once)",
                    Style::default().fg(Color::DarkGray),
                ),
            ]),
            Line::from(Span::styled(
                format!("traffic: {traffic}{summary}"),
                Style::default().fg(Color::Gray),
            )),
            // This view's news stays in this view, not in the footer every view shares.
            Line::from(Span::styled(
                lab.status.clone(),
                Style::default().fg(Color::DarkGray),
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
            // GCRA decides exactly as the token bucket: drawn as dots at each bin over the
            // bucket's line, so where the two coincide both still show.
            let (marker, graph) = match a {
                Algorithm::Gcra => (symbols::Marker::Dot, GraphType::Scatter),
                _ => (symbols::Marker::Braille, GraphType::Line),
            };
            Dataset::default()
                .name(short(*a))
                .marker(marker)
                .graph_type(graph)
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
        .legend_position(Some(LegendPosition::TopRight))
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
