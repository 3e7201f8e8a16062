//! A model version's artifacts: where MLflow keeps them (artifact proxy,
//! object storage or a local path, after following `runs:/` and `models:/`
//! URIs), which file the `MLmodel` names, and fetching that file, with the
//! external data files it names, into the cache.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::cache::{io_error, ArtifactCache, MANIFEST, ONNX_FILE};
use super::client::Client;
use super::mlmodel::{check_relative, onnx_data_path, NoOnnx};
use super::store::StoreDir;
use super::uri::{encode_path, percent_decode};
use crate::error::Error;
use crate::registry::external_data::{external_data_files, ExternalDataError};

/// Where a version's artifacts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Location {
    /// A path under the artifact proxy's root.
    Proxy(String),
    /// A directory on this machine.
    Local(PathBuf),
    /// A folder in an S3 or GCS bucket or an Azure container, read directly.
    Store(StoreDir),
}

impl Location {
    /// Where the artifact `rel` is, for messages.
    fn show(&self, rel: &str) -> String {
        match self {
            Location::Proxy(root) => format!("mlflow-artifacts:/{root}/{rel}"),
            Location::Local(dir) => dir.join(rel).display().to_string(),
            Location::Store(store) => format!("{}/{rel}", store.url()),
        }
    }
}

/// `runs:/` and `models:/` URIs followed before Podium gives up.
const MAX_INDIRECTIONS: u8 = 2;

impl Client {
    /// Turns an artifact URI into a place Podium can read; `runs:/` and
    /// `models:/` URIs are looked up first.
    pub(super) fn locate(&self, uri: &str, model: &str, version: u64) -> Result<Location, Error> {
        self.locate_from(uri, model, version, 0)
    }

