//! OIP gRPC calls over HTTP/2 driven with `h2` directly: each call opens a
//! stream on the worker's clone of a connection and reads the answer on the
//! worker's own task. tonic's `Channel` passes every call through a
//! `tower::buffer` task, and hyper's HTTP/2 client through a dispatch task
//! and a task per call; each is a cross-task wake-up per call, which made
//! the generator's gRPC client cost 2–3× its REST client (BENCHMARKS.md).
//! The request message is framed once per run; several workers share one
//! [`GrpcLink`], which reopens its connection once when it breaks. What an
//! answer or a failure counts as is in `status.rs`.

mod status;
#[cfg(test)]
mod tests;

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, TE};
use hyper::{HeaderMap, Method, Request, Uri};
use tokio::sync::Mutex;

use crate::http::{header_value, ExtraHeader};
use crate::outcome::{self, ErrorClass};
use crate::protocol::chain;
pub use status::check_metadata_name;
use status::{answer_status, h2_error};

/// Per stream and per connection, as hyper's client has them: answers of a
/// few megabytes arrive without waiting for window updates.
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 5 << 20;
/// Streams opened before the server's SETTINGS say how many it allows (as
/// hyper's client), so a reopened link does not overshoot a server's limit.
const STREAMS_BEFORE_SETTINGS: usize = 100;
/// The largest header block accepted from the server (as hyper's client).
const MAX_HEADER_LIST: u32 = 16 << 10;

/// A gRPC message as it goes on the wire: uncompressed flag, big-endian
/// length, the encoded message.
pub fn frame(message: &impl prost::Message) -> Result<Bytes> {
    let len = message.encoded_len();
    let Ok(len32) = u32::try_from(len) else {
        bail!("the gRPC request is {len} bytes; a gRPC message is at most 4 GiB");
    };
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(len32);
    message.encode(&mut out)?;
    Ok(out.freeze())
}

/// A tonic channel for one-off calls outside the load (the model's
/// metadata before a run), where its extra task per call does not matter.
pub async fn tonic_channel(url: &str) -> Result<tonic::transport::Channel> {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .map_err(|e| anyhow!("{url}: {e}"))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| anyhow!("cannot connect to {url} (gRPC): {}", chain(&e)))
}

/// One HTTP/2 connection to a gRPC listener, shared by the workers that
/// hold it; reopened by the first of them to find it broken.
pub struct GrpcLink {
    addr: SocketAddr,
    current: Mutex<Current>,
}

struct Current {
    /// Counts reconnects, so a worker holding a broken sender reopens the
    /// connection once, not once per worker.
    generation: u64,
    /// The connection's sender; `None` while it is being reopened (or after
    /// reopening failed).
    sender: Option<SendRequest<Bytes>>,
}

impl GrpcLink {
    /// Opens the connection now, so a target that is not there fails the run at once.
    pub async fn open(addr: SocketAddr) -> Result<GrpcLink, (ErrorClass, String)> {
        let sender = connect(addr).await?;
        Ok(GrpcLink {
            addr,
            current: Mutex::new(Current {
                generation: 0,
                sender: Some(sender),
            }),
        })
    }

    /// The live connection; `broken` names a generation its holder found
    /// broken, which is reopened unless someone already did.
    async fn sender(
        &self,
        broken: Option<u64>,
    ) -> Result<(u64, SendRequest<Bytes>), (ErrorClass, String)> {
        let mut current = self.current.lock().await;
        if broken == Some(current.generation) {
            current.sender = None;
        }
        let sender = match &current.sender {
            Some(sender) => sender.clone(),
            None => {
                let sender = connect(self.addr).await?;
                current.generation += 1;
                current.sender = Some(sender.clone());
                sender
            }
        };
        Ok((current.generation, sender))
    }
}

/// A worker's handle on a [`GrpcLink`].
pub struct GrpcConn {
    link: Arc<GrpcLink>,
    /// The link's sender as this worker last had it, with its generation.
    sender: Option<(u64, SendRequest<Bytes>)>,
}

/// A gRPC answer with status OK: its headers and its message (without the
/// 5-byte frame header).
#[derive(Debug)]
pub struct GrpcAnswer {
    pub headers: HeaderMap,
    pub message: Bytes,
}

impl GrpcConn {
    /// A worker's handle; it takes the link's connection on its first call.
    pub fn new(link: Arc<GrpcLink>) -> GrpcConn {
        GrpcConn { link, sender: None }
    }

