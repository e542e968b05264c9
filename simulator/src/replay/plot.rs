//! The replay report as pictures: offered against achieved rate and latency over time (SVG), and
//! the HTML page that links them with the text summary and the config diff's groups. Drawn with
//! plotters' SVG backend like the compare report (`report::plot`), whose axis labels and HTML
//! escaping, size, grid and font are reused here.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::diff::{ConfigDiff, percent};
use super::model::ExchangeOutcome;
use crate::report::html::escape;
use crate::report::plot::{FONT, GRID_BOLD, GRID_LIGHT, SIZE, axis_number};

/// One colour per run, in the order given (baseline first).
const RUN_COLOURS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];
/// Bins of these widths (ns), the narrowest that keeps a run under [`MAX_BINS`].
const BIN_WIDTHS_NS: [u64; 16] = [
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
    200_000_000,
    500_000_000,
    1_000_000_000,
    2_000_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
    60_000_000_000,
    300_000_000_000,
];
const MAX_BINS: u64 = 150;

fn err(e: impl std::fmt::Display) -> String {
    format!("cannot draw the plot: {e}")
}

fn colour(run: usize) -> RGBColor {
    RUN_COLOURS[run % RUN_COLOURS.len()]
}

/// A replay's runs cut into equal time bins, from the start of the run.
#[derive(Debug, Clone, PartialEq)]
pub struct Bins {
    pub width_ns: u64,
    pub count: usize,
}

impl Bins {
    /// Bins wide enough that the longest run (to its last response) fits in [`MAX_BINS`].
    pub fn for_runs(runs: &[(&str, &[ExchangeOutcome])]) -> Self {
        let end = runs
            .iter()
            .flat_map(|(_, outcomes)| outcomes.iter())
            .map(|o| o.scheduled_ns.saturating_add(o.latency_ns))
            .max()
            .unwrap_or(0);
        let width_ns = BIN_WIDTHS_NS
            .into_iter()
            .find(|w| end / w < MAX_BINS)
            .unwrap_or(end / MAX_BINS + 1);
        Bins {
            width_ns,
            count: (end / width_ns + 1) as usize,
        }
    }

    fn index(&self, ns: u64) -> usize {
        ((ns / self.width_ns) as usize).min(self.count.saturating_sub(1))
    }

    /// The middle of bin `i`, in seconds.
    fn x(&self, i: usize) -> f64 {
        (i as f64 + 0.5) * self.width_ns as f64 / 1e9
    }

    fn per_second(&self) -> f64 {
        1e9 / self.width_ns as f64
    }
}

/// Requests per second per bin: offered (due to be sent, by scheduled time) and achieved
/// (responses, by when they ended).
pub fn rates(outcomes: &[ExchangeOutcome], bins: &Bins) -> (Vec<f64>, Vec<f64>) {
    let mut offered = vec![0.0; bins.count];
    let mut achieved = vec![0.0; bins.count];
    for o in outcomes {
        offered[bins.index(o.scheduled_ns)] += bins.per_second();
        if o.status.is_some() {
            achieved[bins.index(o.scheduled_ns.saturating_add(o.latency_ns))] += bins.per_second();
        }
    }
    (offered, achieved)
}

/// The p50 and p99 latency (ms, from the scheduled send time) of the answered requests due in
/// each bin; `None` for a bin without one.
pub fn latency_percentiles(outcomes: &[ExchangeOutcome], bins: &Bins) -> Vec<Option<(f64, f64)>> {
    let mut per_bin: Vec<Vec<u64>> = vec![Vec::new(); bins.count];
    for o in outcomes.iter().filter(|o| o.status.is_some()) {
        per_bin[bins.index(o.scheduled_ns)].push(o.latency_ns);
    }
    per_bin
        .into_iter()
        .map(|mut latencies| {
            if latencies.is_empty() {
                return None;
            }
            latencies.sort_unstable();
            let at = |q: f64| {
                let rank = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
                latencies[rank - 1] as f64 / 1e6
            };
            Some((at(0.50), at(0.99)))
        })
        .collect()
}

fn x_max(bins: &Bins) -> f64 {
    (bins.count as f64 * bins.width_ns as f64 / 1e9).max(1e-3)
}

fn bin_label(bins: &Bins) -> String {
    crate::compare::table::human_ms(bins.width_ns as f64 / 1e6)
}

