//! The HTTP side of talking to MLflow: one blocking client with the
//! credentials, time limits and retries, and the mapping of every failure to
//! a message that names MLflow, the call and what to do.
//!
//! A call that may pass if repeated (connection failure, timeout, HTTP 429
//! or 5xx) is retried `retries` times with exponential back-off (100 ms,
//! 200 ms, … up to 2 s, plus up to 50 ms of jitter so replicas do not retry
//! in lockstep); any other failure is final at once.

use std::io::{ErrorKind, Read};
use std::time::Duration;

use backon::{BackoffBuilder, BlockingRetryable, ExponentialBuilder};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::api::ErrorBody;
use super::tls::tls_failure;
use super::MlflowOptions;
use crate::error::Error;

/// MLflow's REST API, under the server's base URL.
pub(super) const API: &str = "/api/2.0/mlflow";
/// The artifact proxy (`mlflow-artifacts:/…` URIs), under the base URL.
pub(super) const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";

/// The first wait before a retry; doubled each time, up to [`MAX_DELAY`].
const MIN_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(2);
/// Jitter added to each wait, up to this many milliseconds.
const JITTER_MS: u64 = 50;
/// Largest API answer Podium reads.
const MAX_ANSWER: u64 = 64 << 20;

/// The HTTP methods Podium uses on MLflow's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// One MLflow server, reached over HTTP or HTTPS.
pub(super) struct Client {
    /// `http[s]://host:port[/prefix]`, no trailing slash.
    base: String,
    /// The `Authorization` header, if credentials were given.
    auth: Option<String>,
    /// API calls: bounded as a whole.
    api: ureq::Agent,
    /// Artifact downloads: bounded per wait, not as a whole.
    download: ureq::Agent,
    retries: u32,
    timeout: Duration,
}

/// An artifact being downloaded: its announced length and its bytes.
pub(super) struct Download {
    pub length: Option<u64>,
    pub body: Box<dyn Read + Send>,
}

/// One failed attempt: worth retrying or not.
enum Attempt {
    Retry(String),
    Final(Error),
}

impl Client {
    /// A client for the server at `base` (as [`super::uri::parse_uri`] gives
    /// it); for `https://`, with the TLS settings of `options` (whose files
    /// are read now: an error names the variable and the file).
    pub fn new(base: String, options: &MlflowOptions) -> Result<Client, Error> {
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
        let tls = if base.starts_with("https://") {
            options.tls.config()?
        } else {
            ureq::tls::TlsConfig::default()
        };
        let agent = |global: Option<Duration>| -> ureq::Agent {
            ureq::Agent::config_builder()
                .tls_config(tls.clone())
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
        Ok(Client {
            api: agent(Some(options.timeout)),
            download: agent(None),
            base,
            auth,
            retries: options.retries,
            timeout: options.timeout,
        })
    }

    /// The bound on one call, and the retries after a failure that may pass
    /// (also used for artifacts read from object storage).
    pub fn limits(&self) -> (Duration, u32) {
        (self.timeout, self.retries)
    }

    /// `http[s]://host:port[/prefix]`, for messages.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A GET of `path` under [`API`], retried when it may pass; the answer as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, Error> {
        self.call(Method::Get, path, query, &[])
    }

    /// A POST or DELETE of `body` as JSON to `path` under [`API`], retried
    /// when it may pass; the answer as `T`.
    pub fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, Error> {
        let body = serde_json::to_vec(body)
            .map_err(|e| Error::Internal(format!("encode an MLflow request: {e}")))?;
        self.call(method, path, &[], &body)
    }

    fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> Result<T, Error> {
        let url = format!("{}{API}/{path}", self.base);
        let what = format!("{} {API}/{path}", method.as_str());
        self.with_retries(&what, || {
            let mut response = self.send(&self.api, method, &url, query, body)?;
            let status = response.status().as_u16();
            let text = response
                .body_mut()
                .with_config()
                .limit(MAX_ANSWER)
                .read_to_string()
                .map_err(|e| self.transport(&what, e))?;
            if (200..300).contains(&status) {
                return serde_json::from_str(&text)
                    .map_err(|e| Attempt::Final(self.unreadable(&what, &e)));
            }
            Err(self.http_error(&what, status, &text))
        })
    }

