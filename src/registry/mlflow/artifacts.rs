//! A model version's artifacts: where MLflow keeps them (artifact proxy, S3
//! or a local path, after following `runs:/` and `models:/` URIs), which file
//! the `MLmodel` names, and fetching that file into the cache.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::cache::{io_error, ArtifactCache};
use super::client::Client;
use super::mlmodel::{check_relative, onnx_data_path, NoOnnx};
use super::store::StoreDir;
use super::uri::{encode_path, percent_decode};
use crate::error::Error;

/// Where a version's artifacts are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Location {
    /// A path under the artifact proxy's root.
    Proxy(String),
    /// A directory on this machine.
    Local(PathBuf),
    /// A folder in an S3 bucket, read directly.
    Store(StoreDir),
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
        if uri.starts_with("s3://") {
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
        Err(Error::Unsupported(format!(
            "the artifacts of {model} v{version} are at {uri}, and Podium cannot read \"{scheme}\" locations (it reads s3://, MLflow's artifact proxy and local paths): serve artifacts through MLflow's proxy (`mlflow server --artifacts-destination {scheme}://...`, URIs mlflow-artifacts:/...) or keep them on a path this machine can read"
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

        let path = cache.store(dir, uri, &rel, |file| match &at {
            Location::Proxy(root) => self.fetch_proxy(root, &rel, file).map(drop),
            Location::Store(store) => store.fetch(&rel, file).map(drop),
            Location::Local(root) => {
                let from = root.join(&rel);
                let mut src = File::open(&from).map_err(|e| match e.kind() {
                    ErrorKind::NotFound => Error::NotFound(format!(
                        "{model} v{version}: its MLmodel names {rel}, but {} does not exist",
                        from.display()
                    )),
                    _ => io_error("open", &from, e),
                })?;
                std::io::copy(&mut src, file)
                    .map(drop)
                    .map_err(|e| io_error("copy", &from, e))
            }
        })?;
        metrics::counter!("podium_registry_artifacts_total", "result" => "downloaded").increment(1);
        tracing::info!(
            "downloaded {model} v{version} from {uri} into {}",
            dir.display()
        );
        Ok(path)
    }
}
