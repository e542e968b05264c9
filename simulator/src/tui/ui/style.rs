//! What every view draws with — a colour per stage and per algorithm, durations and clock
//! times in few cells, the bordered block, the share bar — so the views agree on how a stage or
//! an algorithm looks.

use gateway::ratelimit::Algorithm;
use gateway::vocab::StageId;
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders};

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

/// A view's panel: a grey border with a bold title.
pub(super) fn block(title: &str) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(Color::DarkGray))
        .title(Span::styled(
            format!(" {title} "),
            Style::default().add_modifier(Modifier::BOLD),
        ))
}

/// A horizontal bar of `share` (0..=1) of `width` cells.
pub(super) fn bar(share: f64, width: usize) -> String {
    let cells = (share.clamp(0.0, 1.0) * width as f64).round() as usize;
    "█".repeat(cells)
}
