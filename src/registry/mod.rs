//! The registry: `model@alias` → version and `model/version` → ONNX artifact.
//!
//! The registry is the source of truth for what Podium serves; the CLI writes
//! to it and the server reads it. [`local::LocalRegistry`] is the embedded
//! default (a directory); [`mlflow::MlflowRegistry`] is an MLflow Model
//! Registry over its REST API.

pub(crate) mod atomic;
pub(crate) mod external_data;
pub mod local;
pub mod mlflow;
mod model_file;
mod onnx;
mod signature;

pub use model_file::{ModelFile, RegisterDir, DEFAULT_MAX_MODEL_BYTES, MODEL_CAP_FLAG};
pub use onnx::{OnnxSummary, TensorType};
pub use signature::check_against_champion;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The alias a model is served under when a request names no version.
pub const DEFAULT_ALIAS: &str = "champion";

/// The reserved name that always means the highest registered version.
pub const LATEST: &str = "latest";

/// What the registry says about one model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelInfo {
    pub versions: Vec<u64>,
    pub aliases: BTreeMap<String, u64>,
}

/// One read of the registry: each model with what it says about it, or why
/// that one model could not be read.
pub type Snapshot = Vec<(String, Result<ModelInfo, Error>)>;

/// A model registry. Implementations are cheap to share across threads.
///
/// Every method may block (files, network): call them off the async workers.
pub trait Registry: Send + Sync {
    /// What kind of registry this is, for logs, status and metrics: `local`, `mlflow`.
    fn kind(&self) -> &'static str;
    /// Where it is: a directory or a URL (never with credentials).
    fn location(&self) -> String;
    /// Names of all registered models, sorted.
    fn models(&self) -> Result<Vec<String>, Error>;
    /// Registered versions of `model`, ascending.
    fn versions(&self, model: &str) -> Result<Vec<u64>, Error>;
    /// The aliases of `model` and the version each points at.
    fn aliases(&self, model: &str) -> Result<BTreeMap<String, u64>, Error>;
    /// Where the ONNX file of `model` version `version` is.
    fn artifact(&self, model: &str, version: u64) -> Result<PathBuf, Error>;
    /// Why an alias of `model` points at `version` though
    /// [`Registry::versions`] does not list it, in this registry's words;
    /// the alias is followed once the version is listed.
    fn unlisted_version(&self, model: &str, version: u64) -> String {
        format!(
            "version {version} of \"{model}\" is not listed by the {} registry yet",
            self.kind()
        )
    }
    /// Registers the file at `file` as the next version of `model` (creating
    /// the model); returns the new version. The file is read and checked as
    /// [`ModelFile::read`] does, with the default size cap
    /// ([`DEFAULT_MAX_MODEL_BYTES`]).
    fn register(&self, model: &str, file: &Path) -> Result<u64, Error>;
    /// Registers a checked model as the next version of `model` (creating
    /// the model); returns the new version. Registries that take new
    /// versions from Podium implement it; the others refuse, as this default does.
    fn register_model(&self, model: &str, file: &ModelFile) -> Result<u64, Error> {
        let _ = file;
        self.takes_registrations(model)?;
        Err(Error::InvalidInput(format!(
            "the {} registry does not take new versions of \"{model}\" from Podium",
            self.kind()
        )))
    }
    /// Whether this registry takes new versions of `model` from Podium at
    /// all; asked before a model file is read, so a registry that never
    /// does says so (and how to register instead) first.
    fn takes_registrations(&self, model: &str) -> Result<(), Error> {
        let _ = model;
        Ok(())
    }
    /// Points `alias` at `version`, replacing where it pointed before.
    fn set_alias(&self, model: &str, alias: &str, version: u64) -> Result<(), Error>;
    /// Removes `alias`; an error if it does not exist.
    fn delete_alias(&self, model: &str, alias: &str) -> Result<(), Error>;

