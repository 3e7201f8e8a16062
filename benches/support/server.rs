//! A real Podium server (`podium::server::serve`, the code `podium serve`
//! runs) inside the bench process, on its own multi-threaded runtime
//! (worker threads = cores, as `podium serve` builds it).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use podium::registry::local::LocalRegistry;
use podium::registry::Registry;
use podium::server::{serve, ServeOptions};

use super::{free_port, repo};

/// Registers fraud v1 as `champion` in the local registry at `dir`, and
/// with `challenger`, fraud v2 as `challenger`.
pub fn fraud_registry(dir: &Path, challenger: bool) {
    let registry = LocalRegistry::new(dir);
    let v1 = registry
        .register("fraud", &repo().join("models/fraud/v1.onnx"))
        .expect("register fraud v1");
    registry
        .set_alias("fraud", "champion", v1)
        .expect("set champion");
    if challenger {
        let v2 = registry
            .register("fraud", &repo().join("models/fraud/v2.onnx"))
            .expect("register fraud v2");
        registry
            .set_alias("fraud", "challenger", v2)
            .expect("set challenger");
    }
}

/// Servers running in this process; each stops when [`Servers::stop`] is
/// called.
pub struct Servers {
    pub runtime: tokio::runtime::Runtime,
    running: Vec<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<anyhow::Result<()>>,
    )>,
}

impl Servers {
    pub fn new() -> Servers {
        Servers {
            runtime: tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("server runtime"),
            running: Vec::new(),
        }
    }

    /// Starts a server with `options` on fresh ports of 127.0.0.1 and
    /// returns its REST and gRPC addresses (not yet ready: see [`ready`]).
    pub fn start(&mut self, options: ServeOptions) -> (SocketAddr, SocketAddr) {
        let (listen, grpc_listen) = (free_port(), free_port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = self.runtime.spawn(serve(
            ServeOptions {
                listen,
                grpc_listen,
                ..options
            },
            async move {
                let _ = stopped.await;
            },
        ));
        self.running.push((stop, task));
        (listen, grpc_listen)
    }

    /// Whether every server started so far is still running.
    pub fn all_running(&self) -> bool {
        self.running.iter().all(|(_, task)| !task.is_finished())
    }

    /// Stops every server and waits for each (5 s at most), saying on
    /// stderr when one did not stop cleanly.
    pub fn stop(self) {
        for (stop, task) in self.running {
            let _ = stop.send(());
            match self
                .runtime
                .block_on(async { tokio::time::timeout(Duration::from_secs(5), task).await })
            {
                Ok(Ok(Ok(()))) => {}
                other => eprintln!("server did not stop cleanly: {other:?}"),
            }
        }
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Waits (60 s at most) until `GET /v2/health/ready` on `addr` answers 200.
pub async fn ready(client: &reqwest::Client, addr: SocketAddr, servers: &Servers) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let url = format!("http://{addr}/v2/health/ready");
    loop {
        assert!(servers.all_running(), "podium serve exited early");
        if let Ok(r) = client.get(&url).send().await {
            if r.status() == reqwest::StatusCode::OK {
                return;
            }
        }
        assert!(Instant::now() < deadline, "server not ready after 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
