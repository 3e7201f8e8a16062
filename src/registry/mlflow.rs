//! An MLflow Model Registry (open-source MLflow, or the same REST API
//! elsewhere) as Podium's registry, over its REST API.
//!
//! - aliases and versions: `registered-models/search` (every model's aliases
//!   in one call) and `model-versions/search` (one call per model);
//! - artifacts: `model-versions/get-download-uri`, then the model's `MLmodel`
//!   names the ONNX file (the `onnx` flavor's `data`); fetched through the
//!   artifact proxy (`mlflow-artifacts:/…`) or read from a local path;
//! - alias changes write through to MLflow: Podium keeps no second copy.
//!
//! Downloaded artifacts are cached on disk by model and version, written
//! under a temporary name and renamed into place, with their size and
//! SHA-256 recorded: a restart does not download again, and a half-written or
//! damaged file is never loaded. Calls time out and are retried with
//! back-off; an error names MLflow, the call and what to do.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{validate_alias_name, ModelInfo, Registry, Snapshot};
use crate::error::Error;

const API: &str = "/api/2.0/mlflow";
const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";
const MANIFEST: &str = "podium-artifact.json";
const ONNX_FILE: &str = "model.onnx";
/// Pages of one search before Podium gives up (1000 models or 10000
/// versions a page: far more than any registry holds).
const MAX_PAGES: usize = 1000;

/// How Podium talks to MLflow.
#[derive(Clone)]
pub struct MlflowOptions {
    /// `http://HOST:PORT[/prefix]`, as in `MLFLOW_TRACKING_URI`; a leading
    /// `mlflow+` is accepted and dropped.
    pub uri: String,
    /// Sent as `Authorization: Bearer` (`MLFLOW_TRACKING_TOKEN`).
    pub token: Option<String>,
    /// Sent as HTTP basic auth (`MLFLOW_TRACKING_USERNAME` / `_PASSWORD`).
    pub basic: Option<(String, String)>,
    /// Bound on one API call; for a download, on connecting and on each wait for data.
    pub timeout: Duration,
    /// Extra attempts after a call fails in a way that may pass (connection,
    /// timeout, 429, 5xx).
    pub retries: u32,
    /// Where downloaded artifacts are kept.
    pub cache_dir: PathBuf,
}

impl std::fmt::Debug for MlflowOptions {
    /// Credentials are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MlflowOptions")
            .field("uri", &redact_uri(&self.uri))
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("basic", &self.basic.as_ref().map(|(user, _)| (user, "***")))
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("cache_dir", &self.cache_dir)
            .finish()
    }
}

impl MlflowOptions {
    /// Options for `uri` with the defaults: 10 s timeout, 3 retries, credentials
    /// from `MLFLOW_TRACKING_TOKEN` / `MLFLOW_TRACKING_USERNAME` + `_PASSWORD`.
    pub fn from_env(uri: &str, cache_dir: PathBuf) -> MlflowOptions {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        MlflowOptions {
            uri: uri.to_string(),
            token: var("MLFLOW_TRACKING_TOKEN"),
            basic: var("MLFLOW_TRACKING_USERNAME")
                .map(|user| (user, var("MLFLOW_TRACKING_PASSWORD").unwrap_or_default())),
            timeout: Duration::from_secs(10),
            retries: 3,
            cache_dir,
        }
    }
}

/// True for registry names that mean MLflow: `mlflow+http://…`, `http://…`.
pub fn is_mlflow_uri(s: &str) -> bool {
    let s = s.strip_prefix("mlflow+").unwrap_or(s);
    s.starts_with("http://") || s.starts_with("https://")
}

/// An MLflow Model Registry reached over HTTP.
pub struct MlflowRegistry {
    /// `http://host:port[/prefix]`, no trailing slash.
    base: String,
    auth: Option<String>,
    /// API calls: bounded as a whole.
    api: ureq::Agent,
    /// Artifact downloads: bounded per wait, not as a whole.
    download: ureq::Agent,
    retries: u32,
    timeout: Duration,
    /// `<cache_dir>/<host>_<port>[<prefix>]` (encoded): one folder per MLflow server.
    cache: PathBuf,
}

/// Where a version's artifacts are.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Location {
    /// A path under the artifact proxy's root.
    Proxy(String),
    /// A directory on this machine.
    Local(PathBuf),
}

/// Written next to a cached ONNX file; the file is used only if it matches.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Manifest {
    artifact_uri: String,
    onnx_path: String,
    size: u64,
    sha256: String,
}

