//! The client against a small h2 gRPC server in the test: answers,
//! statuses, connections closed by the server, a server that is gone.

use super::*;
use crate::proto::{ModelInferRequest, ModelInferResponse};
use prost::Message;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How the test server treats its connections.
#[derive(Clone, Copy)]
enum Serve {
    /// Answers calls until one for model "close", then closes the connection.
    UntilClose,
    /// Closes the first connection at once, without a word; serves the
    /// next ones as `UntilClose`.
    DropFirst,
}

/// The test server: model "missing" gets NOT_FOUND (trailers only), a call
/// without gRPC's headers INVALID_ARGUMENT naming what is wrong, any other
/// an answer of version 7 ("split": its message in two DATA frames). Each closed connection is reported on the
/// channel; aborting the handle closes the listener.
async fn server(
    serve: Serve,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<()>,
    tokio::task::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (closed_tx, closed) = mpsc::unbounded_channel();
    let accepting = tokio::spawn(async move {
        let mut first = true;
        while let Ok((tcp, _)) = listener.accept().await {
            if std::mem::take(&mut first) && matches!(serve, Serve::DropFirst) {
                drop(tcp);
                let _ = closed_tx.send(());
                continue;
            }
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut conn = h2::server::handshake(tcp).await.unwrap();
                while let Some(Ok((request, respond))) = conn.accept().await {
                    if answer(request, respond).await {
                        break;
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

/// Answers one call; true when the connection is to close after it.
async fn answer(
    request: hyper::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) -> bool {
    let (head, mut body) = request.into_parts();
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        data.extend_from_slice(&chunk.unwrap());
    }
    let call = unframe(data.freeze())
        .ok()
        .and_then(|m| ModelInferRequest::decode(m).ok());
    let wrong = if head.uri.path() != "/inference.GRPCInferenceService/ModelInfer" {
        Some(format!("path {}", head.uri.path()))
    } else if head
        .headers
        .get("content-type")
        .is_none_or(|v| v != "application/grpc")
    {
        Some("content-type".to_string())
    } else if head.headers.get("te").is_none_or(|v| v != "trailers") {
        Some("te".to_string())
    } else if head.headers.get("x-n").is_none_or(|v| v != "n3") {
        Some("x-n".to_string())
    } else if call.is_none() {
        Some("message".to_string())
    } else {
        None
    };
    let model = call.map(|c| c.model_name).unwrap_or_default();
    let answer = hyper::Response::builder().header("content-type", "application/grpc");
    if wrong.is_some() || model == "missing" {
        let (code, text) = match wrong {
            Some(what) => ("3", format!("wrong {what}")),
            None => ("5", "no%20model".to_string()),
        };
        let refusal = answer
            .header("grpc-status", code)
            .header("grpc-message", text)
            .body(())
            .unwrap();
        respond.send_response(refusal, true).unwrap();
        return false;
    }
    let head = answer
        .header("x-podium-model-version", "7")
        .body(())
        .unwrap();
    let mut out = respond.send_response(head, false).unwrap();
    let message = ModelInferResponse {
        model_version: "7".into(),
        ..Default::default()
    };
    let mut framed = frame(&message).unwrap();
    if model == "split" {
        // The message in two DATA frames, as a large answer comes.
        out.send_data(framed.split_to(3), false).unwrap();
    }
    out.send_data(framed, false).unwrap();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    out.send_trailers(trailers).unwrap();
    model == "close"
}

fn uri(addr: SocketAddr) -> Uri {
    format!("http://{addr}/inference.GRPCInferenceService/ModelInfer")
        .parse()
        .unwrap()
}

fn headers() -> [ExtraHeader; 1] {
    [ExtraHeader::Numbered(
        hyper::header::HeaderName::from_static("x-n"),
        "n{n}".into(),
    )]
}

fn message(model: &str) -> Bytes {
    frame(&ModelInferRequest {
        model_name: model.into(),
        ..Default::default()
    })
    .unwrap()
}

/// One call, failing the test instead of hanging it.
async fn call(
    conn: &mut GrpcConn,
    addr: SocketAddr,
    model: &str,
) -> Result<GrpcAnswer, (ErrorClass, String)> {
    tokio::time::timeout(
        Duration::from_secs(10),
        conn.call(&uri(addr), &headers(), &message(model), 3),
    )
    .await
    .expect("a call answers or fails within 10 s")
}

/// Calls until one ends other than with the I/O error of a call racing a
/// closing connection (at most `tries`); every outcome, the last deciding.
async fn settle(
    conn: &mut GrpcConn,
    addr: SocketAddr,
    model: &str,
    tries: usize,
) -> Vec<Result<String, ErrorClass>> {
    let mut outcomes = Vec::new();
    for _ in 0..tries {
        let outcome = call(conn, addr, model)
            .await
            .map(|a| ModelInferResponse::decode(a.message).unwrap().model_version)
            .map_err(|e| e.0);
        let done = outcome != Err(ErrorClass::Io);
        outcomes.push(outcome);
        if done {
            break;
        }
    }
    outcomes
}

#[tokio::test]
async fn answers_statuses_and_a_connection_reopened_after_it_closes() {
    let (addr, mut closed, _accepting) = server(Serve::UntilClose).await;
    let link = Arc::new(GrpcLink::open(addr).await.unwrap());
    let mut worker = GrpcConn::new(Arc::clone(&link));
    let ok = call(&mut worker, addr, "fraud").await.unwrap();
    assert_eq!(ok.headers["x-podium-model-version"], "7");
    assert_eq!(
        ModelInferResponse::decode(ok.message)
            .unwrap()
            .model_version,
        "7"
    );
    let split = call(&mut worker, addr, "split").await.unwrap();
    assert_eq!(
        ModelInferResponse::decode(split.message)
            .unwrap()
            .model_version,
        "7"
    );
    let refused = call(&mut worker, addr, "missing").await.unwrap_err();
    assert_eq!(refused, (ErrorClass::Grpc(5), "no model".to_string()));

    // A second worker shares the connection; then the server closes it.
    let mut other = GrpcConn::new(Arc::clone(&link));
    call(&mut other, addr, "fraud").await.unwrap();
    call(&mut worker, addr, "close").await.unwrap();
    closed.recv().await.unwrap();

    // The next call reopens it (a call racing the close may fail once, as
    // an I/O error); the other worker then finds the new one, and the link
    // was reopened once, not once per worker.
    let outcomes = settle(&mut worker, addr, "fraud", 3).await;
    assert_eq!(outcomes.last(), Some(&Ok("7".to_string())), "{outcomes:?}");
    assert!(outcomes.len() <= 2, "{outcomes:?}");
    let outcomes = settle(&mut other, addr, "fraud", 3).await;
    assert_eq!(outcomes.last(), Some(&Ok("7".to_string())), "{outcomes:?}");
    assert_eq!(link.current.lock().await.generation, 1);
}

#[tokio::test]
async fn a_connection_dead_before_its_first_call_is_reopened() {
    let (addr, mut closed, _accepting) = server(Serve::DropFirst).await;
    // The handshake does not wait for the server, so this "opens".
    let link = Arc::new(GrpcLink::open(addr).await.unwrap());
    closed.recv().await.unwrap();
    // Wait until the client has seen the close, so the first call finds
    // the connection dead before sending anything.
    let mut probe = link.current.lock().await.sender.clone().unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        while poll_fn(|cx| probe.poll_ready(cx)).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the client sees the closed connection");

    let mut worker = GrpcConn::new(link);
    let outcomes = settle(&mut worker, addr, "fraud", 3).await;
    assert_eq!(outcomes.last(), Some(&Ok("7".to_string())), "{outcomes:?}");
}

#[tokio::test]
async fn a_server_that_is_gone_is_a_connect_error() {
    let (addr, mut closed, accepting) = server(Serve::UntilClose).await;
    let link = Arc::new(GrpcLink::open(addr).await.unwrap());
    let mut worker = GrpcConn::new(link);
    call(&mut worker, addr, "close").await.unwrap();
    closed.recv().await.unwrap();
    accepting.abort();
    let _ = accepting.await; // the listener is closed once its task is gone

    let outcomes = settle(&mut worker, addr, "fraud", 3).await;
    assert_eq!(
        outcomes.last(),
        Some(&Err(ErrorClass::Connect)),
        "{outcomes:?}"
    );
}

#[test]
fn frames_round_trip() {
    let framed = message("fraud");
    assert_eq!(framed[0], 0);
    assert_eq!(
        u32::from_be_bytes(framed[1..5].try_into().unwrap()) as usize,
        framed.len() - 5
    );
    let back = ModelInferRequest::decode(unframe(framed).unwrap()).unwrap();
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
