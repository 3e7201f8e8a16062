//! Several writer threads on one table's queue. One writer thread renders
//! and encodes on the order of 100,000 rows a second (its CPU per row
//! depends on the bodies and the codec), less than a many-core server
//! answers; past that the queue fills and rows are dropped. So a table can
//! have helpers ([`Role::Helper`], `--table-writers`): each takes rows only
//! when it finds the queue a quarter full, and writes files of its own. At
//! a pace the main writer keeps up with, the queue stays nearly empty (it
//! drains the queue at every 20 ms tick), the helpers seldom join in and each
//! partition gets one file at a time, as with one writer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What a writer takes from its table's queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    /// Every row, every tick.
    Main,
    /// A drain only when the queue is a quarter full (rows or bytes), or
    /// every tick once the main writer has stopped. Its rows go to files of
    /// its own.
    Helper,
}

/// What the writers of one table share besides their queue.
#[derive(Clone)]
pub(super) struct Crew {
    /// Set when the table closes: each writer then writes what is queued,
    /// closes its files and stops.
    pub closing: Arc<AtomicBool>,
    /// Set when the main writer stops, whatever the reason: helpers then
    /// take every row (and see the queue's end).
    main_gone: Arc<AtomicBool>,
    /// Queued rows, or bytes, from which helpers take rows.
    help_rows: usize,
    help_bytes: usize,
    origin: Instant,
    /// Per writer, when its oldest row not yet in a closed file arrived, in
    /// microseconds after `origin`, plus one (0: it has none).
    oldest: Arc<[AtomicU64]>,
}

impl Crew {
    /// The crew of `writers` writers on a queue of `queue_rows` rows and
    /// `queue_bytes` bytes.
    pub fn new(
        writers: usize,
        closing: Arc<AtomicBool>,
        queue_rows: usize,
        queue_bytes: usize,
    ) -> Crew {
        Crew {
            closing,
            main_gone: Arc::new(AtomicBool::new(false)),
            help_rows: (queue_rows / 4).max(1),
            help_bytes: (queue_bytes / 4).max(1),
            origin: Instant::now(),
            oldest: (0..writers.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    pub fn writers(&self) -> usize {
        self.oldest.len()
    }

    /// Whether a writer of `role` takes rows now, with `rows` rows of
    /// `bytes` bytes in the queue.
    pub fn takes(&self, role: Role, rows: usize, bytes: usize) -> bool {
        role == Role::Main || self.main_gone() || rows >= self.help_rows || bytes >= self.help_bytes
    }

    pub fn main_gone(&self) -> bool {
        self.main_gone.load(Ordering::Acquire)
    }

    /// Held by writer `index` while it runs. Dropped (also by a panic), it
    /// clears the writer's oldest row from the gauge and, for the main
    /// writer, hands every row to the helpers.
    pub fn running(&self, index: usize, role: Role, table: &'static str) -> Running {
        Running {
            crew: self.clone(),
            index,
            role,
            table,
        }
    }

    /// Records writer `index`'s oldest row not yet in a closed file.
    pub fn set_oldest(&self, index: usize, oldest: Option<Instant>) {
        let value = oldest.map_or(0, |t| {
            t.saturating_duration_since(self.origin).as_micros() as u64 + 1
        });
        self.oldest[index].store(value, Ordering::Relaxed);
    }

    /// Seconds since the oldest row of any writer not yet in a closed file
    /// arrived (0 when there is none).
    pub fn oldest_age(&self) -> f64 {
        self.oldest
            .iter()
            .map(|slot| slot.load(Ordering::Relaxed))
            .filter(|&v| v > 0)
            .min()
            .map_or(0.0, |v| {
                let at = self.origin + std::time::Duration::from_micros(v - 1);
                at.elapsed().as_secs_f64()
            })
    }
}

/// See [`Crew::running`].
pub(super) struct Running {
    crew: Crew,
    index: usize,
    role: Role,
    table: &'static str,
}

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                "writer {} of the {} failed{}",
                self.index,
                self.table,
                if self.role == Role::Main {
                    "; helpers, if any run, take every row from now on"
                } else {
                    ""
                }
            );
        }
        self.crew.set_oldest(self.index, None);
        if self.role == Role::Main {
            self.crew.main_gone.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn helpers_take_rows_from_a_quarter_full_queue_or_once_the_main_writer_is_gone() {
        let crew = Crew::new(2, Arc::new(AtomicBool::new(false)), 100, 4000);
        assert!(crew.takes(Role::Main, 0, 0));
        assert!(!crew.takes(Role::Helper, 24, 999));
        assert!(crew.takes(Role::Helper, 25, 0), "a quarter of the rows");
        assert!(crew.takes(Role::Helper, 0, 1000), "a quarter of the bytes");
        let running = crew.running(0, Role::Main, "test table");
        let helper = crew.running(1, Role::Helper, "test table");
        drop(helper);
        assert!(
            !crew.takes(Role::Helper, 1, 1),
            "a helper stopped, not the main writer"
        );
        drop(running);
        assert!(crew.takes(Role::Helper, 0, 0), "the main writer is gone");
    }

    #[test]
    fn the_oldest_row_of_any_writer_counts() {
        let mut crew = Crew::new(3, Arc::new(AtomicBool::new(false)), 100, 100);
        assert_eq!(crew.oldest_age(), 0.0);
        let now = Instant::now();
        // Rows older than the crew, for the test's sake.
        crew.origin = now.checked_sub(Duration::from_secs(10)).unwrap();
        crew.set_oldest(1, Some(now - Duration::from_secs(5)));
        crew.set_oldest(2, Some(now - Duration::from_secs(2)));
        let age = crew.oldest_age();
        assert!((5.0..60.0).contains(&age), "{age}");
        crew.set_oldest(1, None);
        let age = crew.oldest_age();
        assert!((2.0..5.0).contains(&age), "{age}");
        // A writer that stops takes its oldest row out of the gauge.
        drop(crew.running(2, Role::Helper, "test table"));
        assert_eq!(crew.oldest_age(), 0.0);
    }
}
