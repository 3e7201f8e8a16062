//! A credentials file held in memory and re-read when its content changes,
//! without a restart. A file that cannot be read or parsed at start-up stops
//! start-up; a broken one later keeps the previous credentials, is logged
//! once per change and counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;

use super::file::{digest, Digest};

/// How often a watched file is read for changes (it is small; reading it
/// whole also catches a rewrite that keeps its size and timestamp).
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(1);

/// The largest credentials file read, so a wrong path (a log, a device)
/// is refused instead of read into memory.
const MAX_FILE_BYTES: u64 = 4 << 20;

/// Turns a file's text into credentials; gets the credentials in use, so
/// state such as rate-limit buckets can carry over.
pub type Parse<T> = dyn Fn(&str, Option<&T>) -> Result<T, String> + Send + Sync;

/// A parsed credentials file, current as of its last good read.
pub struct Watched<T> {
    path: PathBuf,
    current: ArcSwap<T>,
    parse: Box<Parse<T>>,
    /// The counter of failed reloads, e.g. `podium_api_keys_reload_errors_total`.
    errors_metric: &'static str,
}

impl<T: Send + Sync + 'static> Watched<T> {
    /// Reads and parses `path` now; the error names the file and what is wrong.
    pub fn load(
        path: &Path,
        errors_metric: &'static str,
        parse: impl Fn(&str, Option<&T>) -> Result<T, String> + Send + Sync + 'static,
    ) -> Result<(Arc<Watched<T>>, Digest), String> {
        let text = read(path)?;
        let parsed = parse(&text, None).map_err(|e| format!("{}: {e}", path.display()))?;
        let watched = Watched {
            path: path.to_path_buf(),
            current: ArcSwap::from_pointee(parsed),
            parse: Box::new(parse),
            errors_metric,
        };
        Ok((Arc::new(watched), digest(&text)))
    }

    /// The credentials in use now.
    pub fn current(&self) -> Arc<T> {
        self.current.load_full()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Re-reads the file every `interval` for as long as the task runs;
    /// `seen` is the digest of the text [`Watched::load`] read.
    pub fn spawn_reload(
        self: &Arc<Self>,
        interval: Duration,
        seen: Digest,
        on_reload: impl Fn(&T) + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let watched = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen = Seen::Text(seen);
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await; // the first tick is now; the file was just read
            loop {
                ticks.tick().await;
                let path = watched.path.clone();
                let Ok(read) = tokio::task::spawn_blocking(move || read(&path)).await else {
                    continue;
                };
                if let Some(reloaded) = watched.reload(read, &mut seen) {
                    on_reload(&reloaded);
                }
            }
        })
    }

    /// Takes one read of the file: the new credentials when it changed and
    /// parses, else None (unchanged, or broken: logged once per change and
    /// counted).
    fn reload(&self, read: Result<String, String>, seen: &mut Seen) -> Option<Arc<T>> {
        let now = match &read {
            Ok(text) => Seen::Text(digest(text)),
            Err(e) => Seen::Unreadable(e.clone()),
        };
        if now == *seen {
            return None;
        }
        *seen = now;
        let parsed = read.and_then(|text| {
            let current = self.current.load();
            (self.parse)(&text, Some(&current)).map_err(|e| format!("{}: {e}", self.path.display()))
        });
        match parsed {
            Ok(parsed) => {
                let parsed = Arc::new(parsed);
                self.current.store(Arc::clone(&parsed));
                Some(parsed)
            }
            Err(e) => {
                metrics::counter!(self.errors_metric).increment(1);
                tracing::error!("{e}; keeping the credentials read before");
                None
            }
        }
    }
}

/// What the last read found, so a change is acted on (and an error logged) once.
#[derive(PartialEq)]
enum Seen {
    Text(Digest),
    Unreadable(String),
}

fn read(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is over {} MiB; is it the right file?",
            path.display(),
            MAX_FILE_BYTES >> 20
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses a number; remembers how many parses carried state over.
    fn number(text: &str, previous: Option<&(u32, u32)>) -> Result<(u32, u32), String> {
        let n = text
            .trim()
            .parse()
            .map_err(|e| format!("not a number: {e}"))?;
        Ok((n, previous.map_or(0, |p| p.1 + 1)))
    }

    #[test]
    fn a_change_is_taken_a_broken_file_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        std::fs::write(&path, "1").unwrap();
        let (watched, first) = Watched::load(&path, "test_reload_errors_total", number).unwrap();
        assert_eq!(*watched.current(), (1, 0));
        let mut seen = Seen::Text(first);
        let reload = |seen: &mut Seen| watched.reload(read(&path), seen).map(|t| *t);

        assert_eq!(reload(&mut seen), None, "unchanged");
        std::fs::write(&path, "2").unwrap();
        assert_eq!(
            reload(&mut seen),
            Some((2, 1)),
            "the previous value is handed over"
        );
        std::fs::write(&path, "two").unwrap();
        assert_eq!(reload(&mut seen), None);
        assert_eq!(
            *watched.current(),
            (2, 1),
            "a broken file keeps the last good one"
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(reload(&mut seen), None);
        assert_eq!(*watched.current(), (2, 1), "so does a missing one");
        std::fs::write(&path, "3").unwrap();
        assert_eq!(reload(&mut seen), Some((3, 2)));
    }

    #[test]
    fn start_up_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.toml");
        let err = Watched::load(&path, "x", number).err().unwrap();
        assert!(
            err.starts_with("cannot read ") && err.contains("n.toml"),
            "{err}"
        );
        std::fs::write(&path, "x").unwrap();
        let err = Watched::load(&path, "x", number).err().unwrap();
        assert!(err.contains("n.toml: not a number"), "{err}");
    }
}
