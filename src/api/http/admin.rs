//! The admin API ops use to flip aliases, roll back, register versions and
//! see what is serving. Every route needs `Authorization: Bearer <token>`
//! (`--admin-token`, or a named token of `--admin-tokens`) when a token is
//! configured; without one, the routes are only mounted on a loopback
//! listener (see `server/mod.rs`). Every call, accepted or not, is written to
//! the audit log with the caller's token name.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::AdminAccess;
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::auth::{presented, AdminCaller, AdminTokens, AuditEntry, AuditLog};
use crate::error::Error;
use crate::listener::ClientCert;
use crate::serving::{AliasChange, TrafficChange};

type S = State<Arc<AppState>>;

/// The admin routes, behind the client-certificate check (when
/// `client_cert` is set), the token check and the audit log (nothing when
/// `access` is [`AdminAccess::Disabled`]).
pub fn routes(access: AdminAccess, client_cert: bool) -> Router<Arc<AppState>> {
    let gate = match access {
        AdminAccess::Disabled => return Router::new(),
        AdminAccess::Open { audit } => Gate {
            tokens: None,
            audit,
            client_cert,
        },
        AdminAccess::Tokens { tokens, audit } => Gate {
            tokens: Some(tokens),
            audit,
            client_cert,
        },
    };
    Router::new()
        .route("/admin/status", get(status))
        .route("/admin/overview", get(super::overview::overview))
        .route("/admin/history", get(history))
        .route("/admin/audit", get(audit))
        .route("/admin/models", post(super::registration::register))
        .route(
            "/admin/models/{model}/versions/{version}",
            axum::routing::delete(super::versions::delete),
        )
        .route(
            "/admin/models/{model}/versions/{version}/archive",
            post(super::versions::archive),
        )
        .route(
            "/admin/models/{model}/versions/{version}/unarchive",
            post(super::versions::unarchive),
        )
        .route("/admin/models/{model}/aliases", get(aliases))
        .route(
            "/admin/models/{model}/aliases/{alias}",
            put(set_alias).delete(delete_alias),
        )
        .route(
            "/admin/models/{model}/aliases/{alias}/rollback",
            post(rollback),
        )
        .route("/admin/endpoints", get(endpoints))
        .route(
            "/admin/endpoints/{name}/traffic",
            put(set_traffic).delete(reset_traffic),
        )
        .route("/admin/config/reload", post(reload_config))
        .route("/admin/experiments", get(super::experiments::list))
        .route(
            "/admin/experiments/{endpoint}",
            get(super::experiments::show),
        )
        .route(
            "/admin/experiments/{endpoint}/promote",
            post(super::experiments::promote),
        )
        .route(
            "/admin/experiments/{endpoint}/rollout/{action}",
            post(super::experiments::rollout),
        )
        .layer(Extension(Arc::clone(&gate.audit)))
        .layer(axum::middleware::from_fn_with_state(gate, admit))
}

/// Who may pass, and where each call is written down.
#[derive(Clone)]
struct Gate {
    /// None: no token is configured (a loopback-only listener, or one whose
    /// admin clients are checked by certificate).
    tokens: Option<Arc<AdminTokens>>,
    audit: Arc<AuditLog>,
    /// A TLS client certificate verified against `--admin-client-ca` is
    /// required (before the token).
    client_cert: bool,
}

