//! The alias-flip drill: while the load runs, an alias is moved between
//! versions through Podium's admin API (`PUT /admin/models/{model}/aliases/
//! {alias}` with `{"version": N}`), and every answer is checked.
//!
//! An answer is *inconsistent* when
//! - `mismatch`: the `x-podium-model-version` header and the body's
//!   `model_version` disagree;
//! - `unexpected`: it names a version outside the drill's set, or none;
//! - `outputs`: its outputs differ from those an earlier answer of the same
//!   version gave (every request carries the same input);
//! - `stale`: the request was sent after a flip to version N had been
//!   acknowledged, no other flip started before its answer, and yet a
//!   version other than N answered. The admin API answers 200 once the
//!   server serves N, so from then on only N may answer.
//!
//! A failed request (any error class) is a *failure*; a PUT that does not
//! answer 200 is a failed flip.
//!
//! The drill leaves the alias where it found it ([`restore`]).

mod restore;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde::Serialize;

use crate::hist::{Latency, Percentiles};
use crate::outcome::Answer;
use crate::protocol::{chain, resolve};

/// What the drill does.
#[derive(Clone, Debug)]
pub struct FlipConfig {
    /// The REST base URL of the admin API.
    pub admin_url: String,
    pub model: String,
    pub alias: String,
    /// The versions the alias cycles through; the first one is set before
    /// the load starts.
    pub versions: Vec<u64>,
    /// From one flip's start to the next one's.
    pub every: Duration,
    pub token: Option<String>,
    /// Stop after this many flips; the run then ends one `every` later.
    pub max_flips: Option<usize>,
    /// Before the next flip, wait until this many answers have been checked
    /// against the version in force (0: flip on schedule only).
    pub settle: u64,
}

/// How long a flip may wait for its `settle` answers before it counts as
/// failed (the server stopped answering, or answers only with errors).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

impl FlipConfig {
    pub fn check(&self) -> Result<()> {
        if self.versions.len() < 2 {
            bail!("--flip needs at least two versions to flip between, e.g. --flip fraud champion 1,2");
        }
        if self.every.is_zero() {
            bail!("--every must be more than 0, e.g. --every 200ms");
        }
        Ok(())
    }

    /// The version the alias points at after flip `k` (flip 0 is the
    /// initial set).
    pub fn target(&self, k: usize) -> u64 {
        self.versions[k % self.versions.len()]
    }
}

/// Flips started and acknowledged, read by every worker around each request.
#[derive(Debug, Default)]
pub struct FlipState {
    started: AtomicUsize,
    acked: AtomicUsize,
    /// Answers checked against the version in force, over the whole run.
    checked: AtomicU64,
}

/// The flip counters as a request saw them when it was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub started: usize,
    pub acked: usize,
}

impl FlipState {
    pub fn seen(&self) -> Seen {
        // Read `acked` first: a flip acknowledged in between shows as started.
        let acked = self.acked.load(Ordering::SeqCst);
        let started = self.started.load(Ordering::SeqCst);
        Seen { started, acked }
    }

    pub fn started(&self) -> usize {
        self.started.load(Ordering::SeqCst)
    }

    /// A worker checked one more answer against the version in force.
    pub fn count_checked(&self) {
        self.checked.fetch_add(1, Ordering::SeqCst);
    }
}

/// The checks of one worker, merged at the end.
#[derive(Clone, Debug, Default)]
pub struct Checks {
    /// Answers checked against the version in force (no flip in flight).
    pub checked: u64,
    /// Inconsistent answers by kind (`mismatch`, `unexpected`, `outputs`, `stale`).
    pub inconsistent: BTreeMap<&'static str, u64>,
    pub examples: Vec<String>,
    /// The first output hash seen per version and input (the index of the
    /// distinct request that was sent).
    fingerprints: HashMap<(String, usize), u64>,
}

impl Checks {
    fn flag(&mut self, kind: &'static str, example: String) {
        *self.inconsistent.entry(kind).or_default() += 1;
        if self.examples.len() < crate::stats::EXAMPLES {
            self.examples.push(format!("{kind}: {example}"));
        }
    }

    pub fn inconsistent_total(&self) -> u64 {
        self.inconsistent.values().sum()
    }

