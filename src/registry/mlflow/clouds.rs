//! The object stores MLflow keeps artifacts in (`mlflow server
//! --no-serve-artifacts`), each configured from the environment its own
//! clients read, so one set of variables serves MLflow and Podium alike:
//!
//! | location | credentials | local server |
//! |---|---|---|
//! | `s3://BUCKET/PATH` | `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`, `AWS_REGION`, web identity, instance metadata | `MLFLOW_S3_ENDPOINT_URL` |
//! | `gs://BUCKET/PATH` | `GOOGLE_APPLICATION_CREDENTIALS`, `GOOGLE_SERVICE_ACCOUNT` / `_KEY`, instance metadata | `STORAGE_EMULATOR_HOST` |
//! | `wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH` (also `wasb`, `abfss`, `abfs`) | `AZURE_STORAGE_CONNECTION_STRING`, `AZURE_STORAGE_ACCESS_KEY` / `_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`, service principal (`AZURE_CLIENT_ID`…), managed identity | `BlobEndpoint` of the connection string, `UseDevelopmentStorage=true` |

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::error::Error;

/// MLflow's variable for an S3-compatible endpoint (as its boto3 client reads it).
pub(super) const S3_ENDPOINT_VAR: &str = "MLFLOW_S3_ENDPOINT_URL";
/// A local GCS server, as Google's client libraries read it.
pub(super) const GCS_EMULATOR_VAR: &str = "STORAGE_EMULATOR_HOST";
/// Azure's connection string, as MLflow's (and Azure's) clients read it.
pub(super) const AZURE_CONNECTION_VAR: &str = "AZURE_STORAGE_CONNECTION_STRING";

/// Which cloud a location is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cloud {
    S3,
    Gcs,
    Azure,
}

impl Cloud {
    /// The cloud of an artifact URI, by its scheme.
    pub fn of(uri: &str) -> Option<Cloud> {
        let scheme = uri.split_once("://")?.0;
        match scheme {
            "s3" => Some(Cloud::S3),
            "gs" => Some(Cloud::Gcs),
            "wasbs" | "wasb" | "abfss" | "abfs" => Some(Cloud::Azure),
            _ => None,
        }
    }

    /// The store's name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Cloud::S3 => "S3",
            Cloud::Gcs => "Google Cloud Storage",
            Cloud::Azure => "Azure Blob Storage",
        }
    }

    /// What to set so Podium may read, for messages.
    pub fn credentials_hint(self) -> &'static str {
        match self {
            Cloud::S3 => "set AWS_REGION and the AWS credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or a role), and MLFLOW_S3_ENDPOINT_URL for an S3-compatible server",
            Cloud::Gcs => "set GOOGLE_APPLICATION_CREDENTIALS (or GOOGLE_SERVICE_ACCOUNT) to a service account that may read the bucket, or STORAGE_EMULATOR_HOST for a local GCS server",
            Cloud::Azure => "set AZURE_STORAGE_CONNECTION_STRING (as for MLflow), or AZURE_STORAGE_ACCESS_KEY / AZURE_STORAGE_SAS_TOKEN, to a credential that may read the container",
        }
    }
}

/// A location split up: which store, and the key prefix inside it.
pub(super) struct Opened {
    pub cloud: Cloud,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: String,
}

/// Opens the folder at `url` (`s3://`, `gs://`, `wasbs://`…, no trailing
/// `/`) with `options` and `retry`, credentials from the environment.
pub(super) fn open(url: &str, options: ClientOptions, retry: RetryConfig) -> Result<Opened, Error> {
    let cloud = Cloud::of(url)
        .ok_or_else(|| Error::Unsupported(format!("{url}: not an object-storage location")))?;
    let rest = url.split_once("://").map_or("", |(_, rest)| rest);
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/').to_string();
    let built = match cloud {
        Cloud::S3 => s3(url, host, options, retry),
        Cloud::Gcs => gcs(url, host, options, retry),
        Cloud::Azure => azure(url, host, options, retry, &env_var),
    }?;
    Ok(Opened {
        cloud,
        store: built,
        prefix,
    })
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn no_bucket(url: &str, what: &str, form: &str) -> Error {
    Error::Registry(format!(
        "MLflow gave the artifact location {url}, which names no {what} (expected {form})"
    ))
}

fn build_error(url: &str, cloud: Cloud, e: object_store::Error) -> Error {
    Error::Registry(format!(
        "cannot reach the artifacts at {url}: {e}; {}",
        cloud.credentials_hint()
    ))
}

fn s3(
    url: &str,
    bucket: &str,
    options: ClientOptions,
    retry: RetryConfig,
) -> Result<Arc<dyn ObjectStore>, Error> {
    if bucket.is_empty() {
        return Err(no_bucket(url, "bucket", "s3://BUCKET/PATH"));
    }
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_client_options(options)
        .with_retry(retry);
    if let Some(endpoint) = env_var(S3_ENDPOINT_VAR) {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        builder = builder
            .with_allow_http(endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false)
            .with_endpoint(endpoint);
    }
    let store = builder
        .build()
        .map_err(|e| build_error(url, Cloud::S3, e))?;
    Ok(Arc::new(store))
}

fn gcs(
    url: &str,
    bucket: &str,
    options: ClientOptions,
    retry: RetryConfig,
) -> Result<Arc<dyn ObjectStore>, Error> {
    if bucket.is_empty() {
        return Err(no_bucket(url, "bucket", "gs://BUCKET/PATH"));
    }
    let mut builder = GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .with_retry(retry);
    builder = match env_var(GCS_EMULATOR_VAR) {
        // As Google's clients do: a local server, no credentials sent.
        Some(host) => builder
            .with_base_url(&emulator_base(&host))
            .with_skip_signature(true)
            .with_client_options(options.with_allow_http(true)),
        None => builder.with_client_options(options),
    };
    let store = builder
        .build()
        .map_err(|e| build_error(url, Cloud::Gcs, e))?;
    Ok(Arc::new(store))
}

/// `STORAGE_EMULATOR_HOST` is `host:port` or a URL.
fn emulator_base(host: &str) -> String {
    let host = host.trim_end_matches('/');
    match host.contains("://") {
        true => host.to_string(),
        false => format!("http://{host}"),
    }
}

/// `CONTAINER@ACCOUNT.HOST` of a `wasbs://` (or `abfss://`) location.
#[derive(Debug, PartialEq, Eq)]
struct AzureHost<'a> {
    container: &'a str,
    account: &'a str,
    /// `blob.core.windows.net` (or a sovereign cloud's, or `dfs.…`).
    suffix: &'a str,
}

