//! Several writer threads on one table's queue. One writer thread renders
//! and encodes roughly 100,000 to 300,000 rows a second (its CPU per row
//! depends on the bodies and the codec), less than a many-core server
//! answers; past that the queue fills and rows are dropped. So a table can
//! have helpers ([`Role::Helper`], `--table-writers`): each takes rows only
//! while the queue backs up, and writes files of its own. At a pace the main
//! writer keeps up with, the helpers stay idle and each partition still
//! gets one file per roll.

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;

/// Rows waiting in the queue at a helper's tick for it to take any: a full
/// batch of the writer's. At a pace the main writer keeps up with, it takes
/// each tick's rows first (at 20 ms a tick, 1,024 rows are ~51,000 rows a
/// second).
pub(super) const HELP_ROWS: usize = 1024;

/// What a writer takes from its table's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Every row, every tick: alone, a table has one file per partition at
    /// a time.
    Main,
    /// Rows only while [`HELP_ROWS`] or more wait, i.e. while the main
    /// writer falls behind (one writer thread renders and encodes ~100,000
    /// to 300,000 rows a second, less than a many-core server answers).
    /// Its rows go to files of its own.
    Helper,
}

/// What the writers of one table share besides their queue.
#[derive(Clone)]
pub(super) struct Crew {
    /// Set when the table closes: each writer then writes what is queued,
    /// closes its files and stops.
    pub closing: Arc<AtomicBool>,
    /// Each writer's oldest row not yet in a closed file, as seconds (f64
    /// bits), so the gauge shows the oldest of all.
    pub oldest: Arc<[AtomicU64]>,
}

impl Crew {
    pub fn new(writers: usize, closing: Arc<AtomicBool>) -> Crew {
        Crew {
            closing,
            oldest: (0..writers.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::time::{Duration, Instant};

    use crate::inference_table::table::{Message, Table};
    use crate::inference_table::test_rows::{named, record, requests};
    use crate::inference_table::TableOptions;

    /// The request ids of every row in the Parquet files under `dir`.
    fn ids(dir: &std::path::Path) -> Vec<String> {
        use arrow_array::cast::AsArray;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let mut out = Vec::new();
        for path in named(dir, ".parquet") {
            let file = std::fs::File::open(path).unwrap();
            for batch in ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
            {
                let batch = batch.unwrap();
                let column = batch.column_by_name("request_id").unwrap();
                out.extend(
                    column
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap().to_string()),
                );
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn helpers_share_a_backed_up_queue_and_every_row_is_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = TableOptions::new(dir.path());
        options.writers = 2;
        options.queue_rows = 1_000_000;
        let table = Table::start(options, requests(), "crew-test").unwrap();
        // Bursts far larger than a tick's worth, until the helper has a file
        // open beside the main writer's in the one partition (two journals).
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut sent = HashSet::new();
        while named(dir.path(), ".arrows").len() < 2 {
            assert!(
                Instant::now() < deadline,
                "no helper joined in after {} rows",
                sent.len()
            );
            for _ in 0..5_000 {
                let row = record(100);
                sent.insert(row.request_id.clone());
                table.tx.send(Message::Row(Box::new(row))).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        table.close(Duration::from_secs(60)).await;
        let written = ids(dir.path());
        assert_eq!(written.len(), sent.len(), "every row, once");
        assert_eq!(written.into_iter().collect::<HashSet<_>>(), sent);
        assert!(named(dir.path(), ".parquet").len() >= 2);
        assert!(named(dir.path(), ".arrows").is_empty());
    }
}
