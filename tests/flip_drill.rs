//! Alias flips under load: 32 clients keep calling fraud's `champion` while
//! it is moved between v2 and v1 100 times through the admin API; no request
//! may fail and no answer may be inconsistent. This is the load generator's
//! flip drill (`podium-loadtest --flip`, `loadtest/src/flip.rs` says what is
//! checked), driven in-process against the real `podium serve`; `loadtest/
//! bench.sh` runs the same drill on the release build for BENCHMARKS.md.

mod common;

use std::time::Duration;

use podium_loadtest::flip::FlipConfig;
use podium_loadtest::input::Tensor;
use podium_loadtest::protocol::{Protocol, Target};
use podium_loadtest::run::{run, RunConfig};
use podium_loadtest::schedule::Pacing;

use common::Server;

const CLIENTS: usize = 32;
const FLIPS: usize = 100;

/// Extra `podium serve` flags from `FLIP_DRILL_SERVE_ARGS` (split on
/// whitespace), e.g. `--keep-previous 0` to make every flip load a version.
fn extra_serve_args() -> Vec<String> {
    std::env::var("FLIP_DRILL_SERVE_ARGS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alias_flips_under_load_fail_no_request() {
    let extra = extra_serve_args();
    if !extra.is_empty() {
        println!("extra serve flags (FLIP_DRILL_SERVE_ARGS): {extra:?}");
    }
    let s = Server::demo(&extra.iter().map(String::as_str).collect::<Vec<_>>());
    let inputs = vec![Tensor {
        name: "input".into(),
        datatype: "FP32".into(),
        shape: vec![1, 30],
        raw: common::FRAUD_ROW
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect(),
    }];
    // The champion starts at 2: the drill flips it between 1 and 2 and ends
    // on 1 (an even number of flips), then puts it back at 2.
    s.set_alias("fraud", "champion", 2);
    common::eventually(Duration::from_secs(20), "the server to read it", || async {
        let aliases = s.get_json("/admin/models/fraud/aliases").await;
        (aliases["aliases"]["champion"] == 2).then_some(())
    })
    .await;
    let every = Duration::from_millis(30);
    let cfg = RunConfig {
        target: Target {
            url: s.base.clone(),
            protocol: Protocol::RestJson,
            model: "fraud".into(),
            version: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            inspect_body: true,
        },
        concurrency: CLIENTS,
        pacing: Pacing::Closed,
        // The drill ends one interval after its last flip (`max_flips`);
        // 60 s and the request count only bound a run whose flips stall.
        duration: Some(Duration::from_secs(60)),
        requests: Some(5_000_000),
        warmup: Duration::from_millis(300),
        grpc_connections: Some(1),
        flip: Some(FlipConfig {
            admin_url: s.base.clone(),
            model: "fraud".into(),
            alias: "champion".into(),
            versions: vec![1, 2],
            every,
            token: None,
            max_flips: Some(FLIPS),
            // Each flip's version answers at least one request per client,
            // checked, before the next flip.
            settle: CLIENTS as u64,
        }),
        progress: false,
    };
    let r = run(&cfg, &[inputs]).await.expect("the drill runs");
    print!("{}", podium_loadtest::report::summary(&r));

    let flips = r.flip.as_ref().expect("the flipper's report");
    let problems = format!(
        "errors {:?} e.g. {:?}; inconsistent {:?} e.g. {:?}; flips e.g. {:?}",
        r.measured.error_map(),
        r.measured.error_examples,
        r.checks.inconsistent,
        r.checks.examples,
        flips.failure_examples
    );
    assert_eq!(r.measured.error_count(), 0, "{problems}");
    assert_eq!(r.warmup.error_count(), 0, "{problems}");
    assert_eq!(r.checks.inconsistent_total(), 0, "{problems}");
    assert_eq!(flips.failed_flips, 0, "{problems}");
    assert_eq!(flips.flips, FLIPS, "{problems}");
    assert_eq!(
        flips.restored,
        "restored fraud@champion to version 2, where it was before the drill"
    );
    let aliases = s.get_json("/admin/models/fraud/aliases").await;
    assert_eq!(
        (
            &aliases["aliases"]["champion"],
            &aliases["serving"]["champion"]
        ),
        (&serde_json::json!(2), &serde_json::json!(2)),
        "{aliases}"
    );
    // The version in force was checked after every flip (the settle wait
    // guarantees CLIENTS answers each), so both versions answered often.
    assert!(
        r.checks.checked >= (FLIPS * CLIENTS) as u64,
        "only {} answers checked",
        r.checks.checked
    );
    let (v1, v2) = (
        r.measured.answers_of_version("1"),
        r.measured.answers_of_version("2"),
    );
    assert!(
        v1 >= 200 && v2 >= 200,
        "served v1 {v1} times and v2 {v2} times; wanted at least 200 each"
    );
}
