//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` a client sends with a call (REST header or gRPC metadata)
//! and the `tracestate` beside it. A valid one puts the call's trace id in
//! the inference table's `trace_id` column and its log span, and the answer
//! carries a `traceparent` of Podium's own span in the same trace (a new
//! span id). A malformed one is ignored, as the specification asks: the
//! call goes on untraced, never refused.

/// The request and response header (and gRPC metadata key).
pub const TRACEPARENT: &str = "traceparent";
/// Vendor state that travels with `traceparent`, passed back unchanged.
pub const TRACESTATE: &str = "tracestate";

/// The longest `tracestate` passed through (32 members of up to 256
/// characters is the specification's limit, so 8 KiB is generous).
const MAX_TRACESTATE: usize = 8192;

/// One call's place in a distributed trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// Podium's span of this call: 16 lowercase hex digits, not all zero.
    pub span_id: String,
    /// The caller's trace flags (bit 0: sampled).
    pub flags: u8,
    /// The caller's `tracestate`, when it sent one that is header-safe.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Reads a `traceparent` (and `tracestate`); None when there is none or
    /// it is malformed (then `tracestate` is ignored too).
    pub fn read(traceparent: Option<&str>, tracestate: Option<&str>) -> Option<TraceContext> {
        let (trace_id, flags) = parse(traceparent?.trim())?;
        let tracestate = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
            .filter(|s| s.bytes().all(|b| (0x20..0x7f).contains(&b)))
            .map(str::to_string);
        Some(TraceContext {
            trace_id: trace_id.to_string(),
            span_id: new_span_id(),
            flags,
            tracestate,
        })
    }

    /// The `traceparent` of Podium's span, for the response.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// The trace id and flags of a valid `traceparent`.
fn parse(value: &str) -> Option<(&str, u8)> {
    let bytes = value.as_bytes();
    // ASCII only, so the slices below are on character boundaries.
    if bytes.len() < 55 || !value.is_ascii() {
        return None;
    }
    let version = hex_field(&value[0..2])?;
    // Version ff is invalid; version 00 is exactly 55 characters; a later
    // version may append fields after a '-', which are ignored.
    let tail_ok = match version {
        0xff => false,
        0x00 => bytes.len() == 55,
        _ => bytes.len() == 55 || bytes[55] == b'-',
    };
    if !tail_ok || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace_id = &value[3..35];
    let parent_id = &value[36..52];
    let flags = hex_field(&value[53..55])?;
    let valid_id = |id: &str| is_lower_hex(id) && id.bytes().any(|b| b != b'0');
    (valid_id(trace_id) && valid_id(parent_id)).then_some((trace_id, flags))
}

/// Two lowercase hex digits as a byte.
fn hex_field(field: &str) -> Option<u8> {
    is_lower_hex(field)
        .then(|| u8::from_str_radix(field, 16).ok())
        .flatten()
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A random span id that is not all zero.
fn new_span_id() -> String {
    format!("{:016x}", fastrand::u64(1..))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_gives_the_trace_and_a_new_span() {
        let trace = TraceContext::read(Some(VALID), Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.flags, 1);
        assert_eq!(trace.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        let answer = trace.traceparent();
        assert!(
            answer.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && answer.ends_with("-01")
        );
        assert_ne!(&answer[36..52], "00f067aa0ba902b7", "a new span id");
        assert!(parse(&answer).is_some(), "{answer}");
        // A later version may carry more fields.
        let future = format!("cc{}-extra", &VALID[2..]);
        assert!(TraceContext::read(Some(&future), None).is_some());
    }

    #[test]
    fn malformed_traceparents_are_ignored() {
        for bad in [
            "",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01é",
            "0é-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::read(Some(bad), Some("a=b")), None, "{bad:?}");
        }
        assert_eq!(TraceContext::read(None, Some("a=b")), None);
    }
}
