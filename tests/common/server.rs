//! A real `podium serve` on 127.0.0.1 with OS-assigned ports, and typed
//! helpers for the calls most tests make against it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{client, demo_registry, registry, sample, BIN};

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

    /// Serves a registry in `dir` with fraud v1 as `champion` and
    /// `challenger_file` as version 2, `challenger`, with the endpoint file
    /// `config` and extra `serve` flags; answers the registry's path too.
    pub fn fraud_ab(
        dir: &Path,
        challenger_file: &str,
        config: &str,
        extra: &[&str],
    ) -> (Server, PathBuf) {
        let reg = dir.join("registry");
        assert_eq!(registry::register(&reg, "fraud", "fraud/v1.onnx"), 1);
        assert_eq!(registry::register(&reg, "fraud", challenger_file), 2);
        registry::set_alias(&reg, "fraud", "champion", 1);
        registry::set_alias(&reg, "fraud", "challenger", 2);
        let path = dir.join("podium.toml");
        std::fs::write(&path, config).unwrap();
        let mut args = vec!["--config", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        (Server::start(&reg, &args), reg)
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

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server process's resident memory now (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status of podium serve");
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS in /proc/PID/status");
        kb * 1024
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The status of `GET path`.
    pub async fn get_status(&self, path: &str) -> u16 {
        client()
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .status()
            .as_u16()
    }

    /// The JSON body of `GET path`, which must answer 200.
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = client()
            .get(self.url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: not JSON: {e}"))
    }

    /// `POST path` with a JSON body: the status and the JSON answer.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let resp = client()
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = resp.status().as_u16();
        let body = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("POST {path} ({status}): not JSON: {e}"));
        (status, body)
    }

    /// `GET /admin/status`.
    pub async fn admin_status(&self) -> Value {
        self.get_json("/admin/status").await
    }

    /// The text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        client()
            .get(self.url("/metrics"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET /metrics: {e}"))
    }

    /// The value of one `/metrics` sample (see [`sample`]).
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sample(&self.metrics().await, name, labels)
    }

    /// Registers `models/FILE` as the next version of `model` in this
    /// server's registry; returns the version.
    pub fn register(&self, model: &str, file: &str) -> u64 {
        registry::register(&self.registry, model, file)
    }

    /// Points `model@alias` at `version` in this server's registry (the
    /// server follows on its next poll).
    pub fn set_alias(&self, model: &str, alias: &str, version: u64) {
        registry::set_alias(&self.registry, model, alias, version);
    }

    /// Sends SIGTERM, as an orchestrator stopping the pod would.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Sends SIGHUP, as `kill -HUP` or `systemctl reload` would: the server
    /// reads its --config file again.
    pub fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Kills the process with SIGKILL (`kill -9`: nothing is flushed or
    /// closed) and waits for it to be gone.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill -9 podium");
        self.child.wait().expect("wait for podium");
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
