//! REST over HTTP/1.1: the target's address, the headers every request
//! carries, one request (path and body), and sending it on a worker's
//! connection (reopened when it breaks) with the error classes the
//! summary counts. Load runs and replays both send through here.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;

use crate::outcome::{self, Answer, ErrorClass};
use crate::protocol::chain;

/// A `http://host:port` address, resolved.
#[derive(Clone, Debug)]
pub struct Address {
    /// `host:port`, for the Host header.
    pub authority: String,
    /// Any path prefix after the authority, without the trailing slash.
    pub prefix: String,
    pub addr: SocketAddr,
}

/// Parses and resolves `http://host:port[/prefix]`.
pub async fn resolve(url: &str) -> Result<Address> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(("https", _)) => bail!(
            "{url}: TLS is not supported; point the load generator at the server's plain-HTTP listener"
        ),
        Some((scheme, _)) => bail!("{url}: scheme {scheme:?} is not supported; use http://HOST:PORT"),
        None => bail!("{url} has no scheme; write it as http://HOST:PORT"),
    };
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() {
        bail!("{url} has no host; write it as http://HOST:PORT");
    }
    let with_port = if authority
        .rsplit(':')
        .next()
        .is_some_and(|p| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let addr = tokio::net::lookup_host(&with_port)
        .await
        .with_context(|| format!("cannot resolve {authority} (from {url})"))?
        .next()
        .ok_or_else(|| anyhow!("{authority} (from {url}) resolves to no address"))?;
    Ok(Address {
        authority: authority.to_string(),
        prefix: prefix.to_string(),
        addr,
    })
}

/// A header whose value may name the request's number.
#[derive(Clone, Debug)]
pub(crate) enum ExtraHeader {
    Fixed(HeaderName, HeaderValue),
    Numbered(HeaderName, String),
}

/// Where REST requests go and what every one of them carries: the
/// server's address, the extra headers and the per-request timeout.
#[derive(Clone, Debug)]
pub struct HttpTarget {
    pub address: Address,
    pub(crate) headers: Vec<ExtraHeader>,
    pub(crate) timeout: Duration,
}

impl HttpTarget {
    /// Checks the extra headers (`{n}` in a value becomes the request's number).
    pub fn new(
        address: Address,
        headers: &[(String, String)],
        timeout: Duration,
    ) -> Result<HttpTarget> {
        let headers = headers
            .iter()
            .map(|(k, v)| {
                let name = HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes())
                    .map_err(|_| anyhow!("--header {k:?}: not a valid header name"))?;
                if v.contains("{n}") {
                    Ok(ExtraHeader::Numbered(name, v.clone()))
                } else {
                    let value = HeaderValue::from_str(v)
                        .map_err(|_| anyhow!("--header {k}: {v:?} is not a valid header value"))?;
                    Ok(ExtraHeader::Fixed(name, value))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(HttpTarget {
            address,
            headers,
            timeout,
        })
    }
}

/// One REST request: a path on the target and the body to POST there.
#[derive(Clone, Debug)]
pub struct RestRequest {
    /// The path, with the target URL's prefix.
    pub path: String,
    pub body: Bytes,
    pub content_type: &'static str,
    /// The binary extension's `Inference-Header-Content-Length`.
    pub header_length: Option<usize>,
}

/// A REST answer with a 2xx status.
#[derive(Debug)]
pub struct RestAnswer {
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl RestAnswer {
    /// The value of header `name`, when it is text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    /// Endpoint, arm and version from Podium's `x-podium-*` headers.
    pub fn answer(&self) -> Answer {
        Answer {
            endpoint: self.header("x-podium-endpoint"),
            arm: self.header("x-podium-arm"),
            header_version: self.header("x-podium-model-version"),
            body_version: None,
            fingerprint: None,
        }
    }

    /// The JSON part of the body: all of it, or the part before the binary
    /// tensors when `Inference-Header-Content-Length` says there are some.
    pub fn json_part(&self) -> Result<&[u8], (ErrorClass, String)> {
        match self
            .headers
            .get("inference-header-content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            Some(n) if n <= self.body.len() => Ok(&self.body[..n]),
            Some(n) => Err((
                ErrorClass::Protocol,
                format!(
                    "Inference-Header-Content-Length {n} but the body is {} bytes",
                    self.body.len()
                ),
            )),
            None => Ok(&self.body[..]),
        }
    }
}

pub(crate) async fn http_connect(
    addr: SocketAddr,
) -> Result<SendRequest<Full<Bytes>>, (ErrorClass, String)> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| (outcome::io_error(&e), format!("connect to {addr}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| {
            (
                outcome::send_error(&e),
                format!("HTTP handshake with {addr}: {e}"),
            )
        })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

pub(crate) fn timed_out(timeout: Duration) -> (ErrorClass, String) {
    (ErrorClass::Timeout, format!("no answer within {timeout:?}"))
}

pub(crate) fn header_value(p: &ExtraHeader, n: u64) -> Option<(HeaderName, HeaderValue)> {
    match p {
        ExtraHeader::Fixed(k, v) => Some((k.clone(), v.clone())),
        ExtraHeader::Numbered(k, template) => {
            HeaderValue::from_str(&template.replace("{n}", &n.to_string()))
                .ok()
                .map(|v| (k.clone(), v))
        }
    }
}

/// POSTs `request` on the worker's connection (opening a new one when it is
/// closed or broken) and reads the whole answer.
pub(crate) async fn http_exchange(
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    target: &HttpTarget,
    request: &RestRequest,
    n: u64,
) -> Result<RestAnswer, (ErrorClass, String)> {
    let addr = target.address.addr;
    if sender.as_ref().is_none_or(|s| s.is_closed()) {
        *sender = Some(http_connect(addr).await?);
    }
    let s = sender.as_mut().expect("connected above");
    if s.ready().await.is_err() {
        *sender = Some(http_connect(addr).await?);
    }
    let s = sender.as_mut().expect("connected above");
    let mut builder = hyper::Request::post(&request.path)
        .header(hyper::header::HOST, &target.address.authority)
        .header(hyper::header::CONTENT_TYPE, request.content_type);
    if let Some(len) = request.header_length {
        builder = builder.header("inference-header-content-length", len);
    }
    for h in &target.headers {
        if let Some((k, v)) = header_value(h, n) {
            builder = builder.header(k, v);
        }
    }
    let http_request = builder
        .body(Full::new(request.body.clone()))
        .map_err(|e| (ErrorClass::Protocol, format!("building the request: {e}")))?;
    let response = match s.send_request(http_request).await {
        Ok(r) => r,
        Err(e) => {
            *sender = None;
            return Err((outcome::send_error(&e), format!("sending: {}", chain(&e))));
        }
    };
    let (parts, body) = response.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            *sender = None;
            return Err((
                outcome::send_error(&e),
                format!("reading the answer: {}", chain(&e)),
            ));
        }
    };
    if let Some(class) = outcome::http_status(parts.status.as_u16()) {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        return Err((class, text));
    }
    Ok(RestAnswer {
        headers: parts.headers,
        body,
    })
}
