//! An MLflow Model Registry (open-source MLflow, or the same REST API
//! elsewhere) as Podium's registry, over its REST API.
//!
//! - aliases and versions: `registered-models/search` (every model's aliases
//!   in one call) and `model-versions/search` (one call per model);
//! - artifacts: `model-versions/get-download-uri`, then the model's `MLmodel`
//!   names the ONNX file (the `onnx` flavor's `data`); fetched through the
//!   artifact proxy (`mlflow-artifacts:/…`), from object storage (`s3://…`,
//!   `gs://…`, `wasbs://…`) or read from a local path, with the ONNX
//!   file's external data files beside it;
//! - over `http://` or `https://` (see [`tls`]); a Databricks workspace's
//!   registry is the same API with the workspace's host and token (see
//!   [`databricks`]);
//! - alias changes write through to MLflow: Podium keeps no second copy;
//! - endpoint traffic shared by replicas: the registered-model tag
//!   `podium.traffic.<endpoint>` (JSON), read with `registered-models/get`.
//!
//! Downloaded artifacts are cached on disk by model and version (see
//! [`cache`]); calls time out and are retried with back-off (see [`client`]);
//! an error names MLflow, the call and what to do.
//!
//! | file | concern |
//! |---|---|
//! | `uri.rs` | the registry URI (parse, redact) and percent-encoding |
//! | `client.rs` | HTTP: credentials, time limits, retries, error messages |
//! | `tls.rs` | HTTPS: trusted CAs, client certificate, TLS failures in words |
//! | `databricks.rs` | `--registry databricks`: workspace host and token, Unity Catalog names |
//! | `clouds.rs` | S3, GCS and Azure configured from their clients' environment |
//! | `store.rs` | artifacts read directly from object storage |
//! | `api.rs` | typed REST bodies and the calls Podium makes, with paging |
//! | `artifacts.rs` | locating a version's artifacts and downloading its ONNX file |
//! | `mlmodel.rs` | reading the `MLmodel` file |
//! | `cache.rs` | the on-disk artifact cache and its manifests |

mod api;
mod artifacts;
mod cache;
mod client;
mod clouds;
mod databricks;
mod mlmodel;
mod store;
mod tls;
mod uri;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use self::databricks::{databricks_options, is_databricks_uri};
pub use self::tls::TlsOptions;
pub use self::uri::{is_mlflow_uri, redact_uri};
use super::{validate_alias_name, ModelFile, ModelInfo, Registry, Snapshot, TrafficUpdate};
use crate::error::Error;
use api::AliasesByModel;
use cache::ArtifactCache;
use client::Client;

/// The registered-model tag prefix of an endpoint's stored traffic policy.
pub const TRAFFIC_TAG: &str = "podium.traffic.";

/// How Podium talks to MLflow.
#[derive(Clone)]
pub struct MlflowOptions {
    /// `http[s]://HOST:PORT[/prefix]`, as in `MLFLOW_TRACKING_URI`; a leading
    /// `mlflow+` is accepted and dropped.
    pub uri: String,
    /// Sent as `Authorization: Bearer` (`MLFLOW_TRACKING_TOKEN`).
    pub token: Option<String>,
    /// Sent as HTTP basic auth (`MLFLOW_TRACKING_USERNAME` / `_PASSWORD`).
    pub basic: Option<(String, String)>,
    /// Bound on one API call; for a download, on connecting and on each wait for data.
    pub timeout: Duration,
    /// Extra attempts after a call fails in a way that may pass (connection,
    /// timeout, 429, 5xx).
    pub retries: u32,
    /// Where downloaded artifacts are kept.
    pub cache_dir: PathBuf,
    /// HTTPS: trusted CAs, client certificate (only used for `https://`).
    pub tls: TlsOptions,
    /// A Databricks workspace: Unity Catalog names are refused.
    pub databricks: bool,
}

impl std::fmt::Debug for MlflowOptions {
    /// Credentials are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowOptions")
            .field("uri", &redact_uri(&self.uri))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("basic", &self.basic.as_ref().map(|(user, _)| (user, "***")))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("cache_dir", &self.cache_dir)
            .field("tls", &self.tls)
            .field("databricks", &self.databricks)
            .finish()
    }
}

