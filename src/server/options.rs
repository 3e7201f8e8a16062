//! The options of `podium serve`, with their defaults.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::inference_table::TableOptions;
use crate::listener::{ConnectionLimits, TlsOptions};
use crate::registry::RegistryConfig;
use crate::replica::ReplicaId;
use crate::runtime::options::OrtOptions;
use crate::runtime::Backend;

/// Everything `podium serve` needs; the CLI fills it from flags and env vars.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub listen: SocketAddr,
    pub grpc_listen: SocketAddr,
    /// The endpoint configuration file (TOML); None: every model is an endpoint.
    pub config: Option<PathBuf>,
    /// What `POST /invocations` serves [default: the only endpoint or model].
    pub default_endpoint: Option<String>,
    pub registry: RegistryConfig,
    /// Serve only these models [default: every model of the registry].
    pub watch: Option<Vec<String>>,
    pub inference_threads: usize,
    pub queue_depth: usize,
    /// Requests a model typically answers within this long run on the
    /// thread that received them when the pool is idle
    /// ([`InferencePool::with_caller_runs`]); zero: never. Only a runtime
    /// that reports its workers' parks (`podium serve`'s, see
    /// [`crate::runtime::idle`]) also holds back a worker that has not run
    /// out of work since its last such run.
    pub run_on_caller: Duration,
    pub max_request_bytes: usize,
    /// Bytes of REST bodies being read and decoded at once, across requests.
    pub max_inflight_body_bytes: usize,
    pub poll_interval: Duration,
    pub ort_lib: Option<PathBuf>,
    /// The backend of every model without its own `[model.<name>] backend`.
    pub backend: Backend,
    /// ONNX Runtime options of every model without its own
    /// `[model.<name>.onnxruntime]` values (the `--ort-*` flags).
    pub ort: OrtOptions,
    /// Replaced versions kept loaded per alias for instant rollback.
    pub keep_previous: usize,
    /// The memory loaded versions may take (bytes); with it, models not in
    /// `preload` are loaded on demand and evicted least recently used first.
    pub memory_limit: Option<u64>,
    /// Models whose aliases always stay loaded under `memory_limit`.
    pub preload: Vec<String>,
    /// How long a request waits for a version loaded on demand.
    pub load_wait: Duration,
    /// The alias history (JSON lines) [default: `.podium-history.jsonl` in the registry].
    pub history_file: Option<PathBuf>,
    /// Bearer token for the admin API (named `admin`); without it or
    /// `admin_tokens` the admin API is served on loopback listeners only.
    pub admin_token: Option<String>,
    /// A file of named admin tokens (`[[token]]`, hashed), re-read on change.
    pub admin_tokens: Option<PathBuf>,
    /// The admin audit log (JSON lines) [default: `.podium-audit.jsonl`
    /// beside the alias history].
    pub audit_log: Option<PathBuf>,
    /// A file of hashed API keys (`[[key]]`) that prediction calls need,
    /// re-read on change; None: prediction calls are open.
    pub api_keys: Option<PathBuf>,
    /// How long shutdown waits for in-flight requests before exiting anyway.
    pub drain_timeout: Duration,
    /// Threads for shadow copies; None: one when the config defines
    /// endpoints (only they can have shadows), else none.
    pub shadow_threads: Option<usize>,
    /// This replica's name (status, the table's file names and `replica` column).
    pub replica: ReplicaId,
    /// The inference table; None: no table is written (its `replica` is
    /// replaced by [`ServeOptions::replica`]).
    pub table: Option<TableOptions>,
    /// Timeouts and limits of both listeners' connections.
    pub connections: ConnectionLimits,
    /// The directory whose files the admin API may register by path; None:
    /// uploads only.
    pub admin_register_dir: Option<PathBuf>,
    /// The largest model the admin API registers (bytes).
    pub max_model_bytes: u64,
    /// TLS on both listeners; None: plaintext.
    pub tls: Option<TlsOptions>,
    /// Calls kept for experiment feedback to join, across endpoints.
    pub readout_ledger_size: usize,
}

impl ServeOptions {
    /// The defaults of `podium serve` for `registry`: REST on 127.0.0.1:8000,
    /// gRPC on 127.0.0.1:8001, one inference thread per core.
    pub fn new(registry: impl Into<RegistryConfig>) -> ServeOptions {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 8001)),
            config: None,
            default_endpoint: None,
            registry: registry.into(),
            watch: None,
            inference_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            queue_depth: 1024,
            run_on_caller: Duration::ZERO,
            max_request_bytes: 64 << 20,
            max_inflight_body_bytes: 256 << 20,
            poll_interval: Duration::from_secs(1),
            ort_lib: None,
            backend: Backend::Ort,
            ort: OrtOptions::default(),
            keep_previous: 1,
            memory_limit: None,
            preload: Vec::new(),
            load_wait: crate::serving::DEFAULT_LOAD_WAIT,
            history_file: None,
            admin_token: None,
            admin_tokens: None,
            audit_log: None,
            api_keys: None,
            drain_timeout: Duration::from_secs(30),
            shadow_threads: None,
            replica: ReplicaId::detect(),
            table: None,
            connections: ConnectionLimits::default(),
            admin_register_dir: None,
            max_model_bytes: crate::registry::DEFAULT_MAX_MODEL_BYTES,
            tls: None,
            readout_ledger_size: crate::experiments::DEFAULT_LEDGER_SIZE,
        }
    }
}
