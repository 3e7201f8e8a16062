//! The command line's unit tests (beside it, not in it: cli.rs stays small).

use super::*;

fn args(line: &[&str]) -> Result<Plan> {
    let mut all = vec!["podium-loadtest"];
    all.extend_from_slice(line);
    let a = Args::try_parse_from(all).map_err(|e| anyhow!(e.to_string()))?;
    a.plan(false)
}

fn error(line: &[&str]) -> String {
    match args(line) {
        Ok(_) => panic!("{line:?} was accepted"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn durations() {
    assert_eq!(parse_duration("200ms").unwrap(), Duration::from_millis(200));
    assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
    assert_eq!(parse_duration("500us").unwrap(), Duration::from_micros(500));
    assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
    assert!(parse_duration("10").unwrap_err().contains("has no unit"));
    assert!(parse_duration("10h").unwrap_err().contains("unknown unit"));
    assert!(parse_duration("fast")
        .unwrap_err()
        .contains("not a duration"));
}

#[test]
fn defaults_and_a_full_line() {
    let p = args(&["--model", "fraud"]).unwrap();
    assert_eq!(p.run.target.url, "http://127.0.0.1:8000");
    assert_eq!(p.run.duration, Some(Duration::from_secs(10)));
    assert_eq!(p.run.pacing, Pacing::Closed);
    assert_eq!(p.run.concurrency, 8);
    assert!(!p.run.progress);

    let p = args(&[
        "--protocol",
        "grpc",
        "-m",
        "fraud-ab",
        "--rate",
        "500",
        "-n",
        "1000",
        "-H",
        "x-user-id: u{n}",
        "--flip",
        "fraud",
        "champion",
        "1,2",
        "--every",
        "50ms",
        "--admin-url",
        "http://127.0.0.1:8000",
        "--token",
        "t",
        "--settle",
        "16",
    ])
    .unwrap();
    assert_eq!(p.run.target.url, "http://127.0.0.1:8001");
    assert_eq!(p.run.pacing, Pacing::Open { rate: 500.0 });
    assert_eq!((p.run.duration, p.run.requests), (None, Some(1000)));
    assert_eq!(
        p.run.target.headers,
        vec![("x-user-id".to_string(), "u{n}".to_string())]
    );
    let f = p.run.flip.unwrap();
    assert_eq!(
        (f.versions, f.every, f.token.as_deref()),
        (vec![1, 2], Duration::from_millis(50), Some("t"))
    );
    assert_eq!((f.settle, f.max_flips), (16, None));

    let p = args(&["--protocol", "mlflow", "--sweep", "1,8,64"]).unwrap();
    assert_eq!(p.run.target.model, "");
    assert_eq!(p.sweep, Some(vec![1, 8, 64]));
}

#[test]
fn bad_lines_name_the_fix() {
    assert!(error(&[]).contains("--model is required"));
    assert!(error(&["-m", "f", "--rate", "0"]).contains("positive number"));
    assert!(error(&["-m", "f", "-c", "0"]).contains("--concurrency must be at least 1"));
    assert!(error(&["-m", "f", "--sweep", "1,0"]).contains("at least 1"));
    assert!(error(&["-m", "f", "-H", "novalue"]).contains("NAME: VALUE"));
    assert!(
        error(&["-m", "f", "--flip", "fraud", "champion", "1"]).contains("at least two versions")
    );
    assert!(
        error(&["-m", "f", "--flip", "fraud", "champion", "1,x"]).contains("not a version number")
    );
    assert!(error(&[
        "--protocol",
        "grpc",
        "-m",
        "f",
        "--flip",
        "fraud",
        "champion",
        "1,2"
    ])
    .contains("--admin-url"));
    assert!(
        error(&["-m", "f", "--sweep", "1,8", "--flip", "fraud", "champion", "1,2"])
            .contains("do not go together")
    );
    assert!(error(&["-m", "f", "--duration", "10"]).contains("has no unit"));
    assert!(error(&["-m", "f", "-n", "0"]).contains("--requests must be at least 1"));
    assert!(error(&["-m", "f", "--protocol", "soap"]).contains("invalid value"));
    assert!(error(&["-m", "f", "--distinct-inputs", "0"]).contains("give 1 to 100000"));
    assert!(error(&["-m", "f", "--distinct-inputs", "100001"]).contains("out of range"));
    assert!(
        error(&["-m", "f", "--distinct-inputs", "2", "--input", "x.json"])
            .contains("does not go with --input")
    );
    assert_eq!(
        args(&["-m", "f", "--distinct-inputs", "7"])
            .unwrap()
            .distinct_inputs,
        7
    );
}
