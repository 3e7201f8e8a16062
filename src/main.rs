//! The `podium` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use podium::inference_table::summary::summarize;
use podium::inference_table::TableOptions;
use podium::registry::mlflow::{is_mlflow_uri, redact_uri, MlflowOptions};
use podium::registry::{Registry, RegistryConfig};
use podium::server::{serve, shutdown_signal, ServeOptions};

/// mimalloc rather than the system allocator: rows of the inference table
/// (and request bodies) are allocated on the request threads and freed on
/// the writer thread, which glibc's malloc handles poorly (measured in
/// BENCHMARKS.md: +18% throughput at concurrency 64 and half the writer's
/// CPU per row).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Podium: serve ONNX models by registry alias over the Open Inference Protocol.
#[derive(Parser)]
#[command(name = "podium", version)]
struct Cli {
    /// The model registry: a directory, or an MLflow tracking server as
    /// mlflow+http://HOST:PORT [default: $MLFLOW_TRACKING_URI when it is an
    /// http:// URL, else the directory "registry"].
    #[arg(long, env = "PODIUM_REGISTRY", global = true)]
    registry: Option<String>,
    /// An MLflow tracking server to use as the registry (http://HOST:PORT),
    /// like MLFLOW_TRACKING_URI; the same as --registry mlflow+http://HOST:PORT.
    #[arg(long, global = true, conflicts_with = "registry")]
    registry_uri: Option<String>,
    /// With MLflow: where downloaded model artifacts are kept (and the alias history).
    #[arg(
        long,
        env = "PODIUM_CACHE_DIR",
        default_value = ".podium-cache",
        global = true
    )]
    cache_dir: PathBuf,
    /// With MLflow: bound on one call to MLflow, in seconds (for a download: on
    /// connecting and on each wait for data).
    #[arg(
        long,
        env = "PODIUM_REGISTRY_TIMEOUT_SECS",
        default_value_t = 10,
        global = true
    )]
    registry_timeout_secs: u64,
    /// With MLflow: extra attempts, with back-off, after a call fails in a way
    /// that may pass (connection refused, timeout, HTTP 429/5xx).
    #[arg(
        long,
        env = "PODIUM_REGISTRY_RETRIES",
        default_value_t = 3,
        global = true
    )]
    registry_retries: u32,
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
}

