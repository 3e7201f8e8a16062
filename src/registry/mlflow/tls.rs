//! HTTPS to MLflow: which certificates Podium trusts and presents, named by
//! the same variables as MLflow's own Python client, and the words for a
//! failed handshake (which variable to set).
//!
//! - trusted: the system's CA store, plus `MLFLOW_TRACKING_SERVER_CERT_PATH`
//!   (a PEM bundle) when set;
//! - presented: `MLFLOW_TRACKING_CLIENT_CERT_PATH` (one PEM file holding the
//!   certificate chain and its private key), when set;
//! - `MLFLOW_TRACKING_INSECURE_TLS=true` turns verification off (logged as a
//!   warning at start-up); any value other than true/false/1/0 is refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig, TlsProvider};

use crate::error::Error;

pub(super) const CA_VAR: &str = "MLFLOW_TRACKING_SERVER_CERT_PATH";
pub(super) const CLIENT_CERT_VAR: &str = "MLFLOW_TRACKING_CLIENT_CERT_PATH";
pub(super) const INSECURE_VAR: &str = "MLFLOW_TRACKING_INSECURE_TLS";

/// How Podium checks MLflow's certificate and proves its own identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Extra CAs to trust, besides the system's (`MLFLOW_TRACKING_SERVER_CERT_PATH`).
    pub ca_bundle: Option<PathBuf>,
    /// A PEM file with Podium's client certificate and key (`MLFLOW_TRACKING_CLIENT_CERT_PATH`).
    pub client_cert: Option<PathBuf>,
    /// Skip verifying MLflow's certificate (`MLFLOW_TRACKING_INSECURE_TLS=true`).
    pub insecure: bool,
}

impl TlsOptions {
    /// The options MLflow's client conventions name in the environment.
    pub fn from_env() -> Result<TlsOptions, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let insecure = match var(INSECURE_VAR).map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) if v == "true" || v == "1" => true,
            Some(v) if v == "false" || v == "0" => false,
            Some(v) => {
                return Err(Error::InvalidInput(format!(
                    "{INSECURE_VAR}={v:?}: use true or false"
                )))
            }
        };
        Ok(TlsOptions {
            ca_bundle: var(CA_VAR).map(PathBuf::from),
            client_cert: var(CLIENT_CERT_VAR).map(PathBuf::from),
            insecure,
        })
    }

    /// ureq's TLS settings for these options: rustls with the ring provider,
    /// the system roots plus the bundle, the client certificate. Reads the
    /// files now, so a wrong path stops start-up with a message naming it.
    pub(super) fn config(&self) -> Result<TlsConfig, Error> {
        let mut roots: Vec<Certificate<'static>> = Vec::new();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            roots.push(Certificate::from_der(cert.as_ref()).to_owned());
        }
        if let Some(path) = &self.ca_bundle {
            let before = roots.len();
            for item in read_pem(path, CA_VAR)? {
                if let PemItem::Certificate(cert) = item {
                    roots.push(cert);
                }
            }
            if roots.len() == before {
                return Err(Error::InvalidInput(format!(
                    "{CA_VAR}={}: no PEM certificate in the file; name the CA bundle (-----BEGIN CERTIFICATE-----) that signed MLflow's certificate",
                    path.display()
                )));
            }
        }
        if roots.is_empty() && !self.insecure {
            tracing::warn!(
                "no CA certificates found in the system store ({}); HTTPS to MLflow will fail unless {CA_VAR} names a CA bundle",
                native
                    .errors
                    .first()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "it is empty".into())
            );
        }
        let client_cert = match &self.client_cert {
            Some(path) => Some(client_cert(path)?),
            None => None,
        };
        if self.insecure {
            tracing::warn!(
                "{INSECURE_VAR}=true: Podium does NOT verify MLflow's TLS certificate; anyone on the path can impersonate the registry and read its token. Use {CA_VAR} instead outside of tests"
            );
        }
        Ok(TlsConfig::builder()
            .provider(TlsProvider::Rustls)
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .client_cert(client_cert)
            .disable_verification(self.insecure)
            .build())
    }
}

