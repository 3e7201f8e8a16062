//! `podium table summary --wait-for-rows`, as the README's tour runs it
//! right after its requests: it waits for the server to roll the table and
//! prints the rows, and gives up with the fix when they do not come.

mod common;

use common::{cli, client, fraud_request, Server};

#[tokio::test]
async fn the_summary_waits_for_the_roll_and_shows_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("tables");
    let s = Server::demo(&[
        "--table-dir",
        table.to_str().unwrap(),
        "--table-roll-secs",
        "0.5",
    ]);
    for _ in 0..3 {
        let resp = client()
            .post(s.url("/v2/models/fraud/infer"))
            .json(&fraud_request(1))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // Asked at once, before the roll: it waits rather than print nothing.
    let (ok, stdout, stderr) = cli(
        &s.registry,
        &[
            "table",
            "summary",
            table.to_str().unwrap(),
            "--wait-for-rows",
            "3",
            "--timeout",
            "60",
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("3 rows in "), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("fraud ") && l.contains("champion")),
        "{stdout}"
    );
}

#[test]
fn the_wait_gives_up_naming_what_it_found_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("tables");
    let (ok, _, stderr) = cli(
        &dir.path().join("registry"),
        &[
            "table",
            "summary",
            table.to_str().unwrap(),
            "--wait-for-rows",
            "1",
            "--timeout",
            "0.3",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains(&format!(
            "waited 0.3 s for 1 rows in {}; it has 0. Rows are published when the server rolls a file (--table-roll-secs",
            table.display()
        )),
        "{stderr}"
    );
}
