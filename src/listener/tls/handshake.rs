//! One listener's TLS handshakes: bounded by the connection's header
//! deadline and by shutdown, failures counted and logged rate-limited, and
//! the verified client certificate (if any) handed on to requests.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::rustls;
use tokio_rustls::rustls::ServerConfig;

use super::certificate;
use crate::listener::accept::{Throttled, LOG_EVERY};
use crate::listener::transport::Transport;
use crate::listener::until_stopped;

/// A request extension: the client of this request's connection presented
/// a certificate that `--admin-client-ca` verified during the handshake.
/// Requests on connections without one do not carry it.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// The certificate's subject CN, for logs.
    pub common_name: Option<Arc<str>>,
}

/// One listener's side of TLS: its rustls configuration (whose certificate
/// follows the files, see `reload`) and its log of failed handshakes.
pub struct TlsAcceptor {
    listener: &'static str,
    acceptor: tokio_rustls::TlsAcceptor,
    failures: Mutex<Throttled>,
}

impl TlsAcceptor {
    pub(crate) fn new(listener: &'static str, config: Arc<ServerConfig>) -> TlsAcceptor {
        TlsAcceptor {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            failures: Mutex::new(Throttled::new(LOG_EVERY)),
        }
    }

    /// Completes the handshake on `stream`: the TLS connection and its
    /// verified client certificate, or None when the handshake failed, the
    /// client left, `deadline` passed or shutdown came first (the stream is
    /// then closed).
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        deadline: Instant,
        stopped: watch::Receiver<bool>,
    ) -> Option<(Transport, Option<ClientCert>)> {
        tokio::select! {
            done = self.acceptor.accept(stream) => match done {
                Ok(tls) => {
                    let client_cert = tls.get_ref().1.peer_certificates().and_then(|chain| {
                        chain.first().map(|leaf| ClientCert {
                            common_name: certificate::common_name(leaf).map(Arc::from),
                        })
                    });
                    Some((Transport::Tls(Box::new(tls)), client_cert))
                }
                Err(e) => {
                    self.failed(peer, &e);
                    None
                }
            },
            _ = tokio::time::sleep_until(deadline) => {
                metrics::counter!("podium_connection_timeouts_total", "listener" => self.listener, "kind" => "header")
                    .increment(1);
                tracing::debug!("closing the connection from {peer}: no TLS handshake within the header read timeout");
                None
            }
            _ = until_stopped(stopped) => None,
        }
    }

    /// Counts and logs (at most once per [`LOG_EVERY`]) a failed handshake;
    /// a client that closes the connection before finishing one (a TCP
    /// health check, a port scan) is not counted.
    fn failed(&self, peer: SocketAddr, e: &io::Error) {
        if matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::BrokenPipe
        ) {
            tracing::debug!("{peer} left during the TLS handshake: {e}");
            return;
        }
        metrics::counter!("podium_tls_handshake_failures_total", "listener" => self.listener)
            .increment(1);
        let logged = self
            .failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .note(Instant::now());
        if let Some(more) = logged {
            tracing::warn!(
                "{} listener: TLS handshake with {peer} failed: {e}{} ({more} more failures since the last message)",
                self.listener,
                hint(e)
            );
        }
    }
}

/// What a failure usually means, when that is clear.
fn hint(e: &io::Error) -> &'static str {
    let Some(tls) = e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) else {
        return "";
    };
    match tls {
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
            " (the client does not speak TLS: plain HTTP or gRPC to a TLS port?)"
        }
        rustls::Error::AlertReceived(_) => " (the client refused the handshake, often because it does not trust the server's certificate)",
        rustls::Error::NoCertificatesPresented
        | rustls::Error::InvalidCertificate(_) => {
            " (the client certificate was refused: it must be signed by --admin-client-ca)"
        }
        rustls::Error::NoApplicationProtocol => {
            " (no common ALPN protocol: REST speaks http/1.1, gRPC h2)"
        }
        _ => "",
    }
}
