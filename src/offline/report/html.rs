//! The report as one self-contained HTML page: inline CSS and inline SVG
//! drawn here, no script, no font, no image and no URL of any kind, so it
//! opens the same with no network (and can be mailed or archived as is).

use std::fmt::Write;

use crate::experiments::ReadoutView;
use crate::inference_table::record::format_micros;

use super::timeline::Timeline;

/// Arm colours, in order (colour-blind safe, Okabe–Ito).
const COLOURS: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
];

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 130.0;
const TOP: f64 = 20.0;
const BOTTOM: f64 = 40.0;

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:960px}\
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}\
.better{color:#007a3d;font-weight:bold}.worse{color:#b00020;font-weight:bold}\
.warn{color:#8a5a00}svg{display:block;margin:0.5em 0 1.5em 0}\
svg text{font-size:11px;fill:#333}.axis{stroke:#888}.grid{stroke:#eee}";

/// One series of a chart: points (None: a gap) and an optional band.
struct Line<'a> {
    name: &'a str,
    colour: &'a str,
    points: Vec<Option<(f64, f64)>>,
    band: Vec<Option<(f64, f64, f64)>>,
}

/// The page for `view` and its `timeline`.
pub fn page(view: &ReadoutView, timeline: &Timeline, range: &str) -> String {
    let mut out = String::new();
    let title = format!("Experiment report: {}", view.endpoint);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        esc(&title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", esc(&title));
    let _ = writeln!(
        out,
        "<p>experiment <b>{}</b> · model <b>{}</b> · metric <b>{}</b> · baseline <b>{}</b> · alpha {} · min_samples {} · calls {}</p>",
        esc(&view.experiment),
        esc(&view.model),
        view.metric,
        esc(&view.baseline),
        view.alpha,
        view.min_samples,
        esc(range)
    );
    summary(&mut out, view);
    let colour = |i: usize| COLOURS[i % COLOURS.len()];
    let x: Vec<f64> = timeline.ends.iter().map(|&t| t as f64).collect();
    let (x0, x1) = (
        timeline.ends.first().map_or(0.0, |&t| t as f64),
        timeline.ends.last().map_or(1.0, |&t| t as f64),
    );
    let time_label = |t: f64| format_micros(t as i64)[5..16].replace('T', " ");

    let metric_lines: Vec<Line> = timeline
        .arms
        .iter()
        .enumerate()
        .map(|(a, name)| Line {
            name,
            colour: colour(a),
            points: timeline.metric_over_time[a]
                .iter()
                .zip(&x)
                .map(|(p, &x)| p.map(|p| (x, p.value)))
                .collect(),
            band: timeline.metric_over_time[a]
                .iter()
                .zip(&x)
                .map(|(p, &x)| p.map(|p| (x, p.low, p.high)))
                .collect(),
        })
        .collect();
    let (mut lo, mut hi) = bounds(metric_lines.iter().flat_map(|l| {
        l.band
            .iter()
            .flatten()
            .flat_map(|&(_, low, high)| [low, high])
    }));
    if view.metric != "mean" {
        // A proportion's axis stays within [0, 1].
        (lo, hi) = (lo.max(0.0), hi.min(1.0));
    }
    let _ = writeln!(
        out,
        "<h2>{} over time</h2><p>Cumulative over the labelled calls up to each time, with its {}% interval (shaded).</p>",
        timeline.metric,
        trim(timeline.confidence * 100.0)
    );
    chart(
        &mut out,
        &metric_lines,
        (x0, x1),
        (lo, hi),
        &time_label,
        &|y| format!("{y:.3}"),
    );

    let edges = &timeline.latency_edges;
    let latency_lines: Vec<Line> = timeline
        .arms
        .iter()
        .enumerate()
        .map(|(a, name)| {
            let total: u64 = timeline.latency[a].iter().sum::<u64>().max(1);
            Line {
                name,
                colour: colour(a),
                points: timeline.latency[a]
                    .iter()
                    .zip(edges)
                    .map(|(&n, &edge)| Some((edge.log10(), n as f64 / total as f64)))
                    .collect(),
                band: Vec::new(),
            }
        })
        .collect();
    let top = latency_lines
        .iter()
        .flat_map(|l| l.points.iter().flatten().map(|p| p.1))
        .fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "<h2>Latency distribution</h2><p>Share of each arm's calls per latency bin (total time in Podium, log scale).</p>"
    );
    let (l0, l1) = (
        edges.first().map_or(0.0, |e| e.log10()),
        edges.last().map_or(1.0, |e| e.log10()),
    );
    chart(
        &mut out,
        &latency_lines,
        (l0, l1),
        (0.0, top.max(0.01)),
        &|x| format!("{} ms", short(10f64.powf(x))),
        &|y| format!("{:.0}%", y * 100.0),
    );

    let share_lines: Vec<Line> = timeline
        .arms
        .iter()
        .enumerate()
        .map(|(a, name)| Line {
            name,
            colour: colour(a),
            points: timeline.share[a]
                .iter()
                .zip(&x)
                .map(|(s, &x)| s.map(|s| (x, s)))
                .collect(),
            band: Vec::new(),
        })
        .collect();
    let _ = writeln!(out, "<h2>Traffic share over time</h2><p>Each arm's share of the calls in each interval; configured weights are in the table above.</p>");
    chart(
        &mut out,
        &share_lines,
        (x0, x1),
        (0.0, 1.0),
        &time_label,
        &|y| format!("{:.0}%", y * 100.0),
    );
    out.push_str("</body></html>\n");
    out
}

fn summary(out: &mut String, view: &ReadoutView) {
    let level = trim(view.confidence * 100.0);
    let _ = writeln!(
        out,
        "<table><tr><th>arm</th><th>version</th><th>weight</th><th>requests</th><th>errors</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>feedback</th><th>{}</th><th>{level}% interval</th></tr>",
        view.metric
    );
    for a in &view.arms {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.arm),
            a.version.map_or("-".into(), |v| v.to_string()),
            trim(a.weight),
            a.requests,
            a.error_rate.map_or("-".into(), |e| format!("{:.2}%", e * 100.0)),
            num(a.latency_ms.p50, 2),
            num(a.latency_ms.p95, 2),
            num(a.latency_ms.p99, 2),
            a.feedback,
            num(a.metric.value, 4),
            interval(a.metric.ci_low, a.metric.ci_high),
        );
    }
    out.push_str("</table>\n");
    let _ = writeln!(
        out,
        "<p>Sample-ratio check: <b class=\"{}\">{}</b> (chi-square p = {:.4}; below {} the split does not match the weights)</p>",
        if view.srm.ok { "better" } else { "worse" },
        if view.srm.ok { "ok" } else { "FAILED" },
        view.srm.p_value,
        view.srm.threshold
    );
    out.push_str("<table><tr><th>arm vs baseline</th><th>diff</th><th>interval</th><th>p-value</th><th>always-valid p</th><th>test</th><th>decision</th></tr>\n");
    for c in &view.comparisons {
        let decision = serde_json::to_value(c.decision)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td>{} vs {}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{}</td><td class=\"{decision}\">{decision}</td></tr>",
            esc(&c.arm),
            esc(&c.baseline),
            c.diff.map_or("-".into(), |d| format!("{d:+.4}")),
            interval(c.ci_low, c.ci_high),
            num(c.p_value, 4),
            c.always_valid_p_value,
            c.test,
        );
    }
    out.push_str("</table>\n");
    for w in &view.warnings {
        let _ = writeln!(out, "<p class=\"warn\">warning: {}</p>", esc(w));
    }
}

