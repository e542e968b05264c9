//! The compare report's plots, as SVG text: admitted rate over time per algorithm, and
//! rejections per key. Drawn with plotters' SVG backend, which writes text as SVG `<text>`
//! elements (the viewer picks the font), so no font file is read here.

use gateway::ratelimit::Algorithm;
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::compare::Comparison;

/// Why a plot could not be drawn (plotters' own error, as text).
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the plot: {0}")]
pub struct PlotError(String);

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// One colour per algorithm, the same in every plot (and in the TUI's palette order).
pub fn colour(algorithm: Algorithm) -> RGBColor {
    match algorithm {
        Algorithm::TokenBucket => RGBColor(31, 119, 180),
        Algorithm::Gcra => RGBColor(255, 127, 14),
        Algorithm::FixedWindow => RGBColor(44, 160, 44),
        Algorithm::SlidingLog => RGBColor(214, 39, 40),
        Algorithm::SlidingWindowCounter => RGBColor(148, 103, 189),
    }
}

/// Every report plot's size, grid and font, so the compare and replay reports look alike.
pub const SIZE: (u32, u32) = (960, 420);
/// The admitted plot: two panels, so it is taller.
const TWO_PANELS: (u32, u32) = (960, 720);
// Grid colours given outright, not as black with opacity, so every SVG viewer draws them light.
pub const GRID_BOLD: RGBColor = RGBColor(205, 205, 205);
pub const GRID_LIGHT: RGBColor = RGBColor(238, 238, 238);
pub const FONT: &str = "sans-serif";
/// About this many markers along each line: enough to tell the lines apart, few enough not to
/// hide them.
const MARKERS: usize = 14;

/// How one algorithm's line is drawn, so lines that coincide stay distinguishable: a marker
/// shape, placed at a per-algorithm offset along the line, and for some a dash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    Circle,
    Cross,
    Square,
    Triangle,
    Diamond,
}

/// The stroke of an algorithm's line, the same in the plot and in its legend entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stroke {
    pub marker: Marker,
    pub dashed: bool,
}

pub fn stroke(algorithm: Algorithm) -> Stroke {
    let (marker, dashed) = match algorithm {
        Algorithm::TokenBucket => (Marker::Circle, false),
        // GCRA decides exactly as the token bucket: dashed and crossed, so both stay visible.
        Algorithm::Gcra => (Marker::Cross, true),
        Algorithm::FixedWindow => (Marker::Square, false),
        Algorithm::SlidingLog => (Marker::Triangle, true),
        Algorithm::SlidingWindowCounter => (Marker::Diamond, false),
    };
    Stroke { marker, dashed }
}

/// A marker's outline in pixels around its centre. Every shape is a polygon so that markers of
/// any shape are one element type, in the plot and in the legend alike.
fn marker_outline(marker: Marker) -> Vec<(i32, i32)> {
    match marker {
        Marker::Circle => vec![
            (-2, -5),
            (2, -5),
            (5, -2),
            (5, 2),
            (2, 5),
            (-2, 5),
            (-5, 2),
            (-5, -2),
        ],
        Marker::Cross => vec![
            (-5, -3),
            (-3, -5),
            (0, -2),
            (3, -5),
            (5, -3),
            (2, 0),
            (5, 3),
            (3, 5),
            (0, 2),
            (-3, 5),
            (-5, 3),
            (-2, 0),
        ],
        Marker::Square => vec![(-4, -4), (4, -4), (4, 4), (-4, 4)],
        Marker::Triangle => vec![(0, -5), (5, 4), (-5, 4)],
        Marker::Diamond => vec![(0, -6), (5, 0), (0, 6), (-5, 0)],
    }
}

