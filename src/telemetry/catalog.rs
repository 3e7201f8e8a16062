//! The catalogue of Podium's metrics: the help text `/metrics` shows for
//! each, and the series that exist from start-up at 0, so that dashboards
//! and alerts (`rate(podium_table_rows_dropped_total[5m]) > 0`) work before
//! the first failure instead of seeing no data.

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

/// What the server knows at start-up that labels its series.
pub struct Declared<'a> {
    /// The registry's kind (`local`, `mlflow`).
    pub registry_kind: &'static str,
    /// The configured endpoints, and whether each has a shadow arm.
    pub endpoints: Vec<(&'a str, bool)>,
    /// Whether an inference table is written.
    pub table: bool,
    /// Whether it is uploaded to object storage (`--table-dir s3://...`).
    pub object_storage: bool,
}

/// Why a row of the inference table was dropped (`reason` label).
const TABLE_DROP_REASONS: [&str; 4] = ["queue_full", "write_error", "closed", "writer_failed"];

/// The series of a table on object storage, per table metric prefix.
const UPLOAD_COUNTERS: [&str; 3] = [
    "files_uploaded_total",
    "bytes_uploaded_total",
    "upload_errors_total",
];

/// Registers every metric's help text, and the series whose labels are
/// known now at 0 (counting nothing).
pub fn declare(known: &Declared<'_>) {
    describe();
    let zero = |c: metrics::Counter| c.increment(0);
    for listener in ["rest", "grpc"] {
        zero(metrics::counter!("podium_connections_refused_total", "listener" => listener));
        zero(metrics::counter!("podium_accept_errors_total", "listener" => listener));
        zero(
            metrics::counter!("podium_connection_timeouts_total", "listener" => listener, "kind" => "header"),
        );
    }
    for kind in ["idle", "body"] {
        zero(
            metrics::counter!("podium_connection_timeouts_total", "listener" => "rest", "kind" => kind),
        );
    }
    zero(metrics::counter!("podium_registry_errors_total", "kind" => known.registry_kind));
    for result in ["ok", "error"] {
        zero(metrics::counter!("podium_config_reloads_total", "result" => result));
    }
    for result in ["matched", "duplicate", "unmatched"] {
        zero(metrics::counter!("podium_feedback_items_total", "result" => result));
    }
    for &(endpoint, shadow) in &known.endpoints {
        zero(
            metrics::counter!("podium_deadline_exceeded_total", "endpoint" => endpoint.to_string()),
        );
        if shadow {
            for result in ["ok", "error", "skipped"] {
                zero(
                    metrics::counter!("podium_shadow_total", "endpoint" => endpoint.to_string(), "result" => result),
                );
            }
        }
    }
    if known.table {
        for reason in TABLE_DROP_REASONS {
            zero(metrics::counter!("podium_table_rows_dropped_total", "reason" => reason));
        }
        for name in [
            "podium_table_rows_written_total",
            "podium_table_write_errors_total",
            "podium_table_files_total",
            "podium_table_bytes_total",
            "podium_table_rows_journaled_total",
            "podium_table_journal_errors_total",
            "podium_table_rows_recovered_total",
            "podium_feedback_table_rows_written_total",
            "podium_feedback_table_write_errors_total",
            "podium_feedback_table_files_total",
            "podium_feedback_table_bytes_total",
            "podium_feedback_table_rows_journaled_total",
            "podium_feedback_table_journal_errors_total",
            "podium_feedback_table_rows_recovered_total",
        ] {
            zero(metrics::counter!(name));
        }
        zero(
            metrics::counter!("podium_feedback_table_rows_dropped_total", "reason" => "write_error"),
        );
        if known.object_storage {
            zero(metrics::counter!("podium_table_rows_dropped_total", "reason" => "spool_full"));
            for prefix in ["podium_table", "podium_feedback_table"] {
                for name in UPLOAD_COUNTERS {
                    zero(metrics::counter!(format!("{prefix}_{name}")));
                }
            }
        }
        for reason in ["queue_full", "write_error", "closed"] {
            zero(metrics::counter!("podium_feedback_table_rows_refused_total", "reason" => reason));
        }
    }
}

