//! The global flags that choose the registry: a directory, an MLflow
//! tracking server (http or https) or a Databricks workspace, from
//! `--registry`, `--registry-uri` or `MLFLOW_TRACKING_URI`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::registry::mlflow::{
    databricks_options, is_databricks_uri, is_mlflow_uri, redact_uri, MlflowOptions,
};
use crate::registry::RegistryConfig;

/// Flags every command shares: which registry, and how to talk to MLflow.
#[derive(Args)]
pub struct RegistryArgs {
    /// The model registry: a directory, an MLflow tracking server as
    /// mlflow+http[s]://HOST:PORT, or `databricks` (a workspace's registry,
    /// from DATABRICKS_HOST/DATABRICKS_TOKEN or ~/.databrickscfg) [default:
    /// $MLFLOW_TRACKING_URI when it is an http(s):// URL or `databricks`,
    /// else the directory "registry"].
    #[arg(long, env = "PODIUM_REGISTRY", global = true)]
    registry: Option<String>,
    /// An MLflow tracking server to use as the registry (http[s]://HOST:PORT),
    /// like MLFLOW_TRACKING_URI; the same as --registry mlflow+http[s]://HOST:PORT.
    #[arg(long, global = true, conflicts_with = "registry")]
    registry_uri: Option<String>,
    /// With MLflow: where downloaded model artifacts are kept (and the alias history).
    #[arg(
        long,
        env = "PODIUM_CACHE_DIR",
        default_value = ".podium-cache",
        global = true
    )]
    cache_dir: PathBuf,
    /// With MLflow: bound on one call to MLflow, in seconds (for a download: on
    /// connecting and on each wait for data).
    #[arg(
        long,
        env = "PODIUM_REGISTRY_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    registry_timeout_secs: u64,
    /// With MLflow: extra attempts, with back-off, after a call fails in a way
    /// that may pass (connection refused, timeout, HTTP 429/5xx).
    #[arg(
        long,
        env = "PODIUM_REGISTRY_RETRIES",
        default_value_t = 3,
        global = true
    )]
    registry_retries: u32,
}

impl RegistryArgs {
    /// The registry the flags and environment name: `--registry`, else
    /// `--registry-uri`, else an http `MLFLOW_TRACKING_URI`, else the
    /// directory `registry`.
    pub fn config(&self) -> anyhow::Result<RegistryConfig> {
        if let Some(registry) = &self.registry {
            if is_databricks_uri(registry) {
                return self.databricks(registry);
            }
            if is_mlflow_uri(registry) {
                return self.mlflow(registry);
            }
            anyhow::ensure!(
                !registry.contains("://") && !registry.starts_with("mlflow"),
                "--registry {}: a registry is a directory, mlflow+http[s]://HOST:PORT (an MLflow tracking server) or databricks (a workspace's registry)",
                redact_uri(registry)
            );
            return Ok(RegistryConfig::Local(PathBuf::from(registry)));
        }
        if let Some(uri) = &self.registry_uri {
            anyhow::ensure!(
                is_mlflow_uri(uri),
                "--registry-uri {}: name an MLflow tracking server as http[s]://HOST:PORT; Podium talks to MLflow over its REST API (for a directory use --registry DIR)",
                redact_uri(uri)
            );
            return self.mlflow(uri);
        }
        if let Some(uri) = std::env::var("MLFLOW_TRACKING_URI")
            .ok()
            .filter(|u| !u.is_empty())
        {
            if is_databricks_uri(&uri) {
                return self.databricks(&uri);
            }
            if is_mlflow_uri(&uri) {
                return self.mlflow(&uri);
            }
            tracing::warn!(
                "ignoring MLFLOW_TRACKING_URI={}: Podium reads MLflow only through a tracking server (http[s]://HOST:PORT) or a Databricks workspace (databricks); using the directory \"registry\"",
                redact_uri(&uri)
            );
        }
        Ok(RegistryConfig::Local(PathBuf::from("registry")))
    }

    fn mlflow(&self, uri: &str) -> anyhow::Result<RegistryConfig> {
        self.limits(MlflowOptions::from_env(uri, self.cache_dir.clone())?)
    }

    fn databricks(&self, registry: &str) -> anyhow::Result<RegistryConfig> {
        self.limits(databricks_options(registry, self.cache_dir.clone())?)
    }

    /// `options` with the time limit and retries of the flags.
    fn limits(&self, options: MlflowOptions) -> anyhow::Result<RegistryConfig> {
        Ok(RegistryConfig::Mlflow(MlflowOptions {
            timeout: Duration::from_secs(self.registry_timeout_secs.max(1)),
            retries: self.registry_retries,
            ..options
        }))
    }
}
