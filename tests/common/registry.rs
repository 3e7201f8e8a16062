//! Registry fixtures written straight through Podium's local registry (no
//! `podium` CLI process per step), so a test's setup costs file copies only.

use std::path::{Path, PathBuf};

use podium::registry::local::LocalRegistry;
use podium::registry::Registry;

use super::{model_file, repo};

/// The models of [`demo_registry`] besides fraud, each version 1 as `champion`.
const FIXTURES: [(&str, &str); 4] = [
    ("mlp", "mlp/v1.onnx"),
    ("alltypes", "fixtures/alltypes.onnx"),
    ("typed", "fixtures/typed.onnx"),
    ("fixed", "fixtures/fixed_shape.onnx"),
];

/// Registers `models/FILE` as the next version of `model` in the local
/// registry at `registry`, returning the new version.
pub fn register(registry: &Path, model: &str, file: &str) -> u64 {
    register_path(registry, model, &model_file(file))
}

/// Registers the file at `path` (it must pass registration's ONNX check) as
/// the next version of `model`.
pub fn register_path(registry: &Path, model: &str, path: &Path) -> u64 {
    LocalRegistry::new(registry)
        .register(model, path)
        .unwrap_or_else(|e| panic!("register {} as {model}: {e}", path.display()))
}

/// Writes `dir/unloadable.onnx`: a file that passes registration's ONNX check
/// (a model header: IR version 8, a graph with an output "y") but that ONNX
/// Runtime refuses to load (no opset, no nodes); returns its path.
pub fn unloadable_model(dir: &Path) -> PathBuf {
    let path = dir.join("unloadable.onnx");
    std::fs::write(
        &path,
        [0x08, 0x08, 0x3a, 0x05, 0x62, 0x03, 0x0a, 0x01, b'y'],
    )
    .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Points `model@alias` at `version` in the local registry at `registry`.
pub fn set_alias(registry: &Path, model: &str, alias: &str, version: u64) {
    LocalRegistry::new(registry)
        .set_alias(model, alias, version)
        .unwrap_or_else(|e| panic!("set {model}@{alias} to {version}: {e}"));
}

/// A registry at `dir/registry` with the demo and fixture models:
/// fraud v1 (champion) and v2 (challenger), mlp v1, alltypes v1, typed v1,
/// fixed v1.
pub fn demo_registry(dir: &Path) -> PathBuf {
    let reg = dir.join("registry");
    assert_eq!(register(&reg, "fraud", "fraud/v1.onnx"), 1);
    assert_eq!(register(&reg, "fraud", "fraud/v2.onnx"), 2);
    set_alias(&reg, "fraud", "champion", 1);
    set_alias(&reg, "fraud", "challenger", 2);
    for (name, file) in FIXTURES {
        assert_eq!(register(&reg, name, file), 1);
        set_alias(&reg, name, "champion", 1);
    }
    reg
}

/// Writes `dir/NAME` (NAME from the size): an ONNX model holding about
/// `megabytes` MB of weights that costs next to nothing to run (`y =
/// Gather(W, idx)`, input `idx` INT64 `[-1]`, output `y` FP32 `[-1, 16]`),
/// made by `scripts/make-sized-model.py` with the test venv's Python.
pub fn sized_model(dir: &Path, megabytes: f64) -> PathBuf {
    let path = dir.join(format!("sized-{megabytes}mb.onnx"));
    let python = repo().join(".venv-test/bin/python");
    let status = std::process::Command::new(&python)
        .arg(repo().join("scripts/make-sized-model.py"))
        .arg(megabytes.to_string())
        .arg(&path)
        .status()
        .unwrap_or_else(|e| {
            panic!(
                "run {} (make it with scripts/test.sh): {e}",
                python.display()
            )
        });
    assert!(status.success(), "scripts/make-sized-model.py failed");
    path
}
