//! Registry drift: the files of a loaded version changing or vanishing on
//! disk after it was loaded (someone edits a version in place, cleans a
//! cache, or deletes a directory).
//!
//! Versions are immutable, so a drifted version keeps serving the copy in
//! memory (no request fails) and is reported; it is never loaded again from
//! the changed files, nor swapped back in, until the files are back as
//! they were. What identifies a file is taken at load (size, modification
//! time and SHA-256, hashed on the loading thread); each check after that
//! reads metadata only, and hashes again only when the size or time changed.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Size and modification time: what a cheap look at a file sees.
type Meta = (u64, Option<SystemTime>);

/// The files of one loaded version as they were at load, and what the
/// last check found.
pub(super) struct Fingerprint {
    version: u64,
    path: PathBuf,
    meta: Meta,
    sha256: String,
    /// The metadata of the last check, and the drift it meant: the file is
    /// hashed again only when its metadata changes again.
    seen: Option<Meta>,
    drift: Option<String>,
}

impl Fingerprint {
    /// Identifies the file at `path` that `version` is loaded from.
    pub fn take(version: u64, path: &Path) -> io::Result<Fingerprint> {
        let (meta, sha256) = hash(path)?;
        Ok(Fingerprint {
            version,
            path: path.to_path_buf(),
            meta,
            sha256,
            seen: Some(meta),
            drift: None,
        })
    }

    /// The drift as of the last [`Fingerprint::check`].
    pub fn drift(&self) -> Option<&str> {
        self.drift.as_deref()
    }

    /// Looks at the file again; the drift, if the file is not as loaded.
    pub fn check(&mut self) -> Option<&str> {
        let now = std::fs::metadata(&self.path).map(|m| meta_of(&m));
        match now {
            Ok(meta) if Some(meta) == self.seen => {}
            Ok(meta) if meta == self.meta => {
                self.seen = Some(meta);
                self.drift = None;
            }
            Ok(meta) => {
                self.seen = Some(meta);
                self.drift = match hash(&self.path) {
                    Ok((_, sha256)) if sha256 == self.sha256 => None,
                    Ok((_, sha256)) => Some(format!(
                        "{} changed on disk since version {} was loaded (sha256 {} → {})",
                        self.name(),
                        self.version,
                        short(&self.sha256),
                        short(&sha256)
                    )),
                    Err(e) => Some(self.unreadable(&e)),
                };
            }
            Err(e) => {
                self.seen = None;
                self.drift = Some(if e.kind() == io::ErrorKind::NotFound {
                    format!(
                        "{} vanished from disk ({}) since version {} was loaded",
                        self.name(),
                        self.path.display(),
                        self.version
                    )
                } else {
                    self.unreadable(&e)
                });
            }
        }
        self.drift()
    }

    /// `model.onnx`: how messages name the file.
    fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.path.display().to_string())
    }

    fn unreadable(&self, e: &io::Error) -> String {
        format!(
            "{} cannot be read since version {} was loaded ({}: {e})",
            self.name(),
            self.version,
            self.path.display()
        )
    }
}

/// What an operator should do about drift, after the drift itself.
pub(super) const ADVICE: &str = "register a new version instead of editing one";

fn meta_of(m: &std::fs::Metadata) -> Meta {
    (m.len(), m.modified().ok())
}

/// The file's metadata and the hex SHA-256 of its content.
fn hash(path: &Path) -> io::Result<(Meta, String)> {
    let mut file = File::open(path)?;
    let meta = meta_of(&file.metadata()?);
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    let digest = hasher.finalize();
    Ok((meta, digest.iter().map(|b| format!("{b:02x}")).collect()))
}

