//! API keys on prediction calls (`--api-keys`): who is calling, whether the
//! key may call this endpoint, and whether it is within its rate. Every
//! protocol asks [`ApiKeys::check`]; the REST layer and the gRPC service
//! only read the key from where their protocol keeps it.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::bucket::Bucket;
use super::file::{self, Digest, KeyEntry};
use super::watch::{Watched, RELOAD_INTERVAL};
use crate::error::Error;

/// The name of the key a call was accepted with: the inference table's
/// `requester`, and the `key` label of `podium_api_key_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requester(pub Arc<str>);

impl Requester {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One key of the file.
pub struct ApiKey {
    name: Requester,
    /// None: every endpoint.
    endpoints: Option<HashSet<String>>,
    /// None: unlimited.
    bucket: Option<Arc<Bucket>>,
}

/// The keys in use, by the SHA-256 of the key.
#[derive(Default)]
pub struct KeyRing {
    by_hash: HashMap<Digest, Arc<ApiKey>>,
}

impl KeyRing {
    /// Parses a keys file; a key whose name and limit are unchanged from
    /// `previous` keeps its bucket, so a reload neither refills nor empties it.
    pub fn parse(text: &str, previous: Option<&KeyRing>) -> Result<KeyRing, String> {
        let buckets: HashMap<&str, &Arc<Bucket>> = previous
            .into_iter()
            .flat_map(|p| p.by_hash.values())
            .filter_map(|k| Some((k.name.as_str(), k.bucket.as_ref()?)))
            .collect();
        let by_hash = file::parse_keys(text)?
            .into_iter()
            .map(
                |KeyEntry {
                     name,
                     sha256,
                     limit,
                     endpoints,
                 }| {
                    let bucket = limit.map(|limit| match buckets.get(name.as_str()) {
                        Some(kept) if kept.limit() == limit => Arc::clone(kept),
                        _ => Arc::new(Bucket::new(limit)),
                    });
                    let key = ApiKey {
                        name: Requester(name.into()),
                        endpoints,
                        bucket,
                    };
                    (sha256, Arc::new(key))
                },
            )
            .collect();
        Ok(KeyRing { by_hash })
    }

    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// The API keys of `--api-keys`, re-read when the file changes.
pub struct ApiKeys {
    watched: Arc<Watched<KeyRing>>,
    first_read: Digest,
}

/// Where a client puts its key, for error messages.
const HOW: &str = "send it as `Authorization: Bearer KEY` or `x-api-key: KEY`";

impl ApiKeys {
    /// Reads the keys file; an error (unreadable, malformed) names the file and the entry.
    pub fn load(path: &Path) -> Result<ApiKeys, String> {
        let (watched, first_read) =
            Watched::load(path, "podium_api_keys_reload_errors_total", KeyRing::parse)?;
        let keys = watched.current();
        if keys.is_empty() {
            tracing::warn!(
                "{} has no keys: every prediction call is refused with 401",
                path.display()
            );
        }
        Ok(ApiKeys {
            watched,
            first_read,
        })
    }

    /// The number of keys in use.
    pub fn len(&self) -> usize {
        self.watched.current().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file every second while the task runs.
    pub fn spawn_reload(&self) -> tokio::task::JoinHandle<()> {
        let path = self.watched.path().display().to_string();
        self.watched
            .spawn_reload(RELOAD_INTERVAL, self.first_read, move |keys| {
                tracing::info!("API keys reloaded from {path}: {} keys", keys.len());
            })
    }

    /// Finds the key of a call without spending any of its rate: for a
    /// gRPC stream, checked once when it opens (each message is then
    /// [`ApiKeys::check`]ed).
    pub fn authenticate(&self, presented: Option<&str>) -> Result<Requester, Error> {
        self.find(presented).map(|key| key.name.clone())
    }

    /// The whole check of one call to `endpoint` (None: a call whose
    /// endpoint is not known yet, e.g. `/invocations` with no default; its
    /// handler refuses it): the key must be known (else 401), allowed to
    /// call the endpoint (403) and within its rate (429). Counted in
    /// `podium_auth_failures_total` and `podium_api_key_requests_total`.
    pub fn check(
        &self,
        presented: Option<&str>,
        endpoint: Option<&str>,
    ) -> Result<Requester, Error> {
        let key = self.find(presented)?;
        let name = key.name.as_str();
        let count = |outcome: &'static str| {
            metrics::counter!("podium_api_key_requests_total", "key" => name.to_string(), "outcome" => outcome)
                .increment(1);
        };
        if let (Some(allowed), Some(endpoint)) = (&key.endpoints, endpoint) {
            if !allowed.contains(endpoint) {
                count("forbidden");
                let mut allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
                allowed.sort_unstable();
                return Err(Error::Forbidden(format!(
                    "API key \"{name}\" may not call \"{endpoint}\"; it may call {}",
                    allowed.join(", ")
                )));
            }
        }
        if let Some(bucket) = &key.bucket {
            if let Err(retry_after_secs) = bucket.take() {
                count("rate_limited");
                let limit = bucket.limit();
                return Err(Error::RateLimited {
                    message: format!(
                        "API key \"{name}\" is over its rate limit ({} calls/s, burst {}); retry in {retry_after_secs} s",
                        limit.rate, limit.burst
                    ),
                    retry_after_secs,
                });
            }
        }
        count("allowed");
        Ok(key.name.clone())
    }

