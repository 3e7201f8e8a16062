//! What a registry accepts as a new version: a [`ModelFile`], the bytes of an
//! ONNX model that came from a regular file (or an upload) within the size
//! cap and parsed as ONNX. Reading never blocks on a FIFO or a device and
//! never buffers more than the cap; registering a file of the server's by
//! path goes through a [`RegisterDir`] that keeps it inside one directory.

use std::fs::{self, File, FileType};
use std::io::{ErrorKind, Read};
use std::path::{Component, Path, PathBuf};

use super::onnx::{self, OnnxSummary};
use crate::error::Error;

/// The default of `--max-model-bytes`: 2 GiB, protobuf's own limit for one
/// ONNX file (larger models keep their weights in external data files,
/// which Podium does not register).
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 2 << 30;

/// Where the size cap is set, for the message that refuses a larger file.
pub const MODEL_CAP_FLAG: &str = "--max-model-bytes / PODIUM_MAX_MODEL_BYTES";

/// The bytes of an ONNX model that passed registration's checks: no larger
/// than the size cap and parsed as an ONNX model with a graph and named
/// outputs. Only such a value is written into a registry.
#[derive(Debug, Clone)]
pub struct ModelFile {
    bytes: bytes::Bytes,
    summary: OnnxSummary,
}

impl ModelFile {
    /// Reads the file at `path` (following symbolic links): refused unless
    /// it is a regular file of at most `max_bytes`, checked before reading,
    /// that parses as ONNX.
    pub fn read(path: &Path, max_bytes: u64) -> Result<ModelFile, Error> {
        read_regular(path, &path.display().to_string(), max_bytes, false)
    }

    /// Checks bytes that arrived some other way (an upload); `what` names
    /// them in errors, e.g. "the uploaded file".
    pub fn from_bytes(
        bytes: impl Into<bytes::Bytes>,
        what: &str,
        max_bytes: u64,
    ) -> Result<ModelFile, Error> {
        let bytes = bytes.into();
        if bytes.len() as u64 > max_bytes {
            return Err(too_large(what, bytes.len() as u64, max_bytes));
        }
        let summary = onnx::inspect(&bytes)
            .map_err(|why| Error::InvalidInput(format!("{what} is not an ONNX model: {why}")))?;
        Ok(ModelFile { bytes, summary })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The graph's inputs and outputs, by name.
    pub fn summary(&self) -> &OnnxSummary {
        &self.summary
    }
}

/// The refusal of a model of `size` bytes, over the cap.
fn too_large(what: &str, size: u64, max_bytes: u64) -> Error {
    Error::PayloadTooLarge(format!(
        "{what} is {size} bytes; the limit for a model is {max_bytes} bytes (raise it with {MODEL_CAP_FLAG})"
    ))
}

/// A directory of the server's files that the admin API may register by path
/// (`--admin-register-dir`). It is kept canonical, and so is every path read
/// through it, so a path that leads outside it (by `..` or a symbolic link
/// anywhere along the way) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterDir {
    root: PathBuf,
}

impl RegisterDir {
    /// `dir`, which must be an existing directory, canonicalised.
    pub fn new(dir: &Path) -> Result<RegisterDir, Error> {
        let root = fs::canonicalize(dir).map_err(|e| {
            Error::InvalidInput(format!(
                "--admin-register-dir {}: cannot resolve it: {e}",
                dir.display()
            ))
        })?;
        if !root.is_dir() {
            return Err(Error::InvalidInput(format!(
                "--admin-register-dir {} is not a directory",
                dir.display()
            )));
        }
        Ok(RegisterDir { root })
    }

    /// The canonical directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Reads `path` (a relative one is taken inside the directory) as
    /// [`ModelFile::read`] does, once its canonical path is known to be
    /// inside the directory; the file is opened by that path without
    /// following a symbolic link.
    pub fn read(&self, path: &Path, max_bytes: u64) -> Result<ModelFile, Error> {
        let shown = path.display().to_string();
        let joined = self.root.join(path);
        let canonical = match fs::canonicalize(&joined) {
            Ok(canonical) => canonical,
            // A missing file is only reported as missing inside the
            // directory, so the answer tells nothing about other places.
            Err(e) if e.kind() == ErrorKind::NotFound && self.lexically_inside(&joined) => {
                return Err(Error::NotFound(format!(
                    "cannot register {shown}: no such file in --admin-register-dir {}",
                    self.root.display()
                )));
            }
            Err(_) => return Err(self.outside(&shown)),
        };
        if !canonical.starts_with(&self.root) {
            return Err(self.outside(&shown));
        }
        read_regular(&canonical, &shown, max_bytes, true)
    }

    /// Whether `path` is inside the directory without resolving anything:
    /// no `..` and the directory as its prefix.
    fn lexically_inside(&self, path: &Path) -> bool {
        path.starts_with(&self.root) && !path.components().any(|c| c == Component::ParentDir)
    }

    fn outside(&self, shown: &str) -> Error {
        Error::Forbidden(format!(
            "cannot register {shown}: only files inside --admin-register-dir {} may be registered by path; upload the file as the body instead (POST /admin/models?name=MODEL)",
            self.root.display()
        ))
    }
}

