//! `--webhook URL`: one JSON POST per breach, retried with exponential
//! back-off on connection failures, timeouts, 429 and 5xx; all the posts
//! of one run share a time budget, so an unreachable receiver never holds
//! the run up for longer than that.

use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::drift::Breach;

/// How long one attempt may take (less when the budget has less left).
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
            .user_agent(concat!("podium/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let mut delivery = Delivery::default();
        for (i, breach) in breaches.iter().enumerate() {
            if Instant::now() >= deadline {
                delivery.failed.push(format!(
                    "{} of {}/{}: not sent, --webhook-budget-secs spent",
                    breach.metric, breach.arm, breach.column
                ));
                continue;
            }
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
            let left = deadline.saturating_duration_since(Instant::now());
            let why = match agent
                .post(&self.url)
                .header("Content-Type", "application/json")
                .config()
                .timeout_global(Some(ATTEMPT_TIMEOUT.min(left)))
                .build()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::monitor::drift::WindowSpan;

    #[test]
    fn a_dead_receiver_costs_the_budget_and_every_breach_is_reported() {
        // A port nothing listens on: bind, note the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let hook = Webhook {
            url: format!("http://127.0.0.1:{port}/hook"),
            budget: Duration::from_millis(300),
        };
        let breach = Breach {
            endpoint: "fraud".into(),
            arm: "champion".into(),
            column: "x[3]".into(),
            metric: "psi",
            value: 0.5,
            threshold: 0.2,
            window: WindowSpan {
                start: "2026-11-27T00:00:00Z".into(),
                end: "2026-11-28T00:00:00Z".into(),
            },
        };
        let delivery = hook.deliver(&[&breach, &breach]);
        assert!(delivery.delivered.is_empty());
        assert_eq!(delivery.failed.len(), 2, "{:?}", delivery.failed);
        assert!(
            delivery
                .failed
                .iter()
                .all(|f| f.contains("--webhook-budget-secs")),
            "{:?}",
            delivery.failed
        );
    }
}
