//! The one pipeline every inference call goes through, whatever its
//! protocol: REST OIP (JSON and binary), gRPC (unary and each stream
//! message) and MLflow `/invocations` are thin codecs around a [`Call`].
//!
//! A call owns the request id, routes once, keeps the inference-table row
//! for its whole life, records the metrics, and produces the response
//! metadata (request id, endpoint, arm, version, timings) that every
//! protocol returns — as headers or gRPC metadata, from [`Call::metadata`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::deadline::requested_timeout;
use super::error::classify;
use super::keys::{Keys, RequestKeys};
use super::trace_context::{TraceContext, TRACEPARENT, TRACESTATE};
use super::AppState;
use crate::auth::Requester;
use crate::error::Error;
use crate::experiments::{CallRecord, Prediction, Tracker};
use crate::inference_table::{Entry, Protocol, UNKNOWN_ENDPOINT};
use crate::registry::VersionSpec;
use crate::request::{InferRequest, InferResponse, ShadowReceiver, Timing};
use crate::routing::Route;
use crate::runtime::LoadedModel;

/// The response header (and gRPC metadata key) carrying Podium's id of a
/// request, the inference table's `request_id`.
pub const REQUEST_ID: &str = "x-request-id";

/// Response headers (and gRPC metadata keys) with where a call's time went.
pub const QUEUE_US: &str = "x-podium-queue-us";
pub const INFERENCE_US: &str = "x-podium-inference-us";
pub const TOTAL_US: &str = "x-podium-total-us";

/// The keys of [`Call::metadata`] whose value differs in every answer.
pub const PER_CALL_METADATA: [&str; 5] =
    [REQUEST_ID, TRACEPARENT, QUEUE_US, INFERENCE_US, TOTAL_US];

/// The request header (and gRPC metadata key) with the client's own id of a
/// request, the table's `client_request_id` (else the OIP `id` is used).
pub const CLIENT_REQUEST_ID: &str = "x-client-request-id";

/// The id of a call that no experiment ledger numbers (a call to an
/// endpoint with a readout takes its id from its [`Tracker`]).
pub use crate::request_id::new_request_id;

/// One inference call, from the first byte read to the row queued.
pub struct Call<'a> {
    state: &'a AppState,
    protocol: Protocol,
    /// The name called: an endpoint, or a model.
    name: String,
    request_id: String,
    started: Instant,
    /// The name called (an endpoint or a model) as metrics label it:
    /// `_unknown` for a name that is neither, so made-up names in URLs
    /// cannot grow the metrics without bound.
    endpoint_label: String,
    row: Option<Entry>,
    route: Option<Route>,
    /// Whether the route found a loaded model (else its arm is labelled `_unknown`).
    resolved: bool,
    answered: Option<Answered>,
    shadow: Option<(String, ShadowReceiver)>,
    /// When the call must be answered by: the request's own timeout, else
    /// its endpoint's default, counted from the call's start.
    deadline: Option<Instant>,
    /// The experiment readout of the endpoint called, when it has one and
    /// the call is routed by arm (not to a version it names).
    tracker: Option<Tracker<'a>>,
    /// The client's request id, kept for the readout's ledger.
    client_request_id: Option<String>,
    /// Row 0 of the readout's prediction output, once answered.
    prediction: Option<Prediction>,
    /// The caller's W3C trace, when it sent a valid `traceparent`.
    trace: Option<TraceContext>,
    /// The call's log span when traced: its request id and trace id
    /// (`Span::none()` otherwise).
    span: tracing::Span,
}

/// What the response metadata says about a call that was answered.
struct Answered {
    version: u64,
    timing: Timing,
}

/// How a call ended, as its protocol answered it.
pub enum Outcome<'e> {
    Ok,
    Failed {
        error: &'e Error,
        /// The protocol's own error body, when it is not OIP's `{"error": ...}`.
        body: Option<String>,
    },
}

