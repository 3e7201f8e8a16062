//! TLS on both listeners (`--tls-cert`, `--tls-key`): rustls with the ring
//! provider, TLS 1.2 and 1.3, ALPN `http/1.1` on REST and `h2` on gRPC.
//!
//! The certificate is loaded at start-up (any problem stops it, naming the
//! file) and then followed: a changed pair of files that loads is used for
//! new connections ([`reload`]). With `--admin-client-ca` the REST listener
//! asks for a client certificate but does not require one: prediction
//! calls work without it, and a verified one reaches each request as a
//! [`ClientCert`] extension for the admin API to require.

mod certificate;
mod files;
mod handshake;
mod reload;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{version, ServerConfig};

pub use handshake::{ClientCert, TlsAcceptor};

use files::CertFiles;
use reload::{CertStore, Follower};

/// What `podium serve` needs for TLS; the CLI fills it from flags.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsOptions {
    /// The server's certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA (PEM) whose client certificates the admin API requires.
    pub admin_client_ca: Option<PathBuf>,
    /// How often the certificate and key files are checked for changes.
    pub reload_interval: Duration,
}

/// The default of `--tls-reload-secs`.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// Both listeners' TLS, loaded and checked; [`Tls::follow`] keeps the
/// certificate in step with its files.
pub struct Tls {
    rest: Arc<TlsAcceptor>,
    grpc: Arc<TlsAcceptor>,
    store: Arc<CertStore>,
    follower: Option<Follower>,
    reload_interval: Duration,
    verifies_client_certs: bool,
    described: String,
    expired: bool,
}

impl Tls {
    /// Reads and checks the files (blocking); an error names the file, its
    /// flag and the problem.
    pub fn load(options: &TlsOptions) -> anyhow::Result<Tls> {
        let provider = Arc::new(ring::default_provider());
        let files = CertFiles {
            cert: options.cert.clone(),
            key: options.key.clone(),
        };
        let bytes = files.read();
        let first = bytes.parse(&files, &provider)?;
        let store = Arc::new(CertStore::new(Arc::clone(&first.key)));
        let client_verifier: Option<Arc<dyn ClientCertVerifier>> = match &options.admin_client_ca {
            None => None,
            Some(path) => {
                let roots = files::read_client_ca(path)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&provider),
                )
                .allow_unauthenticated()
                .build()
                .with_context(|| format!("{} (--admin-client-ca)", path.display()))?;
                Some(verifier)
            }
        };
        let verifies_client_certs = client_verifier.is_some();
        let rest = server_config(&provider, &store, client_verifier, b"http/1.1")?;
        let grpc = server_config(&provider, &store, None, b"h2")?;
        Ok(Tls {
            rest: Arc::new(TlsAcceptor::new("rest", rest)),
            grpc: Arc::new(TlsAcceptor::new("grpc", grpc)),
            follower: Some(Follower::new(files, provider, bytes.fingerprint())),
            store,
            reload_interval: options.reload_interval,
            verifies_client_certs,
            described: first.describe(),
            expired: first.expired(),
        })
    }

    /// The REST listener's handshakes.
    pub fn rest(&self) -> Arc<TlsAcceptor> {
        Arc::clone(&self.rest)
    }

    /// The gRPC listener's handshakes.
    pub fn grpc(&self) -> Arc<TlsAcceptor> {
        Arc::clone(&self.grpc)
    }

    /// Whether REST connections present client certificates checked
    /// against `--admin-client-ca`.
    pub fn verifies_client_certs(&self) -> bool {
        self.verifies_client_certs
    }

    /// The certificate loaded at start-up, for the log: `CN=…, valid until …`.
    pub fn describe(&self) -> &str {
        &self.described
    }

    /// Whether the certificate loaded at start-up has expired.
    pub fn expired(&self) -> bool {
        self.expired
    }

    /// Starts the task that reloads the certificate when its files change
    /// (on the current tokio runtime); it runs until the handle is aborted.
    /// Only the first call starts one.
    pub fn follow(&mut self) -> Option<JoinHandle<()>> {
        let follower = self.follower.take()?;
        Some(tokio::spawn(reload::follow(
            Arc::clone(&self.store),
            follower,
            self.reload_interval,
        )))
    }
}

/// A listener's rustls configuration: TLS 1.3 and 1.2, the certificate
/// from `store`, client certificates as `verifier` asks, one ALPN protocol.
fn server_config(
    provider: &Arc<CryptoProvider>,
    store: &Arc<CertStore>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    alpn: &[u8],
) -> anyhow::Result<Arc<ServerConfig>> {
    let builder = ServerConfig::builder_with_provider(Arc::clone(provider))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])
        .context("the TLS provider does not support TLS 1.2 and 1.3")?;
    let builder = match verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::clone(store) as _);
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}
