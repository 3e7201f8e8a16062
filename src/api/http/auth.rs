//! API keys on the REST routes that run or describe models: one layer over
//! a group of routes (see [`super::router`]), so a new route under it is
//! one line. A refused call is answered here — 401 with `WWW-Authenticate:
//! Bearer`, 403, or 429 with `Retry-After`, each with the OIP error body —
//! before its body is read or a model is looked at; an accepted one carries
//! its key's name ([`Requester`]) to the handler, which hands it to the
//! call pipeline for the inference table.

use std::sync::Arc;

use axum::extract::{RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;

use crate::api::error::oip_response;
use crate::api::AppState;
use crate::auth::{presented, Requester};

/// Where the routes of a group name the endpoint they call, for keys
/// limited to some endpoints.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    /// The `{model}` or `{name}` path parameter; a route with neither is
    /// checked for its key and rate only.
    InPath,
    /// The default endpoint, as `POST /invocations` resolves it.
    Default,
}

/// `routes` behind the API-key check when `--api-keys` is on; unchanged otherwise.
pub fn guard(
    routes: Router<Arc<AppState>>,
    state: &Arc<AppState>,
    endpoint: Endpoint,
) -> Router<Arc<AppState>> {
    if state.api_keys.is_none() {
        return routes;
    }
    routes.route_layer(axum::middleware::from_fn_with_state(
        (Arc::clone(state), endpoint),
        require_key,
    ))
}

async fn require_key(
    State((state, endpoint)): State<(Arc<AppState>, Endpoint)>,
    params: Result<RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(keys) = &state.api_keys else {
        return next.run(request).await;
    };
    let endpoint = match endpoint {
        Endpoint::InPath => params.ok().and_then(|params| {
            params
                .iter()
                .find(|(key, _)| matches!(*key, "model" | "name"))
                .map(|(_, value)| value.to_string())
        }),
        Endpoint::Default => super::mlflow::default_endpoint(&state).ok(),
    };
    let key = presented(|name| request.headers().get(name)?.to_str().ok());
    match keys.check(key, endpoint.as_deref()) {
        Ok(requester) => {
            request.extensions_mut().insert::<Requester>(requester);
            next.run(request).await
        }
        Err(refused) => oip_response(&refused),
    }
}