impl MlflowRegistry {
    pub fn new(options: MlflowOptions) -> Result<MlflowRegistry, Error> {
        let base = parse_uri(&options.uri)?;
        let auth = match (&options.token, &options.basic) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some((user, password))) => {
                use base64::Engine;
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(format!("Basic {encoded}"))
            }
            (None, None) => None,
        };
        let agent = |global: Option<Duration>| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(global)
                .timeout_connect(Some(options.timeout))
                .timeout_recv_response(Some(options.timeout))
                // A download may take long in all; each wait for data may not.
                .timeout_per_read(Some(options.timeout))
                .user_agent(concat!("podium/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        // host_port, then the path prefix (if any), encoded: two MLflow
        // servers behind one host (http://h/a, http://h/b) keep apart.
        let rest = base.trim_start_matches("http://");
        let (host, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let cache = options
            .cache_dir
            .join(safe_name(&format!("{}{prefix}", host.replace(':', "_"))));
        Ok(MlflowRegistry {
            api: agent(Some(options.timeout)),
            download: agent(None),
            base,
            auth,
            retries: options.retries,
            timeout: options.timeout,
            cache,
        })
    }

    /// Where downloaded artifacts of this server are kept.
    pub fn cache_dir(&self) -> &Path {
        &self.cache
    }

    // ------------------------------------------------------------ calls

    /// One API call, retried with back-off when it may pass; the JSON answer.
    fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let url = format!("{}{API}/{path}", self.base);
        let what = format!("{method} {API}/{path}");
        self.with_retries(&what, || {
            let mut response = self.send(&self.api, method, &url, query, body)?;
            let status = response.status().as_u16();
            let text = response
                .body_mut()
                .with_config()
                .limit(64 << 20)
                .read_to_string()
                .map_err(|e| self.transport(&what, e))?;
            if (200..300).contains(&status) {
                return serde_json::from_str(&text).map_err(|e| {
                    Attempt::Final(Error::Registry(format!(
                        "MLflow at {} answered {what} with something that is not JSON ({e}); is --registry pointing at an MLflow server?",
                        self.base
                    )))
                });
            }
            Err(self.http_error(&what, status, &text))
        })
    }

    fn send(
        &self,
        agent: &ureq::Agent,
        method: &str,
        url: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<ureq::http::Response<ureq::Body>, Attempt> {
        let what = format!("{method} {url}");
        let result = match method {
            "GET" => {
                let mut req = agent.get(url);
                for (k, v) in query {
                    req = req.query(*k, *v);
                }
                if let Some(auth) = &self.auth {
                    req = req.header("Authorization", auth);
                }
                req.call()
            }
            _ => {
                let mut req = match method {
                    "POST" => agent.post(url),
                    "PATCH" => agent.patch(url),
                    _ => agent.delete(url).force_send_body(),
                };
                if let Some(auth) = &self.auth {
                    req = req.header("Authorization", auth);
                }
                let body = body.map(Value::to_string).unwrap_or_else(|| "{}".into());
                req.header("Content-Type", "application/json")
                    .send(body.as_bytes())
            }
        };
        result.map_err(|e| self.transport(&what, e))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are
    /// spent (waits 100 ms, 200 ms, 400 ms, … up to 2 s between attempts).
    fn with_retries<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, Error> {
        let mut tries = 0;
        loop {
            match attempt() {
                Ok(v) => return Ok(v),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(why)) if tries >= self.retries => {
                    let tried = if self.retries == 0 {
                        String::new()
                    } else {
                        format!(" ({} attempts)", tries + 1)
                    };
                    return Err(Error::Registry(format!("{why}{tried}")));
                }
                Err(Attempt::Retry(why)) => {
                    tracing::debug!("{what}: {why}; retrying");
                    std::thread::sleep(backoff(tries));
                    tries += 1;
                }
            }
        }
    }

    /// A transport failure, in words: connection refused, timeout, ….
    fn transport(&self, what: &str, e: ureq::Error) -> Attempt {
        let base = &self.base;
        match e {
            ureq::Error::Timeout(_) => Attempt::Retry(format!(
                "MLflow at {base} did not answer {what} within {:?} (--registry-timeout-secs)",
                self.timeout
            )),
            ureq::Error::HostNotFound => Attempt::Retry(format!(
                "cannot resolve the MLflow host of {base}; check --registry / MLFLOW_TRACKING_URI"
            )),
            ureq::Error::ConnectionFailed => Attempt::Retry(format!(
                "cannot connect to MLflow at {base}; is `mlflow server` running there?"
            )),
            ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => {
                Attempt::Retry(format!(
                    "cannot connect to MLflow at {base} (connection refused); is `mlflow server` running there?"
                ))
            }
            ureq::Error::Io(io) if io.kind() == ErrorKind::TimedOut => Attempt::Retry(format!(
                "MLflow at {base} did not answer {what} within {:?} (--registry-timeout-secs)",
                self.timeout
            )),
            other => Attempt::Retry(format!("{what} to MLflow at {base} failed: {other}")),
        }
    }

    /// An HTTP error answer, mapped to what the user can do about it.
    fn http_error(&self, what: &str, status: u16, body: &str) -> Attempt {
        let base = &self.base;
        let parsed: Option<(String, String)> =
            serde_json::from_str::<Value>(body).ok().and_then(|v| {
                Some((
                    v.get("error_code")?.as_str()?.to_string(),
                    v.get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string(),
                ))
            });
        let detail = match &parsed {
            Some((code, message)) => format!("{code}: {message}"),
            None => body
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string(),
        };
        match (status, parsed.as_ref().map(|(c, _)| c.as_str())) {
            (401 | 403, _) => Attempt::Final(Error::Registry(format!(
                "MLflow at {base} refused Podium's credentials (HTTP {status} for {what}: {detail}); set MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, to an identity allowed to read the registry"
            ))),
            (429 | 500 | 502 | 503 | 504, _) => Attempt::Retry(format!(
                "MLflow at {base} answered HTTP {status} to {what}: {detail}"
            )),
            (_, Some("RESOURCE_DOES_NOT_EXIST")) => {
                Attempt::Final(Error::NotFound(format!("MLflow: {detail}")))
            }
            (_, Some("INVALID_PARAMETER_VALUE")) => {
                Attempt::Final(Error::InvalidInput(format!("MLflow: {detail}")))
            }
            (_, Some(_)) => Attempt::Final(Error::Registry(format!(
                "MLflow at {base} answered HTTP {status} to {what}: {detail}"
            ))),
            (_, None) => Attempt::Final(Error::Registry(format!(
                "MLflow at {base} answered HTTP {status} to {what} without an MLflow error ({detail:?}); is --registry pointing at an MLflow server (and its path prefix, if any)?"
            ))),
        }
    }

    // ------------------------------------------------------------ reads

    /// Every registered model with its aliases (all pages).
    fn registered_models(&self) -> Result<BTreeMap<String, BTreeMap<String, u64>>, Error> {
        let mut models = BTreeMap::new();
        let mut token = String::new();
        let mut pages = Vec::new();
        loop {
            let mut query = vec![("max_results", "1000")];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            let page = self.call("GET", "registered-models/search", &query, None)?;
            for m in page["registered_models"].as_array().into_iter().flatten() {
                let Some(name) = m["name"].as_str() else {
                    continue;
                };
                models.insert(name.to_string(), parse_aliases(&m["aliases"]));
            }
            match self.next_page(&page, &mut pages, "registered-models/search")? {
                Some(next) => token = next,
                None => return Ok(models),
            }
        }
    }

    /// The next page's token, or None after the last page; an error when
    /// the server repeats a token or the pages do not end (it would loop).
    fn next_page(
        &self,
        page: &Value,
        seen: &mut Vec<String>,
        what: &str,
    ) -> Result<Option<String>, Error> {
        let next = match page["next_page_token"].as_str() {
            Some(next) if !next.is_empty() => next.to_string(),
            _ => return Ok(None),
        };
        if seen.contains(&next) {
            return Err(Error::Registry(format!(
                "MLflow at {} repeated the page token {next:?} for {what} after {} pages; the server's paging is broken (upgrade MLflow, or check any proxy in front of it)",
                self.base,
                seen.len() + 1
            )));
        }
        if seen.len() + 1 >= MAX_PAGES {
            return Err(Error::Registry(format!(
                "MLflow at {} still had more pages of {what} after {MAX_PAGES}; the server's paging does not end (upgrade MLflow, or serve fewer models with --models)",
                self.base
            )));
        }
        seen.push(next.clone());
        Ok(Some(next))
    }

    /// The versions of `model` that finished registering (all pages).
    fn ready_versions(&self, model: &str) -> Result<Vec<u64>, Error> {
        let filter = format!("name={}", quote(model));
        let mut versions = Vec::new();
        let mut token = String::new();
        let mut pages = Vec::new();
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "10000")];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            let page = self.call("GET", "model-versions/search", &query, None)?;
            for v in page["model_versions"].as_array().into_iter().flatten() {
                // PENDING_REGISTRATION / FAILED_REGISTRATION have no usable artifact yet.
                let ready = v["status"].as_str().is_none_or(|s| s == "READY");
                if let (true, Some(n)) = (ready, v["version"].as_str().and_then(parse_version)) {
                    versions.push(n);
                }
            }
            match self.next_page(&page, &mut pages, "model-versions/search")? {
                Some(next) => token = next,
                None => break,
            }
        }
        versions.sort_unstable();
        versions.dedup();
        Ok(versions)
    }

    fn unknown_model(&self, model: &str, known: &BTreeMap<String, BTreeMap<String, u64>>) -> Error {
        let names: Vec<&str> = known.keys().map(String::as_str).take(20).collect();
        Error::NotFound(format!(
            "MLflow at {} has no registered model \"{model}\" (registered: {}); register it with mlflow.onnx.log_model(..., registered_model_name=\"{model}\")",
            self.base,
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        ))
    }

    // -------------------------------------------------------- artifacts

    /// Where the artifacts of `model` `version` are, as MLflow says.
    fn download_uri(&self, model: &str, version: u64) -> Result<String, Error> {
        let v = version.to_string();
        let answer = self
            .call(
                "GET",
                "model-versions/get-download-uri",
                &[("name", model), ("version", &v)],
                None,
            )
            .map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!(
                    "MLflow at {} has no version {version} of model \"{model}\"",
                    self.base
                )),
                other => other,
            })?;
        answer["artifact_uri"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| {
                Error::Registry(format!(
                    "MLflow at {} gave no artifact_uri for {model} v{version}",
                    self.base
                ))
            })
    }

    /// Turns an artifact URI into a place Podium can read; `runs:/` and
    /// `models:/` URIs are looked up first.
    fn locate(&self, uri: &str, model: &str, version: u64) -> Result<Location, Error> {
        self.locate_inner(uri, model, version, 0)
    }

    fn locate_inner(
        &self,
        uri: &str,
        model: &str,
        version: u64,
        depth: u8,
    ) -> Result<Location, Error> {
        if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
            // mlflow-artifacts:/path or mlflow-artifacts://host:port/path; the
            // proxy is the MLflow server Podium talks to.
            let path = match rest.strip_prefix("//") {
                Some(with_host) => with_host.split_once('/').map(|(_, p)| p).unwrap_or(""),
                None => rest,
            };
            return Ok(Location::Proxy(path.trim_matches('/').to_string()));
        }
        if let Some(path) = uri.strip_prefix("file://") {
            // file:///abs or file://localhost/abs
            let path = path.strip_prefix("localhost").unwrap_or(path);
            return Ok(Location::Local(PathBuf::from(percent_decode(path))));
        }
        if uri.starts_with('/') {
            return Ok(Location::Local(PathBuf::from(uri)));
        }
        if depth < 2 {
            if let Some(rest) = uri.strip_prefix("runs:/") {
                let (run_id, sub) = rest
                    .trim_start_matches('/')
                    .split_once('/')
                    .unwrap_or((rest, ""));
                let run = self.call("GET", "runs/get", &[("run_id", run_id)], None)?;
                let root = run["run"]["info"]["artifact_uri"].as_str().unwrap_or("");
                let joined = format!("{}/{}", root.trim_end_matches('/'), sub);
                return self.locate_inner(joined.trim_end_matches('/'), model, version, depth + 1);
            }
            if let Some(id) = uri.strip_prefix("models:/m-") {
                let logged = self.call("GET", &format!("logged-models/m-{id}"), &[], None)?;
                let root = logged["model"]["info"]["artifact_uri"]
                    .as_str()
                    .unwrap_or("");
                return self.locate_inner(root, model, version, depth + 1);
            }
        }
        let scheme = uri.split(':').next().unwrap_or(uri);
        Err(Error::Unsupported(format!(
            "the artifacts of {model} v{version} are at {uri}, and Podium cannot read \"{scheme}\" locations: serve artifacts through MLflow's proxy (`mlflow server --artifacts-destination {scheme}://...`, URIs mlflow-artifacts:/...) or keep them on a path this machine can read"
        )))
    }

    /// Reads a small artifact (the `MLmodel`).
    fn read_small(&self, at: &Location, rel: &str) -> Result<Vec<u8>, Error> {
        match at {
            Location::Local(dir) => {
                let path = dir.join(rel);
                fs::read(&path).map_err(|e| match e.kind() {
                    ErrorKind::NotFound => {
                        Error::NotFound(format!("{} does not exist", path.display()))
                    }
                    _ => Error::Registry(format!("cannot read {}: {e}", path.display())),
                })
            }
            Location::Proxy(root) => {
                let mut out = Vec::new();
                self.fetch_proxy(root, rel, &mut out)?;
                Ok(out)
            }
        }
    }

    /// Streams `rel` under the proxy path `root` into `out`; checks the length.
    fn fetch_proxy(&self, root: &str, rel: &str, out: &mut dyn Write) -> Result<u64, Error> {
        let path = format!("{}/{}", root, rel);
        let url = format!("{}{ARTIFACTS}/{}", self.base, encode_path(&path));
        let what = format!("GET {ARTIFACTS}/{path}");
        // Only the request is retried: once bytes were written to `out`, a
        // failure is final (the caller starts again from an empty file).
        let response = self.with_retries(&what, || {
            let mut response = self.send(&self.download, "GET", &url, &[], None)?;
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(response);
            }
            let text = response.body_mut().read_to_string().unwrap_or_default();
            Err(self.http_error(&what, status, &text))
        })?;
        let expected = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let mut reader = response.into_body().into_reader();
        let copied = std::io::copy(&mut reader, out).map_err(|e| {
            Error::Registry(format!(
                "downloading {path} from MLflow at {} broke off: {e}",
                self.base
            ))
        })?;
        if let Some(expected) = expected.filter(|&n| n != copied) {
            return Err(Error::Registry(format!(
                "downloading {path} from MLflow at {} stopped after {copied} of {expected} bytes",
                self.base
            )));
        }
        Ok(copied)
    }

    fn version_dir(&self, model: &str, version: u64) -> PathBuf {
        self.cache.join(safe_name(model)).join(version.to_string())
    }

    /// The cached ONNX file in `dir` if it is whole: its manifest matches
    /// (and names `uri`, when given) and its content hashes to the manifest's.
    fn cached(&self, dir: &Path, uri: Option<&str>) -> Option<PathBuf> {
        let manifest: Manifest =
            serde_json::from_slice(&fs::read(dir.join(MANIFEST)).ok()?).ok()?;
        if uri.is_some_and(|u| u != manifest.artifact_uri) {
            return None;
        }
        let path = dir.join(ONNX_FILE);
        let (size, sha256) = hash_file(&path).ok()?;
        if size == manifest.size && sha256 == manifest.sha256 {
            Some(path)
        } else {
            tracing::warn!(
                "cached artifact {} does not match its manifest (size {size}, expected {}); downloading it again",
                path.display(),
                manifest.size
            );
            None
        }
    }

    /// Fetches the ONNX file of `model` `version` into the cache.
    fn download(&self, model: &str, version: u64, uri: &str, dir: &Path) -> Result<PathBuf, Error> {
        let at = self.locate(uri, model, version)?;
        let mlmodel = self.read_small(&at, "MLmodel").map_err(|e| match e {
            Error::NotFound(_) => Error::Unsupported(format!(
                "{model} v{version} is not an MLflow model: {uri} has no MLmodel file; log it with mlflow.onnx.log_model(..., registered_model_name=\"{model}\")"
            )),
            other => other,
        })?;
        let mlmodel = String::from_utf8_lossy(&mlmodel);
        let rel = onnx_data_path(&mlmodel).map_err(|flavors| {
            Error::Unsupported(format!(
                "{model} v{version} has no ONNX flavor (its MLmodel has flavors: {}); Podium serves ONNX models: log it with mlflow.onnx.log_model(onnx_model, name=..., registered_model_name=\"{model}\")",
                if flavors.is_empty() { "none".to_string() } else { flavors.join(", ") }
            ))
        })?;
        check_relative(&rel).map_err(|why| {
            Error::Unsupported(format!(
                "{model} v{version}: the onnx flavor's data path {rel:?} {why}"
            ))
        })?;

        let parent = dir.parent().unwrap_or(&self.cache);
        fs::create_dir_all(parent).map_err(|e| io_error("create", parent, e))?;
        let staging = parent.join(format!(".tmp-{version}-{}-{}", std::process::id(), nanos()));
        fs::create_dir(&staging).map_err(|e| io_error("create", &staging, e))?;
        let result = (|| {
            let path = staging.join(ONNX_FILE);
            let mut file = File::create(&path).map_err(|e| io_error("create", &path, e))?;
            match &at {
                Location::Proxy(root) => {
                    self.fetch_proxy(root, &rel, &mut file)?;
                }
                Location::Local(root) => {
                    let from = root.join(&rel);
                    let mut src = File::open(&from).map_err(|e| match e.kind() {
                        ErrorKind::NotFound => Error::NotFound(format!(
                            "{model} v{version}: its MLmodel names {rel}, but {} does not exist",
                            from.display()
                        )),
                        _ => io_error("open", &from, e),
                    })?;
                    std::io::copy(&mut src, &mut file).map_err(|e| io_error("copy", &from, e))?;
                }
            }
            file.sync_all().map_err(|e| io_error("sync", &path, e))?;
            drop(file);
            let (size, sha256) = hash_file(&path).map_err(|e| io_error("read", &path, e))?;
            let manifest = Manifest {
                artifact_uri: uri.to_string(),
                onnx_path: rel.clone(),
                size,
                sha256,
            };
            let body = serde_json::to_vec_pretty(&manifest)
                .map_err(|e| Error::Internal(format!("encode the artifact manifest: {e}")))?;
            let manifest_path = staging.join(MANIFEST);
            let mut f =
                File::create(&manifest_path).map_err(|e| io_error("create", &manifest_path, e))?;
            f.write_all(&body)
                .map_err(|e| io_error("write", &manifest_path, e))?;
            f.sync_all()
                .map_err(|e| io_error("sync", &manifest_path, e))?;
            // A stale or damaged copy is moved aside first: rename does not
            // replace a non-empty directory.
            if dir.exists() {
                let stale = parent.join(format!(
                    ".stale-{version}-{}-{}",
                    std::process::id(),
                    nanos()
                ));
                if fs::rename(dir, &stale).is_ok() {
                    let _ = fs::remove_dir_all(&stale);
                }
            }
            match fs::rename(&staging, dir) {
                Ok(()) => Ok(dir.join(ONNX_FILE)),
                // Another process put a copy in place meanwhile: use it if whole.
                Err(e) => self
                    .cached(dir, Some(uri))
                    .ok_or_else(|| io_error("rename into", dir, e)),
            }
        })();
        if staging.exists() {
            let _ = fs::remove_dir_all(&staging);
        }
        if result.is_ok() {
            metrics::counter!("podium_registry_artifacts_total", "result" => "downloaded")
                .increment(1);
            tracing::info!(
                "downloaded {model} v{version} from {uri} into {}",
                dir.display()
            );
        }
        result
    }
}

