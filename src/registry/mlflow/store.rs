//! Artifacts MLflow keeps in object storage (`mlflow server
//! --no-serve-artifacts` with an `s3://`, `gs://` or `wasbs://` artifact
//! root): read directly from the bucket with `object_store`, configured from
//! the environment MLflow's own clients read (see [`super::clouds`]).
//!
//! `object_store` is asynchronous while the registry is not: each read runs
//! on a short-lived current-thread runtime in a thread of its own, so it works
//! from any caller (a blocking task, a CLI command, a test).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as StorePath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use super::clouds::{self, Cloud};
use crate::error::Error;

/// A folder in a bucket or container (`s3://bucket/prefix`,
/// `gs://bucket/prefix`, `wasbs://container@account.blob.core.windows.net/prefix`),
/// and a client for it.
#[derive(Clone)]
pub(super) struct StoreDir {
    /// As MLflow gave it, without a trailing `/`, for messages.
    url: String,
    cloud: Cloud,
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// The longest wait for the object's first bytes and for each chunk after.
    read_timeout: Duration,
}

impl std::fmt::Debug for StoreDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.url())
    }
}

impl PartialEq for StoreDir {
    fn eq(&self, other: &Self) -> bool {
        self.url == other.url
    }
}

impl Eq for StoreDir {}

impl StoreDir {
    /// Whether `uri` is an object-storage location this type reads.
    pub fn handles(uri: &str) -> bool {
        Cloud::of(uri).is_some()
    }

    /// The folder at `url` (`s3://bucket[/prefix]`, `gs://…`, `wasbs://…`);
    /// `timeout` bounds connecting and each wait for data, `retries` as for
    /// MLflow's API.
    pub fn open(url: &str, timeout: Duration, retries: u32) -> Result<StoreDir, Error> {
        let url = url.trim_end_matches('/').to_string();
        let options = ClientOptions::new()
            // As for MLflow's proxy: a download may take long in all;
            // connecting and each wait for data may not (the latter
            // bounded in `fetch`).
            .with_connect_timeout(timeout)
            .with_timeout_disabled();
        let retry = RetryConfig {
            max_retries: retries as usize,
            retry_timeout: Duration::from_secs(60),
            ..RetryConfig::default()
        };
        let opened = clouds::open(&url, options, retry)?;
        Ok(StoreDir {
            url,
            cloud: opened.cloud,
            store: opened.store,
            prefix: opened.prefix,
            read_timeout: timeout,
        })
    }

    /// The location, for messages.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Streams the object `rel` (under the folder) into `out`; its size as
    /// the store announced it is checked against the bytes written. `NotFound` when
    /// there is no such object.
    pub fn fetch(&self, rel: &str, out: &mut (dyn Write + Send)) -> Result<u64, Error> {
        let key = match self.prefix.is_empty() {
            true => rel.to_string(),
            false => format!("{}/{rel}", self.prefix),
        };
        let shown = format!("{}/{rel}", self.url);
        let path = StorePath::parse(&key)
            .map_err(|e| Error::Registry(format!("{shown} is not a valid object key: {e}")))?;
        let store = Arc::clone(&self.store);
        let wait = self.read_timeout;
        let name = self.cloud.name();
        let stalled = move || object_store::Error::Generic {
            store: name,
            source: format!("no data for {} s", wait.as_secs_f64()).into(),
        };
        let read = move || async move {
            let got = tokio::time::timeout(wait, store.get(&path))
                .await
                .map_err(|_| stalled())??;
            let expected = got.meta.size;
            let mut stream = got.into_stream();
            let mut copied = 0u64;
            while let Some(chunk) = tokio::time::timeout(wait, stream.next())
                .await
                .map_err(|_| stalled())?
            {
                let chunk = chunk?;
                out.write_all(&chunk)
                    .map_err(|e| object_store::Error::Generic {
                        store: "local file",
                        source: Box::new(e),
                    })?;
                copied += chunk.len() as u64;
            }
            Ok::<_, object_store::Error>((copied, expected))
        };
        let (copied, expected) = block_on(read)?.map_err(|e| match e {
            object_store::Error::NotFound { .. } => {
                Error::NotFound(format!("{shown} does not exist"))
            }
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => Error::Registry(format!(
                "{} refused to give Podium {shown} ({e}); {}",
                self.cloud.name(),
                self.cloud.credentials_hint()
            )),
            other => Error::Registry(format!(
                "downloading {shown} failed: {other}; {}",
                self.cloud.credentials_hint()
            )),
        })?;
        if copied != expected {
            return Err(Error::Registry(format!(
                "downloading {shown} stopped after {copied} of {expected} bytes"
            )));
        }
        Ok(copied)
    }
}

/// Runs the future `make` makes to completion on a current-thread runtime in
/// a thread of its own (a runtime cannot be started inside another's worker).
fn block_on<T, F>(make: impl FnOnce() -> F + Send) -> Result<T, Error>
where
    F: std::future::Future<Output = T>,
    T: Send,
{
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| {
                        Error::Internal(format!("start an object-storage download runtime: {e}"))
                    })?;
                Ok(runtime.block_on(make()))
            })
            .join()
            .map_err(|_| Error::Internal("an object-storage download thread panicked".into()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_name_a_bucket() {
        let dir =
            StoreDir::open("s3://bucket/1/abc/artifacts/", Duration::from_secs(1), 0).unwrap();
        assert_eq!(dir.url(), "s3://bucket/1/abc/artifacts");
        assert_eq!(dir.prefix, "1/abc/artifacts");
        let err = StoreDir::open("s3:///x", Duration::from_secs(1), 0).unwrap_err();
        assert!(err.to_string().contains("names no bucket"), "{err}");
        let gs = StoreDir::open("gs://models/2/def/artifacts", Duration::from_secs(1), 0).unwrap();
        assert_eq!(
            (gs.cloud, gs.prefix.as_str()),
            (Cloud::Gcs, "2/def/artifacts")
        );
        let azure = StoreDir::open(
            "wasbs://models@acct.blob.core.windows.net/3/ghi/artifacts",
            Duration::from_secs(1),
            0,
        )
        .unwrap();
        assert_eq!(
            (azure.cloud, azure.prefix.as_str()),
            (Cloud::Azure, "3/ghi/artifacts")
        );
        let err = StoreDir::open("wasbs://models/x", Duration::from_secs(1), 0).unwrap_err();
        assert!(err.to_string().contains("CONTAINER@ACCOUNT"), "{err}");
    }
}