    /// Versions of `model` that are archived: kept, but not listed by
    /// [`Registry::versions`] (so `latest` skips them), ascending.
    fn archived_versions(&self, model: &str) -> Result<Vec<u64>, Error> {
        let _ = model;
        Ok(Vec::new())
    }
    /// Deletes `model` version `version`; refused while an alias points at
    /// it. Registries whose versions Podium does not manage refuse, as this
    /// default does.
    fn delete_version(&self, model: &str, version: u64) -> Result<(), Error> {
        Err(self.versions_managed_elsewhere(model, version))
    }
    /// Archives (or unarchives) `model` version `version`; archiving is
    /// refused while an alias points at it. Registries whose versions
    /// Podium does not manage refuse, as this default does.
    fn set_archived(&self, model: &str, version: u64, archived: bool) -> Result<(), Error> {
        let _ = archived;
        Err(self.versions_managed_elsewhere(model, version))
    }
    /// The refusal of [`Registry::delete_version`] and
    /// [`Registry::set_archived`] by a registry that manages its versions itself.
    fn versions_managed_elsewhere(&self, model: &str, version: u64) -> Error {
        Error::Unsupported(format!(
            "the {} registry manages its own versions; delete or archive version {version} of \"{model}\" there ({})",
            self.kind(),
            self.location()
        ))
    }

    /// Whether versions carry tags ([`Registry::set_version_tags`]).
    fn has_version_tags(&self) -> bool {
        false
    }
    /// Sets `tags` (key, value) on `model` `version`, as MLflow model-version
    /// tags (`podium compare` writes its numbers and
    /// `model_validation_status`). Registries without version tags refuse,
    /// as this default does.
    fn set_version_tags(
        &self,
        model: &str,
        version: u64,
        tags: &[(String, String)],
    ) -> Result<(), Error> {
        let _ = tags;
        Err(Error::Unsupported(format!(
            "the {} registry keeps no tags on versions (model \"{model}\" version {version}); its alias history records the comparison",
            self.kind()
        )))
    }

    /// The traffic policies stored for endpoints of `model` (endpoint →
    /// the JSON text [`Registry::update_traffic`] stored), so that every
    /// replica serving from this registry routes the same split; empty when
    /// none is stored, or when the registry keeps none.
    fn stored_traffic(&self, model: &str) -> Result<BTreeMap<String, String>, Error> {
        let _ = model;
        Ok(BTreeMap::new())
    }
    /// Replaces the stored policy of `endpoint` (served from `model`) with
    /// what `update` answers for the stored one (None: none stored;
    /// answering None clears it). An error from `update` is returned and
    /// nothing is written. Registries that can lock run `update` under the
    /// model's lock, so a conditional change is atomic across replicas.
    /// Registries that keep no traffic refuse with `Unsupported`, as this
    /// default does.
    fn update_traffic(
        &self,
        model: &str,
        endpoint: &str,
        update: &mut TrafficUpdate,
    ) -> Result<(), Error> {
        let _ = update;
        Err(Error::Unsupported(format!(
            "the {} registry keeps no traffic policies (endpoint \"{endpoint}\" of model \"{model}\")",
            self.kind()
        )))
    }

    /// Versions and aliases of `only` these models, or of every registered
    /// model, in as few calls as the registry allows. The outer error means
    /// the registry could not be read at all.
    fn snapshot(&self, only: Option<&[String]>) -> Result<Snapshot, Error> {
        let names = match only {
            Some(names) => names.to_vec(),
            None => self.models()?,
        };
        Ok(names
            .into_iter()
            .map(|model| {
                let info = self.versions(&model).and_then(|versions| {
                    self.aliases(&model)
                        .map(|aliases| ModelInfo { versions, aliases })
                });
                (model, info)
            })
            .collect())
    }
}

/// What [`Registry::update_traffic`] asks about an endpoint's stored
/// policy (None: none stored): the policy to store instead (None: remove it),
/// or an error that leaves it as it is.
pub type TrafficUpdate<'a> = dyn FnMut(Option<&str>) -> Result<Option<String>, Error> + 'a;

