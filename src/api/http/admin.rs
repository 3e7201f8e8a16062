//! The admin API ops use to flip aliases, roll back, register versions and
//! see what is serving. Every route needs `Authorization: Bearer <token>`
//! when a token is configured; without one, the routes are only mounted on a
//! loopback listener (see `server.rs`).

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use subtle::ConstantTimeEq;

use crate::api::error::ApiError;
use crate::api::AppState;
use crate::error::Error;
use crate::serving::AliasChange;

type S = State<Arc<AppState>>;

/// The admin routes, behind the token check when `token` is set.
pub fn routes(state: Arc<AppState>, token: Option<String>) -> Router<Arc<AppState>> {
    let router = Router::new()
        .route("/admin/status", get(status))
        .route("/admin/history", get(history))
        .route("/admin/models", post(super::registration::register))
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
        .route("/admin/endpoints/{name}/traffic", put(set_traffic))
        .route("/admin/experiments", get(super::experiments::list))
        .route(
            "/admin/experiments/{endpoint}",
            get(super::experiments::show),
        );
    let _ = state;
    match token {
        Some(token) => {
            let token: Arc<str> = token.into();
            router.layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    let token = Arc::clone(&token);
                    async move { authorize(&token, req, next).await }
                },
            ))
        }
        None => router,
    }
}

/// 401 with no detail unless the request carries the token.
async fn authorize(token: &str, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        return next.run(req).await;
    }
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
    Json(serde_json::to_value(state.core.models().status()).unwrap_or_default())
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
            by: "admin".into(),
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
        .delete_alias(&model, &alias, "admin")
        .await?;
    Ok(Json(json!({ "model": model, "alias": alias, "deleted": true })).into_response())
}

async fn rollback(
    State(state): S,
    Path((model, alias)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    state.core.models().info(&model)?; // an unknown model is a 404, not "no previous version"
    let outcome = state
        .core
        .models()
        .rollback(&model, &alias, "admin:rollback")
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
/// back to the config file.
async fn set_traffic(
    State(state): S,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let traffic: Traffic = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::InvalidInput(format!(
            "expected {{\"arms\": [{{\"alias\": \"champion\", \"weight\": 90}}, ...], \"shadow\": {{\"alias\": ..., \"fraction\": 0.1, \"max_in_flight\": 16}} or null}}: {e}"
        )))
    })?;
    let routes = state.core.routes();
    let Some(current) = routes.endpoints.get(&name) else {
        let configured: Vec<&str> = routes.endpoints.keys().map(String::as_str).collect();
        return Err(ApiError(Error::NotFound(format!(
            "no endpoint \"{name}\" is configured (configured: {}); endpoints are defined in the --config file",
            if configured.is_empty() { "none".into() } else { configured.join(", ") }
        ))));
    };
    let shadow = match traffic.shadow {
        None => current.shadow.clone(),
        Some(shadow) => shadow,
    };
    let aliases: Vec<String> = state
        .core
        .models()
        .info(&current.model)?
        .aliases
        .into_keys()
        .collect();
    let aliases = Some(aliases.as_slice());
    crate::config::check_traffic(&current.model, aliases, &traffic.arms, shadow.as_ref())
        .and_then(|()| current.with_traffic(traffic.arms, shadow))
        .map_err(|why| ApiError(Error::InvalidInput(format!("endpoint \"{name}\": {why}"))))
        .map(|updated| {
            let updated = Arc::new(updated);
            state.core.replace_endpoint(Arc::clone(&updated));
            let arms: Vec<String> = updated
                .arms
                .iter()
                .map(|a| format!("{}={}", a.alias, a.weight))
                .collect();
            tracing::info!(
                "endpoint {name}: traffic set to {} by the admin API",
                arms.join(", ")
            );
            Json(json!({ "endpoint": &*updated })).into_response()
        })
}
