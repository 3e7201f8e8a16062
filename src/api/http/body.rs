//! Reading request bodies and doing heavy decoding off the async workers,
//! for every REST route.

use axum::body::Body;
use axum::http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::budget::{BodyBudget, BodyPermit};
use crate::error::Error;
use crate::listener::BodyLate;

/// A header's value as text, when it is.
pub(crate) fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// Bodies from this size on are decoded (and answers encoded) on the
/// blocking pool, so a big JSON tensor never stalls the async workers that
/// answer everyone else.
const BLOCKING_BYTES: usize = 256 * 1024;

/// Runs `work` here when `size` is small, else on the blocking pool, at most
/// one per core at a time: a decoded body takes a few times its size in
/// memory (MLflow JSON trees tens of times), so a burst of huge bodies must
/// not all expand at once.
pub(crate) async fn off_runtime<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    if size < BLOCKING_BYTES {
        return Ok(work());
    }
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let permits = PERMITS.get_or_init(|| {
        tokio::sync::Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
        )
    });
    let _permit = permits
        .acquire()
        .await
        .map_err(|_| Error::Internal("decode permits closed".into()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Internal(format!("decoding task failed: {e}")))
}

/// Reads the whole body, refusing more than `limit` bytes (413) before
/// buffering them, and compressed bodies (415) with the fix; the body's
/// share of the in-flight budget is held until the permit is dropped.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    budget: &std::sync::Arc<BodyBudget>,
) -> Result<(bytes::Bytes, BodyPermit), Error> {
    read_body_within(
        headers,
        body,
        limit,
        "--max-request-bytes / PODIUM_MAX_REQUEST_BYTES",
        budget,
    )
    .await
}

/// [`read_body`] for a route with its own `limit`, set by `flag` (named in
/// the 413).
pub(crate) async fn read_body_within(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    flag: &str,
    budget: &std::sync::Arc<BodyBudget>,
) -> Result<(bytes::Bytes, BodyPermit), Error> {
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        if encoding.as_bytes() != b"identity" {
            return Err(Error::Unsupported(format!(
                "Content-Encoding {:?} is not supported; send the body uncompressed",
                String::from_utf8_lossy(encoding.as_bytes())
            )));
        }
    }
    let too_large = |size: Option<u64>| {
        let size = size
            .map(|s| format!("{s} bytes"))
            .unwrap_or_else(|| "larger".into());
        Error::PayloadTooLarge(format!(
            "request body is {size}; the limit is {limit} bytes (raise it with {flag})"
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared.filter(|&n| n > limit as u64) {
        drain(body, size);
        return Err(too_large(declared));
    }
    // Reserved before reading when the length is declared, else once read.
    let permit = budget.reserve(declared.unwrap_or(0) as usize)?;
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large(None)),
        // The listener answers the client 408 with the same text itself;
        // this is what the inference table records.
        Err(e) => match late(e.as_ref()) {
            Some(late) => return Err(Error::RequestTimeout(late.to_string())),
            None => {
                return Err(Error::InvalidInput(format!(
                    "could not read the request body: {e}"
                )))
            }
        },
    };
    let permit = permit.grow_to(bytes.len())?;
    Ok((bytes, permit))
}

/// Over-limit bodies up to this size are read and thrown away after the
/// 413 is sent: a client still sending its body then reads the answer,
/// where closing the connection on it would show the client a broken pipe
/// or a reset instead (what nginx calls a lingering close). Larger ones
/// are not read at all.
const DRAIN_BYTES: u64 = 16 * 1024 * 1024;

/// How long a refused body is read for, at most.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Reads and discards `body`, a refused one of `size` bytes, in the
/// background (bounded by [`DRAIN_BYTES`] and [`DRAIN_TIME`]).
fn drain(mut body: Body, size: u64) {
    if size > DRAIN_BYTES {
        return;
    }
    tokio::spawn(async move {
        let read = async {
            let mut read = 0;
            while let Some(Ok(frame)) = body.frame().await {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
                if read > DRAIN_BYTES {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(DRAIN_TIME, read).await;
    });
}

/// Why reading the body failed, when the listener's body-read timer ran
/// out (rather than the client breaking the body).
fn late<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a BodyLate> {
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref::<BodyLate>())
}
