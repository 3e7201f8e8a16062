//! The gRPC listener's connections: admitted under the connection limit,
//! and closed when the HTTP/2 preface does not arrive within the header
//! timeout or shutdown comes first. HTTP/2 limits (streams, pings) are set
//! on tonic's server by [`grpc_server`].

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit};
use tonic::transport::server::{Connected, TcpConnectInfo};

use super::accept::{Admission, Admitted};
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

/// The connections `listener` admits, for tonic's `serve_with_incoming_shutdown`.
pub fn grpc_incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
    stopped: watch::Receiver<bool>,
) -> impl Stream<Item = io::Result<GrpcConnection>> + Send + 'static {
    let door = Admission::new("grpc", limits.max_connections);
    futures_util::stream::unfold(
        (listener, door, stopped),
        move |(listener, mut door, stopped)| async move {
            let admitted = door.accept(&listener).await;
            let conn = GrpcConnection::new(admitted, limits, stopped.clone());
            Some((Ok(conn), (listener, door, stopped)))
        },
    )
}

/// Ends (or is pending forever once the preface has arrived).
type PrefaceDeadline = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One admitted gRPC connection: its socket, its place under the limit,
/// and until the preface has arrived, the deadline for it.
pub struct GrpcConnection {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    preface: Option<PrefaceDeadline>,
    received: usize,
}

impl GrpcConnection {
    fn new(
        admitted: Admitted,
        limits: ConnectionLimits,
        stopped: watch::Receiver<bool>,
    ) -> GrpcConnection {
        let timeout = limits.header_read_timeout;
        let deadline = Box::pin(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => {
                    metrics::counter!("podium_connection_timeouts_total", "listener" => "grpc", "kind" => "header")
                        .increment(1);
                }
                _ = until_stopped(stopped) => {}
            }
        });
        GrpcConnection {
            inner: admitted.stream,
            _permit: admitted.permit,
            preface: Some(deadline),
            received: 0,
        }
    }
}

impl Connected for GrpcConnection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for GrpcConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let Some(deadline) = self.preface.as_mut() else {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        };
        if deadline.as_mut().poll(cx).is_ready() {
            self.preface = None;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no HTTP/2 preface within the header read timeout (or before shutdown)",
            )));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.received += buf.filled().len() - before;
        if self.received >= PREFACE_LEN {
            self.preface = None;
        }
        read
    }
}

impl AsyncWrite for GrpcConnection {
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