/// One failed attempt: worth retrying or not.
enum Attempt {
    Retry(String),
    Final(Error),
}

impl Registry for MlflowRegistry {
    fn kind(&self) -> &'static str {
        "mlflow"
    }

    fn location(&self) -> String {
        self.base.clone()
    }

    fn models(&self) -> Result<Vec<String>, Error> {
        Ok(self.registered_models()?.into_keys().collect())
    }

    fn versions(&self, model: &str) -> Result<Vec<u64>, Error> {
        // An unknown model has no versions; say so rather than print nothing.
        self.aliases(model)?;
        self.ready_versions(model)
    }

    fn aliases(&self, model: &str) -> Result<BTreeMap<String, u64>, Error> {
        let answer = self
            .call("GET", "registered-models/get", &[("name", model)], None)
            .map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!(
                    "MLflow at {} has no registered model \"{model}\"; register it with mlflow.onnx.log_model(..., registered_model_name=\"{model}\")",
                    self.base
                )),
                other => other,
            })?;
        Ok(parse_aliases(&answer["registered_model"]["aliases"]))
    }

    fn artifact(&self, model: &str, version: u64) -> Result<PathBuf, Error> {
        let dir = self.version_dir(model, version);
        let uri = match self.download_uri(model, version) {
            Ok(uri) => uri,
            Err(e @ Error::Registry(_)) => {
                // Versions are immutable: while MLflow cannot be asked, a
                // whole cached copy is still the right file.
                if let Some(path) = self.cached(&dir, None) {
                    tracing::warn!("{e}; loading {model} v{version} from the cache");
                    metrics::counter!("podium_registry_artifacts_total", "result" => "cached")
                        .increment(1);
                    return Ok(path);
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if let Some(path) = self.cached(&dir, Some(&uri)) {
            metrics::counter!("podium_registry_artifacts_total", "result" => "cached").increment(1);
            return Ok(path);
        }
        self.download(model, version, &uri, &dir)
    }

    fn register(&self, model: &str, _file: &Path) -> Result<u64, Error> {
        Err(Error::InvalidInput(format!(
            "Podium does not register versions in MLflow: log the model from Python with mlflow.onnx.log_model(onnx.load(\"model.onnx\"), name=\"model\", registered_model_name=\"{model}\"); Podium serves it once an alias points at it"
        )))
    }

    fn set_alias(&self, model: &str, alias: &str, version: u64) -> Result<(), Error> {
        validate_alias_name(alias)?;
        let body = json!({"name": model, "alias": alias, "version": version.to_string()});
        self.call("POST", "registered-models/alias", &[], Some(&body))
            .map(|_| ())
            .map_err(|e| match e {
                Error::NotFound(m) => Error::NotFound(format!(
                    "{m} (MLflow at {}); list versions with `podium models list`",
                    self.base
                )),
                other => other,
            })
    }

    fn delete_alias(&self, model: &str, alias: &str) -> Result<(), Error> {
        // MLflow answers 200 for an alias that does not exist; Podium says so.
        if !self.aliases(model)?.contains_key(alias) {
            return Err(Error::NotFound(format!(
                "model \"{model}\" has no alias \"{alias}\" in MLflow at {}",
                self.base
            )));
        }
        let body = json!({"name": model, "alias": alias});
        self.call("DELETE", "registered-models/alias", &[], Some(&body))
            .map(|_| ())
    }

    fn snapshot(&self, only: Option<&[String]>) -> Result<Snapshot, Error> {
        // One call for every model's aliases, then one per model for its versions.
        let registered = self.registered_models()?;
        let names: Vec<String> = match only {
            Some(names) => names.to_vec(),
            None => registered.keys().cloned().collect(),
        };
        let mut snapshot = Vec::with_capacity(names.len());
        for model in names {
            let info = match registered.get(&model) {
                None => Err(self.unknown_model(&model, &registered)),
                Some(aliases) => self.ready_versions(&model).map(|versions| ModelInfo {
                    versions,
                    aliases: aliases.clone(),
                }),
            };
            snapshot.push((model, info));
        }
        Ok(snapshot)
    }
}

/// `uri` with any user part (`user:password@`) of its authority replaced by
/// `***@`, for messages and logs.
pub fn redact_uri(uri: &str) -> String {
    let (scheme, rest) = match uri.find("://") {
        Some(i) => uri.split_at(i + 3),
        None => ("", uri),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => format!("{scheme}***{}", &rest[at..]),
        None => uri.to_string(),
    }
}

/// `mlflow+http://h:p/x/` → `http://h:p/x`; refuses what Podium cannot speak.
/// Errors never repeat a user part of the URI (it may hold a password).
fn parse_uri(uri: &str) -> Result<String, Error> {
    let shown = redact_uri(uri.trim());
    let uri = uri.trim();
    let trimmed = uri.trim().trim_end_matches('/');
    let plain = trimmed.strip_prefix("mlflow+").unwrap_or(trimmed);
    if plain.starts_with("https://") {
        return Err(Error::InvalidInput(format!(
            "MLflow registry {shown}: this Podium is built without TLS; reach MLflow over http:// (e.g. through a local TLS-terminating proxy)"
        )));
    }
    let Some(rest) = plain.strip_prefix("http://") else {
        return Err(Error::InvalidInput(format!(
            "MLflow registry {shown:?}: use mlflow+http://HOST:PORT (or http://HOST:PORT as in MLFLOW_TRACKING_URI); Podium talks to an MLflow tracking server over its REST API, not to its database or file store"
        )));
    };
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(Error::InvalidInput(format!(
            "MLflow registry {shown:?}: name a host (mlflow+http://HOST:PORT); put credentials in MLFLOW_TRACKING_TOKEN or MLFLOW_TRACKING_USERNAME/PASSWORD, not in the URL"
        )));
    }
    Ok(plain.to_string())
}

fn parse_aliases(v: &Value) -> BTreeMap<String, u64> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| {
            let alias = a["alias"].as_str()?;
            let version = match &a["version"] {
                Value::String(s) => parse_version(s)?,
                other => other.as_u64()?,
            };
            Some((alias.to_string(), version))
        })
        .collect()
}

