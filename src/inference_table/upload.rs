//! The uploader of a table on object storage: the writer completes files in
//! a local spool (same partitions and names as a local table, with its
//! journal and recovery), and this thread uploads each complete file to
//! `<prefix>/<partition>/<name>` and then deletes it from the spool.
//!
//! Promises:
//! - an object appears only when whole: a small file is one `PUT`, a larger
//!   one a multipart upload that becomes visible only once completed (and
//!   is aborted on failure), so a reader never sees a partial object;
//! - a file leaves the spool only after its upload succeeded, so what was
//!   acknowledged survives an outage and a crash (the next start uploads
//!   the leftovers; a crash between the upload and the deletion uploads
//!   the same key again, with the same content);
//! - requests never wait: a failed upload is retried with back-off
//!   ([`RETRY_MIN`] doubling to [`RETRY_MAX`]) while the spool fills; once
//!   it holds `--table-spool-max-bytes` of complete files, the table drops
//!   new rows (`podium_table_rows_dropped_total{reason="spool_full"}`)
//!   until uploads catch up;
//! - on shutdown it uploads what the writer closed, within the drain
//!   budget; what it could not upload stays in the spool for the next start.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

use super::remote::{self, Remote};

/// How often the spool is looked at for newly completed files.
const SCAN_EVERY: Duration = Duration::from_secs(1);

/// The first wait after a failed upload...
const RETRY_MIN: Duration = Duration::from_millis(500);

/// ...doubling up to this.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// Files up to this size are uploaded with one `PUT`; larger ones in parts
/// of this size (S3's minimum part is 5 MiB).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Parts of one file in flight at once.
const PARTS_IN_FLIGHT: usize = 2;

