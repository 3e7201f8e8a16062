//! MLflow's REST API as Podium reads and writes it: typed request and answer
//! bodies for the calls Podium makes, and those calls.
//!
//! Answers name only the fields Podium reads; serde ignores the rest, so a
//! newer MLflow that adds fields is read as before. A field Podium reads
//! that is missing counts as absent (a model without a name is skipped, a
//! missing list is empty), and a version that is not a whole number is not
//! a version Podium serves; any other shape is an error that says so.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

use super::client::{Client, Method};
use crate::error::Error;

/// Pages of one search before Podium gives up (1000 models or 10000
/// versions a page: far more than any registry holds).
const MAX_PAGES: usize = 1000;

/// Each registered model's aliases: model → alias → version.
pub(super) type AliasesByModel = BTreeMap<String, BTreeMap<String, u64>>;

/// The body of an MLflow error answer.
#[derive(Debug, Deserialize)]
pub(super) struct ErrorBody {
    pub error_code: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// `GET registered-models/search`.
#[derive(Debug, Deserialize)]
struct SearchRegisteredModels {
    #[serde(default)]
    registered_models: Vec<RegisteredModel>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// `GET registered-models/get`.
#[derive(Debug, Deserialize)]
struct GetRegisteredModel {
    #[serde(default)]
    registered_model: RegisteredModel,
}

#[derive(Debug, Default, Deserialize)]
struct RegisteredModel {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    aliases: Vec<Alias>,
    #[serde(default)]
    tags: Vec<Tag>,
}

/// A registered model's tag.
#[derive(Debug, Deserialize)]
struct Tag {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Alias {
    alias: Option<String>,
    #[serde(default)]
    version: Option<VersionNumber>,
}

/// `GET model-versions/search`.
#[derive(Debug, Deserialize)]
struct SearchModelVersions {
    #[serde(default)]
    model_versions: Vec<ModelVersion>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ModelVersion {
    #[serde(default)]
    version: Option<VersionNumber>,
    /// `READY`, `PENDING_REGISTRATION`, `FAILED_REGISTRATION`; absent means ready.
    #[serde(default)]
    status: Option<String>,
}

/// A version number as MLflow writes it: a string of digits (or, from some
/// servers, a number); anything else is not a version Podium can serve.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum VersionNumber {
    Text(String),
    Number(u64),
    Other(IgnoredAny),
}

impl VersionNumber {
    fn get(&self) -> Option<u64> {
        match self {
            VersionNumber::Text(s) => parse_version(s),
            VersionNumber::Number(n) => Some(*n),
            VersionNumber::Other(_) => None,
        }
    }
}

/// `GET model-versions/get-download-uri`.
#[derive(Debug, Deserialize)]
struct DownloadUri {
    #[serde(default)]
    artifact_uri: Option<String>,
}

/// `GET runs/get`: `{"run": {"info": {"artifact_uri": …}}}`.
#[derive(Debug, Deserialize)]
struct GetRun {
    #[serde(default)]
    run: WithInfo,
}

/// `GET logged-models/<id>`: `{"model": {"info": {"artifact_uri": …}}}`.
#[derive(Debug, Deserialize)]
struct GetLoggedModel {
    #[serde(default)]
    model: WithInfo,
}

#[derive(Debug, Default, Deserialize)]
struct WithInfo {
    #[serde(default)]
    info: ArtifactRoot,
}

#[derive(Debug, Default, Deserialize)]
struct ArtifactRoot {
    #[serde(default)]
    artifact_uri: Option<String>,
}

/// `POST registered-models/alias`.
#[derive(Debug, Serialize)]
struct SetAlias<'a> {
    name: &'a str,
    alias: &'a str,
    version: String,
}

/// `POST model-versions/set-tag`.
#[derive(Debug, Serialize)]
struct SetVersionTag<'a> {
    name: &'a str,
    version: String,
    key: &'a str,
    value: &'a str,
}

/// `POST registered-models/set-tag`.
#[derive(Debug, Serialize)]
struct SetModelTag<'a> {
    name: &'a str,
    key: &'a str,
    value: &'a str,
}

/// `DELETE registered-models/delete-tag`.
#[derive(Debug, Serialize)]
struct DeleteModelTag<'a> {
    name: &'a str,
    key: &'a str,
}

/// `DELETE registered-models/alias`.
#[derive(Debug, Serialize)]
struct DeleteAlias<'a> {
    name: &'a str,
    alias: &'a str,
}

impl Client {
    /// Every registered model with its aliases (all pages).
    pub fn registered_models(&self) -> Result<AliasesByModel, Error> {
        const WHAT: &str = "registered-models/search";
        let mut models = BTreeMap::new();
        let mut pages = Pages::new(self.base(), WHAT);
        loop {
            let mut query = vec![("max_results", "1000")];
            if let Some(token) = pages.token() {
                query.push(("page_token", token));
            }
            let page: SearchRegisteredModels = self.get(WHAT, &query)?;
            for model in page.registered_models {
                if let Some(name) = model.name {
                    models.insert(name, aliases(&model.aliases));
                }
            }
            if !pages.next(page.next_page_token)? {
                return Ok(models);
            }
        }
    }

