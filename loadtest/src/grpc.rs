//! OIP gRPC calls over HTTP/2 driven with `h2` directly: each call opens a
//! stream on the worker's clone of a connection and reads the answer on the
//! worker's own task. tonic's `Channel` passes every call through a
//! `tower::buffer` task, and hyper's HTTP/2 client through a dispatch task
//! and a task per call; each is a cross-task wake-up per call, which made
//! the generator's gRPC client cost ~2.8× its REST client (BENCHMARKS.md).
//! The request message is framed once per run; several workers share one
//! [`GrpcLink`], which reopens its connection once when it breaks.

use std::future::poll_fn;
use std::net::SocketAddr;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::client::SendRequest;
use hyper::header::{HeaderValue, CONTENT_TYPE, TE};
use hyper::{HeaderMap, Method, Request, Uri};
use tokio::sync::Mutex;

use crate::http::{header_value, ExtraHeader};
use crate::outcome::{self, ErrorClass};

/// Per stream and per connection, as hyper's client has them: answers of a
/// few megabytes arrive without waiting for window updates.
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 5 << 20;

/// A gRPC message as it goes on the wire: uncompressed flag, big-endian
/// length, the encoded message.
pub fn frame(message: &impl prost::Message) -> Bytes {
    let len = message.encoded_len();
    let mut out = BytesMut::with_capacity(5 + len);
    out.put_u8(0);
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    message.encode(&mut out).expect("BytesMut grows as needed");
    out.freeze()
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
    link: std::sync::Arc<GrpcLink>,
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
    pub fn new(link: std::sync::Arc<GrpcLink>) -> GrpcConn {
        GrpcConn { link, sender: None }
    }

    /// Calls `path` with the framed `message` (request number `n`, for
    /// `{n}` in headers) and reads the whole answer; a status other than OK
    /// is an error of class `grpc_<CODE>` with the status message.
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
            return Err((class, format!("HTTP status {} on a gRPC call", head.status)));
        }
        let mut data = Bytes::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| failed(&e, "reading the answer"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            data = if data.is_empty() {
                chunk
            } else {
                let mut joined = BytesMut::from(data);
                joined.extend_from_slice(&chunk);
                joined.freeze()
            };
        }
        let trailers = body
            .trailers()
            .await
            .map_err(|e| failed(&e, "reading the answer"))?;
        // A call refused before any message ("trailers-only") carries its
        // status in the headers.
        let status = trailers
            .as_ref()
            .and_then(tonic::Status::from_header_map)
            .or_else(|| tonic::Status::from_header_map(&head.headers))
            .ok_or_else(|| {
                (
                    ErrorClass::Protocol,
                    "the answer has no grpc-status; is this a gRPC server?".to_string(),
                )
            })?;
        if let Some(class) = outcome::grpc_status(&status) {
            return Err((class, status.message().chars().take(300).collect()));
        }
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
            let (generation, mut sender) = self.link.sender(broken).await?;
            poll_fn(|cx| sender.poll_ready(cx))
                .await
                .map_err(|e| (h2_error(&e), format!("opening a stream: {e}")))?;
            self.sender = Some((generation, sender));
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

fn h2_error(e: &h2::Error) -> ErrorClass {
    match e.get_io() {
        Some(io) => outcome::io_error(io),
        None => ErrorClass::Io,
    }
}