/// Admitted requests per second over time, in two panels: above, every algorithm over the
/// offered load on a log axis (offered may be hundreds of times the quota); below, the admitted
/// rates alone on a linear axis, where the algorithms' differences show.
pub fn admitted_over_time(c: &Comparison) -> Result<String, PlotError> {
    let per_sec = 1000.0 / c.bin_ms.max(f64::MIN_POSITIVE);
    let bins = c.offered_per_bin.len();
    let x_max = (bins as f64 * c.bin_ms / 1000.0).max(1e-3);
    let x = |i: usize| (i as f64 + 0.5) * c.bin_ms / 1000.0;
    let top_of = |values: &mut dyn Iterator<Item = u64>| values.max().unwrap_or(0) as f64 * per_sec;
    let admitted_max = top_of(
        &mut c
            .results
            .iter()
            .flat_map(|r| r.admitted_per_bin.iter().copied()),
    );
    let offered_max = top_of(&mut c.offered_per_bin.iter().copied());
    // A log axis cannot show 0: an empty bin sits on the floor, one request per bin below the
    // smallest non-zero rate a bin can have.
    let floor = per_sec * 0.5;
    let log_top = (offered_max.max(admitted_max) * 3.0).max(floor * 10.0);
    let linear_top = (admitted_max * 1.35).max(1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, TWO_PANELS).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let (upper, lower) = root.split_vertically(TWO_PANELS.1 / 2);
        let mut chart = ChartBuilder::on(&upper)
            .caption(
                format!(
                    "Offered and admitted per second (log scale) — {} per {}, burst {}",
                    c.quota.limit,
                    crate::compare::table::human_ms(c.quota.period_ms),
                    c.quota.burst
                ),
                (FONT, 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, (floor..log_top).log_scale())
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("time (s)")
            .y_desc("requests / s")
            .y_label_formatter(&|v| axis_number(*v))
            .x_label_formatter(&|v| axis_number(*v))
            .label_style((FONT, 12))
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .draw()
            .map_err(err)?;
        let grey = RGBColor(170, 170, 170);
        chart
            .draw_series(LineSeries::new(
                c.offered_per_bin
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (x(i), (*n as f64 * per_sec).max(floor))),
                grey.stroke_width(1),
            ))
            .map_err(err)?
            .label("offered")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
        for (j, r) in c.results.iter().enumerate() {
            let points: Vec<(f64, f64)> = r
                .admitted_per_bin
                .iter()
                .enumerate()
                .map(|(i, n)| (x(i), (*n as f64 * per_sec).max(floor)))
                .collect();
            draw_line(
                &mut chart,
                r.algorithm,
                &r.name(),
                j,
                c.results.len(),
                &points,
            )?;
        }
        legend(&mut chart)?;

        let mut chart = ChartBuilder::on(&lower)
            .caption("Admitted per second, admitted only", (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..linear_top)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!(
                "time (s), bins of {}",
                crate::compare::table::human_ms(c.bin_ms)
            ))
            .y_desc("requests / s")
            .y_label_formatter(&|v| axis_number(*v))
            .x_label_formatter(&|v| axis_number(*v))
            .label_style((FONT, 12))
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .draw()
            .map_err(err)?;
        for (j, r) in c.results.iter().enumerate() {
            let points: Vec<(f64, f64)> = r
                .admitted_per_bin
                .iter()
                .enumerate()
                .map(|(i, n)| (x(i), *n as f64 * per_sec))
                .collect();
            draw_line(
                &mut chart,
                r.algorithm,
                &r.name(),
                j,
                c.results.len(),
                &points,
            )?;
        }
        legend(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// `0`, `2.5`, `40`, `1.2k`, `3M`: an axis label without float noise (`0.30000000000000004`).
pub fn axis_number(v: f64) -> String {
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            s
        }
    };
    match v.abs() {
        a if a >= 1e6 => format!("{}M", trim(format!("{:.1}", v / 1e6))),
        a if a >= 1e4 => format!("{}k", trim(format!("{:.1}", v / 1e3))),
        a if a >= 100.0 || a == 0.0 => format!("{v:.0}"),
        a if a >= 1.0 => trim(format!("{v:.1}")),
        _ => trim(format!("{v:.2}")),
    }
}