    /// Whether the key `presented` may post feedback for calls to
    /// `endpoint`: the same endpoints it may call (403 otherwise). Spends
    /// no rate: the feedback request was already [`ApiKeys::check`]ed.
    pub fn permits_feedback(&self, presented: Option<&str>, endpoint: &str) -> Result<(), Error> {
        let key = self.find(presented)?;
        match &key.endpoints {
            Some(allowed) if !allowed.contains(endpoint) => {
                let mut allowed: Vec<&str> = allowed.iter().map(String::as_str).collect();
                allowed.sort_unstable();
                Err(Error::Forbidden(format!(
                    "API key \"{}\" may not post feedback for calls to \"{endpoint}\"; it may call {}",
                    key.name.as_str(),
                    allowed.join(", ")
                )))
            }
            _ => Ok(()),
        }
    }

    fn find(&self, presented: Option<&str>) -> Result<Arc<ApiKey>, Error> {
        let Some(presented) = presented else {
            metrics::counter!("podium_auth_failures_total", "reason" => "missing").increment(1);
            return Err(Error::Unauthenticated(format!(
                "this call needs an API key: {HOW}"
            )));
        };
        match self.watched.current().by_hash.get(&file::digest(presented)) {
            Some(key) => Ok(Arc::clone(key)),
            None => {
                metrics::counter!("podium_auth_failures_total", "reason" => "unknown").increment(1);
                Err(Error::Unauthenticated(
                    "unknown API key: it is not in this server's --api-keys file (revoked, or mistyped?)".into(),
                ))
            }
        }
    }
}

/// The key or token a request presents: `Authorization: Bearer SECRET`
/// (the scheme in any case), else `x-api-key: SECRET`; `header` looks a
/// header (or gRPC metadata) up by its lower-case name.
pub fn presented<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<&'a str> {
    let bearer = header("authorization").and_then(|v| {
        let (scheme, secret) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| secret.trim())
    });
    bearer
        .or_else(|| header("x-api-key").map(str::trim))
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::file::sha256_hex;

    fn ring(text: &str) -> ApiKeys {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        std::fs::write(&path, text).unwrap();
        ApiKeys::load(&path).unwrap()
    }

    fn entry(name: &str, secret: &str, extra: &str) -> String {
        format!(
            "[[key]]\nname = \"{name}\"\nsha256 = \"{}\"\n{extra}\n",
            sha256_hex(secret)
        )
    }

    #[tokio::test(start_paused = true)]
    async fn known_allowed_and_within_rate() {
        let keys = ring(
            &(entry(
                "checkout",
                "k1",
                "rate = 1\nburst = 2\nendpoints = [\"fraud\"]",
            ) + &entry("ops", "k2", "")),
        );
        let err = |r: Result<Requester, Error>| r.unwrap_err().to_string();
        assert!(err(keys.check(None, Some("fraud"))).contains("needs an API key"));
        assert!(err(keys.check(Some("nope"), Some("fraud"))).contains("unknown API key"));
        let forbidden = keys.check(Some("k1"), Some("churn")).unwrap_err();
        assert!(matches!(forbidden, Error::Forbidden(_)));
        assert_eq!(
            forbidden.to_string(),
            "API key \"checkout\" may not call \"churn\"; it may call fraud"
        );
        assert_eq!(
            keys.check(Some("k1"), Some("fraud")).unwrap().as_str(),
            "checkout"
        );
        assert!(keys.check(Some("k1"), Some("fraud")).is_ok());
        match keys.check(Some("k1"), Some("fraud")) {
            Err(Error::RateLimited {
                retry_after_secs,
                message,
            }) => {
                assert_eq!(retry_after_secs, 1);
                assert!(
                    message.contains("\"checkout\" is over its rate limit"),
                    "{message}"
                );
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        // A refused endpoint takes no token; an unlimited key never runs out.
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(keys.check(Some("k1"), Some("churn")).is_err());
        assert!(keys.check(Some("k1"), Some("fraud")).is_ok());
        for _ in 0..1000 {
            assert_eq!(keys.check(Some("k2"), Some("any")).unwrap().as_str(), "ops");
        }
        assert_eq!(keys.authenticate(Some("k1")).unwrap().as_str(), "checkout");
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_survive_a_reload_while_the_key_is_the_same() {
        let before =
            entry("a", "ka", "rate = 1\nburst = 1") + &entry("b", "kb", "rate = 1\nburst = 1");
        let old = KeyRing::parse(&before, None).unwrap();
        let bucket = |ring: &KeyRing, secret: &str| {
            Arc::clone(ring.by_hash[&file::digest(secret)].bucket.as_ref().unwrap())
        };
        // "a" keeps its name and limit under a new secret; "b" changes its limit.
        let after =
            entry("a", "ka2", "rate = 1\nburst = 1") + &entry("b", "kb", "rate = 2\nburst = 1");
        let new = KeyRing::parse(&after, Some(&old)).unwrap();
        assert!(Arc::ptr_eq(&bucket(&old, "ka"), &bucket(&new, "ka2")));
        assert!(!Arc::ptr_eq(&bucket(&old, "kb"), &bucket(&new, "kb")));
    }

    #[test]
    fn the_key_comes_from_either_header() {
        let headers = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
        };
        assert_eq!(
            presented(headers(&[("authorization", "Bearer abc")])),
            Some("abc")
        );
        assert_eq!(
            presented(headers(&[("authorization", "bearer  abc ")])),
            Some("abc")
        );
        assert_eq!(presented(headers(&[("x-api-key", "xyz")])), Some("xyz"));
        assert_eq!(
            presented(headers(&[
                ("authorization", "Basic dXNlcg=="),
                ("x-api-key", "xyz")
            ])),
            Some("xyz")
        );
        assert_eq!(
            presented(headers(&[("authorization", "Basic dXNlcg==")])),
            None
        );
        assert_eq!(presented(headers(&[("x-api-key", " ")])), None);
        assert_eq!(presented(headers(&[])), None);
    }
}
