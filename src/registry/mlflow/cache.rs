//! The on-disk cache of downloaded ONNX files, one folder per MLflow server:
//!
//! ```text
//! <cache_dir>/<host>_<port>[<prefix>]/<model>/<version>/model.onnx
//!                                                      /<external data files>
//!                                                      /podium-artifact.json
//! ```
//!
//! (names percent-encoded). A version's folder is filled under a temporary
//! name and renamed into place, with each file's size and SHA-256 in its
//! manifest: a restart does not download again, a model's files are there
//! all or none, and a half-written or damaged file is never loaded.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::uri::safe_name;
use crate::error::Error;
use crate::registry::atomic::{self, StagingDir, WriteError};

pub(super) const MANIFEST: &str = "podium-artifact.json";
pub(super) const ONNX_FILE: &str = "model.onnx";

/// Written next to a cached ONNX file; the files are used only if they match.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Manifest {
    artifact_uri: String,
    onnx_path: String,
    size: u64,
    sha256: String,
    /// The ONNX file's external data files, beside it (none in manifests
    /// written before Podium fetched them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    data_files: Vec<DataFile>,
}

/// One external data file in the cache.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct DataFile {
    /// Relative to the ONNX file's folder, as the model names it.
    path: String,
    size: u64,
    sha256: String,
}

/// The cached artifacts of one MLflow server.
#[derive(Debug, Clone)]
pub(super) struct ArtifactCache {
    root: PathBuf,
}

impl ArtifactCache {
    /// The cache of the server at `base` (`http[s]://host:port[/prefix]`) under
    /// `cache_dir`: host_port, then the path prefix (if any), encoded, so
    /// two MLflow servers behind one host (`http://h/a`, `http://h/b`) keep apart.
    pub fn for_server(cache_dir: &Path, base: &str) -> ArtifactCache {
        // One server answers http:// and https:// alike: one folder.
        let rest = base.split_once("://").map_or(base, |(_, rest)| rest);
        let (host, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        ArtifactCache {
            root: cache_dir.join(safe_name(&format!("{}{prefix}", host.replace(':', "_")))),
        }
    }

    /// The server's folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `model` `version` is kept.
    pub fn version_dir(&self, model: &str, version: u64) -> PathBuf {
        self.root.join(safe_name(model)).join(version.to_string())
    }

    /// The cached ONNX file in `dir` if it is whole: its manifest matches
    /// (and names `uri`, when given) and its content and each external data
    /// file's hash to the manifest's.
    pub fn cached(&self, dir: &Path, uri: Option<&str>) -> Option<PathBuf> {
        let manifest: Manifest =
            serde_json::from_slice(&fs::read(dir.join(MANIFEST)).ok()?).ok()?;
        if uri.is_some_and(|u| u != manifest.artifact_uri) {
            return None;
        }
        let expected = std::iter::once((ONNX_FILE, manifest.size, &manifest.sha256)).chain(
            manifest
                .data_files
                .iter()
                .map(|f| (f.path.as_str(), f.size, &f.sha256)),
        );
        for (name, expected_size, expected_sha256) in expected {
            let path = dir.join(name);
            let whole = matches!(hash_file(&path), Ok((size, sha256)) if size == expected_size && &sha256 == expected_sha256);
            if !whole {
                tracing::warn!(
                    "cached artifact {} is missing or does not match its manifest (expected {expected_size} bytes); downloading it again",
                    path.display()
                );
                return None;
            }
        }
        Some(dir.join(ONNX_FILE))
    }

    /// Puts a new copy in `dir` (replacing any there): `fill` writes the ONNX
    /// file, fetched from `uri` where the MLmodel names it `onnx_path`, as
    /// [`ONNX_FILE`] in the folder it is given, and its external data files
    /// beside it, and returns their paths relative to that folder. Either
    /// every file lands or none. Returns the cached ONNX file's path.
    pub fn store(
        &self,
        dir: &Path,
        uri: &str,
        onnx_path: &str,
        fill: impl FnOnce(&Path) -> Result<Vec<String>, Error>,
    ) -> Result<PathBuf, Error> {
        let parent = dir.parent().unwrap_or(&self.root);
        fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        let staging = StagingDir::new_in(parent, "tmp-").map_err(write_error)?;

        let data_paths = fill(staging.path())?;
        let path = staging.path().join(ONNX_FILE);
        let (size, sha256) = hash_file(&path).map_err(|e| io_error("read", &path, e))?;
        let mut data_files = Vec::with_capacity(data_paths.len());
        for rel in data_paths {
            let path = staging.path().join(&rel);
            let (size, sha256) = hash_file(&path).map_err(|e| io_error("read", &path, e))?;
            data_files.push(DataFile {
                path: rel,
                size,
                sha256,
            });
        }
        let manifest = Manifest {
            artifact_uri: uri.to_string(),
            onnx_path: onnx_path.to_string(),
            size,
            sha256,
            data_files,
        };
        let body = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::Internal(format!("encode the artifact manifest: {e}")))?;
        let manifest_path = staging.path().join(MANIFEST);
        let mut f =
            File::create(&manifest_path).map_err(|e| io_error("create", &manifest_path, e))?;
        f.write_all(&body)
            .map_err(|e| io_error("write", &manifest_path, e))?;
        f.sync_all()
            .map_err(|e| io_error("sync", &manifest_path, e))?;
        drop(f);

        // A stale or damaged copy is moved out of the way first.
        atomic::clear_dir(dir);
        match staging.publish(dir) {
            Ok(()) => Ok(dir.join(ONNX_FILE)),
            // Another process put a copy in place meanwhile: use it if whole.
            Err(e) => self.cached(dir, Some(uri)).ok_or_else(|| write_error(e)),
        }
    }
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let digest = hasher.finalize();
    Ok((size, digest.iter().map(|b| format!("{b:02x}")).collect()))
}

