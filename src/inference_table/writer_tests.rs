//! The writer's unit tests (beside it, not in it: writer.rs stays small).

use super::*;
use crate::inference_table::batch::Requests;
use crate::inference_table::test_rows::{named, parquet_rows, record, requests};
use crate::inference_table::TableOptions;
use std::path::PathBuf;

#[test]
fn each_row_goes_to_its_own_partition_whatever_came_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(
        TableOptions::new(dir.path()),
        Arc::new(AtomicUsize::new(0)),
        requests(),
    );
    // 2024-10-04 01:00 UTC plus whole days.
    let at = |days: u64| {
        std::time::SystemTime::UNIX_EPOCH + Duration::from_secs((20_000 + days) * 86_400 + 3_600)
    };
    for (endpoint, days) in [
        ("a", 0),
        ("a", 0),
        ("b", 0),
        ("a", 1),
        ("a", 1),
        ("b", 0),
        ("a", 0),
    ] {
        let mut row = record(10);
        row.endpoint = endpoint.into();
        row.received = at(days);
        w.add(row);
    }
    let mut rows: Vec<(String, usize)> = w
        .partitions
        .iter()
        .map(|(key, p)| (key.display().to_string(), p.pending.len()))
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            ("endpoint=a/request_date=2024-10-04".to_string(), 3),
            ("endpoint=a/request_date=2024-10-05".to_string(), 2),
            ("endpoint=b/request_date=2024-10-04".to_string(), 2),
        ]
    );
}

#[test]
fn big_rows_are_written_in_small_batches_and_files_roll_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = TableOptions::new(dir.path());
    options.roll_bytes = 10 * 1024 * 1024;
    let mut w = Writer::new(options, Arc::new(AtomicUsize::new(0)), requests());
    // Four 1 MiB bodies fill a batch long before 1024 rows.
    for _ in 0..4 {
        w.add(record(1024 * 1024));
    }
    let p = w.partitions.values().next().expect("one partition");
    assert!(
        p.pending.is_empty(),
        "{} rows still pending",
        p.pending.len()
    );
    assert_eq!(p.file.as_ref().map(|f| f.rows), Some(4));
    // Past --table-roll-bytes the file is closed and made visible.
    for _ in 0..8 {
        w.add(record(1024 * 1024));
    }
    w.closer.wait();
    let visible: Vec<_> = std::fs::read_dir(dir.path().join("endpoint=fraud"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    assert_eq!(visible.len(), 1, "{visible:?}");
}

/// (rows pending, rows in the open file and its journal) of each partition.
fn written(w: &Writer<Requests>) -> Vec<(usize, usize)> {
    w.partitions
        .values()
        .map(|p| (p.pending.len(), p.file.as_ref().map_or(0, |f| f.rows)))
        .collect()
}

#[test]
fn rows_wait_for_company_until_flush_unless_a_sender_waits() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Writer::new(
        TableOptions::new(dir.path()),
        Arc::new(AtomicUsize::new(0)),
        requests(),
    );
    for _ in 0..10 {
        w.add(record(100));
    }
    let now = Instant::now();
    // A tick before the oldest row is FLUSH old leaves the rows pending...
    w.write_due(now);
    assert_eq!(written(&w), [(10, 0)], "(pending, in the file)");
    assert!(named(dir.path(), ".arrows").is_empty(), "journal started");
    // ...the first tick after it writes them, file and journal.
    w.write_due(now + FLUSH);
    assert_eq!(written(&w), [(0, 10)], "(pending, in the file)");
    assert_eq!(named(dir.path(), ".arrows").len(), 1);
    // Rows after a write wait from their own arrival, not the first one's.
    w.add(record(100));
    let later = Instant::now();
    w.write_due(now + FLUSH);
    assert_eq!(written(&w), [(1, 10)], "(pending, in the file)");
    w.write_due(later + FLUSH);
    assert_eq!(written(&w), [(0, 11)], "(pending, in the file)");
    // A sender waiting for its rows has them written at the next tick.
    let (ack, answer) = tokio::sync::oneshot::channel();
    w.take(Message::Acked(vec![record(100), record(100)], ack));
    w.write_due(Instant::now());
    assert_eq!(written(&w), [(0, 13)], "(pending, in the file)");
    w.answer_acks();
    assert_eq!(answer.blocking_recv(), Ok(true), "rows confirmed written");
    // A full batch does not wait.
    for _ in 0..BATCH_ROWS {
        w.add(record(100));
    }
    assert_eq!(
        written(&w),
        [(0, 13 + BATCH_ROWS)],
        "(pending, in the file)"
    );
}

/// A writer of the inference table in `dir` whose files roll every 100 rows.
/// Rows `w` has taken and not yet closed: pending, or in open files.
fn taken(w: &Writer<Requests>) -> usize {
    w.partitions
        .values()
        .map(|p| p.pending.len() + p.file.as_ref().map_or(0, |f| f.rows))
        .sum()
}

