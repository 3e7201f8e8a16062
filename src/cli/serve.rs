//! `podium serve`: its flags, and how they become [`ServeOptions`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::parse::{parse_bytes, parse_seconds};
use crate::inference_table::remote::{self, Location};
use crate::inference_table::{default_writers, Remote, TableCompression, TableOptions};
use crate::listener::{ConnectionLimits, TlsOptions};
use crate::registry::RegistryConfig;
use crate::replica::ReplicaId;
use crate::runtime::options::{ExecutionProvider, GraphOptimization, OrtOptions};
use crate::runtime::Backend;
use crate::server::{serve, shutdown_signal, ServeOptions};

#[derive(Args)]
#[command(args_override_self = true)]
pub struct ServeArgs {
    /// Address to listen on (use 0.0.0.0:8000 to accept other hosts).
    #[arg(long, env = "PODIUM_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Endpoint configuration (TOML): traffic splits, sticky keys, shadows, experiment readouts
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
    /// Run a request on the thread that received it, skipping the hand-off
    /// to an inference thread, when it is the only request in the pool, that
    /// thread has run out of work since it last did so, a session is free
    /// and the model typically answers such a request within this many
    /// microseconds (tabular models: a few). Cuts latency at low
    /// concurrency; has cost throughput on saturated servers (README, "Run
    /// to completion"). 0: always hand off.
    #[arg(long, env = "PODIUM_RUN_ON_CALLER_MAX_US", default_value_t = 0)]
    run_on_caller_max_us: u64,
    /// Largest request body (REST, else 413) or message (gRPC, else RESOURCE_EXHAUSTED), in bytes.
    #[arg(long, env = "PODIUM_MAX_REQUEST_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_request_bytes: usize,
    /// Bytes of REST request bodies being read and decoded at once, across all
    /// requests; beyond it 503 with Retry-After (a body takes a few times its size while decoded, MLflow JSON tens of times).
    #[arg(long, env = "PODIUM_MAX_INFLIGHT_BODY_BYTES", default_value_t = 256 * 1024 * 1024)]
    max_inflight_body_bytes: usize,
    /// How often to re-read the registry for new versions and alias moves, in
    /// milliseconds [default: 1000 for a directory, 2000 for MLflow].
    #[arg(long, env = "PODIUM_POLL_INTERVAL_MS")]
    poll_interval_ms: Option<u64>,
    /// This replica's name when several serve one registry: in the inference
    /// table's file names and `replica` column, and in /admin/status
    /// [default: the host name (a pod's name), else a random 8-hex-digit id].
    #[arg(long, env = "PODIUM_REPLICA_ID")]
    replica_id: Option<ReplicaId>,
    /// Serve only these models (comma-separated) [default: every model of the registry].
    #[arg(long, env = "PODIUM_MODELS", value_delimiter = ',')]
    models: Vec<String>,
    /// The engine models run on unless `[model.<name>] backend` names one:
    /// ort (ONNX Runtime) or tract (pure Rust; a build with `--features tract`).
    /// With tract for every model, no ONNX Runtime library is needed.
    #[arg(long, env = "PODIUM_BACKEND", value_enum, default_value_t = Backend::Ort)]
    backend: Backend,
    /// The ONNX Runtime shared library [default: .ort/ of the checkout, or beside the binary].
    #[arg(long, env = "ORT_DYLIB_PATH")]
    ort_lib: Option<PathBuf>,
    /// ONNX Runtime intra-op threads per session (one session per inference
    /// thread per loaded version); `[model.<name>.onnxruntime]` overrides it.
    #[arg(long, env = "PODIUM_ORT_INTRA_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    ort_intra_threads: u16,
    /// ONNX Runtime inter-op threads per session; above 1, independent graph
    /// branches run in parallel.
    #[arg(long, env = "PODIUM_ORT_INTER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    ort_inter_threads: u16,
    /// ONNX Runtime graph optimisation level.
    #[arg(long, env = "PODIUM_ORT_GRAPH_OPTIMIZATION", value_enum, default_value_t = GraphOptimization::All)]
    ort_graph_optimization: GraphOptimization,
    /// The CPU memory arena (memory kept for reuse between runs): true or false.
    #[arg(long, env = "PODIUM_ORT_MEMORY_ARENA", default_value_t = true, action = clap::ArgAction::Set)]
    ort_memory_arena: bool,
    /// Whether idle ONNX Runtime pool threads spin (busy-wait): true or false.
    #[arg(long, env = "PODIUM_ORT_SPINNING", default_value_t = false, action = clap::ArgAction::Set)]
    ort_spinning: bool,
    /// Execution providers in order of preference (comma-separated); each must
    /// be in the loaded ONNX Runtime library, or start-up stops.
    #[arg(
        long,
        env = "PODIUM_ORT_EXECUTION_PROVIDERS",
        value_enum,
        value_delimiter = ',',
        default_value = "cpu"
    )]
    ort_execution_providers: Vec<ExecutionProvider>,
    /// Replaced versions kept loaded per alias, so a rollback is instant.
    #[arg(long, env = "PODIUM_KEEP_PREVIOUS", default_value_t = 1)]
    keep_previous: usize,
    /// The memory loaded model versions may take (bytes, or with a K/M/G
    /// suffix, e.g. 2G). With a limit, models not named by --preload are
    /// loaded on demand and the least recently used are evicted to make room
    /// [default: no limit; every alias's version stays loaded].
    #[arg(long, env = "PODIUM_MEMORY_LIMIT", value_parser = parse_bytes)]
    memory_limit: Option<u64>,
    /// Models (comma-separated) whose aliases always stay loaded under
    /// --memory-limit: loaded at start and on every alias move, never
    /// evicted (e.g. every model whose champion must never pay a cold load).
    #[arg(long, env = "PODIUM_PRELOAD", value_delimiter = ',')]
    preload: Vec<String>,
    /// How long a request waits for a model version that is loaded on demand
    /// before it gets 503 with Retry-After (the load goes on); 0 answers at once.
    #[arg(long, env = "PODIUM_LOAD_WAIT_SECS", default_value_t = 30)]
    load_wait_secs: u64,
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
    /// A file of named admin tokens (TOML `[[token]]` entries: name and
    /// sha256 of the token), re-read when it changes; works together with
    /// --admin-token. See README, "Security and limits".
    #[arg(long, env = "PODIUM_ADMIN_TOKENS")]
    admin_tokens: Option<PathBuf>,
    /// The admin audit log: one JSON line per admin API call [default:
    /// .podium-audit.jsonl beside the alias history file].
    #[arg(long, env = "PODIUM_AUDIT_LOG")]
    audit_log: Option<PathBuf>,
    /// Require an API key on prediction calls: a file of hashed keys (TOML
    /// `[[key]]` entries: name, sha256, optional rate, burst, endpoints),
    /// re-read when it changes [default: prediction calls are open]. Make
    /// keys with `podium keys new NAME`.
    #[arg(long, env = "PODIUM_API_KEYS")]
    api_keys: Option<PathBuf>,
    /// Let the admin API register files of this server by path, only those
    /// inside DIR (`{"name": M, "path": "m.onnx"}`, relative to DIR) [default:
    /// off; versions are uploaded as the request body].
    #[arg(long, env = "PODIUM_ADMIN_REGISTER_DIR")]
    admin_register_dir: Option<PathBuf>,
    /// The largest model the admin API registers, uploaded or by path (bytes,
    /// or with a K/M/G suffix); larger ones get 413.
    #[arg(long, env = "PODIUM_MAX_MODEL_BYTES", default_value = "2G", value_parser = parse_bytes)]
    max_model_bytes: u64,
    /// Threads (each with its own session per model) for shadow copies, apart
    /// from the request threads; 0 turns shadows off [default: 1 with --config, else 0].
    #[arg(long, env = "PODIUM_SHADOW_THREADS")]
    shadow_threads: Option<usize>,
    /// On SIGTERM/SIGINT, how long to let in-flight requests finish, in seconds.
    #[arg(long, env = "PODIUM_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    drain_timeout_secs: u64,
    /// Write the inference table (one row per request, Parquet) under this directory,
    /// or to object storage: s3://BUCKET/PREFIX (gs://, az:// in builds with the gcs,
    /// azure features), configured from AWS_* variables [default: no table].
    #[arg(long, env = "PODIUM_TABLE_DIR")]
    table_dir: Option<String>,
    /// With --table-dir on object storage: the local folder where files are written
    /// (and journaled) before their upload, one subfolder per table URL; keep it on
    /// a disk that survives restarts [default: .podium-table-spool].
    #[arg(
        long,
        env = "PODIUM_TABLE_SPOOL_DIR",
        default_value = ".podium-table-spool"
    )]
    table_spool_dir: PathBuf,
    /// With --table-dir on object storage: bytes of complete files waiting for their
    /// upload (storage down or slow) beyond which new rows are dropped and counted
    /// (reason spool_full) rather than filling the disk.
    #[arg(long, env = "PODIUM_TABLE_SPOOL_MAX_BYTES", default_value = "1G", value_parser = parse_bytes)]
    table_spool_max_bytes: u64,
    /// Close a table file (making it visible to readers) after this many seconds...
    #[arg(long, env = "PODIUM_TABLE_ROLL_SECS", default_value_t = 60.0, value_parser = parse_seconds)]
    table_roll_secs: f64,
    /// ...or this many rows...
    #[arg(long, env = "PODIUM_TABLE_ROLL_ROWS", default_value_t = 100_000)]
    table_roll_rows: usize,
    /// ...or about this size (bytes, or with a K/M/G suffix), whichever comes first.
    #[arg(long, env = "PODIUM_TABLE_ROLL_BYTES", default_value = "64M", value_parser = parse_bytes)]
    table_roll_bytes: u64,
    /// The codec of the table's Parquet files: snappy (readable everywhere), lz4
    /// (least CPU of the codecs, LZ4_RAW), zstd (about snappy's CPU, half the
    /// bytes) or none (least CPU, largest files).
    #[arg(long, env = "PODIUM_TABLE_COMPRESSION", value_enum, default_value_t = TableCompression::Snappy)]
    table_compression: TableCompression,
    /// Threads writing the table: the main one, and helpers that drain the queue only
    /// when they find it a quarter full (each helper writes files of its own) [default:
    /// one per 4 cores, 1 to 8]. One thread writes on the order of 100,000 rows a second.
    #[arg(long, env = "PODIUM_TABLE_WRITERS", value_parser = clap::value_parser!(u16).range(1..=64))]
    table_writers: Option<u16>,
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
    /// Calls kept (across endpoints with an experiment readout) so that feedback
    /// arriving later can join them: the answered calls among the last N to
    /// those endpoints; older ones are dropped, counted in
    /// podium_readout_ledger_evicted_total. About 80 bytes per call.
    #[arg(long, env = "PODIUM_READOUT_LEDGER_SIZE", default_value_t = crate::experiments::DEFAULT_LEDGER_SIZE, value_parser = parse_ledger_size)]
    readout_ledger_size: usize,
    /// Seconds a client has to send a complete request head (REST) or the
    /// HTTP/2 preface (gRPC) after connecting, or after the first byte of a
    /// later request on a kept-alive connection; then the connection is closed.
    #[arg(long, env = "PODIUM_HEADER_READ_TIMEOUT_SECS", default_value_t = 30.0, value_parser = parse_seconds)]
    header_read_timeout_secs: f64,
    /// Seconds a REST keep-alive connection may wait for its next request.
    #[arg(long, env = "PODIUM_IDLE_TIMEOUT_SECS", default_value_t = 75.0, value_parser = parse_seconds)]
    idle_timeout_secs: f64,
    /// Seconds a REST request body may take to arrive in full after its
    /// headers; a later body gets 408 and the connection is closed.
    #[arg(long, env = "PODIUM_BODY_READ_TIMEOUT_SECS", default_value_t = 60.0, value_parser = parse_seconds)]
    body_read_timeout_secs: f64,
    /// Open connections per listener (REST and gRPC each); more are closed
    /// as soon as they are accepted. Keep twice this under `ulimit -n`.
    #[arg(long, env = "PODIUM_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Concurrent calls (HTTP/2 streams) per gRPC connection.
    #[arg(long, env = "PODIUM_GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    grpc_max_concurrent_streams: u32,
    /// Seconds between HTTP/2 pings that check a gRPC client is still there.
    #[arg(long, env = "PODIUM_GRPC_KEEPALIVE_SECS", default_value_t = 60.0, value_parser = parse_seconds)]
    grpc_keepalive_secs: f64,
    /// Seconds a gRPC client has to answer a ping before its connection is closed.
    #[arg(long, env = "PODIUM_GRPC_KEEPALIVE_TIMEOUT_SECS", default_value_t = 20.0, value_parser = parse_seconds)]
    grpc_keepalive_timeout_secs: f64,
    /// Serve both listeners over TLS only, with this certificate chain (PEM,
    /// the server's certificate first) [default: plaintext]. Needs --tls-key.
    #[arg(
        long,
        env = "PODIUM_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "PODIUM_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
    /// Seconds between checks of --tls-cert and --tls-key for changes; a
    /// changed pair that loads is used for new connections.
    #[arg(long, env = "PODIUM_TLS_RELOAD_SECS", default_value_t = 5.0, value_parser = parse_seconds)]
    tls_reload_secs: f64,
    /// Require, on every admin API call, a client certificate signed by this
    /// CA (PEM) [default: none]; prediction calls need none. Needs --tls-cert.
    #[arg(
        long,
        env = "PODIUM_ADMIN_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    admin_client_ca: Option<PathBuf>,
}

