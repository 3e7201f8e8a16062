//! Retiring versions of the local registry.
//!
//! - Deleting one removes its model file and leaves a `DELETED` marker in
//!   its directory, so its number is never given to another file (the alias
//!   history and caches still name it).
//! - Archiving one writes an `ARCHIVED` marker: the file stays, but the
//!   version is no longer listed, so `latest` skips it and no alias can be
//!   pointed at it until it is unarchived (the marker removed).
//!
//! Both are refused while an alias points at the version.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::{io_error, LocalRegistry, ARTIFACT};
use crate::error::Error;
use crate::registry::Registry as _;

/// The marker of an archived version, in its directory.
pub(super) const ARCHIVED: &str = "ARCHIVED";
/// The marker of a deleted version, in its (otherwise empty) directory.
pub(super) const DELETED: &str = "DELETED";

/// What to do with a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retire {
    Delete,
    Archive,
    Unarchive,
}

/// Whether the version directory `dir` is archived.
pub(super) fn is_archived(dir: &Path) -> bool {
    dir.join(ARCHIVED).exists()
}

impl LocalRegistry {
    /// Deletes, archives or unarchives `model` version `version`, under the
    /// model's lock.
    pub(super) fn retire(&self, model: &str, version: u64, how: Retire) -> Result<(), Error> {
        let dir = self.existing_model_dir(model)?;
        let _lock = self.lock(&dir)?;
        let vdir = dir.join("versions").join(version.to_string());
        if !vdir.join(ARTIFACT).is_file() {
            return Err(Error::NotFound(format!(
                "model \"{model}\" has no version {version}{}",
                if vdir.join(DELETED).exists() {
                    " (it was deleted)"
                } else {
                    ""
                }
            )));
        }
        let archived = is_archived(&vdir);
        if how != Retire::Unarchive {
            let users: Vec<String> = self
                .aliases(model)?
                .into_iter()
                .filter(|(_, v)| *v == version)
                .map(|(alias, _)| format!("{model}@{alias}"))
                .collect();
            if !users.is_empty() {
                return Err(Error::Refused(format!(
                    "version {version} of \"{model}\" is what {} points at; point {} at another version first (podium alias set {model} ALIAS VERSION) or delete {} (podium alias delete)",
                    users.join(", "),
                    if users.len() == 1 { "it" } else { "them" },
                    if users.len() == 1 { "the alias" } else { "those aliases" },
                )));
            }
        }
        let step =
            |what, path: &Path, r: std::io::Result<()>| r.map_err(|e| io_error(what, path, e));
        match how {
            Retire::Archive if archived => Ok(()),
            Retire::Archive => step(
                "create",
                &vdir.join(ARCHIVED),
                fs::write(vdir.join(ARCHIVED), b""),
            ),
            Retire::Unarchive if !archived => Err(Error::InvalidInput(format!(
                "version {version} of \"{model}\" is not archived"
            ))),
            Retire::Unarchive => step(
                "remove",
                &vdir.join(ARCHIVED),
                fs::remove_file(vdir.join(ARCHIVED)),
            ),
            Retire::Delete => {
                // The marker first: a crash between the two leaves a version
                // that is still listed, never a number given out twice.
                step(
                    "create",
                    &vdir.join(DELETED),
                    fs::write(vdir.join(DELETED), b""),
                )?;
                for entry in fs::read_dir(&vdir).map_err(|e| io_error("read", &vdir, e))? {
                    let path = entry.map_err(|e| io_error("read", &vdir, e))?.path();
                    if path.file_name().is_some_and(|n| n != DELETED) {
                        match fs::remove_file(&path) {
                            Err(e) if e.kind() != ErrorKind::NotFound => {
                                return Err(io_error("remove", &path, e))
                            }
                            _ => {}
                        }
                    }
                }
                Ok(())
            }
        }
    }