impl MlflowOptions {
    /// Options for `uri` with the defaults: 10 s timeout, 3 retries, credentials
    /// from `MLFLOW_TRACKING_TOKEN` / `MLFLOW_TRACKING_USERNAME` + `_PASSWORD`,
    /// TLS settings from MLflow's variables ([`TlsOptions::from_env`]).
    pub fn from_env(uri: &str, cache_dir: PathBuf) -> Result<MlflowOptions, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Ok(MlflowOptions {
            uri: uri.to_string(),
            token: var("MLFLOW_TRACKING_TOKEN"),
            basic: var("MLFLOW_TRACKING_USERNAME")
                .map(|user| (user, var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default())),
            timeout: Duration::from_secs(10),
            retries: 3,
            cache_dir,
            tls: TlsOptions::from_env()?,
            databricks: false,
        })
    }
}

/// An MLflow Model Registry reached over HTTP or HTTPS.
pub struct MlflowRegistry {
    client: Client,
    /// A Databricks workspace (Unity Catalog names are refused).
    databricks: bool,
    /// `<cache_dir>/<host>_<port>[<prefix>]` (encoded): one folder per MLflow server.
    cache: ArtifactCache,
}

impl MlflowRegistry {
    pub fn new(options: MlflowOptions) -> Result<MlflowRegistry, Error> {
        let base = uri::parse_uri(&options.uri)?;
        let cache = ArtifactCache::for_server(&options.cache_dir, &base);
        Ok(MlflowRegistry {
            client: Client::new(base, &options)?,
            databricks: options.databricks,
            cache,
        })
    }

    /// Where downloaded artifacts of this server are kept.
    pub fn cache_dir(&self) -> &Path {
        self.cache.root()
    }

    fn base(&self) -> &str {
        self.client.base()
    }

    /// Refuses a Unity Catalog name (`catalog.schema.model`) of a Databricks
    /// workspace; any name of an MLflow server is fine.
    fn check_name(&self, model: &str) -> Result<(), Error> {
        match self.databricks {
            true => databricks::refuse_unity_catalog(model),
            false => Ok(()),
        }
    }

    fn unknown_model(&self, model: &str, known: &AliasesByModel) -> Error {
        let names: Vec<&str> = known.keys().map(String::as_str).take(20).collect();
        Error::NotFound(format!(
            "MLflow at {} has no registered model \"{model}\" (registered: {}); register it with mlflow.onnx.log_model(..., registered_model_name=\"{model}\")",
            self.base(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        ))
    }

    /// Where the artifacts of `model` `version` are, as MLflow says.
    fn download_uri(&self, model: &str, version: u64) -> Result<String, Error> {
        let uri = self
            .client
            .download_uri(model, version)
            .map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!(
                    "MLflow at {} has no version {version} of model \"{model}\"",
                    self.base()
                )),
                other => other,
            })?;
        uri.ok_or_else(|| {
            Error::Registry(format!(
                "MLflow at {} gave no artifact_uri for {model} v{version}",
                self.base()
            ))
        })
    }
}

