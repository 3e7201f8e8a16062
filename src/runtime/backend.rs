//! Which engine runs a model: ONNX Runtime (the default) or tract, the
//! pure-Rust one (`--backend` for every model, `backend = "..."` in
//! `[model.<name>]` of the endpoints file for one).

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The engine a loaded version runs on. Both give the same signature
/// checks, warm-up, swaps, batching and inference-table rows.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// ONNX Runtime through its shared library: one session per inference thread.
    #[default]
    Ort,
    /// tract-onnx, pure Rust (the `tract` cargo feature): one optimized plan
    /// per version, shared by every inference thread.
    Tract,
}

impl Backend {
    /// The name on the command line and in the endpoints file.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ort => "ort",
            Backend::Tract => "tract",
        }
    }

    /// Whether this binary can run models on this backend; the error names
    /// `source` (where the choice was made) and the build that fixes it.
    pub fn check_built(self, source: &str) -> Result<(), String> {
        if self == Backend::Tract && !cfg!(feature = "tract") {
            return Err(format!(
                "{source}: backend \"tract\" needs a Podium built with the tract feature (cargo build --features tract); this binary only has \"ort\""
            ));
        }
        Ok(())
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The backend of every model: the default (`--backend`) and the models
/// that name their own in the endpoints file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backends {
    pub default: Backend,
    pub models: HashMap<String, Backend>,
}

impl Backends {
    /// The default and the per-model choices, each checked against this build.
    pub fn new(default: Backend, models: HashMap<String, Backend>) -> Result<Backends, String> {
        default.check_built("--backend / PODIUM_BACKEND")?;
        for (model, backend) in &models {
            backend.check_built(&format!("[model.{model}] backend"))?;
        }
        Ok(Backends { default, models })
    }

    /// The backend `model`'s versions load on.
    pub fn for_model(&self, model: &str) -> Backend {
        self.models.get(model).copied().unwrap_or(self.default)
    }

    /// Whether any model may need ONNX Runtime: when not, the server starts
    /// without loading its library at all.
    pub fn need_ort(&self) -> bool {
        self.default == Backend::Ort || self.models.values().any(|&b| b == Backend::Ort)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_choice_overrides_the_default() {
        let models = HashMap::from([("fraud".to_string(), Backend::Ort)]);
        let b = Backends {
            default: Backend::Tract,
            models,
        };
        assert_eq!(b.for_model("fraud"), Backend::Ort);
        assert_eq!(b.for_model("mlp"), Backend::Tract);
        assert!(b.need_ort());
        assert!(!Backends {
            default: Backend::Tract,
            models: HashMap::new()
        }
        .need_ort());
    }

    #[cfg(not(feature = "tract"))]
    #[test]
    fn tract_without_the_feature_names_the_feature() {
        let err = Backends::new(Backend::Tract, HashMap::new()).unwrap_err();
        assert!(err.contains("cargo build --features tract"), "{err}");
        let models = HashMap::from([("mlp".to_string(), Backend::Tract)]);
        let err = Backends::new(Backend::Ort, models).unwrap_err();
        assert!(err.starts_with("[model.mlp] backend"), "{err}");
    }
}
