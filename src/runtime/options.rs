//! ONNX Runtime session options: the global defaults (`podium serve
//! --ort-*` flags) and a model's own values (`[model.<name>.onnxruntime]`
//! in the configuration file), applied to every session of that model.
//!
//! The defaults are what Podium always used: one intra-op and one inter-op
//! thread per session (parallelism comes from the inference workers, each
//! with its own session), no spinning, every graph optimisation, the CPU
//! memory arena on, the CPU execution provider only.

use std::collections::HashMap;
use std::fmt;

use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use serde::{Deserialize, Serialize};

/// The most threads one session's pool may have; a larger number is a typo.
pub const MAX_THREADS: usize = 1024;

/// How much ONNX Runtime rewrites a graph before running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GraphOptimization {
    /// No rewriting.
    Disable,
    /// Constant folding and redundant-node removal.
    Basic,
    /// Basic plus node fusions.
    Extended,
    /// Extended plus layout optimisations (ONNX Runtime's level 3).
    All,
}

impl GraphOptimization {
    fn level(self) -> GraphOptimizationLevel {
        match self {
            GraphOptimization::Disable => GraphOptimizationLevel::Disable,
            GraphOptimization::Basic => GraphOptimizationLevel::Level1,
            GraphOptimization::Extended => GraphOptimizationLevel::Level2,
            GraphOptimization::All => GraphOptimizationLevel::Level3,
        }
    }
}

/// An execution provider Podium can ask ONNX Runtime for. Whether the
/// loaded library has it is checked at start-up ([`OrtOptions::check_available`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionProvider {
    Cpu,
    Cuda,
    Tensorrt,
    Openvino,
    Xnnpack,
}

impl ExecutionProvider {
    /// The name in the configuration file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
            ExecutionProvider::Tensorrt => "tensorrt",
            ExecutionProvider::Openvino => "openvino",
            ExecutionProvider::Xnnpack => "xnnpack",
        }
    }

    /// Whether the loaded ONNX Runtime library was built with this provider.
    fn available(self) -> Result<bool, ort::Error> {
        use ort::ep::{self, ExecutionProvider as _};
        match self {
            ExecutionProvider::Cpu => Ok(true),
            ExecutionProvider::Cuda => ep::CUDA::is_available(),
            ExecutionProvider::Tensorrt => ep::TensorRT::is_available(),
            ExecutionProvider::Openvino => ep::OpenVINO::is_available(),
            ExecutionProvider::Xnnpack => ep::XNNPACK::is_available(),
        }
    }

    /// What makes the provider available, for the error that says it is not.
    fn fix(self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "",
            ExecutionProvider::Cuda | ExecutionProvider::Tensorrt => {
                "use an ONNX Runtime build with it (the onnxruntime-gpu wheel's libonnxruntime.so, named with --ort-lib / ORT_DYLIB_PATH) on a machine with the CUDA libraries"
            }
            ExecutionProvider::Openvino => {
                "use an ONNX Runtime build with it (the onnxruntime-openvino wheel's libonnxruntime.so, named with --ort-lib / ORT_DYLIB_PATH)"
            }
            ExecutionProvider::Xnnpack => {
                "use an ONNX Runtime library built with --use_xnnpack, named with --ort-lib / ORT_DYLIB_PATH"
            }
        }
    }

    fn dispatch(self, memory_arena: bool) -> ort::ep::ExecutionProviderDispatch {
        use ort::ep;
        let dispatch = match self {
            ExecutionProvider::Cpu => ep::CPU::default()
                .with_arena_allocator(memory_arena)
                .build(),
            ExecutionProvider::Cuda => ep::CUDA::default().build(),
            ExecutionProvider::Tensorrt => ep::TensorRT::default().build(),
            ExecutionProvider::Openvino => ep::OpenVINO::default().build(),
            ExecutionProvider::Xnnpack => ep::XNNPACK::default().build(),
        };
        // A provider that cannot be registered is an error, never a silent
        // fall-back to the CPU.
        dispatch.error_on_failure()
    }
}