    /// Opens the artifact at `path` under the proxy (already percent-encoded
    /// by the caller; `shown` is the plain path for messages). Only opening
    /// is retried: once bytes were read, a failure is the caller's to handle.
    pub fn open_artifact(&self, path: &str, shown: &str) -> Result<Download, Error> {
        let url = format!("{}{ARTIFACTS}/{path}", self.base);
        let what = format!("GET {ARTIFACTS}/{shown}");
        let response = self.with_retries(&what, || {
            let mut response = self.send(&self.download, Method::Get, &url, &[], &[])?;
            let status = response.status().as_u16();
            if (200..300).contains(&status) {
                return Ok(response);
            }
            let text = response.body_mut().read_to_string().unwrap_or_default();
            Err(self.http_error(&what, status, &text))
        })?;
        let length = response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        Ok(Download {
            length,
            body: Box::new(response.into_body().into_reader()),
        })
    }

    fn send(
        &self,
        agent: &ureq::Agent,
        method: Method,
        url: &str,
        query: &[(&str, &str)],
        body: &[u8],
    ) -> Result<ureq::http::Response<ureq::Body>, Attempt> {
        let what = format!("{} {url}", method.as_str());
        let result = match method {
            Method::Get => {
                let mut req = agent.get(url);
                for (k, v) in query {
                    req = req.query(*k, *v);
                }
                if let Some(auth) = &self.auth {
                    req = req.header("Authorization", auth);
                }
                req.call()
            }
            Method::Post | Method::Delete => {
                let mut req = match method {
                    Method::Post => agent.post(url),
                    _ => agent.delete(url).force_send_body(),
                };
                if let Some(auth) = &self.auth {
                    req = req.header("Authorization", auth);
                }
                req.header("Content-Type", "application/json").send(body)
            }
        };
        result.map_err(|e| self.transport(&what, e))
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are
    /// spent; then says how many attempts were made.
    fn with_retries<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut() -> Result<T, Attempt>,
    ) -> Result<T, Error> {
        let mut attempts = 0u32;
        let result = (|| {
            attempts += 1;
            attempt()
        })
        .retry(backoff(self.retries))
        .when(|e| matches!(e, Attempt::Retry(_)))
        .notify(|e, _| {
            if let Attempt::Retry(why) = e {
                tracing::debug!("{what}: {why}; retrying");
            }
        })
        .call();
        result.map_err(|e| match e {
            Attempt::Final(e) => e,
            Attempt::Retry(why) if self.retries == 0 => Error::Registry(why),
            Attempt::Retry(why) => Error::Registry(format!("{why} ({attempts} attempts)")),
        })
    }

    /// A 2xx answer Podium cannot read as `T`.
    fn unreadable(&self, what: &str, e: &serde_json::Error) -> Error {
        let base = &self.base;
        match e.classify() {
            serde_json::error::Category::Data => Error::Registry(format!(
                "MLflow at {base} answered {what} with JSON Podium cannot read ({e}); is --registry pointing at an MLflow server of a version Podium supports?"
            )),
            _ => Error::Registry(format!(
                "MLflow at {base} answered {what} with something that is not JSON ({e}); is --registry pointing at an MLflow server?"
            )),
        }
    }

    /// A transport failure, in words: connection refused, timeout, ….
    fn transport(&self, what: &str, e: ureq::Error) -> Attempt {
        let base = &self.base;
        // A certificate that does not verify now will not on the next try.
        if let Some(why) = tls_failure(base, &e) {
            return Attempt::Final(Error::Registry(why));
        }
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
        let parsed = serde_json::from_str::<ErrorBody>(body).ok();
        let detail = match &parsed {
            Some(e) => format!("{}: {}", e.error_code, e.message.as_deref().unwrap_or("")),
            None => body
                .chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string(),
        };
        match (status, parsed.as_ref().map(|e| e.error_code.as_str())) {
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
}

/// The waits between attempts: `retries` of them, 100 ms doubling up to 2 s,
/// each with a little jitter.
fn backoff(retries: u32) -> impl backon::Backoff {
    ExponentialBuilder::new()
        .with_min_delay(MIN_DELAY)
        .with_factor(2.0)
        .with_max_delay(MAX_DELAY)
        .with_max_times(retries as usize)
        .build()
        .map(|wait| wait + Duration::from_millis(fastrand::u64(0..JITTER_MS)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_two_seconds_with_a_little_jitter() {
        let waits: Vec<Duration> = backoff(7).collect();
        assert_eq!(waits.len(), 7, "one wait per retry");
        let floors = [100, 200, 400, 800, 1600, 2000, 2000];
        for (wait, floor) in waits.iter().zip(floors) {
            let floor = Duration::from_millis(floor);
            assert!(
                *wait >= floor && *wait < floor + Duration::from_millis(JITTER_MS),
                "{wait:?} vs {floor:?}"
            );
        }
        assert_eq!(backoff(0).count(), 0);
    }
}
