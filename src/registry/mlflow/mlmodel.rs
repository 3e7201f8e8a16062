//! The `MLmodel` file MLflow writes beside a logged model: which flavors it
//! has, and which file the `onnx` flavor's model is in.

use std::path::{Component, Path};

use serde::Deserialize;
use serde_norway::{Mapping, Value};

/// What an `MLmodel` says about the ONNX file, when it does not name one.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum NoOnnx {
    /// The file is not YAML (the parser's words).
    NotYaml(String),
    /// There is no `onnx` flavor with a `data` path; these are the flavors
    /// it has, in the file's order.
    Flavors(Vec<String>),
}

/// The part of an `MLmodel` Podium reads; other keys are ignored.
#[derive(Debug, Deserialize)]
struct MlModel {
    #[serde(default)]
    flavors: Option<Mapping>,
}

/// The `onnx` flavor's configuration; other keys are ignored.
#[derive(Debug, Deserialize)]
struct OnnxFlavor {
    #[serde(default)]
    data: Option<String>,
}

/// The `data` path of the `onnx` flavor in an `MLmodel`.
pub(super) fn onnx_data_path(mlmodel: &str) -> Result<String, NoOnnx> {
    let parsed: Option<MlModel> =
        serde_norway::from_str(mlmodel).map_err(|e| NoOnnx::NotYaml(e.to_string()))?;
    let flavors = parsed.and_then(|m| m.flavors).unwrap_or_default();
    let onnx = flavors
        .get("onnx")
        .cloned()
        .and_then(|v| serde_norway::from_value::<OnnxFlavor>(v).ok())
        .and_then(|f| f.data)
        .filter(|data| !data.is_empty());
    onnx.ok_or_else(|| {
        NoOnnx::Flavors(
            flavors
                .keys()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        )
    })
}

/// A relative path that stays inside the artifact directory.
pub(super) fn check_relative(rel: &str) -> Result<(), &'static str> {
    let path = Path::new(rel);
    if rel.is_empty() || path.is_absolute() {
        return Err("must be a relative path");
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("leaves the model's artifact directory");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MLMODEL: &str = "artifact_path: mlflow-artifacts:/0/models/m-1/artifacts
flavors:
  onnx:
    code: null
    data: model.onnx
    onnx_version: 1.23.2
    providers:
    - CPUExecutionProvider
  python_function:
    data: 'other.onnx'
    loader_module: mlflow.onnx
mlflow_version: 3.17.2
";

    fn flavors(names: &[&str]) -> NoOnnx {
        NoOnnx::Flavors(names.iter().map(|n| n.to_string()).collect())
    }

    #[test]
    fn finds_the_onnx_file_through_the_mlmodel() {
        assert_eq!(onnx_data_path(MLMODEL).unwrap(), "model.onnx");
        let quoted = MLMODEL.replace("data: model.onnx", "data: \"sub/m.onnx\"");
        assert_eq!(onnx_data_path(&quoted).unwrap(), "sub/m.onnx");
        let sklearn = "flavors:\n  python_function:\n    data: model.pkl\n  sklearn:\n    pickled_model: model.pkl\n";
        assert_eq!(
            onnx_data_path(sklearn).unwrap_err(),
            flavors(&["python_function", "sklearn"])
        );
        // The file's order, not sorted.
        let order = "flavors:\n  sklearn: {}\n  python_function: {}\n";
        assert_eq!(
            onnx_data_path(order).unwrap_err(),
            flavors(&["sklearn", "python_function"])
        );
        // `data` of another flavor, or a nested key named onnx, is not it.
        let nested = "flavors:\n  python_function:\n    onnx:\n      data: x.onnx\n";
        assert!(onnx_data_path(nested).is_err());
        let null = "flavors:\n  onnx:\n    data: null\n";
        assert_eq!(onnx_data_path(null).unwrap_err(), flavors(&["onnx"]));
        assert_eq!(onnx_data_path("run_id: x\n").unwrap_err(), flavors(&[]));
        assert_eq!(onnx_data_path("").unwrap_err(), flavors(&[]));
        // Comments and flow style are YAML too.
        let flow = "# written by hand\nflavors: {onnx: {data: m.onnx}}\n";
        assert_eq!(onnx_data_path(flow).unwrap(), "m.onnx");
        assert!(matches!(
            onnx_data_path("flavors: [unclosed\n"),
            Err(NoOnnx::NotYaml(_))
        ));
    }

    #[test]
    fn the_onnx_path_stays_inside_the_artifacts() {
        for bad in ["../x.onnx", "/etc/passwd", "a/../../b", ""] {
            assert!(check_relative(bad).is_err(), "{bad}");
        }
        check_relative("sub/model.onnx").unwrap();
        check_relative("./model.onnx").unwrap();
    }
}
