//! Does a table's waiting on the disk on a thread of its own, so the writer
//! goes on taking rows: completing files, and the journals' periodic
//! `sync_data`.
//!
//! Completing a file encodes its last row group, syncs a file of up to
//! `--table-roll-bytes` and renames it: tens to hundreds of milliseconds,
//! more on a slow disk; a journal's sync took 0.2–0.25 s here at 80,000
//! rows a second. Done on the writer thread, they stalled it, and the
//! default queue (10,000 rows, 0.125 s at that rate) filled and dropped
//! rows.
//!
//! Promises:
//! - a file's journal is deleted only after the file is complete under its
//!   final name (by [`OpenFile::complete`]), so a crash while a file waits
//!   here loses nothing: recovery replays its journal;
//! - at most [`WAITING`] files wait for this thread; beyond that the writer
//!   waits (a disk that stopped answering still pushes back, and the memory
//!   of the row groups buffered in waiting files stays bounded);
//! - rows of a file that fails to complete are counted as dropped, and in
//!   the total of unconfirmed rows that acknowledgements are answered from;
//! - a journal has at most one sync waiting here ([`Journal::sync_due`]);
//!   a failed one is counted, and the writer then stops trusting that
//!   journal ([`Journal::sync_failed`]);
//! - on shutdown ([`Closer::finish`]) every file handed over is completed
//!   before it returns.
//!
//! [`Journal::sync_due`]: super::journal::Journal::sync_due
//! [`Journal::sync_failed`]: super::journal::Journal::sync_failed

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use super::failures::{panic_message, Failures};
use super::file::OpenFile;
use super::journal::JournalSync;

/// Files handed over and not yet being completed.
const WAITING: usize = 2;

/// What the closer thread is asked to do.
enum Job {
    Complete(Box<OpenFile>),
    /// Answered once every file handed over before it is complete.
    #[cfg(test)]
    Barrier(Sender<()>),
}

pub(super) struct Closer {
    tx: Option<Sender<Job>>,
    /// Unbounded, but each journal has at most one sync in it.
    syncs: Option<Sender<JournalSync>>,
    thread: Option<JoinHandle<()>>,
    /// Rows dropped or left unjournaled since start, by the writer and this
    /// thread together.
    unconfirmed: Arc<AtomicU64>,
    /// Held by a test to keep the thread from completing files.
    #[cfg(test)]
    gate: Arc<std::sync::Mutex<()>>,
}

impl Closer {
    /// Starts the thread of `table` (its name in log lines).
    pub fn start(
        dir: PathBuf,
        table: &'static str,
        metrics: &'static str,
        unconfirmed: Arc<AtomicU64>,
    ) -> Closer {
        let (tx, rx) = crossbeam_channel::bounded(WAITING);
        let (syncs, syncs_rx) = crossbeam_channel::unbounded();
        #[cfg(test)]
        let gate = Arc::new(std::sync::Mutex::new(()));
        // "inference-close", "feedback-close": within Linux's 15 bytes.
        let name = format!("{}-close", table.split(' ').next().unwrap_or(table));
        let thread = {
            let failures = Failures::new(dir, table, metrics);
            let unconfirmed = Arc::clone(&unconfirmed);
            #[cfg(test)]
            let gate = Arc::clone(&gate);
            std::thread::Builder::new().name(name).spawn(move || {
                run(
                    rx,
                    syncs_rx,
                    failures,
                    metrics,
                    unconfirmed,
                    #[cfg(test)]
                    gate,
                )
            })
        };
        let thread = thread
            .inspect_err(|e| tracing::error!("{table}: cannot start a thread to close files ({e}); files are closed by the writer"))
            .ok();
        Closer {
            tx: thread.as_ref().map(|_| tx),
            syncs: thread.as_ref().map(|_| syncs),
            thread,
            unconfirmed,
            #[cfg(test)]
            gate,
        }
    }

