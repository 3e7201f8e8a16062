//! Windows of time: `--window` (any humantime duration: `1h`, `1d`,
//! `15m`), aligned to the Unix epoch in UTC, so a `1d` window is a UTC
//! day; and the key columns every output row starts with.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, TimeUnit};
use chrono::{DateTime, Utc};

/// The length of the windows metrics are computed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub micros: i64,
}

impl Window {
    /// `1h`, `1d`, `90m`, …; at least one second.
    pub fn parse(text: &str) -> anyhow::Result<Window> {
        let d: Duration = humantime::parse_duration(text).map_err(|e| {
            anyhow::anyhow!("--window {text:?}: {e}; give a duration such as 1h, 1d or 15m")
        })?;
        anyhow::ensure!(
            d >= Duration::from_secs(1),
            "--window {text:?} is shorter than a second; give a duration such as 1h or 1d"
        );
        Ok(Window {
            micros: i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        })
    }

    /// The RFC 3339 text of a window start (µs since the epoch).
    pub fn rfc3339(start_us: i64) -> String {
        DateTime::<Utc>::from_timestamp_micros(start_us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }
}

/// `START..END` (RFC 3339 times) of `--baseline-window`, in µs.
pub fn parse_range(text: &str) -> anyhow::Result<(i64, i64)> {
    let fix =
        "write START..END with RFC 3339 times, e.g. 2026-11-20T00:00:00Z..2026-11-27T00:00:00Z";
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| anyhow::anyhow!("--baseline-window {text:?}: {fix}"))?;
    let time = |s: &str| {
        DateTime::parse_from_rfc3339(s.trim())
            .map(|t| t.timestamp_micros())
            .map_err(|e| {
                anyhow::anyhow!("--baseline-window: {s:?} is not an RFC 3339 time ({e}); {fix}")
            })
    };
    let (start, end) = (time(a)?, time(b)?);
    anyhow::ensure!(
        start < end,
        "--baseline-window {text:?} is empty: START must come before END"
    );
    Ok((start, end))
}

/// The first fields of every output row: the window, the endpoint, the arm.
pub fn window_fields() -> Vec<Field> {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    vec![
        Field::new("window_start", ts.clone(), false),
        Field::new("window_end", ts, false),
        Field::new("endpoint", DataType::Utf8, false),
        Field::new("arm", DataType::Utf8, false),
    ]
}

/// The arrays of [`window_fields`] for rows keyed (window start, arm).
pub fn window_columns(keys: &[(i64, String)], endpoint: &str, window: &Window) -> Vec<ArrayRef> {
    let ts =
        |v: Vec<i64>| Arc::new(TimestampMicrosecondArray::from(v).with_timezone("UTC")) as ArrayRef;
    vec![
        ts(keys.iter().map(|(s, _)| *s).collect()),
        ts(keys
            .iter()
            .map(|(s, _)| s.saturating_add(window.micros))
            .collect()),
        Arc::new(StringArray::from(vec![endpoint; keys.len()])),
        Arc::new(StringArray::from(
            keys.iter().map(|(_, a)| a.as_str()).collect::<Vec<_>>(),
        )),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_ranges() {
        assert_eq!(Window::parse("1h").unwrap().micros, 3_600_000_000);
        assert_eq!(Window::parse("1d").unwrap().micros, 86_400_000_000);
        assert!(Window::parse("soon")
            .unwrap_err()
            .to_string()
            .contains("1h, 1d"));
        assert!(Window::parse("10ms").is_err());
        let (a, b) = parse_range("2026-11-27T00:00:00Z..2026-11-28T00:00:00Z").unwrap();
        assert_eq!(b - a, 86_400_000_000);
        assert_eq!(Window::rfc3339(a), "2026-11-27T00:00:00Z");
        assert!(parse_range("2026-11-28T00:00:00Z..2026-11-27T00:00:00Z").is_err());
        assert!(parse_range("yesterday")
            .unwrap_err()
            .to_string()
            .contains("RFC 3339"));
    }
}