/// Which registry to open, as named on the command line.
#[derive(Debug, Clone)]
pub enum RegistryConfig {
    /// A directory ([`local::LocalRegistry`]).
    Local(PathBuf),
    /// An MLflow tracking server ([`mlflow::MlflowRegistry`]).
    Mlflow(mlflow::MlflowOptions),
}

impl RegistryConfig {
    pub fn open(&self) -> Result<std::sync::Arc<dyn Registry>, Error> {
        Ok(match self {
            RegistryConfig::Local(root) => std::sync::Arc::new(local::LocalRegistry::new(root)),
            RegistryConfig::Mlflow(options) => {
                std::sync::Arc::new(mlflow::MlflowRegistry::new(options.clone())?)
            }
        })
    }

    /// A folder of Podium's own next to this registry (the alias history's
    /// default): the directory itself, or the MLflow artifact cache.
    pub fn state_dir(&self) -> &Path {
        match self {
            RegistryConfig::Local(root) => root,
            RegistryConfig::Mlflow(options) => &options.cache_dir,
        }
    }

    pub fn is_mlflow(&self) -> bool {
        matches!(self, RegistryConfig::Mlflow(_))
    }
}

impl From<PathBuf> for RegistryConfig {
    fn from(root: PathBuf) -> Self {
        RegistryConfig::Local(root)
    }
}

impl From<&Path> for RegistryConfig {
    fn from(root: &Path) -> Self {
        RegistryConfig::Local(root.to_path_buf())
    }
}

/// How a request names a version: a number, an alias, or nothing (the default alias).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSpec {
    Number(u64),
    Alias(String),
}

impl VersionSpec {
    /// Reads a URL segment or `model_version` field: digits, or digits
    /// after `v` (`3`, `v3`), are a version number (the names alias rules
    /// reserve), anything else an alias; empty or absent means [`DEFAULT_ALIAS`].
    pub fn parse(spec: Option<&str>) -> VersionSpec {
        match spec {
            None | Some("") => VersionSpec::Alias(DEFAULT_ALIAS.to_string()),
            Some(s) => {
                let digits = s.strip_prefix(['v', 'V']).unwrap_or(s);
                match digits.parse::<u64>() {
                    Ok(n) if digits.bytes().all(|b| b.is_ascii_digit()) => VersionSpec::Number(n),
                    _ => VersionSpec::Alias(s.to_string()),
                }
            }
        }
    }
}

/// Resolves `spec` against a model's versions and aliases.
pub fn resolve(
    model: &str,
    spec: &VersionSpec,
    versions: &[u64],
    aliases: &BTreeMap<String, u64>,
) -> Result<u64, Error> {
    match spec {
        VersionSpec::Number(n) if versions.contains(n) => Ok(*n),
        VersionSpec::Number(n) => Err(Error::NotFound(format!(
            "model \"{model}\" has no version {n}; registered versions: {}",
            list_versions(versions)
        ))),
        VersionSpec::Alias(a) if a.eq_ignore_ascii_case(LATEST) => {
            versions.iter().max().copied().ok_or_else(|| {
                Error::NotFound(format!("model \"{model}\" has no registered versions"))
            })
        }
        VersionSpec::Alias(a) => aliases.get(a).copied().ok_or_else(|| {
            let known: Vec<&str> = aliases.keys().map(String::as_str).collect();
            let hint = if a == DEFAULT_ALIAS {
                format!(
                    "; name a version in the URL (/v2/models/{model}/versions/N) or set the alias with `podium alias set {model} {DEFAULT_ALIAS} N`"
                )
            } else {
                String::new()
            };
            Error::NotFound(format!(
                "model \"{model}\" has no alias \"{a}\" (its aliases: {}){hint}",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            ))
        }),
    }
}

fn list_versions(versions: &[u64]) -> String {
    if versions.is_empty() {
        return "none".to_string();
    }
    versions
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Model names are directory names: letters, digits, `_`, `-`, `.`, not
/// starting with `.`, so a name can never leave the registry root.
pub fn validate_model_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidInput(format!(
            "invalid model name \"{name}\": use 1-128 letters, digits, '_', '-' or '.', not starting with '.'"
        )))
    }
}

