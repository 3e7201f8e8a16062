//! The human-readable summary of a run and the one-row-per-level table of a
//! concurrency sweep.

use std::fmt::Write;

use crate::run::Report;
use crate::schedule::Pacing;
use crate::stats::ArmRow;

/// A latency in microseconds, as µs or (from 10 ms) ms.
pub(crate) fn us(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

/// The summary printed at the end of a run.
pub fn summary(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.measured;
    let p = m.percentiles();
    let pacing = match r.pacing {
        Pacing::Closed => format!("closed loop, concurrency {}", r.concurrency),
        Pacing::Open { rate } => format!(
            "open loop, {rate} req/s intended, at most {} in flight (latency from the intended send time)",
            r.concurrency
        ),
    };
    let _ = writeln!(out, "target   {} ({})", r.target, r.protocol.name());
    let inputs = match r.distinct_inputs {
        1 => String::new(),
        n => format!(", {n} distinct inputs in turn"),
    };
    let _ = writeln!(out, "load     {pacing}{inputs}");
    let _ = writeln!(
        out,
        "warm-up  {} requests ({} errors), not counted below",
        r.warmup.requests(),
        r.warmup.error_count()
    );
    let _ = writeln!(
        out,
        "measured {} requests in {:.2} s: {:.1} req/s, {} answers, {} errors",
        m.requests(),
        r.elapsed.as_secs_f64(),
        r.throughput(),
        m.answers,
        m.error_count()
    );
    let _ = writeln!(
        out,
        "latency  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {})",
        us(p.p50_us),
        us(p.p90_us),
        us(p.p99_us),
        us(p.p999_us),
        us(p.max_us),
        us(p.mean_us)
    );
    if let Pacing::Open { .. } = r.pacing {
        let s = m.service.summary();
        let l = m.lag.summary();
        let _ = writeln!(
            out,
            "service  p50 {}  p99 {}  (from the actual send)",
            us(s.p50_us),
            us(s.p99_us)
        );
        let _ = writeln!(
            out,
            "send lag p50 {}  p99 {}  max {}  (how late requests left: every worker was busy)",
            us(l.p50_us),
            us(l.p99_us),
            us(l.max_us)
        );
    }
    if !m.errors.is_empty() {
        let list: Vec<String> = m
            .error_map()
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "errors   {}", list.join(", "));
        for e in &m.error_examples {
            let _ = writeln!(out, "         e.g. {e}");
        }
    }
    out.push_str(&arm_table(&m.arm_rows()));
    if let (Some(f), Some(cfg)) = (&r.flip, &r.flip_config) {
        let c = &r.checks;
        let kinds: Vec<String> = c
            .inconsistent
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "\nflip drill: {}@{} between {:?} every {:?}: {} flips ({} failed), PUT p50 {} max {}",
            cfg.model,
            cfg.alias,
            cfg.versions,
            cfg.every,
            f.flips,
            f.failed_flips,
            us(f.put_latency.p50_us),
            us(f.put_latency.max_us)
        );
        let _ = writeln!(
            out,
            "            {} failed requests, {} inconsistent answers{}, {} answers checked against the version in force",
            m.error_count(),
            c.inconsistent_total(),
            if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) },
            c.checked
        );
        for e in f.failure_examples.iter().chain(&c.examples) {
            let _ = writeln!(out, "            e.g. {e}");
        }
    }
    out
}

/// The answers by endpoint, arm and version, after a blank line; empty
/// when there were none.
pub fn arm_table(rows: &[ArmRow]) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\n{:<20} {:<12} {:>8} {:>10} {:>7} {:>10} {:>10}",
        "endpoint", "arm", "version", "answers", "share", "p50", "p99"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "{:<20} {:<12} {:>8} {:>10} {:>6.1}% {:>10} {:>10}",
            row.endpoint,
            row.arm,
            row.version,
            row.answers,
            row.share * 100.0,
            us(row.latency.p50_us),
            us(row.latency.p99_us)
        );
    }
    out
}

/// The header of a sweep table.
pub fn sweep_header() -> String {
    format!(
        "{:>11} {:>10} {:>10} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "concurrency",
        "requests",
        "req/s",
        "errors",
        "p50 µs",
        "p90 µs",
        "p99 µs",
        "p99.9 µs",
        "max µs"
    )
}

/// One row of a sweep table.
pub fn sweep_row(r: &Report) -> String {
    let p = r.measured.percentiles();
    format!(
        "{:>11} {:>10} {:>10.1} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        r.concurrency,
        r.measured.requests(),
        r.throughput(),
        r.measured.error_count(),
        p.p50_us,
        p.p90_us,
        p.p99_us,
        p.p999_us,
        p.max_us
    )
}