fn parse_version(s: &str) -> Option<u64> {
    s.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| s.parse().ok())
        .flatten()
}

/// A string literal for MLflow's search filter.
fn quote(s: &str) -> String {
    if s.contains('\'') {
        format!("\"{}\"", s.replace('"', "\\\""))
    } else {
        format!("'{s}'")
    }
}

/// The `data` path of the `onnx` flavor in an `MLmodel` (YAML as MLflow
/// writes it: block style, two-space indents); or the flavors it has.
fn onnx_data_path(mlmodel: &str) -> Result<String, Vec<String>> {
    let lines: Vec<(usize, &str)> = mlmodel
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| (l.len() - l.trim_start().len(), l.trim()))
        .collect();
    // The children of the `key:` line at `start`: lines indented deeper, up to
    // the next line at its indent or less; only the direct children.
    let children = |start: usize| -> Vec<(usize, &str)> {
        let indent = lines[start].0;
        let block: Vec<(usize, &str)> = lines[start + 1..]
            .iter()
            .take_while(|(i, _)| *i > indent)
            .copied()
            .collect();
        let child = block.first().map(|(i, _)| *i).unwrap_or(0);
        block
            .into_iter()
            .enumerate()
            .filter(|(_, (i, _))| *i == child)
            .map(|(n, (_, text))| (start + 1 + n, text))
            .collect()
    };
    let key = |text: &str| {
        text.split_once(':')
            .map(|(k, _)| k.trim().trim_matches(['"', '\'']).to_string())
    };
    let Some(flavors) = lines
        .iter()
        .position(|(i, t)| *i == 0 && key(t).as_deref() == Some("flavors"))
    else {
        return Err(Vec::new());
    };
    let flavor_lines = children(flavors);
    let names: Vec<String> = flavor_lines.iter().filter_map(|(_, t)| key(t)).collect();
    let Some((onnx, _)) = flavor_lines
        .iter()
        .find(|(_, t)| key(t).as_deref() == Some("onnx"))
    else {
        return Err(names);
    };
    for (_, text) in children(*onnx) {
        if let Some(("data", value)) = text.split_once(':').map(|(k, v)| (k.trim(), v.trim())) {
            let value = value.trim_matches(['"', '\'']);
            if !value.is_empty() && value != "null" {
                return Ok(value.to_string());
            }
        }
    }
    Err(names)
}