    /// The aliases of one registered model; `NotFound` if there is none.
    pub fn registered_model_aliases(&self, model: &str) -> Result<BTreeMap<String, u64>, Error> {
        let answer: GetRegisteredModel = self.get("registered-models/get", &[("name", model)])?;
        Ok(aliases(&answer.registered_model.aliases))
    }

    /// The tags of one registered model (key → value); `NotFound` if there is none.
    pub fn registered_model_tags(&self, model: &str) -> Result<BTreeMap<String, String>, Error> {
        let answer: GetRegisteredModel = self.get("registered-models/get", &[("name", model)])?;
        Ok(answer
            .registered_model
            .tags
            .into_iter()
            .filter_map(|t| Some((t.key?, t.value.unwrap_or_default())))
            .collect())
    }

    /// Sets the tag `key` of registered model `model` to `value`.
    pub fn set_model_tag(&self, model: &str, key: &str, value: &str) -> Result<(), Error> {
        let body = SetModelTag {
            name: model,
            key,
            value,
        };
        self.send_json::<IgnoredAny>(Method::Post, "registered-models/set-tag", &body)
            .map(drop)
    }

    /// Removes the tag `key` of registered model `model`.
    pub fn delete_model_tag(&self, model: &str, key: &str) -> Result<(), Error> {
        let body = DeleteModelTag { name: model, key };
        self.send_json::<IgnoredAny>(Method::Delete, "registered-models/delete-tag", &body)
            .map(drop)
    }

    /// The versions of `model` that finished registering (all pages), ascending.
    pub fn ready_versions(&self, model: &str) -> Result<Vec<u64>, Error> {
        const WHAT: &str = "model-versions/search";
        let filter = format!("name={}", quote(model));
        let mut versions = Vec::new();
        let mut pages = Pages::new(self.base(), WHAT);
        loop {
            let mut query = vec![("filter", filter.as_str()), ("max_results", "10000")];
            if let Some(token) = pages.token() {
                query.push(("page_token", token));
            }
            let page: SearchModelVersions = self.get(WHAT, &query)?;
            for v in page.model_versions {
                // PENDING_REGISTRATION / FAILED_REGISTRATION have no usable artifact yet.
                let ready = v.status.as_deref().is_none_or(|s| s == "READY");
                if let (true, Some(n)) = (ready, v.version.as_ref().and_then(VersionNumber::get)) {
                    versions.push(n);
                }
            }
            if !pages.next(page.next_page_token)? {
                break;
            }
        }
        versions.sort_unstable();
        versions.dedup();
        Ok(versions)
    }

    /// Where MLflow says the artifacts of `model` `version` are (an empty
    /// answer is `None`).
    pub fn download_uri(&self, model: &str, version: u64) -> Result<Option<String>, Error> {
        let v = version.to_string();
        let answer: DownloadUri = self.get(
            "model-versions/get-download-uri",
            &[("name", model), ("version", &v)],
        )?;
        Ok(answer.artifact_uri.filter(|s| !s.is_empty()))
    }

    /// The artifact root of run `run_id` (empty if MLflow gives none).
    pub fn run_artifact_uri(&self, run_id: &str) -> Result<String, Error> {
        let run: GetRun = self.get("runs/get", &[("run_id", run_id)])?;
        Ok(run.run.info.artifact_uri.unwrap_or_default())
    }

    /// The artifact root of logged model `id` (`m-…`; empty if MLflow gives none).
    pub fn logged_model_artifact_uri(&self, id: &str) -> Result<String, Error> {
        let logged: GetLoggedModel = self.get(&format!("logged-models/{id}"), &[])?;
        Ok(logged.model.info.artifact_uri.unwrap_or_default())
    }

    /// Points `alias` of `model` at `version`.
    pub fn set_alias(&self, model: &str, alias: &str, version: u64) -> Result<(), Error> {
        let body = SetAlias {
            name: model,
            alias,
            version: version.to_string(),
        };
        self.send_json::<IgnoredAny>(Method::Post, "registered-models/alias", &body)
            .map(drop)
    }

    /// Sets the tag `key` of `model` `version` to `value`.
    pub fn set_version_tag(
        &self,
        model: &str,
        version: u64,
        key: &str,
        value: &str,
    ) -> Result<(), Error> {
        let body = SetVersionTag {
            name: model,
            version: version.to_string(),
            key,
            value,
        };
        self.send_json::<IgnoredAny>(Method::Post, "model-versions/set-tag", &body)
            .map(drop)
    }

    /// Removes `alias` of `model` (MLflow answers 200 even if it did not exist).
    pub fn delete_alias(&self, model: &str, alias: &str) -> Result<(), Error> {
        let body = DeleteAlias { name: model, alias };
        self.send_json::<IgnoredAny>(Method::Delete, "registered-models/alias", &body)
            .map(drop)
    }
}

/// The page tokens of one search so far; refuses a repeated token or a
/// search that does not end, either of which would loop forever.
struct Pages<'a> {
    base: &'a str,
    what: &'static str,
    seen: Vec<String>,
}