fn azure_host<'a>(url: &str, host: &'a str) -> Result<AzureHost<'a>, Error> {
    let form = "wasbs://CONTAINER@ACCOUNT.blob.core.windows.net/PATH";
    let (container, account_host) = host
        .split_once('@')
        .ok_or_else(|| no_bucket(url, "container and account", form))?;
    let (account, suffix) = account_host
        .split_once('.')
        .ok_or_else(|| no_bucket(url, "storage account host", form))?;
    if container.is_empty() || account.is_empty() || suffix.is_empty() {
        return Err(no_bucket(url, "container and account", form));
    }
    Ok(AzureHost {
        container,
        account,
        // Data Lake's dfs host serves the same blobs on the blob host.
        suffix: match suffix.strip_prefix("dfs.") {
            Some(rest) => rest,
            None => suffix.strip_prefix("blob.").unwrap_or(suffix),
        },
    })
}

/// The settings of an Azure connection string (`Key=Value;…`) Podium uses.
#[derive(Debug, Default, PartialEq, Eq)]
struct ConnectionString {
    account: Option<String>,
    key: Option<String>,
    sas: Option<String>,
    blob_endpoint: Option<String>,
    protocol: Option<String>,
    endpoint_suffix: Option<String>,
    development: bool,
}

impl ConnectionString {
    fn parse(text: &str) -> ConnectionString {
        let mut parsed = ConnectionString::default();
        for pair in text.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value = Some(value.trim().to_string());
            match key.trim().to_ascii_lowercase().as_str() {
                "accountname" => parsed.account = value,
                "accountkey" => parsed.key = value,
                "sharedaccesssignature" => parsed.sas = value,
                "blobendpoint" => parsed.blob_endpoint = value,
                "defaultendpointsprotocol" => parsed.protocol = value,
                "endpointsuffix" => parsed.endpoint_suffix = value,
                "usedevelopmentstorage" => {
                    parsed.development = value.is_some_and(|v| v.eq_ignore_ascii_case("true"))
                }
                _ => {}
            }
        }
        parsed
    }
}