/// A line chart with optional bands and a legend on the right.
fn chart(
    out: &mut String,
    lines: &[Line],
    (x0, x1): (f64, f64),
    (y0, y1): (f64, f64),
    x_label: &dyn Fn(f64) -> String,
    y_label: &dyn Fn(f64) -> String,
) {
    let (w, h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    let xs = |x: f64| {
        LEFT + if x1 > x0 {
            (x - x0) / (x1 - x0) * w
        } else {
            w / 2.0
        }
    };
    let ys = |y: f64| {
        TOP + h
            - if y1 > y0 {
                (y - y0) / (y1 - y0) * h
            } else {
                h / 2.0
            }
    };
    let _ = write!(
        out,
        "<svg width=\"{WIDTH}\" height=\"{HEIGHT}\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\">"
    );
    for i in 0..=4 {
        let y = y0 + (y1 - y0) * i as f64 / 4.0;
        let _ = write!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT + w,
            ys(y),
            ys(y),
            LEFT - 6.0,
            ys(y) + 4.0,
            esc(&y_label(y))
        );
    }
    for i in 0..=4 {
        let x = x0 + (x1 - x0) * i as f64 / 4.0;
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            xs(x),
            TOP + h + 18.0,
            esc(&x_label(x))
        );
    }
    let _ = write!(
        out,
        "<line class=\"axis\" x1=\"{LEFT}\" x2=\"{LEFT}\" y1=\"{TOP}\" y2=\"{:.1}\"/><line class=\"axis\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
        TOP + h,
        LEFT + w,
        TOP + h,
        TOP + h
    );
    for (i, line) in lines.iter().enumerate() {
        for run in runs(&line.band) {
            let mut points: Vec<String> = run
                .iter()
                .map(|&(x, _, hi)| format!("{:.1},{:.1}", xs(x), ys(hi)))
                .collect();
            points.extend(
                run.iter()
                    .rev()
                    .map(|&(x, lo, _)| format!("{:.1},{:.1}", xs(x), ys(lo))),
            );
            let _ = write!(
                out,
                "<polygon class=\"band\" points=\"{}\" fill=\"{}\" fill-opacity=\"0.18\" stroke=\"none\"/>",
                points.join(" "),
                line.colour
            );
        }
        for run in runs(&line.points) {
            let points: Vec<String> = run
                .iter()
                .map(|&(x, y)| format!("{:.1},{:.1}", xs(x), ys(y)))
                .collect();
            let _ = write!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"/>",
                points.join(" "),
                line.colour
            );
        }
        let ly = TOP + 14.0 + 18.0 * i as f64;
        let lx = LEFT + w + 14.0;
        let _ = write!(
            out,
            "<rect x=\"{lx:.1}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{ly:.1}\">{}</text>",
            ly - 10.0,
            line.colour,
            lx + 18.0,
            esc(line.name)
        );
    }
    out.push_str("</svg>\n");
}

/// The runs of consecutive present values.
fn runs<T: Copy>(values: &[Option<T>]) -> Vec<Vec<T>> {
    let mut out = vec![Vec::new()];
    for v in values {
        match v {
            Some(v) => out.last_mut().expect("never empty").push(*v),
            None if out.last().is_some_and(|r| !r.is_empty()) => out.push(Vec::new()),
            None => {}
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        let pad = (hi - lo) * 0.05;
        (lo - pad, hi + pad)
    }
}

/// Text for HTML content and attribute values.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn num(x: Option<f64>, places: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.places$}"))
}

fn interval(low: Option<f64>, high: Option<f64>) -> String {
    match (low, high) {
        (Some(l), Some(h)) => format!("[{l:.4}, {h:.4}]"),
        _ => "-".into(),
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A latency bin edge without needless digits (0.05, 2.2, 460).
fn short(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_split_lines_and_text_is_escaped() {
        assert_eq!(
            runs(&[Some(1), None, Some(2), Some(3), None]),
            vec![vec![1], vec![2, 3]]
        );
        assert!(runs::<i32>(&[None, None]).is_empty());
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(bounds([0.5, 0.5].into_iter()), (0.0, 1.0));
    }
}
