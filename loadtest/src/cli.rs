//! The command line: flags, their checks (each error names the fix), and
//! turning them into a [`RunConfig`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::flip::FlipConfig;
use crate::input::{self, Tensor};
use crate::protocol::{chain, resolve, Prepared, Protocol, Target};
use crate::replay::args::ReplayArgs;
use crate::run::RunConfig;
use crate::schedule::Pacing;

/// Load generator for Open Inference Protocol servers (Podium or any other):
/// OIP REST JSON or binary, OIP gRPC, MLflow /invocations; closed or open
/// loop; HDR latency percentiles; per-arm and per-version breakdown from
/// Podium's x-podium-* headers; the alias-flip drill.
#[derive(Parser, Debug, Clone)]
#[command(name = "podium-loadtest", version)]
pub struct Args {
    /// Server URL: the REST listener, or the gRPC one with --protocol grpc
    /// [default: http://127.0.0.1:8000, gRPC http://127.0.0.1:8001]
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long, value_enum, default_value = "rest-json")]
    pub protocol: Protocol,
    /// Model or endpoint to call (with --protocol mlflow, empty means POST /invocations)
    #[arg(short, long)]
    pub model: Option<String>,
    /// Call this version instead of the default route
    #[arg(long)]
    pub model_version: Option<String>,
    /// Workers (one connection each for REST); the most requests in flight in an open loop
    #[arg(short, long, default_value_t = 8)]
    pub concurrency: usize,
    /// Open loop: requests per second (latency from the intended send time); omit for a closed loop.
    /// With --replay: send at this fixed rate instead of the recorded pacing
    #[arg(long)]
    pub rate: Option<f64>,
    /// Measured time after the warm-up, e.g. 10s, 500ms, 2m [default: 10s unless --requests]
    #[arg(short, long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Measured requests after the warm-up (with --duration: whichever comes first)
    #[arg(short = 'n', long)]
    pub requests: Option<u64>,
    /// Warm-up before measuring; its requests are reported apart
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    pub warmup: Duration,
    /// Per request; past it the request counts as a timeout
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Input: an OIP request JSON file, or an .npy file (NAME=FILE.npy names the input)
    /// [default: generated from the model's metadata]
    #[arg(long)]
    pub input: Option<String>,
    /// Batch size of generated inputs (the first variable dimension)
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Seed of generated inputs
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Generate N inputs (seeds SEED, SEED+1, …) and send them in turn, so the server, its
    /// caches and its inference table see varied rows instead of one repeated body (BYTES inputs
    /// stay the same; the flip drill compares outputs per input, so a large N checks fewer)
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub distinct_inputs: usize,
    /// Extra request header (gRPC metadata), "NAME: VALUE". The letter n in curly braces
    /// in the value becomes the request's number, e.g. one user per request (see README).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// HTTP/2 connections shared by the gRPC workers [default: one per worker up to 32,
    /// the count that served most on 16 cores; 1 is what a single-channel client such as
    /// tritonclient sees]
    #[arg(long)]
    pub grpc_connections: Option<usize>,
    /// The flip drill: move MODEL's ALIAS between VERSIONS (comma-separated) through the admin API during the run
    #[arg(long, num_args = 3, value_names = ["MODEL", "ALIAS", "VERSIONS"])]
    pub flip: Option<Vec<String>>,
    /// Time from one flip's start to the next one's
    #[arg(long, value_parser = parse_duration, default_value = "200ms")]
    pub every: Duration,
    /// End the drill after this many flips: the run stops one --every later
    /// (or at --duration / --requests, if sooner)
    #[arg(long)]
    pub flips: Option<usize>,
    /// Before each flip, wait until this many answers were checked against the version in force
    #[arg(long, default_value_t = 0)]
    pub settle: u64,
    /// Admin API bearer token
    #[arg(long, env = "PODIUM_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// REST base URL of the admin API [default: --url, unless --protocol grpc]
    #[arg(long)]
    pub admin_url: Option<String>,
    /// Concurrency sweep: one run per level, one row each, e.g. 1,8,64
    #[arg(long, value_delimiter = ',')]
    pub sweep: Option<Vec<usize>>,
    /// Print the report as JSON on stdout (no table)
    #[arg(long)]
    pub json: bool,
    /// No live progress line (it is shown only when stderr is a terminal anyway)
    #[arg(short, long)]
    pub quiet: bool,
    /// Tokio worker threads of the generator [default: one per core]
    #[arg(long)]
    pub threads: Option<usize>,
    #[command(flatten)]
    pub replay: ReplayArgs,
}

/// `500us`, `200ms`, `2s`, `1.5s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; write e.g. 500ms, 10s or 2m"))?;
    let seconds = match unit.trim() {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" | "min" => value * 60.0,
        "" => return Err(format!("{s:?} has no unit; write e.g. {s}s or {s}ms")),
        other => return Err(format!("{s:?}: unknown unit {other:?}; use us, ms, s or m")),
    };
    if !seconds.is_finite() || !(0.0..=366.0 * 86400.0).contains(&seconds) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

