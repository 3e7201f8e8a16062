//! When each request is meant to be sent.
//!
//! Closed loop: a fixed number of workers, each sends its next request as
//! soon as the previous one is answered; the intended send time is the
//! actual one. Open loop: requests are meant to leave at a fixed rate,
//! request `n` at `start + n / rate`, whether or not earlier ones have been
//! answered. A worker that is still busy sends late, and the latency is
//! measured from the *intended* time, so a server that stalls is charged for
//! every request that had to wait behind the stall (no coordinated omission).
//! tokio's timer has a 1 ms tick, so the workers aim a tick early: a request
//! may leave up to 1 ms before its time (its latency then counts from the
//! actual send), never late because of the timer.

use std::time::Duration;

/// How requests are paced.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Pacing {
    /// Fixed concurrency: each worker sends back to back.
    Closed,
    /// Fixed arrival rate, requests per second (over all workers).
    Open { rate: f64 },
}

impl Pacing {
    /// The intended send time of request `n` (0-based, counted over all
    /// workers), as an offset from the start of the run; `None` in a
    /// closed loop, where a request is due when its worker is free.
    pub fn due(&self, n: u64) -> Option<Duration> {
        match *self {
            Pacing::Closed => None,
            Pacing::Open { rate } => Some(Duration::from_secs_f64(n as f64 / rate)),
        }
    }

    /// Requests due within the first `window` of the run (open loop only).
    pub fn due_within(&self, window: Duration) -> Option<u64> {
        match *self {
            Pacing::Closed => None,
            Pacing::Open { rate } => Some((window.as_secs_f64() * rate).ceil() as u64),
        }
    }
}

/// The latency that counts, given when the request was due, when it was
/// actually sent and when its answer was read (all offsets from the start
/// of the run): from the intended time when there is one, so waiting for a
/// free worker is part of it.
pub fn latency(due: Option<Duration>, sent: Duration, answered: Duration) -> Duration {
    answered.saturating_sub(due.unwrap_or(sent).min(sent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_spaces_requests_evenly() {
        let p = Pacing::Open { rate: 1000.0 };
        assert_eq!(p.due(0), Some(Duration::ZERO));
        assert_eq!(p.due(1), Some(Duration::from_millis(1)));
        assert_eq!(p.due(2500), Some(Duration::from_millis(2500)));
        let p = Pacing::Open { rate: 3.0 };
        let d = p.due(1).unwrap();
        assert!((d.as_secs_f64() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(p.due_within(Duration::from_secs(2)), Some(6));
    }

    #[test]
    fn closed_loop_has_no_schedule() {
        assert_eq!(Pacing::Closed.due(42), None);
        assert_eq!(Pacing::Closed.due_within(Duration::from_secs(1)), None);
    }

    #[test]
    fn latency_counts_from_the_intended_time() {
        let ms = Duration::from_millis;
        // Sent on time: the service time.
        assert_eq!(latency(Some(ms(10)), ms(10), ms(12)), ms(2));
        // Sent 50 ms late because every worker was busy: the wait counts.
        assert_eq!(latency(Some(ms(10)), ms(60), ms(62)), ms(52));
        // Closed loop: from the actual send.
        assert_eq!(latency(None, ms(60), ms(62)), ms(2));
        // Sent early never makes a request faster than its service time.
        assert_eq!(latency(Some(ms(70)), ms(60), ms(62)), ms(2));
    }
}
