//! `podium alias`: point aliases at versions, in the registry directly or
//! through a running server's admin API.

use clap::Subcommand;

use super::admin_client::{AdminClient, Remote, SetAliasRequest, SwapAnswer};
use crate::registry::Registry;

#[derive(Subcommand)]
pub enum AliasCommand {
    /// Point ALIAS of MODEL at VERSION (replacing where it pointed before).
    Set {
        model: String,
        alias: String,
        version: u64,
        /// With --server: accept a version whose inputs/outputs differ from what the alias serves.
        #[arg(long)]
        allow_signature_change: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print the version ALIAS of MODEL points at.
    Get {
        model: String,
        alias: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the aliases of MODEL.
    List {
        model: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove ALIAS from MODEL.
    Delete {
        model: String,
        alias: String,
        /// With --server: delete even when endpoints route to the alias
        /// (their users then get 404s).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Point ALIAS back at the version it served before (needs --server: the
    /// running server keeps that version warm).
    Rollback {
        model: String,
        alias: String,
        #[command(flatten)]
        remote: Remote,
    },
}

impl AliasCommand {
    /// Runs the command against `--server` when one is named, else against
    /// `registry`. Results go to stdout, confirmations to stderr.
    pub fn run(self, registry: &dyn Registry) -> anyhow::Result<()> {
        use AliasCommand::*;
        let (Set { remote, .. }
        | Get { remote, .. }
        | List { remote, .. }
        | Delete { remote, .. }
        | Rollback { remote, .. }) = &self;
        match remote.client()? {
            Some(admin) => self.on_server(&admin),
            None => self.in_registry(registry),
        }
    }

    fn in_registry(self, registry: &dyn Registry) -> anyhow::Result<()> {
        use AliasCommand::*;
        match self {
            Set {
                model,
                alias,
                version,
                ..
            } => {
                registry.set_alias(&model, &alias, version)?;
                eprintln!("{model}@{alias} -> version {version}");
            }
            Get { model, alias, .. } => match registry.aliases(&model)?.get(&alias) {
                Some(v) => println!("{v}"),
                None => anyhow::bail!("model \"{model}\" has no alias \"{alias}\""),
            },
            List { model, .. } => {
                for (alias, version) in registry.aliases(&model)? {
                    println!("{alias}\t{version}");
                }
            }
            Delete { model, alias, .. } => {
                registry.delete_alias(&model, &alias)?;
                eprintln!("deleted {model}@{alias}");
            }
            Rollback { model, alias, .. } => anyhow::bail!(
                "rollback of {model}@{alias} needs --server URL (or PODIUM_SERVER): the running server knows the version it served before and keeps it warm"
            ),
        }
        Ok(())
    }

    fn on_server(self, admin: &AdminClient) -> anyhow::Result<()> {
        use AliasCommand::*;
        match self {
            Set {
                model,
                alias,
                version,
                allow_signature_change,
                ..
            } => {
                let change = SetAliasRequest {
                    version,
                    allow_signature_change,
                };
                eprintln!("{}", swap_line(&admin.set_alias(&model, &alias, &change)?));
            }
            Rollback { model, alias, .. } => {
                eprintln!("{}", swap_line(&admin.rollback(&model, &alias)?));
            }
            Delete {
                model,
                alias,
                force,
                ..
            } => {
                admin.delete_alias(&model, &alias, force)?;
                eprintln!("deleted {model}@{alias}");
            }
            Get { model, alias, .. } => match admin.aliases(&model)?.aliases.get(&alias) {
                Some(version) => println!("{version}"),
                None => anyhow::bail!("model \"{model}\" has no alias \"{alias}\""),
            },
            List { model, .. } => {
                let answer = admin.aliases(&model)?;
                for (alias, version) in &answer.aliases {
                    let serving = match answer.serving.get(alias).copied().flatten() {
                        Some(v) => v.to_string(),
                        None => "nothing".to_string(),
                    };
                    println!("{alias}\t{version}\tserving {serving}");
                }
            }
        }
        Ok(())
    }
}

/// The confirmation of an alias change made through the server.
pub(super) fn swap_line(swap: &SwapAnswer) -> String {
    let SwapAnswer { model, alias, .. } = swap;
    if !swap.swapped {
        return format!("{model}@{alias} already serves version {}", swap.version);
    }
    let was = match swap.from_version {
        Some(from) => format!("was {from}"),
        None => "new".to_string(),
    };
    format!(
        "{model}@{alias} -> version {} ({was}; load {:.1} ms, validate {:.1} ms, warm-up {:.1} ms)",
        swap.version, swap.load_ms, swap.validate_ms, swap.warm_ms,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn swap(from_version: Option<u64>, swapped: bool) -> SwapAnswer {
        SwapAnswer {
            model: "fraud".into(),
            alias: "champion".into(),
            from_version,
            version: 2,
            swapped,
            load_ms: 12.345,
            validate_ms: 0.5,
            warm_ms: 3.0,
        }
    }

    #[test]
    fn swap_confirmations() {
        assert_eq!(
            swap_line(&swap(Some(1), true)),
            "fraud@champion -> version 2 (was 1; load 12.3 ms, validate 0.5 ms, warm-up 3.0 ms)"
        );
        assert_eq!(
            swap_line(&swap(None, true)),
            "fraud@champion -> version 2 (new; load 12.3 ms, validate 0.5 ms, warm-up 3.0 ms)"
        );
        assert_eq!(
            swap_line(&swap(Some(2), false)),
            "fraud@champion already serves version 2"
        );
    }
}