impl<'a> Pages<'a> {
    fn new(base: &'a str, what: &'static str) -> Pages<'a> {
        Pages {
            base,
            what,
            seen: Vec::new(),
        }
    }

    /// The token to ask for the next page with; none for the first page.
    fn token(&self) -> Option<&str> {
        self.seen.last().map(String::as_str)
    }

    /// Takes the page's `next_page_token`: true if there is another page.
    fn next(&mut self, token: Option<String>) -> Result<bool, Error> {
        let Some(next) = token.filter(|t| !t.is_empty()) else {
            return Ok(false);
        };
        let (base, what) = (self.base, self.what);
        if self.seen.contains(&next) {
            return Err(Error::Registry(format!(
                "MLflow at {base} repeated the page token {next:?} for {what} after {} pages; the server's paging is broken (upgrade MLflow, or check any proxy in front of it)",
                self.seen.len() + 1
            )));
        }
        if self.seen.len() + 1 >= MAX_PAGES {
            return Err(Error::Registry(format!(
                "MLflow at {base} still had more pages of {what} after {MAX_PAGES}; the server's paging does not end (upgrade MLflow, or serve fewer models with --models)"
            )));
        }
        self.seen.push(next);
        Ok(true)
    }
}

fn aliases(list: &[Alias]) -> BTreeMap<String, u64> {
    list.iter()
        .filter_map(|a| Some((a.alias.clone()?, a.version.as_ref()?.get()?)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_with_fields_mlflow_may_add() {
        let page: SearchRegisteredModels = serde_json::from_str(
            r#"{"registered_models": [
                {"name": "fraud", "creation_timestamp": 1, "tags": [{"key": "k", "value": "v"}],
                 "aliases": [{"alias": "champion", "version": "3"}, {"alias": "b", "version": 4},
                             {"alias": "bad", "version": "x1"}, {"alias": "neg", "version": -1},
                             {"version": "5"}]},
                {"aliases": []}
            ], "next_page_token": "abc", "extra": {"x": 1}}"#,
        )
        .unwrap();
        assert_eq!(page.next_page_token.as_deref(), Some("abc"));
        assert_eq!(page.registered_models.len(), 2);
        let got = aliases(&page.registered_models[0].aliases);
        assert_eq!(
            got,
            BTreeMap::from([("champion".into(), 3), ("b".into(), 4)])
        );
        assert!(page.registered_models[1].name.is_none());

        let empty: SearchRegisteredModels = serde_json::from_str("{}").unwrap();
        assert!(empty.registered_models.is_empty() && empty.next_page_token.is_none());

        let versions: SearchModelVersions = serde_json::from_str(
            r#"{"model_versions": [{"version": "3", "status": "READY", "run_id": "r"},
                                   {"version": "4", "status": "PENDING_REGISTRATION"},
                                   {"version": null}]}"#,
        )
        .unwrap();
        let numbers: Vec<Option<u64>> = versions
            .model_versions
            .iter()
            .map(|v| v.version.as_ref().and_then(VersionNumber::get))
            .collect();
        assert_eq!(numbers, vec![Some(3), Some(4), None]);

        let err: ErrorBody =
            serde_json::from_str(r#"{"error_code": "RESOURCE_DOES_NOT_EXIST"}"#).unwrap();
        assert_eq!(err.error_code, "RESOURCE_DOES_NOT_EXIST");
        assert_eq!(err.message, None);
        let run: GetRun = serde_json::from_str(
            r#"{"run": {"info": {"artifact_uri": "file:///a", "run_id": "r"}, "data": {}}}"#,
        )
        .unwrap();
        assert_eq!(run.run.info.artifact_uri.as_deref(), Some("file:///a"));
    }

    #[test]
    fn search_filters_quote_any_name() {
        assert_eq!(quote("fraud"), "'fraud'");
        assert_eq!(quote("it's"), "\"it's\"");
        assert_eq!(quote("it's \"x\""), "\"it's \\\"x\\\"\"");
        assert_eq!(parse_version("12"), Some(12));
        assert_eq!(parse_version("+1"), None);
        assert_eq!(parse_version(""), None);
    }

    #[test]
    fn paging_ends_and_refuses_to_loop() {
        let mut pages = Pages::new("http://h", "registered-models/search");
        assert_eq!(pages.token(), None);
        assert!(pages.next(Some("a".into())).unwrap());
        assert_eq!(pages.token(), Some("a"));
        assert!(!pages.next(Some(String::new())).unwrap());
        assert!(!pages.next(None).unwrap());
        let err = pages.next(Some("a".into())).unwrap_err().to_string();
        assert!(err.contains("repeated the page token \"a\""), "{err}");

        let mut pages = Pages::new("http://h", "model-versions/search");
        for n in 0..MAX_PAGES - 1 {
            assert!(pages.next(Some(n.to_string())).unwrap());
        }
        let err = pages.next(Some("last".into())).unwrap_err().to_string();
        assert!(
            err.contains("still had more pages of model-versions/search after 1000"),
            "{err}"
        );
    }
}