pub(crate) fn parse_header(h: &str) -> Result<(String, String)> {
    let (k, v) = h
        .split_once(':')
        .ok_or_else(|| anyhow!("--header {h:?}: write it as \"NAME: VALUE\""))?;
    let k = k.trim();
    if k.is_empty() {
        bail!("--header {h:?} has no name; write it as \"NAME: VALUE\"");
    }
    Ok((k.to_string(), v.trim().to_string()))
}

/// What the command line asks for.
pub struct Plan {
    pub run: RunConfig,
    pub sweep: Option<Vec<usize>>,
    pub json: bool,
    pub input: Option<String>,
    pub batch: u64,
    pub seed: u64,
    /// Generated inputs to send in turn.
    pub distinct_inputs: usize,
    pub threads: Option<usize>,
}

impl Args {
    /// Checks the flags and builds the plan (`terminal`: whether stderr is one).
    pub fn plan(&self, terminal: bool) -> Result<Plan> {
        let protocol = self.protocol;
        let url = self.url.clone().unwrap_or_else(|| {
            match protocol {
                Protocol::Grpc => "http://127.0.0.1:8001",
                _ => "http://127.0.0.1:8000",
            }
            .to_string()
        });
        let model = match (&self.model, protocol) {
            (Some(m), _) => m.clone(),
            (None, Protocol::Mlflow) => String::new(),
            (None, _) => {
                bail!("--model is required: the model or endpoint to call, e.g. --model fraud (or --replay TABLE_DIR to send recorded requests)")
            }
        };
        let headers = self
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>>>()?;
        let pacing = match self.rate {
            Some(rate) if rate.is_finite() && rate > 0.0 => Pacing::Open { rate },
            Some(rate) => bail!("--rate {rate}: give a positive number of requests per second"),
            None => Pacing::Closed,
        };
        let duration = match (self.duration, self.requests) {
            (None, None) => Some(Duration::from_secs(10)),
            (d, _) => d,
        };
        if let Some(levels) = &self.sweep {
            if levels.is_empty() || levels.contains(&0) {
                bail!("--sweep takes concurrency levels of at least 1, e.g. --sweep 1,8,64");
            }
            if self.flip.is_some() {
                bail!("--sweep and --flip do not go together; run the flip drill on its own");
            }
        }
        if self.batch == 0 {
            bail!("--batch must be at least 1");
        }
        if !(1..=MAX_DISTINCT_INPUTS).contains(&self.distinct_inputs) {
            bail!(
                "--distinct-inputs {} is out of range: give 1 to {MAX_DISTINCT_INPUTS}",
                self.distinct_inputs
            );
        }
        if self.distinct_inputs > 1 && self.input.is_some() {
            bail!("--distinct-inputs generates its inputs from the model's metadata, so it does not go with --input; leave out one of them (recorded traffic is sent with --replay TABLE_DIR)");
        }
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        let flip = match &self.flip {
            None => None,
            Some(parts) => {
                let [model, alias, versions] = parts.as_slice() else {
                    bail!("--flip takes MODEL ALIAS VERSIONS, e.g. --flip fraud champion 1,2");
                };
                let versions = versions
                    .split(',')
                    .map(|v| {
                        v.trim().parse::<u64>().map_err(|_| {
                            anyhow!("--flip versions {versions:?}: {v:?} is not a version number; write e.g. 1,2")
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let admin_url = match (&self.admin_url, protocol) {
                    (Some(u), _) => u.clone(),
                    (None, Protocol::Grpc) => bail!(
                        "--flip with --protocol grpc needs --admin-url: the REST listener that serves the admin API"
                    ),
                    (None, _) => url.clone(),
                };
                let cfg = FlipConfig {
                    admin_url,
                    model: model.clone(),
                    alias: alias.clone(),
                    versions,
                    every: self.every,
                    token: self.token.clone(),
                    max_flips: self.flips,
                    settle: self.settle,
                };
                cfg.check()?;
                Some(cfg)
            }
        };
        let run = RunConfig {
            target: Target {
                url,
                protocol,
                model,
                version: self.model_version.clone(),
                headers,
                timeout: self.timeout,
                inspect_body: false,
            },
            concurrency: self.concurrency,
            pacing,
            duration,
            requests: self.requests,
            warmup: self.warmup,
            grpc_connections: self.grpc_connections,
            flip,
            progress: terminal && !self.quiet && !self.json,
        };
        run.check()?;
        Ok(Plan {
            run,
            sweep: self.sweep.clone(),
            json: self.json,
            input: self.input.clone(),
            batch: self.batch,
            seed: self.seed,
            distinct_inputs: self.distinct_inputs,
            threads: self.threads,
        })
    }
}

/// The most `--distinct-inputs`: every one is prepared before the run.
pub const MAX_DISTINCT_INPUTS: usize = 100_000;

/// The most raw tensor bytes the distinct inputs may hold together (their
/// encoded bodies take a few times that).
const MAX_INPUT_BYTES: usize = 256 << 20;

/// The requests' input tensors, one set per distinct request: from
/// `--input`, else generated from the model's metadata (`GET
/// /v2/models/{m}`, or gRPC `ModelMetadata`), `--distinct-inputs` of them.
pub async fn load_inputs(plan: &Plan) -> Result<Vec<Vec<Tensor>>> {
    if let Some(spec) = &plan.input {
        return Ok(vec![read_input(plan, spec).await?]);
    }
    let meta = metadata(plan)
        .await
        .context("generating an input from the model's metadata (or give one with --input FILE)")?;
    let mut inputs = Vec::with_capacity(plan.distinct_inputs);
    let mut bytes = 0usize;
    for i in 0..plan.distinct_inputs as u64 {
        let tensors = input::generate(&meta, plan.batch, plan.seed.wrapping_add(i))?;
        bytes += tensors.iter().map(|t| t.raw.len()).sum::<usize>();
        if bytes > MAX_INPUT_BYTES {
            bail!(
                "{} distinct inputs of this model hold more than {} MiB before they are even encoded; lower --distinct-inputs (or --batch)",
                plan.distinct_inputs,
                MAX_INPUT_BYTES >> 20
            );
        }
        inputs.push(tensors);
    }
    Ok(inputs)
}

/// The input of `--input SPEC`: an OIP JSON request or an NPY file.
async fn read_input(plan: &Plan, spec: &str) -> Result<Vec<Tensor>> {
    let (name, path) = match spec.split_once('=') {
        Some((n, p)) if p.ends_with(".npy") => (Some(n.to_string()), PathBuf::from(p)),
        _ => (None, PathBuf::from(spec)),
    };
    let bytes =
        std::fs::read(&path).with_context(|| format!("cannot read --input {}", path.display()))?;
    if path.extension().is_none_or(|e| e != "npy") {
        return input::from_json(&bytes).with_context(|| path.display().to_string());
    }
    let name = match name {
        Some(n) => n,
        None => {
            let meta = metadata(plan).await.with_context(|| {
                format!(
                    "naming the input of {}: write --input NAME={}",
                    path.display(),
                    path.display()
                )
            })?;
            meta["inputs"][0]["name"]
                .as_str()
                .ok_or_else(|| {
                    anyhow!(
                        "the model's metadata names no input; write --input NAME={}",
                        path.display()
                    )
                })?
                .to_string()
        }
    };
    Ok(vec![
        input::from_npy(&name, &bytes).with_context(|| path.display().to_string())?
    ])
}

/// The model's OIP metadata as JSON.
pub async fn metadata(plan: &Plan) -> Result<Value> {
    let t = &plan.run.target;
    if t.model.is_empty() {
        bail!("there is no --model whose metadata could describe the input; name one with --model or give the input with --input FILE");
    }
    let version_path = t
        .version
        .as_ref()
        .map(|v| format!("/versions/{v}"))
        .unwrap_or_default();
    if t.protocol == Protocol::Grpc {
        let prepared = Prepared::new(t, &[Vec::new()]).await?;
        let channel = crate::grpc::tonic_channel(&prepared.grpc_url).await?;
        let mut client =
            crate::proto::grpc_inference_service_client::GrpcInferenceServiceClient::new(channel);
        let m = client
            .model_metadata(crate::proto::ModelMetadataRequest {
                name: t.model.clone(),
                version: t.version.clone().unwrap_or_default(),
            })
            .await
            .map_err(|s| {
                anyhow!(
                    "gRPC ModelMetadata {}: {:?} {}",
                    t.model,
                    s.code(),
                    s.message()
                )
            })?
            .into_inner();
        let inputs: Vec<Value> = m
            .inputs
            .iter()
            .map(|i| serde_json::json!({"name": i.name, "datatype": i.datatype, "shape": i.shape}))
            .collect();
        return Ok(serde_json::json!({ "name": m.name, "inputs": inputs }));
    }
    let address = resolve(&t.url).await?;
    let path = format!("{}/v2/models/{}{version_path}", address.prefix, t.model);
    let stream = tokio::net::TcpStream::connect(address.addr)
        .await
        .with_context(|| {
            format!(
                "cannot connect to {} (is the server running there?)",
                address.authority
            )
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = hyper::Request::get(&path)
        .header(hyper::header::HOST, &address.authority)
        .body(Empty::<Bytes>::new())?;
    let response = tokio::time::timeout(t.timeout, sender.send_request(request))
        .await
        .map_err(|_| anyhow!("GET {path}: no answer within {:?}", t.timeout))?
        .map_err(|e| anyhow!("GET {path}: {}", chain(&e)))?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: the answer is not JSON"))
}

#[cfg(test)]
#[path = "cli_tests.rs"]
mod tests;
