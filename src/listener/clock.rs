//! The timers of one REST connection: what it is doing (waiting for a
//! request, reading a head, serving a request) and when that must end.
//!
//! The connection's IO, its request service and its body all note events
//! here with relaxed atomics; one timer per connection reads them when it
//! fires and says what is due ([`ConnClock::check`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use tokio::time::Instant;

use super::ConnectionLimits;

/// "Not set" for the timestamps below.
const UNSET: u64 = u64::MAX;

/// What one REST connection is doing, shared by its IO, its service, its
/// request body and its timer.
#[derive(Debug)]
pub(crate) struct ConnClock {
    opened: Instant,
    /// Requests handed to the router and not answered yet.
    in_flight: AtomicUsize,
    /// Requests answered on this connection.
    answered: AtomicU64,
    /// When the last answer was produced (nanoseconds since `opened`).
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived, or [`UNSET`].
    head_started: AtomicU64,
    /// When the request in flight was handed to the router.
    request_started: AtomicU64,
    /// Whether the body of the request in flight has been read (or dropped).
    body_done: AtomicBool,
    /// Set when the body did not arrive in time; the body then fails.
    body_timed_out: AtomicBool,
    /// Woken when `body_timed_out` is set, so a waiting body read ends.
    body_waker: AtomicWaker,
}

/// What a connection's timer found due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Nothing yet; look again at this instant.
    Wait(Instant),
    /// Close the connection: it sat `Idle` or did not send a head in time.
    Close(Expired),
    /// The request's body is late: fail it (the request gets 408), then
    /// look again at this instant.
    BodyLate(Instant),
}

/// Why a connection is closed by its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    Idle,
    Header,
}

impl Expired {
    /// The `kind` label of `podium_connection_timeouts_total`.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Expired::Idle => "idle",
            Expired::Header => "header",
        }
    }
}

