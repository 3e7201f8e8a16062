//! `--admin-client-ca` on the real server: the admin API needs a client
//! certificate signed by that CA (and the token too when one is set),
//! while prediction calls need none.

mod common;

use std::time::Duration;

use common::tls::{client_config, Https, Pem, TestCa, TlsFiles};
use common::{eventually, fraud_request, sample, Server};
use serde_json::json;

/// Long enough for a counter to appear on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(20);

const FORBIDDEN: &str = "the admin API needs a client certificate signed by --admin-client-ca";

/// A demo server over TLS whose admin API trusts `admins`' client certificates.
fn server(ca: &TestCa, admins: &TestCa, extra: &[&str]) -> (Server, TlsFiles) {
    let files = TlsFiles::new(&ca.server("server-1"));
    let admin_ca = files.write("admin-ca.pem", &admins.pem());
    let mut flags = files.flags();
    flags.extend([
        "--admin-client-ca".to_string(),
        admin_ca.display().to_string(),
    ]);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    (Server::demo(&flags), files)
}

async fn connect(s: &Server, ca: &TestCa, identity: Option<&Pem>) -> Result<Https, String> {
    Https::connect(&s.base, client_config(&ca.pem(), identity)).await
}

#[tokio::test]
async fn the_admin_api_needs_a_client_certificate_from_the_ca_and_predictions_do_not() {
    let ca = TestCa::new("server CA");
    let admins = TestCa::new("admin CA");
    let (s, _files) = server(&ca, &admins, &[]);

    // No client certificate: predictions work, the admin API answers 403.
    let mut anonymous = connect(&s, &ca, None).await.unwrap();
    let (status, body) = anonymous
        .request(
            "POST",
            "/v2/models/fraud/infer",
            &[],
            Some(&fraud_request(1)),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    let (status, body) = anonymous.get("/admin/status").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body, json!({ "error": FORBIDDEN }));

    // A certificate signed by the admin CA opens it.
    let mut admin = connect(&s, &ca, Some(&admins.client("ops-alice")))
        .await
        .unwrap();
    let (status, body) = admin.get("/admin/status").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["slots"].is_array(), "{body}");

    // A certificate from another CA is refused at the handshake (or, where
    // the client sees the refusal only later, its request fails).
    let stranger = TestCa::new("someone else's CA").client("mallory");
    let refused = match connect(&s, &ca, Some(&stranger)).await {
        Err(_) => true,
        Ok(mut conn) => match conn.request("GET", "/admin/status", &[], None).await {
            Err(_) => true,
            Ok((status, _)) => status == 403,
        },
    };
    assert!(refused, "a client certificate from another CA was accepted");
    eventually(DEADLINE, "the refused handshake counted", || async {
        let metrics = connect(&s, &ca, None).await.ok()?.metrics().await;
        let failures = sample(
            &metrics,
            "podium_tls_handshake_failures_total",
            &[("listener", "rest")],
        );
        (failures >= Some(1.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn with_a_token_too_the_admin_api_needs_both() {
    let ca = TestCa::new("server CA");
    let admins = TestCa::new("admin CA");
    let (s, _files) = server(&ca, &admins, &["--admin-token", "s3cret"]);
    let bearer = [("authorization", "Bearer s3cret")];

    let mut anonymous = connect(&s, &ca, None).await.unwrap();
    let (status, body) = anonymous
        .request("GET", "/admin/status", &bearer, None)
        .await
        .unwrap();
    assert_eq!((status, body), (403, json!({ "error": FORBIDDEN })));

    let mut admin = connect(&s, &ca, Some(&admins.client("ops-alice")))
        .await
        .unwrap();
    let (status, _) = admin.get("/admin/status").await;
    assert_eq!(status, 401, "a certificate without the token");
    let (status, body) = admin
        .request("GET", "/admin/status", &bearer, None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}
