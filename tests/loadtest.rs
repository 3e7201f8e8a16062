//! The load generator against the real server: a few seconds of load over
//! REST (closed loop, split endpoint) and gRPC (open loop), and the counts it
//! reports must match what the server's `/metrics` counted, per arm.

mod common;

use std::time::Duration;

use podium_loadtest::input::Tensor;
use podium_loadtest::outcome::ErrorClass;
use podium_loadtest::protocol::{Protocol, Target};
use podium_loadtest::run::{run, Report, RunConfig};
use podium_loadtest::schedule::Pacing;

use common::{sample, Server};

/// One request's inputs: the fraud demo row.
fn fraud_row() -> Vec<Vec<Tensor>> {
    vec![vec![Tensor {
        name: "input".into(),
        datatype: "FP32".into(),
        shape: vec![1, 30],
        raw: common::FRAUD_ROW
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect(),
    }]]
}

fn config(url: &str, protocol: Protocol, model: &str) -> RunConfig {
    RunConfig {
        target: Target {
            url: url.to_string(),
            protocol,
            model: model.to_string(),
            version: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            inspect_body: false,
        },
        concurrency: 4,
        pacing: Pacing::Closed,
        duration: Some(Duration::from_secs(1)),
        requests: Some(100_000),
        warmup: Duration::from_millis(300),
        grpc_connections: Some(1),
        flip: None,
        progress: false,
    }
}

fn served(m: &str, endpoint: &str, arm: &str, result: &str) -> u64 {
    sample(
        m,
        "podium_requests_total",
        &[("endpoint", endpoint), ("arm", arm), ("result", result)],
    )
    .unwrap_or(0.0) as u64
}

/// Answers of `arm` in the warm-up and the measured phase together: the
/// server counts both.
fn answered(r: &Report, arm: &str) -> u64 {
    r.warmup.answers_of_arm(arm) + r.measured.answers_of_arm(arm)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_match_the_servers_metrics() {
    let config_file = common::repo().join("models/demo-endpoints.toml");
    let s = Server::demo(&["--config", config_file.to_str().unwrap()]);
    let inputs = fraud_row();

    // REST JSON, closed loop, on the 90/10 split with a new user per request.
    let mut rest = config(&s.base, Protocol::RestJson, "fraud-ab");
    rest.target.headers = vec![("x-user-id".into(), "user-{n}".into())];
    let r = run(&rest, &inputs).await.expect("REST run");
    assert_eq!(
        r.measured.error_count(),
        0,
        "{:?}",
        r.measured.error_examples
    );
    assert_eq!(r.warmup.error_count(), 0, "{:?}", r.warmup.error_examples);
    assert!(r.measured.answers > 0 && r.warmup.answers > 0);
    assert_eq!(r.measured.answers, r.measured.latency.count());
    // Both arms answered, each from its own version.
    assert!(answered(&r, "champion") > 0 && answered(&r, "challenger") > 0);
    for row in r.measured.arm_rows() {
        assert_eq!(row.endpoint, "fraud-ab");
        let want = if row.arm == "champion" { "1" } else { "2" };
        assert_eq!(row.version, want, "{row:?}");
    }

    // gRPC, open loop, bounded by count: exactly that many measured.
    let mut grpc = config(&s.grpc, Protocol::Grpc, "fraud");
    grpc.pacing = Pacing::Open { rate: 400.0 };
    grpc.duration = None;
    grpc.requests = Some(150);
    grpc.warmup = Duration::from_millis(100);
    let g = run(&grpc, &inputs).await.expect("gRPC run");
    assert_eq!(g.measured.requests(), 150);
    assert_eq!(
        g.measured.error_count(),
        0,
        "{:?}",
        g.measured.error_examples
    );
    assert_eq!(g.warmup.requests(), 40, "0.1 s at 400/s");
    assert_eq!(g.measured.service.count(), 150);

    // Errors are counted by class: an unknown model is a 404 (REST) and
    // NOT_FOUND (gRPC), for every request.
    let mut missing = config(&s.base, Protocol::RestJson, "no-such-model");
    missing.duration = None;
    missing.requests = Some(20);
    missing.warmup = Duration::ZERO;
    let e = run(&missing, &inputs).await.expect("404 run");
    assert_eq!(e.measured.errors.get(&ErrorClass::Http(404)), Some(&20));
    let mut missing = config(&s.grpc, Protocol::Grpc, "no-such-model");
    missing.duration = None;
    missing.requests = Some(20);
    missing.warmup = Duration::ZERO;
    let e = run(&missing, &inputs).await.expect("NOT_FOUND run");
    assert_eq!(e.measured.error_map().get("grpc_NOT_FOUND"), Some(&20));

    // Every answer the generator counted, the server counted, arm by arm.
    let m = s.metrics().await;
    for arm in ["champion", "challenger"] {
        assert_eq!(
            served(&m, "fraud-ab", arm, "ok"),
            answered(&r, arm),
            "fraud-ab {arm}: server vs load generator"
        );
        assert_eq!(served(&m, "fraud-ab", arm, "error"), 0);
    }
    assert_eq!(
        served(&m, "fraud", "champion", "ok"),
        g.warmup.answers + g.measured.answers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_target_fails_the_run_at_once() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let e = run(&config(&url, Protocol::RestJson, "fraud"), &fraud_row())
        .await
        .err()
        .expect("no server there");
    assert!(e.to_string().contains("cannot connect"), "{e:#}");
}

/// `--distinct-inputs 3`, end to end: the generator makes three inputs from
/// the model's metadata and sends them in turn, over REST and gRPC, and the
/// server's inference table holds each one a third of the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_inputs_reach_the_server_in_turn() {
    use clap::Parser;
    use podium_loadtest::cli::{load_inputs, Args};

    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("table");
    let s = Server::demo(&[
        "--table-dir",
        table.to_str().unwrap(),
        "--table-roll-secs",
        "0.1",
    ]);
    for (url, protocol) in [(s.base.as_str(), "rest-json"), (s.grpc.as_str(), "grpc")] {
        let line = [
            "podium-loadtest",
            "--url",
            url,
            "--protocol",
            protocol,
            "-m",
            "fraud",
            "-c",
            "1",
            "-n",
            "30",
            "--warmup",
            "0s",
            "--distinct-inputs",
            "3",
        ];
        let plan = Args::try_parse_from(line).unwrap().plan(false).unwrap();
        let inputs = load_inputs(&plan).await.expect("inputs from the metadata");
        assert_eq!(inputs.len(), 3);
        assert!(inputs[0] != inputs[1] && inputs[1] != inputs[2] && inputs[0] != inputs[2]);
        let r = run(&plan.run, &inputs).await.expect("the run");
        assert_eq!(r.distinct_inputs, 3);
        assert_eq!(r.measured.answers, 30, "{:?}", r.measured.error_examples);
    }

    // Every request has its row; per protocol, three different request
    // bodies, ten rows each.
    let rows = common::eventually(Duration::from_secs(20), "60 rows in the table", || {
        let rows = common::read_table(&table);
        async move { (rows.len() >= 60).then_some(rows) }
    })
    .await;
    assert_eq!(rows.len(), 60);
    let mut bodies: std::collections::BTreeMap<(String, String), usize> = Default::default();
    for row in &rows {
        let key = (row["protocol"].to_string(), row["request"].to_string());
        *bodies.entry(key).or_default() += 1;
    }
    assert_eq!(bodies.len(), 6, "{bodies:#?}");
    assert!(bodies.values().all(|&n| n == 10), "{bodies:#?}");
}
