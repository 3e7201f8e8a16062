//! Who may call: API keys on prediction calls (`--api-keys`), named admin
//! tokens (`--admin-tokens`, with `--admin-token`), and the admin audit log.
//!
//! Protocol-free: the REST layer (`api::http::auth`), the admin API and the
//! gRPC service read the key or token from where their protocol keeps it
//! ([`presented`]) and ask [`ApiKeys::check`] / [`AdminTokens::identify`];
//! refusals are [`crate::error::Error`]s that `api::error` turns into
//! 401/403/429 and their gRPC codes.
//!
//! - [`file`]: the strict TOML format of both files (hashed secrets).
//! - [`watch`]: re-reading a file when it changes; a broken one keeps the last good one.
//! - [`bucket`]: a key's rate limit.
//! - [`api_keys`]: API keys (not `api::keys`, which reads routing keys);
//!   [`admin`]: admin tokens; [`audit`]: the audit log.
//! - [`new_secret`]: what `podium keys new` prints.

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod bucket;
pub mod file;
pub mod watch;

pub use admin::{AdminCaller, AdminTokens};
pub use api_keys::{presented, ApiKeys, Requester};
pub use audit::{AuditEntry, AuditLog};

use base64::Engine as _;

/// A new random secret: `prefix` and 32 bytes from the OS random source,
/// base64url without padding (43 characters).
pub fn new_secret(prefix: &str) -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("the OS random source failed: {e}"))?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_random_and_url_safe() {
        let a = super::new_secret("pk_").unwrap();
        assert!(a.starts_with("pk_") && a.len() == 46, "{a}");
        assert!(a[3..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(a, super::new_secret("pk_").unwrap());
    }
}
