//! The REST layers: reqwest (JSON, binary, the split endpoint, MLflow
//! `/invocations`, the live probe) and the bare hyper connection, with the
//! checks of their answers.

use super::*;

// ------------------------------------------------------------ layers 4, 5

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Encoding {
    Json,
    Binary,
    /// JSON through the 90/10 sticky endpoint `fraud-ab` (routing included).
    Split,
    /// MLflow `POST /serving-endpoints/fraud/invocations`, `dataframe_split`.
    Invocations,
    /// `GET /v2/health/live`: the HTTP round trip with no inference.
    Live,
}

pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) json_body: Bytes,
    pub(crate) invocations_body: Bytes,
    pub(crate) binary_body: Bytes,
    pub(crate) binary_header_length: String,
}

impl Http {
    pub(crate) fn new(addr: SocketAddr) -> Http {
        let json_body = serde_json::to_vec(&json!({
            "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": ROW}]
        }))
        .expect("JSON body");
        let head = serde_json::to_vec(&json!({
            "inputs": [{
                "name": "input", "shape": [1, 30], "datatype": "FP32",
                "parameters": {"binary_data_size": ROW.len() * 4}
            }],
            "outputs": [
                {"name": "label", "parameters": {"binary_data": true}},
                {"name": "probabilities", "parameters": {"binary_data": true}}
            ]
        }))
        .expect("binary header");
        let mut binary_body = head.clone();
        for x in ROW {
            binary_body.extend_from_slice(&x.to_le_bytes());
        }
        Http {
            client: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("HTTP client"),
            base: format!("http://{addr}"),
            json_body: Bytes::from(json_body),
            invocations_body: Bytes::from(
                serde_json::to_vec(&json!({"dataframe_split": {
                    "columns": (0..30).map(|i| format!("f{i}")).collect::<Vec<_>>(),
                    "data": [ROW],
                }}))
                .expect("invocations body"),
            ),
            binary_body: Bytes::from(binary_body),
            binary_header_length: head.len().to_string(),
        }
    }

    pub(crate) async fn batch(&self, plan: Plan, encoding: Encoding) -> Batch {
        let url = format!("{}/v2/models/fraud/infer", self.base);
        let split = format!("{}/v2/models/fraud-ab/infer", self.base);
        let invocations = format!("{}/serving-endpoints/fraud/invocations", self.base);
        let live = format!("{}/v2/health/live", self.base);
        let mut batch = Batch::with_capacity(plan.calls);
        let mut known_good: Option<Bytes> = None;
        let t = Instant::now();
        while plan.more(batch.calls, t) {
            let t0 = Instant::now();
            let request = match encoding {
                Encoding::Live => self.client.get(&live),
                Encoding::Invocations => self
                    .client
                    .post(&invocations)
                    .header("content-type", "application/json")
                    .body(self.invocations_body.clone()),
                Encoding::Split => self
                    .client
                    .post(&split)
                    .header("content-type", "application/json")
                    .header("x-user-id", champion_user())
                    .body(self.json_body.clone()),
                Encoding::Json => self
                    .client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(self.json_body.clone()),
                Encoding::Binary => self
                    .client
                    .post(&url)
                    .header("content-type", "application/octet-stream")
                    .header(
                        "inference-header-content-length",
                        &self.binary_header_length,
                    )
                    .body(self.binary_body.clone()),
            };
            let response = request.send().await.expect("HTTP request");
            let status = response.status();
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let server = [
                header("x-podium-total-us"),
                header("x-podium-inference-us"),
                header("x-podium-queue-us"),
            ];
            let header_length = header("inference-header-content-length");
            let body = response.bytes().await.expect("response body");
            batch.record(t0.elapsed());

            assert_eq!(
                status,
                reqwest::StatusCode::OK,
                "infer failed: {}",
                String::from_utf8_lossy(&body)
            );
            if encoding != Encoding::Live {
                batch.record_server(server);
            }
            // Deterministic model, same input: once a body has been checked,
            // identical bytes need no second parse.
            if known_good.as_ref() != Some(&body) {
                match encoding {
                    Encoding::Json | Encoding::Split => check_json(&body),
                    Encoding::Invocations => check_predictions(&body),
                    Encoding::Binary => check_binary(&body, header_length),
                    Encoding::Live => assert_eq!(&body[..], br#"{"live":true}"#),
                }
                known_good = Some(body);
            }
        }
        batch.wall = t.elapsed();
        batch
    }
}

/// A user id that the `fraud-ab` endpoint (experiment "bench", 90/10)
/// assigns to the champion, so the split layer's answers are v1's.
pub(crate) fn champion_user() -> &'static str {
    static USER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    USER.get_or_init(|| {
        let bounds = podium::routing::split::bounds(&[90.0, 10.0]).expect("weights");
        (0..)
            .map(|i| format!("user-{i}"))
            .find(|u| {
                podium::routing::split::pick(&bounds, podium::routing::split::bucket("bench", u))
                    == 0
            })
            .expect("a champion user")
    })
}