impl ConnClock {
    pub(crate) fn new(opened: Instant) -> ConnClock {
        ConnClock {
            opened,
            in_flight: AtomicUsize::new(0),
            answered: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(UNSET),
            request_started: AtomicU64::new(0),
            body_done: AtomicBool::new(true),
            body_timed_out: AtomicBool::new(false),
            body_waker: AtomicWaker::new(),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.opened).as_nanos()).unwrap_or(UNSET - 1)
    }

    fn at(&self, nanos: u64) -> Instant {
        self.opened + Duration::from_nanos(nanos)
    }

    /// Whether bytes arriving now would be the first of a request head.
    #[inline]
    pub(crate) fn awaiting_head(&self) -> bool {
        self.head_started.load(Relaxed) == UNSET && self.in_flight.load(Relaxed) == 0
    }

    /// The first bytes of a request head arrived at `now` (called by the
    /// connection's IO when [`ConnClock::awaiting_head`]).
    pub(crate) fn on_head_bytes(&self, now: Instant) {
        self.head_started.store(self.nanos(now), Relaxed);
    }

    /// A request head was read and handed to the router at `now`;
    /// `has_body` says whether a body is still to come.
    pub(crate) fn on_request(&self, has_body: bool, now: Instant) {
        self.in_flight.fetch_add(1, Relaxed);
        self.request_started.store(self.nanos(now), Relaxed);
        self.body_timed_out.store(false, Relaxed);
        self.body_done.store(!has_body, Relaxed);
    }

    /// The router answered the request in flight at `now`.
    pub(crate) fn on_answer(&self, now: Instant) {
        self.idle_since.store(self.nanos(now), Relaxed);
        self.head_started.store(UNSET, Relaxed);
        self.answered.fetch_add(1, Relaxed);
        self.body_done.store(true, Relaxed);
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// The request body ended (read in full, failed or dropped).
    pub(crate) fn on_body_done(&self) {
        self.body_done.store(true, Relaxed);
    }

    /// Whether the body of the request in flight was failed for being late.
    pub(crate) fn body_timed_out(&self) -> bool {
        self.body_timed_out.load(Relaxed)
    }

    /// Fails the late body of the request in flight (its next read errs).
    pub(crate) fn fail_body(&self) {
        self.body_timed_out.store(true, Relaxed);
        self.body_waker.wake();
    }

    /// Registers the body reader to be woken by [`ConnClock::fail_body`].
    pub(crate) fn register_body_reader(&self, waker: &std::task::Waker) {
        self.body_waker.register(waker);
    }

    /// Whether no request has started on this connection yet: at most a
    /// part of the first head has arrived, and nothing has been answered.
    pub(crate) fn untouched(&self) -> bool {
        self.answered.load(Relaxed) == 0 && self.in_flight.load(Relaxed) == 0
    }

    /// What is due at `now` under `limits`.
    ///
    /// The instant to look again is never further than the shortest timeout:
    /// an event after `now` (a request, an answer, a head's first byte) sets
    /// a deadline at least that far from when it happens, so no deadline is
    /// ever missed although events do not wake the timer.
    pub(crate) fn check(&self, now: Instant, limits: &ConnectionLimits) -> Due {
        let next_look = now
            + limits
                .header_read_timeout
                .min(limits.idle_timeout)
                .min(limits.body_read_timeout);
        if self.in_flight.load(Relaxed) > 0 {
            // Serving: only a late body is this timer's business.
            if self.body_done.load(Relaxed) || self.body_timed_out.load(Relaxed) {
                return Due::Wait(next_look);
            }
            let deadline = self.at(self.request_started.load(Relaxed)) + limits.body_read_timeout;
            return if now >= deadline {
                Due::BodyLate(next_look)
            } else {
                Due::Wait(deadline.min(next_look))
            };
        }
        let head_started = self.head_started.load(Relaxed);
        let (deadline, expired) = if self.answered.load(Relaxed) == 0 {
            // A new connection has the header timeout for its first head.
            (self.opened + limits.header_read_timeout, Expired::Header)
        } else if head_started == UNSET {
            let idle_since = self.at(self.idle_since.load(Relaxed));
            (idle_since + limits.idle_timeout, Expired::Idle)
        } else {
            (
                self.at(head_started) + limits.header_read_timeout,
                Expired::Header,
            )
        };
        if now >= deadline {
            Due::Close(expired)
        } else {
            Due::Wait(deadline.min(next_look))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            ..ConnectionLimits::default()
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_new_connection_must_send_its_head_within_the_header_timeout() {
        let (t0, limits) = (Instant::now(), limits());
        let clock = ConnClock::new(t0);
        assert_eq!(clock.check(t0, &limits), Due::Wait(t0 + secs(10)));
        assert!(clock.awaiting_head());
        clock.on_head_bytes(t0 + secs(3));
        assert!(!clock.awaiting_head());
        assert_eq!(clock.check(t0 + secs(3), &limits), Due::Wait(t0 + secs(10)));
        assert_eq!(
            clock.check(t0 + secs(10), &limits),
            Due::Close(Expired::Header)
        );
    }

    #[test]
    fn a_kept_alive_connection_waits_idle_then_has_the_header_timeout() {
        let (t0, limits) = (Instant::now(), limits());
        let clock = ConnClock::new(t0);
        clock.on_request(false, t0);
        clock.on_answer(t0 + secs(1));
        assert!(clock.awaiting_head());
        // Looked at again by the shortest timeout at the latest.
        assert_eq!(clock.check(t0 + secs(1), &limits), Due::Wait(t0 + secs(11)));
        assert_eq!(
            clock.check(t0 + secs(55), &limits),
            Due::Wait(t0 + secs(61))
        );
        assert_eq!(
            clock.check(t0 + secs(61), &limits),
            Due::Close(Expired::Idle)
        );
        // The first byte of the next head starts the header timeout.
        clock.on_head_bytes(t0 + secs(50));
        assert_eq!(
            clock.check(t0 + secs(50), &limits),
            Due::Wait(t0 + secs(60))
        );
        assert_eq!(
            clock.check(t0 + secs(60), &limits),
            Due::Close(Expired::Header)
        );
    }

    #[test]
    fn a_deadline_set_by_a_later_event_is_never_missed() {
        let (t0, limits) = (Instant::now(), limits());
        let clock = ConnClock::new(t0);
        // Looked at when new: the header deadline (10 s) is the next look.
        assert_eq!(clock.check(t0, &limits), Due::Wait(t0 + secs(10)));
        // A request with a body arrives at once: its body deadline (30 s)
        // is after that look, which then finds it.
        clock.on_request(true, t0);
        assert_eq!(
            clock.check(t0 + secs(10), &limits),
            Due::Wait(t0 + secs(20))
        );
        assert!(!clock.untouched());
    }

    #[test]
    fn a_request_in_flight_is_never_closed_only_its_late_body_failed() {
        let (t0, limits) = (Instant::now(), limits());
        let clock = ConnClock::new(t0);
        clock.on_request(true, t0);
        assert!(!clock.awaiting_head());
        assert_eq!(
            clock.check(t0 + secs(25), &limits),
            Due::Wait(t0 + secs(30))
        );
        assert!(matches!(
            clock.check(t0 + secs(30), &limits),
            Due::BodyLate(_)
        ));
        clock.fail_body();
        assert!(clock.body_timed_out());
        assert!(matches!(clock.check(t0 + secs(30), &limits), Due::Wait(_)));
        // A body read in time: the request may compute for as long as it takes.
        clock.on_answer(t0 + secs(31));
        clock.on_request(true, t0 + secs(32));
        assert!(!clock.body_timed_out());
        clock.on_body_done();
        assert!(matches!(
            clock.check(t0 + secs(3600), &limits),
            Due::Wait(_)
        ));
    }
}
