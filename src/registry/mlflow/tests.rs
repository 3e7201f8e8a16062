use super::artifacts::Location;
use super::*;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

#[test]
fn artifact_uris_are_located_without_a_call() {
    // Non-ASCII after `%` in a `file://` URI is located, not a crash.
    let reg = registry("http://127.0.0.1:9", None, 0);
    let locate = |uri: &str| reg.client.locate(uri, "m", 1);
    assert_eq!(
        locate("file:///srv/m%é%20x").unwrap(),
        Location::Local(PathBuf::from("/srv/m%é x"))
    );
    assert_eq!(
        locate("file://localhost/srv/m").unwrap(),
        Location::Local(PathBuf::from("/srv/m"))
    );
    assert_eq!(
        locate("/srv/m").unwrap(),
        Location::Local(PathBuf::from("/srv/m"))
    );
    assert_eq!(
        locate("mlflow-artifacts:/0/models/m-1/artifacts/").unwrap(),
        Location::Proxy("0/models/m-1/artifacts".into())
    );
    assert_eq!(
        locate("mlflow-artifacts://h:5000/0/x").unwrap(),
        Location::Proxy("0/x".into())
    );
    match locate("s3://bucket/1/x/artifacts/").unwrap() {
        Location::Store(dir) => assert_eq!(dir.url(), "s3://bucket/1/x/artifacts"),
        other => panic!("{other:?}"),
    }
    match locate("gs://bucket/x").unwrap() {
        Location::Store(dir) => assert_eq!(dir.url(), "gs://bucket/x"),
        other => panic!("{other:?}"),
    }
    match locate("wasbs://c@acct.blob.core.windows.net/1/x/artifacts").unwrap() {
        Location::Store(dir) => {
            assert_eq!(
                dir.url(),
                "wasbs://c@acct.blob.core.windows.net/1/x/artifacts"
            )
        }
        other => panic!("{other:?}"),
    }
    let hdfs = locate("hdfs://namenode/x").unwrap_err();
    assert!(matches!(hdfs, Error::Unsupported(_)), "{hdfs:?}");
    assert!(
        hdfs.to_string().contains("--artifacts-destination hdfs://"),
        "{hdfs}"
    );
    let dbfs = locate("dbfs:/databricks/mlflow-registry/1/models/m").unwrap_err();
    assert!(dbfs.to_string().contains("(DBFS)"), "{dbfs}");
}

/// A stand-in HTTP server on 127.0.0.1 that answers each connection with
/// the next canned (status, body); status 0 never answers. Records the
/// request heads.
fn stub(answers: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        for (status, body) in answers {
            let Ok((mut conn, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            log.lock().unwrap().push(head);
            if status == 0 {
                std::thread::sleep(Duration::from_secs(2));
                continue;
            }
            let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
        }
    });
    (url, seen)
}

fn registry(url: &str, token: Option<&str>, retries: u32) -> MlflowRegistry {
    MlflowRegistry::new(MlflowOptions {
        uri: url.to_string(),
        token: token.map(str::to_string),
        basic: None,
        timeout: Duration::from_millis(300),
        retries,
        cache_dir: std::env::temp_dir(),
        tls: TlsOptions::default(),
        databricks: false,
    })
    .unwrap()
}