impl fmt::Display for ExecutionProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The ONNX Runtime options of every session of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrtOptions {
    /// Threads of one session's intra-op pool (within an operator).
    pub intra_op_threads: usize,
    /// Threads of one session's inter-op pool; above 1, independent
    /// branches of the graph run in parallel.
    pub inter_op_threads: usize,
    pub graph_optimization: GraphOptimization,
    /// The CPU provider's memory arena: memory kept for reuse between runs.
    pub memory_arena: bool,
    /// Whether idle pool threads spin (busy-wait) for the next work.
    pub spinning: bool,
    /// In order of preference; ONNX Runtime runs what the first cannot on the next.
    pub execution_providers: Vec<ExecutionProvider>,
}

impl Default for OrtOptions {
    fn default() -> OrtOptions {
        OrtOptions {
            intra_op_threads: 1,
            inter_op_threads: 1,
            graph_optimization: GraphOptimization::All,
            memory_arena: true,
            spinning: false,
            execution_providers: vec![ExecutionProvider::Cpu],
        }
    }
}

impl OrtOptions {
    /// Checks the values; `source` names where they came from
    /// (`[model.fraud.onnxruntime]`, `--ort-* flags`) in the error.
    pub fn check(&self, source: &str) -> Result<(), String> {
        for (key, n) in [
            ("intra_op_threads", self.intra_op_threads),
            ("inter_op_threads", self.inter_op_threads),
        ] {
            if !(1..=MAX_THREADS).contains(&n) {
                return Err(format!(
                    "{source}: {key} {n} is not between 1 and {MAX_THREADS}; 1 (the default) suits one session per inference thread"
                ));
            }
        }
        if self.execution_providers.is_empty() {
            return Err(format!(
                "{source}: execution_providers is empty; list at least one, e.g. [\"cpu\"] (the default)"
            ));
        }
        let mut seen = Vec::new();
        for p in &self.execution_providers {
            if seen.contains(p) {
                return Err(format!(
                    "{source}: execution provider \"{p}\" is listed twice; list each once, in order of preference"
                ));
            }
            seen.push(*p);
        }
        Ok(())
    }

    /// Checks that the loaded ONNX Runtime library has every provider
    /// listed; `source` names where the list came from. Call after
    /// [`super::ort::init`].
    pub fn check_available(&self, source: &str) -> Result<(), String> {
        for p in &self.execution_providers {
            match p.available() {
                Ok(true) => {}
                Ok(false) => {
                    return Err(format!(
                        "{source}: execution provider \"{p}\" is not available in the loaded ONNX Runtime library. Fix: {}, or remove \"{p}\" from the list (\"cpu\" is always available)",
                        p.fix()
                    ))
                }
                Err(e) => {
                    return Err(format!(
                        "{source}: cannot ask ONNX Runtime whether execution provider \"{p}\" is available: {e}"
                    ))
                }
            }
        }
        Ok(())
    }

    /// Whether the provider list is the default one, which Podium leaves
    /// to ONNX Runtime rather than registering.
    fn default_providers(&self) -> bool {
        self.execution_providers == [ExecutionProvider::Cpu]
    }

    /// Applies the options to a session builder.
    pub(super) fn apply(&self, builder: SessionBuilder) -> Result<SessionBuilder, ort::Error> {
        let mut builder = builder
            .with_optimization_level(self.graph_optimization.level())?
            .with_intra_threads(self.intra_op_threads)?
            .with_inter_threads(self.inter_op_threads)?
            .with_intra_op_spinning(self.spinning)?;
        if self.inter_op_threads > 1 {
            builder = builder
                .with_parallel_execution(true)?
                .with_inter_op_spinning(self.spinning)?;
        }
        if !self.default_providers() || !self.memory_arena {
            let providers: Vec<_> = self
                .execution_providers
                .iter()
                .map(|p| p.dispatch(self.memory_arena))
                .collect();
            builder = builder.with_execution_providers(providers)?;
            if !self.execution_providers.contains(&ExecutionProvider::Cpu) && !self.memory_arena {
                builder = builder.with_execution_providers([ort::ep::CPU::default()
                    .with_arena_allocator(false)
                    .build()])?;
            }
        }
        Ok(builder)
    }
}

