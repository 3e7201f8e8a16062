//! The CLI's side of the admin API (`/admin/...` of a running `podium
//! serve`): typed requests and answers, and the `--server`/`--token` flags
//! that point at it.
//!
//! The wire types are the CLI's own reading of the JSON the admin API
//! writes; they ignore fields they do not show, so the server may add some.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Args;
use reqwest::{Method, RequestBuilder};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};

/// Where an alias or traffic command acts: the registry directory, or a
/// running server.
#[derive(Args)]
pub struct Remote {
    /// A running Podium (http://HOST:PORT) to change through its admin API: the
    /// version is loaded, checked and warmed before the alias moves.
    #[arg(long, env = "PODIUM_SERVER")]
    pub server: Option<String>,
    /// The admin API's bearer token.
    #[arg(long, env = "PODIUM_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Remote {
    /// A client of `--server`, or None when no server is named.
    pub fn client(&self) -> anyhow::Result<Option<AdminClient>> {
        self.server
            .as_deref()
            .map(|server| AdminClient::new(server, self.token.clone()))
            .transpose()
    }
}

/// `PUT /admin/models/{model}/aliases/{alias}`.
#[derive(Debug, Serialize)]
pub struct SetAliasRequest {
    pub version: u64,
    pub allow_signature_change: bool,
}

/// The answer to an alias change or rollback: where the alias points now
/// and what the swap cost.
#[derive(Debug, Deserialize)]
pub struct SwapAnswer {
    pub model: String,
    pub alias: String,
    pub from_version: Option<u64>,
    pub version: u64,
    /// False when the alias already served this version.
    pub swapped: bool,
    #[serde(default)]
    pub load_ms: f64,
    #[serde(default)]
    pub validate_ms: f64,
    #[serde(default)]
    pub warm_ms: f64,
}

/// `GET /admin/models/{model}/aliases`: the registry's aliases and the
/// version each one's slot serves.
#[derive(Debug, Deserialize)]
pub struct AliasesAnswer {
    pub aliases: BTreeMap<String, u64>,
    /// Per alias, the version its slot serves (null: nothing yet).
    #[serde(default)]
    pub serving: BTreeMap<String, Option<u64>>,
}

/// One arm of an endpoint, as shown and as set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmWeight {
    pub alias: String,
    pub weight: f64,
}

/// An endpoint's shadow, as shown and as set (the server keeps its default
/// `max_in_flight` when none is sent).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowShare {
    pub alias: String,
    pub fraction: f64,
}

/// One endpoint's traffic policy as the admin API shows it.
#[derive(Debug, Deserialize)]
pub struct EndpointView {
    pub name: String,
    pub model: String,
    pub arms: Vec<ArmWeight>,
    pub shadow: Option<ShadowShare>,
}

/// `PUT /admin/endpoints/{name}/traffic`.
#[derive(Debug, Serialize)]
pub struct TrafficRequest {
    pub arms: Vec<ArmWeight>,
    /// None: keep the shadow (the field is left out); Some(None): remove it
    /// (`"shadow": null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shadow: Option<Option<ShadowShare>>,
}