/// A relative path that stays inside the artifact directory.
fn check_relative(rel: &str) -> Result<(), &'static str> {
    let path = Path::new(rel);
    if rel.is_empty() || path.is_absolute() {
        return Err("must be a relative path");
    }
    if path
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err("leaves the model's artifact directory");
    }
    Ok(())
}

/// A directory name for any model name: unreserved characters kept, others
/// percent-encoded (so distinct names stay distinct).
fn safe_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-') || (b == b'.' && !out.is_empty()) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes each segment of a `/`-separated path.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            let mut out = String::with_capacity(seg.len());
            for b in seg.bytes() {
                if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'~') {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Decodes `%XX` escapes (two ASCII hex digits); anything else, including a
/// `%` followed by other bytes, is kept as it is. Works on bytes: the input
/// comes from the server and may hold any UTF-8 after a `%`.
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi << 4) | lo);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let digest = hasher.finalize();
    Ok((size, digest.iter().map(|b| format!("{b:02x}")).collect()))
}

fn backoff(tries: u32) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1 << tries.min(5));
    // A little jitter so replicas do not retry in lockstep.
    let jitter = Duration::from_millis((nanos() % 50) as u64);
    base.min(Duration::from_secs(2)) + jitter
}

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Internal(format!(
        "artifact cache: cannot {what} {}: {e}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::sync::{Arc, Mutex};

    const MLMODEL: &str = "artifact_path: mlflow-artifacts:/0/models/m-1/artifacts
flavors:
  onnx:
    code: null
    data: model.onnx
    onnx_version: 1.23.2
    providers:
    - CPUExecutionProvider
  python_function:
    data: 'other.onnx'
    loader_module: mlflow.onnx
mlflow_version: 3.17.2
";

    #[test]
    fn finds_the_onnx_file_through_the_mlmodel() {
        assert_eq!(onnx_data_path(MLMODEL).unwrap(), "model.onnx");
        let quoted = MLMODEL.replace("data: model.onnx", "data: \"sub/m.onnx\"");
        assert_eq!(onnx_data_path(&quoted).unwrap(), "sub/m.onnx");
        let sklearn = "flavors:\n  python_function:\n    data: model.pkl\n  sklearn:\n    pickled_model: model.pkl\n";
        assert_eq!(
            onnx_data_path(sklearn).unwrap_err(),
            vec!["python_function".to_string(), "sklearn".to_string()]
        );
        // `data` of another flavor, or a nested key named onnx, is not it.
        let nested = "flavors:\n  python_function:\n    onnx:\n      data: x.onnx\n";
        assert!(onnx_data_path(nested).is_err());
        assert_eq!(
            onnx_data_path("run_id: x\n").unwrap_err(),
            Vec::<String>::new()
        );
        for bad in ["../x.onnx", "/etc/passwd", "a/../../b", ""] {
            assert!(check_relative(bad).is_err(), "{bad}");
        }
        check_relative("sub/model.onnx").unwrap();
    }

    #[test]
    fn registry_uris() {
        assert_eq!(
            parse_uri("mlflow+http://127.0.0.1:5000/").unwrap(),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            parse_uri("http://mlflow:5000/prefix").unwrap(),
            "http://mlflow:5000/prefix"
        );
        let tls = parse_uri("mlflow+https://x").unwrap_err().to_string();
        assert!(tls.contains("without TLS"), "{tls}");
        let db = parse_uri("sqlite:///mlflow.db").unwrap_err().to_string();
        assert!(db.contains("mlflow+http://HOST:PORT"), "{db}");
        let creds = parse_uri("http://user:pw@host:5000")
            .unwrap_err()
            .to_string();
        assert!(creds.contains("MLFLOW_TRACKING_TOKEN"), "{creds}");
        assert!(
            creds.contains("http://***@host:5000")
                && !creds.contains("pw")
                && !creds.contains("user"),
            "{creds}"
        );
        let tls = parse_uri("https://me:s3cret@h/x").unwrap_err().to_string();
        assert!(
            tls.contains("https://***@h/x") && !tls.contains("s3cret"),
            "{tls}"
        );
        let db = parse_uri("postgresql://me:s3cret@db/mlflow")
            .unwrap_err()
            .to_string();
        assert!(!db.contains("s3cret"), "{db}");
        assert_eq!(redact_uri("http://h:1/a@b"), "http://h:1/a@b");
        assert!(is_mlflow_uri("mlflow+http://h:1") && is_mlflow_uri("http://h:1"));
        assert!(!is_mlflow_uri("registry") && !is_mlflow_uri("/srv/registry"));
        assert_eq!(safe_name("fraud"), "fraud");
        assert_eq!(safe_name("cat.schema.m"), "cat.schema.m");
        assert_eq!(safe_name("../x"), "%2E.%2Fx");
        assert_eq!(percent_decode("/a%20b/c"), "/a b/c");
    }

    #[test]
    fn percent_decoding_never_panics_on_what_the_server_sends() {
        // Non-ASCII after `%` used to be sliced by byte index and panic.
        assert_eq!(percent_decode("/a%é/b"), "/a%é/b");
        assert_eq!(percent_decode("/a%1é"), "/a%1é");
        assert_eq!(percent_decode("/é%C3%A9"), "/éé");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("x%4"), "x%4");
        assert_eq!(percent_decode("%+1%2f"), "%+1/");
        // A `file://` artifact URI with such a path is located, not a crash.
        let reg = registry("http://127.0.0.1:9", None, 0);
        assert_eq!(
            reg.locate("file:///srv/m%é%20x", "m", 1).unwrap(),
            Location::Local(PathBuf::from("/srv/m%é x"))
        );
        assert_eq!(
            encode_path("0/models/m 1/MLmodel"),
            "0/models/m%201/MLmodel"
        );
    }

    /// A stand-in HTTP server on 127.0.0.1 that answers each connection with
    /// the next canned (status, body); status 0 never answers. Records the
    /// request heads.
    fn stub(answers: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for (status, body) in answers {
                let Ok((mut conn, _)) = listener.accept() else {
                    return;
                };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push_str(&line);
                }
                log.lock().unwrap().push(head);
                if status == 0 {
                    std::thread::sleep(Duration::from_secs(2));
                    continue;
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (url, seen)
    }

    fn registry(url: &str, token: Option<&str>, retries: u32) -> MlflowRegistry {
        MlflowRegistry::new(MlflowOptions {
            uri: url.to_string(),
            token: token.map(str::to_string),
            basic: None,
            timeout: Duration::from_millis(300),
            retries,
            cache_dir: std::env::temp_dir(),
        })
        .unwrap()
    }

    #[test]
    fn refused_credentials_are_named_and_not_retried() {
        let (url, seen) = stub(vec![(
            401,
            r#"{"error_code": "UNAUTHENTICATED", "message": "bad token"}"#,
        )]);
        let err = registry(&url, Some("s3cret"), 3).models().unwrap_err();
        assert!(matches!(err, Error::Registry(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("refused Podium's credentials") && msg.contains("MLFLOW_TRACKING_TOKEN"),
            "{msg}"
        );
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "a refusal is not retried");
        assert!(
            seen[0]
                .to_ascii_lowercase()
                .contains("authorization: bearer s3cret"),
            "{}",
            seen[0]
        );
    }

    #[test]
    fn unavailable_answers_are_retried_and_unknown_models_named() {
        let (url, seen) = stub(vec![
            (503, "busy"),
            (502, "bad gateway"),
            (
                200,
                r#"{"registered_models": [{"name": "fraud", "aliases": [{"alias": "champion", "version": "3"}]}]}"#,
            ),
            (
                200,
                r#"{"model_versions": [{"version": "3", "status": "READY"}, {"version": "4", "status": "PENDING_REGISTRATION"}]}"#,
            ),
        ]);
        let reg = registry(&url, None, 3);
        let snapshot = reg
            .snapshot(Some(&["fraud".into(), "ghost".into()]))
            .unwrap();
        let info = snapshot[0].1.as_ref().unwrap();
        assert_eq!(info.versions, vec![3], "a pending version is not served");
        assert_eq!(info.aliases["champion"], 3);
        let ghost = snapshot[1].1.as_ref().unwrap_err().to_string();
        assert!(
            ghost.contains("no registered model \"ghost\"") && ghost.contains("registered: fraud"),
            "{ghost}"
        );
        assert_eq!(seen.lock().unwrap().len(), 4);
    }

    #[test]
    fn a_silent_server_times_out_with_the_flag_to_raise() {
        let (url, _seen) = stub(vec![(0, ""), (0, "")]);
        let err = registry(&url, None, 1).models().unwrap_err().to_string();
        assert!(
            err.contains("did not answer")
                && err.contains("--registry-timeout-secs")
                && err.contains("2 attempts"),
            "{err}"
        );
    }

    #[test]
    fn not_an_mlflow_server_is_said_so() {
        let (url, _seen) = stub(vec![(404, "<html>nope</html>")]);
        let err = registry(&url, None, 0).models().unwrap_err().to_string();
        assert!(
            err.contains("is --registry pointing at an MLflow server"),
            "{err}"
        );
    }

    #[test]
    fn each_path_prefix_has_its_own_cache() {
        let dir = |uri: &str| registry(uri, None, 0).cache_dir().to_path_buf();
        let root = std::env::temp_dir();
        assert_eq!(dir("http://h:5000"), root.join("h_5000"));
        assert_eq!(dir("http://h:5000/"), root.join("h_5000"));
        assert_eq!(dir("http://h:5000/a"), root.join("h_5000%2Fa"));
        assert_ne!(dir("http://h:5000/a"), dir("http://h:5000/b"));
        assert_ne!(dir("http://h/x/y"), dir("http://h/x_y"));
    }

    #[test]
    fn a_repeated_page_token_is_an_error_not_a_loop() {
        let page = r#"{"registered_models": [{"name": "fraud"}], "next_page_token": "abc"}"#;
        let (url, seen) = stub(vec![(200, page), (200, page), (200, page)]);
        let err = registry(&url, None, 0).models().unwrap_err();
        assert!(matches!(err, Error::Registry(_)), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("repeated the page token \"abc\"")
                && msg.contains("registered-models/search"),
            "{msg}"
        );
        assert_eq!(seen.lock().unwrap().len(), 2);
    }
}
