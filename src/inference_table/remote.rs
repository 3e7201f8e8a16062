//! Where a table lives: a local directory, or an object-storage URL
//! (`s3://bucket/prefix`; `gs://` and `az://` with the `gcs` and `azure`
//! cargo features) whose files are first written to a local spool and then
//! uploaded by [`super::upload`].
//!
//! Credentials and endpoints come from the provider's standard environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...), read by `object_store`'s
//! `from_env` builders.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, RetryConfig};

/// A table on object storage (`--table-dir s3://...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// The table's URL as given, without a trailing `/`.
    pub url: String,
    /// Bytes of complete files the spool may hold while they wait for
    /// their upload; beyond it new rows are dropped (`spool_full`).
    pub spool_max_bytes: u64,
}

impl Remote {
    /// The table of `url` (checked by [`parse`]) inside this one: the
    /// feedback table's `<url>/_feedback`.
    pub fn join(&self, name: &str) -> Remote {
        Remote {
            url: format!("{}/{name}", self.url),
            spool_max_bytes: self.spool_max_bytes,
        }
    }
}

/// What `--table-dir` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A directory (a plain path, or a `file://` URL).
    Local(PathBuf),
    /// An object-storage URL, its files spooled locally first.
    Remote(String),
}

/// Object-storage URL schemes, and the cargo feature each needs.
const SCHEMES: [(&str, Option<&str>); 4] = [
    ("s3", None),
    ("s3a", None),
    ("gs", Some("gcs")),
    ("az", Some("azure")),
];

/// Parses `--table-dir`: a path, `file:///path`, or `s3://bucket/prefix`
/// (and `gs://`, `az://`).
pub fn parse(value: &str) -> anyhow::Result<Location> {
    let Some((scheme, rest)) = value.split_once("://") else {
        return Ok(Location::Local(PathBuf::from(value)));
    };
    if scheme == "file" {
        if !rest.starts_with('/') {
            anyhow::bail!("--table-dir {value}: a file:// URL needs an absolute path (file:///var/lib/podium/table), or give the directory as a plain path");
        }
        return Ok(Location::Local(PathBuf::from(rest)));
    }
    let Some((_, feature)) = SCHEMES.iter().find(|(s, _)| *s == scheme) else {
        anyhow::bail!(
            "--table-dir {value}: unknown scheme {scheme}://; give a directory, or s3://BUCKET/PREFIX (also gs://, az://)"
        );
    };
    let bucket = rest.split('/').next().unwrap_or_default();
    if bucket.is_empty() {
        anyhow::bail!("--table-dir {value}: no bucket; give {scheme}://BUCKET/PREFIX");
    }
    if let Some(feature) = feature {
        if !compiled(feature) {
            anyhow::bail!(
                "--table-dir {value}: this podium was built without {scheme}:// support; build it with `cargo build --release --features {feature}`"
            );
        }
    }
    Ok(Location::Remote(value.trim_end_matches('/').to_string()))
}

fn compiled(feature: &str) -> bool {
    match feature {
        "gcs" => cfg!(feature = "gcs"),
        "azure" => cfg!(feature = "azure"),
        _ => false,
    }
}

/// The default spool of the table at `url` under `spool_dir`: one folder
/// per URL, so a table moved to another bucket never receives the files
/// meant for the old one.
pub fn spool_of(spool_dir: &Path, url: &str) -> PathBuf {
    let name: String = url
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    spool_dir.join(name)
}

/// Retries of one request inside `object_store`: few and short, so that
/// an outage is seen (and counted) by the uploader, which retries the
/// whole file with its own back-off.
fn retries() -> RetryConfig {
    RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(10),
        ..RetryConfig::default()
    }
}

/// The store and key prefix of `url`, configured from the environment.
pub fn open(url: &str) -> anyhow::Result<(Arc<dyn ObjectStore>, ObjectPath)> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("{url} is not an object-storage URL"))?;
    let prefix = rest.split_once('/').map(|(_, p)| p).unwrap_or_default();
    let prefix = ObjectPath::parse(prefix).map_err(|e| {
        anyhow::anyhow!("--table-dir {url}: the prefix is not a valid object path: {e}")
    })?;
    let store: Arc<dyn ObjectStore> = match scheme {
        "s3" | "s3a" => Arc::new(
            object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .with_retry(retries())
                .build()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--table-dir {url}: {e}; S3 is configured from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL (an S3-compatible server) and AWS_ALLOW_HTTP=true (a plain-http endpoint)"
                    )
                })?,
        ),
        #[cfg(feature = "gcs")]
        "gs" => Arc::new(
            object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_url(url)
                .with_retry(retries())
                .build()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--table-dir {url}: {e}; Google Cloud Storage is configured from GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT)"
                    )
                })?,
        ),
        #[cfg(feature = "azure")]
        "az" => Arc::new(
            object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_url(url)
                .with_retry(retries())
                .build()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--table-dir {url}: {e}; Azure is configured from AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or another AZURE_STORAGE_* credential)"
                    )
                })?,
        ),
        other => anyhow::bail!("--table-dir {url}: {other}:// is not supported by this build"),
    };
    Ok((store, prefix))
}

/// What to check when an upload fails, for the log line.
pub fn hint(url: &str) -> &'static str {
    if url.starts_with("gs://") {
        "check the bucket and GOOGLE_APPLICATION_CREDENTIALS"
    } else if url.starts_with("az://") {
        "check the container and the AZURE_STORAGE_* variables"
    } else {
        "check the bucket and AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_dirs_are_paths_file_urls_or_object_storage() {
        assert_eq!(
            parse("tables/inference").unwrap(),
            Location::Local(PathBuf::from("tables/inference"))
        );
        assert_eq!(
            parse("file:///var/lib/table").unwrap(),
            Location::Local(PathBuf::from("/var/lib/table"))
        );
        assert_eq!(
            parse("s3://bucket/a/b/").unwrap(),
            Location::Remote("s3://bucket/a/b".into())
        );
        for (bad, says) in [
            ("s3:///prefix", "no bucket"),
            ("ftp://host/x", "unknown scheme ftp://"),
            ("file://relative", "absolute path"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        if !cfg!(feature = "gcs") {
            let e = parse("gs://b/p").unwrap_err().to_string();
            assert!(e.contains("--features gcs"), "{e}");
        }
    }

    #[test]
    fn each_url_has_its_own_spool_and_the_feedback_table_its_own_prefix() {
        let a = spool_of(Path::new("/spool"), "s3://b/tables/x");
        let b = spool_of(Path::new("/spool"), "s3://b/tables/y");
        assert_ne!(a, b);
        assert_eq!(a, PathBuf::from("/spool/s3___b_tables_x"));
        let remote = Remote {
            url: "s3://b/t".into(),
            spool_max_bytes: 1,
        };
        assert_eq!(remote.join("_feedback").url, "s3://b/t/_feedback");
    }

    #[test]
    fn an_s3_store_opens_with_its_prefix() {
        let (_, prefix) = open("s3://bucket/tables/inference").unwrap();
        assert_eq!(prefix.as_ref(), "tables/inference");
    }
}