impl<'a> Call<'a> {
    /// Starts a call to `name` over `protocol`; `client_request_id` is the
    /// client's id from a header, when it sent one; `requester` the API key
    /// the call was accepted with, when `--api-keys` is on.
    pub fn start(
        state: &'a AppState,
        protocol: Protocol,
        name: &str,
        client_request_id: Option<&str>,
        requester: Option<&Requester>,
    ) -> Call<'a> {
        let started = Instant::now();
        let tracker = state
            .experiments
            .as_deref()
            .and_then(|experiments| experiments.tracker(name));
        let request_id = tracker
            .as_ref()
            .map_or_else(new_request_id, Tracker::request_id);
        let known = state.core.knows(name);
        let row = state.table.as_ref().and_then(|table| {
            let policy = state.core.routes().log_policy(name);
            let fraction = policy.sample_fraction;
            if fraction < 1.0 && fastrand::f64() >= fraction {
                return None;
            }
            let endpoint = known.then_some(name);
            let mut row = table.entry(
                request_id.clone(),
                endpoint,
                protocol,
                fraction,
                policy.payloads,
            );
            row.client_request_id(client_request_id);
            if let Some(requester) = requester {
                row.requester(requester.as_str());
            }
            Some(row)
        });
        let client_request_id = client_request_id
            .filter(|_| tracker.is_some())
            .map(str::to_string);
        // Untraced calls get no span: creating one formats its fields on
        // every call, which the request path should not pay for.
        let span = tracing::Span::none();
        Call {
            state,
            protocol,
            name: name.to_string(),
            request_id,
            started,
            endpoint_label: if known { name } else { UNKNOWN_ENDPOINT }.to_string(),
            row,
            route: None,
            resolved: false,
            answered: None,
            shadow: None,
            deadline: None,
            tracker,
            client_request_id,
            prediction: None,
            trace: None,
            span,
        }
    }

    /// Joins the caller's trace from its `traceparent` and `tracestate`
    /// (header or metadata values); a missing or malformed one leaves the
    /// call untraced.
    pub fn trace(&mut self, traceparent: Option<&str>, tracestate: Option<&str>) {
        let Some(trace) = TraceContext::read(traceparent, tracestate) else {
            if traceparent.is_some() {
                tracing::debug!(parent: &self.span, "ignoring a malformed traceparent");
            }
            return;
        };
        self.span = tracing::info_span!(
            "call",
            request_id = %self.request_id,
            trace_id = %trace.trace_id
        );
        if let Some(row) = self.row.as_mut() {
            row.trace_id(&trace.trace_id);
        }
        self.trace = Some(trace);
    }

    /// The call's log span, for the protocol to run its work in.
    pub fn span(&self) -> tracing::Span {
        self.span.clone()
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The client's id from the body, unless a header already gave one.
    pub fn client_request_id(&mut self, id: Option<&str>) {
        if let Some(row) = self.row.as_mut() {
            row.client_request_id(id);
        }
        if self.tracker.is_some() && self.client_request_id.is_none() {
            self.client_request_id = id.map(str::to_string);
        }
    }

    /// Records a request body that already is text (JSON, or CSV).
    pub fn request_text(&mut self, body: &Bytes) {
        if let Some(row) = self.row.as_mut() {
            row.request_text(body);
        }
    }

    /// Records a decoded request (binary or gRPC).
    pub fn request_tensors(&mut self, request: &InferRequest) {
        if let Some(row) = self.row.as_mut() {
            row.request_tensors(request);
        }
    }

    /// Routes the call, once: to `version` when the request names one, else
    /// by the arm override and sticky key `request` carries, else by weight;
    /// and sets its deadline. Fails only on a malformed timeout.
    pub fn route(&mut self, version: Option<&str>, request: &dyn RequestKeys) -> Result<(), Error> {
        debug_assert!(self.route.is_none(), "a call is routed once");
        let core = &self.state.core;
        let routes = core.routes();
        let timeout = requested_timeout(request)?.or_else(|| routes.default_timeout(&self.name));
        self.deadline = timeout.map(|t| self.started + t);
        let keys = Keys::read(request, routes.sticky_key(&self.name));
        let route = core.route(&self.name, version, keys.as_route_keys());
        if let Some(row) = self.row.as_mut() {
            row.routed(&route.arm, &route.model);
        }
        if !matches!(route.spec, VersionSpec::Alias(_)) {
            // A version named in the request is no arm of the experiment.
            self.tracker = None;
        }
        self.route = Some(route);
        Ok(())
    }

    /// The loaded model version the routed arm serves now; the request is
    /// decoded against its signature where the protocol needs one.
    pub async fn resolve(&mut self) -> Result<Arc<LoadedModel>, Error> {
        let route = self.routed()?;
        let model = self.state.core.resolve(route).await?;
        self.resolved = true;
        Ok(model)
    }

    /// Runs `request` on `model` (from [`Call::resolve`]) and sends the
    /// route's shadow copy, if any.
    pub async fn infer(
        &mut self,
        model: Arc<LoadedModel>,
        request: InferRequest,
    ) -> Result<InferResponse, Error> {
        let in_flight = InFlightGauge::new(
            metrics::gauge!("podium_endpoint_in_flight", "endpoint" => self.endpoint_label.clone()),
        );
        let core = &self.state.core;
        let route = self.route.as_mut().ok_or_else(not_routed)?;
        let inferred = core.infer(route, model, request, self.deadline).await;
        drop(in_flight);
        self.shadow = inferred.shadow;
        let response = inferred.result?;
        if let Some(output) = self.tracker.as_ref().and_then(|t| t.prediction_output()) {
            self.prediction = Prediction::of(&response, output);
        }
        if let Some(row) = self.row.as_mut() {
            row.answered(
                &response.model_name,
                response.model_version,
                response.timing,
            );
        }
        self.answered = Some(Answered {
            version: response.model_version,
            timing: response.timing,
        });
        Ok(response)
    }

    /// Records a response body that is JSON text.
    pub fn response_text(&mut self, body: &Bytes) {
        if let Some(row) = self.row.as_mut() {
            row.response_text(body);
        }
    }

    /// Records a response to render in the OIP JSON form (off the request path).
    pub fn response_tensors(&mut self, response: InferResponse) {
        if let Some(row) = self.row.as_mut() {
            row.response_tensors(response);
        }
    }

    /// Records a copy of a response the protocol still needs (copied only
    /// when the table keeps it).
    pub fn response_tensors_copy(&mut self, response: &InferResponse) {
        if let Some(row) = self.row.as_mut() {
            row.response_tensors_copy(response);
        }
    }

    /// The metadata every protocol returns with an answer, in one place:
    /// the request id always; `traceparent` (Podium's span) and
    /// `tracestate` when the call is traced; the endpoint, arm, version and timings once
    /// the call was answered. Every value is a valid header value: names
    /// from a registry (an MLflow alias may be any Unicode `\w`) are
    /// percent-encoded outside printable ASCII.
    pub fn metadata(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![(REQUEST_ID, header_safe(&self.request_id))];
        if let Some(trace) = &self.trace {
            out.push((TRACEPARENT, trace.traceparent()));
            if let Some(state) = &trace.tracestate {
                out.push((TRACESTATE, state.clone()));
            }
        }
        if let (Some(route), Some(answered)) = (&self.route, &self.answered) {
            let us = |d: Duration| d.as_micros().to_string();
            out.extend([
                ("x-podium-endpoint", header_safe(&route.endpoint)),
                ("x-podium-arm", header_safe(&route.arm)),
                ("x-podium-model-version", answered.version.to_string()),
                (QUEUE_US, us(answered.timing.queue)),
                (INFERENCE_US, us(answered.timing.inference)),
                (TOTAL_US, us(self.started.elapsed())),
            ]);
            if let Some(rows) = answered.timing.batch_size {
                out.push(("x-podium-batch-size", rows.to_string()));
            }
        }
        out
    }

    /// Ends the call: counts it, and queues its row with the status the
    /// client got (the row waits for the shadow's outcome, if one was sent).
    pub fn finish(mut self, outcome: Outcome<'_>) {
        let protocol = self.protocol;
        self.track(&outcome);
        if let Some(route) = &self.route {
            let arm = if self.resolved {
                route.arm.as_str()
            } else {
                UNKNOWN_ENDPOINT
            };
            let labels = [
                ("endpoint", self.endpoint_label.clone()),
                ("arm", arm.to_string()),
            ];
            let result = if matches!(outcome, Outcome::Ok) {
                "ok"
            } else {
                "error"
            };
            if let Outcome::Failed {
                error: Error::DeadlineExceeded(_),
                ..
            } = outcome
            {
                metrics::counter!("podium_deadline_exceeded_total", "endpoint" => self.endpoint_label.clone())
                    .increment(1);
            }
            metrics::counter!(
                "podium_requests_total",
                &[&labels[..], &[("result", result.to_string())]].concat()
            )
            .increment(1);
            let elapsed = self.started.elapsed();
            metrics::histogram!("podium_request_seconds", &labels).record(elapsed.as_secs_f64());
            self.state
                .series
                .record(&self.endpoint_label, arm, result == "ok", elapsed);
            if let Some(answered) = &self.answered {
                metrics::histogram!("podium_model_seconds", &labels)
                    .record(answered.timing.inference.as_secs_f64());
            }
        }
        let (Some(table), Some(mut row)) = (&self.state.table, self.row) else {
            return;
        };
        let (status, error) = match outcome {
            Outcome::Ok => {
                if protocol == Protocol::Grpc {
                    row.grpc_status(tonic::Code::Ok as i32);
                }
                (200, None)
            }
            Outcome::Failed { error, body } => {
                let classified = classify(error);
                if protocol == Protocol::Grpc {
                    row.grpc_status(classified.grpc as i32);
                }
                if let Some(body) = body {
                    row.error_body(body);
                }
                (classified.http.as_u16(), Some(error.to_string()))
            }
        };
        table.submit(row, status, error, self.shadow);
    }

    /// Hands the call to its endpoint's readout: calls that reached an arm
    /// (answered, or failed once routed to an alias that exists).
    fn track(&mut self, outcome: &Outcome<'_>) {
        let (Some(tracker), Some(route)) = (self.tracker.take(), &self.route) else {
            return;
        };
        let ok = matches!(outcome, Outcome::Ok);
        let unknown_arm = matches!(
            outcome,
            Outcome::Failed {
                error: Error::NotFound(_),
                ..
            }
        );
        if !self.resolved && unknown_arm {
            return;
        }
        tracker.record(CallRecord {
            client_request_id: self.client_request_id.as_deref(),
            arm: &route.arm,
            version: self.answered.as_ref().map(|a| a.version),
            ok,
            latency: self.started.elapsed(),
            prediction: self.prediction.take(),
        });
    }

    fn routed(&self) -> Result<&Route, Error> {
        self.route.as_ref().ok_or_else(not_routed)
    }
}

fn not_routed() -> Error {
    Error::Internal("the call was not routed before it ran".into())
}

/// One request counted in a gauge until dropped, also when the client goes
/// away mid-request.
struct InFlightGauge(metrics::Gauge);

impl InFlightGauge {
    fn new(gauge: metrics::Gauge) -> InFlightGauge {
        gauge.increment(1.0);
        InFlightGauge(gauge)
    }
}

impl Drop for InFlightGauge {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// `value` with control characters and every non-ASCII byte
/// percent-encoded, so it is always a valid HTTP header / gRPC metadata value.
fn header_safe(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::CONTROLS).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_version_4_uuids() {
        let a = new_request_id();
        assert_ne!(a, new_request_id());
        let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn metadata_values_are_always_valid_headers() {
        for (name, want) in [
            ("champion", "champion"),
            ("champiön", "champi%C3%B6n"),
            ("a\r\nx-evil: 1", "a%0D%0Ax-evil: 1"),
        ] {
            let safe = header_safe(name);
            assert_eq!(safe, want);
            axum::http::HeaderValue::from_str(&safe).expect("a valid header value");
        }
    }
}
