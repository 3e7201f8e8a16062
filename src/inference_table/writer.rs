//! The writer thread of a table of any [`RowKind`]: renders rows, batches
//! them per partition (`endpoint=<e>/request_date=<d>` for the inference
//! table) into Arrow record batches, and rolls Parquet files by rows, bytes
//! and age.
//!
//! A table may have several writers on one queue ([`Role`]): the main one
//! takes every row; helpers join in only while the queue backs up, each
//! with files of its own, so a table keeps up with a many-core server
//! without splitting a quiet table's partitions into several files.
//!
//! A file is written under a hidden temporary name (`.part-….inprogress`)
//! and renamed when complete ([`OpenFile`]), so readers only ever see whole
//! files; completing it happens on the [`Closer`]'s thread while the writer
//! goes on. Rows reach the open file and its [`journal`](super::journal)
//! within [`FLUSH`] and a tick of arriving (0.12 s), so a crash of the
//! process loses at most those (what reached the journal is recovered at
//! the next start). A write error drops the rows of that
//! file (counted; if the file was journaled and only failed to complete,
//! its journal stays for the next start to recover) and the next rows
//! start a new file; requests never notice. Rows sent with an
//! acknowledgement ([`Message::Acked`]) are answered once they are in the
//! open file and its journal (or were dropped), so the sender can promise a
//! client they survive a crash.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::SchemaRef;
use crossbeam_channel::{Receiver, TryRecvError};
use parquet::file::properties::WriterProperties;

use super::closer::Closer;
use super::crew::{Crew, Role};
use super::failures::{panic_message, Failures};
use super::file::OpenFile;
use super::kind::RowKind;
use super::message::{Ack, Message};
use super::partition::{Partition, PartitionKey};
use super::properties::properties;
use super::TableOptions;

/// Rows rendered and handed to the Parquet writer at a time...
const BATCH_ROWS: usize = 1024;

/// ...or fewer, once their bodies hold this many bytes: bounds the writer's
/// memory per partition, and keeps a batch's text columns far below Arrow's
/// 2 GiB per column (rendered JSON is up to ~6x the raw tensor bytes).
const BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How often an idle writer drains the queue and writes what arrived to
/// the open files and their journals (a busy one goes on at once, see
/// [`DRAIN_MAX`]). At the default queue of 10,000 rows this absorbs bursts
/// of up to 500,000 rows a second.
const TICK: Duration = Duration::from_millis(20);

/// Messages a writer takes from the queue before it sees to its tick's
/// other work (writing partitions whose rows waited [`FLUSH`], syncing
/// journals, rolling files by age, gauges): while the queue never empties
/// (rows arrive faster than it writes them) that work would otherwise wait
/// for the flood to end, and a quiet partition's rows with it.
const DRAIN_MAX: usize = 8 * BATCH_ROWS;

/// What one drain of the queue found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Drained {
    /// It took everything there was to take (or, a helper, nothing).
    Empty,
    /// It took [`DRAIN_MAX`] messages; more may wait (the writer goes on
    /// without sleeping).
    More,
    /// The table closes.
    Closed,
}

/// How long rows wait in the writer for company before they are written,
/// unless a batch fills first or a sender waits for its acknowledgement. At
/// a server's pace (~10,000 rows a second) a tick brings a few hundred rows,
/// and writing each tick's rows as their own batch (26 Parquet columns and
/// a journal message) cost ~1 µs more writer CPU per row than batches that
/// wait this long (`benches/table_writer` at 13,000 rows a second: 10-15%
/// of the writer on varied bodies, ~25% on identical ones).
const FLUSH: Duration = Duration::from_millis(100);

pub(super) struct Writer<K: RowKind> {
    options: TableOptions,
    queued_bytes: Arc<AtomicUsize>,
    schema: SchemaRef,
    properties: WriterProperties,
    partitions: HashMap<PartitionKey, Partition<K::Row>>,
    kind: K,
    failures: Failures,
    last_gauges: Instant,
    /// Senders waiting for their rows to be written, with
    /// [`Writer::unconfirmed`] when their rows arrived.
    acks: Vec<(Ack, u64)>,
    /// Rows since start that were dropped by a failed write, or written to
    /// a file whose journal failed (a crash would lose them); the closer
    /// adds those of files that fail to complete.
    unconfirmed: Arc<AtomicU64>,
    closer: Closer,
    /// The partition of the last row added (a row goes there only when
    /// [`RowKind::same_partition`] says so).
    last: Option<PartitionKey>,
    role: Role,
    /// This writer's place in `crew.oldest`.
    index: usize,
    crew: Crew,
}

