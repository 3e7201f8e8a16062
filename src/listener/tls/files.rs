//! Reading the PEM files of `--tls-cert`, `--tls-key` and
//! `--admin-client-ca`, with errors that name the file, its flag and the
//! problem.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{anyhow, bail};
use sha2::{Digest, Sha256};
use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::RootCertStore;

use super::certificate;

/// Larger files are refused unread: a certificate chain or key is a few KiB.
const MAX_PEM_BYTES: u64 = 1 << 20;

/// The paths of the server certificate chain and its private key.
#[derive(Debug, Clone)]
pub(crate) struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Both files' bytes as read at one moment, or why one could not be read.
pub(crate) struct PairBytes {
    cert: Result<Vec<u8>, String>,
    key: Result<Vec<u8>, String>,
}

/// A certificate chain with its private key, ready to present.
pub(crate) struct ServerCert {
    pub key: Arc<CertifiedKey>,
    /// The end-entity certificate's subject CN, for logs.
    pub common_name: Option<String>,
    pub not_after: SystemTime,
}

impl ServerCert {
    /// Whether the certificate's validity has ended (clients refuse it).
    pub fn expired(&self) -> bool {
        self.not_after <= SystemTime::now()
    }

    /// "CN=…, valid until …" for logs.
    pub fn describe(&self) -> String {
        let mut text = match &self.common_name {
            Some(cn) => format!("CN={cn}"),
            None => "no CN".to_string(),
        };
        let _ = write!(
            text,
            ", valid until {}",
            certificate::format_time(self.not_after)
        );
        if self.expired() {
            text.push_str(" (EXPIRED: clients will refuse it)");
        }
        text
    }
}

impl CertFiles {
    /// Reads both files (blocking).
    pub fn read(&self) -> PairBytes {
        PairBytes {
            cert: read_pem_file(&self.cert, "--tls-cert"),
            key: read_pem_file(&self.key, "--tls-key"),
        }
    }
}

impl PairBytes {
    /// A digest of what was read (bytes, or the read error), so a poll can
    /// tell whether anything changed since the last one.
    pub fn fingerprint(&self) -> [u8; 32] {
        let mut hash = Sha256::new();
        for part in [&self.cert, &self.key] {
            match part {
                Ok(bytes) => {
                    hash.update([0u8]);
                    hash.update((bytes.len() as u64).to_le_bytes());
                    hash.update(bytes);
                }
                Err(why) => {
                    hash.update([1u8]);
                    hash.update((why.len() as u64).to_le_bytes());
                    hash.update(why.as_bytes());
                }
            }
        }
        hash.finalize().into()
    }

    /// The certificate chain and key, checked to belong together.
    pub fn parse(
        &self,
        files: &CertFiles,
        provider: &CryptoProvider,
    ) -> anyhow::Result<ServerCert> {
        let cert_bytes = self.cert.as_ref().map_err(|why| anyhow!("{why}"))?;
        let key_bytes = self.key.as_ref().map_err(|why| anyhow!("{why}"))?;
        let cert_path = files.cert.display();
        let key_path = files.key.display();
        let chain = CertificateDer::pem_slice_iter(cert_bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                anyhow!(
                    "{cert_path} (--tls-cert) is not valid PEM: {}",
                    pem_problem(&e)
                )
            })?;
        let Some(leaf) = chain.first() else {
            bail!("{cert_path} (--tls-cert) holds no certificate: expected PEM blocks \"-----BEGIN CERTIFICATE-----\", the server's certificate first, then any intermediates");
        };
        let summary = certificate::summarize(leaf).map_err(|e| {
            anyhow!("{cert_path} (--tls-cert): the first certificate is not a valid X.509 certificate: {e}")
        })?;
        let key = PrivateKeyDer::from_pem_slice(key_bytes).map_err(|e| match e {
            pem::Error::NoItemsFound => anyhow!(
                "{key_path} (--tls-key) holds no private key: expected a PEM block \"-----BEGIN PRIVATE KEY-----\" (PKCS#8), \"RSA PRIVATE KEY\" (PKCS#1) or \"EC PRIVATE KEY\" (SEC1)"
            ),
            e => anyhow!("{key_path} (--tls-key) is not valid PEM: {}", pem_problem(&e)),
        })?;
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| anyhow!("{key_path} (--tls-key): unusable private key: {e}"))?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => bail!(
                "the private key in {key_path} (--tls-key) does not belong to the certificate in {cert_path} (--tls-cert); give the key the certificate was issued for"
            ),
            Err(e) => bail!("{cert_path} (--tls-cert): {e}"),
        }
        Ok(ServerCert {
            key: Arc::new(certified),
            common_name: summary.common_name,
            not_after: summary.not_after,
        })
    }
}

/// The CA certificates of `--admin-client-ca` (blocking).
pub(crate) fn read_client_ca(path: &Path) -> anyhow::Result<RootCertStore> {
    let bytes = read_pem_file(path, "--admin-client-ca").map_err(|why| anyhow!("{why}"))?;
    let shown = path.display();
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            anyhow!(
                "{shown} (--admin-client-ca) is not valid PEM: {}",
                pem_problem(&e)
            )
        })?;
    if certs.is_empty() {
        bail!("{shown} (--admin-client-ca) holds no certificate: expected the PEM certificate(s) of the CA that signs admin client certificates");
    }
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            anyhow!(
                "{shown} (--admin-client-ca): certificate {} is not a usable CA certificate: {e}",
                i + 1
            )
        })?;
    }
    Ok(roots)
}

/// A PEM file's bytes, or a message naming the file, its flag and the problem.
fn read_pem_file(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {shown} ({flag}): {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown} ({flag}): {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} ({flag}) is not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown} ({flag}): {e}"))?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(format!(
            "{shown} ({flag}) is larger than {} KiB: not a PEM certificate or key",
            MAX_PEM_BYTES >> 10
        ));
    }
    Ok(bytes)
}

/// What is wrong with a PEM file, in words.
fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "a block has no \"-----END …-----\" line (is the file truncated?)".into()
        }
        pem::Error::IllegalSectionStart { .. } => {
            "a \"-----BEGIN …-----\" line is malformed".into()
        }
        pem::Error::Base64Decode(_) => "a block is not valid base64".into(),
        e => e.to_string(),
    }
}