/// One algorithm's line with its markers, named in the legend with the same dash and marker.
fn draw_line<'a, DB: DrawingBackend + 'a, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
    algorithm: Algorithm,
    label: &str,
    index: usize,
    lines: usize,
    points: &[(f64, f64)],
) -> Result<(), PlotError>
where
    Y: Ranged<ValueType = f64>,
{
    let colour = colour(algorithm);
    let Stroke { marker, dashed } = stroke(algorithm);
    let style = colour.stroke_width(2);
    let outline = marker_outline(marker);
    // The legend entry is the stroke itself: the same dash, the same marker on it.
    if dashed {
        let outline = outline.clone();
        chart
            .draw_series(DashedLineSeries::new(points.iter().copied(), 6, 4, style))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + DashedPathElement::new(vec![(0, 0), (24, 0)], 6, 4, style)
                    + Polygon::new(shifted(&outline, 12), colour.filled())
            });
    } else {
        let outline = outline.clone();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), style))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (24, 0)], style)
                    + Polygon::new(shifted(&outline, 12), colour.filled())
            });
    }
    // Markers spaced evenly, each algorithm's shifted a little, so coinciding lines show every
    // marker rather than one on top of another.
    let step = (points.len() / MARKERS).max(1);
    let offset = step * index / lines.max(1);
    chart
        .draw_series(
            points
                .iter()
                .skip(offset)
                .step_by(step)
                .map(|p| EmptyElement::at(*p) + Polygon::new(outline.clone(), colour.filled())),
        )
        .map_err(err)?;
    Ok(())
}

/// The outline moved right by `dx` pixels (to sit in the middle of a legend's line).
fn shifted(outline: &[(i32, i32)], dx: i32) -> Vec<(i32, i32)> {
    outline.iter().map(|(x, y)| (x + dx, *y)).collect()
}

fn legend<'a, DB: DrawingBackend + 'a, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
) -> Result<(), PlotError>
where
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()
        .map_err(err)
}

