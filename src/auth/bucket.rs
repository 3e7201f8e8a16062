//! A key's rate limit: a token bucket (GCRA, from `governor`) that refills
//! at `rate` calls per second up to `burst`, checked without a lock.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::Clock;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::file::Limit;

/// Tokio's clock, so tests run the bucket on a paused clock; outside a
/// paused test it is the monotonic system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// One key's bucket. Shared by every request with the key, and kept across
/// reloads of the keys file while the key's name and limit stay the same.
pub struct Bucket {
    limit: Limit,
    limiter: RateLimiter<NotKeyed, InMemoryState, TokioClock>,
}

impl Bucket {
    /// A full bucket for `limit` (rate > 0 and burst ≥ 1, as the file parser ensures).
    pub fn new(limit: Limit) -> Bucket {
        let period = Duration::from_secs_f64(1.0 / limit.rate).max(Duration::from_nanos(1));
        let burst = NonZeroU32::new(limit.burst).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
            .allow_burst(burst);
        Bucket {
            limit,
            limiter: RateLimiter::direct_with_clock(quota, TokioClock),
        }
    }

    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Takes one call's token; when the bucket is empty, how long until the
    /// next token, in whole seconds rounded up (at least 1), for `Retry-After`.
    pub fn take(&self) -> Result<(), u64> {
        self.limiter.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(TokioClock.now());
            wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.is_zero())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_sustained_rate() {
        let bucket = Bucket::new(Limit {
            rate: 1.0,
            burst: 2,
        });
        assert_eq!(bucket.take(), Ok(()));
        assert_eq!(bucket.take(), Ok(()));
        // Empty: the next token comes in a second.
        assert_eq!(bucket.take(), Err(1));
        tokio::time::advance(Duration::from_millis(400)).await;
        assert_eq!(bucket.take(), Err(1), "0.6 s rounds up to 1");
        tokio::time::advance(Duration::from_millis(600)).await;
        assert_eq!(bucket.take(), Ok(()));
        assert_eq!(bucket.take(), Err(1));
        // Idle time refills up to the burst, no further.
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(bucket.take(), Ok(()));
        assert_eq!(bucket.take(), Ok(()));
        assert!(bucket.take().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn slow_rates_say_how_many_seconds_to_wait() {
        let bucket = Bucket::new(Limit {
            rate: 0.1,
            burst: 1,
        });
        assert_eq!(bucket.take(), Ok(()));
        assert_eq!(bucket.take(), Err(10));
        tokio::time::advance(Duration::from_millis(2500)).await;
        assert_eq!(bucket.take(), Err(8), "7.5 s rounds up");
        tokio::time::advance(Duration::from_millis(7500)).await;
        assert_eq!(bucket.take(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn fast_rates_refill_within_a_second() {
        let bucket = Bucket::new(Limit {
            rate: 1000.0,
            burst: 10,
        });
        for _ in 0..10 {
            assert_eq!(bucket.take(), Ok(()));
        }
        assert_eq!(bucket.take(), Err(1), "Retry-After is never 0");
        tokio::time::advance(Duration::from_millis(5)).await;
        for _ in 0..5 {
            assert_eq!(bucket.take(), Ok(()));
        }
        assert!(bucket.take().is_err());
    }
}
