//! `podium models`: register and list models in the registry.

use std::path::PathBuf;

use clap::Subcommand;

use super::parse::parse_bytes;
use crate::registry::{validate_model_name, ModelFile, ModelInfo, Registry};

#[derive(Subcommand)]
pub enum ModelsCommand {
    /// Register FILE.onnx as the next version of NAME; prints the new version.
    Register {
        /// Model name (letters, digits, '_', '-', '.').
        name: String,
        /// The ONNX file to copy into the registry: a regular file that
        /// parses as ONNX.
        file: PathBuf,
        /// Refuse a larger file (bytes, or with a K/M/G suffix).
        #[arg(long, env = "PODIUM_MAX_MODEL_BYTES", default_value = "2G", value_parser = parse_bytes)]
        max_model_bytes: u64,
    },
    /// List models with their versions and aliases.
    List,
}

impl ModelsCommand {
    /// Runs the command on `registry`: the new version or one line per model
    /// to stdout.
    pub fn run(self, registry: &dyn Registry) -> anyhow::Result<()> {
        match self {
            ModelsCommand::Register {
                name,
                file,
                max_model_bytes,
            } => {
                validate_model_name(&name)?;
                registry.takes_registrations(&name)?;
                let model = ModelFile::read(&file, max_model_bytes)?;
                let version = registry.register_model(&name, &model)?;
                println!("{version}");
            }
            ModelsCommand::List => {
                let models = registry.snapshot(None)?;
                if models.is_empty() {
                    eprintln!("registry {} has no models", registry.location());
                }
                for (model, info) in models {
                    println!("{}", model_line(&model, &info?));
                }
            }
        }
        Ok(())
    }
}

/// `MODEL\tversions: 1,2\taliases: champion=2` (or `aliases: -`).
fn model_line(model: &str, info: &ModelInfo) -> String {
    let versions: Vec<String> = info.versions.iter().map(u64::to_string).collect();
    let aliases: Vec<String> = info
        .aliases
        .iter()
        .map(|(a, v)| format!("{a}={v}"))
        .collect();
    format!(
        "{model}\tversions: {}\taliases: {}",
        versions.join(","),
        if aliases.is_empty() {
            "-".to_string()
        } else {
            aliases.join(",")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lines() {
        let mut info = ModelInfo {
            versions: vec![1, 2],
            aliases: Default::default(),
        };
        assert_eq!(
            model_line("fraud", &info),
            "fraud\tversions: 1,2\taliases: -"
        );
        info.aliases.insert("champion".into(), 2);
        info.aliases.insert("challenger".into(), 1);
        assert_eq!(
            model_line("fraud", &info),
            "fraud\tversions: 1,2\taliases: challenger=1,champion=2"
        );
    }
}
