//! Write-then-rename: how every registry write reaches the disk, so that a
//! reader (a running server, another replica) sees either the old state or
//! the new one, never a half-written file or directory.
//!
//! A file is written to a temporary sibling and renamed over its target; a
//! directory is filled as a [`StagingDir`] beside its target and renamed into
//! place. Temporary names start with a dot and are removed when a write fails
//! part-way, so readers that list a directory can skip them.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::{Builder, NamedTempFile, TempDir};

/// A step of an atomic write that failed, with the path it failed on.
/// Callers turn it into their own error (`registry: cannot create …`).
#[derive(Debug)]
pub struct WriteError {
    /// What was being done: `create`, `write`, `sync`, `rename into`.
    pub step: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl WriteError {
    fn new(step: &'static str, path: &Path, source: io::Error) -> WriteError {
        WriteError {
            step,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Writes `body` to `path` so that readers see either the old or the new
/// content: a synced temporary file in the same directory, renamed over it.
pub fn write_file(path: &Path, body: &[u8]) -> Result<(), WriteError> {
    let parent = parent_of(path);
    let mut tmp = Builder::new()
        .prefix(".tmp-")
        .tempfile_in(parent)
        .map_err(|e| WriteError::new("create", parent, e))?;
    tmp.write_all(body)
        .map_err(|e| WriteError::new("write", tmp.path(), e))?;
    sync(&tmp)?;
    tmp.persist(path)
        .map(drop)
        .map_err(|e| WriteError::new("rename into", path, e.error))
}

fn sync(tmp: &NamedTempFile) -> Result<(), WriteError> {
    tmp.as_file()
        .sync_all()
        .map_err(|e| WriteError::new("sync", tmp.path(), e))
}

/// A directory being filled under a temporary name next to where it will
/// live. Dropped without [`StagingDir::publish`], it is removed with all it
/// holds.
#[derive(Debug)]
pub struct StagingDir {
    dir: TempDir,
}

impl StagingDir {
    /// An empty staging directory in `parent` (which must exist), named
    /// `.<prefix>…`.
    pub fn new_in(parent: &Path, prefix: &str) -> Result<StagingDir, WriteError> {
        let dir = Builder::new()
            .prefix(&format!(".{prefix}"))
            .tempdir_in(parent)
            .map_err(|e| WriteError::new("create", parent, e))?;
        Ok(StagingDir { dir })
    }

    /// Where to write the directory's content.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Renames the directory to `target`, which must not exist or be an
    /// empty directory. On failure the staged content is removed.
    pub fn publish(self, target: &Path) -> Result<(), WriteError> {
        fs::rename(self.dir.path(), target)
            .map_err(|e| WriteError::new("rename into", target, e))?;
        // Renamed away: nothing is left for the drop to remove.
        let _ = self.dir.keep();
        Ok(())
    }
}

/// Removes the directory `target` (if any) so that a [`StagingDir`] can be
/// published there: it is first renamed aside (a rename cannot replace a
/// non-empty directory), so it disappears from `target` in one step.
pub fn clear_dir(target: &Path) {
    if !target.exists() {
        return;
    }
    let Ok(aside) = Builder::new()
        .prefix(".stale-")
        .tempdir_in(parent_of(target))
    else {
        return;
    };
    // Onto the empty directory just made; the drop of `aside` removes it all.
    let _ = fs::rename(target, aside.path());
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_file_is_replaced_whole_and_leaves_no_temporary() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("aliases.json");
        write_file(&path, b"{\"a\": 1}").unwrap();
        write_file(&path, b"{}").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{}");
        assert_eq!(names(tmp.path()), vec!["aliases.json"]);
        let err = write_file(&tmp.path().join("no/such/dir/f"), b"x").unwrap_err();
        assert_eq!(err.step, "create");
    }

    #[test]
    fn a_directory_appears_whole_or_not_at_all() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("3");
        let staging = StagingDir::new_in(tmp.path(), "staging-").unwrap();
        assert!(names(tmp.path())[0].starts_with(".staging-"));
        fs::write(staging.path().join("model.onnx"), b"v3").unwrap();
        staging.publish(&target).unwrap();
        assert_eq!(fs::read(target.join("model.onnx")).unwrap(), b"v3");
        assert_eq!(names(tmp.path()), vec!["3"]);

        // Dropped unpublished: gone.
        let staging = StagingDir::new_in(tmp.path(), "staging-").unwrap();
        fs::write(staging.path().join("model.onnx"), b"half").unwrap();
        drop(staging);
        assert_eq!(names(tmp.path()), vec!["3"]);

        // A full directory is in the way until cleared.
        let staging = StagingDir::new_in(tmp.path(), "staging-").unwrap();
        fs::write(staging.path().join("model.onnx"), b"v3 again").unwrap();
        let staged = staging.path().to_path_buf();
        let err = staging.publish(&target).unwrap_err();
        assert_eq!(err.step, "rename into");
        assert!(!staged.exists(), "a failed publish leaves nothing behind");
        clear_dir(&target);
        assert!(!target.exists());
        assert_eq!(names(tmp.path()), Vec::<String>::new());
    }
}