/// Offered against achieved requests per second over time, a pair of lines per run.
pub fn rate_svg(runs: &[(&str, &[ExchangeOutcome])]) -> Result<String, String> {
    let bins = Bins::for_runs(runs);
    let series: Vec<(Vec<f64>, Vec<f64>)> = runs.iter().map(|(_, o)| rates(o, &bins)).collect();
    let top = series
        .iter()
        .flat_map(|(a, b)| a.iter().chain(b))
        .fold(0.0f64, |m, v| m.max(*v));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Offered and achieved requests per second", (FONT, 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max(&bins), 0f64..(top * 1.3).max(1.0))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!("time (s), bins of {}", bin_label(&bins)))
            .y_desc("requests / s")
            .x_label_formatter(&|v| axis_number(*v))
            .y_label_formatter(&|v| axis_number(*v))
            .label_style((FONT, 12))
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .draw()
            .map_err(err)?;
        for (j, ((name, _), (offered, achieved))) in runs.iter().zip(&series).enumerate() {
            let colour = colour(j);
            let points = |values: &[f64]| -> Vec<(f64, f64)> {
                values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (bins.x(i), *v))
                    .collect()
            };
            let thin = colour.stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(points(offered), 6, 4, thin))
                .map_err(err)?
                .label(format!("{name}: offered"))
                .legend(move |(x, y)| {
                    plotters::element::DashedPathElement::new(vec![(x, y), (x + 20, y)], 6, 4, thin)
                });
            let bold = colour.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points(achieved), bold))
                .map_err(err)?
                .label(format!("{name}: achieved"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], bold));
        }
        legend(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The p50 and p99 latency over time, from each request's scheduled send time (coordinated
/// omission corrected), a pair of lines per run.
pub fn latency_svg(runs: &[(&str, &[ExchangeOutcome])]) -> Result<String, String> {
    let bins = Bins::for_runs(runs);
    let series: Vec<Vec<Option<(f64, f64)>>> = runs
        .iter()
        .map(|(_, o)| latency_percentiles(o, &bins))
        .collect();
    let top = series
        .iter()
        .flatten()
        .flatten()
        .fold(0.0f64, |m, (_, p99)| m.max(*p99));
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Latency from the scheduled send time, p50 and p99",
                (FONT, 18),
            )
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max(&bins), 0f64..(top * 1.3).max(0.01))
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc(format!("time (s), bins of {}", bin_label(&bins)))
            .y_desc("latency (ms)")
            .x_label_formatter(&|v| axis_number(*v))
            .y_label_formatter(&|v| axis_number(*v))
            .label_style((FONT, 12))
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .draw()
            .map_err(err)?;
        for (j, ((name, _), percentiles)) in runs.iter().zip(&series).enumerate() {
            let colour = colour(j);
            let points = |pick: fn(&(f64, f64)) -> f64| -> Vec<(f64, f64)> {
                percentiles
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| p.as_ref().map(|p| (bins.x(i), pick(p))))
                    .collect()
            };
            let bold = colour.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points(|p| p.0), bold))
                .map_err(err)?
                .label(format!("{name}: p50"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], bold));
            let thin = colour.stroke_width(1);
            chart
                .draw_series(DashedLineSeries::new(points(|p| p.1), 6, 4, thin))
                .map_err(err)?
                .label(format!("{name}: p99"))
                .legend(move |(x, y)| {
                    plotters::element::DashedPathElement::new(vec![(x, y), (x + 20, y)], 6, 4, thin)
                });
        }
        legend(&mut chart)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut ChartContext<
        'a,
        DB,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT, 12))
        .draw()
        .map_err(err)
}

/// A run's totals for the page's table: requests, answered, failed, p50 and p99 (ms).
fn totals(outcomes: &[ExchangeOutcome]) -> (usize, usize, Option<(f64, f64)>) {
    let answered = outcomes.iter().filter(|o| o.status.is_some()).count();
    let whole = Bins {
        width_ns: u64::MAX,
        count: 1,
    };
    let percentiles = latency_percentiles(outcomes, &whole).pop().flatten();
    (outcomes.len(), answered, percentiles)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:1rem 0}th,td{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}\