/// The help text of every metric (shown as `# HELP` in `/metrics`).
fn describe() {
    describe_counter!(
        "podium_config_reloads_total",
        "Reloads of the --config file (SIGHUP, POST /admin/config/reload), by result (ok; error: the previous configuration stayed in force)."
    );
    // Requests.
    describe_counter!(
        "podium_requests_total",
        "Inference calls answered, by endpoint, arm and result (ok, error)."
    );
    describe_histogram!(
        "podium_request_seconds",
        Unit::Seconds,
        "Time in Podium per inference call, from decoded request to encoded answer."
    );
    describe_histogram!(
        "podium_model_seconds",
        Unit::Seconds,
        "Time in the model per inference call (ONNX Runtime's run)."
    );
    describe_gauge!(
        "podium_endpoint_in_flight",
        "Inference calls being served now, by endpoint."
    );
    describe_gauge!(
        "podium_inference_queue_depth",
        "Inference calls waiting for an inference thread, by pool (requests, shadow)."
    );
    describe_counter!(
        "podium_inference_runs_total",
        "Model runs by where they ran: thread=\"caller\" on the thread that received the request (the pool was idle and the model answers within --run-on-caller-max-us), thread=\"inference\" on an inference thread (a dynamic batch counts once)."
    );
    describe_counter!(
        "podium_deadline_exceeded_total",
        "Calls whose deadline passed before an inference thread took them (answered 504 / DEADLINE_EXCEEDED)."
    );
    describe_counter!(
        "podium_shadow_total",
        "Shadow copies by endpoint and result (ok, error, skipped when the shadow queue is full)."
    );
    describe_histogram!(
        "podium_batch_size",
        Unit::Count,
        "Rows per model run of a model with dynamic batching ([model.<name>.batching]), by model."
    );
    describe_histogram!(
        "podium_shadow_seconds",
        Unit::Seconds,
        "Time of a shadow copy in its model."
    );
    // Models and aliases.
    describe_counter!(
        "podium_swaps_total",
        "Alias swaps by model, alias and result (ok, failed, refused)."
    );
    describe_histogram!(
        "podium_swap_step_seconds",
        Unit::Seconds,
        "Time of each step of a swap (load, validate, warm)."
    );
    describe_gauge!(
        "podium_serving_version",
        "The version an alias is serving (0: none)."
    );
    describe_gauge!(
        "podium_registry_version",
        "The version an alias points at in the registry."
    );
    describe_gauge!(
        "podium_alias_state",
        "1 for the state an alias is in (serving, loading, refused, ...), 0 for the others."
    );
    describe_gauge!(
        "podium_versions",
        "Loaded model versions by state (resident, draining)."
    );
    describe_gauge!(
        "podium_in_flight_requests",
        "Requests running on a loaded version."
    );
    describe_gauge!(
        "podium_model_memory_estimate_bytes",
        Unit::Bytes,
        "Estimated memory of the loaded models."
    );
    describe_counter!(
        "podium_model_loads_total",
        "Model versions loaded, by model and trigger (registry: the reconciler followed an alias; request: a request needed it, on demand or by number)."
    );
    describe_counter!(
        "podium_model_evictions_total",
        "Loaded versions evicted, least recently used first, to make room under --memory-limit, by model."
    );
    describe_histogram!(
        "podium_cold_load_seconds",
        Unit::Seconds,
        "Time of a load on demand (load and warm-up) that requests waited for, by model."
    );
    // The registry.
    describe_gauge!(
        "podium_registry_up",
        "1 while the last read of the registry worked, 0 while degraded."
    );
    describe_gauge!(
        "podium_registry_consecutive_failures",
        "Registry reads that failed in a row."
    );
    describe_counter!(
        "podium_registry_errors_total",
        "Registry reads that failed."
    );
    describe_counter!(
        "podium_registry_artifacts_total",
        "MLflow artifacts by result (downloaded, cached)."
    );
    // Connections.
    describe_counter!(
        "podium_connections_refused_total",
        "Connections closed at once because the listener had --max-connections open."
    );
    describe_counter!(
        "podium_connection_timeouts_total",
        "Connections closed by a timeout, by listener and kind (header, idle, body)."
    );
    describe_counter!(
        "podium_accept_errors_total",
        "Failed accepts (e.g. out of file descriptors), by listener."
    );
    // Experiments.
    describe_counter!(
        "podium_feedback_items_total",
        "Feedback items posted to /v2/feedback, by result (matched: the first label of a call in the ledger; duplicate; unmatched)."
    );
    describe_counter!(
        "podium_readout_ledger_evicted_total",
        "Calls of an experiment endpoint dropped from the feedback ledger (--readout-ledger-size, oldest first); feedback arriving for them later is unmatched."
    );
    describe_counter!(
        "podium_guardrail_trips_total",
        "Guardrail trips of an experiment endpoint, by arm and rule (error_rate, p99_ratio): the arm's weight was set to 0 (see /admin/history, who = guardrail)."
    );
    // The inference table.
    describe_counter!(
        "podium_table_rows_written_total",
        "Inference-table rows written to Parquet."
    );
    describe_counter!(
        "podium_table_rows_dropped_total",
        "Inference-table rows dropped, by reason (queue_full, write_error, closed, writer_failed, and spool_full: the object-storage spool is over --table-spool-max-bytes)."
    );
    describe_counter!(
        "podium_table_write_errors_total",
        "Failed writes of the inference table."
    );
    describe_counter!(
        "podium_table_files_total",
        "Inference-table files completed."
    );
    describe_counter!(
        "podium_table_bytes_total",
        Unit::Bytes,
        "Bytes of completed inference-table files."
    );
    describe_gauge!(
        "podium_table_queue_rows",
        "Inference-table rows waiting for the writer."
    );
    describe_gauge!(
        "podium_table_queue_bytes",
        Unit::Bytes,
        "Bytes of inference-table rows waiting for the writer."
    );
    describe_gauge!(
        "podium_table_oldest_unflushed_seconds",
        Unit::Seconds,
        "Age of the oldest row whose file is not closed yet."
    );
    describe_counter!(
        "podium_table_rows_journaled_total",
        "Inference-table rows appended to the journal of an open file."
    );
    describe_counter!(
        "podium_table_journal_errors_total",
        "Journal writes that failed (the rows still go to Parquet)."
    );
    describe_counter!(
        "podium_table_rows_recovered_total",
        "Rows recovered from journals left by a crash, at start-up."
    );
    // A table on object storage (--table-dir s3://...): files complete in
    // the spool, then uploaded.
    describe_counter!(
        "podium_table_files_uploaded_total",
        "Inference-table files uploaded to object storage (and removed from the spool)."
    );
    describe_counter!(
        "podium_table_bytes_uploaded_total",
        Unit::Bytes,
        "Bytes of inference-table files uploaded to object storage."
    );
    describe_counter!(
        "podium_table_upload_errors_total",
        "Failed uploads of an inference-table file; each is retried with back-off while the file waits in the spool."
    );
    describe_gauge!(
        "podium_table_spool_bytes",
        Unit::Bytes,
        "Bytes of complete inference-table files in the spool waiting for their upload; at --table-spool-max-bytes new rows are dropped (reason spool_full)."
    );
    describe_counter!(
        "podium_feedback_table_files_uploaded_total",
        "Feedback-table files uploaded to object storage."
    );
    describe_counter!(
        "podium_feedback_table_bytes_uploaded_total",
        Unit::Bytes,
        "Bytes of feedback-table files uploaded to object storage."
    );
    describe_counter!(
        "podium_feedback_table_upload_errors_total",
        "Failed uploads of a feedback-table file (retried with back-off)."
    );
    describe_gauge!(
        "podium_feedback_table_spool_bytes",
        Unit::Bytes,
        "Bytes of complete feedback-table files in the spool waiting for their upload (feedback is never dropped for it)."
    );
    // The feedback table (same writer; the request waits for its rows).
    describe_counter!(
        "podium_feedback_table_rows_written_total",
        "Feedback-table rows written to Parquet."
    );
    describe_counter!(
        "podium_feedback_table_rows_refused_total",
        "Feedback items answered 503 because they could not be written, by reason (queue_full, write_error, closed)."
    );
    describe_counter!(
        "podium_feedback_table_rows_dropped_total",
        "Feedback-table rows lost to a failed write after they were queued (their request was answered 503)."
    );
    describe_counter!(
        "podium_feedback_table_write_errors_total",
        "Failed writes of the feedback table."
    );
    describe_counter!(
        "podium_feedback_table_files_total",
        "Feedback-table files completed."
    );
    describe_counter!(
        "podium_feedback_table_bytes_total",
        Unit::Bytes,
        "Bytes of completed feedback-table files."
    );
    describe_gauge!(
        "podium_feedback_table_queue_rows",
        "Feedback requests waiting for the feedback-table writer."
    );
    describe_gauge!(
        "podium_feedback_table_queue_bytes",
        Unit::Bytes,
        "Bytes of feedback waiting for the feedback-table writer."
    );
    describe_gauge!(
        "podium_feedback_table_oldest_unflushed_seconds",
        Unit::Seconds,
        "Age of the oldest feedback row whose file is not closed yet."
    );
    describe_counter!(
        "podium_feedback_table_rows_journaled_total",
        "Feedback-table rows appended to the journal of an open file (then acknowledged)."
    );
    describe_counter!(
        "podium_feedback_table_journal_errors_total",
        "Feedback-table journal writes that failed."
    );
    describe_counter!(
        "podium_feedback_table_rows_recovered_total",
        "Feedback rows recovered from journals left by a crash, at start-up."
    );
    describe_gauge!(
        "podium_registry_drift",
        "1 while the files of the version an alias serves changed on disk since it was loaded."
    );
    // Access.
    describe_counter!(
        "podium_api_key_requests_total",
        "Calls checked against --api-keys, by key name and outcome (allowed, forbidden, rate_limited)."
    );
    describe_counter!(
        "podium_auth_failures_total",
        "Calls refused for lack of a valid API key, by reason (missing, unknown)."
    );
    describe_counter!(
        "podium_api_keys_reload_errors_total",
        "Re-reads of --api-keys that failed (the previous keys stay in use)."
    );
    describe_counter!(
        "podium_admin_tokens_reload_errors_total",
        "Re-reads of --admin-tokens that failed (the previous tokens stay in use)."
    );
    describe_counter!(
        "podium_tls_handshake_failures_total",
        "TLS handshakes that failed, by listener."
    );
    describe_counter!(
        "podium_tls_reloads_total",
        "Certificate and key pairs reloaded after they changed."
    );
    describe_counter!(
        "podium_tls_reload_errors_total",
        "Changed certificate and key pairs that did not load (the previous pair stays in use)."
    );
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Every `"podium_…"` name under `src/` is a metric; each must have a
    /// help text here.
    #[test]
    fn every_metric_is_described() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let catalog = include_str!("catalog.rs");
        let described = &catalog[catalog.find("fn describe()").unwrap()..];
        let names = metric_names(&src);
        assert!(names.len() > 30, "{names:?}");
        let missing: Vec<_> = names
            .iter()
            .filter(|n| !n.starts_with("podium_telemetry_test"))
            .filter(|n| !described.contains(&format!("\"{n}\"")))
            // A table's metric prefix (`RowKind::METRICS`): its metrics are
            // named at run time and described here one by one.
            .filter(|n| !described.contains(&format!("\"{n}_rows_written_total\"")))
            .collect();
        assert!(
            missing.is_empty(),
            "metrics without a help text in catalog.rs: {missing:?}"
        );
    }

    fn metric_names(dir: &Path) -> std::collections::BTreeSet<String> {
        let mut names = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                names.extend(metric_names(&path));
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split("\"podium_").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if piece[name.len()..].starts_with('"') && !name.is_empty() {
                        names.insert(format!("podium_{name}"));
                    }
                }
            }
        }
        names
    }
}
