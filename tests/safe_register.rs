//! Registering a version is safe against a hostile or clumsy admin client:
//! registering a file of the server by path is off unless
//! `--admin-register-dir` allows a directory, and then only for regular
//! files inside it; every model, uploaded or by path (or through the CLI), is
//! refused when it is over `--max-model-bytes` or does not parse as ONNX, and
//! what is registered is not world-readable.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{cli, client, model_file, Server};
use serde_json::{json, Value};

/// `POST /admin/models` with `{"name", "path"}`: the status and the error
/// message (empty when there is none).
async fn register_path(s: &Server, name: &str, path: &Path) -> (u16, String) {
    let (status, body) = s
        .post_json("/admin/models", &json!({"name": name, "path": path}))
        .await;
    (status, error_of(&body))
}

/// `POST /admin/models?name=NAME` with `bytes` as the body.
async fn upload(s: &Server, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let resp = client()
        .post(s.url(&format!("/admin/models?name={name}")))
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap_or_else(|e| panic!("upload {name}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn error_of(body: &Value) -> String {
    body["error"].as_str().unwrap_or_default().to_string()
}

/// The permission bits of `model` version `version`'s file in the registry.
fn artifact_mode(s: &Server, model: &str, version: u64) -> u32 {
    let path = s
        .registry
        .join(model)
        .join("versions")
        .join(version.to_string())
        .join("model.onnx");
    std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

#[tokio::test]
async fn without_the_flag_only_uploads_register_and_they_are_checked() {
    let s = Server::demo(&["--max-model-bytes", "100K"]);

    // By path: off, whatever the file, with the flag that turns it on.
    for path in [model_file("fraud/v1.onnx"), "/etc/passwd".into()] {
        let (status, msg) = register_path(&s, "fraud", &path).await;
        assert_eq!(status, 403, "{}: {msg}", path.display());
        assert!(msg.contains("--admin-register-dir"), "{msg}");
    }

    // Not ONNX: 400 with the reason.
    let (status, body) = upload(&s, "fraud", b"#!/bin/sh\necho not a model\n".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        error_of(&body).starts_with("the uploaded file is not an ONNX model: "),
        "{body}"
    );

    // Over --max-model-bytes (the MLP is ~340 KB): 413 naming the flag.
    let (status, body) = upload(&s, "mlp", std::fs::read(model_file("mlp/v1.onnx")).unwrap()).await;
    assert_eq!(status, 413, "{body}");
    assert!(error_of(&body).contains("--max-model-bytes"), "{body}");

    // Nothing was written by the refusals; a good model registers.
    let (status, body) = upload(
        &s,
        "fraud",
        std::fs::read(model_file("fraud/v2.onnx")).unwrap(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body, json!({"model": "fraud", "version": 3}));
    let mode = artifact_mode(&s, "fraud", 3);
    assert_eq!(mode & 0o137, 0, "mode {mode:o} is looser than 0640");
    assert_eq!(s.get_status("/v2/health/live").await, 200);
}

#[tokio::test]
async fn with_the_flag_only_regular_onnx_files_inside_the_directory_register() {
    let tmp = tempfile::tempdir().unwrap();
    let allowed = tmp.path().join("allowed");
    std::fs::create_dir(&allowed).unwrap();
    std::fs::copy(model_file("fraud/v2.onnx"), allowed.join("fraud.onnx")).unwrap();
    std::fs::copy(model_file("fraud/v2.onnx"), tmp.path().join("outside.onnx")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("outside.onnx"), allowed.join("link.onnx")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", allowed.join("passwd.onnx")).unwrap();
    mkfifo(&allowed.join("pipe.onnx"));
    std::fs::create_dir(allowed.join("folder.onnx")).unwrap();
    std::fs::write(allowed.join("empty.onnx"), b"").unwrap();
    std::fs::write(allowed.join("notes.onnx"), b"name,score\nfraud,0.9\n").unwrap();
    let s = Server::demo(&["--admin-register-dir", allowed.to_str().unwrap()]);

    let outside = tmp.path().join("outside.onnx");
    for path in [
        Path::new("/etc/passwd"),
        Path::new("/dev/zero"),
        outside.as_path(),
        Path::new("../outside.onnx"),
        Path::new("link.onnx"),
        Path::new("passwd.onnx"),
    ] {
        let (status, msg) = register_path(&s, "fraud", path).await;
        assert_eq!(status, 403, "{}: {msg}", path.display());
        assert!(
            msg.contains("only files inside --admin-register-dir"),
            "{}: {msg}",
            path.display()
        );
    }
    for (path, want) in [
        ("pipe.onnx", "it is a FIFO (named pipe), not a regular file"),
        ("folder.onnx", "it is a directory, not a regular file"),
        ("empty.onnx", "is not an ONNX model: the file is empty"),
        ("notes.onnx", "is not an ONNX model: it is not an ONNX"),
    ] {
        let (status, msg) = register_path(&s, "fraud", Path::new(path)).await;
        assert_eq!(status, 400, "{path}: {msg}");
        assert!(msg.contains(want), "{path}: {msg}");
    }
    let (status, msg) = register_path(&s, "fraud", Path::new("missing.onnx")).await;
    assert_eq!(status, 404, "{msg}");

    // Nothing was registered by the refusals; the server still answers.
    assert_eq!(s.get_status("/v2/health/live").await, 200);
    let (status, msg) = register_path(&s, "fraud", Path::new("fraud.onnx")).await;
    assert_eq!(status, 201, "{msg}");
    let (status, msg) = register_path(&s, "fraud", &allowed.join("fraud.onnx")).await;
    assert_eq!(status, 201, "{msg}");
    let versions: Vec<String> = std::fs::read_dir(s.registry.join("fraud/versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(versions.len(), 4, "{versions:?}");
    let mode = artifact_mode(&s, "fraud", 4);
    assert_eq!(mode & 0o137, 0, "mode {mode:o} is looser than 0640");
}

#[tokio::test]
async fn devices_are_refused_without_being_read() {
    // Even a directory that holds devices only yields regular files.
    let s = Server::demo(&["--admin-register-dir", "/dev"]);
    for path in ["/dev/zero", "/dev/urandom", "null"] {
        let (status, msg) = register_path(&s, "x", Path::new(path)).await;
        assert_eq!(status, 400, "{path}: {msg}");
        assert!(
            msg.contains("it is a character device, not a regular file"),
            "{path}: {msg}"
        );
    }
    assert_eq!(s.get_status("/v2/health/live").await, 200);
}

#[test]
fn the_cli_registers_only_regular_onnx_files_within_the_cap() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = tmp.path().join("reg");
    let notes = tmp.path().join("notes.txt");
    std::fs::write(&notes, "not a model").unwrap();
    let fifo = tmp.path().join("pipe.onnx");
    mkfifo(&fifo);
    let fraud = model_file("fraud/v1.onnx");
    for (args, want) in [
        (
            vec!["models", "register", "x", notes.to_str().unwrap()],
            "notes.txt is not an ONNX model: it is not an ONNX",
        ),
        (
            vec!["models", "register", "x", fifo.to_str().unwrap()],
            "it is a FIFO (named pipe), not a regular file",
        ),
        (
            vec!["models", "register", "x", "/dev/zero"],
            "it is a character device, not a regular file",
        ),
        (
            vec!["models", "register", "x", tmp.path().to_str().unwrap()],
            "it is a directory, not a regular file",
        ),
        (
            vec![
                "models",
                "register",
                "x",
                fraud.to_str().unwrap(),
                "--max-model-bytes",
                "512",
            ],
            "--max-model-bytes",
        ),
    ] {
        let (ok, _, stderr) = cli(&reg, &args);
        assert!(!ok, "{args:?} succeeded");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    assert!(
        !reg.join("x").exists(),
        "a refused file left a model behind"
    );
    let (ok, stdout, stderr) = cli(&reg, &["models", "register", "x", fraud.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "1");
}