/// Lets a call through with its [`AdminCaller`] when it carries the client
/// certificate (403 otherwise) and one of the tokens (401 with no detail
/// otherwise) that `gate` asks for, then audits it with the status it got;
/// the entry is written before the answer leaves.
async fn admit(State(gate): State<Gate>, mut request: Request, next: Next) -> Response {
    let cert = request.extensions().get::<ClientCert>().cloned();
    let caller = match (&gate.tokens, &cert) {
        _ if gate.client_cert && cert.is_none() => None,
        (None, Some(cert)) if gate.client_cert => Some(AdminCaller::Certificate(
            cert.common_name.clone().unwrap_or_else(|| "(no CN)".into()),
        )),
        (None, _) => Some(AdminCaller::Loopback),
        (Some(tokens), _) => tokens.identify(presented(|name| {
            (name == "authorization")
                .then(|| request.headers().get(name)?.to_str().ok())
                .flatten()
        })),
    };
    let remote = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.to_string());
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let response = match &caller {
        Some(caller) => {
            if let Some(cert) = &cert {
                tracing::info!(
                    "admin {method} {path} by client certificate CN={}",
                    cert.common_name.as_deref().unwrap_or("(none)")
                );
            }
            request.extensions_mut().insert(caller.clone());
            next.run(request).await
        }
        None if gate.client_cert && cert.is_none() => no_client_cert(),
        None => unauthorized(),
    };
    let caller_name = caller.as_ref().map(AdminCaller::audit_name);
    let entry = AuditEntry::now(
        caller_name.as_deref(),
        remote,
        &method,
        &path,
        query.as_deref(),
        response.status().as_u16(),
    );
    let audit = gate.audit;
    if let Err(e) = tokio::task::spawn_blocking(move || audit.record(&entry)).await {
        tracing::error!("the audit log writer failed: {e}");
    }
    response
}

fn unauthorized() -> Response {
    let mut response = (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "error": "unauthorized" })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// 403: `--admin-client-ca` is set and the connection presented no
/// certificate signed by it.
fn no_client_cert() -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(json!({
            "error": "the admin API needs a client certificate signed by --admin-client-ca"
        })),
    )
        .into_response()
}

/// Runs a blocking store operation off the async runtime.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError(Error::Internal(format!("admin task failed: {e}"))))?
        .map_err(ApiError)
}

async fn status(State(state): S) -> Json<serde_json::Value> {
    let mut status = serde_json::to_value(state.core.models().status()).unwrap_or_default();
    if let Some(fields) = status.as_object_mut() {
        fields.insert("replica".into(), json!(state.replica.as_str()));
    }
    Json(status)
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    model: Option<String>,
}

async fn history(State(state): S, Query(q): Query<HistoryQuery>) -> Result<Response, ApiError> {
    let models = Arc::clone(state.core.models());
    let events = blocking(move || {
        models
            .history()
            .tail(q.limit.unwrap_or(100), q.model.as_deref())
            .map_err(|e| Error::Internal(format!("cannot read the alias history: {e}")))
    })
    .await?;
    Ok(Json(json!({ "events": events })).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    #[serde(default)]
    limit: Option<usize>,
}

/// The newest audit entries (`?limit=N`, default 100), oldest first.
async fn audit(
    Extension(log): Extension<Arc<AuditLog>>,
    Query(q): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let entries = blocking(move || {
        log.tail(q.limit.unwrap_or(100)).map_err(|e| {
            Error::Internal(format!(
                "cannot read the audit log {}: {e}",
                log.path().display()
            ))
        })
    })
    .await?;
    Ok(Json(json!({ "entries": entries })).into_response())
}

async fn aliases(State(state): S, Path(model): Path<String>) -> Result<Response, ApiError> {
    let info = state.core.models().info(&model)?;
    let serving: serde_json::Map<String, serde_json::Value> = state
        .core
        .models()
        .status()
        .slots
        .into_iter()
        .filter(|s| s.model == model)
        .map(|s| (s.alias, json!(s.serving_version)))
        .collect();
    Ok(
        Json(json!({ "model": model, "aliases": info.aliases, "serving": serving }))
            .into_response(),
    )
}

#[derive(Deserialize)]
struct SetAlias {
    version: u64,
    #[serde(default)]
    allow_signature_change: bool,
}

async fn set_alias(
    State(state): S,
    Extension(caller): Extension<AdminCaller>,
    Path((model, alias)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let req: SetAlias = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::InvalidInput(format!(
            "expected a JSON body like {{\"version\": 5}} (optionally \"allow_signature_change\": true): {e}"
        )))
    })?;
    let outcome = state
        .core
        .models()
        .set_alias(AliasChange {
            model,
            alias,
            version: req.version,
            allow_signature_change: req.allow_signature_change,
            by: caller.by(),
            rollback: false,
        })
        .await?;
    Ok(Json(outcome).into_response())
}