/// The PEM items in `path` (named by `var` in errors).
fn read_pem(path: &Path, var: &str) -> Result<Vec<PemItem<'static>>, Error> {
    let bytes = std::fs::read(path).map_err(|e| {
        Error::InvalidInput(format!("{var}={}: cannot read it: {e}", path.display()))
    })?;
    ureq::tls::parse_pem(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error::InvalidInput(format!("{var}={}: not a PEM file ({e})", path.display())))
}

/// The certificate chain and key in one PEM file, as MLflow's client takes it.
fn client_cert(path: &Path) -> Result<ClientCert, Error> {
    let mut chain = Vec::new();
    let mut key: Option<PrivateKey<'static>> = None;
    for item in read_pem(path, CLIENT_CERT_VAR)? {
        match item {
            PemItem::Certificate(cert) => chain.push(cert),
            PemItem::PrivateKey(k) => key = Some(k),
            _ => {}
        }
    }
    match (chain.is_empty(), key) {
        (false, Some(key)) => Ok(ClientCert::new_with_certs(&chain, key)),
        (true, _) => Err(Error::InvalidInput(format!(
            "{CLIENT_CERT_VAR}={}: no certificate in the file; put the client certificate (and its chain) and its private key in one PEM file",
            path.display()
        ))),
        (false, None) => Err(Error::InvalidInput(format!(
            "{CLIENT_CERT_VAR}={}: no private key in the file; append the client certificate's key (-----BEGIN PRIVATE KEY-----) to it",
            path.display()
        ))),
    }
}

/// A failed TLS exchange, in words that name the fix; `None` when `e` is not
/// about TLS.
pub(super) fn tls_failure(base: &str, e: &ureq::Error) -> Option<String> {
    let detail = match e {
        ureq::Error::Rustls(e) => Some(rustls_hint(e)),
        ureq::Error::Tls(msg) => Some((msg.to_string(), HINT_CA)),
        ureq::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(rustls_hint),
        _ => None,
    }?;
    let (what, hint) = detail;
    Some(format!("TLS with MLflow at {base} failed: {what}; {hint}"))
}

const HINT_CA: &str = "if MLflow's certificate comes from a private CA, set MLFLOW_TRACKING_SERVER_CERT_PATH to that CA's PEM file (MLFLOW_TRACKING_INSECURE_TLS=true skips verification: for tests only)";
const HINT_CLIENT: &str = "if MLflow (or its proxy) asks for a client certificate, set MLFLOW_TRACKING_CLIENT_CERT_PATH to one PEM file with the certificate and its key";

fn rustls_hint(e: &rustls::Error) -> (String, &'static str) {
    let hint = match e {
        rustls::Error::AlertReceived(_) => HINT_CLIENT,
        _ => HINT_CA,
    };
    (e.to_string(), hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_files_are_named_with_their_variable() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = TlsOptions {
            ca_bundle: Some(tmp.path().join("nope.pem")),
            ..TlsOptions::default()
        };
        let err = missing.config().unwrap_err().to_string();
        assert!(err.contains(CA_VAR) && err.contains("nope.pem"), "{err}");

        let empty = tmp.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = TlsOptions {
            ca_bundle: Some(empty.clone()),
            ..TlsOptions::default()
        }
        .config()
        .unwrap_err()
        .to_string();
        assert!(err.contains("no PEM certificate"), "{err}");

        let err = TlsOptions {
            client_cert: Some(empty),
            ..TlsOptions::default()
        }
        .config()
        .unwrap_err()
        .to_string();
        assert!(err.contains(CLIENT_CERT_VAR), "{err}");
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let tmp = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["podium".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let only_cert = tmp.path().join("cert.pem");
        std::fs::write(&only_cert, cert.pem()).unwrap();
        let err = client_cert(&only_cert).err().unwrap().to_string();
        assert!(err.contains("no private key"), "{err}");
        let both = tmp.path().join("both.pem");
        std::fs::write(&both, format!("{}{}", cert.pem(), key.serialize_pem())).unwrap();
        assert!(client_cert(&both).is_ok());
    }
}