    /// Checks a good answer to distinct request number `input`, sent when
    /// the flips were at `before` and answered when they were at
    /// `after_started`. Returns whether the answer was checked against the
    /// version in force.
    pub fn check(
        &mut self,
        cfg: &FlipConfig,
        answer: &Answer,
        input: usize,
        before: Seen,
        after_started: usize,
    ) -> bool {
        if let (Some(h), Some(b)) = (&answer.header_version, &answer.body_version) {
            if h != b {
                self.flag(
                    "mismatch",
                    format!("header x-podium-model-version {h} but body model_version {b}"),
                );
                return false;
            }
        }
        let Some(version) = answer.version() else {
            self.flag("unexpected", "the answer names no version".into());
            return false;
        };
        let known = version
            .parse::<u64>()
            .ok()
            .filter(|v| cfg.versions.contains(v));
        let Some(v) = known else {
            self.flag(
                "unexpected",
                format!(
                    "version {version} answered; the drill flips between {:?}",
                    cfg.versions
                ),
            );
            return false;
        };
        if let Some(fp) = answer.fingerprint {
            let key = (version.to_string(), input);
            match self.fingerprints.get(&key) {
                Some(&first) if first != fp => self.flag(
                    "outputs",
                    format!(
                        "version {version} answered the same input (number {input}) with different outputs"
                    ),
                ),
                Some(_) => {}
                None => {
                    self.fingerprints.insert(key, fp);
                }
            }
        }
        if before.started == before.acked && after_started == before.started {
            self.checked += 1;
            let want = cfg.target(before.acked);
            if v != want {
                self.flag(
                    "stale",
                    format!(
                        "version {v} answered a request sent after flip {} to version {want} was acknowledged",
                        before.acked
                    ),
                );
            }
            return true;
        }
        false
    }

    pub fn merge(&mut self, other: &Checks) {
        self.checked += other.checked;
        for (k, n) in &other.inconsistent {
            *self.inconsistent.entry(k).or_default() += n;
        }
        for e in &other.examples {
            if self.examples.len() < crate::stats::EXAMPLES {
                self.examples.push(e.clone());
            }
        }
        // Two workers that saw different outputs from one version.
        for (key, fp) in &other.fingerprints {
            match self.fingerprints.get(key) {
                Some(mine) if mine != fp => self.flag(
                    "outputs",
                    format!(
                        "version {} answered the same input (number {}) with different outputs",
                        key.0, key.1
                    ),
                ),
                Some(_) => {}
                None => {
                    self.fingerprints.insert(key.clone(), *fp);
                }
            }
        }
    }
}

/// What the flipper did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FlipOutcome {
    /// PUTs sent (the initial set not counted).
    pub flips: usize,
    pub failed_flips: usize,
    /// Time of one PUT, request to answer.
    pub put_latency: Percentiles,
    pub failure_examples: Vec<String>,
    /// What became of the alias at the end: restored to where it was before
    /// the drill, or a warning saying where it was left and how to fix it.
    pub restored: String,
}