/// One model's values in `[model.<name>.onnxruntime]`: each one given
/// replaces the global default (the `--ort-*` flags), the rest are kept.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrtOverrides {
    pub intra_op_threads: Option<usize>,
    pub inter_op_threads: Option<usize>,
    pub graph_optimization: Option<GraphOptimization>,
    pub memory_arena: Option<bool>,
    pub spinning: Option<bool>,
    pub execution_providers: Option<Vec<ExecutionProvider>>,
}

impl OrtOverrides {
    /// `base` with these values in place of its own.
    pub fn over(&self, base: &OrtOptions) -> OrtOptions {
        OrtOptions {
            intra_op_threads: self.intra_op_threads.unwrap_or(base.intra_op_threads),
            inter_op_threads: self.inter_op_threads.unwrap_or(base.inter_op_threads),
            graph_optimization: self.graph_optimization.unwrap_or(base.graph_optimization),
            memory_arena: self.memory_arena.unwrap_or(base.memory_arena),
            spinning: self.spinning.unwrap_or(base.spinning),
            execution_providers: self
                .execution_providers
                .clone()
                .unwrap_or_else(|| base.execution_providers.clone()),
        }
    }
}

/// The options of every model: the global defaults and each configured
/// model's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrtSettings {
    pub default: OrtOptions,
    pub models: HashMap<String, OrtOptions>,
}

impl OrtSettings {
    /// The global defaults with each model's overrides applied, checked.
    pub fn new(
        default: OrtOptions,
        overrides: &HashMap<String, OrtOverrides>,
    ) -> Result<OrtSettings, String> {
        default.check("--ort-* flags")?;
        let mut models = HashMap::new();
        for (model, o) in overrides {
            let options = o.over(&default);
            options.check(&format!("[model.{model}.onnxruntime]"))?;
            models.insert(model.clone(), options);
        }
        Ok(OrtSettings { default, models })
    }

    /// The options sessions of `model` use.
    pub fn for_model(&self, model: &str) -> &OrtOptions {
        self.models.get(model).unwrap_or(&self.default)
    }

    /// Checks that the loaded library has every provider any model names;
    /// the error names the model (or the flag) and the fix.
    pub fn check_available(&self) -> Result<(), String> {
        self.default.check_available(
            "--ort-execution-providers / PODIUM_ORT_EXECUTION_PROVIDERS (the default of every model)",
        )?;
        let mut models: Vec<_> = self.models.iter().collect();
        models.sort_by(|a, b| a.0.cmp(b.0));
        for (model, options) in models {
            options.check_available(&format!(
                "[model.{model}.onnxruntime] execution_providers (model \"{model}\")"
            ))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_what_they_name() {
        let o = OrtOverrides {
            intra_op_threads: Some(4),
            spinning: Some(true),
            ..Default::default()
        };
        let merged = o.over(&OrtOptions::default());
        assert_eq!(merged.intra_op_threads, 4);
        assert!(merged.spinning);
        assert_eq!(merged.inter_op_threads, 1);
        assert_eq!(merged.graph_optimization, GraphOptimization::All);
        assert_eq!(merged.execution_providers, vec![ExecutionProvider::Cpu]);
    }

    #[test]
    fn bad_values_are_refused_with_the_key_and_the_fix() {
        let cases = [
            (
                OrtOverrides {
                    intra_op_threads: Some(0),
                    ..Default::default()
                },
                "[model.m.onnxruntime]: intra_op_threads 0 is not between 1 and 1024",
            ),
            (
                OrtOverrides {
                    execution_providers: Some(vec![]),
                    ..Default::default()
                },
                "execution_providers is empty; list at least one",
            ),
            (
                OrtOverrides {
                    execution_providers: Some(vec![ExecutionProvider::Cpu, ExecutionProvider::Cpu]),
                    ..Default::default()
                },
                "execution provider \"cpu\" is listed twice",
            ),
        ];
        for (o, want) in cases {
            let overrides = HashMap::from([("m".to_string(), o)]);
            let err = OrtSettings::new(OrtOptions::default(), &overrides).unwrap_err();
            assert!(err.contains(want), "{err:?} does not contain {want:?}");
        }
    }
}