th{background:#f4f4f4}td.n{text-align:right}pre{background:#f7f7f7;padding:.8rem;overflow-x:auto}\
figure{margin:1.5rem 0}img{max-width:100%}code{background:#f4f4f4;padding:0 .2rem}";

/// The page: the title, the text report, the runs' totals, both plots (linked, as files beside
/// it) and, with a config diff, its groups with their examples. Everything from the recording
/// or the configs is escaped.
pub fn render_html(
    title: &str,
    runs: &[(&str, &[ExchangeOutcome])],
    diff: Option<&ConfigDiff>,
    text_report: &str,
) -> String {
    let mut h = String::new();
    let title = escape(title);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n<h1>{title}</h1>\n"
    );
    let _ = writeln!(h, "<pre>{}</pre>", escape(text_report));
    h.push_str(
        "<table><tr><th>run</th><th>requests</th><th>answered</th><th>without a response</th>\
         <th>p50 (ms)</th><th>p99 (ms)</th></tr>\n",
    );
    for (name, outcomes) in runs {
        let (requests, answered, percentiles) = totals(outcomes);
        let (p50, p99) = percentiles.map_or(("-".to_owned(), "-".to_owned()), |(a, b)| {
            (format!("{a:.2}"), format!("{b:.2}"))
        });
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{requests}</td><td class=\"n\">{answered}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{p50}</td><td class=\"n\">{p99}</td></tr>",
            escape(name),
            requests - answered
        );
    }
    h.push_str("</table>\n");
    h.push_str(
        "<figure><a href=\"rate.svg\"><img src=\"rate.svg\" alt=\"offered and achieved requests \
         per second over time\"></a><figcaption>Offered (dashed: requests due to be sent) and \
         achieved (solid: responses) per second.</figcaption></figure>\n\
         <figure><a href=\"latency.svg\"><img src=\"latency.svg\" alt=\"p50 and p99 latency over \
         time\"></a><figcaption>Latency from each request's scheduled send time: p50 (solid) and \
         p99 (dashed) of the requests due in each bin.</figcaption></figure>\n",
    );
    if let Some(diff) = diff {
        let _ = writeln!(
            h,
            "<h2>Config diff</h2>\n<p>{} requests compared, {} changed ({}), {} in one run \
             only.</p>",
            diff.compared,
            diff.changed,
            percent(diff.share()),
            diff.missing.len()
        );
        if !diff.groups.is_empty() {
            h.push_str(
                "<table><tr><th>requests</th><th>before</th><th>after</th><th>changed</th>\
                 <th>examples</th></tr>\n",
            );
            for g in &diff.groups {
                let fields: Vec<&str> = g.fields.iter().map(|f| f.as_str()).collect();
                let examples: Vec<String> = g
                    .examples
                    .iter()
                    .map(|e| {
                        format!(
                            "<code>{}</code> {} {}",
                            escape(&e.id),
                            escape(&e.method),
                            escape(&e.path)
                        )
                    })
                    .collect();
                let _ = writeln!(
                    h,
                    "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    g.count,
                    escape(&g.before.to_string()),
                    escape(&g.after.to_string()),
                    fields.join(", "),
                    examples.join("<br>")
                );
            }
            h.push_str("</table>\n");
        }
    }
    h.push_str("</body></html>\n");
    h
}