/// Alias names follow MLflow, `^[\w\-]+$` and at most 256 bytes, in ASCII
/// only (an alias travels in the `x-podium-arm` header); `latest`,
/// `v<digits>` and all-digit names are reserved (they read as versions).
pub fn validate_alias_name(alias: &str) -> Result<(), Error> {
    let invalid = |why: &str| {
        Err(Error::InvalidInput(format!(
            "invalid alias \"{alias}\": {why}"
        )))
    };
    if alias.is_empty() || alias.len() > 256 {
        return invalid("use 1-256 characters");
    }
    if !alias
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return invalid(
            "use only ASCII letters, digits, '_' and '-' (MLflow's ^[\\w\\-]+$, in ASCII: an alias is sent back in the x-podium-arm header)",
        );
    }
    if alias.eq_ignore_ascii_case(LATEST) {
        return invalid("\"latest\" is reserved: it always means the highest version");
    }
    let digits = alias.trim_start_matches(['v', 'V']);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return invalid("names like \"3\" or \"v3\" are reserved for version numbers");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aliases() -> BTreeMap<String, u64> {
        [("champion".to_string(), 1), ("challenger".to_string(), 2)].into()
    }

    #[test]
    fn resolves_numbers_aliases_latest_and_default() {
        let v = [1, 2, 3];
        let a = aliases();
        assert_eq!(resolve("m", &VersionSpec::parse(None), &v, &a).unwrap(), 1);
        assert_eq!(
            resolve("m", &VersionSpec::parse(Some("")), &v, &a).unwrap(),
            1
        );
        assert_eq!(
            resolve("m", &VersionSpec::parse(Some("challenger")), &v, &a).unwrap(),
            2
        );
        assert_eq!(
            resolve("m", &VersionSpec::parse(Some("3")), &v, &a).unwrap(),
            3
        );
        assert_eq!(
            resolve("m", &VersionSpec::parse(Some("latest")), &v, &a).unwrap(),
            3
        );
        for spec in ["v2", "V2"] {
            assert_eq!(VersionSpec::parse(Some(spec)), VersionSpec::Number(2));
        }
        for alias in ["v", "vnext", "v+2", "v-2"] {
            assert_eq!(
                VersionSpec::parse(Some(alias)),
                VersionSpec::Alias(alias.into())
            );
        }
        let err = resolve("m", &VersionSpec::parse(Some("7")), &v, &a).unwrap_err();
        assert!(
            matches!(err, Error::NotFound(ref m) if m.contains("1, 2, 3")),
            "{err}"
        );
        let err = resolve("m", &VersionSpec::parse(Some("prod")), &v, &a).unwrap_err();
        assert!(
            matches!(err, Error::NotFound(ref m) if m.contains("challenger, champion")),
            "{err}"
        );
        let err = resolve("m", &VersionSpec::parse(None), &v, &BTreeMap::new()).unwrap_err();
        assert!(
            err.to_string().contains("podium alias set m champion N"),
            "{err}"
        );
    }

    #[test]
    fn names_cannot_escape_the_root() {
        for bad in ["..", ".", "", "a/b", "/abs", ".hidden", "a\\b", "x y"] {
            assert!(validate_model_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["fraud", "fraud-v2", "my_model.onnx"] {
            validate_model_name(good).unwrap();
        }
    }

    #[test]
    fn alias_rules_follow_mlflow() {
        for bad in [
            "",
            "latest",
            "LATEST",
            "v3",
            "V12",
            "42",
            "a/b",
            "..",
            "a b",
            "a.b",
            "champiön",
            "挑战者",
        ] {
            assert!(validate_alias_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in [
            "champion",
            "challenger",
            "shadow-1",
            "blue_green",
            "v",
            "vnext",
        ] {
            validate_alias_name(good).unwrap();
        }
    }
}
