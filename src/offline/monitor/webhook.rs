//! `--webhook URL`: one JSON POST per breach, retried with exponential
//! back-off on connection failures, timeouts, 429 and 5xx; all the posts
//! of one run share a time budget, so an unreachable receiver never holds
//! the run up for longer than that.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::drift::Breach;

/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and for how long to deliver.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    /// All the posts of one run together (with their retries) take at most this long.
    pub budget: Duration,
}

/// How the deliveries of one run went.
#[derive(Debug, Default, PartialEq)]
pub struct Delivery {
    /// Indexes (into the breaches given) of the ones delivered.
    pub delivered: Vec<usize>,
    /// Why the others were not, one line each.
    pub failed: Vec<String>,
}

impl Webhook {
    /// Posts each breach; stops retrying when the budget is spent.
    pub fn deliver(&self, breaches: &[&Breach]) -> Delivery {
        let deadline = Instant::now() + self.budget;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(ATTEMPT_TIMEOUT))
            .user_agent(concat!("podium/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut delivery = Delivery::default();
        for (i, breach) in breaches.iter().enumerate() {
            match self.post(&agent, breach, deadline) {
                Ok(()) => delivery.delivered.push(i),
                Err(why) => delivery.failed.push(format!(
                    "{} {} of {}/{}: {why}",
                    breach.metric, breach.value, breach.arm, breach.column
                )),
            }
        }
        delivery
    }

    fn post(&self, agent: &ureq::Agent, breach: &Breach, deadline: Instant) -> Result<(), String> {
        let body = serde_json::to_vec(breach).map_err(|e| e.to_string())?;
        let mut waits = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(100))
            .with_factor(2.0)
            .with_max_delay(Duration::from_secs(2))
            .without_max_times()
            .build();
        loop {
            let why = match agent
                .post(&self.url)
                .header("Content-Type", "application/json")
                .send(&body[..])
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) if r.status().as_u16() == 429 || r.status().is_server_error() => {
                    format!("the receiver answered {}", r.status())
                }
                Ok(r) => {
                    return Err(format!(
                        "the receiver answered {} (not retried)",
                        r.status()
                    ))
                }
                Err(e) => format!("{e}"),
            };
            let wait = waits.next().unwrap_or(Duration::from_secs(2));
            if Instant::now() + wait >= deadline {
                return Err(format!("{why}; gave up (--webhook-budget-secs spent)"));
            }
            std::thread::sleep(wait);
        }
    }
}
