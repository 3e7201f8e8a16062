//! `podium models`: register, list, delete and archive model versions in
//! the registry. Each change is written to the alias history, as the admin
//! API writes it.

use std::path::PathBuf;

use clap::Subcommand;

use super::parse::parse_bytes;
use crate::registry::{
    check_against_champion, validate_model_name, ModelFile, ModelInfo, Registry,
};
use crate::serving::history::{Change, History};

/// Who the history says made a change from the command line.
pub(super) const BY_CLI: &str = "cli";

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
        /// Register it even though its inputs/outputs differ from the version
        /// NAME@champion points at.
        #[arg(long)]
        allow_signature_change: bool,
    },
    /// List models with their versions, aliases and archived versions.
    List,
    /// Delete version VERSION of NAME (its file; the number is not reused).
    /// Refused while an alias points at it.
    DeleteVersion { name: String, version: u64 },
    /// Archive version VERSION of NAME: kept, but no longer listed, so
    /// `latest` skips it. Refused while an alias points at it.
    Archive { name: String, version: u64 },
    /// List an archived version again.
    Unarchive { name: String, version: u64 },
}

impl ModelsCommand {
    /// Runs the command on `registry`: the new version or one line per model
    /// to stdout.
    pub fn run(self, registry: &dyn Registry, history: &History) -> anyhow::Result<()> {
        match self {
            ModelsCommand::Register {
                name,
                file,
                max_model_bytes,
                allow_signature_change,
            } => {
                validate_model_name(&name)?;
                registry.takes_registrations(&name)?;
                let model = ModelFile::read(&file, max_model_bytes)?;
                if !allow_signature_change {
                    check_against_champion(
                        registry,
                        &name,
                        &model,
                        &file.display().to_string(),
                        "--allow-signature-change",
                    )?;
                }
                let version = registry.register_model(&name, &model)?;
                history.record_change(&name, Change::Registered(version), BY_CLI);
                println!("{version}");
            }
            ModelsCommand::List => {
                let models = registry.snapshot(None)?;
                if models.is_empty() {
                    eprintln!("registry {} has no models", registry.location());
                }
                for (model, info) in models {
                    let info = info?;
                    let archived = registry.archived_versions(&model)?;
                    println!("{}", model_line(&model, &info, &archived));
                }
            }
            ModelsCommand::DeleteVersion { name, version } => {
                registry.delete_version(&name, version)?;
                history.record_change(&name, Change::VersionDeleted(version), BY_CLI);
                eprintln!("deleted version {version} of {name}");
            }
            ModelsCommand::Archive { name, version } => {
                registry.set_archived(&name, version, true)?;
                history.record_change(&name, Change::Archived(version), BY_CLI);
                eprintln!("archived version {version} of {name} (`podium models unarchive {name} {version}` lists it again)");
            }
            ModelsCommand::Unarchive { name, version } => {
                registry.set_archived(&name, version, false)?;
                history.record_change(&name, Change::Unarchived(version), BY_CLI);
                eprintln!("unarchived version {version} of {name}");
            }
        }
        Ok(())
    }
}

/// `MODEL\tversions: 1,2\taliases: champion=2` (or `aliases: -`), and
/// `\tarchived: 3` when some are.
fn model_line(model: &str, info: &ModelInfo, archived: &[u64]) -> String {
    let versions: Vec<String> = info.versions.iter().map(u64::to_string).collect();
    let aliases: Vec<String> = info
        .aliases
        .iter()
        .map(|(a, v)| format!("{a}={v}"))
        .collect();
    let mut line = format!(
        "{model}\tversions: {}\taliases: {}",
        versions.join(","),
        if aliases.is_empty() {
            "-".to_string()
        } else {
            aliases.join(",")
        }
    );
    if !archived.is_empty() {
        let archived: Vec<String> = archived.iter().map(u64::to_string).collect();
        line.push_str(&format!("\tarchived: {}", archived.join(",")));
    }
    line
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
            model_line("fraud", &info, &[]),
            "fraud\tversions: 1,2\taliases: -"
        );
        info.aliases.insert("champion".into(), 2);
        info.aliases.insert("challenger".into(), 1);
        assert_eq!(
            model_line("fraud", &info, &[3]),
            "fraud\tversions: 1,2\taliases: challenger=1,champion=2\tarchived: 3"
        );
    }
}