#[test]
fn refused_credentials_are_named_and_not_retried() {
    let (url, seen) = stub(vec![(
        401,
        r#"{"error_code": "UNAUTHENTICATED", "message": "bad token"}"#,
    )]);
    let err = registry(&url, Some("s3cret"), 3).models().unwrap_err();
    assert!(matches!(err, Error::Registry(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("refused Podium's credentials") && msg.contains("MLFLOW_TRACKING_TOKEN"),
        "{msg}"
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1, "a refusal is not retried");
    assert!(
        seen[0]
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cret"),
        "{}",
        seen[0]
    );
}

#[test]
fn unavailable_answers_are_retried_and_unknown_models_named() {
    let (url, seen) = stub(vec![
        (503, "busy"),
        (502, "bad gateway"),
        (
            200,
            r#"{"registered_models": [{"name": "fraud", "aliases": [{"alias": "champion", "version": "3"}]}]}"#,
        ),
        (
            200,
            r#"{"model_versions": [{"version": "3", "status": "READY"}, {"version": "4", "status": "PENDING_REGISTRATION"}]}"#,
        ),
    ]);
    let reg = registry(&url, None, 3);
    let snapshot = reg
        .snapshot(Some(&["fraud".into(), "ghost".into()]))
        .unwrap();
    let info = snapshot[0].1.as_ref().unwrap();
    assert_eq!(info.versions, vec![3], "a pending version is not served");
    assert_eq!(info.aliases["champion"], 3);
    let ghost = snapshot[1].1.as_ref().unwrap_err().to_string();
    assert!(
        ghost.contains("no registered model \"ghost\"") && ghost.contains("registered: fraud"),
        "{ghost}"
    );
    assert_eq!(seen.lock().unwrap().len(), 4);
}

#[test]
fn a_silent_server_times_out_with_the_flag_to_raise() {
    let (url, _seen) = stub(vec![(0, ""), (0, "")]);
    let err = registry(&url, None, 1).models().unwrap_err().to_string();
    assert!(
        err.contains("did not answer")
            && err.contains("--registry-timeout-secs")
            && err.contains("2 attempts"),
        "{err}"
    );
}

#[test]
fn not_an_mlflow_server_is_said_so() {
    let (url, _seen) = stub(vec![(404, "<html>nope</html>")]);
    let err = registry(&url, None, 0).models().unwrap_err().to_string();
    assert!(
        err.contains("is --registry pointing at an MLflow server"),
        "{err}"
    );
}

#[test]
fn each_path_prefix_has_its_own_cache() {
    let dir = |uri: &str| registry(uri, None, 0).cache_dir().to_path_buf();
    let root = std::env::temp_dir();
    assert_eq!(dir("http://h:5000"), root.join("h_5000"));
    assert_eq!(dir("http://h:5000/"), root.join("h_5000"));
    assert_eq!(dir("http://h:5000/a"), root.join("h_5000%2Fa"));
    assert_ne!(dir("http://h:5000/a"), dir("http://h:5000/b"));
    assert_ne!(dir("http://h/x/y"), dir("http://h/x_y"));
}

#[test]
fn a_repeated_page_token_is_an_error_not_a_loop() {
    let page = r#"{"registered_models": [{"name": "fraud"}], "next_page_token": "abc"}"#;
    let (url, seen) = stub(vec![(200, page), (200, page), (200, page)]);
    let err = registry(&url, None, 0).models().unwrap_err();
    assert!(matches!(err, Error::Registry(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("repeated the page token \"abc\"") && msg.contains("registered-models/search"),
        "{msg}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
}

#[test]
fn an_artifact_is_downloaded_once_and_served_from_the_cache_while_mlflow_is_down() {
    let mlmodel = "flavors:\n  onnx:\n    data: sub/m.onnx\n  python_function: {}\n";
    let (url, seen) = stub(vec![
        (
            200,
            r#"{"artifact_uri": "mlflow-artifacts:/0/m 1/artifacts", "x": 1}"#,
        ),
        (200, mlmodel),
        (200, "onnx bytes"),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let reg = MlflowRegistry::new(MlflowOptions {
        cache_dir: tmp.path().to_path_buf(),
        ..MlflowOptions::from_env(&url, PathBuf::new()).unwrap()
    })
    .unwrap();
    let path = reg.artifact("fraud", 3).unwrap();
    assert_eq!(path, reg.cache_dir().join("fraud/3/model.onnx"));
    assert_eq!(std::fs::read(&path).unwrap(), b"onnx bytes");
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen[0].starts_with(
                "GET /api/2.0/mlflow/model-versions/get-download-uri?name=fraud&version=3 "
            ),
            "{}",
            seen[0]
        );
        assert!(
            seen[2].starts_with(
                "GET /api/2.0/mlflow-artifacts/artifacts/0/m%201/artifacts/sub/m.onnx "
            ),
            "{}",
            seen[2]
        );
    }
    // The stub has stopped answering: MLflow is down, the copy is whole.
    let again = MlflowRegistry::new(MlflowOptions {
        retries: 0,
        cache_dir: tmp.path().to_path_buf(),
        ..MlflowOptions::from_env(&url, PathBuf::new()).unwrap()
    })
    .unwrap();
    assert_eq!(again.artifact("fraud", 3).unwrap(), path);
    // A version never downloaded cannot be had.
    assert!(matches!(
        again.artifact("fraud", 4),
        Err(Error::Registry(_))
    ));
}