fn rolling_every_100_rows(dir: &std::path::Path) -> Writer<Requests> {
    let mut options = TableOptions::new(dir);
    options.roll_rows = 100;
    Writer::new(options, Arc::new(AtomicUsize::new(0)), requests())
}

#[test]
fn the_writer_takes_rows_while_files_are_being_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = rolling_every_100_rows(dir.path());
    let gate = w.closer.gate();
    let paused = gate.lock().unwrap();
    let (fed, done) = crossbeam_channel::bounded(1);
    let (go_on, go) = crossbeam_channel::bounded(1);
    let feeder = std::thread::spawn(move || {
        // 250 rows: two full files handed to the closer, which cannot
        // complete them yet, and 50 rows in a third file.
        for _ in 0..250 {
            w.add(record(100));
        }
        w.write_all_pending();
        fed.send(()).unwrap();
        go.recv().unwrap();
        // Two more full files: one more may wait, the next one waits
        // for the closer.
        for _ in 0..200 {
            w.add(record(100));
        }
        fed.send(()).unwrap();
        w
    });
    done.recv_timeout(Duration::from_secs(60))
        .expect("the writer waited for files being closed instead of taking rows");
    let early = (
        named(dir.path(), ".parquet").len(),
        named(dir.path(), ".inprogress").len(),
        named(dir.path(), ".arrows").len(),
    );
    go_on.send(()).unwrap();
    // One file being completed and WAITING (2) waiting: the fourth
    // full file holds the writer back until the closer goes on.
    let held_back = done.recv_timeout(Duration::from_millis(500)).is_err();
    // The closer goes on before anything can fail (a failure here would
    // otherwise wait for it forever, dropping the writer).
    drop(paused);
    assert_eq!(
        early,
        (0, 3, 3),
        "(complete files, files being written, journals) while the closer waits"
    );
    assert!(
        held_back,
        "the writer handed over more files than WAITING allows"
    );
    done.recv_timeout(Duration::from_secs(60))
        .expect("the writer goes on once the closer does");
    let mut w = feeder.join().unwrap();
    let keys: Vec<_> = w.partitions.keys().cloned().collect();
    for key in keys {
        w.close_file(&key);
    }
    w.closer.finish();
    assert_eq!(named(dir.path(), ".parquet").len(), 5);
    assert_eq!(parquet_rows(dir.path()), 450);
    assert!(named(dir.path(), ".inprogress").is_empty());
    assert!(named(dir.path(), ".arrows").is_empty());
}

#[test]
fn a_file_that_fails_to_complete_keeps_its_rows_for_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = rolling_every_100_rows(dir.path());
    let gate = w.closer.gate();
    let paused = gate.lock().unwrap();
    // A full file, handed over to the closer.
    for _ in 0..100 {
        w.add(record(100));
    }
    // The disk loses it before it is complete: the rename fails.
    let written = named(dir.path(), ".inprogress");
    let lost = written.len() == 1 && std::fs::remove_file(&written[0]).is_ok();
    drop(paused);
    assert!(lost, "one file being written: {written:?}");
    w.closer.finish();
    assert_eq!(named(dir.path(), ".parquet"), Vec::<PathBuf>::new());
    assert_eq!(named(dir.path(), ".arrows").len(), 1, "the journal is kept");
    assert_eq!(w.unconfirmed.load(Ordering::Acquire), 100);
    drop(w);

    let recovered = Writer::new(
        TableOptions::new(dir.path()),
        Arc::new(AtomicUsize::new(0)),
        requests(),
    )
    .recover();
    assert_eq!(recovered.rows, 100);
    assert_eq!(parquet_rows(dir.path()), 100);
    assert!(named(dir.path(), ".arrows").is_empty());
}

#[test]
fn unique_columns_skip_the_dictionary_and_times_keep_their_statistics() {
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let mut w = rolling_every_100_rows(dir.path());
    for i in 0..100 {
        let mut row = record(2000);
        row.arm = Some("champion".into());
        row.total = Duration::from_micros(100 + i);
        row.execution = Some(Duration::from_micros(10 + i));
        row.queue = Some(Duration::from_micros(i));
        w.add(row);
    }
    w.closer.wait();
    let files = named(dir.path(), ".parquet");
    assert_eq!(files.len(), 1, "{files:?}");
    let reader = SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    let column = |name: &str| {
        group
            .columns()
            .iter()
            .find(|c| c.column_path().string() == name)
            .unwrap_or_else(|| panic!("no column {name}"))
    };
    let dictionary = |name: &str| {
        column(name)
            .encodings()
            .any(|e| matches!(e, Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY))
    };
    // One value per request: a dictionary would only repeat them.
    for name in [
        "request_id",
        "request",
        "request_time",
        "execution_duration_ms",
        "total_duration_ms",
        "queue_duration_ms",
    ] {
        assert!(!dictionary(name), "{name} is dictionary-encoded");
    }
    // A few values repeated on every row.
    assert!(dictionary("arm"), "arm is not dictionary-encoded");
    // Readers skip files by time.
    let times = column("request_time")
        .statistics()
        .expect("request_time statistics");
    assert!(times.min_bytes_opt().is_some() && times.max_bytes_opt().is_some());
    assert!(column("request").statistics().is_none());
    // Pages are cut at PAGE_BYTES: 100 bodies of 2,000 bytes (200 KB that
    // do not compress) take two pages (~128 KiB and the rest), where
    // Parquet's default of 1 MiB takes one.
    let index = group
        .columns()
        .iter()
        .position(|c| c.column_path().string() == "request")
        .unwrap();
    let pages = reader
        .get_row_group(0)
        .unwrap()
        .get_column_page_reader(index)
        .unwrap()
        .map(|page| page.unwrap())
        .filter(|page| !matches!(page.page_type(), parquet::basic::PageType::DICTIONARY_PAGE))
        .count();
    assert_eq!(pages, 2);
}

