//! The REST listener: admits connections, completes the TLS handshake when
//! TLS is on, serves each with hyper's HTTP/1 server under its
//! [`ConnClock`] timer, and on shutdown closes idle and half-sent
//! connections at once while requests in flight finish.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::{Body as _, Incoming};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tower::ServiceExt;

use super::accept::{Admission, Admitted};
use super::body::{body_late_response, TimedBody};
use super::clock::{ConnClock, Due};
use super::observed::{Observed, ReadWatch};
use super::tls::TlsAcceptor;
use super::transport::Transport;
use super::{until_stopped, ConnectionLimits};

/// Serves `router` on `listener` (over TLS when `tls` is given) until
/// `stopped` turns true, then stops accepting, closes connections with no
/// request in flight, and returns once the requests in flight are answered.
pub async fn serve_rest(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stopped: watch::Receiver<bool>,
    tls: Option<Arc<TlsAcceptor>>,
) -> io::Result<()> {
    // Every connection task holds a sender; `recv` ends when all are gone.
    let (open, mut all_closed) = mpsc::channel::<()>(1);
    let mut door = Admission::new("rest", limits.max_connections);
    loop {
        tokio::select! {
            admitted = door.accept(&listener) => {
                let task = connection(admitted, router.clone(), limits, stopped.clone(), open.clone(), tls.clone());
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
    tls: Option<Arc<TlsAcceptor>>,
) {
    let Admitted {
        stream,
        peer,
        permit: _permit,
    } = admitted;
    // The header timeout runs from here: a TLS handshake is part of it.
    let opened = Instant::now();
    let (transport, client_cert) = match tls {
        None => (Transport::Plain(stream), None),
        Some(tls) => {
            let deadline = opened + limits.header_read_timeout;
            match tls.accept(stream, peer, deadline, stopped.clone()).await {
                Some(accepted) => accepted,
                None => return,
            }
        }
    };
    let clock = Arc::new(ConnClock::new(opened));
    let io = TokioIo::new(Observed {
        inner: transport,
        watch: HeadWatch(Arc::clone(&clock)),
    });
    let service_clock = Arc::clone(&clock);
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        if let Some(cert) = &client_cert {
            request.extensions_mut().insert(cert.clone());
        }
        let clock = Arc::clone(&service_clock);
        clock.on_request(!request.body().is_end_stream(), Instant::now());
        let mut request = request.map(|body| {
            Body::new(TimedBody::new(
                body,
                Arc::clone(&clock),
                limits.body_read_timeout,
            ))
        });
        // The client's address, for the admin audit log.
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
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

/// Tells a connection's clock when the bytes of a request head arrive.
struct HeadWatch(Arc<ConnClock>);

impl ReadWatch for HeadWatch {
    fn before_read(&mut self, _: &mut std::task::Context<'_>) -> Option<io::Error> {
        None
    }

    fn after_read(&mut self, bytes: usize) {
        if bytes > 0 && self.0.awaiting_head() {
            self.0.on_head_bytes(Instant::now());
        }
    }
}
