//! Progress of an offline job on stderr: a bar with rows/s and ETA on a
//! terminal, otherwise a plain line every [`LINE_EVERY`] and one at the end
//! (for logs of scheduled jobs).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a plain progress line is printed when stderr is not a terminal.
pub const LINE_EVERY: Duration = Duration::from_secs(5);

/// Rows done out of a known total.
pub struct Progress {
    what: String,
    total: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// Progress of `what` (e.g. `scoring fraud v1`) over `total` rows.
    pub fn new(what: &str, total: u64) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total);
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:30}] {pos}/{len} rows, {per_sec}, ETA {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(what.to_string());
            bar
        });
        let now = Instant::now();
        Progress {
            what: what.to_string(),
            total,
            done: 0,
            started: now,
            last_line: now,
            bar,
        }
    }

    /// `rows` more rows are done.
    pub fn advance(&mut self, rows: u64) {
        self.done += rows;
        match &self.bar {
            Some(bar) => bar.inc(rows),
            None if self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    /// Rows done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// Ends the bar (or prints the last line) and returns the elapsed time.
    pub fn finish(self) -> Duration {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let elapsed = self.started.elapsed();
        eprintln!(
            "{}: {} rows in {:.1} s ({:.0} rows/s)",
            self.what,
            self.done,
            elapsed.as_secs_f64(),
            rate(self.done, elapsed)
        );
        elapsed
    }

    /// `scoring fraud v1: 120000/1000000 rows (12%), 45000 rows/s, ETA 19 s`.
    fn line(&self) -> String {
        let elapsed = self.started.elapsed();
        let per_s = rate(self.done, elapsed);
        let left = self.total.saturating_sub(self.done);
        let eta = if per_s > 0.0 {
            format!("{:.0} s", left as f64 / per_s)
        } else {
            "-".to_string()
        };
        format!(
            "{}: {}/{} rows ({:.0}%), {per_s:.0} rows/s, ETA {eta}",
            self.what,
            self.done,
            self.total,
            100.0 * self.done as f64 / self.total.max(1) as f64
        )
    }
}

fn rate(rows: u64, elapsed: Duration) -> f64 {
    rows as f64 / elapsed.as_secs_f64().max(1e-9)
}
