//! A REST request body that fails once its connection's timer says it is
//! late, and the 408 answer such a request gets.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use super::clock::ConnClock;

/// The request body as hyper reads it, failed by [`ConnClock::fail_body`].
pub(crate) struct TimedBody {
    inner: Incoming,
    clock: Arc<ConnClock>,
    /// `--body-read-timeout-secs`, named in the error.
    limit: Duration,
    done: bool,
}

/// The error a late body ends with (the request is answered 408 with this
/// text); a handler that reads the body sees it in the error's source chain.
#[derive(Debug, thiserror::Error)]
#[error(
    "the request body did not arrive within {} s of its headers; send it faster or raise --body-read-timeout-secs / PODIUM_BODY_READ_TIMEOUT_SECS",
    .limit.as_secs_f64()
)]
pub struct BodyLate {
    /// The body-read timeout that passed.
    pub limit: Duration,
}

impl TimedBody {
    pub(crate) fn new(inner: Incoming, clock: Arc<ConnClock>, limit: Duration) -> TimedBody {
        TimedBody {
            inner,
            clock,
            limit,
            done: false,
        }
    }

    fn finish(&mut self) {
        if !self.done {
            self.done = true;
            self.clock.on_body_done();
        }
    }
}

impl HttpBody for TimedBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.clock.body_timed_out() {
            self.finish();
            return Poll::Ready(Some(Err(Box::new(BodyLate { limit: self.limit }))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Pending => {
                self.clock.register_body_reader(cx.waker());
                // The timer may have fired between the check and the registration.
                if self.clock.body_timed_out() {
                    self.finish();
                    return Poll::Ready(Some(Err(Box::new(BodyLate { limit: self.limit }))));
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Some(Err(e))) => {
                self.finish();
                Poll::Ready(Some(Err(Box::new(e))))
            }
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TimedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

/// 408 with the OIP error body, closing the connection (the rest of the
/// late body may still be on its way).
pub(crate) fn body_late_response(limit: Duration) -> Response<Body> {
    let message = serde_json::json!({ "error": BodyLate { limit }.to_string() });
    let mut response = Response::new(Body::from(message.to_string()));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}
