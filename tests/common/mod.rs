//! Test harness: builds a registry with the real `podium` CLI and starts the
//! real `podium serve` on 127.0.0.1 with an OS-assigned port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_podium");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn model_file(rel: &str) -> PathBuf {
    repo().join("models").join(rel)
}

/// Runs `podium --registry REG ARGS…`, returning (success, stdout, stderr).
pub fn cli(registry: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--registry")
        .arg(registry)
        .args(args)
        .output()
        .expect("run podium");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Like [`cli`] but panics with the output when the command fails.
pub fn cli_ok(registry: &Path, args: &[&str]) -> String {
    let (ok, stdout, stderr) = cli(registry, args);
    assert!(ok, "podium {args:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// A registry with the demo and fixture models:
/// fraud v1 (champion) and v2 (challenger), mlp v1, alltypes v1, typed v1, fixed v1.
pub fn demo_registry(dir: &Path) -> PathBuf {
    let reg = dir.join("registry");
    let fraud1 = model_file("fraud/v1.onnx");
    let fraud2 = model_file("fraud/v2.onnx");
    assert_eq!(
        cli_ok(
            &reg,
            &["models", "register", "fraud", fraud1.to_str().unwrap()]
        )
        .trim(),
        "1"
    );
    assert_eq!(
        cli_ok(
            &reg,
            &["models", "register", "fraud", fraud2.to_str().unwrap()]
        )
        .trim(),
        "2"
    );
    cli_ok(&reg, &["alias", "set", "fraud", "champion", "1"]);
    cli_ok(&reg, &["alias", "set", "fraud", "challenger", "2"]);
    for (name, file) in [
        ("mlp", "mlp/v1.onnx"),
        ("alltypes", "fixtures/alltypes.onnx"),
        ("typed", "fixtures/typed.onnx"),
        ("fixed", "fixtures/fixed_shape.onnx"),
    ] {
        let path = model_file(file);
        cli_ok(&reg, &["models", "register", name, path.to_str().unwrap()]);
        cli_ok(&reg, &["alias", "set", name, "champion", "1"]);
    }
    reg
}

/// A running `podium serve`; killed when dropped.
pub struct Server {
    child: Child,
    /// REST base URL, `http://127.0.0.1:PORT`.
    pub base: String,
    /// gRPC endpoint, `http://127.0.0.1:PORT`.
    pub grpc: String,
    pub registry: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Serves a fresh demo registry with extra `serve` flags.
    pub fn demo(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let reg = demo_registry(dir.path());
        let mut server = Server::start(&reg, extra);
        server._dir = Some(dir);
        server
    }

    /// Serves `registry`, waiting for the "listening" line (60 s at most).
    pub fn start(registry: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .arg("--registry")
            .arg(registry)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--grpc-listen",
                "127.0.0.1:0",
            ])
            .args(["--poll-interval-ms", "100"])
            .args(extra)
            .env("PODIUM_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start podium serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut grpc = String::new();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("podium: grpc listening on ") {
                    grpc = url.to_string();
                } else if let Some(url) = line.strip_prefix("podium: listening on ") {
                    let _ = tx.send((url.to_string(), grpc.clone()));
                }
            }
        });
        let started = Instant::now();
        let (base, grpc) = loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(urls) => break urls,
                Err(_) => {
                    if let Some(status) = child.try_wait().expect("wait for podium") {
                        panic!(
                            "podium serve exited ({status}) before listening (see stderr above)"
                        );
                    }
                    if started.elapsed() > Duration::from_secs(60) {
                        let _ = child.kill();
                        panic!(
                            "podium serve did not print its address within 60 s (see stderr above)"
                        );
                    }
                }
            }
        };
        Server {
            child,
            base,
            grpc,
            registry: registry.to_path_buf(),
            _dir: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Sends SIGTERM, as an orchestrator stopping the pod would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits for the process to exit (at most `deadline`) and returns its status.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for podium") {
                return status;
            }
            assert!(
                start.elapsed() < deadline,
                "podium did not exit within {deadline:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Polls `check` until it returns `Some`, failing after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The fraud model's first demo row (make_classification X[0]).
pub const FRAUD_ROW: [f32; 30] = [
    -1.6125827,
    0.4016974,
    1.4995775,
    0.18011032,
    1.0774275,
    0.8149318,
    0.8536152,
    -1.12284,
    0.54177755,
    0.0812119,
    -1.9892033,
    4.2974987,
    0.9194187,
    -1.7255489,
    0.48892015,
    1.4287455,
    -1.8240153,
    -2.7939188,
    0.9137139,
    0.21991499,
    1.3738962,
    0.4077905,
    3.3964667,
    -1.0543443,
    1.6287706,
    -0.7213508,
    0.49246138,
    -0.16944763,
    -1.2091073,
    4.9227457,
];

/// The value of the first `/metrics` sample of `name` whose labels include
/// all of `labels`.
pub fn sample(metrics: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