/// One PUT to the admin API on a fresh connection: Ok(()) on 200.
pub async fn set_alias(
    addr: SocketAddr,
    authority: &str,
    prefix: &str,
    cfg: &FlipConfig,
    version: u64,
) -> Result<(), String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake: {}", chain(&e)))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let path = format!("{prefix}/admin/models/{}/aliases/{}", cfg.model, cfg.alias);
    let mut builder = hyper::Request::put(&path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/json");
    if let Some(token) = &cfg.token {
        builder = builder.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = Bytes::from(format!("{{\"version\": {version}}}"));
    let request = builder
        .body(Full::new(body))
        .map_err(|e| format!("building the PUT: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("PUT {path}: {}", chain(&e)))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if status != hyper::StatusCode::OK {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
        let hint = match status.as_u16() {
            401 => " (pass the admin token with --token or PODIUM_ADMIN_TOKEN)",
            404 | 405 => {
                " (is the admin API enabled on this server, and are model and alias right?)"
            }
            _ => "",
        };
        return Err(format!(
            "PUT {path} {{\"version\": {version}}} answered {status}{hint}: {text}"
        ));
    }
    Ok(())
}

/// Runs the flips while the load runs.
pub struct Flipper {
    pub state: Arc<FlipState>,
    cfg: FlipConfig,
    addr: SocketAddr,
    authority: String,
    prefix: String,
    /// Where the alias pointed before the drill (None: it did not exist).
    original: Option<u64>,
}

impl Flipper {
    /// Sets the alias to the first version (flip 0), so the drill knows
    /// where it starts; fails the run if the admin API refuses.
    pub async fn prepare(cfg: FlipConfig) -> Result<Flipper> {
        cfg.check()?;
        let address = resolve(&cfg.admin_url).await?;
        let original =
            restore::current_version(address.addr, &address.authority, &address.prefix, &cfg)
                .await
                .map_err(|why| {
                    anyhow::anyhow!(
                "the flip drill could not read where {}@{} points before flipping it: {why}",
                cfg.model,
                cfg.alias
            )
                })?;
        set_alias(
            address.addr,
            &address.authority,
            &address.prefix,
            &cfg,
            cfg.target(0),
        )
        .await
        .map_err(|why| anyhow::anyhow!("the flip drill's first PUT failed: {why}"))?;
        Ok(Flipper {
            state: Arc::new(FlipState::default()),
            cfg,
            addr: address.addr,
            authority: address.authority,
            prefix: address.prefix,
            original,
        })
    }

    /// Points the alias back where it was before the drill; the line says
    /// what was done (or, loudly, what was not).
    pub async fn restore(&self) -> String {
        let result = match self.original {
            Some(v) => set_alias(self.addr, &self.authority, &self.prefix, &self.cfg, v).await,
            None => Ok(()),
        };
        restore::restored_line(&self.cfg, self.original, result)
    }

    pub fn config(&self) -> &FlipConfig {
        &self.cfg
    }

    /// Waits, polling every millisecond, until `settle` more answers have
    /// been checked against the version in force (or the run ends).
    async fn settle(&self, stop: &AtomicBool, end: Option<Instant>) -> Result<(), String> {
        let base = self.state.checked.load(Ordering::SeqCst);
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            let done = self.state.checked.load(Ordering::SeqCst) - base;
            if done >= self.cfg.settle
                || stop.load(Ordering::SeqCst)
                || end.is_some_and(|e| Instant::now() >= e)
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "only {done} of {} answers checked against the new version within {SETTLE_TIMEOUT:?}",
                    self.cfg.settle
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Flips every `every` from `begin` until `stop` is set or `end`.
    pub async fn run(
        &self,
        begin: Instant,
        end: Option<Instant>,
        stop: Arc<AtomicBool>,
    ) -> FlipOutcome {
        let mut out = FlipOutcome::default();
        let mut put = Latency::new();
        let mut k = 0usize;
        loop {
            k += 1;
            let due = begin + self.cfg.every * (k as u32 - 1);
            if self.cfg.max_flips.is_some_and(|m| k > m) || end.is_some_and(|e| due >= e) {
                break;
            }
            // Wait for the flip's time, waking for the stop flag.
            loop {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let now = Instant::now();
                if now >= due {
                    break;
                }
                tokio::time::sleep((due - now).min(Duration::from_millis(20))).await;
            }
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let version = self.cfg.target(k);
            self.state.started.store(k, Ordering::SeqCst);
            let t0 = Instant::now();
            let result =
                set_alias(self.addr, &self.authority, &self.prefix, &self.cfg, version).await;
            put.record(t0.elapsed());
            out.flips += 1;
            match result {
                Ok(()) => {
                    self.state.acked.store(k, Ordering::SeqCst);
                    if let Err(why) = self.settle(&stop, end).await {
                        out.failed_flips += 1;
                        if out.failure_examples.len() < crate::stats::EXAMPLES {
                            out.failure_examples
                                .push(format!("flip {k} to version {version}: {why}"));
                        }
                    }
                }
                Err(why) => {
                    out.failed_flips += 1;
                    if out.failure_examples.len() < crate::stats::EXAMPLES {
                        out.failure_examples
                            .push(format!("flip {k} to version {version}: {why}"));
                    }
                }
            }
        }
        out.put_latency = put.summary();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> FlipConfig {
        FlipConfig {
            admin_url: "http://127.0.0.1:1".into(),
            model: "fraud".into(),
            alias: "champion".into(),
            versions: vec![1, 2],
            every: Duration::from_millis(200),
            token: None,
            max_flips: None,
            settle: 0,
        }
    }

    fn answer(header: &str, body: &str, fp: u64) -> Answer {
        Answer {
            header_version: Some(header.into()),
            body_version: Some(body.into()),
            fingerprint: Some(fp),
            ..Answer::default()
        }
    }

    const STILL: Seen = Seen {
        started: 3,
        acked: 3,
    };

    #[test]
    fn targets_cycle_through_the_versions() {
        let c = cfg();
        assert_eq!(
            (c.target(0), c.target(1), c.target(2), c.target(3)),
            (1, 2, 1, 2)
        );
        let three = FlipConfig {
            versions: vec![4, 5, 6],
            ..cfg()
        };
        assert_eq!((three.target(0), three.target(4)), (4, 5));
        assert!(FlipConfig {
            versions: vec![1],
            ..cfg()
        }
        .check()
        .is_err());
        assert!(FlipConfig {
            every: Duration::ZERO,
            ..cfg()
        }
        .check()
        .is_err());
    }

    #[test]
    fn answers_from_the_version_in_force_pass() {
        let c = cfg();
        let mut checks = Checks::default();
        // After flip 3 (to version 2), nothing in flight.
        checks.check(&c, &answer("2", "2", 7), 0, STILL, 3);
        checks.check(&c, &answer("2", "2", 7), 0, STILL, 3);
        assert_eq!(checks.checked, 2);
        assert_eq!(checks.inconsistent_total(), 0);
    }

    #[test]
    fn stale_answers_are_caught_only_when_no_flip_was_in_flight() {
        let c = cfg();
        let mut checks = Checks::default();
        // Flip 3 (to 2) acknowledged before the send, none started after: 1 is stale.
        checks.check(&c, &answer("1", "1", 9), 0, STILL, 3);
        assert_eq!(checks.inconsistent["stale"], 1);
        // Flip 4 started while the request was in flight: either version may answer.
        checks.check(&c, &answer("1", "1", 9), 0, STILL, 4);
        // Flip 4 started but not yet acknowledged at the send: not checked.
        checks.check(
            &c,
            &answer("2", "2", 7),
            0,
            Seen {
                started: 4,
                acked: 3,
            },
            4,
        );
        assert_eq!(checks.checked, 1);
        assert_eq!(checks.inconsistent_total(), 1);
        assert!(
            checks.examples[0].starts_with("stale: version 1"),
            "{:?}",
            checks.examples
        );
    }

    #[test]
    fn mismatched_unknown_and_changing_answers() {
        let c = cfg();
        let mut checks = Checks::default();
        checks.check(&c, &answer("1", "2", 1), 0, STILL, 3);
        checks.check(&c, &answer("3", "3", 1), 0, STILL, 3);
        checks.check(&c, &Answer::default(), 0, STILL, 3);
        checks.check(
            &c,
            &answer("2", "2", 5),
            0,
            Seen {
                started: 4,
                acked: 3,
            },
            4,
        );
        checks.check(
            &c,
            &answer("2", "2", 6),
            0,
            Seen {
                started: 4,
                acked: 3,
            },
            4,
        );
        assert_eq!(checks.inconsistent["mismatch"], 1);
        assert_eq!(checks.inconsistent["unexpected"], 2);
        assert_eq!(checks.inconsistent["outputs"], 1);
        assert_eq!(checks.checked, 0);

        // Two workers that each saw one set of outputs for version 2, but different ones.
        let mut a = Checks::default();
        a.check(&c, &answer("2", "2", 5), 0, STILL, 3);
        let mut b = Checks::default();
        b.check(&c, &answer("2", "2", 6), 0, STILL, 3);
        a.merge(&b);
        assert_eq!(a.inconsistent["outputs"], 1);
        assert_eq!(a.checked, 2);
    }

    #[test]
    fn outputs_are_compared_per_input() {
        let c = cfg();
        let mut checks = Checks::default();
        // Different inputs may get different outputs from one version.
        checks.check(&c, &answer("2", "2", 5), 0, STILL, 3);
        checks.check(&c, &answer("2", "2", 6), 1, STILL, 3);
        checks.check(&c, &answer("2", "2", 5), 0, STILL, 3);
        assert_eq!(checks.inconsistent_total(), 0);
        // The same input twice with different outputs may not.
        checks.check(&c, &answer("2", "2", 7), 1, STILL, 3);
        assert_eq!(checks.inconsistent["outputs"], 1);
        assert!(
            checks.examples[0].contains("(number 1)"),
            "{:?}",
            checks.examples
        );
        // Across workers too.
        let mut other = Checks::default();
        other.check(&c, &answer("2", "2", 8), 0, STILL, 3);
        checks.merge(&other);
        assert_eq!(checks.inconsistent["outputs"], 2);
    }
}
