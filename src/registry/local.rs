//! The embedded registry: a plain directory.
//!
//! ```text
//! <root>/<model>/versions/<n>/model.onnx   one directory per version, n = 1, 2, …
//! <root>/<model>/aliases.json              {"champion": 1, "challenger": 2}
//! <root>/<model>/traffic.json              {"<endpoint>": {"arms": [...], ...}}: stored traffic
//! <root>/<model>/.lock                     serialises writers (register, alias changes)
//! <root>/<model>/versions/<n>/ARCHIVED      an archived version: kept, not listed
//! <root>/<model>/versions/<n>/DELETED       a deleted version (its file removed)
//! <root>/.podium-history.jsonl              the alias history (written by the server and the CLI)
//! ```
//!
//! Every write is atomic: a version directory is filled under a temporary
//! name and renamed into place, and `aliases.json` is written to a temporary
//! file and renamed, so a reader (a running server) never sees a half-written
//! state.
//!
//! Symbolic links inside the root work as plain directories and files; one
//! that leads out of the root is not followed: a model directory behind it
//! is not listed, and a version directory or model file behind it is
//! refused when loaded, naming the link and its target.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::atomic::{self, StagingDir, WriteError};
use super::external_data::external_data_files;
use super::{
    validate_alias_name, validate_model_name, ModelFile, Registry, TrafficUpdate,
    DEFAULT_MAX_MODEL_BYTES,
};
use crate::error::Error;

mod lifecycle;
mod traffic;

use lifecycle::Retire;

const ARTIFACT: &str = "model.onnx";
const ALIASES: &str = "aliases.json";
/// The permissions of a registered artifact (before the umask).
#[cfg(unix)]
const ARTIFACT_MODE: u32 = 0o640;

/// A registry kept in a local directory.
#[derive(Debug, Clone)]
pub struct LocalRegistry {
    root: PathBuf,
    /// Model directories linked out of the root, told once in the log.
    told_outside: Arc<Mutex<HashSet<PathBuf>>>,
}

