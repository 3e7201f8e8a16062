//! `podium alias`: point aliases at versions, in the registry directly or
//! through a running server's admin API. Either way each change is written
//! to the alias history once, in the same words.

use clap::Subcommand;

use super::admin_client::{AdminClient, Remote, SetAliasRequest, SwapAnswer};
use super::models::BY_CLI;
use crate::registry::Registry;
use crate::serving::history::{Change, History};

#[derive(Subcommand)]
pub enum AliasCommand {
    /// Point ALIAS of MODEL at VERSION (replacing where it pointed before).
    Set {
        model: String,
        alias: String,
        version: u64,
        /// With --server: accept a version whose inputs/outputs differ from what
        /// the alias serves (without --server the server checks at its next
        /// poll, and keeps serving the old version if they differ).
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
    /// Point ALIAS back at the version it pointed at before its last move, as
    /// the alias history tells; again, one move further back each time.
    /// With --server, the server's history is used and a version it kept
    /// warm is swapped in at once.
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
    pub fn run(self, registry: &dyn Registry, history: &History) -> anyhow::Result<()> {
        use AliasCommand::*;
        let (Set { remote, .. }
        | Get { remote, .. }
        | List { remote, .. }
        | Delete { remote, .. }
        | Rollback { remote, .. }) = &self;
        match remote.client()? {
            Some(admin) => self.on_server(&admin),
            None => self.in_registry(registry, history),
        }
    }

    fn in_registry(self, registry: &dyn Registry, history: &History) -> anyhow::Result<()> {
        use AliasCommand::*;
        match self {
            Set {
                model,
                alias,
                version,
                ..
            } => {
                let from = registry.aliases(&model)?.get(&alias).copied();
                registry.set_alias(&model, &alias, version)?;
                let change = Change::AliasSet {
                    alias: &alias,
                    from,
                    to: version,
                    rollback: false,
                };
                history.record_change(&model, change, BY_CLI);
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
                let from = registry.aliases(&model)?.get(&alias).copied();
                registry.delete_alias(&model, &alias)?;
                history.record_change(
                    &model,
                    Change::AliasDeleted {
                        alias: &alias,
                        from,
                    },
                    BY_CLI,
                );
                eprintln!("deleted {model}@{alias}");
            }
            Rollback { model, alias, .. } => {
                let Some(to) = history.rollback_target(&model, &alias)? else {
                    anyhow::bail!(
                        "nothing further to roll back to: the alias history {} has no earlier move of {model}@{alias} that was not rolled back already; point it with `podium alias set {model} {alias} VERSION`",
                        history.path().display()
                    );
                };
                let from = registry.aliases(&model)?.get(&alias).copied();
                registry.set_alias(&model, &alias, to)?;
                let change = Change::AliasSet {
                    alias: &alias,
                    from,
                    to,
                    rollback: true,
                };
                history.record_change(&model, change, &format!("{BY_CLI}:rollback"));
                eprintln!(
                    "{model}@{alias} -> version {to} (rolled back{})",
                    from.map(|v| format!(" from {v}")).unwrap_or_default()
                );
            }
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