fn azure(
    url: &str,
    host: &str,
    options: ClientOptions,
    retry: RetryConfig,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<Arc<dyn ObjectStore>, Error> {
    let builder = azure_builder(url, host, options, var)?.with_retry(retry);
    let store = builder
        .build()
        .map_err(|e| build_error(url, Cloud::Azure, e))?;
    Ok(Arc::new(store))
}

/// The builder for `host`'s container: the account and endpoint from the
/// location, overridden (as MLflow does) by a connection string.
fn azure_builder(
    url: &str,
    host: &str,
    options: ClientOptions,
    var: &dyn Fn(&str) -> Option<String>,
) -> Result<MicrosoftAzureBuilder, Error> {
    let at = azure_host(url, host)?;
    let mut builder = MicrosoftAzureBuilder::from_env()
        .with_container_name(at.container)
        .with_account(at.account);
    let Some(text) = var(AZURE_CONNECTION_VAR) else {
        let endpoint = format!("https://{}.blob.{}", at.account, at.suffix);
        return Ok(builder.with_endpoint(endpoint).with_client_options(options));
    };
    let conn = ConnectionString::parse(&text);
    if conn.development {
        // Azurite's well-known account and key (AZURITE_BLOB_STORAGE_URL moves it).
        return Ok(builder
            .with_client_options(options)
            .with_config(AzureConfigKey::AccountName, "devstoreaccount1")
            .with_use_emulator(true));
    }
    let account = conn
        .account
        .clone()
        .unwrap_or_else(|| at.account.to_string());
    let endpoint = match &conn.blob_endpoint {
        Some(endpoint) => endpoint.trim_end_matches('/').to_string(),
        None => format!(
            "{}://{account}.blob.{}",
            conn.protocol.as_deref().unwrap_or("https"),
            conn.endpoint_suffix.as_deref().unwrap_or(at.suffix)
        ),
    };
    builder = builder
        .with_account(account)
        .with_client_options(options.with_allow_http(endpoint.starts_with("http://")))
        .with_endpoint(endpoint);
    if let Some(key) = conn.key {
        builder = builder.with_access_key(key);
    }
    if let Some(sas) = conn.sas {
        builder = builder.with_config(AzureConfigKey::SasKey, sas);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::azure::AzureConfigKey as Key;

    #[test]
    fn locations_are_sorted_by_scheme() {
        assert_eq!(Cloud::of("s3://b/x"), Some(Cloud::S3));
        assert_eq!(Cloud::of("gs://b/x"), Some(Cloud::Gcs));
        for azure in [
            "wasbs://c@a.blob.core.windows.net/x",
            "abfss://c@a.dfs.core.windows.net/x",
        ] {
            assert_eq!(Cloud::of(azure), Some(Cloud::Azure), "{azure}");
        }
        assert_eq!(Cloud::of("dbfs:/x"), None);
        assert_eq!(Cloud::of("hdfs://x"), None);
        assert_eq!(emulator_base("127.0.0.1:4443"), "http://127.0.0.1:4443");
        assert_eq!(emulator_base("https://gcs.local/"), "https://gcs.local");
    }

    #[test]
    fn azure_locations_name_container_and_account() {
        let url = "wasbs://models@acct.blob.core.windows.net/1/abc";
        let host = azure_host(url, "models@acct.blob.core.windows.net").unwrap();
        assert_eq!(
            host,
            AzureHost {
                container: "models",
                account: "acct",
                suffix: "core.windows.net"
            }
        );
        let dfs = azure_host(url, "fs@acct.dfs.core.chinacloudapi.cn").unwrap();
        assert_eq!((dfs.container, dfs.suffix), ("fs", "core.chinacloudapi.cn"));
        for bad in ["models", "@acct.blob.core.windows.net", "models@acct"] {
            let e = azure_host(url, bad).unwrap_err().to_string();
            assert!(e.contains("CONTAINER@ACCOUNT"), "{bad}: {e}");
        }
    }

    fn built(host: &str, conn: Option<&str>) -> MicrosoftAzureBuilder {
        let conn = conn.map(str::to_string);
        let var = move |name: &str| {
            (name == AZURE_CONNECTION_VAR)
                .then(|| conn.clone())
                .flatten()
        };
        azure_builder("wasbs://x", host, ClientOptions::new(), &var).unwrap()
    }

    #[test]
    fn an_azure_connection_string_gives_account_key_and_endpoint() {
        let plain = built("models@acct.blob.core.windows.net", None);
        assert_eq!(
            plain.get_config_value(&Key::AccountName).as_deref(),
            Some("acct")
        );
        assert_eq!(
            plain.get_config_value(&Key::Endpoint).as_deref(),
            Some("https://acct.blob.core.windows.net")
        );
        assert_eq!(
            plain.get_config_value(&Key::ContainerName).as_deref(),
            Some("models")
        );

        let azurite = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/;";
        let local = built(
            "models@devstoreaccount1.blob.core.windows.net",
            Some(azurite),
        );
        assert_eq!(
            local.get_config_value(&Key::Endpoint).as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        assert_eq!(
            local.get_config_value(&Key::AccessKey).as_deref(),
            Some("a2V5")
        );
        assert_eq!(
            local.get_config_value(&Key::AccountName).as_deref(),
            Some("devstoreaccount1")
        );

        let cloud = "DefaultEndpointsProtocol=https;AccountName=other;SharedAccessSignature=sv=1&sig=x;EndpointSuffix=core.usgovcloudapi.net";
        let gov = built("models@acct.blob.core.windows.net", Some(cloud));
        assert_eq!(
            gov.get_config_value(&Key::Endpoint).as_deref(),
            Some("https://other.blob.core.usgovcloudapi.net"),
            "the connection string's account wins, as in MLflow"
        );
        assert_eq!(
            gov.get_config_value(&Key::SasKey).as_deref(),
            Some("sv=1&sig=x")
        );

        let dev = built(
            "c@devstoreaccount1.blob.core.windows.net",
            Some("UseDevelopmentStorage=true"),
        );
        assert_eq!(
            dev.get_config_value(&Key::UseEmulator).as_deref(),
            Some("true")
        );
    }
}
