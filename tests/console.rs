//! The web console at `/ui` and the `GET /admin/overview` it reads, against
//! the real server: the page and its files carry a strict
//! Content-Security-Policy and set no cookie; the overview answers only
//! with the admin token and shows each arm's calls as `/metrics` counts
//! them. (The page itself is driven in a browser by
//! tests/python/test_console.py.)

mod common;

use common::{client, fraud_request, Server};
use serde_json::Value;

const TOKEN: &str = "console-s3cret";

fn demo() -> Server {
    let config = common::repo().join("models/demo-endpoints.toml");
    let config = config.to_str().unwrap();
    Server::demo(&["--config", config, "--admin-token", TOKEN])
}

#[tokio::test]
async fn the_console_is_served_with_a_strict_policy_and_no_cookie() {
    let s = demo();
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/", "text/html"),
        ("/ui/console.js", "text/javascript"),
        ("/ui/chart.js", "text/javascript"),
        ("/ui/console.css", "text/css"),
    ] {
        let resp = client().get(s.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(header("content-type").starts_with(kind), "{path}");
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert!(resp.headers().get("set-cookie").is_none(), "{path}");
    }
    let page = client().get(s.url("/ui")).send().await.unwrap();
    let page = page.text().await.unwrap();
    // Every script is a file of this origin: nothing inline for the policy to refuse.
    assert_eq!(page.matches("<script").count(), 2, "{page}");
    assert_eq!(page.matches("<script src=\"/ui/").count(), 2, "{page}");
}

#[tokio::test]
async fn the_overview_needs_the_admin_token_and_counts_each_arm() {
    let s = demo();
    let resp = client().get(s.url("/admin/overview")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    for user in 0..20 {
        let resp = client()
            .post(s.url("/v2/models/fraud-ab/infer"))
            .header("x-user-id", format!("user-{user}"))
            .json(&fraud_request(1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let overview: Value = client()
        .get(s.url("/admin/overview"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(overview["endpoints"][0]["name"], "fraud-ab", "{overview}");
    assert!(
        common::slot(&overview["status"], "fraud", "challenger")["serving_version"] == 2,
        "{overview}"
    );
    let traffic = &overview["traffic"];
    assert_eq!(traffic["bucket_seconds"], 10);
    let metrics = s.metrics().await;
    let mut seen = 0;
    for arm in traffic["arms"].as_array().unwrap() {
        let calls: u64 = arm["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["requests"].as_u64().unwrap())
            .sum();
        let name = arm["arm"].as_str().unwrap();
        let counted = common::sample(
            &metrics,
            "podium_requests_total",
            &[("endpoint", "fraud-ab"), ("arm", name), ("result", "ok")],
        )
        .unwrap_or(0.0);
        assert_eq!(calls as f64, counted, "arm {name}: {arm}");
        seen += calls;
    }
    assert_eq!(seen, 20, "{traffic}");
}
