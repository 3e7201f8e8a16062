//! The offline side: `podium batch` and `podium compare` score files with
//! the same registry aliases and the same runtime ([`LoadedModel`] on an
//! [`crate::runtime::pool::InferencePool`]) as serving, so offline numbers
//! and online answers cannot disagree.
//!
//! ```text
//! file (Parquet | CSV) ─source─▶ record batches ─features─▶ model inputs
//!        ─scorer (inference threads, input order kept)─▶ outputs
//!        ├─▶ batch: input columns + output columns ─▶ Parquet
//!        └─▶ compare: per-row metric material ─metrics, bootstrap─▶ decision
//! ```
//!
//! - [`source`]: reads Parquet or CSV as a stream of record batches.
//! - [`features`]: which columns feed which model input (shared by every
//!   offline command).
//! - [`outputs`]: model outputs as columns, and how clashing names are renamed.
//! - [`scorer`]: runs a model over the batches on several threads, in order.
//! - [`progress`]: a progress bar on a terminal, plain lines otherwise.
//! - [`monitor`]: profile and drift tables over an inference table (it
//!   scores nothing: it reads what serving logged).
//! - [`report`]: `podium experiment report`, an experiment's readout from the
//!   inference and feedback tables (no model runs).
//! - [`batch`], [`compare`]: the two jobs; [`predictions`], [`metrics`] and [`bootstrap`]
//!   are compare's arithmetic.

pub mod batch;
pub mod bootstrap;
pub mod compare;
pub mod features;
pub mod metrics;
pub mod monitor;
pub mod outputs;
pub mod predictions;
pub mod progress;
pub mod report;
pub mod scorer;
pub mod source;

use std::sync::Arc;

use anyhow::Context;

use crate::registry::{resolve, validate_model_name, Registry, VersionSpec};
use crate::runtime::LoadedModel;

/// `MODEL`, `MODEL@ALIAS` or `MODEL/VERSION`, as `podium batch` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub model: String,
    /// The version or alias; `MODEL` alone means the champion alias.
    pub spec: VersionSpec,
}

impl ModelRef {
    /// Reads `fraud`, `fraud@challenger` or `fraud/3`.
    pub fn parse(text: &str) -> anyhow::Result<ModelRef> {
        let (model, spec) = if let Some((model, alias)) = text.split_once('@') {
            anyhow::ensure!(
                !alias.is_empty(),
                "\"{text}\" names no alias after '@'; write MODEL@ALIAS, e.g. fraud@champion"
            );
            crate::registry::validate_alias_name(alias)
                .or_else(|e| {
                    if alias.eq_ignore_ascii_case(crate::registry::LATEST) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .with_context(|| format!("in \"{text}\""))?;
            (model, VersionSpec::Alias(alias.to_string()))
        } else if let Some((model, version)) = text.split_once('/') {
            let version = version
                .parse::<u64>()
                .ok()
                .filter(|_| version.bytes().all(|b| b.is_ascii_digit()))
                .with_context(|| {
                    format!("\"{text}\": after '/' comes a version number; write MODEL/VERSION, e.g. fraud/2")
                })?;
            (model, VersionSpec::Number(version))
        } else {
            (text, VersionSpec::parse(None))
        };
        validate_model_name(model)?;
        Ok(ModelRef {
            model: model.to_string(),
            spec,
        })
    }

    /// The version this reference names now, read from `registry`.
    pub fn resolve(&self, registry: &dyn Registry) -> anyhow::Result<u64> {
        let versions = registry.versions(&self.model)?;
        let aliases = registry.aliases(&self.model)?;
        Ok(resolve(&self.model, &self.spec, &versions, &aliases)?)
    }
}

/// Loads `model` `version` from `registry` the way serving does: the
/// registry's artifact, one ONNX Runtime session per inference thread.
/// ONNX Runtime must be initialised ([`crate::runtime::ort::init`]).
pub fn load_version(
    registry: &dyn Registry,
    model: &str,
    version: u64,
    threads: usize,
) -> anyhow::Result<Arc<LoadedModel>> {
    let path = registry.artifact(model, version)?;
    let loaded = LoadedModel::load(model, version, &path, threads)?;
    Ok(Arc::new(loaded))
}

/// The number of cores, the default of `--threads`.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_references() {
        let r = ModelRef::parse("fraud").unwrap();
        assert_eq!(r.spec, VersionSpec::Alias("champion".into()));
        let r = ModelRef::parse("fraud@challenger").unwrap();
        assert_eq!(
            (r.model.as_str(), r.spec),
            ("fraud", VersionSpec::Alias("challenger".into()))
        );
        assert_eq!(
            ModelRef::parse("fraud/2").unwrap().spec,
            VersionSpec::Number(2)
        );
        assert_eq!(
            ModelRef::parse("fraud@latest").unwrap().spec,
            VersionSpec::Alias("latest".into())
        );
        for bad in ["fraud@", "fraud/x", "fraud/-1", "../x", "fraud@a b"] {
            assert!(ModelRef::parse(bad).is_err(), "{bad} accepted");
        }
        let e = ModelRef::parse("fraud/two").unwrap_err().to_string();
        assert!(e.contains("MODEL/VERSION"), "{e}");
    }
}