/// At most one log line about failing uploads this often.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// The running uploader of one table.
pub(super) struct Uploader {
    drain: Sender<Instant>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Uploader {
    /// Opens the store of `remote` (configuration errors stop the start)
    /// and starts the thread that uploads the complete files of `spool`.
    /// `spool_full` is raised while the spool is over its bound.
    pub fn start(
        spool: &Path,
        remote: &Remote,
        table: &'static str,
        metrics: &'static str,
        spool_full: Arc<AtomicBool>,
    ) -> anyhow::Result<Uploader> {
        let (store, prefix) = remote::open(&remote.url)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (drain, drained) = crossbeam_channel::bounded(1);
        let state = State {
            spool: spool.to_path_buf(),
            url: remote.url.clone(),
            max_bytes: remote.spool_max_bytes,
            store,
            prefix,
            table,
            metrics,
            spool_full,
            last_line: None,
            untold: 0,
        };
        let thread = std::thread::Builder::new()
            .name("podium-upload".into())
            .spawn(move || state.run(&runtime, &drained))?;
        tracing::info!(
            "{table}: uploaded to {} from the spool {}",
            remote.url,
            spool.display()
        );
        Ok(Uploader {
            drain,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Uploads every complete file left in the spool, trying until
    /// `deadline`, and stops; what is still not uploaded then stays in the
    /// spool (logged) for the next start. Call after the writer closed.
    pub async fn finish(&self, deadline: Instant) {
        let _ = self.drain.try_send(deadline);
        let Some(thread) = self.thread.lock().ok().and_then(|mut t| t.take()) else {
            return;
        };
        let joined = tokio::task::spawn_blocking(move || thread.join());
        // The thread gives up at the deadline; the margin covers a request
        // that was in flight then.
        let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
        if tokio::time::timeout(wait, joined).await.is_err() {
            tracing::error!(
                "the table uploader did not stop in time; files not uploaded stay in the spool for the next start"
            );
        }
    }
}

/// The uploader thread's state.
struct State {
    spool: PathBuf,
    url: String,
    max_bytes: u64,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    table: &'static str,
    metrics: &'static str,
    spool_full: Arc<AtomicBool>,
    last_line: Option<Instant>,
    /// Failed uploads not told in the log yet.
    untold: u64,
}

impl State {
    fn run(mut self, runtime: &tokio::runtime::Runtime, drain: &Receiver<Instant>) {
        let mut retry = RETRY_MIN;
        let mut deadline: Option<Instant> = None;
        loop {
            let failed = self.upload_all(runtime, deadline);
            let mut wait = if failed { retry } else { SCAN_EVERY };
            retry = if failed {
                (retry * 2).min(RETRY_MAX)
            } else {
                RETRY_MIN
            };
            if let Some(d) = deadline {
                let left = pending(&self.spool);
                if left.is_empty() || Instant::now() >= d {
                    self.finished(&left);
                    return;
                }
                wait = wait.min(d.saturating_duration_since(Instant::now()));
            }
            match drain.recv_timeout(wait) {
                Ok(d) => deadline = Some(d),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    deadline.get_or_insert_with(Instant::now);
                }
            }
        }
    }

    /// Uploads the complete files of the spool, oldest first, until one
    /// fails (true) or all are done (false).
    fn upload_all(&mut self, runtime: &tokio::runtime::Runtime, deadline: Option<Instant>) -> bool {
        let files = pending(&self.spool);
        let mut left: u64 = files.iter().map(|(_, size)| size).sum();
        self.gauge(left);
        for (path, size) in files {
            let upload = self.upload(&path);
            let result = runtime.block_on(async {
                match deadline {
                    None => upload.await,
                    Some(d) => {
                        tokio::time::timeout(d.saturating_duration_since(Instant::now()), upload)
                            .await
                            .unwrap_or_else(|_| Err(anyhow::anyhow!("the drain budget ran out")))
                    }
                }
            });
            match result {
                Ok(()) => {
                    if let Err(e) = std::fs::remove_file(&path) {
                        // Uploaded again later: the same key, the same bytes.
                        tracing::warn!(
                            "{}: cannot delete the uploaded {}: {e}",
                            self.table,
                            path.display()
                        );
                    }
                    metrics::counter!(format!("{}_files_uploaded_total", self.metrics))
                        .increment(1);
                    metrics::counter!(format!("{}_bytes_uploaded_total", self.metrics))
                        .increment(size);
                    left = left.saturating_sub(size);
                    self.gauge(left);
                    self.recovered();
                }
                Err(e) => {
                    metrics::counter!(format!("{}_upload_errors_total", self.metrics)).increment(1);
                    self.failed(&path, &e);
                    return true;
                }
            }
        }
        false
    }

    /// Uploads one file to its key; never leaves a partial object there.
    async fn upload(&self, path: &Path) -> anyhow::Result<()> {
        let key = self.key(path)?;
        let mut file = File::open(path)?;
        let size = file.metadata()?.len();
        if size as usize <= PART_BYTES {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes)?;
            self.store.put(&key, Bytes::from(bytes).into()).await?;
            return Ok(());
        }
        let mut upload =
            WriteMultipart::new_with_chunk_size(self.store.put_multipart(&key).await?, PART_BYTES);
        let mut part = vec![0; PART_BYTES];
        let sent = async {
            loop {
                let n = read_full(&mut file, &mut part)?;
                if n == 0 {
                    return anyhow::Ok(());
                }
                upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
                upload.write(&part[..n]);
            }
        }
        .await;
        match sent {
            // `finish` completes the upload, or aborts it on failure.
            Ok(()) => {
                upload.finish().await?;
                Ok(())
            }
            Err(e) => {
                let _ = upload.abort().await;
                Err(e)
            }
        }
    }

    /// The object key of a spool file: the prefix, then its partition
    /// folders and name.
    fn key(&self, path: &Path) -> anyhow::Result<ObjectPath> {
        let relative = path.strip_prefix(&self.spool)?;
        let mut key = self.prefix.clone();
        for part in relative.iter() {
            let part = part
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("{} is not a text name", path.display()))?;
            key = key.clone().join(part);
        }
        Ok(key)
    }

    fn gauge(&mut self, bytes: u64) {
        metrics::gauge!(format!("{}_spool_bytes", self.metrics)).set(bytes as f64);
        let full = bytes >= self.max_bytes;
        if full != self.spool_full.swap(full, Ordering::AcqRel) {
            if full {
                tracing::error!(
                    "{}: the spool {} holds {bytes} bytes not yet uploaded to {} (--table-spool-max-bytes {}); new rows are dropped (podium_table_rows_dropped_total{{reason=\"spool_full\"}}) until uploads catch up",
                    self.table,
                    self.spool.display(),
                    self.url,
                    self.max_bytes
                );
            } else {
                tracing::warn!(
                    "{}: the spool is below --table-spool-max-bytes again; rows are written",
                    self.table
                );
            }
        }
    }

    fn failed(&mut self, path: &Path, e: &anyhow::Error) {
        self.untold += 1;
        if self.last_line.is_some_and(|t| t.elapsed() < LOG_EVERY) {
            return;
        }
        self.last_line = Some(Instant::now());
        tracing::error!(
            "{}: {} uploads to {} failed since the last message, retried with back-off (the files wait in {}); the latest, {}: {e:#}; {}",
            self.table,
            std::mem::take(&mut self.untold),
            self.url,
            self.spool.display(),
            path.display(),
            remote::hint(&self.url)
        );
    }

    /// An upload succeeded after failures: said once.
    fn recovered(&mut self) {
        if self.last_line.take().is_some() {
            self.untold = 0;
            tracing::warn!("{}: uploads to {} succeed again", self.table, self.url);
        }
    }

    fn finished(&self, left: &[(PathBuf, u64)]) {
        if left.is_empty() {
            tracing::info!("{}: every file is uploaded to {}", self.table, self.url);
            return;
        }
        let bytes: u64 = left.iter().map(|(_, size)| size).sum();
        tracing::error!(
            "{}: {} files ({bytes} bytes) could not be uploaded to {} before exiting; they stay in {} and are uploaded at the next start",
            self.table,
            left.len(),
            self.url,
            self.spool.display()
        );
    }
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            read => n += read,
        }
    }
    Ok(n)
}