    fn locate_from(
        &self,
        uri: &str,
        model: &str,
        version: u64,
        depth: u8,
    ) -> Result<Location, Error> {
        if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
            // mlflow-artifacts:/path or mlflow-artifacts://host:port/path; the
            // proxy is the MLflow server Podium talks to.
            let path = match rest.strip_prefix("//") {
                Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
                None => rest,
            };
            return Ok(Location::Proxy(path.trim_matches('/').to_string()));
        }
        if let Some(path) = uri.strip_prefix("file://") {
            // file:///abs or file://localhost/abs
            let path = path.strip_prefix("localhost").unwrap_or(path);
            return Ok(Location::Local(PathBuf::from(percent_decode(path))));
        }
        if uri.starts_with('/') {
            return Ok(Location::Local(PathBuf::from(uri)));
        }
        if StoreDir::handles(uri) {
            let (timeout, retries) = self.limits();
            return StoreDir::open(uri, timeout, retries).map(Location::Store);
        }
        if depth < MAX_INDIRECTIONS {
            if let Some(rest) = uri.strip_prefix("runs:/") {
                let (run_id, sub) = rest
                    .trim_start_matches('/')
                    .split_once('/')
                    .unwrap_or((rest, ""));
                let root = self.run_artifact_uri(run_id)?;
                let joined = format!("{}/{}", root.trim_end_matches('/'), sub);
                return self.locate_from(joined.trim_end_matches('/'), model, version, depth + 1);
            }
            if let Some(id) = uri.strip_prefix("models:/m-") {
                let root = self.logged_model_artifact_uri(&format!("m-{id}"))?;
                return self.locate_from(&root, model, version, depth + 1);
            }
        }
        let scheme = uri.split(':').next().unwrap_or(uri);
        if scheme == "dbfs" {
            return Err(Error::Unsupported(format!(
                "the artifacts of {model} v{version} are at {uri}, in Databricks' own storage (DBFS), which Podium does not read: log the model to an experiment whose artifact location is s3://, gs:// or wasbs:// storage Podium can be given credentials for, or copy it to an MLflow server Podium reads"
            )));
        }
        Err(Error::Unsupported(format!(
            "the artifacts of {model} v{version} are at {uri}, and Podium cannot read \"{scheme}\" locations (it reads s3://, gs://, wasbs:// / abfss://, MLflow's artifact proxy and local paths): serve artifacts through MLflow's proxy (`mlflow server --artifacts-destination {scheme}://...`, URIs mlflow-artifacts:/...) or keep them on a path this machine can read"
        )))
    }

    /// Reads a small artifact (the `MLmodel`).
    fn read_small(&self, at: &Location, rel: &str) -> Result<Vec<u8>, Error> {
        match at {
            Location::Local(dir) => {
                let path = dir.join(rel);
                fs::read(&path).map_err(|e| match e.kind() {
                    ErrorKind::NotFound => {
                        Error::NotFound(format!("{} does not exist", path.display()))
                    }
                    _ => Error::Registry(format!("cannot read {}: {e}", path.display())),
                })
            }
            Location::Proxy(root) => {
                let mut out = Vec::new();
                self.fetch_proxy(root, rel, &mut out)?;
                Ok(out)
            }
            Location::Store(dir) => {
                let mut out = Vec::new();
                dir.fetch(rel, &mut out)?;
                Ok(out)
            }
        }
    }

    /// Copies the artifact `rel` into a new file at `to`, synced.
    fn fetch_file(&self, at: &Location, rel: &str, to: &Path) -> Result<(), Error> {
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        }
        let mut file = File::create(to).map_err(|e| io_error("create", to, e))?;
        match at {
            Location::Proxy(root) => self.fetch_proxy(root, rel, &mut file).map(drop),
            Location::Store(store) => store.fetch(rel, &mut file).map(drop),
            Location::Local(root) => {
                let from = root.join(rel);
                let mut src = File::open(&from).map_err(|e| match e.kind() {
                    ErrorKind::NotFound => {
                        Error::NotFound(format!("{} does not exist", from.display()))
                    }
                    _ => io_error("open", &from, e),
                })?;
                std::io::copy(&mut src, &mut file)
                    .map(drop)
                    .map_err(|e| io_error("copy", &from, e))
            }
        }?;
        file.sync_all().map_err(|e| io_error("sync", to, e))
    }

    /// Fetches the external data files the ONNX file at `onnx` (the artifact
    /// `rel`) names, from beside it into `staging` beside [`ONNX_FILE`];
    /// their paths relative to `staging`.
    fn fetch_external_data(
        &self,
        at: &Location,
        rel: &str,
        onnx: &Path,
        staging: &Path,
        model: &str,
        version: u64,
    ) -> Result<Vec<String>, Error> {
        let bytes = fs::read(onnx).map_err(|e| io_error("read", onnx, e))?;
        let files = match external_data_files(&bytes) {
            Ok(files) => files,
            // Not ONNX: the loader says so when it tries the file.
            Err(ExternalDataError::NotOnnx(_)) => return Ok(Vec::new()),
            Err(ExternalDataError::BadLocation(why)) => {
                return Err(Error::Refused(format!(
                    "{model} v{version}: {rel} cannot be served: {why}; save the model with its external data files beside it (onnx.save_model(..., save_as_external_data=True, location=\"weights.bin\"))"
                )))
            }
        };
        let dir = rel.rsplit_once('/').map_or("", |(dir, _)| dir);
        for file in &files {
            if file == ONNX_FILE || file == MANIFEST {
                return Err(Error::Refused(format!(
                    "{model} v{version}: {rel} keeps weights in an external data file named {file}, a name Podium's cache uses itself; save the weights under another name (onnx.save_model(..., location=\"weights.bin\"))"
                )));
            }
            let from = match dir.is_empty() {
                true => file.clone(),
                false => format!("{dir}/{file}"),
            };
            self.fetch_file(at, &from, &staging.join(file))
                .map_err(|e| match e {
                    Error::NotFound(_) => Error::Refused(format!(
                        "{model} v{version}: {rel} keeps weights in the external data file {file}, but {} does not exist; log the model with its data files (mlflow.onnx.log_model(..., save_as_external_data=True) uploads them beside the model)",
                        at.show(&from)
                    )),
                    other => other,
                })?;
        }
        if !files.is_empty() {
            tracing::info!(
                "{model} v{version}: fetched {} external data file(s) of {rel}: {}",
                files.len(),
                files.join(", ")
            );
        }
        Ok(files)
    }

    /// Streams `rel` under the proxy path `root` into `out`; checks the length.
    fn fetch_proxy(&self, root: &str, rel: &str, out: &mut dyn Write) -> Result<u64, Error> {
        let path = format!("{root}/{rel}");
        let mut download = self.open_artifact(&encode_path(&path), &path)?;
        let base = self.base();
        let copied = std::io::copy(&mut download.body, out).map_err(|e| {
            Error::Registry(format!(
                "downloading {path} from MLflow at {base} broke off: {e}"
            ))
        })?;
        if let Some(expected) = download.length.filter(|&n| n != copied) {
            return Err(Error::Registry(format!(
                "downloading {path} from MLflow at {base} stopped after {copied} of {expected} bytes"
            )));
        }
        Ok(copied)
    }

    /// Fetches the ONNX file of `model` `version`, whose artifacts are at
    /// `uri`, into `cache` at `dir`; the cached file's path.
    pub(super) fn download(
        &self,
        cache: &ArtifactCache,
        model: &str,
        version: u64,
        uri: &str,
        dir: &Path,
    ) -> Result<PathBuf, Error> {
        let at = self.locate(uri, model, version)?;
        let mlmodel = self.read_small(&at, "MLmodel").map_err(|e| match e {
            Error::NotFound(_) => Error::Unsupported(format!(
                "{model} v{version} is not an MLflow model: {uri} has no MLmodel file; log it with mlflow.onnx.log_model(..., registered_model_name=\"{model}\")"
            )),
            other => other,
        })?;
        let mlmodel = String::from_utf8_lossy(&mlmodel);
        let rel = onnx_data_path(&mlmodel).map_err(|why| match why {
            NoOnnx::Flavors(flavors) => Error::Unsupported(format!(
                "{model} v{version} has no ONNX flavor (its MLmodel has flavors: {}); Podium serves ONNX models: log it with mlflow.onnx.log_model(onnx_model, name=..., registered_model_name=\"{model}\")",
                if flavors.is_empty() { "none".to_string() } else { flavors.join(", ") }
            )),
            NoOnnx::NotYaml(e) => Error::Unsupported(format!(
                "{model} v{version}: the MLmodel file at {uri} cannot be read ({e}); log the model again with mlflow.onnx.log_model(onnx_model, name=..., registered_model_name=\"{model}\")"
            )),
        })?;
        check_relative(&rel).map_err(|why| {
            Error::Unsupported(format!(
                "{model} v{version}: the onnx flavor's data path {rel:?} {why}"
            ))
        })?;

        let path = cache.store(dir, uri, &rel, |staging| {
            let onnx = staging.join(ONNX_FILE);
            self.fetch_file(&at, &rel, &onnx).map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!(
                    "{model} v{version}: its MLmodel names {rel}, but {} does not exist",
                    at.show(&rel)
                )),
                other => other,
            })?;
            self.fetch_external_data(&at, &rel, &onnx, staging, model, version)
        })?;
        metrics::counter!("podium_registry_artifacts_total", "result" => "downloaded").increment(1);
        tracing::info!(
            "downloaded {model} v{version} from {uri} into {}",
            dir.display()
        );
        Ok(path)
    }
}
