//! The inference table's journal over the wire: rows answered before a
//! `kill -9` are in the table, exactly once, after the next start on the
//! same directory, and what the crash left half written is cleaned away.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{by_id, client, demo_registry, eventually, fraud_request, read_table, walk, Server};

const ROWS: usize = 25;

#[tokio::test]
async fn rows_answered_before_kill_9_are_in_the_table_once_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let registry = demo_registry(dir.path());
    let table = dir.path().join("table");
    // No file closes by itself during the test: every row is in an open one.
    let args = [
        "--table-dir",
        table.to_str().unwrap(),
        "--table-roll-secs",
        "600",
    ];
    let mut s = Server::start(&registry, &args);
    let c = client();
    let mut ids = BTreeSet::new();
    for _ in 0..ROWS {
        let resp = c
            .post(s.url("/v2/models/fraud/infer"))
            .json(&fraud_request(1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        ids.insert(resp.headers()["x-request-id"].to_str().unwrap().to_string());
    }
    eventually(Duration::from_secs(30), "every row journaled", || async {
        let journaled = s.metric("podium_table_rows_journaled_total", &[]).await;
        (journaled == Some(ROWS as f64)).then_some(())
    })
    .await;
    // A leftover of an earlier crash: an empty, never-finished file.
    let stale = table
        .join("endpoint=fraud")
        .join("request_date=2020-01-01")
        .join(".part-20200101T000000Z-old.parquet.inprogress");
    std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
    std::fs::File::create(&stale).unwrap();

    s.kill();
    assert!(read_table(&table).is_empty(), "no file was closed");

    let s = Server::start(&registry, &args);
    let rows = by_id(read_table(&table));
    let found: BTreeSet<String> = rows.keys().cloned().collect();
    assert_eq!(found, ids, "every answered request once, nothing else");
    assert!(rows.values().all(|r| r["status_code"] == 200));
    let leftovers: Vec<_> = walk(&table)
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with(".parquet"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(
        s.metric("podium_table_rows_recovered_total", &[]).await,
        Some(ROWS as f64)
    );
}
