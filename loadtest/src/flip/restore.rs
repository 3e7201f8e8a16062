//! Leaving the alias as the drill found it: the version the alias pointed
//! at before the first flip is read from the admin API
//! (`GET /admin/models/{model}/aliases`) and put back when the drill ends,
//! however it ends (its flips done, its time up, or Ctrl-C).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

use super::FlipConfig;
use crate::protocol::chain;

/// The version `cfg.alias` of `cfg.model` points at now; None when the
/// alias does not exist yet.
pub async fn current_version(
    addr: SocketAddr,
    authority: &str,
    prefix: &str,
    cfg: &FlipConfig,
) -> Result<Option<u64>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {}", chain(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = format!("{prefix}/admin/models/{}/aliases", cfg.model);
    let mut builder = hyper::Request::get(&path).header(hyper::header::HOST, authority);
    if let Some(token) = &cfg.token {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building the GET: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("GET {path}: {}", chain(&e)))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if status != hyper::StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
        return Err(format!("GET {path} answered {status}: {text}"));
    }
    let answer: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| format!("GET {path} answered a body that is not JSON: {e}"))?;
    Ok(answer["aliases"][cfg.alias.as_str()].as_u64())
}

/// The line the drill prints about the alias it leaves behind.
pub fn restored_line(
    cfg: &FlipConfig,
    original: Option<u64>,
    result: Result<(), String>,
) -> String {
    let name = format!("{}@{}", cfg.model, cfg.alias);
    match (original, result) {
        (Some(v), Ok(())) => format!("restored {name} to version {v}, where it was before the drill"),
        (Some(v), Err(why)) => format!(
            "WARNING: could not restore {name} to version {v}, where it was before the drill ({why}); set it back with `podium alias set {} {} {v} --server URL`",
            cfg.model, cfg.alias
        ),
        (None, _) => format!(
            "WARNING: {name} did not exist before the drill and is left pointing at the drill's last version; delete it with `podium alias delete {} {} --server URL` if it should not stay",
            cfg.model, cfg.alias
        ),
    }
}