impl ServeArgs {
    /// Serves `registry` until SIGTERM/SIGINT, then drains and returns.
    pub fn run(self, registry: RegistryConfig) -> anyhow::Result<()> {
        let opts = self.options(registry)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            // Run to completion on the caller only on a worker that idles
            // between requests (`runtime::idle`).
            .on_thread_park(crate::runtime::idle::worker_idle)
            .build()?;
        let result = runtime.block_on(serve(opts, shutdown_signal()));
        // Requests are drained and the inference table closed by now; a
        // registry call still waiting on a stuck MLflow must not hold
        // the exit until its timeout.
        runtime.shutdown_timeout(Duration::from_secs(1));
        result
    }

    /// The server's options: the flags with their defaults filled in (threads
    /// per core, poll interval per registry kind) and the token file read.
    fn options(self, registry: RegistryConfig) -> anyhow::Result<ServeOptions> {
        let threads = self.inference_threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let replica = self.replica_id.unwrap_or_else(ReplicaId::detect);
        Ok(ServeOptions {
            listen: self.listen,
            grpc_listen: self.grpc_listen,
            config: self.config,
            default_endpoint: self.default_endpoint,
            poll_interval: Duration::from_millis(
                self.poll_interval_ms
                    .unwrap_or(if registry.is_mlflow() { 2000 } else { 1000 })
                    .max(10),
            ),
            registry,
            watch: (!self.models.is_empty()).then_some(self.models),
            inference_threads: threads,
            queue_depth: self.queue_depth,
            run_on_caller: Duration::from_micros(self.run_on_caller_max_us),
            max_request_bytes: self.max_request_bytes,
            max_inflight_body_bytes: self.max_inflight_body_bytes,
            ort_lib: self.ort_lib,
            backend: self.backend,
            ort: OrtOptions {
                intra_op_threads: self.ort_intra_threads.into(),
                inter_op_threads: self.ort_inter_threads.into(),
                graph_optimization: self.ort_graph_optimization,
                memory_arena: self.ort_memory_arena,
                spinning: self.ort_spinning,
                execution_providers: self.ort_execution_providers,
            },
            keep_previous: self.keep_previous,
            memory_limit: self.memory_limit,
            preload: self.preload,
            load_wait: Duration::from_secs(self.load_wait_secs),
            history_file: self.history_file,
            admin_token: match self.admin_token_file {
                Some(path) => Some(read_token(&path)?),
                None => self.admin_token.filter(|t| !t.is_empty()),
            },
            admin_tokens: self.admin_tokens,
            audit_log: self.audit_log,
            api_keys: self.api_keys,
            drain_timeout: Duration::from_secs(self.drain_timeout_secs),
            shadow_threads: self.shadow_threads,
            replica: replica.clone(),
            table: match self.table_dir.as_deref().map(remote::parse).transpose()? {
                None => None,
                Some(location) => {
                    let (dir, remote) = match location {
                        Location::Local(dir) => (dir, None),
                        Location::Remote(url) => (
                            remote::spool_of(&self.table_spool_dir, &url),
                            Some(Remote {
                                url,
                                spool_max_bytes: self.table_spool_max_bytes,
                            }),
                        ),
                    };
                    Some(TableOptions {
                        dir,
                        remote,
                        roll_interval: Duration::from_secs_f64(self.table_roll_secs),
                        roll_rows: self.table_roll_rows.max(1),
                        roll_bytes: self.table_roll_bytes as usize,
                        compression: self.table_compression,
                        writers: self.table_writers.map_or_else(default_writers, usize::from),
                        queue_rows: self.table_queue_rows.max(1),
                        queue_bytes: self.table_queue_bytes as usize,
                        max_payload_bytes: self.table_max_payload_bytes as usize,
                        replica,
                    })
                }
            },
            connections: ConnectionLimits {
                header_read_timeout: Duration::from_secs_f64(self.header_read_timeout_secs),
                idle_timeout: Duration::from_secs_f64(self.idle_timeout_secs),
                body_read_timeout: Duration::from_secs_f64(self.body_read_timeout_secs),
                max_connections: self.max_connections as usize,
                grpc_max_concurrent_streams: self.grpc_max_concurrent_streams,
                grpc_keepalive_interval: Duration::from_secs_f64(self.grpc_keepalive_secs),
                grpc_keepalive_timeout: Duration::from_secs_f64(self.grpc_keepalive_timeout_secs),
            },
            admin_register_dir: self.admin_register_dir,
            max_model_bytes: self.max_model_bytes,
            tls: match (self.tls_cert, self.tls_key) {
                (Some(cert), Some(key)) => Some(TlsOptions {
                    cert,
                    key,
                    admin_client_ca: self.admin_client_ca,
                    reload_interval: Duration::from_secs_f64(self.tls_reload_secs),
                }),
                // clap requires both or neither.
                _ => None,
            },
            readout_ledger_size: self.readout_ledger_size,
        })
    }
}

/// The admin token: the first line of `path`, trimmed; an empty file is an error.
fn read_token(path: &Path) -> anyhow::Result<String> {
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

/// A ledger size: a whole number of calls, at least 1.
fn parse_ledger_size(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "{text:?} is not a number of calls (1 or more, e.g. 1000000)"
        )),
    }
}