#[test]
fn a_helper_takes_rows_only_while_the_queue_backs_up() {
    use crate::inference_table::crew::Crew;
    use crate::inference_table::kind::RowKind;
    let dir = tempfile::tempdir().unwrap();
    let mut options = TableOptions::new(dir.path());
    options.queue_rows = 100;
    let queued = Arc::new(AtomicUsize::new(0));
    let crew = Crew::new(
        2,
        Arc::new(std::sync::atomic::AtomicBool::new(false)),
        options.queue_rows,
        options.queue_bytes,
    );
    let writer = |index| {
        Writer::new(options.clone(), Arc::clone(&queued), requests()).in_crew(index, crew.clone())
    };
    let (mut main, mut helper) = (writer(0), writer(1));
    let (tx, rx) = crossbeam_channel::unbounded();
    let send = |n: usize| {
        for _ in 0..n {
            let row = record(10);
            queued.fetch_add(<Requests as RowKind>::size(&row), Ordering::AcqRel);
            tx.send(Message::Row(Box::new(row))).unwrap();
        }
    };
    // The main writer keeps up: a helper leaves the rows alone...
    send(24);
    assert_eq!(helper.drain(&rx), Drained::Empty);
    assert_eq!((rx.len(), taken(&helper)), (24, 0));
    // ...until a quarter of the queue's 100 rows wait: then it takes them all.
    send(1);
    assert_eq!(helper.drain(&rx), Drained::Empty);
    assert_eq!((rx.len(), taken(&helper)), (0, 25));
    // The main writer takes even a single row.
    send(1);
    assert_eq!(main.drain(&rx), Drained::Empty);
    assert_eq!((rx.len(), taken(&main)), (0, 1));
    // A close ends the drain of the writer that reads it; the others see
    // the table's closing flag.
    tx.send(Message::Close).unwrap();
    assert_eq!(main.drain(&rx), Drained::Closed);
    // Once the main writer is gone a helper takes every row, and sees the
    // queue's end.
    drop(crew.running(0, crate::inference_table::crew::Role::Main, "test table"));
    send(1);
    assert_eq!(helper.drain(&rx), Drained::Empty);
    assert_eq!((rx.len(), taken(&helper)), (0, 26));
    drop(tx);
    assert_eq!(helper.drain(&rx), Drained::Closed);
}

#[test]
fn in_a_flood_a_quiet_partition_is_still_written_after_its_hold() {
    let dir = tempfile::tempdir().unwrap();
    let queued = Arc::new(AtomicUsize::new(0));
    let mut w = Writer::new(
        TableOptions::new(dir.path()),
        Arc::clone(&queued),
        requests(),
    );
    // A quiet endpoint's row waits for company...
    let mut quiet = record(10);
    quiet.endpoint = "quiet".into();
    w.add(quiet);
    // ...while another endpoint floods the queue.
    let (tx, rx) = crossbeam_channel::unbounded();
    for _ in 0..DRAIN_MAX + 5 {
        let row = record(10);
        queued.fetch_add(row.size(), Ordering::AcqRel);
        tx.send(Message::Row(Box::new(row))).unwrap();
    }
    let pending_quiet = |w: &Writer<Requests>| {
        w.partitions
            .iter()
            .find(|(key, _)| key.starts_with("endpoint=quiet"))
            .map(|(_, p)| (p.pending.len(), p.file.as_ref().map_or(0, |f| f.rows)))
    };
    // One tick after the hold: it takes a slice of the flood, and the quiet
    // row is written (to its file and journal) before the rest is taken.
    assert_eq!(w.tick(&rx, Instant::now() + FLUSH), Drained::More);
    assert_eq!(rx.len(), 5);
    assert_eq!(pending_quiet(&w), Some((0, 1)));
    assert_eq!(w.tick(&rx, Instant::now()), Drained::Empty);
    assert!(rx.is_empty());
    assert_eq!(taken(&w), DRAIN_MAX + 5 + 1);
}