/// Opens `path` without blocking (a FIFO with no writer would), checks what
/// the open file is and its size before reading, then reads at most
/// `max_bytes` and checks the bytes as ONNX. `shown` names the file in errors.
fn read_regular(
    path: &Path,
    shown: &str,
    max_bytes: u64,
    no_follow: bool,
) -> Result<ModelFile, Error> {
    let file = open_nonblocking(path, no_follow).map_err(|e| cannot_read(shown, e))?;
    let meta = file.metadata().map_err(|e| cannot_read(shown, e))?;
    if !meta.is_file() {
        return Err(Error::InvalidInput(format!(
            "cannot register {shown}: it is {}, not a regular file; register an .onnx file",
            describe(meta.file_type())
        )));
    }
    if meta.len() > max_bytes {
        return Err(too_large(shown, meta.len(), max_bytes));
    }
    // The file may grow after the check: read one byte past the cap to see.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| cannot_read(shown, e))?;
    ModelFile::from_bytes(bytes, shown, max_bytes)
}

#[cfg(unix)]
fn open_nonblocking(path: &Path, no_follow: bool) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = libc::O_NONBLOCK | libc::O_NOCTTY;
    if no_follow {
        flags |= libc::O_NOFOLLOW;
    }
    File::options().read(true).custom_flags(flags).open(path)
}

#[cfg(not(unix))]
fn open_nonblocking(path: &Path, _no_follow: bool) -> std::io::Result<File> {
    File::open(path)
}

fn cannot_read(shown: &str, e: std::io::Error) -> Error {
    let message = format!("registry: cannot read {shown}: {e}");
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound(message),
        ErrorKind::PermissionDenied => Error::Forbidden(message),
        _ => Error::InvalidInput(message),
    }
}

/// "a directory", "a FIFO (named pipe)", … for the refusal.
fn describe(kind: FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "something else"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fraud() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("models/fraud/v1.onnx")
    }

    fn message(e: Error) -> String {
        e.to_string()
    }

    #[test]
    fn a_model_file_is_read_and_checked() {
        let model = ModelFile::read(&fraud(), DEFAULT_MAX_MODEL_BYTES).unwrap();
        assert_eq!(model.bytes(), fs::read(fraud()).unwrap());
        assert_eq!(model.summary().inputs, vec!["input".to_string()]);

        let err = ModelFile::read(&fraud(), 100).unwrap_err();
        assert!(matches!(err, Error::PayloadTooLarge(_)), "{err}");
        assert!(message(err).contains("--max-model-bytes"));

        let tmp = tempfile::tempdir().unwrap();
        let text = tmp.path().join("notes.txt");
        fs::write(&text, "hello").unwrap();
        let err = ModelFile::read(&text, DEFAULT_MAX_MODEL_BYTES).unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{err}");
        assert!(message(err).contains("notes.txt is not an ONNX model"));

        let empty = tmp.path().join("empty.onnx");
        fs::write(&empty, "").unwrap();
        let err = ModelFile::read(&empty, DEFAULT_MAX_MODEL_BYTES).unwrap_err();
        assert!(message(err).contains("the file is empty"));

        let err = ModelFile::read(tmp.path(), DEFAULT_MAX_MODEL_BYTES).unwrap_err();
        assert!(message(err).contains("it is a directory, not a regular file"));

        let err = ModelFile::read(&tmp.path().join("nope"), DEFAULT_MAX_MODEL_BYTES).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");
        assert!(message(err).contains("cannot read"));
    }

    #[cfg(unix)]
    #[test]
    fn devices_and_fifos_are_refused_without_reading() {
        let err = ModelFile::read(Path::new("/dev/zero"), DEFAULT_MAX_MODEL_BYTES).unwrap_err();
        assert!(message(err).contains("a character device"));
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("pipe.onnx");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success());
        let err = ModelFile::read(&fifo, DEFAULT_MAX_MODEL_BYTES).unwrap_err();
        assert!(message(err).contains("a FIFO"));
    }

    #[cfg(unix)]
    #[test]
    fn a_register_dir_keeps_paths_inside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let allowed = tmp.path().join("allowed");
        fs::create_dir(&allowed).unwrap();
        fs::copy(fraud(), allowed.join("fraud.onnx")).unwrap();
        fs::copy(fraud(), tmp.path().join("outside.onnx")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("outside.onnx"), allowed.join("link.onnx"))
            .unwrap();
        let dir = RegisterDir::new(&allowed).unwrap();
        let max = DEFAULT_MAX_MODEL_BYTES;

        dir.read(Path::new("fraud.onnx"), max).unwrap();
        dir.read(&allowed.join("fraud.onnx"), max).unwrap();
        for escape in [
            PathBuf::from("../outside.onnx"),
            tmp.path().join("outside.onnx"),
            PathBuf::from("link.onnx"),
            PathBuf::from("/etc/passwd"),
            PathBuf::from("../nope.onnx"),
            PathBuf::from("/nope/at/all.onnx"),
        ] {
            let err = dir.read(&escape, max).unwrap_err();
            assert!(matches!(err, Error::Forbidden(_)), "{escape:?}: {err}");
            assert!(message(err).contains("--admin-register-dir"));
        }
        let err = dir.read(Path::new("."), max).unwrap_err();
        assert!(message(err).contains("it is a directory"));
        let err = dir.read(Path::new("missing.onnx"), max).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");

        assert!(RegisterDir::new(&tmp.path().join("nope")).is_err());
        assert!(RegisterDir::new(&allowed.join("fraud.onnx")).is_err());
    }
}
