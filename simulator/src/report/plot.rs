//! The compare report's plots, as SVG text: admitted rate over time per algorithm, and
//! rejections per key. Drawn with plotters' SVG backend, which writes text as SVG `<text>`
//! elements (the viewer picks the font), so no font file is read here.

use gateway::ratelimit::Algorithm;
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

const SIZE: (u32, u32) = (960, 420);
// Grid colours given outright, not as black with opacity, so every SVG viewer draws them light.
const GRID_BOLD: RGBColor = RGBColor(205, 205, 205);
const GRID_LIGHT: RGBColor = RGBColor(238, 238, 238);
const FONT: &str = "sans-serif";

/// Admitted requests per second over time, one line per algorithm, over the offered load.
pub fn admitted_over_time(c: &Comparison) -> Result<String, PlotError> {
    let per_sec = 1000.0 / c.bin_ms.max(f64::MIN_POSITIVE);
    let bins = c.offered_per_bin.len();
    let x_max = (bins as f64 * c.bin_ms / 1000.0).max(1e-3);
    let y_max = c
        .offered_per_bin
        .iter()
        .copied()
        .chain(
            c.results
                .iter()
                .flat_map(|r| r.admitted_per_bin.iter().copied()),
        )
        .max()
        .unwrap_or(0) as f64
        * per_sec;
    // Headroom for the legend in the upper right.
    let y_max = (y_max * 1.35).max(1.0);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "Admitted per second — {} per {}, burst {}",
                    c.quota.limit,
                    crate::compare::table::human_ms(c.quota.period_ms),
                    c.quota.burst
                ),
                (FONT, 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!("time (s), bins of {} ms", c.bin_ms))
            .y_desc("requests / s")
            .label_style((FONT, 12))
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .draw()
            .map_err(err)?;
        let x = |i: usize| (i as f64 + 0.5) * c.bin_ms / 1000.0;
        let grey = RGBColor(170, 170, 170);
        chart
            .draw_series(LineSeries::new(
                c.offered_per_bin
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (x(i), *n as f64 * per_sec)),
                grey.stroke_width(1),
            ))
            .map_err(err)?
            .label("offered")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey));
        for r in &c.results {
            let colour = colour(r.algorithm);
            let points = r
                .admitted_per_bin
                .iter()
                .enumerate()
                .map(|(i, n)| (x(i), *n as f64 * per_sec));
            // GCRA decides exactly as the token bucket: dashed, so both lines stay visible.
            if r.algorithm == Algorithm::Gcra {
                chart
                    .draw_series(DashedLineSeries::new(points, 6, 4, colour.stroke_width(2)))
                    .map_err(err)?
            } else {
                chart
                    .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                    .map_err(err)?
            }
            .label(r.algorithm.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
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
                .label(r.algorithm.as_str())
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
