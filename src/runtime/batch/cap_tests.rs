//! `max_concurrent_batches` on tokio's paused clock: held batches keep
//! growing, go oldest first, are bounded by the queue's depth, and a run of
//! refused hand-overs gives every place back.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::tests::{futures_sizes, request, send, settle, Held, Stand};
use super::*;
use crate::runtime::pool::Task;

fn capped(max: usize, delay_us: u64, preferred: Vec<usize>, limit: usize) -> Arc<Batcher> {
    let policy = BatchingPolicy::new("stand", max, delay_us, preferred)
        .unwrap()
        .with_max_concurrent_batches("stand", Some(limit))
        .unwrap();
    Arc::new(Batcher::on_tokio_clock(policy))
}

#[tokio::test(start_paused = true)]
async fn past_max_concurrent_batches_a_ready_batch_is_held_and_keeps_growing() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = capped(4, 200, vec![2], 1);
    let mut first: Vec<_> = (0..4)
        .map(|t| send(&batcher, &model, &held, request(t, 1, 1), vec![]))
        .collect();
    settle().await;
    // The second batch is ready at 2 rows, full at 4, and a third is past
    // its delay: with one batch in flight at a time, both wait their turn.
    let mut second: Vec<_> = (10..15)
        .map(|t| send(&batcher, &model, &held, request(t, 1, 1), vec![]))
        .collect();
    settle().await;
    tokio::time::advance(Duration::from_millis(5)).await;
    settle().await;
    let mut queued = vec![held.queued()];
    for _ in 0..3 {
        held.drain(); // each batch's end hands the oldest held one over
        settle().await;
        queued.push(held.queued());
    }
    assert_eq!(queued, [1, 1, 1, 0], "batches in flight after each run");
    assert_eq!(futures_sizes(&mut first).await, vec![Some(4); 4]);
    let mut want = vec![Some(4); 4];
    want.push(Some(1));
    assert_eq!(futures_sizes(&mut second).await, want);
    assert_eq!(model.runs(), vec![4, 4, 1]);
    assert_eq!(lock(&batcher.queue).in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn a_batch_task_dropped_unrun_gives_up_its_place() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = capped(2, 200, vec![], 1);
    let first: Vec<_> = (0..2)
        .map(|t| send(&batcher, &model, &held, request(t, 1, 1), vec![]))
        .collect();
    settle().await;
    let mut second: Vec<_> = (10..12)
        .map(|t| send(&batcher, &model, &held, request(t, 1, 1), vec![]))
        .collect();
    settle().await;
    let before = held.queued();
    // As a pool that stops drops the tasks it has not run.
    let dropped: Vec<Task> = std::mem::take(&mut *held.tasks.lock().unwrap());
    drop(dropped);
    let after = held.queued();
    held.drain();
    first.into_iter().for_each(|h| h.abort());
    assert_eq!(
        (before, after),
        (1, 1),
        "the held batch did not take the dropped one's place"
    );
    assert_eq!(futures_sizes(&mut second).await, vec![Some(2); 2]);
    assert_eq!(model.runs(), vec![2]);
}

#[tokio::test(start_paused = true)]
async fn held_batches_are_bounded_by_the_queue_depth() {
    let (model, held) = (Stand::new(1.0), Held::new(1));
    let batcher = capped(2, 200, vec![], 1);
    // A goes to the threads, B is held, C finds the one held place taken.
    let mut hs: Vec<_> = (0..6)
        .map(|t| send(&batcher, &model, &held, request(t, 1, 1), vec![]))
        .collect();
    settle().await;
    let c: Vec<_> = hs.drain(4..).collect();
    // Checked before awaiting: a batch held by mistake would hang the test.
    assert!(
        c.iter().all(|h| h.is_finished()),
        "C was not answered at once"
    );
    for h in c {
        let err = h.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Overloaded(_)), "{err}");
        assert!(err.to_string().contains("max_concurrent_batches"), "{err}");
    }
    held.drain();
    settle().await;
    held.drain();
    assert_eq!(futures_sizes(&mut hs).await, vec![Some(2); 4]);
    assert_eq!(model.runs(), vec![2, 2]);
}

#[tokio::test(start_paused = true)]
async fn refused_hand_overs_fail_their_batches_and_give_every_place_back() {
    let (model, held) = (Stand::new(1.0), Held::new(8));
    let batcher = capped(2, 200, vec![], 1);
    let mut first: Vec<_> = (0..2)
        .map(|t| send(&batcher, &model, &held, request(t, 1, 1), vec![]))
        .collect();
    settle().await;
    let rest: Vec<_> = (10..16)
        .map(|t| send(&batcher, &model, &held, request(t, 1, 1), vec![]))
        .collect();
    settle().await;
    // The first batch runs; each held one after it is refused in turn.
    held.refusing.store(true, Ordering::SeqCst);
    held.drain();
    settle().await;
    assert!(
        first.iter().chain(&rest).all(|h| h.is_finished()),
        "a request is still waiting after every hand-over was refused"
    );
    assert_eq!(futures_sizes(&mut first).await, vec![Some(2); 2]);
    for h in rest {
        let err = h.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Overloaded(_)), "{err}");
    }
    let queue = lock(&batcher.queue);
    assert_eq!(
        (queue.in_flight, queue.held.len(), queue.pumping),
        (0, 0, false)
    );
}
