//! The memory budget of request bodies: the bytes of every REST body being
//! read and decoded at once, across all requests (`--max-inflight-body-bytes`).
//! A body takes a few times its size while it is decoded (an MLflow JSON body
//! tens of times), so without a global bound a handful of big concurrent
//! bodies could exhaust the host.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::error::Error;

/// Bytes of request bodies in flight, and the most allowed.
#[derive(Debug)]
pub struct BodyBudget {
    in_use: AtomicUsize,
    limit: usize,
}

/// A share of the budget, given back when dropped (once the body is decoded).
#[derive(Debug)]
pub struct BodyPermit {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyBudget {
    pub fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            in_use: AtomicUsize::new(0),
            limit,
        })
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }

    /// Reserves `bytes`; 503 (`Overloaded`, with `Retry-After`) when the
    /// budget is spent now, 413 when one body alone is over it.
    pub fn reserve(self: &Arc<Self>, bytes: usize) -> Result<BodyPermit, Error> {
        self.fits(bytes)?;
        let mut current = self.in_use.load(Ordering::Acquire);
        loop {
            if current + bytes > self.limit {
                return Err(Error::Overloaded(format!(
                    "request bodies being read and decoded already take {current} of the {} bytes allowed at once (--max-inflight-body-bytes); retry shortly",
                    self.limit
                )));
            }
            match self.in_use.compare_exchange_weak(
                current,
                current + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    return Ok(BodyPermit {
                        budget: Arc::clone(self),
                        bytes,
                    })
                }
                Err(now) => current = now,
            }
        }
    }
}

impl BodyBudget {
    /// 413 when one body of `bytes` alone is over the whole budget.
    fn fits(&self, bytes: usize) -> Result<(), Error> {
        if bytes > self.limit {
            return Err(Error::PayloadTooLarge(format!(
                "request body is {bytes} bytes; all bodies being read at once may take {} bytes (raise it with --max-inflight-body-bytes / PODIUM_MAX_INFLIGHT_BODY_BYTES)",
                self.limit
            )));
        }
        Ok(())
    }
}

impl BodyPermit {
    /// Grows the reservation to `bytes` (a body read without a declared length).
    pub fn grow_to(self, bytes: usize) -> Result<BodyPermit, Error> {
        if bytes <= self.bytes {
            return Ok(self);
        }
        self.budget.fits(bytes)?;
        let extra = self.budget.reserve(bytes - self.bytes)?;
        let mut merged = self;
        merged.bytes += extra.bytes;
        std::mem::forget(extra);
        Ok(merged)
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        self.budget.in_use.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_given_back() {
        let budget = BodyBudget::new(1000);
        let a = budget.reserve(600).unwrap();
        let refused = budget.reserve(500).unwrap_err();
        assert!(
            matches!(refused, Error::Overloaded(ref m) if m.contains("600 of the 1000")),
            "{refused}"
        );
        let b = budget.reserve(400).unwrap();
        assert_eq!(budget.in_use(), 1000);
        drop(a);
        let b = b.grow_to(900).unwrap();
        assert_eq!(budget.in_use(), 900);
        assert!(matches!(b.grow_to(1001), Err(Error::PayloadTooLarge(_))));
        assert_eq!(
            budget.in_use(),
            0,
            "a failed grow gives its permit back too"
        );
        assert!(
            matches!(budget.reserve(2000), Err(Error::PayloadTooLarge(ref m)) if m.contains("--max-inflight-body-bytes"))
        );
    }
}