impl<K: RowKind> Writer<K> {
    pub(super) fn new(options: TableOptions, queued_bytes: Arc<AtomicUsize>, kind: K) -> Writer<K> {
        let properties = properties::<K>(&options);
        let unconfirmed = Arc::new(AtomicU64::new(0));
        let (queue_rows, queue_bytes) = (options.queue_rows, options.queue_bytes);
        Writer {
            closer: Closer::start(
                options.dir.clone(),
                K::NAME,
                K::METRICS,
                Arc::clone(&unconfirmed),
            ),
            failures: Failures::new(options.dir.clone(), K::NAME, K::METRICS),
            options,
            queued_bytes,
            schema: kind.schema(),
            properties,
            partitions: HashMap::new(),
            kind,
            last_gauges: Instant::now(),
            acks: Vec::new(),
            unconfirmed,
            last: None,
            role: Role::Main,
            index: 0,
            crew: Crew::new(1, Arc::new(AtomicBool::new(false)), queue_rows, queue_bytes),
        }
    }

    /// This writer as number `index` of `crew` (0 is the main writer).
    pub(super) fn in_crew(mut self, index: usize, crew: Crew) -> Writer<K> {
        debug_assert!(index < crew.writers(), "writer {index} of a smaller crew");
        self.role = if index == 0 { Role::Main } else { Role::Helper };
        self.index = index.min(crew.writers() - 1);
        self.crew = crew;
        self
    }

    /// Recovers what a crash left in the table directory (see
    /// [`super::recovery`]); before the writer starts.
    pub(super) fn recover(&self) -> super::recovery::Recovered {
        super::recovery::recover(
            &self.options.dir,
            K::NAME,
            K::PARTITION,
            &self.schema,
            &self.properties,
        )
    }

    pub(super) fn run(mut self, rx: Receiver<Message<K::Row>>) {
        // The thread wakes on a timer and drains what arrived, rather than
        // being woken for every row: a wake-up per row would put a futex
        // call (and, on an idle core, tens of microseconds) on every request.
        let _running = self.crew.running(self.index, self.role, K::NAME);
        loop {
            let drained = self.tick(&rx, Instant::now());
            if drained == Drained::Closed || self.crew.closing.load(Ordering::Acquire) {
                break;
            }
            if drained == Drained::Empty {
                std::thread::sleep(self.next_deadline().min(TICK));
            }
        }
        // Rows that raced with the close are still written, also those that
        // arrive while the files are being closed; rows after the receiver
        // is gone are counted as dropped (`closed`) by the sender.
        loop {
            while let Ok(message) = rx.try_recv() {
                self.take(message);
            }
            let keys: Vec<_> = self.partitions.keys().cloned().collect();
            for key in keys {
                self.close_file(&key);
            }
            if rx.is_empty() {
                break;
            }
        }
        // Rows sent from now on are refused (`closed`) rather than left in
        // a queue nobody reads, once every writer has let go of it.
        drop(rx);
        self.closer.finish();
        self.answer_acks();
        self.gauges(0);
        self.failures.tell_due();
        tracing::info!("{} closed", K::NAME);
    }

    /// One tick, at `now`: a drain of the queue, then (unless the table
    /// closes) the partitions due are written, acknowledgements answered,
    /// files due rolled and, every 200 ms, the gauges set.
    pub(super) fn tick(&mut self, rx: &Receiver<Message<K::Row>>, now: Instant) -> Drained {
        let drained = self.drain(rx);
        if drained == Drained::Closed {
            return drained;
        }
        self.write_due(now);
        self.answer_acks();
        self.roll_due();
        if self.last_gauges.elapsed() >= Duration::from_millis(200) {
            self.gauges(rx.len());
            self.failures.tell_due();
        }
        drained
    }

    /// A tick's rows from the queue, as this writer's [`Role`] takes them,
    /// at most [`DRAIN_MAX`] messages.
    pub(super) fn drain(&mut self, rx: &Receiver<Message<K::Row>>) -> Drained {
        let bytes = self.queued_bytes.load(Ordering::Acquire);
        if !self.crew.takes(self.role, rx.len(), bytes) {
            return Drained::Empty;
        }
        for _ in 0..DRAIN_MAX {
            match rx.try_recv() {
                Ok(Message::Close) | Err(TryRecvError::Disconnected) => return Drained::Closed,
                Ok(message) => self.take(message),
                Err(TryRecvError::Empty) => return Drained::Empty,
            }
        }
        Drained::More
    }

