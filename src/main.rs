//! The `podium` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use podium::registry::local::LocalRegistry;
use podium::registry::Registry;
use podium::server::{serve, shutdown_signal, ServeOptions};

/// Podium: serve ONNX models by registry alias over the Open Inference Protocol.
#[derive(Parser)]
#[command(name = "podium", version)]
struct Cli {
    /// The model registry directory.
    #[arg(
        long,
        env = "PODIUM_REGISTRY",
        default_value = "registry",
        global = true
    )]
    registry: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the registry's models over OIP REST and gRPC (KServe V2 / Triton compatible).
    Serve(ServeArgs),
    /// Register and list models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Point aliases (champion, challenger, …) at model versions.
    #[command(subcommand)]
    Alias(AliasCommand),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (use 0.0.0.0:8000 to accept other hosts).
    #[arg(long, env = "PODIUM_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Address for the OIP gRPC service (inference.GRPCInferenceService) and grpc.health.v1.
    #[arg(long, env = "PODIUM_GRPC_LISTEN", default_value = "127.0.0.1:8001")]
    grpc_listen: SocketAddr,
    /// Inference threads, each with its own ONNX Runtime session per model [default: number of cores].
    #[arg(long, env = "PODIUM_INFERENCE_THREADS")]
    inference_threads: Option<usize>,
    /// Requests that may wait for an inference thread; beyond this Podium answers 503 at once.
    #[arg(long, env = "PODIUM_QUEUE_DEPTH", default_value_t = 1024)]
    queue_depth: usize,
    /// Largest request body (REST, else 413) or message (gRPC, else RESOURCE_EXHAUSTED), in bytes.
    #[arg(long, env = "PODIUM_MAX_REQUEST_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_request_bytes: usize,
    /// How often to re-read the registry for new versions and alias moves, in milliseconds.
    #[arg(long, env = "PODIUM_POLL_INTERVAL_MS", default_value_t = 1000)]
    poll_interval_ms: u64,
    /// The ONNX Runtime shared library [default: .ort/ of the checkout, or beside the binary].
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_lib: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Register FILE.onnx as the next version of NAME; prints the new version.
    Register {
        /// Model name (letters, digits, '_', '-', '.').
        name: String,
        /// The ONNX file to copy into the registry.
        file: PathBuf,
    },
    /// List models with their versions and aliases.
    List,
}

#[derive(Subcommand)]
enum AliasCommand {
    /// Point ALIAS of MODEL at VERSION (replacing where it pointed before).
    Set {
        model: String,
        alias: String,
        version: u64,
    },
    /// Print the version ALIAS of MODEL points at.
    Get { model: String, alias: String },
    /// List the aliases of MODEL.
    List { model: String },
    /// Remove ALIAS from MODEL.
    Delete { model: String, alias: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PODIUM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let registry = LocalRegistry::new(&cli.registry);
    match cli.command {
        Command::Serve(args) => {
            let threads = args.inference_threads.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
            let opts = ServeOptions {
                listen: args.listen,
                grpc_listen: args.grpc_listen,
                registry: cli.registry,
                inference_threads: threads,
                queue_depth: args.queue_depth,
                max_request_bytes: args.max_request_bytes,
                poll_interval: Duration::from_millis(args.poll_interval_ms.max(10)),
                ort_lib: args.ort_lib,
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(serve(opts, shutdown_signal()))
        }
        Command::Models(ModelsCommand::Register { name, file }) => {
            let version = registry.register(&name, &file)?;
            println!("{version}");
            Ok(())
        }
        Command::Models(ModelsCommand::List) => {
            let models = registry.models()?;
            if models.is_empty() {
                eprintln!("registry {} has no models", cli.registry.display());
            }
            for model in models {
                let versions: Vec<String> = registry
                    .versions(&model)?
                    .iter()
                    .map(u64::to_string)
                    .collect();
                let aliases: Vec<String> = registry
                    .aliases(&model)?
                    .iter()
                    .map(|(a, v)| format!("{a}={v}"))
                    .collect();
                println!(
                    "{model}\tversions: {}\taliases: {}",
                    versions.join(","),
                    if aliases.is_empty() {
                        "-".to_string()
                    } else {
                        aliases.join(",")
                    }
                );
            }
            Ok(())
        }
        Command::Alias(AliasCommand::Set {
            model,
            alias,
            version,
        }) => {
            registry.set_alias(&model, &alias, version)?;
            eprintln!("{model}@{alias} -> version {version}");
            Ok(())
        }
        Command::Alias(AliasCommand::Get { model, alias }) => {
            let aliases = registry.aliases(&model)?;
            match aliases.get(&alias) {
                Some(v) => {
                    println!("{v}");
                    Ok(())
                }
                None => anyhow::bail!("model \"{model}\" has no alias \"{alias}\""),
            }
        }
        Command::Alias(AliasCommand::List { model }) => {
            for (alias, version) in registry.aliases(&model)? {
                println!("{alias}\t{version}");
            }
            Ok(())
        }
        Command::Alias(AliasCommand::Delete { model, alias }) => {
            registry.delete_alias(&model, &alias)?;
            eprintln!("deleted {model}@{alias}");
            Ok(())
        }
    }
}