impl Registry for MlflowRegistry {
    fn kind(&self) -> &'static str {
        "mlflow"
    }

    fn location(&self) -> String {
        self.base().to_string()
    }

    fn models(&self) -> Result<Vec<String>, Error> {
        Ok(self.client.registered_models()?.into_keys().collect())
    }

    fn versions(&self, model: &str) -> Result<Vec<u64>, Error> {
        // An unknown model has no versions; say so rather than print nothing.
        self.aliases(model)?;
        self.client.ready_versions(model)
    }

    fn aliases(&self, model: &str) -> Result<BTreeMap<String, u64>, Error> {
        self.check_name(model)?;
        self.client
            .registered_model_aliases(model)
            .map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!(
                    "MLflow at {} has no registered model \"{model}\"; register it with mlflow.onnx.log_model(..., registered_model_name=\"{model}\")",
                    self.base()
                )),
                other => other,
            })
    }

    fn artifact(&self, model: &str, version: u64) -> Result<PathBuf, Error> {
        self.check_name(model)?;
        let dir = self.cache.version_dir(model, version);
        let uri = match self.download_uri(model, version) {
            Ok(uri) => uri,
            Err(e @ Error::Registry(_)) => {
                // Versions are immutable: while MLflow cannot be asked, a
                // whole cached copy is still the right file.
                if let Some(path) = self.cache.cached(&dir, None) {
                    tracing::warn!("{e}; loading {model} v{version} from the cache");
                    metrics::counter!("podium_registry_artifacts_total", "result" => "cached")
                        .increment(1);
                    return Ok(path);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if let Some(path) = self.cache.cached(&dir, Some(&uri)) {
            metrics::counter!("podium_registry_artifacts_total", "result" => "cached").increment(1);
            return Ok(path);
        }
        self.client
            .download(&self.cache, model, version, &uri, &dir)
    }

    fn unlisted_version(&self, _model: &str, version: u64) -> String {
        format!("waiting for version {version} to be READY in the registry")
    }

    fn register(&self, model: &str, _file: &Path) -> Result<u64, Error> {
        Err(refuse_registration(model))
    }

    fn register_model(&self, model: &str, _file: &ModelFile) -> Result<u64, Error> {
        Err(refuse_registration(model))
    }

    fn takes_registrations(&self, model: &str) -> Result<(), Error> {
        Err(refuse_registration(model))
    }

    fn set_alias(&self, model: &str, alias: &str, version: u64) -> Result<(), Error> {
        validate_alias_name(alias)?;
        self.check_name(model)?;
        self.client
            .set_alias(model, alias, version)
            .map_err(|e| match e {
                Error::NotFound(m) => Error::NotFound(format!(
                    "{m} (MLflow at {}); list versions with `podium models list`",
                    self.base()
                )),
                other => other,
            })
    }

    fn has_version_tags(&self) -> bool {
        true
    }

    fn set_version_tags(
        &self,
        model: &str,
        version: u64,
        tags: &[(String, String)],
    ) -> Result<(), Error> {
        self.check_name(model)?;
        for (key, value) in tags {
            self.client
                .set_version_tag(model, version, key, value)
                .map_err(|e| match e {
                    Error::NotFound(m) => Error::NotFound(format!(
                        "{m} (MLflow at {}); list versions with `podium models list`",
                        self.base()
                    )),
                    other => other,
                })?;
        }
        Ok(())
    }

    fn stored_traffic(&self, model: &str) -> Result<BTreeMap<String, String>, Error> {
        Ok(self
            .client
            .registered_model_tags(model)?
            .into_iter()
            .filter_map(|(key, value)| Some((key.strip_prefix(TRAFFIC_TAG)?.to_string(), value)))
            .collect())
    }

    /// MLflow has no conditional write: the tag is read, `update` asked and
    /// the tag written in three calls, so two replicas changing one
    /// endpoint within those calls both succeed (the later write wins).
    fn update_traffic(
        &self,
        model: &str,
        endpoint: &str,
        update: &mut TrafficUpdate,
    ) -> Result<(), Error> {
        let key = format!("{TRAFFIC_TAG}{endpoint}");
        let current = self.client.registered_model_tags(model)?.remove(&key);
        let next = update(current.as_deref())?;
        match next {
            _ if next == current => Ok(()),
            Some(value) => self.client.set_model_tag(model, &key, &value),
            None => self.client.delete_model_tag(model, &key),
        }
    }

    fn delete_alias(&self, model: &str, alias: &str) -> Result<(), Error> {
        // MLflow answers 200 for an alias that does not exist; Podium says so.
        if !self.aliases(model)?.contains_key(alias) {
            return Err(Error::NotFound(format!(
                "model \"{model}\" has no alias \"{alias}\" in MLflow at {}",
                self.base()
            )));
        }
        self.client.delete_alias(model, alias)
    }

    fn snapshot(&self, only: Option<&[String]>) -> Result<Snapshot, Error> {
        // One call for every model's aliases, then one per model for its versions.
        let registered = self.client.registered_models()?;
        let names: Vec<String> = match only {
            Some(names) => names.to_vec(),
            None => registered.keys().cloned().collect(),
        };
        let mut snapshot = Vec::with_capacity(names.len());
        for model in names {
            let info = match registered.get(&model) {
                None => Err(self
                    .check_name(&model)
                    .err()
                    .unwrap_or_else(|| self.unknown_model(&model, &registered))),
                Some(aliases) => self
                    .client
                    .ready_versions(&model)
                    .map(|versions| ModelInfo {
                        versions,
                        aliases: aliases.clone(),
                    }),
            };
            snapshot.push((model, info));
        }
        Ok(snapshot)
    }
}

/// Versions reach MLflow from its own clients, never from Podium.
fn refuse_registration(model: &str) -> Error {
    Error::InvalidInput(format!(
        "Podium does not register versions in MLflow: log the model from Python with mlflow.onnx.log_model(onnx.load(\"model.onnx\"), name=\"model\", registered_model_name=\"{model}\"); Podium serves it once an alias points at it"
    ))
}

#[cfg(test)]
mod tests;