async fn connect(addr: SocketAddr) -> Result<SendRequest<Bytes>, (ErrorClass, String)> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| (outcome::io_error(&e), format!("connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .handshake(stream)
        .await
        .map_err(|e| (h2_error(&e), format!("HTTP/2 handshake with {addr}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{ModelInferRequest, ModelInferResponse};
    use prost::Message;
    use std::sync::Arc;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    /// A gRPC server that answers one call per connection and then closes
    /// it: model "missing" gets NOT_FOUND (trailers only), any other an
    /// answer of version 7. Each closed connection is reported on the channel.
    async fn one_call_per_connection() -> (
        SocketAddr,
        mpsc::UnboundedReceiver<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let accepting = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let closed_tx = closed_tx.clone();
                tokio::spawn(async move {
                    let mut conn = h2::server::handshake(tcp).await.unwrap();
                    if let Some(Ok((request, mut respond))) = conn.accept().await {
                        let (head, mut body) = request.into_parts();
                        let mut data = BytesMut::new();
                        while let Some(chunk) = body.data().await {
                            data.extend_from_slice(&chunk.unwrap());
                        }
                        let call =
                            ModelInferRequest::decode(unframe(data.freeze()).unwrap()).unwrap();
                        assert_eq!(
                            head.uri.path(),
                            "/inference.GRPCInferenceService/ModelInfer"
                        );
                        assert_eq!(head.headers["x-n"], "n3");
                        let mut answer =
                            hyper::Response::builder().header("content-type", "application/grpc");
                        if call.model_name == "missing" {
                            answer = answer
                                .header("grpc-status", "5")
                                .header("grpc-message", "no model");
                            respond
                                .send_response(answer.body(()).unwrap(), true)
                                .unwrap();
                        } else {
                            answer = answer.header("x-podium-model-version", "7");
                            let mut out = respond
                                .send_response(answer.body(()).unwrap(), false)
                                .unwrap();
                            let message = ModelInferResponse {
                                model_version: "7".into(),
                                ..Default::default()
                            };
                            out.send_data(frame(&message), false).unwrap();
                            let mut trailers = HeaderMap::new();
                            trailers.insert("grpc-status", HeaderValue::from_static("0"));
                            out.send_trailers(trailers).unwrap();
                        }
                    }
                    conn.graceful_shutdown();
                    while conn.accept().await.is_some() {}
                    let _ = closed_tx.send(());
                });
            }
        });
        (addr, closed, accepting)
    }

    #[tokio::test]
    async fn answers_statuses_and_a_connection_reopened_after_it_closes() {
        let (addr, mut closed, _accepting) = one_call_per_connection().await;
        let link = Arc::new(GrpcLink::open(addr).await.unwrap());
        let mut conn = GrpcConn::new(Arc::clone(&link));
        let uri: Uri = format!("http://{addr}/inference.GRPCInferenceService/ModelInfer")
            .parse()
            .unwrap();
        let headers = [ExtraHeader::Numbered(
            hyper::header::HeaderName::from_static("x-n"),
            "n{n}".into(),
        )];
        let call = |model: &str| {
            frame(&ModelInferRequest {
                model_name: model.into(),
                ..Default::default()
            })
        };
        let ok = conn.call(&uri, &headers, &call("fraud"), 3).await.unwrap();
        assert_eq!(ok.headers["x-podium-model-version"], "7");
        assert_eq!(
            ModelInferResponse::decode(ok.message)
                .unwrap()
                .model_version,
            "7"
        );
        closed.recv().await.unwrap();

        // The server closed that connection: a later call reopens it (a
        // call racing the close may fail once, as an I/O error).
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            let outcome = conn.call(&uri, &headers, &call("missing"), 3).await;
            let done = outcome.as_ref().err().map(|e| e.0.clone()) == Some(ErrorClass::Grpc(5));
            outcomes.push(outcome.err());
            if done {
                break;
            }
        }
        let (class, text) = outcomes.last().unwrap().clone().unwrap();
        assert_eq!(class, ErrorClass::Grpc(5), "{outcomes:?}");
        assert_eq!(text, "no model");
        assert!(
            outcomes[..outcomes.len() - 1]
                .iter()
                .all(|e| e.as_ref().is_some_and(|e| e.0 == ErrorClass::Io)),
            "{outcomes:?}"
        );
        // A second worker on the same link uses the reopened connection.
        assert_eq!(link.current.lock().await.generation, 1);
    }

    #[tokio::test]
    async fn a_server_that_is_gone_is_a_connect_error() {
        let (addr, mut closed, accepting) = one_call_per_connection().await;
        let link = Arc::new(GrpcLink::open(addr).await.unwrap());
        let mut conn = GrpcConn::new(link);
        let uri: Uri = format!("http://{addr}/inference.GRPCInferenceService/ModelInfer")
            .parse()
            .unwrap();
        let message = frame(&ModelInferRequest::default());
        let headers = [ExtraHeader::Fixed(
            hyper::header::HeaderName::from_static("x-n"),
            HeaderValue::from_static("n3"),
        )];
        conn.call(&uri, &headers, &message, 0).await.unwrap();
        closed.recv().await.unwrap();
        accepting.abort();
        let _ = accepting.await; // the listener is closed once the task is gone

        let mut classes = Vec::new();
        for _ in 0..3 {
            let class = conn.call(&uri, &headers, &message, 0).await.unwrap_err().0;
            classes.push(class.clone());
            if class == ErrorClass::Connect {
                break;
            }
        }
        assert_eq!(classes.last(), Some(&ErrorClass::Connect), "{classes:?}");
    }

    #[test]
    fn frames_round_trip() {
        let message = crate::proto::ModelInferRequest {
            model_name: "fraud".into(),
            ..Default::default()
        };
        let framed = frame(&message);
        assert_eq!(framed[0], 0);
        assert_eq!(
            u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize,
            framed.len() - 5
        );
        let inner = unframe(framed).unwrap();
        let back = <crate::proto::ModelInferRequest as prost::Message>::decode(inner).unwrap();
        assert_eq!(back.model_name, "fraud");
    }

    #[test]
    fn bad_frames_are_protocol_errors() {
        let short = unframe(Bytes::from_static(&[0, 0, 0])).unwrap_err();
        assert_eq!(short.0, ErrorClass::Protocol);
        let compressed = unframe(Bytes::from_static(&[1, 0, 0, 0, 1, 7])).unwrap_err();
        assert!(compressed.1.contains("compressed"), "{}", compressed.1);
        let long = unframe(Bytes::from_static(&[0, 0, 0, 0, 9, 7])).unwrap_err();
        assert!(long.1.contains("says 9 bytes"), "{}", long.1);
    }
}
