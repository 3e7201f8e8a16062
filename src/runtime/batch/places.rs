//! `max_concurrent_batches`: the places a loaded version's batches take
//! with the inference threads. A ready batch waits for a place behind the
//! batches held before it, still taking requests; a place is given back
//! when its batch's task ends, panics or is dropped unrun.

use super::{lock, Error, Key, Runner};

impl Runner {
    /// Sends batch `id` of `key` to the inference threads. Under
    /// `max_concurrent_batches` it goes behind the batches held before it,
    /// and is held (still taking requests) until a place is free; when as
    /// many batches are held as the inference queue holds tasks, its
    /// requests fail at once as overloaded.
    pub(super) fn ready(&self, key: &Key, id: u64) {
        if self.limit.is_none() {
            return self.hand_over(key, id, None);
        }
        {
            let mut queue = lock(&self.queue);
            let depth = self.executor.queue_depth();
            // With a place free, the batch goes at once: it is never refused.
            if queue.held.len() >= depth && queue.in_flight >= self.limit.unwrap_or(usize::MAX) {
                drop(queue);
                let e = Error::Overloaded(format!(
                    "{depth} batches of {} are waiting for one of its max_concurrent_batches places; retry shortly, or raise max_concurrent_batches",
                    self.model.label()
                ));
                return self.fail(key, id, &e);
            }
            queue.held.push_back((key.clone(), id));
        }
        self.pump();
    }

    /// Hands held batches over, oldest first, while places are free. One
    /// thread pumps at a time: a place freed meanwhile (by another thread,
    /// or by a hand-over below that fails) is seen by the loop's next look,
    /// so a run of failures is a loop, never a recursion.
    fn pump(&self) {
        let limit = self.limit.unwrap_or(usize::MAX);
        {
            let mut queue = lock(&self.queue);
            if queue.pumping {
                return;
            }
            queue.pumping = true;
        }
        loop {
            let next = {
                let mut queue = lock(&self.queue);
                let next = if queue.in_flight < limit {
                    queue.held.pop_front()
                } else {
                    None
                };
                match next {
                    Some(next) => {
                        queue.in_flight += 1;
                        next
                    }
                    None => {
                        queue.pumping = false;
                        return;
                    }
                }
            };
            self.hand_over(&next.0, next.1, Some(InFlight(self.clone())));
        }
    }

    /// A batch in flight has finished (or will never run): its place goes
    /// to the oldest held batch.
    pub(super) fn finished(&self) {
        {
            let mut queue = lock(&self.queue);
            queue.in_flight = queue.in_flight.saturating_sub(1);
        }
        self.pump();
    }
}

/// A batch's place under `max_concurrent_batches`: given up when dropped,
/// whether its task ran, panicked or was never run.
pub(super) struct InFlight(pub(super) Runner);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.finished();
    }
}
