//! One layer's calls per round (HDR histograms), the summary across
//! rounds, and the printed report.

use super::*;

/// One layer's calls in one round.
pub(crate) struct Batch {
    pub(crate) calls: usize,
    pub(crate) latency: Latency,
    pub(crate) wall: Duration,
    /// Server-reported total, inference and queue time (infer layers only).
    pub(crate) server: [Latency; 3],
}

impl Batch {
    pub(crate) fn with_capacity(_calls: usize) -> Batch {
        Batch {
            calls: 0,
            latency: Latency::new(),
            wall: Duration::ZERO,
            server: Default::default(),
        }
    }

    pub(crate) fn record(&mut self, latency: Duration) {
        self.calls += 1;
        self.latency.record(latency);
    }

    /// The `x-podium-{total,inference,queue}-us` values of one answer.
    pub(crate) fn record_server(&mut self, values: [Option<u64>; 3]) {
        for (histogram, value) in self.server.iter_mut().zip(values) {
            histogram.record(Duration::from_micros(
                value.expect("x-podium timing header or metadata"),
            ));
        }
    }
}

/// One round's summary of one layer, in microseconds and calls per second.
#[derive(Clone, Copy)]
pub(crate) struct Summary {
    pub(crate) calls: f64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) mean: f64,
    pub(crate) rate: f64,
    pub(crate) server: [Option<f64>; 3],
}

pub(crate) struct Layer {
    pub(crate) name: &'static str,
    pub(crate) rounds: Vec<Summary>,
}

impl Layer {
    pub(crate) fn new(name: &'static str) -> Layer {
        Layer {
            name,
            rounds: Vec::new(),
        }
    }

    pub(crate) fn add(&mut self, batch: Batch) {
        let server = batch
            .server
            .each_ref()
            .map(|h| (h.count() > 0).then(|| h.quantile_us(0.50)));
        let latency = &batch.latency;
        self.rounds.push(Summary {
            calls: batch.calls as f64,
            p50: latency.quantile_us(0.50),
            p90: latency.quantile_us(0.90),
            p99: latency.quantile_us(0.99),
            mean: latency.mean_us(),
            rate: batch.calls as f64 / batch.wall.as_secs_f64(),
            server,
        });
    }

    pub(crate) fn median(&self, f: impl Fn(&Summary) -> f64) -> f64 {
        median(self.rounds.iter().map(f).collect())
    }
}

pub(crate) fn report(
    layers: &[Layer],
    rounds: usize,
    plan: Plan,
    elapsed: Duration,
    cpu: [f64; 4],
) {
    println!();
    println!(
        "fraud v1, batch 1, concurrency 1: {rounds} rounds; per layer and round at least {} calls and {} ms; medians across rounds (whole run {:.1} s)",
        plan.calls,
        plan.min_time.as_millis(),
        elapsed.as_secs_f64()
    );
    println!(
        "CPU during the measured rounds (share of all cores): this process {:.0}%, other processes {:.0}%, idle {:.0}%, steal {:.0}%",
        cpu[0] * 100.0,
        cpu[1] * 100.0,
        cpu[2] * 100.0,
        cpu[3] * 100.0
    );
    println!();
    println!(
        "| {:<35} | {:>7} | {:>8} | {:>8} | {:>8} | {:>8} | {:>9} |",
        "layer", "calls", "p50 µs", "p90 µs", "p99 µs", "mean µs", "calls/s"
    );
    println!(
        "|{:-<37}|{:->9}|{:->10}|{:->10}|{:->10}|{:->10}|{:->11}|",
        "", "", "", "", "", "", ""
    );
    for layer in layers {
        println!(
            "| {:<35} | {:>7.0} | {:>8.1} | {:>8.1} | {:>8.1} | {:>8.1} | {:>9.0} |",
            layer.name,
            layer.median(|s| s.calls),
            layer.median(|s| s.p50),
            layer.median(|s| s.p90),
            layer.median(|s| s.p99),
            layer.median(|s| s.mean),
            layer.median(|s| s.rate),
        );
    }

    println!();
    println!("p50 per round (µs), to show the spread:");
    for layer in layers {
        let per_round: Vec<String> = layer
            .rounds
            .iter()
            .map(|s| format!("{:.1}", s.p50))
            .collect();
        println!("  {:<35} {}", layer.name, per_round.join("  "));
    }

    println!();
    println!(
        "server-side x-podium-*-us headers (median of per-round p50, µs; whole-µs resolution):"
    );
    for layer in [
        &layers[JSON],
        &layers[BINARY],
        &layers[PLAIN],
        &layers[PLAIN_BINARY],
    ] {
        let get = |i: usize| layer.median(|s| s.server[i].unwrap_or(f64::NAN));
        println!(
            "  {:<35} total {:>6.1}  inference {:>6.1}  queue {:>6.1}  | client p50 {:>6.1}, outside the handler {:>6.1}",
            layer.name,
            get(0),
            get(1),
            get(2),
            layer.median(|s| s.p50),
            layer.median(|s| s.p50 - s.server[0].unwrap_or(f64::NAN)),
        );
    }

    let raw = &layers[RAW];
    // Per-round differences and ratios, then the median across rounds.
    let per_round = |other: &Layer, f: &dyn Fn(&Summary, &Summary) -> f64| {
        median(
            raw.rounds
                .iter()
                .zip(&other.rounds)
                .map(|(r, o)| f(r, o))
                .collect(),
        )
    };
    println!();
    println!(
        "| {:<35} | {:>8} | {:>12} | {:>14} |",
        "vs raw ORT (per-round, then median)", "p50 µs", "added p50 µs", "raw calls/s ÷"
    );
    println!("|{:-<37}|{:->10}|{:->14}|{:->16}|", "", "", "", "");
    for layer in layers {
        println!(
            "| {:<35} | {:>8.1} | {:>12.1} | {:>13.1}x |",
            layer.name,
            layer.median(|s| s.p50),
            per_round(layer, &|r, o| o.p50 - r.p50),
            per_round(layer, &|r, o| r.rate / o.rate),
        );
    }
}