pub(super) fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Internal(format!(
        "artifact cache: cannot {what} {}: {e}",
        path.display()
    ))
}

fn write_error(e: WriteError) -> Error {
    io_error(e.step, &e.path, e.source)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_prefix_has_its_own_cache() {
        let root = Path::new("/cache");
        let dir = |base: &str| ArtifactCache::for_server(root, base).root().to_path_buf();
        assert_eq!(dir("http://h:5000"), root.join("h_5000"));
        assert_eq!(dir("http://h:5000/a"), root.join("h_5000%2Fa"));
        assert_eq!(dir("https://h:5000/a"), root.join("h_5000%2Fa"));
        assert_ne!(dir("http://h:5000/a"), dir("http://h:5000/b"));
        assert_ne!(dir("http://h/x/y"), dir("http://h/x_y"));
        let cache = ArtifactCache::for_server(root, "http://h:5000");
        assert_eq!(
            cache.version_dir("../fraud", 3),
            root.join("h_5000/%2E.%2Ffraud/3")
        );
    }

    #[test]
    fn a_stored_copy_is_used_while_whole_and_replaced_when_not() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::for_server(tmp.path(), "http://h:5000");
        let dir = cache.version_dir("fraud", 1);
        assert_eq!(cache.cached(&dir, None), None);

        let fill = |bytes: &'static [u8]| {
            move |staging: &Path| {
                fs::write(staging.join(ONNX_FILE), bytes)
                    .map(|()| Vec::new())
                    .map_err(|e| Error::Internal(e.to_string()))
            }
        };
        let path = cache
            .store(&dir, "mlflow-artifacts:/a", "model.onnx", fill(b"v1"))
            .unwrap();
        assert_eq!(path, dir.join(ONNX_FILE));
        assert_eq!(
            cache.cached(&dir, Some("mlflow-artifacts:/a")),
            Some(path.clone())
        );
        assert_eq!(cache.cached(&dir, None), Some(path.clone()));
        assert_eq!(
            cache.cached(&dir, Some("mlflow-artifacts:/b")),
            None,
            "another URI"
        );

        let manifest: Manifest =
            serde_json::from_slice(&fs::read(dir.join(MANIFEST)).unwrap()).unwrap();
        assert_eq!(manifest.size, 2);
        assert_eq!(manifest.onnx_path, "model.onnx");

        // Damaged: not used, and a new copy replaces it.
        fs::write(&path, b"v1 damaged").unwrap();
        assert_eq!(cache.cached(&dir, None), None);
        cache
            .store(&dir, "mlflow-artifacts:/b", "m.onnx", fill(b"v1"))
            .unwrap();
        assert!(cache.cached(&dir, Some("mlflow-artifacts:/b")).is_some());

        // A failed fill leaves the old copy and no temporary folder.
        let err = cache
            .store(&dir, "mlflow-artifacts:/c", "m.onnx", |_| {
                Err(Error::Registry("broke off".into()))
            })
            .unwrap_err();
        assert!(err.to_string().contains("broke off"));
        assert!(cache.cached(&dir, Some("mlflow-artifacts:/b")).is_some());
        let names: Vec<_> = fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["1"]);
    }

    #[test]
    fn external_data_files_are_kept_and_checked_with_the_model() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::for_server(tmp.path(), "http://h:5000");
        let dir = cache.version_dir("big", 1);
        let path = cache
            .store(&dir, "s3://b/1", "model/model.onnx", |staging| {
                fs::write(staging.join(ONNX_FILE), b"graph").unwrap();
                fs::create_dir(staging.join("weights")).unwrap();
                fs::write(staging.join("weights/w.bin"), b"weights").unwrap();
                Ok(vec!["weights/w.bin".into()])
            })
            .unwrap();
        assert_eq!(cache.cached(&dir, Some("s3://b/1")), Some(path));
        assert_eq!(fs::read(dir.join("weights/w.bin")).unwrap(), b"weights");

        // A damaged or missing data file makes the whole copy unusable.
        fs::write(dir.join("weights/w.bin"), b"weightz").unwrap();
        assert_eq!(cache.cached(&dir, None), None);
        fs::remove_file(dir.join("weights/w.bin")).unwrap();
        assert_eq!(cache.cached(&dir, None), None);
    }
}