/// `GET /admin/experiments/{endpoint}`: an endpoint's live readout.
#[derive(Debug, Deserialize)]
pub struct Readout {
    pub endpoint: String,
    pub experiment: String,
    pub metric: String,
    pub baseline: String,
    pub alpha: f64,
    pub min_samples: u64,
    pub since: String,
    pub arms: Vec<ReadoutArm>,
    pub srm: ReadoutSrm,
    pub comparisons: Vec<ReadoutComparison>,
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// One arm of a [`Readout`].
#[derive(Debug, Deserialize)]
pub struct ReadoutArm {
    pub arm: String,
    pub version: Option<u64>,
    pub weight: f64,
    pub requests: u64,
    pub errors: u64,
    pub error_rate: Option<f64>,
    pub latency_ms: ReadoutLatency,
    pub feedback: u64,
    pub metric: ReadoutMetric,
}

#[derive(Debug, Deserialize)]
pub struct ReadoutLatency {
    pub p50: Option<f64>,
    pub p95: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct ReadoutMetric {
    pub value: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub struct ReadoutSrm {
    pub p_value: f64,
    pub ok: bool,
}

/// One arm against the baseline in a [`Readout`].
#[derive(Debug, Deserialize)]
pub struct ReadoutComparison {
    pub arm: String,
    pub diff: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub p_value: Option<f64>,
    pub always_valid_p_value: f64,
    pub decision: String,
}

#[derive(Deserialize)]
struct EndpointsAnswer {
    endpoints: Vec<EndpointView>,
}

#[derive(Deserialize)]
struct TrafficAnswer {
    endpoint: EndpointView,
}

/// The body of an admin API error.
#[derive(Deserialize)]
struct ErrorAnswer {
    error: Option<String>,
}

/// A blocking client of one server's admin API; each call waits up to five
/// minutes (a swap loads, validates and warms a version first).
pub struct AdminClient {
    runtime: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl AdminClient {
    /// A client of `server` (`http://HOST:PORT`), sending `token` as a bearer token.
    pub fn new(server: &str, token: Option<String>) -> anyhow::Result<AdminClient> {
        let base = server.trim_end_matches('/').to_string();
        anyhow::ensure!(
            base.starts_with("http://"),
            "--server must look like http://HOST:PORT, got {server}"
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(AdminClient {
            runtime,
            http,
            base,
            token,
        })
    }

    /// Points `model@alias` at a version; the server loads, checks and warms
    /// it before the alias moves.
    pub fn set_alias(
        &self,
        model: &str,
        alias: &str,
        change: &SetAliasRequest,
    ) -> anyhow::Result<SwapAnswer> {
        let path = alias_path(model, alias);
        self.call(self.request(Method::PUT, &path).json(change))
    }

    /// Points `model@alias` back at the version it served before.
    pub fn rollback(&self, model: &str, alias: &str) -> anyhow::Result<SwapAnswer> {
        let path = format!("{}/rollback", alias_path(model, alias));
        self.call(self.request(Method::POST, &path))
    }

    /// Removes `model@alias` (`force`: even when endpoints route to it).
    pub fn delete_alias(&self, model: &str, alias: &str, force: bool) -> anyhow::Result<()> {
        let mut path = alias_path(model, alias);
        if force {
            path.push_str("?force=true");
        }
        self.call::<IgnoredAny>(self.request(Method::DELETE, &path))
            .map(|_| ())
    }

    /// The aliases of `model` and what each serves.
    pub fn aliases(&self, model: &str) -> anyhow::Result<AliasesAnswer> {
        let path = format!("/admin/models/{model}/aliases");
        self.call(self.request(Method::GET, &path))
    }

    /// The configured endpoints, by name.
    pub fn endpoints(&self) -> anyhow::Result<Vec<EndpointView>> {
        let answer: EndpointsAnswer = self.call(self.request(Method::GET, "/admin/endpoints"))?;
        Ok(answer.endpoints)
    }

    /// Replaces an endpoint's weights (and shadow); answers the policy now in force.
    pub fn set_traffic(
        &self,
        endpoint: &str,
        change: &TrafficRequest,
    ) -> anyhow::Result<EndpointView> {
        let path = format!("/admin/endpoints/{endpoint}/traffic");
        let answer: TrafficAnswer = self.call(self.request(Method::PUT, &path).json(change))?;
        Ok(answer.endpoint)
    }

    /// Puts an endpoint back on the server's `--config` policy (on every
    /// replica of its registry); answers the policy now in force.
    pub fn reset_traffic(&self, endpoint: &str) -> anyhow::Result<EndpointView> {
        let path = format!("/admin/endpoints/{endpoint}/traffic");
        let answer: TrafficAnswer = self.call(self.request(Method::DELETE, &path))?;
        Ok(answer.endpoint)
    }

    /// Asks the server to read its `--config` file again; answers the
    /// server's JSON (`file`, and the endpoints `changed`).
    pub fn reload_config(&self) -> anyhow::Result<serde_json::Value> {
        self.call(self.request(Method::POST, "/admin/config/reload"))
    }

    /// The live experiment readout of `endpoint`, and the answer's JSON as sent.
    pub fn readout(&self, endpoint: &str) -> anyhow::Result<(Readout, serde_json::Value)> {
        let path = format!("/admin/experiments/{endpoint}");
        let json: serde_json::Value = self.call(self.request(Method::GET, &path))?;
        let readout = serde_json::from_value(json.clone()).map_err(|e| {
            anyhow::anyhow!(
                "{} answered a readout the CLI cannot read (is it a Podium of another version?): {e}",
                self.base
            )
        })?;
        Ok((readout, json))
    }

    /// Promotes `endpoint`'s challenger when the readout's decision meets
    /// `condition` (`better`, `not_worse`); answers the server's JSON.
    pub fn promote(&self, endpoint: &str, condition: &str) -> anyhow::Result<serde_json::Value> {
        let path = format!("/admin/experiments/{endpoint}/promote");
        let body = serde_json::json!({ "condition": condition });
        self.call(self.request(Method::POST, &path).json(&body))
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends `request` and reads the answer; an error status becomes an
    /// error carrying the server's `{"error": ...}` text.
    fn call<T: DeserializeOwned>(&self, request: RequestBuilder) -> anyhow::Result<T> {
        self.runtime.block_on(async {
            let response = request
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("cannot reach {}: {e}", self.base))?;
            let status = response.status();
            let body = response.bytes().await.unwrap_or_default();
            if !status.is_success() {
                let detail = serde_json::from_slice::<ErrorAnswer>(&body)
                    .ok()
                    .and_then(|e| e.error);
                anyhow::bail!(
                    "{} answered {status}: {}",
                    self.base,
                    in_cli_words(status, detail.as_deref(), self.token.is_some())
                );
            }
            serde_json::from_slice(&body).map_err(|e| {
                anyhow::anyhow!(
                    "{} answered {status} with a body the CLI cannot read (is it a Podium of another version?): {e}",
                    self.base
                )
            })
        })
    }
}

/// The server's error `detail`, with the API's ways out named as the CLI's
/// flags (`--allow-signature-change` for `"allow_signature_change": true`),
/// and what to pass when the server wants a token.
fn in_cli_words(status: reqwest::StatusCode, detail: Option<&str>, has_token: bool) -> String {
    if status == reqwest::StatusCode::UNAUTHORIZED {
        return if has_token {
            "the admin token was not accepted; pass the server's --admin-token (or a token of its --admin-tokens file) with --token TOKEN or PODIUM_ADMIN_TOKEN".into()
        } else {
            "this server's admin API needs a token; pass it with --token TOKEN or PODIUM_ADMIN_TOKEN".into()
        };
    }
    let Some(detail) = detail else {
        return "no detail".into();
    };
    detail
        .replace(
            "allow the change explicitly through the admin API with \"allow_signature_change\": true",
            "allow the change with --allow-signature-change",
        )
        .replace("\"allow_signature_change\": true", "--allow-signature-change")
}

fn alias_path(model: &str, alias: &str) -> String {
    format!("/admin/models/{model}/aliases/{alias}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traffic_request_keeps_removes_or_sets_the_shadow() {
        let arms = vec![ArmWeight {
            alias: "champion".into(),
            weight: 50.0,
        }];
        let body = |shadow| {
            serde_json::to_string(&TrafficRequest {
                arms: arms.clone(),
                shadow,
            })
            .unwrap()
        };
        assert_eq!(
            body(None),
            r#"{"arms":[{"alias":"champion","weight":50.0}]}"#
        );
        assert_eq!(
            body(Some(None)),
            r#"{"arms":[{"alias":"champion","weight":50.0}],"shadow":null}"#
        );
        assert_eq!(
            body(Some(Some(ShadowShare {
                alias: "candidate".into(),
                fraction: 0.2
            }))),
            r#"{"arms":[{"alias":"champion","weight":50.0}],"shadow":{"alias":"candidate","fraction":0.2}}"#
        );
    }

    #[test]
    fn reads_the_admin_api_answers() {
        let swap: SwapAnswer = serde_json::from_str(
            r#"{"model":"fraud","alias":"champion","from_version":null,"version":2,
                "swapped":true,"load_ms":1.5,"validate_ms":0.2,"warm_ms":3.0}"#,
        )
        .unwrap();
        assert_eq!(
            (swap.from_version, swap.version, swap.swapped),
            (None, 2, true)
        );
        let aliases: AliasesAnswer = serde_json::from_str(
            r#"{"model":"fraud","aliases":{"champion":2,"challenger":3},
                "serving":{"champion":2,"challenger":null}}"#,
        )
        .unwrap();
        assert_eq!(aliases.aliases["challenger"], 3);
        assert_eq!(aliases.serving["challenger"], None);
        let endpoint: TrafficAnswer = serde_json::from_str(
            r#"{"endpoint":{"name":"fraud","model":"fraud","experiment":"fraud",
                "arms":[{"alias":"champion","weight":1.0}],"sticky_key":null,
                "shadow":{"alias":"challenger","fraction":0.5,"max_in_flight":16},
                "log":"all"}}"#,
        )
        .unwrap();
        assert_eq!(endpoint.endpoint.shadow.map(|s| s.fraction), Some(0.5));
    }
}