/// Rejections per key for the most rejected keys, one bar per algorithm.
pub fn rejections_per_key(c: &Comparison) -> Result<String, PlotError> {
    let keys = &c.top_rejected_keys;
    let groups = keys.len().max(1);
    let y_max = keys
        .iter()
        .flat_map(|k| k.rejected.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1) as f64
        * 1.45; // headroom for the legend
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Rejections per key (most rejected keys)", (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..groups as f64 - 0.5, 0f64..y_max)
            .map_err(err)?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() > 1e-6 || i < 0.0 {
                return String::new();
            }
            keys.get(i as usize).map_or(String::new(), |k| {
                let mut name: String = k.key.chars().take(14).collect();
                if k.key.chars().count() > 14 {
                    name.push('…');
                }
                name
            })
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups.min(TOP_LABELS))
            .x_label_formatter(&label)
            .y_desc("rejected requests")
            .label_style((FONT, 12))
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .draw()
            .map_err(err)?;
        let n = c.results.len().max(1) as f64;
        let width = 0.8 / n;
        for (j, r) in c.results.iter().enumerate() {
            let colour = colour(r.algorithm);
            chart
                .draw_series(keys.iter().enumerate().map(|(i, k)| {
                    let left = i as f64 - 0.4 + j as f64 * width;
                    Rectangle::new(
                        [(left, 0.0), (left + width * 0.9, k.rejected[j] as f64)],
                        colour.filled(),
                    )
                }))
                .map_err(err)?
                .label(r.name())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 14, y + 5)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FONT, 12))
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// At most this many key labels on the x axis.
const TOP_LABELS: usize = crate::compare::TOP_KEYS;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{CompareParams, Trace, compare};
    use gateway::ratelimit::Quota;

    fn comparison() -> Comparison {
        let events = (0..200u64).map(|i| (i * 20_000_000, if i % 3 == 0 { "a" } else { "b" }, 1));
        compare(
            &Trace::from_events("plot test", events),
            &CompareParams::new(Quota::per_second(10), Algorithm::ALL.to_vec()),
        )
    }

    #[test]
    fn the_admitted_plot_is_svg_with_a_line_and_a_legend_entry_per_algorithm() {
        let svg = admitted_over_time(&comparison()).expect("plot");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        for algorithm in Algorithm::ALL {
            assert!(
                svg.contains(algorithm.as_str()),
                "{algorithm} in the legend"
            );
        }
        assert!(svg.contains("offered"));
        assert!(
            svg.contains("<text"),
            "text is SVG text, no font file needed"
        );
        assert!(svg.matches("<polyline").count() >= 5);
    }

    /// Offered load 500× the quota: one key sending 5,000/s against 10/s.
    fn flood() -> Comparison {
        let events = (0..10_000u64).map(|i| (i * 200_000, "k", 1));
        compare(
            &Trace::from_events("flood", events),
            &CompareParams::new(Quota::per_second(10), Algorithm::ALL.to_vec()),
        )
    }

    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .and_then(|(_, rest)| rest.split('<').next())
            })
            .map(|t| t.trim().to_owned())
            .collect()
    }

    #[test]
    fn at_500_times_the_quota_the_admitted_rates_get_their_own_linear_panel_under_a_log_one() {
        let svg = admitted_over_time(&flood()).expect("plot");
        let texts = texts(&svg);
        assert!(texts.iter().any(|t| t.contains("(log scale)")), "{texts:?}");
        assert!(
            texts
                .iter()
                .any(|t| t == "Admitted per second, admitted only"),
            "{texts:?}"
        );
        // The linear panel's axis reaches about the admitted rate (10–20/s), not 5,000/s: its
        // largest label is below 100 while the log panel's reaches the thousands.
        let numbers: Vec<f64> = texts
            .iter()
            .filter_map(|t| t.trim_end_matches('k').parse::<f64>().ok())
            .collect();
        assert!(numbers.iter().any(|n| *n < 30.0 && *n > 0.0), "{numbers:?}");
        assert!(
            texts
                .iter()
                .any(|t| t.ends_with('k') || t.parse::<f64>().is_ok_and(|n| n >= 1000.0)),
            "the log panel reaches the offered load: {texts:?}"
        );
    }

    #[test]
    fn axis_labels_are_clean_numbers() {
        let cases = [
            (0.0, "0"),
            (0.3000000000000004, "0.3"),
            (2.5, "2.5"),
            (40.0, "40"),
            (1_000.0, "1000"),
            (12_500.0, "12.5k"),
            (3_000_000.0, "3M"),
        ];
        for (v, want) in cases {
            assert_eq!(axis_number(v), want, "{v}");
        }
        for t in texts(&admitted_over_time(&flood()).expect("plot")) {
            if t.parse::<f64>().is_ok() {
                assert!(t.len() <= 6, "no float noise in an axis label: {t}");
            }
        }
    }

    #[test]
    fn every_algorithm_has_its_own_marker_and_its_legend_draws_the_same_stroke() {
        for (i, a) in Algorithm::ALL.iter().enumerate() {
            for b in &Algorithm::ALL[i + 1..] {
                assert_ne!(stroke(*a).marker, stroke(*b).marker, "{a} and {b}");
            }
        }
        assert!(stroke(Algorithm::Gcra).dashed && !stroke(Algorithm::TokenBucket).dashed);
        // The token bucket and GCRA coincide on this trace; both show: markers along each line
        // in both panels, and one in each legend entry.
        let svg = admitted_over_time(&comparison()).expect("plot");
        let polygons = svg.matches("<polygon").count();
        assert!(
            polygons >= 2 * Algorithm::ALL.len() * (MARKERS / 2 + 1),
            "{polygons} markers"
        );
    }

    #[test]
    fn the_rejections_plot_has_a_bar_per_key_and_algorithm() {
        let c = comparison();
        let svg = rejections_per_key(&c).expect("plot");
        let texts: Vec<&str> = svg
            .split("<text")
            .skip(1)
            .filter_map(|t| {
                t.split_once('>')
                    .and_then(|(_, rest)| rest.split('<').next())
            })
            .map(str::trim)
            .collect();
        assert!(
            texts.contains(&"b") && texts.contains(&"a"),
            "key labels: {texts:?}"
        );
        assert!(svg.matches("<rect").count() >= c.top_rejected_keys.len() * 5);
    }
}
