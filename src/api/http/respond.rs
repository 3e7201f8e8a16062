//! The one place an HTTP inference call ends: its metadata written as
//! headers, its error turned into the protocol's error body, its row queued.

use axum::http::HeaderValue;
use axum::response::Response;

use crate::api::call::{Call, Outcome};
use crate::api::error::oip_response;
use crate::error::Error;

/// Ends `call` with `result`; `render_error` gives a failed call's
/// response and, when it is not OIP's `{"error": ...}`, the body to record.
pub fn respond(
    call: Call<'_>,
    result: Result<Response, Error>,
    render_error: impl FnOnce(&Error) -> (Response, Option<String>),
) -> Response {
    let metadata = call.metadata();
    let mut response = match result {
        Ok(response) => {
            call.finish(Outcome::Ok);
            response
        }
        Err(error) => {
            let (response, body) = render_error(&error);
            call.finish(Outcome::Failed {
                error: &error,
                body,
            });
            response
        }
    };
    let headers = response.headers_mut();
    for (key, value) in metadata {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(key, v);
        }
    }
    response
}

/// A failed OIP call's response: the status and `{"error": ...}`.
pub fn oip_error(error: &Error) -> (Response, Option<String>) {
    (oip_response(error), None)
}