    /// Hands `file` over to be completed; waits only while [`WAITING`]
    /// files already wait. Without a thread, completes it here.
    pub fn close(&self, file: OpenFile, metrics: &'static str, failures: &mut Failures) {
        let file = match &self.tx {
            Some(tx) => match tx.send(Job::Complete(Box::new(file))) {
                Ok(()) => return,
                Err(crossbeam_channel::SendError(Job::Complete(file))) => *file,
                #[cfg(test)]
                Err(_) => unreachable!("only files are sent here"),
            },
            None => file,
        };
        complete(file, metrics, failures, &self.unconfirmed);
    }

    /// Hands a journal's sync over; without a thread, runs it here.
    pub fn sync(&self, sync: JournalSync, failures: &mut Failures) {
        let sync = match &self.syncs {
            Some(tx) => match tx.send(sync) {
                Ok(()) => return,
                Err(crossbeam_channel::SendError(sync)) => sync,
            },
            None => sync,
        };
        if let Err(e) = sync.run() {
            failures.journal_failed(&e);
        }
    }

    /// Completes every file handed over, and stops the thread.
    pub fn finish(&mut self) {
        self.tx = None;
        self.syncs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the thread that closes table files panicked");
            }
        }
    }

    /// Waits until every file handed over so far is complete.
    #[cfg(test)]
    pub fn wait(&self) {
        let (done, wait) = crossbeam_channel::bounded(1);
        if let Some(tx) = &self.tx {
            tx.send(Job::Barrier(done)).expect("the closer thread runs");
            wait.recv().expect("the closer thread answers");
        }
    }

    /// While a test holds this lock, the thread completes no file.
    #[cfg(test)]
    pub fn gate(&self) -> Arc<std::sync::Mutex<()>> {
        Arc::clone(&self.gate)
    }
}

impl Drop for Closer {
    fn drop(&mut self) {
        self.finish();
    }
}

fn run(
    rx: Receiver<Job>,
    syncs: Receiver<JournalSync>,
    mut failures: Failures,
    metrics: &'static str,
    unconfirmed: Arc<AtomicU64>,
    #[cfg(test)] gate: Arc<std::sync::Mutex<()>>,
) {
    let job = |job: Job, failures: &mut Failures| {
        #[cfg(test)]
        drop(gate.lock());
        match job {
            Job::Complete(file) => complete(*file, metrics, failures, &unconfirmed),
            #[cfg(test)]
            Job::Barrier(done) => {
                let _ = done.send(());
            }
        }
    };
    let sync = |sync: JournalSync, failures: &mut Failures| {
        if let Err(e) = sync.run() {
            failures.journal_failed(&e);
        }
    };
    // Both senders go at once ([`Closer::finish`]).
    loop {
        crossbeam_channel::select! {
            recv(rx) -> next => match next {
                Ok(next) => job(next, &mut failures),
                Err(_) => break,
            },
            recv(syncs) -> next => match next {
                Ok(next) => sync(next, &mut failures),
                Err(_) => break,
            },
            // Wakes now and then to log the last failures of a burst.
            default(Duration::from_secs(1)) => failures.tell_due(),
        }
    }
    for next in rx.iter() {
        job(next, &mut failures);
    }
    for next in syncs.try_iter() {
        sync(next, &mut failures);
    }
    failures.tell_due();
}

/// Completes `file`, counting it in the metrics, or its rows as dropped.
fn complete(
    file: OpenFile,
    metrics: &'static str,
    failures: &mut Failures,
    unconfirmed: &AtomicU64,
) {
    let rows = file.rows;
    let path = file.path.clone();
    // A panic in Parquet costs this file's rows, counted, not the thread
    // (and with it every later file and journal sync).
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| file.complete()))
        .unwrap_or_else(|panic| {
            Err(anyhow::anyhow!(
                "completing the file panicked: {}",
                panic_message(&panic)
            ))
        });
    match result {
        Ok(bytes) => {
            let name = |what: &str| format!("{metrics}_{what}");
            metrics::counter!(name("rows_written_total")).increment(rows as u64);
            metrics::counter!(name("files_total")).increment(1);
            metrics::counter!(name("bytes_total")).increment(bytes);
            tracing::debug!("{} ({rows} rows)", path.display());
        }
        Err(e) => {
            unconfirmed.fetch_add(rows as u64, Ordering::AcqRel);
            failures.dropped(rows, &e);
        }
    }
}
