//! Connection hygiene for both listeners: who may connect, for how long a
//! connection may sit idle or half-sent, and how shutdown treats it.
//!
//! The REST listener drives each connection with hyper's HTTP/1 server and
//! watches it with one timer per connection ([`rest`], [`clock`]); the gRPC
//! listener hands tonic connections that must send the HTTP/2 preface in
//! time ([`grpc`]). Both admit at most `max_connections` at once and log
//! accept failures rate-limited ([`accept`]). With `--tls-cert` both speak
//! TLS only ([`tls`]); the handshake counts against the header timeout.
//! Nothing here runs per request beyond a few relaxed atomic updates on the
//! connection's own state.

mod accept;
mod body;
mod clock;
mod grpc;
mod observed;
mod rest;
mod tls;
mod transport;

use std::time::Duration;

pub use body::BodyLate;
pub use grpc::{grpc_incoming, grpc_server, GrpcConnection};
pub use rest::serve_rest;
pub use tls::{ClientCert, Tls, TlsAcceptor, TlsOptions, DEFAULT_RELOAD_INTERVAL};

/// The limits and timeouts of both listeners; `podium serve` fills them
/// from flags (see the README's "Security and limits").
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionLimits {
    /// A client must finish the TLS handshake (with TLS) and send a
    /// complete request head (REST) or the HTTP/2 preface (gRPC) within
    /// this long of connecting, and a request head
    /// within this long of its first byte on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// A REST keep-alive connection with no request in progress is closed
    /// after this long without a byte from the client.
    pub idle_timeout: Duration,
    /// A REST request body must have arrived in full within this long of its
    /// head; else the request is answered 408 and the connection closed.
    pub body_read_timeout: Duration,
    /// Open connections per listener; more are closed as soon as accepted.
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams (calls) per gRPC connection.
    pub grpc_max_concurrent_streams: u32,
    /// How often an HTTP/2 ping checks that a gRPC client is still there.
    pub grpc_keepalive_interval: Duration,
    /// A gRPC connection whose ping is not answered within this long is closed.
    pub grpc_keepalive_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            body_read_timeout: Duration::from_secs(60),
            max_connections: 10_000,
            grpc_max_concurrent_streams: 256,
            grpc_keepalive_interval: Duration::from_secs(60),
            grpc_keepalive_timeout: Duration::from_secs(20),
        }
    }
}

/// Resolves once `stopped` says so (or its sender is gone).
async fn until_stopped(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}