/// The complete files of `spool` waiting for upload, with their sizes,
/// oldest first. Folders starting with `_` are not partitions (`_journal`,
/// and the feedback table, which uploads its own); files starting with `.`
/// are being written.
fn pending(spool: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    walk(spool, &mut out);
    out.sort_by_key(|(path, size, modified)| (*modified, path.clone(), *size));
    out.into_iter()
        .map(|(path, size, _)| (path, size))
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64, std::time::SystemTime)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() && !name.starts_with('_') {
            walk(&entry.path(), out);
        } else if kind.is_file() && !name.starts_with('.') && name.ends_with(".parquet") {
            if let Ok(meta) = entry.metadata() {
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                out.push((entry.path(), meta.len(), modified));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;
    use object_store::RetryConfig;

    use super::*;

    fn state(spool: &Path, store: Arc<dyn ObjectStore>, max_bytes: u64) -> State {
        State {
            spool: spool.to_path_buf(),
            url: "s3://bucket/t".into(),
            max_bytes,
            store,
            prefix: ObjectPath::from("t"),
            table: "inference table",
            metrics: "podium_table",
            spool_full: Arc::new(AtomicBool::new(false)),
            last_line: None,
            untold: 0,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn small_and_multipart_files_arrive_whole_at_their_keys_and_leave_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let partition = dir.path().join("endpoint=fraud/request_date=2026-11-27");
        std::fs::create_dir_all(&partition).unwrap();
        let big: Vec<u8> = (0..PART_BYTES * 2 + 12345)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(partition.join("part-big.parquet"), &big).unwrap();
        std::fs::write(partition.join("part-small.parquet"), b"small").unwrap();
        let store = Arc::new(InMemory::new());
        let mut uploader = state(dir.path(), store.clone(), u64::MAX);

        let rt = runtime();
        assert!(!uploader.upload_all(&rt, None), "nothing failed");
        let read = |key: &str| {
            rt.block_on(async { store.get(&ObjectPath::from(key)).await?.bytes().await })
                .unwrap()
        };
        let key = "t/endpoint=fraud/request_date=2026-11-27";
        assert_eq!(read(&format!("{key}/part-big.parquet")), big);
        assert_eq!(
            read(&format!("{key}/part-small.parquet")).as_ref(),
            b"small"
        );
        assert!(pending(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_upload_keeps_the_file_and_a_full_spool_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let partition = dir.path().join("endpoint=fraud/request_date=2026-11-27");
        std::fs::create_dir_all(&partition).unwrap();
        std::fs::write(partition.join("part-a.parquet"), b"abc").unwrap();
        // Nothing listens on port 1 of the loopback interface.
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name("bucket")
            .with_region("us-east-1")
            .with_access_key_id("k")
            .with_secret_access_key("s")
            .with_endpoint("http://127.0.0.1:1")
            .with_allow_http(true)
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .build()
            .unwrap();
        let mut uploader = state(dir.path(), Arc::new(store), 3);
        assert!(uploader.upload_all(&runtime(), None), "the upload failed");
        assert_eq!(pending(dir.path()).len(), 1, "the file waits in the spool");
        assert!(
            uploader.spool_full.load(Ordering::Acquire),
            "3 bytes reach a bound of 3"
        );

        // Storage is back: the file goes, and so does the bound.
        uploader.store = Arc::new(InMemory::new());
        assert!(!uploader.upload_all(&runtime(), None));
        assert!(pending(dir.path()).is_empty());
        assert!(!uploader.spool_full.load(Ordering::Acquire));
    }

    #[test]
    fn only_complete_files_of_this_table_wait_for_upload() {
        let dir = tempfile::tempdir().unwrap();
        let partition = dir.path().join("endpoint=fraud/request_date=2026-11-27");
        std::fs::create_dir_all(&partition).unwrap();
        std::fs::write(partition.join("part-a.parquet"), b"abc").unwrap();
        std::fs::write(partition.join(".part-b.parquet.inprogress"), b"x").unwrap();
        let journal = dir
            .path()
            .join("_journal/endpoint=fraud/request_date=2026-11-27");
        std::fs::create_dir_all(&journal).unwrap();
        std::fs::write(journal.join("part-b.arrows"), b"x").unwrap();
        let feedback = dir.path().join("_feedback/request_date=2026-11-27");
        std::fs::create_dir_all(&feedback).unwrap();
        std::fs::write(feedback.join("part-c.parquet"), b"x").unwrap();
        assert_eq!(
            pending(dir.path()),
            vec![(partition.join("part-a.parquet"), 3)]
        );
    }
}