    /// The archived versions of `model`, ascending.
    pub(super) fn archived(&self, model: &str) -> Result<Vec<u64>, Error> {
        let dir = self.existing_model_dir(model)?.join("versions");
        let mut found: Vec<u64> = self
            .numbered(&dir)?
            .into_iter()
            .filter(|v| {
                let vdir = dir.join(v.to_string());
                vdir.join(ARTIFACT).is_file() && is_archived(&vdir)
            })
            .collect();
        found.sort_unstable();
        Ok(found)
    }

    /// Every version number `dir` (a `versions` directory) has used:
    /// listed, archived and deleted ones.
    pub(super) fn numbered(&self, dir: &Path) -> Result<Vec<u64>, Error> {
        let mut numbers = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| io_error("read", dir, e))? {
            let entry = entry.map_err(|e| io_error("read", dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Ok(v) = name.parse::<u64>() {
                if v.to_string() == name {
                    numbers.push(v);
                }
            }
        }
        Ok(numbers)
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Error;
    use crate::registry::local::LocalRegistry;
    use crate::registry::{resolve, Registry, VersionSpec};
    use std::path::Path;

    fn three_versions() -> (tempfile::TempDir, LocalRegistry) {
        let tmp = tempfile::tempdir().unwrap();
        let reg = LocalRegistry::new(tmp.path().join("reg"));
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud/v1.onnx");
        for _ in 0..3 {
            reg.register("fraud", &file).unwrap();
        }
        reg.set_alias("fraud", "champion", 1).unwrap();
        (tmp, reg)
    }

    #[test]
    fn archived_versions_are_kept_but_latest_skips_them() {
        let (_tmp, reg) = three_versions();
        reg.set_archived("fraud", 3, true).unwrap();
        assert_eq!(reg.versions("fraud").unwrap(), vec![1, 2]);
        assert_eq!(reg.archived_versions("fraud").unwrap(), vec![3]);
        let latest = VersionSpec::Alias("latest".into());
        let aliases = reg.aliases("fraud").unwrap();
        assert_eq!(
            resolve("fraud", &latest, &reg.versions("fraud").unwrap(), &aliases).unwrap(),
            2
        );
        let err = reg
            .set_alias("fraud", "challenger", 3)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("version 3 is archived")
                && err.contains("podium models unarchive fraud 3"),
            "{err}"
        );
        // The next registration does not reuse its number.
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud/v1.onnx");
        assert_eq!(reg.register("fraud", &file).unwrap(), 4);
        reg.set_archived("fraud", 3, false).unwrap();
        assert_eq!(reg.versions("fraud").unwrap(), vec![1, 2, 3, 4]);
        let err = reg.set_archived("fraud", 3, false).unwrap_err();
        assert!(err.to_string().contains("not archived"), "{err}");
    }

    #[test]
    fn deleted_versions_are_gone_and_their_numbers_never_reused() {
        let (_tmp, reg) = three_versions();
        reg.delete_version("fraud", 3).unwrap();
        assert_eq!(reg.versions("fraud").unwrap(), vec![1, 2]);
        assert!(matches!(reg.artifact("fraud", 3), Err(Error::NotFound(_))));
        let again = reg.delete_version("fraud", 3).unwrap_err();
        assert!(again.to_string().contains("(it was deleted)"), "{again}");
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud/v1.onnx");
        assert_eq!(reg.register("fraud", &file).unwrap(), 4);
    }

    #[test]
    fn a_version_an_alias_points_at_is_kept() {
        let (_tmp, reg) = three_versions();
        for err in [
            reg.delete_version("fraud", 1).unwrap_err(),
            reg.set_archived("fraud", 1, true).unwrap_err(),
        ] {
            assert!(matches!(err, Error::Refused(_)), "{err:?}");
            assert!(
                err.to_string().contains("is what fraud@champion points at"),
                "{err}"
            );
        }
        assert_eq!(reg.versions("fraud").unwrap(), vec![1, 2, 3]);
    }
}
