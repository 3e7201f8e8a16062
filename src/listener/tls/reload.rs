//! The server certificate both listeners present, and the task that
//! replaces it when its files change.
//!
//! The files are read every poll interval and compared by content with the
//! last pair seen. A changed pair that loads is used for new connections
//! (connections already open keep the certificate they started with); a
//! pair that does not load leaves the current certificate in place and is
//! logged once, and the next change is tried again. So a rotation that
//! replaces the two files one after the other converges within a poll of
//! its last write.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::time::MissedTickBehavior;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::files::{CertFiles, ServerCert};

/// The certificate presented to new connections; replaced atomically.
#[derive(Debug)]
pub(crate) struct CertStore {
    current: ArcSwap<CertifiedKey>,
}

impl CertStore {
    pub fn new(first: Arc<CertifiedKey>) -> CertStore {
        CertStore {
            current: ArcSwap::new(first),
        }
    }

    fn replace(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// What one look at the files found.
pub(crate) enum Outcome {
    /// The same bytes as last time (loaded or refused then).
    Unchanged,
    /// A new pair that loads.
    Loaded(ServerCert),
    /// A new pair that does not load, and why.
    Refused(anyhow::Error),
}

/// Remembers the last pair of files seen, so each change is acted on (and
/// logged) once.
pub(crate) struct Follower {
    files: CertFiles,
    provider: Arc<CryptoProvider>,
    seen: [u8; 32],
}

impl Follower {
    /// Follows `files`, whose current content (`seen`) is already loaded.
    pub fn new(files: CertFiles, provider: Arc<CryptoProvider>, seen: [u8; 32]) -> Follower {
        Follower {
            files,
            provider,
            seen,
        }
    }

    /// Reads the files (blocking) and says what changed.
    pub fn look(&mut self) -> Outcome {
        let bytes = self.files.read();
        let fingerprint = bytes.fingerprint();
        if fingerprint == self.seen {
            return Outcome::Unchanged;
        }
        self.seen = fingerprint;
        match bytes.parse(&self.files, &self.provider) {
            Ok(cert) => Outcome::Loaded(cert),
            Err(e) => Outcome::Refused(e),
        }
    }
}

/// Looks at the files every `every` and installs each new pair that loads
/// into `store`, until aborted.
pub(crate) async fn follow(store: Arc<CertStore>, mut follower: Follower, every: Duration) {
    let files = follower.files.clone();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let looked = tokio::task::spawn_blocking(move || {
            let outcome = follower.look();
            (follower, outcome)
        })
        .await;
        let Ok((looked_by, outcome)) = looked else {
            tracing::error!("the TLS certificate watcher stopped: reading the files failed unexpectedly; restart to pick up new certificates");
            return;
        };
        follower = looked_by;
        match outcome {
            Outcome::Unchanged => {}
            Outcome::Loaded(cert) => {
                store.replace(Arc::clone(&cert.key));
                metrics::counter!("podium_tls_reloads_total").increment(1);
                if cert.expired() {
                    tracing::warn!(
                        "TLS certificate reloaded from {} ({}); new connections get it",
                        files.cert.display(),
                        cert.describe()
                    );
                } else {
                    tracing::info!(
                        "TLS certificate reloaded from {} ({}); new connections get it",
                        files.cert.display(),
                        cert.describe()
                    );
                }
            }
            Outcome::Refused(e) => {
                metrics::counter!("podium_tls_reload_errors_total").increment(1);
                tracing::warn!(
                    "TLS certificate not reloaded, still serving the previous one: {e:#}; tried again when {} or {} changes",
                    files.cert.display(),
                    files.key.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn provider() -> Arc<CryptoProvider> {
        Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
    }

    /// A self-signed certificate for `cn` and its key, as PEM.
    fn pair(cn: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(path: &Path, text: &str) {
        std::fs::write(path, text).unwrap();
    }

    fn loaded_cn(outcome: Outcome) -> String {
        match outcome {
            Outcome::Loaded(cert) => cert.common_name.unwrap(),
            Outcome::Unchanged => panic!("expected a new certificate, found no change"),
            Outcome::Refused(e) => panic!("expected a new certificate, refused: {e:#}"),
        }
    }

    #[test]
    fn a_rotation_of_both_files_one_at_a_time_converges() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let (cert1, key1) = pair("first");
        write(&files.cert, &cert1);
        write(&files.key, &key1);
        let bytes = files.read();
        bytes.parse(&files, &provider()).unwrap();
        let mut follower = Follower::new(files.clone(), provider(), bytes.fingerprint());
        assert!(matches!(follower.look(), Outcome::Unchanged));

        // The certificate is replaced first: the pair does not match.
        let (cert2, key2) = pair("second");
        write(&files.cert, &cert2);
        match follower.look() {
            Outcome::Refused(e) => assert!(
                e.to_string().contains("does not belong to the certificate"),
                "{e:#}"
            ),
            _ => panic!("a mismatched pair must be refused"),
        }
        // Refused once: not tried (nor logged) again until a file changes.
        assert!(matches!(follower.look(), Outcome::Unchanged));
        // Then the key: the new pair loads.
        write(&files.key, &key2);
        assert_eq!(loaded_cn(follower.look()), "second");
        assert!(matches!(follower.look(), Outcome::Unchanged));
    }

    #[test]
    fn missing_and_garbage_files_are_refused_then_retried() {
        let dir = tempfile::tempdir().unwrap();
        let files = CertFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        };
        let (cert1, key1) = pair("first");
        write(&files.cert, &cert1);
        write(&files.key, &key1);
        let mut follower = Follower::new(files.clone(), provider(), files.read().fingerprint());

        std::fs::remove_file(&files.key).unwrap();
        match follower.look() {
            Outcome::Refused(e) => assert!(e.to_string().contains("(--tls-key)"), "{e:#}"),
            _ => panic!("a missing key must be refused"),
        }
        write(&files.key, "not a key");
        match follower.look() {
            Outcome::Refused(e) => assert!(e.to_string().contains("holds no private key"), "{e:#}"),
            _ => panic!("a key file without a key must be refused"),
        }
        // The old pair comes back (a rename finished): loaded again.
        write(&files.key, &key1);
        assert_eq!(loaded_cn(follower.look()), "first");
    }
}