    /// Calls `uri` with the framed `message` (request number `n`, for
    /// `{n}` in headers) and reads the whole answer. A `grpc-status` other
    /// than OK is an error of class `grpc_<CODE>` with the status message;
    /// an answer with no `grpc-status` and an HTTP status other than 2xx
    /// (a proxy's 503, say) is `http_<status>`.
    pub(crate) async fn call(
        &mut self,
        uri: &Uri,
        headers: &[ExtraHeader],
        message: &Bytes,
        n: u64,
    ) -> Result<GrpcAnswer, (ErrorClass, String)> {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/grpc"))
            .header(TE, HeaderValue::from_static("trailers"));
        for h in headers {
            if let Some((k, v)) = header_value(h, n) {
                request = request.header(k, v);
            }
        }
        let request = request
            .body(())
            .map_err(|e| (ErrorClass::Protocol, format!("building the request: {e}")))?;
        let sender = self.ready().await?;
        let (answer, mut body) = sender
            .send_request(request, false)
            .map_err(|e| failed(&e, "sending"))?;
        body.send_data(message.clone(), true)
            .map_err(|e| failed(&e, "sending"))?;
        let answer = answer.await.map_err(|e| failed(&e, "reading the answer"))?;
        let (head, mut body) = answer.into_parts();
        if let Some(class) = outcome::http_status(head.status.as_u16()) {
            if let Some(Err(refused)) = answer_status(&head.headers, None) {
                return Err(refused);
            }
            return Err((class, format!("HTTP status {} on a gRPC call", head.status)));
        }
        // One DATA frame (the usual answer) is kept as it came; more are
        // joined in one growing buffer.
        let mut first = Bytes::new();
        let mut joined = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| failed(&e, "reading the answer"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if first.is_empty() && joined.is_empty() {
                first = chunk;
            } else {
                if joined.is_empty() {
                    joined.extend_from_slice(&first);
                }
                joined.extend_from_slice(&chunk);
            }
        }
        let data = if joined.is_empty() {
            first
        } else {
            joined.freeze()
        };
        let trailers = body
            .trailers()
            .await
            .map_err(|e| failed(&e, "reading the answer"))?;
        answer_status(&head.headers, trailers.as_ref()).ok_or_else(|| {
            (
                ErrorClass::Protocol,
                "the answer has no grpc-status; is this a gRPC server?".to_string(),
            )
        })??;
        Ok(GrpcAnswer {
            headers: head.headers,
            message: unframe(data)?,
        })
    }

    /// This worker's sender once it may open a stream; the connection is
    /// reopened (once) when it is found closed before anything was sent.
    async fn ready(&mut self) -> Result<&mut SendRequest<Bytes>, (ErrorClass, String)> {
        let broken = match &mut self.sender {
            None => None,
            Some((generation, sender)) => match poll_fn(|cx| sender.poll_ready(cx)).await {
                Ok(()) => None,
                Err(_) => Some(*generation),
            },
        };
        if self.sender.is_none() || broken.is_some() {
            self.sender = None;
            let (generation, sender) = self.link.sender(broken).await?;
            // Kept even if it fails below: the next call then names this
            // generation as broken, and the link reopens it.
            let (_, sender) = self.sender.insert((generation, sender));
            poll_fn(|cx| sender.poll_ready(cx))
                .await
                .map_err(|e| (h2_error(&e), format!("opening a stream: {e}")))?;
        }
        Ok(&mut self.sender.as_mut().expect("set above").1)
    }
}

/// A failed call. Its connection may be gone: the next call's
/// [`GrpcConn::ready`] finds out and reopens it.
fn failed(e: &h2::Error, doing: &str) -> (ErrorClass, String) {
    (h2_error(e), format!("{doing}: {e}"))
}

/// The message inside one gRPC frame.
fn unframe(mut data: Bytes) -> Result<Bytes, (ErrorClass, String)> {
    if data.len() < 5 {
        return Err((
            ErrorClass::Protocol,
            format!("the answer's message is cut short ({} bytes)", data.len()),
        ));
    }
    let compressed = data.get_u8();
    let len = data.get_u32() as usize;
    if compressed != 0 {
        return Err((
            ErrorClass::Protocol,
            "the answer is compressed, which was not asked for".into(),
        ));
    }
    if data.len() != len {
        return Err((
            ErrorClass::Protocol,
            format!(
                "the answer's frame says {len} bytes but {} came",
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// Opens a connection and spawns the task that drives it. The handshake
/// does not wait for the server's answer: a server that closes at once is
/// found by the first call.
async fn connect(addr: SocketAddr) -> Result<SendRequest<Bytes>, (ErrorClass, String)> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| (outcome::io_error(&e), format!("connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .initial_max_send_streams(STREAMS_BEFORE_SETTINGS)
        .max_header_list_size(MAX_HEADER_LIST)
        .enable_push(false)
        .handshake(stream)
        .await
        .map_err(|e| (h2_error(&e), format!("HTTP/2 handshake with {addr}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}
