//! Names and addresses: the registry URI as given on the command line (parsed
//! and redacted), and the percent-encoding of paths in artifact URLs, of the
//! cache's folder names and of `file://` artifact URIs.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::error::Error;

/// Kept as they are in a cache folder name (a leading `.` is encoded apart).
const NAME_KEEPS: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-').remove(b'.');

/// Kept as they are in a path segment of an artifact URL: RFC 3986's unreserved.
const SEGMENT_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'-')
    .remove(b'.')
    .remove(b'~');

/// True for registry names that mean MLflow: `mlflow+http://…`, `http://…`.
pub fn is_mlflow_uri(s: &str) -> bool {
    let s = s.strip_prefix("mlflow+").unwrap_or(s);
    s.starts_with("http://") || s.starts_with("https://")
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

/// `mlflow+http[s]://h:p/x/` → `http[s]://h:p/x`; refuses what Podium cannot speak.
/// Errors never repeat a user part of the URI (it may hold a password).
pub(super) fn parse_uri(uri: &str) -> Result<String, Error> {
    let uri = uri.trim();
    let shown = redact_uri(uri);
    let trimmed = uri.trim_end_matches('/');
    let plain = trimmed.strip_prefix("mlflow+").unwrap_or(trimmed);
    let Some(rest) = plain
        .strip_prefix("http://")
        .or_else(|| plain.strip_prefix("https://"))
    else {
        return Err(Error::InvalidInput(format!(
            "MLflow registry {shown:?}: use mlflow+http://HOST:PORT or mlflow+https://HOST:PORT (or http[s]://HOST:PORT as in MLFLOW_TRACKING_URI); Podium talks to an MLflow tracking server over its REST API, not to its database or file store"
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

/// A directory name for any model name: unreserved characters kept, others
/// (and a leading `.`) percent-encoded, so distinct names stay distinct and
/// none escapes or hides in its parent.
pub(super) fn safe_name(name: &str) -> String {
    match name.strip_prefix('.') {
        Some(rest) => format!("%2E{}", utf8_percent_encode(rest, NAME_KEEPS)),
        None => utf8_percent_encode(name, NAME_KEEPS).to_string(),
    }
}

/// Percent-encodes each segment of a `/`-separated path.
pub(super) fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|seg| utf8_percent_encode(seg, SEGMENT_KEEPS).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// Decodes `%XX` escapes; anything else, including a `%` not followed by two
/// hex digits, is kept as it is (the input comes from the server and may hold
/// any UTF-8 after a `%`).
pub(super) fn percent_decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(
            parse_uri("mlflow+https://mlflow.example.com/x/").unwrap(),
            "https://mlflow.example.com/x"
        );
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
    }

    #[test]
    fn cache_names_keep_apart_and_stay_inside() {
        assert_eq!(safe_name("fraud"), "fraud");
        assert_eq!(safe_name("cat.schema.m"), "cat.schema.m");
        assert_eq!(safe_name("../x"), "%2E.%2Fx");
        assert_eq!(safe_name("."), "%2E");
        assert_eq!(safe_name("h_5000/a"), "h_5000%2Fa");
        assert_eq!(safe_name("é x~"), "%C3%A9%20x%7E");
        assert_eq!(
            encode_path("0/models/m 1/MLmodel"),
            "0/models/m%201/MLmodel"
        );
        assert_eq!(encode_path("a~b/é"), "a~b/%C3%A9");
    }

    #[test]
    fn percent_decoding_never_panics_on_what_the_server_sends() {
        assert_eq!(percent_decode("/a%20b/c"), "/a b/c");
        assert_eq!(percent_decode("/a%é/b"), "/a%é/b");
        assert_eq!(percent_decode("/a%1é"), "/a%1é");
        assert_eq!(percent_decode("/é%C3%A9"), "/éé");
        assert_eq!(percent_decode("%"), "%");
        assert_eq!(percent_decode("x%4"), "x%4");
        assert_eq!(percent_decode("%+1%2f"), "%+1/");
        assert_eq!(percent_decode("a%20"), "a ");
    }
}