pub(crate) fn output<'a>(head: &'a Value, name: &str) -> (usize, &'a Value) {
    head["outputs"]
        .as_array()
        .and_then(|outs| outs.iter().enumerate().find(|(_, o)| o["name"] == name))
        .unwrap_or_else(|| panic!("response has no output {name}: {head}"))
}

/// An MLflow answer: `{"predictions": {"label": [0], "probabilities": [[p0, p1]]}}`.
pub(crate) fn check_predictions(body: &[u8]) {
    let v: Value = serde_json::from_slice(body).expect("invocations answer is JSON");
    let label: Vec<i64> = serde_json::from_value(v["predictions"]["label"].clone()).expect("label");
    let probabilities: Vec<f32> =
        serde_json::from_value(v["predictions"]["probabilities"][0].clone())
            .expect("probabilities");
    expect_answer(&label, &probabilities, "MLflow /invocations");
}

pub(crate) fn check_json(body: &[u8]) {
    let v: Value = serde_json::from_slice(body).expect("response JSON");
    let floats = |name: &str| -> Vec<f64> {
        output(&v, name).1["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} has no data: {v}"))
            .iter()
            .map(|x| x.as_f64().expect("number"))
            .collect()
    };
    let label: Vec<i64> = floats("label").iter().map(|&x| x as i64).collect();
    let probabilities: Vec<f32> = floats("probabilities").iter().map(|&x| x as f32).collect();
    expect_answer(&label, &probabilities, "REST JSON");
}

pub(crate) fn check_binary(body: &[u8], header_length: Option<u64>) {
    let n =
        header_length.expect("binary response without Inference-Header-Content-Length") as usize;
    let head: Value = serde_json::from_slice(&body[..n]).expect("response JSON header");
    let mut offset = n;
    let mut raw = std::collections::HashMap::new();
    for out in head["outputs"].as_array().expect("outputs") {
        let size = out["parameters"]["binary_data_size"]
            .as_u64()
            .unwrap_or_else(|| panic!("output not binary: {out}")) as usize;
        raw.insert(
            out["name"].as_str().expect("name").to_string(),
            &body[offset..offset + size],
        );
        offset += size;
    }
    assert_eq!(offset, body.len(), "binary response length mismatch");
    let _ = output(&head, "label");
    let label: Vec<i64> = raw["label"]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let probabilities: Vec<f32> = raw["probabilities"]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    expect_answer(&label, &probabilities, "REST binary");
}

// ------------------------------------------- diagnostic: bare connection

/// One hyper HTTP/1.1 connection (`hyper::client::conn::http1`: no pool, no
/// redirect or timeout layers) sending a pre-built request. Compared with
/// the reqwest layer it shows what the client library adds.
pub(crate) struct BareConnection {
    pub(crate) sender: SendRequest<Full<Bytes>>,
    pub(crate) request: hyper::Request<Full<Bytes>>,
    pub(crate) encoding: Encoding,
}

impl BareConnection {
    pub(crate) async fn connect(
        addr: SocketAddr,
        http: &Http,
        encoding: Encoding,
    ) -> BareConnection {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let request =
            hyper::Request::post("/v2/models/fraud/infer").header("host", addr.to_string());
        let request = match encoding {
            Encoding::Json => request
                .header("content-type", "application/json")
                .body(Full::new(http.json_body.clone())),
            _ => request
                .header("content-type", "application/octet-stream")
                .header(
                    "inference-header-content-length",
                    &http.binary_header_length,
                )
                .body(Full::new(http.binary_body.clone())),
        }
        .expect("request");
        BareConnection {
            sender,
            request,
            encoding,
        }
    }

    /// A copy of the pre-built request (the body is a shared `Bytes`).
    pub(crate) fn request(&self) -> hyper::Request<Full<Bytes>> {
        let mut request = hyper::Request::new(self.request.body().clone());
        *request.method_mut() = self.request.method().clone();
        *request.uri_mut() = self.request.uri().clone();
        *request.headers_mut() = self.request.headers().clone();
        request
    }

    pub(crate) async fn batch(&mut self, plan: Plan) -> Batch {
        let mut batch = Batch::with_capacity(plan.calls);
        let mut known_good: Option<Bytes> = None;
        let t = Instant::now();
        while plan.more(batch.calls, t) {
            let request = self.request();
            let t0 = Instant::now();
            let response = self.sender.send_request(request).await.expect("send");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("receive").to_bytes();
            batch.record(t0.elapsed());
            assert_eq!(
                parts.status,
                200,
                "infer failed: {}",
                String::from_utf8_lossy(&body)
            );
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
            };
            batch.record_server([
                header("x-podium-total-us"),
                header("x-podium-inference-us"),
                header("x-podium-queue-us"),
            ]);
            if known_good.as_ref() != Some(&body) {
                match self.encoding {
                    Encoding::Json => check_json(&body),
                    _ => check_binary(&body, header("inference-header-content-length")),
                }
                known_good = Some(body);
            }
        }
        batch.wall = t.elapsed();
        batch
    }
}