    /// Adds the rows of one message (a close is handled by the caller).
    fn take(&mut self, message: Message<K::Row>) {
        match message {
            Message::Row(row) => {
                let size = K::size(&row);
                self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                self.add_sized(*row, size);
            }
            Message::Acked(rows, ack) => {
                let size: usize = rows.iter().map(K::size).sum();
                self.queued_bytes.fetch_sub(size, Ordering::AcqRel);
                // Before the rows go in: a failure while adding them (a
                // file that fills and fails) must answer their sender "not
                // written".
                let before = self.unconfirmed.load(Ordering::Acquire);
                for row in rows {
                    self.add(row);
                }
                self.acks.push((ack, before));
            }
            Message::Close => {}
        }
    }

    /// Tells each waiting sender whether its rows were written: every row
    /// taken so far is in a file and its journal, or was not. Any row not
    /// confirmed since a sender's rows arrived answers it "not written" (its
    /// rows may be among them; a retry at worst writes a row twice, never
    /// loses one).
    fn answer_acks(&mut self) {
        let unconfirmed = self.unconfirmed.load(Ordering::Acquire);
        for (ack, before) in self.acks.drain(..) {
            let _ = ack.send(unconfirmed == before);
        }
    }

    /// Writes every partition's pending rows to its open file and journal,
    /// and has the journals that are due synced.
    pub(super) fn write_all_pending(&mut self) {
        self.write_pending_since(None);
    }

    /// What a tick writes, `now`: every partition's pending rows when a
    /// sender waits for an acknowledgement, else those of the partitions
    /// whose oldest pending row is [`FLUSH`] old.
    fn write_due(&mut self, now: Instant) {
        if self.acks.is_empty() {
            // (`None` only within FLUSH of the clock's origin: write all.)
            self.write_pending_since(now.checked_sub(FLUSH));
        } else {
            self.write_all_pending();
        }
    }

