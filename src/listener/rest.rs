//! The REST listener: admits connections, serves each with hyper's HTTP/1
//! server under its [`ConnClock`] timer, and on shutdown closes idle and
//! half-sent connections at once while requests in flight finish.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::accept::{Admission, Admitted};
use super::body::{body_late_response, TimedBody};
use super::clock::{ConnClock, Due};
use super::{until_stopped, ConnectionLimits};

/// Serves `router` on `listener` until `stopped` turns true, then stops
/// accepting, closes connections with no request in flight, and returns
/// once the requests in flight are answered.
pub async fn serve_rest(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stopped: watch::Receiver<bool>,
) -> io::Result<()> {
    // Every connection task holds a sender; `recv` ends when all are gone.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut door = Admission::new("rest", limits.max_connections);
    loop {
        tokio::select! {
            admitted = door.accept(&listener) => {
                let task = connection(admitted, router.clone(), limits, stopped.clone(), open.clone());
                tokio::spawn(task);
            }
            _ = until_stopped(stopped.clone()) => break,
        }
    }
    drop(listener);
    drop(open);
    let _ = all_closed.recv().await;
    Ok(())
}

/// Serves one connection until the client closes it, its timer closes it,
/// or shutdown finds it with no request in flight.
async fn connection(
    admitted: Admitted,
    router: Router,
    limits: ConnectionLimits,
    stopped: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
) {
    let Admitted {
        stream,
        peer,
        permit: _permit,
    } = admitted;
    let clock = Arc::new(ConnClock::new(Instant::now()));
    let io = TokioIo::new(Watched {
        inner: stream,
        clock: Arc::clone(&clock),
    });
    let service_clock = Arc::clone(&clock);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let clock = Arc::clone(&service_clock);
        clock.on_request(!request.body().is_end_stream(), Instant::now());
        let request = request.map(|body| Body::new(TimedBody::new(body, Arc::clone(&clock))));
        let answer = router.clone().oneshot(request);
        async move {
            let response = answer.await;
            clock.on_answer(Instant::now());
            let response: Response<Body> = match response {
                Ok(_) if clock.body_timed_out() => {
                    metrics::counter!("podium_connection_timeouts_total", "listener" => "rest", "kind" => "body")
                        .increment(1);
                    body_late_response(limits.body_read_timeout)
                }
                Ok(response) => response,
                Err(never) => match never {},
            };
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    // After the signal hyper closes a kept-alive connection at once when no
    // request is in progress (idle, or a head only partly sent), else as
    // soon as the response in progress is written.
    let mut draining = false;
    let mut due = clock.check(Instant::now(), &limits);
    loop {
        let wake = match due {
            Due::Wait(at) | Due::BodyLate(at) => at,
            Due::Close(expired) => {
                metrics::counter!("podium_connection_timeouts_total", "listener" => "rest", "kind" => expired.label())
                    .increment(1);
                tracing::debug!(
                    "closing the connection from {peer}: {} timeout",
                    expired.label()
                );
                return;
            }
        };
        tokio::select! {
            done = conn.as_mut() => {
                if let Err(e) = done {
                    tracing::debug!("connection from {peer} ended: {e}");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake) => {}
            _ = until_stopped(stopped.clone()), if !draining => {
                // hyper treats a connection that never had a request as
                // busy, and would wait for its head: close it here.
                if clock.untouched() {
                    return;
                }
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
        due = clock.check(Instant::now(), &limits);
        if let Due::BodyLate(_) = due {
            clock.fail_body();
        }
    }
}

/// The connection's socket, telling its clock when bytes arrive.
struct Watched {
    inner: TcpStream,
    clock: Arc<ConnClock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before && self.clock.awaiting_head() {
            self.clock.on_head_bytes(Instant::now());
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
