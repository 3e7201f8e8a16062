//! The one place a core [`Error`] becomes what each protocol reports: an
//! HTTP status with an OIP body `{"error": "..."}`, a gRPC code, an MLflow
//! `error_code`, and the inference table's `status_code`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tonic::Code;

use crate::error::Error;

/// How every protocol reports one kind of error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// The REST status, also the table's `status_code` for every protocol.
    pub http: StatusCode,
    pub grpc: Code,
    /// MLflow's `error_code` on `/invocations`.
    pub mlflow: &'static str,
}

/// The statuses of a core error, for every protocol at once.
pub fn classify(e: &Error) -> Classified {
    let (http, grpc, mlflow) = match e {
        Error::InvalidInput(_) => (
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            "BAD_REQUEST",
        ),
        Error::NotFound(_) => (
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "RESOURCE_DOES_NOT_EXIST",
        ),
        Error::Forbidden(_) => (
            StatusCode::FORBIDDEN,
            Code::PermissionDenied,
            "PERMISSION_DENIED",
        ),
        Error::Unauthenticated(_) => (
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "UNAUTHENTICATED",
        ),
        Error::RateLimited { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            Code::ResourceExhausted,
            "REQUEST_LIMIT_EXCEEDED",
        ),
        Error::PayloadTooLarge(_) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::ResourceExhausted,
            "REQUEST_LIMIT_EXCEEDED",
        ),
        Error::Unsupported(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidArgument,
            "BAD_REQUEST",
        ),
        Error::Refused(_) => (
            StatusCode::CONFLICT,
            Code::FailedPrecondition,
            "INVALID_STATE",
        ),
        Error::Overloaded(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Code::ResourceExhausted,
            "TEMPORARILY_UNAVAILABLE",
        ),
        Error::Unavailable(_) | Error::Loading { .. } => (
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Unavailable,
            "TEMPORARILY_UNAVAILABLE",
        ),
        Error::DeadlineExceeded(_) => (
            StatusCode::GATEWAY_TIMEOUT,
            Code::DeadlineExceeded,
            "DEADLINE_EXCEEDED",
        ),
        Error::RequestTimeout(_) => (
            StatusCode::REQUEST_TIMEOUT,
            Code::DeadlineExceeded,
            "DEADLINE_EXCEEDED",
        ),
        Error::Registry(_) => (
            StatusCode::BAD_GATEWAY,
            Code::Unavailable,
            "TEMPORARILY_UNAVAILABLE",
        ),
        Error::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            "INTERNAL_ERROR",
        ),
    };
    Classified { http, grpc, mlflow }
}

/// The HTTP status of a core error.
pub fn http_status(e: &Error) -> StatusCode {
    classify(e).http
}

/// A core error as a gRPC status.
pub fn grpc_status(e: &Error) -> tonic::Status {
    tonic::Status::new(classify(e).grpc, e.to_string())
}

/// An [`Error`] on its way to an HTTP client.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        http_status(&self.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        oip_response(&self.0)
    }
}

/// A core error as an HTTP response: its status and the OIP body
/// `{"error": "..."}`, with `Retry-After` on overload.
pub fn oip_response(e: &Error) -> Response {
    {
        let status = http_status(e);
        // A missed deadline is the client's choice and is counted in
        // podium_deadline_exceeded_total; logging each one would flood the log.
        if status.is_server_error() && !matches!(e, Error::DeadlineExceeded(_)) {
            tracing::warn!(%status, "{e}");
        } else {
            tracing::debug!(%status, "{e}");
        }
        let body = serde_json::json!({ "error": e.to_string() });
        let mut response = (status, axum::Json(body)).into_response();
        if matches!(e, Error::Overloaded(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        auth_headers(e, response.headers_mut());
        response
    }
}

/// The headers a refused call needs to be retried right: `WWW-Authenticate`
/// on 401, `Retry-After` on 429 and on a version still loading on demand.
pub fn auth_headers(e: &Error, headers: &mut axum::http::HeaderMap) {
    match e {
        Error::Unauthenticated(_) => {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Error::RateLimited {
            retry_after_secs, ..
        }
        | Error::Loading {
            retry_after_secs, ..
        } => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overload_is_503_and_resource_exhausted() {
        let c = classify(&Error::Overloaded("queue full".into()));
        assert_eq!(c.http, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(c.grpc, Code::ResourceExhausted);
        assert_eq!(c.mlflow, "TEMPORARILY_UNAVAILABLE");
        let c = classify(&Error::NotFound("no model".into()));
        assert_eq!((c.http, c.grpc), (StatusCode::NOT_FOUND, Code::NotFound));
        let c = classify(&Error::RequestTimeout("late body".into()));
        assert_eq!(c.http, StatusCode::REQUEST_TIMEOUT);
    }

    #[test]
    fn refused_keys_say_how_to_retry() {
        let r = oip_response(&Error::Unauthenticated("no key".into()));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let limited = Error::RateLimited {
            message: "over".into(),
            retry_after_secs: 3,
        };
        assert_eq!(classify(&limited).grpc, Code::ResourceExhausted);
        let r = oip_response(&limited);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "3");
    }
}
