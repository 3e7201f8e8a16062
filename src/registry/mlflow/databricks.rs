//! `--registry databricks`: a Databricks workspace's model registry, which
//! speaks MLflow's REST API under `/api/2.0/mlflow/` at the workspace's host
//! with a personal access token.
//!
//! The host and token come as the Databricks CLI and SDKs take them:
//! `DATABRICKS_HOST` / `DATABRICKS_TOKEN`, each falling back to a profile of
//! `~/.databrickscfg` (`DATABRICKS_CONFIG_FILE` names another file,
//! `DATABRICKS_CONFIG_PROFILE` another profile than `DEFAULT`).
//!
//! Unity Catalog models (`catalog.schema.model`) are refused with a message:
//! they need UC's own alias API and temporary-credential downloads, which
//! Podium does not ship until it can be tested against a real workspace.

use std::path::{Path, PathBuf};

use super::MlflowOptions;
use crate::error::Error;

const DEFAULT_PROFILE: &str = "DEFAULT";

/// True for `databricks` (and `databricks://PROFILE`, as MLflow names a
/// workspace's registry) and for `databricks-uc`, which is refused later
/// with the reason.
pub fn is_databricks_uri(s: &str) -> bool {
    ["databricks", "databricks-uc"]
        .iter()
        .any(|scheme| s == *scheme || s.strip_prefix(scheme).is_some_and(|r| r.starts_with("://")))
}

/// The options for the workspace `registry` names (`databricks` or
/// `databricks://PROFILE`), with artifacts cached under `cache_dir`.
pub fn databricks_options(registry: &str, cache_dir: PathBuf) -> Result<MlflowOptions, Error> {
    if registry.starts_with("databricks-uc") {
        return Err(Error::Unsupported(unity_catalog_reason(
            "--registry databricks-uc",
        )));
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let named = registry
        .strip_prefix("databricks://")
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let profile_name = named
        .or_else(|| var("DATABRICKS_CONFIG_PROFILE"))
        .unwrap_or_else(|| DEFAULT_PROFILE.to_string());
    let env_host = var("DATABRICKS_HOST");
    let env_token = var("DATABRICKS_TOKEN");
    let (host, token) = match (env_host, env_token) {
        (Some(host), Some(token)) => (host, token),
        (host, token) => {
            let file = var("DATABRICKS_CONFIG_FILE")
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|home| Path::new(&home).join(".databrickscfg")));
            let profile = match &file {
                Some(file) => read_profile(file, &profile_name)?,
                None => None,
            };
            let from_profile = |key: &str| profile.as_ref().and_then(|p| field(p, key));
            let (Some(host), Some(token)) = (
                host.or_else(|| from_profile("host")),
                token.or_else(|| from_profile("token")),
            ) else {
                return Err(Error::InvalidInput(format!(
                    "--registry databricks: no workspace host and token; set DATABRICKS_HOST and DATABRICKS_TOKEN (a personal access token), or put host and token in the [{profile_name}] profile of {} (DATABRICKS_CONFIG_PROFILE picks another profile)",
                    file.as_deref().unwrap_or(Path::new("~/.databrickscfg")).display()
                )));
            };
            (host, token)
        }
    };
    let host = host.trim().trim_end_matches('/');
    let uri = match host.contains("://") {
        true => host.to_string(),
        false => format!("https://{host}"),
    };
    Ok(MlflowOptions {
        token: Some(token.trim().to_string()),
        basic: None,
        databricks: true,
        ..MlflowOptions::from_env(&uri, cache_dir)?
    })
}

/// An error for a Unity Catalog model name (`catalog.schema.model`); `None`
/// for a workspace registry name.
pub(super) fn refuse_unity_catalog(model: &str) -> Result<(), Error> {
    match model.split('.').count() {
        3 => Err(Error::Unsupported(unity_catalog_reason(&format!(
            "model \"{model}\""
        )))),
        _ => Ok(()),
    }
}

fn unity_catalog_reason(what: &str) -> String {
    format!(
        "{what}: Unity Catalog models (catalog.schema.model) are not supported yet: they need Unity Catalog's alias API and temporary-credential downloads, which Podium does not ship until they can be tested against a real workspace; serve a model of the workspace model registry (mlflow.set_registry_uri(\"databricks\"), a name without dots) with --registry databricks"
    )
}

/// The `key = value` lines of `[profile]` in the INI file at `path`; `None`
/// when the file does not exist or has no such profile.
fn read_profile(path: &Path, profile: &str) -> Result<Option<Vec<(String, String)>>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::InvalidInput(format!(
                "cannot read the Databricks configuration {}: {e}",
                path.display()
            )))
        }
    };
    Ok(parse_profile(&text, profile))
}

/// The entries of `[profile]` in an INI text (comments `#`/`;`, keys
/// case-insensitive as the Databricks CLI reads them).
fn parse_profile(text: &str, profile: &str) -> Option<Vec<(String, String)>> {
    let mut entries: Option<Vec<(String, String)>> = None;
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            if inside {
                entries.get_or_insert_with(Vec::new);
            }
            continue;
        }
        if !inside {
            continue;
        }
        if let (Some(list), Some((key, value))) = (entries.as_mut(), line.split_once('=')) {
            list.push((key.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
    }
    entries
}

fn field(entries: &[(String, String)], key: &str) -> Option<String> {
    entries
        .iter()
        .rev()
        .find(|(k, v)| k == key && !v.is_empty())
        .map(|(_, v)| v.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_are_read_as_the_databricks_cli_reads_them() {
        let cfg = "; comment\n[DEFAULT]\nhost = https://a.cloud.databricks.com/\ntoken = dapiA\n\n[dev]\n# comment\nHOST=https://b\ntoken=dapiB\n";
        let default = parse_profile(cfg, "DEFAULT").unwrap();
        assert_eq!(
            field(&default, "host").as_deref(),
            Some("https://a.cloud.databricks.com/")
        );
        let dev = parse_profile(cfg, "dev").unwrap();
        assert_eq!(field(&dev, "host").as_deref(), Some("https://b"));
        assert_eq!(field(&dev, "token").as_deref(), Some("dapiB"));
        assert!(parse_profile(cfg, "prod").is_none());
    }

    #[test]
    fn unity_catalog_names_are_refused_with_the_reason() {
        assert!(refuse_unity_catalog("fraud").is_ok());
        assert!(refuse_unity_catalog("fraud.v2").is_ok());
        let err = refuse_unity_catalog("main.risk.fraud").unwrap_err();
        assert!(matches!(err, Error::Unsupported(_)), "{err:?}");
        assert!(err.to_string().contains("not supported yet"), "{err}");
        assert!(is_databricks_uri("databricks") && is_databricks_uri("databricks://dev"));
        assert!(is_databricks_uri("databricks-uc") && is_databricks_uri("databricks-uc://p"));
        assert!(!is_databricks_uri("databricks-models") && !is_databricks_uri("./databricks"));
    }
}