#[derive(Subcommand)]
enum TableCommand {
    /// Rows, time range, and per endpoint and arm: counts, error rates and
    /// latency percentiles.
    Summary {
        /// The table directory (the --table-dir of `podium serve`).
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum TrafficCommand {
    /// Show the configured endpoints: arms, weights, sticky key, shadow.
    Show {
        #[command(flatten)]
        remote: Remote,
    },
    /// Set an endpoint's weights, e.g. `podium traffic set fraud champion=50 challenger=50`.
    /// Applies at once, atomically; not written to the --config file.
    Set {
        endpoint: String,
        /// ALIAS=WEIGHT for every arm.
        #[arg(required = true)]
        arms: Vec<String>,
        /// Mirror a share of requests to ALIAS=FRACTION (e.g. candidate=0.2).
        #[arg(long, conflicts_with = "no_shadow")]
        shadow: Option<String>,
        /// Stop mirroring traffic.
        #[arg(long)]
        no_shadow: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Args)]
#[command(args_override_self = true)]
struct ServeArgs {
    /// Address to listen on (use 0.0.0.0:8000 to accept other hosts).
    #[arg(long, env = "PODIUM_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Endpoint configuration (TOML): traffic splits, sticky keys, shadows
    /// [default: every model is an endpoint serving its champion].
    #[arg(long, env = "PODIUM_CONFIG")]
    config: Option<PathBuf>,
    /// The endpoint MLflow-style `POST /invocations` serves [default: the only
    /// endpoint, or the only model].
    #[arg(long, env = "PODIUM_DEFAULT_ENDPOINT")]
    default_endpoint: Option<String>,
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
    /// How often to re-read the registry for new versions and alias moves, in
    /// milliseconds [default: 1000 for a directory, 2000 for MLflow].
    #[arg(long, env = "PODIUM_POLL_INTERVAL_MS")]
    poll_interval_ms: Option<u64>,
    /// Serve only these models (comma-separated) [default: every model of the registry].
    #[arg(long, env = "PODIUM_MODELS", value_delimiter = ',')]
    models: Vec<String>,
    /// The ONNX Runtime shared library [default: .ort/ of the checkout, or beside the binary].
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_lib: Option<PathBuf>,
    /// Replaced versions kept loaded per alias, so a rollback is instant.
    #[arg(long, env = "PODIUM_KEEP_PREVIOUS", default_value_t = 1)]
    keep_previous: usize,
    /// Refuse to load a version when the estimated model memory would exceed this
    /// (bytes, or with a K/M/G suffix, e.g. 2G).
    #[arg(long, env = "PODIUM_MEMORY_LIMIT", value_parser = parse_bytes)]
    memory_limit: Option<u64>,
    /// The alias history file (JSON lines) [default: REGISTRY/.podium-history.jsonl,
    /// or CACHE_DIR/.podium-history.jsonl with MLflow].
    #[arg(long, env = "PODIUM_HISTORY_FILE")]
    history_file: Option<PathBuf>,
    /// Bearer token for the admin API (/admin/...). Without a token the admin API
    /// is served only when --listen is a loopback address.
    #[arg(long, env = "PODIUM_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A file holding the admin token (first line), instead of --admin-token.
    #[arg(long, env = "PODIUM_ADMIN_TOKEN_FILE", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
    /// Threads (each with its own session per model) for shadow copies, apart
    /// from the request threads; 0 turns shadows off [default: 1 with --config, else 0].
    #[arg(long, env = "PODIUM_SHADOW_THREADS")]
    shadow_threads: Option<usize>,
    /// On SIGTERM/SIGINT, how long to let in-flight requests finish, in seconds.
    #[arg(long, env = "PODIUM_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    drain_timeout_secs: u64,
    /// Write the inference table (one row per request, Parquet) under this directory
    /// [default: no table].
    #[arg(long, env = "PODIUM_TABLE_DIR")]
    table_dir: Option<PathBuf>,
    /// Close a table file (making it visible to readers) after this many seconds...
    #[arg(long, env = "PODIUM_TABLE_ROLL_SECS", default_value_t = 60.0, value_parser = parse_seconds)]
    table_roll_secs: f64,
    /// ...or this many rows...
    #[arg(long, env = "PODIUM_TABLE_ROLL_ROWS", default_value_t = 100_000)]
    table_roll_rows: usize,
    /// ...or about this size (bytes, or with a K/M/G suffix), whichever comes first.
    #[arg(long, env = "PODIUM_TABLE_ROLL_BYTES", default_value = "64M", value_parser = parse_bytes)]
    table_roll_bytes: u64,
    /// Rows waiting for the table writer; beyond this rows are dropped (and counted),
    /// never requests delayed.
    #[arg(long, env = "PODIUM_TABLE_QUEUE_ROWS", default_value_t = 10_000)]
    table_queue_rows: usize,
    /// Request and response bytes waiting for the table writer; beyond this rows are dropped.
    #[arg(long, env = "PODIUM_TABLE_QUEUE_BYTES", default_value = "64M", value_parser = parse_bytes)]
    table_queue_bytes: u64,
    /// Request or response bodies larger than this are stored as null, with
    /// MAX_REQUEST_SIZE_EXCEEDED / MAX_RESPONSE_SIZE_EXCEEDED in logging_error_codes.
    #[arg(long, env = "PODIUM_TABLE_MAX_PAYLOAD_BYTES", default_value = "1M", value_parser = parse_bytes)]
    table_max_payload_bytes: u64,
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() && s <= 86_400.0 => Ok(s),
        _ => Err(format!(
            "\"{text}\" is not a number of seconds between 0 and 86400 (e.g. 60 or 0.5)"
        )),
    }
}

/// Where an alias command acts: the registry directory, or a running server.
#[derive(Args)]
struct Remote {
    /// A running Podium (http://HOST:PORT) to change through its admin API: the
    /// version is loaded, checked and warmed before the alias moves.
    #[arg(long, env = "PODIUM_SERVER")]
    server: Option<String>,
    /// The admin API's bearer token.
    #[arg(long, env = "PODIUM_ADMIN_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("\"{text}\" is not a size like 512M or 2G"))?;
    let unit: u64 = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches(['B', 'I'])
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return Err(format!("\"{text}\" has an unknown unit; use K, M or G")),
    };
    n.checked_mul(unit)
        .ok_or_else(|| format!("\"{text}\" is too large"))
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

/// The registry the flags and environment name.
fn registry_config(cli: &Cli) -> anyhow::Result<RegistryConfig> {
    let mlflow = |uri: &str| {
        RegistryConfig::Mlflow(MlflowOptions {
            timeout: Duration::from_secs(cli.registry_timeout_secs.max(1)),
            retries: cli.registry_retries,
            ..MlflowOptions::from_env(uri, cli.cache_dir.clone())
        })
    };
    if let Some(registry) = &cli.registry {
        if is_mlflow_uri(registry) {
            return Ok(mlflow(registry));
        }
        anyhow::ensure!(
            !registry.contains("://") && !registry.starts_with("mlflow"),
            "--registry {registry}: a registry is a directory or mlflow+http://HOST:PORT (an MLflow tracking server)"
        );
        return Ok(RegistryConfig::Local(PathBuf::from(registry)));
    }
    if let Some(uri) = &cli.registry_uri {
        anyhow::ensure!(
            is_mlflow_uri(uri),
            "--registry-uri {}: name an MLflow tracking server as http://HOST:PORT; Podium talks to MLflow over its REST API (for a directory use --registry DIR)",
            redact_uri(uri)
        );
        return Ok(mlflow(uri));
    }
    if let Some(uri) = std::env::var("MLFLOW_TRACKING_URI")
        .ok()
        .filter(|u| !u.is_empty())
    {
        if is_mlflow_uri(&uri) {
            return Ok(mlflow(&uri));
        }
        tracing::warn!(
            "ignoring MLFLOW_TRACKING_URI={}: Podium reads MLflow only through a tracking server (http://HOST:PORT); using the directory \"registry\"",
            redact_uri(&uri)
        );
    }
    Ok(RegistryConfig::Local(PathBuf::from("registry")))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = registry_config(&cli)?;
    let registry = config.open()?;
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
                config: args.config,
                default_endpoint: args.default_endpoint,
                poll_interval: Duration::from_millis(
                    args.poll_interval_ms
                        .unwrap_or(if config.is_mlflow() { 2000 } else { 1000 })
                        .max(10),
                ),
                registry: config,
                watch: (!args.models.is_empty()).then_some(args.models),
                inference_threads: threads,
                queue_depth: args.queue_depth,
                max_request_bytes: args.max_request_bytes,
                ort_lib: args.ort_lib,
                keep_previous: args.keep_previous,
                memory_limit: args.memory_limit,
                history_file: args.history_file,
                admin_token: match args.admin_token_file {
                    Some(path) => Some(read_token(&path)?),
                    None => args.admin_token.filter(|t| !t.is_empty()),
                },
                drain_timeout: Duration::from_secs(args.drain_timeout_secs),
                shadow_threads: args.shadow_threads,
                table: args.table_dir.map(|dir| TableOptions {
                    dir,
                    roll_interval: Duration::from_secs_f64(args.table_roll_secs),
                    roll_rows: args.table_roll_rows.max(1),
                    roll_bytes: args.table_roll_bytes as usize,
                    queue_rows: args.table_queue_rows.max(1),
                    queue_bytes: args.table_queue_bytes as usize,
                    max_payload_bytes: args.table_max_payload_bytes as usize,
                }),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let result = runtime.block_on(serve(opts, shutdown_signal()));
            // Requests are drained and the inference table closed by now; a
            // registry call still waiting on a stuck MLflow must not hold
            // the exit until its timeout.
            runtime.shutdown_timeout(Duration::from_secs(1));
            result
        }
        Command::Table(TableCommand::Summary { dir }) => {
            print!("{}", summarize(&dir)?);
            Ok(())
        }
        Command::Models(ModelsCommand::Register { name, file }) => {
            let version = registry.register(&name, &file)?;
            println!("{version}");
            Ok(())
        }
        Command::Models(ModelsCommand::List) => {
            let models = registry.snapshot(None)?;
            if models.is_empty() {
                eprintln!("registry {} has no models", registry.location());
            }
            for (model, info) in models {
                let info = info?;
                let versions: Vec<String> = info.versions.iter().map(u64::to_string).collect();
                let aliases: Vec<String> = info
                    .aliases
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
        Command::Alias(command) => alias(registry.as_ref(), command),
        Command::Traffic(command) => traffic(command),
    }
}

fn traffic(command: TrafficCommand) -> anyhow::Result<()> {
    let (TrafficCommand::Show { remote } | TrafficCommand::Set { remote, .. }) = &command;
    let Some(server) = &remote.server else {
        anyhow::bail!(
            "traffic commands act on a running server: add --server http://HOST:PORT (or PODIUM_SERVER); to change a split for good, edit the --config file"
        );
    };
    let admin = AdminClient::new(server, remote.token.clone())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let print = |e: &serde_json::Value| {
        let arms: Vec<String> = e["arms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| format!("{}={}", a["alias"].as_str().unwrap_or("?"), a["weight"]))
            .collect();
        let shadow = if e["shadow"].is_null() {
            "-".to_string()
        } else {
            format!(
                "{}={}",
                e["shadow"]["alias"].as_str().unwrap_or("?"),
                e["shadow"]["fraction"]
            )
        };
        println!(
            "{}\tmodel {}\tarms {}\tshadow {}",
            e["name"].as_str().unwrap_or("?"),
            e["model"].as_str().unwrap_or("?"),
            arms.join(" "),
            shadow
        );
    };
    match command {
        TrafficCommand::Show { .. } => {
            let v = runtime.block_on(admin.call(reqwest::Method::GET, "/admin/endpoints", None))?;
            for e in v["endpoints"].as_array().into_iter().flatten() {
                print(e);
            }
        }
        TrafficCommand::Set {
            endpoint,
            arms,
            shadow,
            no_shadow,
            ..
        } => {
            let split = |text: &str, what: &str| -> anyhow::Result<(String, f64)> {
                let (alias, value) = text
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("\"{text}\" is not ALIAS={what}"))?;
                let value: f64 = value
                    .parse()
                    .map_err(|_| anyhow::anyhow!("\"{text}\": {what} must be a number"))?;
                Ok((alias.to_string(), value))
            };
            let arms = arms
                .iter()
                .map(|a| {
                    split(a, "WEIGHT").map(
                        |(alias, weight)| serde_json::json!({"alias": alias, "weight": weight}),
                    )
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut body = serde_json::json!({ "arms": arms });
            if no_shadow {
                body["shadow"] = serde_json::Value::Null;
            } else if let Some(shadow) = shadow {
                let (alias, fraction) = split(&shadow, "FRACTION")?;
                body["shadow"] = serde_json::json!({"alias": alias, "fraction": fraction});
            }
            let path = format!("/admin/endpoints/{endpoint}/traffic");
            let v = runtime.block_on(admin.call(reqwest::Method::PUT, &path, Some(body)))?;
            print(&v["endpoint"]);
        }
    }
    Ok(())
}

fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the admin token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    anyhow::ensure!(
        !token.is_empty(),
        "the admin token file {} is empty",
        path.display()
    );
    Ok(token)
}

fn alias(registry: &dyn Registry, command: AliasCommand) -> anyhow::Result<()> {
    use AliasCommand::*;
    let (Set { remote, .. }
    | Get { remote, .. }
    | List { remote, .. }
    | Delete { remote, .. }
    | Rollback { remote, .. }) = &command;
    if let Some(server) = &remote.server {
        let admin = AdminClient::new(server, remote.token.clone())?;
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(admin.run(command));
    }
    match command {
        Set { model, alias, version, .. } => {
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

/// The CLI's side of the admin API.
struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl AdminClient {
    fn new(server: &str, token: Option<String>) -> anyhow::Result<AdminClient> {
        let base = server.trim_end_matches('/').to_string();
        anyhow::ensure!(
            base.starts_with("http://"),
            "--server must look like http://HOST:PORT, got {server}"
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?;
        Ok(AdminClient { http, base, token })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<serde_json::Value> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", self.base))?;
        let status = resp.status();
        let value: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            let msg = value["error"].as_str().unwrap_or("no detail");
            anyhow::bail!("{} answered {status}: {msg}", self.base);
        }
        Ok(value)
    }

    async fn run(&self, command: AliasCommand) -> anyhow::Result<()> {
        use reqwest::Method;
        use AliasCommand::*;
        let path = |model: &str, alias: &str| format!("/admin/models/{model}/aliases/{alias}");
        let report = |v: &serde_json::Value| {
            let (model, alias) = (
                v["model"].as_str().unwrap_or(""),
                v["alias"].as_str().unwrap_or(""),
            );
            if v["swapped"] == true {
                let was = v["from_version"]
                    .as_u64()
                    .map(|f| format!("was {f}"))
                    .unwrap_or_else(|| "new".into());
                eprintln!(
                    "{model}@{alias} -> version {} ({was}; load {:.1} ms, validate {:.1} ms, warm-up {:.1} ms)",
                    v["version"],
                    v["load_ms"].as_f64().unwrap_or(0.0),
                    v["validate_ms"].as_f64().unwrap_or(0.0),
                    v["warm_ms"].as_f64().unwrap_or(0.0),
                );
            } else {
                eprintln!("{model}@{alias} already serves version {}", v["version"]);
            }
        };
        match command {
            Set {
                model,
                alias,
                version,
                allow_signature_change,
                ..
            } => {
                let body = serde_json::json!({ "version": version, "allow_signature_change": allow_signature_change });
                report(
                    &self
                        .call(Method::PUT, &path(&model, &alias), Some(body))
                        .await?,
                );
            }
            Rollback { model, alias, .. } => {
                report(
                    &self
                        .call(
                            Method::POST,
                            &format!("{}/rollback", path(&model, &alias)),
                            None,
                        )
                        .await?,
                );
            }
            Delete { model, alias, .. } => {
                self.call(Method::DELETE, &path(&model, &alias), None)
                    .await?;
                eprintln!("deleted {model}@{alias}");
            }
            Get { model, alias, .. } => {
                let v = self
                    .call(Method::GET, &format!("/admin/models/{model}/aliases"), None)
                    .await?;
                match v["aliases"][&alias].as_u64() {
                    Some(version) => println!("{version}"),
                    None => anyhow::bail!("model \"{model}\" has no alias \"{alias}\""),
                }
            }
            List { model, .. } => {
                let v = self
                    .call(Method::GET, &format!("/admin/models/{model}/aliases"), None)
                    .await?;
                if let Some(aliases) = v["aliases"].as_object() {
                    for (alias, version) in aliases {
                        let serving = &v["serving"][alias];
                        let serving = if serving.is_null() {
                            "nothing".to_string()
                        } else {
                            serving.to_string()
                        };
                        println!("{alias}\t{version}\tserving {serving}");
                    }
                }
            }
        }
        Ok(())
    }
}