    /// Writes the pending rows of every partition whose oldest pending row
    /// arrived at or before `cutoff` (any, with `None`), and has the journals
    /// that are due synced.
    fn write_pending_since(&mut self, cutoff: Option<Instant>) {
        let keys: Vec<_> = self
            .partitions
            .iter()
            .filter(|(_, p)| {
                p.pending_since
                    .is_some_and(|t| cutoff.is_none_or(|cutoff| t <= cutoff))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            self.write_pending(&key);
        }
        for p in self.partitions.values_mut() {
            let Some(file) = p.file.as_mut() else {
                continue;
            };
            let Some(journal) = file.journal.as_mut() else {
                continue;
            };
            if journal.sync_failed() {
                // Counted by the closer; rows go on to Parquet alone. The
                // journal may lack any of the file's rows, so a crash before
                // the file completes can lose them all: waiting senders are
                // answered "not written".
                file.forget_journal();
                self.unconfirmed
                    .fetch_add(file.rows as u64, Ordering::AcqRel);
            } else if let Some(sync) = journal.sync_due() {
                self.closer.sync(sync, &mut self.failures);
            }
        }
    }

    pub(super) fn add(&mut self, record: K::Row) {
        let size = K::size(&record);
        self.add_sized(record, size);
    }

    /// [`Writer::add`] of a row whose [`RowKind::size`] is `size`.
    fn add_sized(&mut self, record: K::Row, size: usize) {
        // Nearly every row goes where the one before it went: compare the
        // two rather than build the folder's name for each row.
        let key = match self.last.take() {
            Some(last)
                if self
                    .partitions
                    .get(&last)
                    .and_then(|p| p.pending.last())
                    .is_some_and(|prev| self.kind.same_partition(prev, &record)) =>
            {
                last
            }
            _ => PartitionKey(self.kind.partition(&record).into_os_string().into()),
        };
        let p = self
            .partitions
            .entry(key.clone())
            .or_insert_with(Partition::new);
        if p.pending_since.is_none() {
            let now = Instant::now();
            p.pending_since = Some(now);
            p.oldest.get_or_insert(now);
        }
        p.pending_bytes += size;
        p.pending.push(record);
        let batch_full = p.pending.len() >= BATCH_ROWS || p.pending_bytes >= BATCH_BYTES;
        let file_full =
            p.pending.len() + p.file.as_ref().map_or(0, |f| f.rows) >= self.options.roll_rows;
        if batch_full {
            self.write_pending(&key);
            let full = self
                .partitions
                .get(&key)
                .and_then(|p| p.file.as_ref())
                .is_some_and(|f| {
                    f.rows >= self.options.roll_rows || f.size() >= self.options.roll_bytes
                });
            if full {
                self.close_file(&key);
            }
        } else if file_full {
            self.close_file(&key);
        }
        self.last = Some(key);
    }

    /// Time until the next file is due to close.
    fn next_deadline(&self) -> Duration {
        self.partitions
            .values()
            .filter_map(|p| p.oldest)
            .map(|t| self.options.roll_interval.saturating_sub(t.elapsed()))
            .min()
            .unwrap_or(Duration::from_secs(3600))
            .max(Duration::from_millis(1))
    }

    fn roll_due(&mut self) {
        let due: Vec<_> = self
            .partitions
            .iter()
            .filter(|(_, p)| {
                p.oldest
                    .is_some_and(|t| t.elapsed() >= self.options.roll_interval)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.close_file(&key);
        }
    }

    /// Renders the pending rows of `key` into its open file (opening one).
    fn write_pending(&mut self, key: &PartitionKey) {
        let Some(p) = self.partitions.get_mut(key) else {
            return;
        };
        if p.pending.is_empty() {
            return;
        }
        // Partitions fill at a steady pace: room for as many rows as last
        // time saves growing the row vector (rows are large) batch by batch.
        let n = p.pending.len();
        let rows = std::mem::replace(&mut p.pending, Vec::with_capacity(n));
        p.pending_bytes = 0;
        p.pending_since = None;
        // A panic in Arrow or Parquet (a limit we did not foresee) costs
        // this file's rows, counted like a write error, not the writer thread.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| -> anyhow::Result<()> {
                let batch = self.kind.batch(&self.schema, rows)?;
                if p.file.is_none() {
                    p.file = Some(OpenFile::create(
                        &self.options.dir,
                        &self.options.replica,
                        key,
                        &self.schema,
                        self.properties.clone(),
                        &mut self.failures,
                    )?);
                }
                let file = p.file.as_mut().expect("opened above");
                file.writer.write(&batch)?;
                file.rows += n;
                if let Some(Err(e)) = file.journal.as_mut().map(|j| j.append(&batch)) {
                    // The file's earlier rows lose the journal's protection
                    // too (this batch's are counted below).
                    file.forget_journal();
                    self.unconfirmed
                        .fetch_add((file.rows - n) as u64, Ordering::AcqRel);
                    self.failures.journal_failed(&e);
                }
                if file.journal.is_some() {
                    metrics::counter!(format!("{}_rows_journaled_total", K::METRICS))
                        .increment(n as u64);
                } else {
                    self.unconfirmed.fetch_add(n as u64, Ordering::AcqRel);
                }
                Ok(())
            }))
            .unwrap_or_else(|panic| {
                Err(anyhow::anyhow!(
                    "the Parquet writer panicked: {}",
                    panic_message(&panic)
                ))
            });
        if let Err(e) = result {
            self.fail(key, n, e);
        }
    }

    /// Writes what is pending and hands the file to the closer, which
    /// completes it and makes it visible; the partition's next row starts a
    /// new file.
    fn close_file(&mut self, key: &PartitionKey) {
        self.write_pending(key);
        if let Some(file) = self.partitions.remove(key).and_then(|p| p.file) {
            self.closer.close(file, K::METRICS, &mut self.failures);
        }
    }

    /// Drops the rows of a partition that could not be written.
    fn fail(&mut self, key: &PartitionKey, pending_rows: usize, e: anyhow::Error) {
        let mut rows = pending_rows;
        if let Some(file) = self.partitions.remove(key).and_then(|p| p.file) {
            rows += file.rows;
            file.discard();
        }
        self.unconfirmed.fetch_add(rows as u64, Ordering::AcqRel);
        self.failures.dropped(rows, &e);
    }

    fn gauges(&mut self, queued: usize) {
        self.last_gauges = Instant::now();
        let name = |what: &str| format!("{}_{what}", K::METRICS);
        if self.role == Role::Main || self.crew.main_gone() {
            metrics::gauge!(name("queue_rows")).set(queued as f64);
            metrics::gauge!(name("queue_bytes"))
                .set(self.queued_bytes.load(Ordering::Acquire) as f64);
        }
        let mine = self.partitions.values().filter_map(|p| p.oldest).min();
        self.crew.set_oldest(self.index, mine);
        metrics::gauge!(name("oldest_unflushed_seconds")).set(self.crew.oldest_age());
    }
}

#[cfg(test)]
#[path = "writer_tests.rs"]
mod tests;