#[derive(Deserialize)]
struct DeleteQuery {
    /// Delete even when endpoints route to the alias.
    #[serde(default)]
    force: bool,
}

/// Removes an alias; refused (409) while an endpoint's arm or shadow routes
/// to it, since its users would get 404s, unless `?force=true`.
async fn delete_alias(
    State(state): S,
    Extension(caller): Extension<AdminCaller>,
    Path((model, alias)): Path<(String, String)>,
    Query(q): Query<DeleteQuery>,
) -> Result<Response, ApiError> {
    let users = state.core.routes().users_of(&model, &alias);
    if !users.is_empty() && !q.force {
        return Err(ApiError(Error::Refused(format!(
            "{model}@{alias} is routed to by endpoint{} {}; move their traffic off it first (PUT /admin/endpoints/NAME/traffic), or delete anyway with ?force=true (podium alias delete --force)",
            if users.len() == 1 { "" } else { "s" },
            users.join(", ")
        ))));
    }
    if !users.is_empty() {
        tracing::warn!(
            "{model}@{alias} deleted by force while endpoints {} route to it",
            users.join(", ")
        );
    }
    state
        .core
        .models()
        .delete_alias(&model, &alias, &caller.by())
        .await?;
    Ok(Json(json!({ "model": model, "alias": alias, "deleted": true })).into_response())
}

async fn rollback(
    State(state): S,
    Extension(caller): Extension<AdminCaller>,
    Path((model, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state.core.models().info(&model)?; // an unknown model is a 404, not "no previous version"
    let outcome = state
        .core
        .models()
        .rollback(&model, &alias, &format!("{}:rollback", caller.by()))
        .await?;
    Ok(Json(outcome).into_response())
}

async fn endpoints(State(state): S) -> Json<serde_json::Value> {
    let routes = state.core.routes();
    let mut endpoints: Vec<&crate::routing::Endpoint> =
        routes.endpoints.values().map(|e| e.as_ref()).collect();
    endpoints.sort_by(|a, b| a.name.cmp(&b.name));
    Json(json!({ "endpoints": endpoints }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Traffic {
    arms: Vec<crate::routing::Arm>,
    /// Absent: keep the shadow; null: remove it.
    #[serde(default, deserialize_with = "present")]
    shadow: Option<Option<crate::routing::Shadow>>,
}

fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Replaces an endpoint's weights (and shadow) in one atomic store: the next
/// request uses the new policy, and no request sees half of it. Not written
/// back to the config file; stored in the registry (every replica follows
/// it) and recorded in the alias history.
async fn set_traffic(
    State(state): S,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let traffic: Traffic = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::InvalidInput(format!(
            "expected {{\"arms\": [{{\"alias\": \"champion\", \"weight\": 90}}, ...], \"shadow\": {{\"alias\": ..., \"fraction\": 0.1, \"max_in_flight\": 16}} or null}}: {e}"
        )))
    })?;
    crate::api::rollout_controls::check_manual_traffic(&state, &name, &traffic.arms)?;
    let change = TrafficChange {
        endpoint: name,
        arms: traffic.arms,
        shadow: traffic.shadow,
        by: caller.by(),
        why: None,
        if_unchanged: false,
    };
    let updated = crate::api::experiment_controls::change_traffic(&state, change).await?;
    Ok(Json(json!({ "endpoint": &*updated })).into_response())
}

/// Puts an endpoint back on the `--config` file's policy, on every replica
/// of the registry: the policy stored by traffic changes is removed.
async fn reset_traffic(
    State(state): S,
    Extension(caller): Extension<AdminCaller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let updated = crate::api::experiment_controls::reset_traffic(&state, name, caller.by()).await?;
    Ok(Json(json!({ "endpoint": &*updated })).into_response())
}

/// `POST /admin/config/reload`: reads the `--config` file again and
/// replaces the endpoints (see [`crate::serving::ConfigFile`]).
async fn reload_config(
    State(state): S,
    Extension(caller): Extension<AdminCaller>,
) -> Result<Response, ApiError> {
    let outcome = crate::api::config_reload::reload_config(&state, caller.by()).await?;
    Ok(Json(outcome).into_response())
}
