//! The `podium` command line: flag definitions and one file per command.
//!
//! - [`registry`]: the global flags that choose the registry.
//! - [`serve`]: `podium serve`, flags → [`crate::server::ServeOptions`].
//! - [`models`], [`alias`], [`traffic`], [`table`], [`experiment`]: the
//!   other commands.
//! - [`keys`]: `podium keys new`, API keys and admin tokens.
//! - [`health`]: `podium health`, a probe of a running server (the
//!   container's `HEALTHCHECK`).
//! - [`batch`], [`compare`], [`monitor`]: the offline side ([`crate::offline`]).
//! - [`admin_client`]: a typed client of a running server's admin API, for
//!   `alias ... --server`, `traffic` and `experiment`.
//! - [`parse`]: sizes, seconds and `ALIAS=NUMBER` values.
//!
//! Results go to stdout, confirmations and errors to stderr.

pub mod admin_client;
pub mod alias;
pub mod batch;
pub mod compare;
pub mod experiment;
pub mod experiment_report;
pub mod health;
pub mod keys;
pub mod models;
pub mod monitor;
pub mod parse;
pub mod promote;
pub mod registry;
pub mod serve;
pub mod table;
pub mod traffic;

use clap::{Parser, Subcommand};

use crate::serving::history::{self, History};

use alias::AliasCommand;
use batch::BatchArgs;
use compare::CompareArgs;
use experiment::ExperimentCommand;
use health::HealthArgs;
use keys::KeysCommand;
use models::ModelsCommand;
use monitor::MonitorArgs;
use promote::PromoteArgs;
use registry::RegistryArgs;
use serve::ServeArgs;
use table::TableCommand;
use traffic::TrafficCommand;

/// Podium: serve ONNX models by registry alias over the Open Inference Protocol.
#[derive(Parser)]
#[command(name = "podium", version)]
pub struct Cli {
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry's models over OIP REST and gRPC (KServe V2 / Triton compatible).
    Serve(Box<ServeArgs>),
    /// Register and list models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Point aliases (champion, challenger, …) at model versions.
    #[command(subcommand)]
    Alias(AliasCommand),
    /// See or change an endpoint's traffic split on a running server.
    #[command(subcommand)]
    Traffic(TrafficCommand),
    /// Read an inference table written by `podium serve --table-dir`.
    #[command(subcommand)]
    Table(TableCommand),
    /// Make API keys (--api-keys) and admin tokens (--admin-tokens).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Score a Parquet or CSV file with a model version (MODEL, MODEL@ALIAS,
    /// MODEL/VERSION) and write the scores to Parquet.
    Batch(Box<BatchArgs>),
    /// Compare the champion and the challenger on a held-out file (metric,
    /// paired-bootstrap interval, decision); optionally promote the challenger.
    Compare(Box<CompareArgs>),
    /// Profile an endpoint's inference table and measure its drift from a
    /// baseline (PSI, Kolmogorov–Smirnov, Jensen–Shannon), per window and arm;
    /// post breaches to a webhook.
    Monitor(Box<MonitorArgs>),
    /// See an endpoint's live experiment readout on a running server.
    #[command(subcommand)]
    Experiment(ExperimentCommand),
    /// Ask a server on this machine whether it is live (--ready: ready);
    /// exit status 0 when it answers 200. The container image's HEALTHCHECK.
    Health(HealthArgs),
    /// Promote an experiment endpoint's challenger on a running server: its
    /// version becomes the baseline alias's, when the readout's decision allows.
    Promote(PromoteArgs),
}

impl Cli {
    /// Runs the command; an error is for `main` to print as `error: ...`.
    pub fn run(self) -> anyhow::Result<()> {
        // These need no registry.
        let command = match self.command {
            Command::Keys(command) => return command.run(),
            Command::Health(args) => return args.run(),
            Command::Monitor(args) => return args.run(),
            Command::Promote(args) => return args.run(),
            command => command,
        };
        let config = self.registry.config()?;
        let registry = config.open()?;
        // The history every registry change is written to: the server's
        // default file beside the registry, or PODIUM_HISTORY_FILE as `serve` reads it.
        let history = History::new(
            std::env::var_os("PODIUM_HISTORY_FILE")
                .filter(|f| !f.is_empty())
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| history::default_path(config.state_dir())),
        );
        match command {
            Command::Serve(args) => args.run(config),
            Command::Models(command) => command.run(registry.as_ref(), &history),
            Command::Alias(command) => command.run(registry.as_ref(), &history),
            Command::Traffic(command) => command.run(),
            Command::Table(command) => command.run(),
            Command::Keys(_) | Command::Health(_) | Command::Monitor(_) | Command::Promote(_) => {
                unreachable!("run before the registry opens")
            }
            Command::Batch(args) => args.run(registry.as_ref()),
            Command::Compare(args) => args.run(&config, registry.as_ref()),
            Command::Experiment(command) => command.run(),
        }
    }
}
