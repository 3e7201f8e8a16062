//! TLS for the tests: a throwaway CA that issues server and client
//! certificates (written to a temp dir as `podium serve` reads them), and
//! an HTTPS connection to the real server that says which certificate the
//! server presented.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// A certificate authority made up for one test.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).unwrap(),
        }
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `localhost` and 127.0.0.1 with subject CN `cn`
    /// (and a fresh key and serial).
    pub fn server(&self, cn: &str) -> Pem {
        self.issue(cn, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with subject CN `cn`.
    pub fn client(&self, cn: &str) -> Pem {
        self.issue(cn, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, cn: &str, usage: ExtendedKeyUsagePurpose) -> Pem {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// The files `podium serve --tls-cert … --tls-key …` reads, in a temp dir.
pub struct TlsFiles {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn new(pair: &Pem) -> TlsFiles {
        let dir = tempfile::tempdir().unwrap();
        let files = TlsFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
            dir,
        };
        files.replace(pair);
        files
    }

    /// Writes a PEM file beside the pair (a CA for `--admin-client-ca`).
    pub fn write(&self, name: &str, pem: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        write_atomically(&path, pem);
        path
    }

    /// Replaces the certificate, then the key (each file atomically, the
    /// pair not: as a rotation by cert-manager would).
    pub fn replace(&self, pair: &Pem) {
        write_atomically(&self.cert, &pair.cert);
        write_atomically(&self.key, &pair.key);
    }

    /// Replaces the key file alone (atomically).
    pub fn replace_key(&self, pem: &str) {
        write_atomically(&self.key, pem);
    }

    /// Replaces the certificate file alone (atomically).
    pub fn replace_cert(&self, pem: &str) {
        write_atomically(&self.cert, pem);
    }

    /// `--tls-cert FILE --tls-key FILE`.
    pub fn flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.cert.display().to_string(),
            "--tls-key".into(),
            self.key.display().to_string(),
        ]
    }
}

fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// `https://127.0.0.1:PORT` (or `http://…`) → the address.
pub fn addr(url: &str) -> SocketAddr {
    url.split("://")
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("not a URL with an address: {url}"))
}

/// A client's TLS settings: trusts `ca_pem`, presents `identity` if given,
/// offers ALPN `http/1.1`.
pub fn client_config(ca_pem: &str, identity: Option<&Pem>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One HTTP/1.1 connection over TLS to the server at `url`.
pub struct Https {
    send: SendRequest<Full<Bytes>>,
    /// The subject CN of the certificate the server presented.
    pub server_cn: String,
}

impl Https {
    /// Connects and completes the handshake (as `localhost`); the error
    /// when the server refuses it or the connection fails.
    pub async fn connect(url: &str, config: Arc<ClientConfig>) -> Result<Https, String> {
        let tcp = TcpStream::connect(addr(url))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let tls = TlsConnector::from(config)
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let leaf = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .expect("the server presented a certificate");
        let server_cn = subject_cn(leaf);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(conn);
        Ok(Https { send, server_cn })
    }

    /// Sends one request on this connection: the status and the JSON body
    /// (`Value::Null` when the body is not JSON), or the error when the
    /// connection failed.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let bytes = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        self.send
            .ready()
            .await
            .map_err(|e| format!("connection closed: {e}"))?;
        let response = self
            .send
            .send_request(request.body(Full::new(bytes)).unwrap())
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{method} {path}: reading the body: {e}"))?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// `GET path`: the status and JSON body; panics when the connection fails.
    pub async fn get(&mut self, path: &str) -> (u16, Value) {
        self.request("GET", path, &[], None)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&mut self) -> String {
        self.send.ready().await.expect("connection open");
        let request = hyper::Request::get("/metrics")
            .header("host", "localhost")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = self.send.send_request(request).await.expect("GET /metrics");
        assert_eq!(response.status(), 200, "GET /metrics");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(body.to_vec()).unwrap()
    }
}

/// The subject CN of a DER certificate.
fn subject_cn(der: &[u8]) -> String {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(der).expect("an X.509 certificate");
    cert.tbs_certificate()
        .subject()
        .common_name()
        .ok()
        .flatten()
        .map(|cn| cn.value().into_owned())
        .unwrap_or_default()
}
