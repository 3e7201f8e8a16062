//! When a waiting batch's delay is up. Tokio's timers round up to whole
//! milliseconds, too coarse for delays of a few hundred microseconds, so
//! serving uses one clock thread that sleeps exactly until the next due
//! batch; tests use tokio's (pausable) clock.

use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// What runs when a delay is up.
pub(super) type Alarm = Box<dyn FnOnce() + Send>;

/// Runs an alarm once a delay has passed; never early, and late only by
/// the operating system's wake-up latency.
pub(super) trait Timer: Send + Sync + 'static {
    fn after(&self, delay: Duration, alarm: Alarm);
}

/// The process's batch clock: one thread, started on first use, waiting
/// on a condition variable for the earliest alarm.
pub(super) struct ClockThread {
    alarms: Mutex<Vec<(Instant, Alarm)>>,
    changed: Condvar,
}

impl ClockThread {
    /// The shared clock (its thread starts with the first batching model).
    pub(super) fn shared() -> Arc<dyn Timer> {
        static CLOCK: OnceLock<Arc<ClockThread>> = OnceLock::new();
        let clock = CLOCK.get_or_init(|| {
            let clock = Arc::new(ClockThread {
                alarms: Mutex::new(Vec::new()),
                changed: Condvar::new(),
            });
            let ticking = Arc::clone(&clock);
            if let Err(e) = std::thread::Builder::new()
                .name("podium-batch-clock".into())
                .spawn(move || ticking.tick())
            {
                // Without the thread, alarms would never ring: fail loudly.
                panic!("cannot start the batch clock thread: {e}");
            }
            clock
        });
        Arc::clone(clock) as Arc<dyn Timer>
    }

    fn tick(&self) {
        let mut alarms = self.alarms.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            let now = Instant::now();
            let next = alarms
                .iter()
                .enumerate()
                .min_by_key(|(_, (due, _))| *due)
                .map(|(i, (due, _))| (i, *due));
            alarms = match next {
                None => self.changed.wait(alarms).unwrap_or_else(|p| p.into_inner()),
                Some((i, due)) if due <= now => {
                    let (_, alarm) = alarms.swap_remove(i);
                    drop(alarms);
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(alarm));
                    self.alarms.lock().unwrap_or_else(|p| p.into_inner())
                }
                Some((_, due)) => {
                    self.changed
                        .wait_timeout(alarms, due - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }
}

impl Timer for ClockThread {
    fn after(&self, delay: Duration, alarm: Alarm) {
        let due = Instant::now() + delay;
        self.alarms
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((due, alarm));
        self.changed.notify_one();
    }
}

/// Tokio's clock: tests pause and advance it (whole milliseconds).
#[cfg(test)]
pub(super) struct TokioClock;

#[cfg(test)]
impl Timer for TokioClock {
    fn after(&self, delay: Duration, alarm: Alarm) {
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            alarm();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_thread_rings_each_alarm_once_in_due_order_and_never_early() {
        let clock = ClockThread::shared();
        let (tx, rx) = std::sync::mpsc::channel();
        let set = Instant::now();
        for ms in [30u64, 10, 20] {
            let tx = tx.clone();
            clock.after(
                Duration::from_millis(ms),
                Box::new(move || tx.send((ms, set.elapsed())).unwrap()),
            );
        }
        let rung: Vec<(u64, Duration)> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(rung.iter().map(|r| r.0).collect::<Vec<_>>(), [10, 20, 30]);
        assert!(rung.iter().all(|&(ms, at)| at >= Duration::from_millis(ms)));
        assert!(rx.try_recv().is_err());
    }
}
