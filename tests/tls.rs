//! TLS on both listeners of the real server: HTTPS and gRPC over TLS work
//! and plaintext does not, a client that never finishes its handshake is
//! dropped, the certificate follows its files (new connections get a new
//! one, old connections keep working, a broken pair is not taken), and a
//! bad certificate stops start-up with a message naming the file.

mod common;

use std::io::Write;
use std::time::Duration;

use common::tls::{addr, client_config, Https, TestCa, TlsFiles};
use common::{cli, closed_within, demo_registry, eventually, fraud_grpc_request, fraud_request};
use common::{sample, Server};
use podium::api::grpc::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

/// Long enough for a 1 s timer or a 0.1 s reload poll on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);

/// A demo server over TLS with `cert`, checking the files every 0.1 s.
fn tls_server(files: &TlsFiles, extra: &[&str]) -> Server {
    let mut flags = files.flags();
    flags.extend(["--tls-reload-secs", "0.1"].map(String::from));
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::demo(&flags)
}

async fn https(s: &Server, ca: &TestCa) -> Https {
    Https::connect(&s.base, client_config(&ca.pem(), None))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A `/metrics` sample read over HTTPS.
async fn metric(s: &Server, ca: &TestCa, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sample(&https(s, ca).await.metrics().await, name, labels)
}

#[tokio::test]
async fn rest_and_grpc_speak_tls_only() {
    let ca = TestCa::new("test CA");
    let files = TlsFiles::new(&ca.server("server-1"));
    let s = tls_server(&files, &[]);
    assert!(s.base.starts_with("https://"), "{}", s.base);
    assert!(s.grpc.starts_with("https://"), "{}", s.grpc);

    let mut conn = https(&s, &ca).await;
    assert_eq!(conn.server_cn, "server-1");
    let (status, body) = conn
        .request(
            "POST",
            "/v2/models/fraud/infer",
            &[],
            Some(&fraud_request(1)),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["outputs"][0]["name"], "label", "{body}");

    // Plain HTTP to the TLS port gets no HTTP answer, and is counted.
    let plain = common::client()
        .get(format!("http://{}/v2/health/live", addr(&s.base)))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");
    eventually(DEADLINE, "the failed handshake counted", || async {
        let failures = metric(
            &s,
            &ca,
            "podium_tls_handshake_failures_total",
            &[("listener", "rest")],
        )
        .await;
        (failures >= Some(1.0)).then_some(())
    })
    .await;

    // gRPC over TLS (ALPN h2), trusting the same CA.
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost");
    let channel = Channel::from_shared(s.grpc.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("connect to gRPC over TLS");
    let reply = GrpcInferenceServiceClient::new(channel)
        .model_infer(fraud_grpc_request("fraud"))
        .await
        .expect("ModelInfer over TLS")
        .into_inner();
    assert_eq!(reply.model_name, "fraud");
    assert!(!reply.outputs.is_empty(), "{reply:?}");

    // A plaintext gRPC client gets nowhere.
    let plain = GrpcInferenceServiceClient::connect(format!("http://{}", addr(&s.grpc))).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut client) => client
            .model_infer(fraud_grpc_request("fraud"))
            .await
            .is_err(),
    };
    assert!(refused, "a plaintext gRPC call was answered");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_handshake_is_dropped_after_the_header_timeout() {
    let ca = TestCa::new("test CA");
    let files = TlsFiles::new(&ca.server("server-1"));
    let s = tls_server(&files, &["--header-read-timeout-secs", "1"]);
    // REST: the start of a TLS record that promises 200 bytes, then nothing.
    let mut rest = std::net::TcpStream::connect(addr(&s.base)).unwrap();
    rest.write_all(&[0x16, 0x03, 0x01, 0x00, 0xc8]).unwrap();
    // gRPC: nothing at all.
    let mut grpc = std::net::TcpStream::connect(addr(&s.grpc)).unwrap();
    let (rest_closed, grpc_closed) = tokio::task::spawn_blocking(move || {
        (
            closed_within(&mut rest, DEADLINE),
            closed_within(&mut grpc, DEADLINE),
        )
    })
    .await
    .unwrap();
    assert!(rest_closed, "a stalled REST handshake was kept open");
    assert!(grpc_closed, "a silent gRPC connection was kept open");
    for listener in ["rest", "grpc"] {
        let timeouts = metric(
            &s,
            &ca,
            "podium_connection_timeouts_total",
            &[("listener", listener), ("kind", "header")],
        )
        .await;
        assert!(timeouts >= Some(1.0), "{listener}: {timeouts:?}");
    }
}

#[tokio::test]
async fn new_connections_get_a_replaced_certificate_and_open_ones_keep_working() {
    let ca = TestCa::new("test CA");
    let files = TlsFiles::new(&ca.server("server-1"));
    let s = tls_server(&files, &[]);
    let mut old = https(&s, &ca).await;
    assert_eq!(old.server_cn, "server-1");
    assert_eq!(old.get("/v2/health/ready").await.0, 200);

    files.replace(&ca.server("server-2"));
    eventually(DEADLINE, "a new connection to get server-2", || async {
        (https(&s, &ca).await.server_cn == "server-2").then_some(())
    })
    .await;
    // The connection made before the reload is still served.
    assert_eq!(old.get("/v2/health/ready").await.0, 200);
    let reloads = metric(&s, &ca, "podium_tls_reloads_total", &[]).await;
    assert!(reloads >= Some(1.0), "{reloads:?}");
}

#[tokio::test]
async fn a_broken_pair_is_not_taken_and_a_fixed_one_is() {
    let ca = TestCa::new("test CA");
    let first = ca.server("server-1");
    let files = TlsFiles::new(&first);
    let s = tls_server(&files, &[]);
    // A new key without its certificate: refused, counted once.
    let second = ca.server("server-2");
    files.replace_key(&second.key);
    eventually(DEADLINE, "the refused reload counted", || async {
        let errors = metric(&s, &ca, "podium_tls_reload_errors_total", &[]).await;
        (errors == Some(1.0)).then_some(())
    })
    .await;
    let mut conn = https(&s, &ca).await;
    assert_eq!(
        conn.server_cn, "server-1",
        "the old certificate is still served"
    );
    assert_eq!(conn.get("/v2/health/ready").await.0, 200);
    // Its certificate follows: the pair now loads.
    files.replace_cert(&second.cert);
    eventually(DEADLINE, "a new connection to get server-2", || async {
        (https(&s, &ca).await.server_cn == "server-2").then_some(())
    })
    .await;
    let errors = metric(&s, &ca, "podium_tls_reload_errors_total", &[]).await;
    assert_eq!(errors, Some(1.0), "the refused pair was counted once");
}

#[test]
fn a_bad_certificate_or_key_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let registry = demo_registry(dir.path());
    let ca = TestCa::new("test CA");
    let files = TlsFiles::new(&ca.server("server-1"));
    let serve = |flags: &[&str]| {
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
        ];
        args.extend(flags);
        let (ok, _, stderr) = cli(&registry, &args);
        assert!(!ok, "podium serve {flags:?} started");
        stderr
    };
    let cert = files.cert.to_str().unwrap();
    let key = files.key.to_str().unwrap();

    let stderr = serve(&["--tls-cert", cert]);
    assert!(stderr.contains("--tls-key"), "{stderr}");
    let stderr = serve(&["--tls-key", key]);
    assert!(stderr.contains("--tls-cert"), "{stderr}");

    let other_key = files.write("other.key", &ca.server("other").key);
    let stderr = serve(&["--tls-cert", cert, "--tls-key", other_key.to_str().unwrap()]);
    assert!(
        stderr.contains("does not belong to the certificate"),
        "{stderr}"
    );
    assert!(stderr.contains(other_key.to_str().unwrap()), "{stderr}");

    let missing = files.dir.path().join("missing.crt");
    let stderr = serve(&["--tls-cert", missing.to_str().unwrap(), "--tls-key", key]);
    assert!(stderr.contains("missing.crt (--tls-cert)"), "{stderr}");

    let garbage = files.write("garbage.crt", "not a certificate\n");
    let stderr = serve(&["--tls-cert", garbage.to_str().unwrap(), "--tls-key", key]);
    assert!(stderr.contains("holds no certificate"), "{stderr}");

    let stderr = serve(&["--tls-cert", cert, "--tls-key", cert]);
    assert!(stderr.contains("holds no private key"), "{stderr}");

    let stderr = serve(&[
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        "--admin-client-ca",
        key,
    ]);
    assert!(
        stderr.contains("(--admin-client-ca) holds no certificate"),
        "{stderr}"
    );
}
