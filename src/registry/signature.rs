//! Registration's signature check: a new version of a model whose inputs or
//! outputs differ from the version its champion points at is refused,
//! unless the caller allows it. Both ways in (the `podium models register`
//! command and `POST /admin/models`) ask [`check_against_champion`]; each
//! names its own way to allow the change.

use super::onnx::{OnnxSummary, TensorType};
use super::{ModelFile, Registry, DEFAULT_ALIAS, DEFAULT_MAX_MODEL_BYTES};
use crate::error::Error;

/// Refuses `file` as the next version of `model` when its graph's interface
/// differs from the version `model@champion` points at ([`differences`]).
/// `allow` names how the caller overrides it (`--allow-signature-change`);
/// `what` names the file. A new model, a model without a champion, or a
/// champion whose file cannot be read (reported in the log) is no reason
/// to refuse.
pub fn check_against_champion(
    registry: &dyn Registry,
    model: &str,
    file: &ModelFile,
    what: &str,
    allow: &str,
) -> Result<(), Error> {
    let champion = match registry.aliases(model) {
        Ok(aliases) => aliases.get(DEFAULT_ALIAS).copied(),
        Err(Error::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let Some(version) = champion else {
        return Ok(());
    };
    let current = registry
        .artifact(model, version)
        .and_then(|path| ModelFile::read(&path, DEFAULT_MAX_MODEL_BYTES));
    let current = match current {
        Ok(current) => current,
        Err(e) => {
            tracing::warn!(
                "registering {what} as \"{model}\": not compared with {model}@{DEFAULT_ALIAS} (version {version}), whose file cannot be read: {e}"
            );
            return Ok(());
        }
    };
    let diffs = differences(current.summary(), file.summary());
    if diffs.is_empty() {
        return Ok(());
    }
    Err(Error::Refused(format!(
        "{what} has a different signature than version {version}, which {model}@{DEFAULT_ALIAS} points at: {}; clients of {model} would break when it is promoted. Register it under another model name, or anyway with {allow}",
        diffs.join("; ")
    )))
}

/// What a client of `current` would notice with `new` instead, in words
/// (`output "label" is gone`); empty when nothing. A new output is no
/// difference; a new input, a gone one, a gone output, another element type
/// or another fixed size is.
pub fn differences(current: &OnnxSummary, new: &OnnxSummary) -> Vec<String> {
    let mut diffs = Vec::new();
    let sides = [
        (
            "input",
            &current.inputs,
            &current.input_types,
            &new.inputs,
            &new.input_types,
        ),
        (
            "output",
            &current.outputs,
            &current.output_types,
            &new.outputs,
            &new.output_types,
        ),
    ];
    for (kind, names, types, new_names, new_types) in sides {
        let find = |names: &[String], types: &[TensorType], name: &str| {
            names
                .iter()
                .position(|n| n == name)
                .map(|i| types.get(i).cloned().unwrap_or_default())
        };
        for name in names {
            let was = find(names, types, name).unwrap_or_default();
            match find(new_names, new_types, name) {
                None => diffs.push(format!("{kind} \"{name}\" is gone")),
                Some(now) => diffs.extend(type_change(kind, name, &was, &now)),
            }
        }
        if kind == "input" {
            for name in new_names.iter().filter(|n| !names.contains(n)) {
                diffs.push(format!("new input \"{name}\""));
            }
        }
    }
    diffs
}

/// `input "x" is INT64, was FLOAT` / `has shape [-1,64], was [-1,30]`.
fn type_change(kind: &str, name: &str, was: &TensorType, now: &TensorType) -> Option<String> {
    if was.elem_type != 0 && now.elem_type != 0 && was.elem_type != now.elem_type {
        return Some(format!(
            "{kind} \"{name}\" is {}, was {}",
            now.elem_name(),
            was.elem_name()
        ));
    }
    let (Some(a), Some(b)) = (&was.shape, &now.shape) else {
        return None;
    };
    let fixed_differ = a.len() != b.len()
        || a.iter()
            .zip(b)
            .any(|(x, y)| matches!((x, y), (Some(x), Some(y)) if x != y));
    fixed_differ.then(|| {
        format!(
            "{kind} \"{name}\" has shape {}, was {}",
            now.shape_text(),
            was.shape_text()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(inputs: &[(&str, i32, &[i64])], outputs: &[(&str, i32, &[i64])]) -> OnnxSummary {
        let split = |side: &[(&str, i32, &[i64])]| {
            let names = side.iter().map(|(n, ..)| n.to_string()).collect();
            let types = side
                .iter()
                .map(|(_, t, dims)| TensorType {
                    elem_type: *t,
                    shape: Some(dims.iter().map(|&d| (d > 0).then_some(d)).collect()),
                })
                .collect();
            (names, types)
        };
        let (inputs, input_types) = split(inputs);
        let (outputs, output_types) = split(outputs);
        OnnxSummary {
            ir_version: 8,
            inputs,
            outputs,
            input_types,
            output_types,
        }
    }

    #[test]
    fn what_a_client_would_notice() {
        let fraud = summary(
            &[("input", 1, &[-1, 30])],
            &[("label", 7, &[-1]), ("p", 1, &[-1, 2])],
        );
        assert!(differences(&fraud, &fraud).is_empty());
        // Another batch size is dynamic either way; a new output breaks nobody.
        let more = summary(
            &[("input", 1, &[8, 30])],
            &[("label", 7, &[-1]), ("p", 1, &[-1, 2]), ("extra", 1, &[-1])],
        );
        assert!(
            differences(&fraud, &more).is_empty(),
            "{:?}",
            differences(&fraud, &more)
        );
        let mlp = summary(
            &[("input", 1, &[-1, 64]), ("mask", 9, &[-1])],
            &[("p", 11, &[-1, 2])],
        );
        assert_eq!(
            differences(&fraud, &mlp),
            vec![
                "input \"input\" has shape [-1,64], was [-1,30]",
                "new input \"mask\"",
                "output \"label\" is gone",
                "output \"p\" is DOUBLE, was FLOAT",
            ]
        );
    }
}
