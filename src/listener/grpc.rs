//! The gRPC listener's connections: admitted under the connection limit,
//! handed to tonic once their TLS handshake (when TLS is on) is done, and
//! closed when the handshake and the HTTP/2 preface do not arrive within
//! the header timeout or shutdown comes first. HTTP/2 limits (streams,
//! pings) are set on tonic's server by [`grpc_server`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;

use futures_util::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::accept::{Admission, Admitted};
use super::observed::{Observed, ReadWatch};
use super::tls::TlsAcceptor;
use super::transport::Transport;
use super::{until_stopped, ConnectionLimits};

/// Bytes of the HTTP/2 client preface (`PRI * HTTP/2.0…`).
const PREFACE_LEN: usize = 24;

/// tonic's server with the HTTP/2 limits of `limits`.
pub fn grpc_server(limits: &ConnectionLimits) -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .max_concurrent_streams(limits.grpc_max_concurrent_streams.max(1))
        .http2_keepalive_interval(Some(limits.grpc_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.grpc_keepalive_timeout))
}

/// The connections `listener` admits (over TLS when `tls` is given), for
/// tonic's `serve_with_incoming_shutdown`. Handshakes run side by side, so
/// a slow client does not hold up the next; connections whose handshake
/// fails or times out are left out.
pub fn grpc_incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    stopped: watch::Receiver<bool>,
    tls: Option<Arc<TlsAcceptor>>,
) -> impl Stream<Item = io::Result<GrpcConnection>> + Send + 'static {
    let door = Admission::new("grpc", limits.max_connections);
    let admitted =
        futures_util::stream::unfold((listener, door), |(listener, mut door)| async move {
            let admitted = door.accept(&listener).await;
            Some((admitted, (listener, door)))
        });
    admitted
        .map(move |admitted| connection(admitted, limits, stopped.clone(), tls.clone()))
        // Every connection in here holds a place, so this never limits.
        .buffer_unordered(limits.max_connections.max(1))
        .filter_map(|connection| std::future::ready(connection.map(Ok)))
}

/// Ends (or is pending forever once the preface has arrived).
type PrefaceDeadline = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One admitted gRPC connection: its socket, watched until the HTTP/2
/// preface has arrived.
pub type GrpcConnection = Observed<Preface>;

/// A gRPC connection's place under the limit and, until the preface has
/// arrived, the deadline for it.
pub struct Preface {
    _permit: OwnedSemaphorePermit,
    deadline: Option<PrefaceDeadline>,
    received: usize,
}

async fn connection(
    admitted: Admitted,
    limits: ConnectionLimits,
    stopped: watch::Receiver<bool>,
    tls: Option<Arc<TlsAcceptor>>,
) -> Option<GrpcConnection> {
    let Admitted {
        stream,
        peer,
        permit,
    } = admitted;
    let deadline = Instant::now() + limits.header_read_timeout;
    let transport = match tls {
        None => Transport::Plain(stream),
        // gRPC asks for no client certificate: only the admin API (REST) uses one.
        Some(tls) => tls.accept(stream, peer, deadline, stopped.clone()).await?.0,
    };
    let preface_deadline = Box::pin(async move {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                metrics::counter!("podium_connection_timeouts_total", "listener" => "grpc", "kind" => "header")
                    .increment(1);
            }
            _ = until_stopped(stopped) => {}
        }
    });
    Some(Observed {
        inner: transport,
        watch: Preface {
            _permit: permit,
            deadline: Some(preface_deadline),
            received: 0,
        },
    })
}

impl Connected for GrpcConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.tcp().connect_info()
    }
}

impl ReadWatch for Preface {
    fn before_read(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        let deadline = self.deadline.as_mut()?;
        if deadline.as_mut().poll(cx).is_ready() {
            self.deadline = None;
            return Some(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface within the header read timeout (or before shutdown)",
            ));
        }
        None
    }

    fn after_read(&mut self, bytes: usize) {
        if self.deadline.is_some() {
            self.received += bytes;
            if self.received >= PREFACE_LEN {
                self.deadline = None;
            }
        }
    }
}
