//! `podium serve`: load the registry's models and answer OIP REST calls.

mod options;

pub use options::ServeOptions;

use std::sync::Arc;

use anyhow::{anyhow, Context};
use tokio::sync::watch;
use tower::util::MapResponseLayer;

use crate::api::grpc;
use crate::api::http::router;
use crate::api::http::{AdminAccess, Registration};
use crate::api::{AppState, OipJson};
use crate::auth::{AdminTokens, ApiKeys, AuditLog};
use crate::experiments::Experiments;
use crate::inference_table::{FeedbackTable, InferenceTable, TableOptions};
use crate::listener::{grpc_incoming, grpc_server, serve_rest, Tls};
use crate::registry::RegisterDir;
use crate::routing::RouteTable;
use crate::runtime::options::OrtSettings;
use crate::runtime::pool::InferencePool;
use crate::runtime::Backends;
use crate::serving::{ConfigFile, Core, History, ModelStore, Reconciler, StoreOptions};

/// Shadow copies that may wait for a shadow thread; more are skipped.
const SHADOW_QUEUE: usize = 64;

/// Loads the TLS certificate (when configured) and ONNX Runtime, binds REST
/// and gRPC and serves at once (live; ready once the registry was read and
/// its aliased models loaded, which happens in the background), prints
/// `podium: grpc listening on http://ADDR` and then `podium: listening on
/// http://ADDR` (REST; `https://` with TLS) on stdout once both answer and
/// the first registry read is done (or failed), and serves until `shutdown`
/// resolves, letting in-flight requests finish.
pub async fn serve(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::telemetry::install();
    // A certificate problem stops start-up before any model is loaded.
    let mut tls = match opts.tls.clone() {
        None => None,
        Some(options) => Some(tokio::task::spawn_blocking(move || Tls::load(&options)).await??),
    };
    match &tls {
        Some(tls) if tls.expired() => {
            tracing::warn!("TLS on both listeners: certificate {}", tls.describe())
        }
        Some(tls) => tracing::info!("TLS on both listeners: certificate {}", tls.describe()),
        None => {}
    }
    let registry = opts.registry.open().map_err(|e| anyhow!(e))?;
    tracing::info!("registry: {} {}", registry.kind(), registry.location());
    let registry_kind = registry.kind();
    if opts.registry.is_mlflow() {
        // The artifact cache, and the alias history's default place.
        let dir = opts.registry.state_dir();
        std::fs::create_dir_all(dir).with_context(|| {
            format!(
                "cannot create the cache directory {} (--cache-dir)",
                dir.display()
            )
        })?;
    }
    let config = match &opts.config {
        None => crate::config::Config::default(),
        Some(path) => {
            let (registry, path) = (Arc::clone(&registry), path.clone());
            let endpoints = tokio::task::spawn_blocking(move || {
                // Only a registry that answers "no such model" stops start-up;
                // one that cannot be reached (MLflow down) is checked later:
                // the server starts unready and serves once it answers.
                crate::config::load(&path, &|model| {
                    crate::serving::lookup(registry.as_ref(), model)
                })
            })
            .await?
            .map_err(|e| anyhow!(e))?;
            for e in &endpoints.endpoints {
                let arms: Vec<String> = e
                    .arms
                    .iter()
                    .map(|a| format!("{}={}", a.alias, a.weight))
                    .collect();
                tracing::info!("endpoint {} -> {} [{}]", e.name, e.model, arms.join(", "));
            }
            endpoints
        }
    };
    let backends = Backends::new(opts.backend, config.backends.clone()).map_err(|e| anyhow!(e))?;
    let ort = OrtSettings::new(opts.ort.clone(), &config.onnxruntime).map_err(|e| anyhow!(e))?;
    if backends.need_ort() {
        let lib = crate::runtime::ort::init(opts.ort_lib.as_deref()).map_err(|e| anyhow!(e))?;
        tracing::info!("ONNX Runtime loaded from {}", lib.display());
        // A provider the library lacks stops start-up here, never a silent
        // fall-back to the CPU at the first load.
        ort.check_available().map_err(|e| anyhow!(e))?;
    } else {
        // A reload cannot change a model's backend, so no model will need it.
        tracing::info!("every model runs on tract: ONNX Runtime is not loaded");
    }
    for (model, backend) in &backends.models {
        tracing::info!("model {model}: backend {backend}");
    }
    for (model, options) in &ort.models {
        tracing::info!("model {model}: ONNX Runtime options {options:?}");
    }
    let config_file = opts
        .config
        .as_deref()
        .map(|path| Arc::new(ConfigFile::new(path, &config)));
    let experiments = Experiments::new(config.readouts, opts.readout_ledger_size).map(Arc::new);
    if let Some(experiments) = &experiments {
        tracing::info!(
            "experiment readouts: {} (ledger of {} calls)",
            experiments.names().join(", "),
            opts.readout_ledger_size
        );
    }
    let routes = RouteTable::new(config.endpoints);
    if let Some(name) = opts.default_endpoint.clone() {
        if !routes.endpoints.contains_key(&name) {
            let registry = Arc::clone(&registry);
            let (name, known) = tokio::task::spawn_blocking(move || {
                (name.clone(), registry.aliases(&name).is_ok())
            })
            .await?;
            if !known {
                tracing::warn!(
                    "--default-endpoint {name} is neither a configured endpoint nor a registered model; /invocations will answer 404 until it is"
                );
            }
        }
    }
    let pool = InferencePool::start(opts.inference_threads, opts.queue_depth)
        .context("starting inference threads")?
        .with_caller_runs(opts.run_on_caller);
    // Shadow copies get their own threads (and sessions, after the request
    // threads' ones), so they never queue in front of a request.
    let shadow_threads = opts
        .shadow_threads
        .unwrap_or(if routes.endpoints.is_empty() { 0 } else { 1 });
    let shadow_pool = match shadow_threads {
        0 => None,
        n => Some(
            InferencePool::start_named("shadow", pool.workers(), n, SHADOW_QUEUE)
                .context("starting shadow threads")?,
        ),
    };
    let history = History::new(
        opts.history_file
            .clone()
            .unwrap_or_else(|| opts.registry.state_dir().join(".podium-history.jsonl")),
    );
    tracing::info!("alias history: {}", history.path().display());
    let audit_path = opts
        .audit_log
        .clone()
        .unwrap_or_else(|| history.path().with_file_name(".podium-audit.jsonl"));
    // Credentials files are read before anything is served: a broken one stops start-up.
    let api_keys = opts
        .api_keys
        .as_deref()
        .map(ApiKeys::load)
        .transpose()
        .map_err(|e| anyhow!("--api-keys: {e}"))?
        .map(Arc::new);
    if let (Some(keys), Some(path)) = (&api_keys, &opts.api_keys) {
        tracing::info!(
            "API keys: {} from {}; prediction calls need one",
            keys.len(),
            path.display()
        );
    }
    let admin_tokens = AdminTokens::new(opts.admin_token.clone(), opts.admin_tokens.as_deref())
        .map_err(|e| anyhow!("--admin-tokens: {e}"))?
        .map(Arc::new);
    match opts.memory_limit {
        None if !opts.preload.is_empty() => tracing::warn!(
            "--preload has no effect without --memory-limit: every alias's version stays loaded"
        ),
        Some(limit) => tracing::info!(
            "memory limit {limit} bytes: models not in --preload ({}) are loaded on demand (requests wait up to {} s) and evicted least recently used first",
            if opts.preload.is_empty() { "none".to_string() } else { opts.preload.join(", ") },
            opts.load_wait.as_secs()
        ),
        None => {}
    }
    let store_options = StoreOptions {
        workers: pool.workers() + shadow_pool.as_ref().map_or(0, |p| p.workers()),
        keep_previous: opts.keep_previous,
        memory_limit: opts.memory_limit,
        preload: opts.preload.clone(),
        load_wait: opts.load_wait,
        watch: opts.watch.clone(),
        batching: config.batching.clone(),
        ort,
        backends,
    };
    let models = Arc::new(ModelStore::new(registry, store_options, history));
    // The first registry read (and the loads) happen in the background: a
    // slow or unreachable MLflow must not keep the server from being live.
    // Until it is done, readiness says "the registry has not been read
    // yet"; the listening lines come after it.
    let reconciler = Reconciler::spawn(Arc::clone(&models), opts.poll_interval)?;
    let mut health_summary = models.watch_health();

    let table_options = opts.table.clone().map(|options| TableOptions {
        replica: opts.replica.clone(),
        ..options
    });
    let table = table_options
        .clone()
        .map(|options| InferenceTable::start(options, Arc::new(OipJson)))
        .transpose()?;
    let feedback_table = table_options
        .as_ref()
        .map(FeedbackTable::start)
        .transpose()?;
    let health_watch = models.watch_health();
    let registration = Registration {
        dir: opts
            .admin_register_dir
            .as_deref()
            .map(RegisterDir::new)
            .transpose()?,
        max_model_bytes: opts.max_model_bytes,
    };
    crate::telemetry::declare(&crate::telemetry::Declared {
        registry_kind,
        endpoints: routes
            .endpoints
            .values()
            .map(|e| (e.name.as_str(), e.shadow.is_some()))
            .collect(),
        table: table.is_some(),
        object_storage: opts.table.as_ref().is_some_and(|t| t.remote.is_some()),
    });
    let state = Arc::new(AppState {
        core: Core::new(models, pool, shadow_pool, routes),
        max_request_bytes: opts.max_request_bytes,
        body_budget: crate::api::http::budget::BodyBudget::new(opts.max_inflight_body_bytes),
        default_endpoint: opts.default_endpoint.clone(),
        table,
        feedback_table,
        registration,
        api_keys: api_keys.clone(),
        experiments,
        series: Arc::new(crate::telemetry::ArmSeries::new()),
        replica: opts.replica.clone(),
        config_file,
    });
    let table_state = Arc::clone(&state);
    let loops = crate::api::experiment_controls::spawn_loops(&state, config.loops);
    let traffic_follower =
        crate::api::experiment_controls::spawn_traffic_follower(&state, opts.poll_interval);
    // SIGHUP re-reads --config (see README "Reloading the configuration").
    #[cfg(unix)]
    let hangups = Some(
        crate::api::config_reload::spawn_on_sighup(Arc::clone(&state))
            .context("listening for SIGHUP")?,
    );
    #[cfg(not(unix))]
    let hangups: Option<tokio::task::JoinHandle<()>> = None;

    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {} (REST)", opts.listen))?;
    let addr = listener.local_addr()?;
    let grpc_listener = tokio::net::TcpListener::bind(opts.grpc_listen)
        .await
        .with_context(|| format!("cannot listen on {} (gRPC)", opts.grpc_listen))?;
    let grpc_addr = grpc_listener.local_addr()?;

    // One shutdown signal, observed by both listeners.
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let (reporter, health) = tonic_health::server::health_reporter();
    let health_task = tokio::spawn(grpc::follow_health(
        reporter.clone(),
        health_watch,
        Arc::clone(&state),
    ));
    let incoming = grpc_incoming(
        grpc_listener,
        opts.connections,
        stopped.clone(),
        tls.as_ref().map(Tls::grpc),
    );
    let grpc_server = grpc_server(&opts.connections)
        .layer(MapResponseLayer::new(
            grpc::remap_oversize::<tonic::body::Body>,
        ))
        .add_service(health)
        .add_service(grpc::service(Arc::clone(&state)))
        .serve_with_incoming_shutdown(incoming, until_stopped(stopped.clone()));
    // A log named by --audit-log must open; the default one beside the
    // history may sit in a read-only registry, which serves as before.
    let audit = || -> anyhow::Result<Arc<AuditLog>> {
        let audit = AuditLog::new(&audit_path);
        match audit.open() {
            Ok(()) => tracing::info!("admin audit log: {}", audit_path.display()),
            Err(e) if opts.audit_log.is_none() => tracing::warn!(
                "cannot open the admin audit log {}: {e}; admin calls will not be audited until it can be written (set --audit-log / PODIUM_AUDIT_LOG)",
                audit_path.display()
            ),
            Err(e) => {
                return Err(anyhow!(
                    "cannot open the admin audit log {} (--audit-log): {e}",
                    audit_path.display()
                ))
            }
        }
        Ok(Arc::new(audit))
    };
    let client_certs = tls.as_ref().is_some_and(Tls::verifies_client_certs);
    if client_certs {
        tracing::info!(
            "admin API: for clients with a certificate signed by --admin-client-ca{}",
            if admin_tokens.is_some() {
                " and an admin token"
            } else {
                ""
            }
        );
    }
    let admin = match (&admin_tokens, addr.ip().is_loopback()) {
        (Some(tokens), _) => AdminAccess::Tokens {
            tokens: Arc::clone(tokens),
            audit: audit()?,
        },
        (None, _) if client_certs => AdminAccess::Open { audit: audit()? },
        (None, true) => {
            tracing::warn!("admin API without a token: open to clients on this host only (set --admin-token / PODIUM_ADMIN_TOKEN or --admin-tokens / PODIUM_ADMIN_TOKENS)");
            AdminAccess::Open { audit: audit()? }
        }
        (None, false) => {
            tracing::warn!("admin API disabled: {addr} is reachable from other hosts and no --admin-token / PODIUM_ADMIN_TOKEN or --admin-tokens / PODIUM_ADMIN_TOKENS is set");
            AdminAccess::Disabled
        }
    };
    // Both credentials files are re-read when they change, until shutdown.
    let reloads: Vec<tokio::task::JoinHandle<()>> = api_keys
        .as_ref()
        .map(|keys| keys.spawn_reload())
        .into_iter()
        .chain(admin_tokens.as_ref().and_then(|t| t.spawn_reload()))
        .collect();
    let rest_server = serve_rest(
        listener,
        router(Arc::clone(&state), admin, client_certs),
        opts.connections,
        stopped.clone(),
        tls.as_ref().map(Tls::rest),
    );
    let cert_watch = tls.as_mut().and_then(Tls::follow);
    let scheme = if tls.is_some() { "https" } else { "http" };

    tracing::info!(
        "serving OIP REST on {scheme}://{addr} and gRPC on {scheme}://{grpc_addr} with {} inference threads, queue depth {}",
        opts.inference_threads,
        opts.queue_depth
    );
    // Both already answer (live; ready once the registry is read): the
    // lines are printed after the first registry read, as before, so a
    // client that waits for them finds the models loaded (or the reasons).
    let announce = async {
        tokio::select! {
            Ok(first_read) = async { health_summary.wait_for(|h| h.started).await.map(|h| h.clone()) } => {
                // gRPC health says what the first read found before the lines.
                grpc::update_health(&reporter, &first_read, &state).await;
                use std::io::Write;
                let mut stdout = std::io::stdout();
                let _ = writeln!(stdout, "podium: grpc listening on {scheme}://{grpc_addr}");
                let _ = writeln!(stdout, "podium: listening on {scheme}://{addr}");
                let _ = stdout.flush();
            }
            _ = until_stopped(stopped.clone()) => {}
        }
    };
    // Both servers drain in-flight requests after the signal, bounded by
    // the drain timeout so a stuck client cannot hold the process forever.
    let drained = async {
        let (rest, grpc, ()) = tokio::join!(
            async { rest_server.await.context("REST server failed") },
            async { grpc_server.await.context("gRPC server failed") },
            announce
        );
        (rest, grpc)
    };
    tokio::pin!(drained);
    let drain_timeout = opts.drain_timeout;
    let (rest, grpc) = tokio::select! {
        done = &mut drained => done,
        _ = async {
            let _ = stopped.clone().wait_for(|stop| *stop).await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            tracing::warn!("drain timeout ({drain_timeout:?}) reached with requests still in flight; exiting");
            (Ok(()), Ok(()))
        }
    };
    reconciler.stop();
    health_task.abort();
    traffic_follower.abort();
    for task in loops.into_iter().chain(hangups) {
        task.abort();
    }
    for reload in reloads {
        reload.abort();
    }
    if let Some(watch) = cert_watch {
        watch.abort();
    }
    // Every answered request has handed over its row by now; write them all.
    if let Some(table) = &table_state.table {
        table.close(drain_timeout).await;
    }
    if let Some(feedback) = &table_state.feedback_table {
        feedback.close(drain_timeout).await;
    }
    rest?;
    grpc?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