/// The first hex digits of a digest, as messages show it.
fn short(sha256: &str) -> String {
    format!("{}…", &sha256[..sha256.len().min(8)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_drifts_until_it_is_back_as_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.onnx");
        std::fs::write(&path, b"version two").unwrap();
        let mut fp = Fingerprint::take(2, &path).unwrap();
        assert_eq!(fp.check(), None);

        std::fs::write(&path, b"something else entirely").unwrap();
        let drift = fp.check().unwrap().to_string();
        assert!(
            drift.starts_with("model.onnx changed on disk since version 2 was loaded (sha256 ")
                && drift.contains("… → "),
            "{drift}"
        );
        std::fs::remove_file(&path).unwrap();
        let drift = fp.check().unwrap().to_string();
        assert!(
            drift.starts_with("model.onnx vanished from disk ("),
            "{drift}"
        );

        // Back with the same content (a new time): no drift.
        std::fs::write(&path, b"version two").unwrap();
        assert_eq!(fp.check(), None);
    }

    #[test]
    fn a_touched_file_with_the_same_content_is_not_drift() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.onnx");
        std::fs::write(&path, b"weights").unwrap();
        let mut fp = Fingerprint::take(1, &path).unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(fp.check(), None);
        assert_eq!(fp.seen.map(|m| m.1), Some(Some(later)));
    }

    mod in_the_store {
        use crate::error::Error;
        use crate::registry::{Registry as _, VersionSpec};
        use crate::serving::commands::rollback;
        use crate::serving::reconcile::reconcile;
        use crate::serving::test_registry::{model_file, Fixture};

        fn poll(fx: &Fixture) {
            reconcile(&fx.store, "registry", None).unwrap();
        }

        fn drift_events(fx: &Fixture, result: &str) -> usize {
            let result = format!("\"result\":\"{result}\"");
            fx.history()
                .lines()
                .filter(|l| l.contains("\"action\":\"drift\"") && l.contains(&result))
                .count()
        }

        #[test]
        fn a_serving_version_edited_on_disk_keeps_serving_and_says_so() {
            let fx = Fixture::fraud(0);
            poll(&fx);
            let v1 = fx.registry.inner.artifact("fraud", 1).unwrap();
            let original = std::fs::read(&v1).unwrap();
            std::fs::copy(model_file("fraud/v2.onnx"), &v1).unwrap();
            poll(&fx);
            let champion = fx.slot("champion");
            assert_eq!(
                (champion.serving_version, champion.state),
                (Some(1), "drifted")
            );
            let drift = champion.drift.unwrap_or_default();
            assert!(
                drift.starts_with("model.onnx changed on disk since version 1 was loaded (sha256 ")
                    && drift.ends_with(
                        "; still serving the loaded copy; register a new version instead of editing one"
                    ),
                "{drift}"
            );
            assert_eq!(champion.last_error, None);
            fx.store.readiness().unwrap();
            assert_eq!(drift_events(&fx, "failed"), 1);
            poll(&fx);
            assert_eq!(drift_events(&fx, "failed"), 1, "once per change");

            std::fs::write(&v1, &original).unwrap();
            poll(&fx);
            let champion = fx.slot("champion");
            assert_eq!((champion.state, champion.drift), ("serving", None));
            assert_eq!(drift_events(&fx, "ok"), 1);
        }

        #[test]
        fn a_drifted_version_kept_for_rollback_is_not_swapped_back_in() {
            let fx = Fixture::fraud(0);
            poll(&fx);
            fx.registry.inner.set_alias("fraud", "champion", 2).unwrap();
            poll(&fx);
            let v1 = fx.registry.inner.artifact("fraud", 1).unwrap();
            std::fs::write(&v1, b"edited in place").unwrap();
            poll(&fx);
            let champion = fx.slot("champion");
            assert_eq!(
                (champion.state, champion.previous_versions),
                ("serving", vec![1])
            );
            let drift = champion.drift.unwrap_or_default();
            assert!(
                drift.contains("version 1 is kept for rollback but is not swapped back in"),
                "{drift}"
            );
            let err = rollback(&fx.store, "fraud", "champion", "admin:rollback").unwrap_err();
            assert!(matches!(err, Error::Refused(_)), "{err:?}");
            assert!(
                err.to_string()
                    .contains("model.onnx changed on disk since version 1 was loaded"),
                "{err}"
            );
            assert_eq!(fx.slot("champion").serving_version, Some(2));
        }

        #[test]
        fn a_vanished_version_directory_keeps_answering_by_alias_and_number() {
            let fx = Fixture::fraud(0);
            poll(&fx);
            let v1 = fx.registry.inner.artifact("fraud", 1).unwrap();
            std::fs::remove_dir_all(v1.parent().unwrap()).unwrap();
            poll(&fx);
            let champion = fx.slot("champion");
            assert_eq!(champion.state, "drifted");
            assert!(champion
                .drift
                .unwrap_or_default()
                .starts_with("model.onnx vanished from disk ("),);
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            for spec in [VersionSpec::parse(None), VersionSpec::Number(1)] {
                let served = rt.block_on(fx.store.get("fraud", &spec)).unwrap();
                assert_eq!(served.version, 1, "{spec:?}");
            }
        }
    }
}
