//! The guardrail's webhook: a JSON POST per trip, sent in the background
//! with a bounded timeout and a few retries with back-off, so a slow or
//! absent receiver never holds up the loop or a request.

use std::time::Duration;

/// Each attempt's timeout, the attempts, and the first back-off (doubled
/// after each failed attempt).
pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Sends `body` to `url` from a task of its own; failures are logged.
pub fn post(url: String, body: serde_json::Value) {
    tokio::spawn(async move {
        let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("guardrail webhook {url}: cannot build an HTTP client: {e}");
                return;
            }
        };
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let why = match client.post(&url).json(&body).send().await {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => format!("answered {}", r.status()),
                Err(e) => e.to_string(),
            };
            if attempt == ATTEMPTS {
                tracing::error!(
                    "guardrail webhook {url}: gave up after {ATTEMPTS} attempts: {why}"
                );
                return;
            }
            tracing::warn!("guardrail webhook {url}: attempt {attempt} failed ({why}); retrying in {backoff:?}");
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    });
}
