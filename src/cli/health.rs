//! `podium health`: asks a server on this machine whether it is live (or
//! ready), for probes that have no HTTP client at hand — the container
//! image's `HEALTHCHECK` (the slim runtime image carries no curl).
//!
//! Exit status 0 when the server answers 200, 1 (with an `error: ...` line
//! naming the address and what went wrong) otherwise.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::parse::parse_seconds;

/// Flags of `podium health`; `--listen` and `--tls-cert` read the same
/// environment variables as `podium serve`, so a probe in the server's own
/// environment (a container) finds the server without being told.
#[derive(Args)]
pub struct HealthArgs {
    /// The address the server's REST listener was given (`serve --listen`);
    /// an unspecified address (0.0.0.0, [::]) is probed on loopback.
    #[arg(long, env = "PODIUM_LISTEN", default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    /// Probe /v2/health/ready (registry read, every aliased model loaded)
    /// instead of /v2/health/live.
    #[arg(long, env = "PODIUM_HEALTH_READY")]
    ready: bool,
    /// Seconds to wait for the connection and the answer.
    #[arg(long, env = "PODIUM_HEALTH_TIMEOUT_SECS", default_value_t = 5.0, value_parser = parse_seconds)]
    timeout_secs: f64,
    /// The server's TLS certificate (`serve --tls-cert`). The probe speaks
    /// plain HTTP only, so with TLS on it checks that the REST port accepts
    /// connections rather than asking the health route.
    #[arg(long, env = "PODIUM_TLS_CERT", value_name = "FILE")]
    tls_cert: Option<PathBuf>,
}

impl HealthArgs {
    /// Probes the server; an error says which address failed and how.
    pub fn run(self) -> anyhow::Result<()> {
        let addr = probe_address(self.listen);
        let timeout = Duration::from_secs_f64(self.timeout_secs);
        if self.tls_cert.is_some() {
            TcpStream::connect_timeout(&addr, timeout).map_err(|e| {
                anyhow::anyhow!("nothing accepts connections on {addr} (TLS listener): {e}")
            })?;
            println!("{addr} accepts connections (TLS listener: the health route was not asked)");
            return Ok(());
        }
        let route = if self.ready {
            "/v2/health/ready"
        } else {
            "/v2/health/live"
        };
        let url = format!("http://{addr}{route}");
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("podium-health/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let response = agent.get(&url).call().map_err(|e| {
            anyhow::anyhow!(
                "GET {url} failed: {e} (is `podium serve` running and listening on {addr}?)"
            )
        })?;
        let status = response.status().as_u16();
        anyhow::ensure!(status == 200, "GET {url} answered HTTP {status}");
        println!("GET {url}: 200");
        Ok(())
    }
}

/// Where to connect for a server listening on `listen`: loopback of the same
/// family when it listens on every address.
fn probe_address(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), listen.port())
        }
        _ => listen,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_probed_on_loopback() {
        let probe = |s: &str| probe_address(s.parse().unwrap()).to_string();
        assert_eq!(probe("0.0.0.0:8000"), "127.0.0.1:8000");
        assert_eq!(probe("[::]:8000"), "[::1]:8000");
        assert_eq!(probe("10.1.2.3:9000"), "10.1.2.3:9000");
    }
}
