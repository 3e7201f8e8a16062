//! A request's own timeout, from wherever its protocol carries it: the
//! `x-podium-timeout-ms` header (gRPC metadata too), gRPC's `grpc-timeout`,
//! or the OIP request parameter `timeout` (microseconds, as Triton reads it).

use std::time::Duration;

use super::keys::RequestKeys;
use crate::error::Error;

/// The header (and gRPC metadata key) with a request's timeout in milliseconds.
pub const TIMEOUT_MS: &str = "x-podium-timeout-ms";

/// The timeout a request set for itself, if any; the shortest when it set several.
pub fn requested_timeout(request: &dyn RequestKeys) -> Result<Option<Duration>, Error> {
    let mut timeouts = Vec::new();
    if let Some(v) = request.header(TIMEOUT_MS) {
        timeouts.push(positive(v, TIMEOUT_MS, "milliseconds").map(Duration::from_millis)?);
    }
    if let Some(v) = request.header("grpc-timeout") {
        timeouts.push(grpc_timeout(v)?);
    }
    if let Some(v) = request.parameter("timeout") {
        timeouts
            .push(positive(&v, "parameters.timeout", "microseconds").map(Duration::from_micros)?);
    }
    Ok(timeouts.into_iter().min())
}

fn positive(value: &str, what: &str, unit: &str) -> Result<u64, Error> {
    match value.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(Error::InvalidInput(format!(
            "{what} must be a whole number of {unit} above 0, got {value:?}"
        ))),
    }
}

/// gRPC's `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn grpc_timeout(value: &str) -> Result<Duration, Error> {
    let invalid = || {
        Error::InvalidInput(format!(
            "grpc-timeout {value:?} is not 1 to 8 digits and a unit (H, M, S, m, u, n)"
        ))
    };
    let (digits, unit) = value.split_at(value.len().saturating_sub(1));
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    let n: u64 = digits.parse().map_err(|_| invalid())?;
    Ok(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return Err(invalid()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::keys::tests::Map;

    #[test]
    fn every_source_is_read_and_the_shortest_wins() {
        let t = |pairs| requested_timeout(&Map(pairs)).unwrap();
        assert_eq!(t(vec![]), None);
        assert_eq!(
            t(vec![(TIMEOUT_MS, "250")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            t(vec![("grpc-timeout", "2S")]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            t(vec![("grpc-timeout", "1500u")]),
            Some(Duration::from_micros(1500))
        );
        assert_eq!(
            t(vec![("param:timeout", "800")]),
            Some(Duration::from_micros(800))
        );
        assert_eq!(
            t(vec![(TIMEOUT_MS, "250"), ("grpc-timeout", "100m")]),
            Some(Duration::from_millis(100))
        );
    }

    #[test]
    fn bad_values_name_the_source_and_the_form() {
        let e = |pairs| requested_timeout(&Map(pairs)).unwrap_err().to_string();
        assert!(e(vec![(TIMEOUT_MS, "soon")])
            .contains("x-podium-timeout-ms must be a whole number of milliseconds"));
        assert!(e(vec![(TIMEOUT_MS, "0")]).contains("above 0"));
        assert!(e(vec![("grpc-timeout", "123456789S")]).contains("1 to 8 digits"));
        assert!(e(vec![("grpc-timeout", "5x")]).contains("grpc-timeout \"5x\""));
        assert!(e(vec![("param:timeout", "-1")]).contains("parameters.timeout"));
    }
}
