//! Write failures of the table writer: every one counted in the metrics at
//! once, and told in the log at most once per [`LOG_EVERY`] with the true
//! totals since the previous line, so a full disk neither floods the log nor
//! hides how much it cost.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// At most one log line per kind of failure this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Failures not yet told in the log.
#[derive(Default)]
struct Untold {
    /// Rows lost (always 0 for journal failures: the rows still go to Parquet).
    rows: u64,
    failures: u64,
    latest: String,
}

/// The writer's failure log.
pub(super) struct Failures {
    dir: PathBuf,
    /// The table's name in log lines, and its metrics' prefix.
    table: &'static str,
    metrics: &'static str,
    last_line: Option<Instant>,
    drops: Untold,
    last_journal_line: Option<Instant>,
    journal: Untold,
}

impl Failures {
    pub fn new(dir: PathBuf, table: &'static str, metrics: &'static str) -> Failures {
        Failures {
            dir,
            table,
            metrics,
            last_line: None,
            drops: Untold::default(),
            last_journal_line: None,
            journal: Untold::default(),
        }
    }

    /// A write under the table failed and `rows` rows were dropped.
    pub fn dropped(&mut self, rows: usize, e: &anyhow::Error) {
        metrics::counter!(format!("{}_write_errors_total", self.metrics)).increment(1);
        metrics::counter!(format!("{}_rows_dropped_total", self.metrics), "reason" => "write_error")
            .increment(rows as u64);
        self.drops.rows += rows as u64;
        self.drops.failures += 1;
        self.drops.latest = format!("{e:#}");
        self.tell_due();
    }

    /// A journal could not be written: its file goes on without one, so a
    /// crash before the file is closed would lose its rows.
    pub fn journal_failed(&mut self, e: &anyhow::Error) {
        metrics::counter!(format!("{}_journal_errors_total", self.metrics)).increment(1);
        self.journal.failures += 1;
        self.journal.latest = format!("{e:#}");
        self.tell_due();
    }

    /// Logs what was not told yet, if the last line is old enough; called
    /// on each failure and regularly by the writer, so the last failures of
    /// a burst are told too.
    pub fn tell_due(&mut self) {
        if self.drops.failures > 0 && due(self.last_line) {
            self.last_line = Some(Instant::now());
            let Untold {
                rows,
                failures,
                latest,
            } = std::mem::take(&mut self.drops);
            tracing::error!(
                "{}: dropped {rows} rows in {failures} failed writes under {} since the last message; the latest failure: {latest}",
                self.table,
                self.dir.display()
            );
        }
        if self.journal.failures > 0 && due(self.last_journal_line) {
            self.last_journal_line = Some(Instant::now());
            let Untold {
                failures, latest, ..
            } = std::mem::take(&mut self.journal);
            tracing::warn!(
                "{}: {failures} journal writes failed since the last message (their files go on without a journal: a crash before they close loses their rows); the latest failure: {latest}",
                self.table
            );
        }
    }

    /// Rows dropped and not yet told in the log.
    #[cfg(test)]
    fn untold_rows(&self) -> u64 {
        self.drops.rows
    }
}

/// What a caught panic said.
pub(super) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown")
}

fn due(last: Option<Instant>) -> bool {
    last.is_none_or(|t| t.elapsed() >= LOG_EVERY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dropped_row_is_told_once() {
        let mut failures = Failures::new(PathBuf::from("/t"), "inference table", "podium_table");
        let e = anyhow::anyhow!("disk full");
        // The first failure is told at once…
        failures.dropped(3, &e);
        assert_eq!(failures.untold_rows(), 0);
        // …the next ones within LOG_EVERY add up for the next line.
        failures.dropped(5, &e);
        failures.dropped(7, &e);
        assert_eq!(failures.untold_rows(), 12);
        failures.tell_due();
        assert_eq!(failures.untold_rows(), 12, "not before LOG_EVERY");
        failures.last_line = None;
        failures.tell_due();
        assert_eq!(failures.untold_rows(), 0);
    }
}