impl LocalRegistry {
    /// Opens (without creating) the registry at `root`.
    pub fn new(root: impl Into<PathBuf>) -> LocalRegistry {
        LocalRegistry {
            root: root.into(),
            told_outside: Arc::default(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn model_dir(&self, model: &str) -> Result<PathBuf, Error> {
        validate_model_name(model)?;
        Ok(self.root.join(model))
    }

    fn existing_model_dir(&self, model: &str) -> Result<PathBuf, Error> {
        let dir = self.model_dir(model)?;
        if dir.join("versions").is_dir() {
            Ok(dir)
        } else {
            Err(Error::NotFound(format!(
                "no model \"{model}\" in registry {}; register it with `podium models register {model} FILE.onnx`",
                self.root.display()
            )))
        }
    }

    /// Holds the model's write lock until dropped.
    fn lock(&self, dir: &Path) -> Result<File, Error> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
            .map_err(|e| io_error("open the registry lock", dir, e))?;
        file.lock().map_err(|e| io_error("lock", dir, e))?;
        Ok(file)
    }

    /// The first symbolic link on the way from the root to `path` that
    /// leads out of the root, and where it leads; None when `path` resolves
    /// inside the root (or does not resolve at all).
    fn link_out(&self, path: &Path) -> Option<(PathBuf, PathBuf)> {
        let root = fs::canonicalize(&self.root).ok()?;
        if fs::canonicalize(path).ok()?.starts_with(&root) {
            return None;
        }
        let mut at = self.root.clone();
        for part in path.strip_prefix(&self.root).ok()?.components() {
            at.push(part);
            let is_link = fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink());
            if let Some(target) = is_link.then(|| fs::canonicalize(&at).ok()).flatten() {
                if !target.starts_with(&root) {
                    return Some((at, target));
                }
            }
        }
        // The root's own path changed under us: name the whole path.
        Some((path.to_path_buf(), fs::canonicalize(path).ok()?))
    }

    fn write_aliases(&self, dir: &Path, aliases: &BTreeMap<String, u64>) -> Result<(), Error> {
        let body = serde_json::to_vec_pretty(aliases)
            .map_err(|e| Error::Internal(format!("encode aliases: {e}")))?;
        atomic::write_file(&dir.join(ALIASES), &body).map_err(write_error)
    }
}

impl Registry for LocalRegistry {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn models(&self) -> Result<Vec<String>, Error> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("read", &self.root, e)),
        };
        let mut models = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| io_error("read", &self.root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if validate_model_name(&name).is_err() || !entry.path().join("versions").is_dir() {
                continue;
            }
            if let Some((link, target)) = self.link_out(&entry.path()) {
                let mut told = self.told_outside.lock().unwrap_or_else(|p| p.into_inner());
                if told.insert(link.clone()) {
                    tracing::warn!(
                        "registry: not listing model \"{name}\": {} is a symbolic link to {}, outside the registry root {}; register its files with `podium models register` instead",
                        link.display(),
                        target.display(),
                        self.root.display()
                    );
                }
                continue;
            }
            models.push(name);
        }
        models.sort();
        Ok(models)
    }

    fn versions(&self, model: &str) -> Result<Vec<u64>, Error> {
        let dir = self.existing_model_dir(model)?.join("versions");
        let mut versions = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| io_error("read", &dir, e))? {
            let entry = entry.map_err(|e| io_error("read", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            // Temporary directories of an unfinished registration are skipped,
            // and so are non-canonical numbers ("07"): `artifact` could not
            // find them, and "7" and "07" would list version 7 twice.
            if let Ok(v) = name.parse::<u64>() {
                let vdir = entry.path();
                if v.to_string() == name
                    && vdir.join(ARTIFACT).is_file()
                    && !lifecycle::is_archived(&vdir)
                {
                    versions.push(v);
                }
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    fn aliases(&self, model: &str) -> Result<BTreeMap<String, u64>, Error> {
        let path = self.existing_model_dir(model)?.join(ALIASES);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        let aliases: BTreeMap<String, u64> = serde_json::from_slice(&bytes).map_err(|e| {
            Error::Internal(format!(
                "{} is not a JSON object of alias → version: {e}; fix or delete the file",
                path.display()
            ))
        })?;
        // Written by hand, it may hold names `podium alias set` refuses.
        for alias in aliases.keys() {
            validate_alias_name(alias).map_err(|e| {
                Error::Internal(format!(
                    "{}: {e}; rename it in the file, or set it again with `podium alias set`",
                    path.display()
                ))
            })?;
        }
        Ok(aliases)
    }

    fn artifact(&self, model: &str, version: u64) -> Result<PathBuf, Error> {
        let path = self
            .existing_model_dir(model)?
            .join("versions")
            .join(version.to_string())
            .join(ARTIFACT);
        if !path.is_file() {
            return Err(Error::NotFound(format!(
                "model \"{model}\" has no version {version}"
            )));
        }
        if let Some((link, target)) = self.link_out(&path) {
            return Err(Error::Refused(format!(
                "{} is a symbolic link to {}, outside the registry root {}; Podium does not load model files from outside its registry: register the file with `podium models register {model} FILE.onnx` instead",
                link.display(),
                target.display(),
                self.root.display()
            )));
        }
        Ok(path)
    }

    fn unlisted_version(&self, model: &str, version: u64) -> String {
        let file = self
            .root
            .join(model)
            .join("versions")
            .join(version.to_string())
            .join(ARTIFACT);
        format!(
            "{ALIASES} points at version {version}, which has no model file ({} is missing); register a new version with `podium models register {model} FILE.onnx` and point the alias at it, or restore the file",
            file.display()
        )
    }

    fn register(&self, model: &str, file: &Path) -> Result<u64, Error> {
        validate_model_name(model)?;
        self.register_model(model, &ModelFile::read(file, DEFAULT_MAX_MODEL_BYTES)?)
    }

    fn register_model(&self, model: &str, file: &ModelFile) -> Result<u64, Error> {
        refuse_external_data(model, file)?;
        let dir = self.model_dir(model)?;
        let versions_dir = dir.join("versions");
        fs::create_dir_all(&versions_dir).map_err(|e| io_error("create", &versions_dir, e))?;
        let _lock = self.lock(&dir)?;

        // Archived and deleted versions keep their numbers.
        let next = self
            .numbered(&versions_dir)?
            .into_iter()
            .max()
            .unwrap_or(0)
            .checked_add(1)
            .ok_or_else(|| {
                Error::Internal(format!("model \"{model}\" has no version number left"))
            })?;
        let staging = StagingDir::new_in(&versions_dir, "staging-").map_err(write_error)?;
        let path = staging.path().join(ARTIFACT);
        let mut out = create_artifact(&path).map_err(|e| io_error("create", &path, e))?;
        out.write_all(file.bytes())
            .map_err(|e| io_error("write", &path, e))?;
        out.sync_all().map_err(|e| io_error("sync", &path, e))?;
        drop(out);
        staging
            .publish(&versions_dir.join(next.to_string()))
            .map_err(write_error)?;
        Ok(next)
    }

    fn set_alias(&self, model: &str, alias: &str, version: u64) -> Result<(), Error> {
        validate_alias_name(alias)?;
        let dir = self.existing_model_dir(model)?;
        let _lock = self.lock(&dir)?;
        let versions = self.versions(model)?;
        if !versions.contains(&version) {
            let archived = if self.archived(model)?.contains(&version) {
                format!(" (version {version} is archived: `podium models unarchive {model} {version}` lists it again)")
            } else {
                String::new()
            };
            return Err(Error::NotFound(format!(
                "model \"{model}\" has no version {version}; registered versions: {}{archived}",
                super::list_versions(&versions)
            )));
        }
        let mut aliases = self.aliases(model)?;
        aliases.insert(alias.to_string(), version);
        self.write_aliases(&dir, &aliases)
    }

    fn archived_versions(&self, model: &str) -> Result<Vec<u64>, Error> {
        self.archived(model)
    }

    fn delete_version(&self, model: &str, version: u64) -> Result<(), Error> {
        self.retire(model, version, Retire::Delete)
    }

    fn set_archived(&self, model: &str, version: u64, archived: bool) -> Result<(), Error> {
        let how = if archived {
            Retire::Archive
        } else {
            Retire::Unarchive
        };
        self.retire(model, version, how)
    }

    fn stored_traffic(&self, model: &str) -> Result<BTreeMap<String, String>, Error> {
        self.read_traffic(model)
    }

    fn update_traffic(
        &self,
        model: &str,
        endpoint: &str,
        update: &mut TrafficUpdate,
    ) -> Result<(), Error> {
        self.write_traffic(model, endpoint, update)
    }

    fn delete_alias(&self, model: &str, alias: &str) -> Result<(), Error> {
        let dir = self.existing_model_dir(model)?;
        let _lock = self.lock(&dir)?;
        let mut aliases = self.aliases(model)?;
        if aliases.remove(alias).is_none() {
            return Err(Error::NotFound(format!(
                "model \"{model}\" has no alias \"{alias}\""
            )));
        }
        self.write_aliases(&dir, &aliases)
    }
}

/// A new artifact file, readable by its owner and group only (0640, or
/// stricter under the umask): a model may be confidential.
/// A version here is one file: a model whose weights are in external data
/// files would be registered without them and fail to load.
fn refuse_external_data(model: &str, file: &ModelFile) -> Result<(), Error> {
    match external_data_files(file.bytes()) {
        Ok(files) if files.is_empty() => Ok(()),
        Ok(files) => Err(Error::InvalidInput(format!(
            "this ONNX model keeps its weights in external data files ({}), and the local registry stores one file per version; save it as one file (onnx.save_model(onnx.load(\"model.onnx\"), \"{model}.onnx\", save_as_external_data=False), under 2 GB) or serve it from MLflow (--registry mlflow+http://..., which fetches the data files)",
            files.join(", ")
        ))),
        Err(e) => Err(Error::InvalidInput(format!(
            "this ONNX model cannot be registered: {e}"
        ))),
    }
}

fn create_artifact(path: &Path) -> std::io::Result<File> {
    let mut options = File::options();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, ARTIFACT_MODE);
    options.open(path)
}

fn write_error(e: WriteError) -> Error {
    io_error(e.step, &e.path, e.source)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    use std::io::ErrorKind::{PermissionDenied, ReadOnlyFilesystem};
    match e.kind() {
        // Not a fault: a registry baked into an image, or mounted read-only.
        ReadOnlyFilesystem | PermissionDenied => Error::Refused(format!(
            "registry: cannot {what} {}: {e}; this registry directory cannot be written here \
             (a read-only image or volume): point --registry / PODIUM_REGISTRY at a writable \
             directory, or use an MLflow registry",
            path.display()
        )),
        _ => Error::Internal(format!("registry: cannot {what} {}: {e}", path.display())),
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests;
