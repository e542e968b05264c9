//! The compare report as one self-contained HTML file: the table, what each column means, and
//! the plots inlined as SVG — no scripts, no external files, readable offline.

use std::fmt::Write as _;

use super::plot::{self, PlotError};
use crate::compare::Comparison;
use crate::compare::table::redis_cell;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}\
table{border-collapse:collapse;margin:1rem 0}th,td{padding:.3rem .6rem;border-bottom:1px solid #ddd;text-align:right}\
th:first-child,td:first-child{text-align:left}th{background:#f4f4f4}\
dt{font-weight:600;margin-top:.5rem}dd{margin-left:1rem}figure{margin:1.5rem 0}code{background:#f4f4f4;padding:0 .2rem}";

/// Renders the comparison with its two plots.
pub fn render(c: &Comparison) -> Result<String, PlotError> {
    let admitted = plot::admitted_over_time(c)?;
    let rejections = plot::rejections_per_key(c)?;
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Gatehouse rate-limit comparison</title><style>{STYLE}</style></head><body>\n"
    );
    let _ = writeln!(h, "<h1>Rate-limit algorithms on the same traffic</h1>");
    let _ = writeln!(
        h,
        "<p>Traffic <code>{}</code>: {} arrivals, {} keys, {:.1} s. Quota for every algorithm: \
         {} per {} ms, burst {} (token bucket and GCRA; the window algorithms admit the limit \
         at once), emission interval T = {} ms. Every algorithm is the gateway's own code, run in \
         virtual time on the same arrivals.</p>",
        escape(&c.trace.source),
        c.trace.arrivals,
        c.trace.keys,
        c.trace.span_ms / 1000.0,
        c.quota.limit,
        c.quota.period_ms,
        c.quota.burst,
        c.quota.emission_interval_ms
    );
    h.push_str(
        "<table><tr><th>algorithm</th><th>admitted</th><th>rejected</th><th>false allows</th>\
         <th>false denies</th><th>largest burst</th><th>retry-after at first refusal, mean / max (ms)</th>\
         <th>observed recovery, mean / max (ms)</th><th>state bytes per key, mean / max</th>\
         <th>Redis per decision</th><th>fairness</th></tr>\n",
    );
    for r in &c.results {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{:.1} / {:.1}</td><td>{:.1} / {:.1}</td><td>{:.0} / {}</td><td>{}</td><td>{:.3}</td></tr>",
            escape(&r.name()),
            r.admitted,
            r.rejected,
            r.false_allows,
            r.false_denies,
            r.largest_burst,
            r.recovery.retry_after_mean_ms,
            r.recovery.retry_after_max_ms,
            r.recovery.observed_mean_ms,
            r.recovery.observed_max_ms,
            r.state_bytes_per_key.mean,
            r.state_bytes_per_key.max,
            escape(&match &r.lease {
                Some(l) => format!("{:.3} RT (lease)", l.round_trips_per_decision),
                None => redis_cell(&r.redis),
            }),
            r.fairness
        );
    }
    h.push_str("</table>\n");
    let _ = writeln!(
        h,
        "<figure>{admitted}<figcaption>Admitted requests per second, per algorithm, over the \
         offered load (grey).</figcaption></figure>"
    );
    let _ = writeln!(
        h,
        "<figure>{rejections}<figcaption>Rejections of the most rejected keys.</figcaption></figure>"
    );
    if !c.top_rejected_keys.is_empty() {
        h.push_str("<table><tr><th>key</th><th>arrivals</th>");
        for r in &c.results {
            let _ = write!(h, "<th>{}</th>", escape(&r.name()));
        }
        h.push_str("</tr>\n");
        for k in &c.top_rejected_keys {
            let _ = write!(h, "<tr><td>{}</td><td>{}</td>", escape(&k.key), k.arrivals);
            for n in &k.rejected {
                let _ = write!(h, "<td>{n}</td>");
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</table>\n");
    }
    h.push_str(DEFINITIONS);
    h.push_str("</body></html>\n");
    Ok(h)
}

const DEFINITIONS: &str = "<h2>What the columns mean</h2><dl>\
<dt>false allows</dt><dd>Against the exact sliding log, judged on the algorithm's own \
admissions: a request fits when the units this algorithm admitted for its key in (t − period, t] plus \
its cost stay within the limit. Admitting one that does not fit is a false allow.</dd>\
<dt>false denies</dt><dd>Refusals the exact limit would have admitted: the exact sliding log, run on \
the same arrivals, admitted that very arrival at that moment. The sliding log's own are 0 by \
construction.</dd>\
<dt>largest burst</dt><dd>The most units one key had admitted within any span shorter than the \
emission interval T = ⌈period / limit⌉.</dd>\
<dt>retry-after at first refusal</dt><dd>For each run of consecutive refusals of one key, the exact \
wait the algorithm's decision states at the run's first refusal (the time to recover if the client \
waits). Observed recovery: from that first refusal to the key's next admission on this trace.</dd>\
<dt>state bytes per key</dt><dd><code>Limiter::state_bytes</code> of each key's state at the end of \
the run (the sliding log's ring never shrinks, so that is its peak).</dd>\
<dt>Redis per decision</dt><dd>Read off the Redis store's Lua script, for a request under one \
policy: round trips (one EVALSHA), keys the check touches, and commands the script runs inside \
Redis (these cost Redis CPU, not round trips). A constant per algorithm, not measured.</dd>\
<dt>fairness</dt><dd>Jain's index over keys of admitted / entitled, where a key's entitlement is what \
the exact sliding log admits for it on the same arrivals: 1.0 when every key got the same share of \
what the exact limit allows it.</dd></dl>\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{CompareParams, Trace, compare};
    use gateway::ratelimit::{Algorithm, Quota};

    #[test]
    fn the_report_is_one_page_with_the_table_and_both_plots_inline() {
        let events = (0..100u64).map(|i| (i * 30_000_000, "<key&1>", 1));
        let c = compare(
            &Trace::from_events("r", events),
            &CompareParams::new(Quota::per_second(10), Algorithm::ALL.to_vec()),
        );
        let page = render(&c).expect("render");
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert_eq!(page.matches("<svg").count(), 2);
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="), "nothing external");
        assert!(page.contains("&lt;key&amp;1&gt;"), "keys are escaped");
        assert!(page.contains("<td>sliding-window-counter</td>"));
    }
}