/// Writes `rate.svg`, `latency.svg` and `index.html` into `dir`, creating it when absent, and
/// returns their paths. Nothing else in the folder is touched; a path that is not a folder is
/// refused.
pub fn write_html(
    dir: &Path,
    title: &str,
    runs: &[(&str, &[ExchangeOutcome])],
    diff: Option<&ConfigDiff>,
    text_report: &str,
) -> Result<Vec<PathBuf>, String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!(
            "{}: exists and is not a folder; --html names the folder the report is written into",
            dir.display()
        ));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("{}: cannot create the folder: {e}", dir.display()))?;
    let files = [
        ("rate.svg", rate_svg(runs)?),
        ("latency.svg", latency_svg(runs)?),
        ("index.html", render_html(title, runs, diff, text_report)),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| format!("{}: cannot write: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::diff::diff_decisions;
    use crate::replay::diff::tests::outcome;

    /// `n` requests due every 10 ms, each answered after `latency_ms`.
    fn run(n: u64, latency_ms: u64) -> Vec<ExchangeOutcome> {
        (0..n)
            .map(|i| {
                let mut o = outcome(&format!("r{i}"), "/a", Some("a"), None);
                o.scheduled_ns = i * 10_000_000;
                o.sent_ns = o.scheduled_ns;
                o.latency_ns = latency_ms * 1_000_000 + i % 10;
                o
            })
            .collect()
    }

    #[test]
    fn rates_count_what_was_due_and_what_came_back_per_second() {
        let mut outcomes = run(300, 5); // 3 s at 100/s
        outcomes[10].status = None; // one without a response
        let bins = Bins::for_runs(&[("r", &outcomes)]);
        assert_eq!(
            bins.width_ns, 20_000_000,
            "the narrowest width under 150 bins"
        );
        let (offered, achieved) = rates(&outcomes, &bins);
        assert_eq!(offered[0], 100.0, "2 due in 20 ms is 100/s");
        assert_eq!(offered.iter().sum::<f64>() / bins.per_second(), 300.0);
        assert_eq!(achieved.iter().sum::<f64>() / bins.per_second(), 299.0);
        let latency = latency_percentiles(&outcomes, &bins);
        let (p50, p99) = latency[3].expect("answered requests in bin 3");
        assert!((5.0..5.001).contains(&p50) && p99 >= p50, "{p50} {p99}");
        assert!(
            latency_percentiles(&[], &Bins::for_runs(&[]))
                .iter()
                .all(Option::is_none)
        );
    }

    #[test]
    fn the_plots_are_svg_with_a_legend_entry_per_run_and_line() {
        let (a, b) = (run(200, 2), run(200, 7));
        let runs: [(&str, &[ExchangeOutcome]); 2] = [("old.yaml", &a), ("new.yaml", &b)];
        let rate = rate_svg(&runs).expect("rate");
        assert!(rate.starts_with("<svg"), "{}", &rate[..60]);
        for label in [
            "old.yaml: offered",
            "old.yaml: achieved",
            "new.yaml: achieved",
        ] {
            assert!(rate.contains(label), "{label}");
        }
        let latency = latency_svg(&runs).expect("latency");
        assert!(latency.starts_with("<svg"));
        assert!(latency.contains("new.yaml: p99"));
        // Nothing to draw is still a picture, not an error.
        assert!(
            rate_svg(&[("empty", &[])])
                .expect("empty")
                .starts_with("<svg")
        );
    }

    #[test]
    fn the_page_escapes_what_came_from_the_recording() {
        let before = run(3, 1);
        let mut after = run(3, 1);
        after[1].path = "/<script>alert(1)</script>".into();
        after[1].decision.as_mut().expect("decision").route = Some("<b>r</b>".into());
        let mut before_scripted = before.clone();
        before_scripted[1].path = after[1].path.clone();
        let diff = diff_decisions(&before_scripted, &after);
        let page = render_html(
            "replay <of> & that",
            &[("<old>", &before), ("new", &after)],
            Some(&diff),
            "text with <script>",
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a: passed") && page.contains("&lt;b&gt;r&lt;/b&gt;: passed"));
        assert!(page.contains("<title>replay &lt;of&gt; &amp; that</title>"));
        assert!(page.contains("<td>&lt;old&gt;</td>"));
        assert!(page.contains("src=\"rate.svg\"") && page.contains("src=\"latency.svg\""));
    }

    #[test]
    fn the_folder_is_created_written_into_and_never_emptied() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("reports").join("replay");
        let outcomes = run(50, 3);
        let diff = diff_decisions(&outcomes, &outcomes);
        let written =
            write_html(&dir, "t", &[("base", &outcomes)], Some(&diff), "report").expect("write");
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["rate.svg", "latency.svg", "index.html"]);
        for path in &written[..2] {
            let svg = std::fs::read_to_string(path).expect("read");
            assert!(svg.contains("<svg"), "{}", path.display());
        }
        std::fs::write(dir.join("keep.txt"), "mine").expect("write");
        write_html(&dir, "t", &[("base", &outcomes)], None, "again").expect("rewrite");
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).expect("kept"),
            "mine"
        );

        let file = root.path().join("a-file");
        std::fs::write(&file, "x").expect("write");
        let refused = write_html(&file, "t", &[], None, "").expect_err("not a folder");
        assert!(
            refused.contains("a-file: exists and is not a folder"),
            "{refused}"
        );
        assert_eq!(std::fs::read_to_string(&file).expect("untouched"), "x");
    }
}
