//! What a gRPC answer or failure counts as: the `grpc-status` of its
//! trailers (or of its headers, for a call refused before any message), a
//! stream reset by the server mapped as gRPC's HTTP/2 spec maps it, and the
//! metadata names a call may not carry.

use h2::Reason;
use hyper::HeaderMap;
use percent_encoding::percent_decode_str;

use crate::outcome::{self, ErrorClass};

/// Headers the generator sets itself, or that HTTP/2 forbids (RFC 9113
/// §8.2.2): refused as `--header` on gRPC runs, before any call.
const RESERVED: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "te",
    "content-type",
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
];

/// Refuses a `--header` name a gRPC call cannot carry, saying why.
pub fn check_metadata_name(name: &str) -> Result<(), String> {
    if RESERVED.contains(&name) {
        return Err(format!(
            "--header {name}: not allowed on gRPC calls (HTTP/2 forbids connection headers, and the generator sets content-type and te itself)"
        ));
    }
    Ok(())
}

/// The call's status: `Ok` for OK, else the error of class `grpc_<CODE>`
/// with the status message. `grpc-status` is read from the trailers, else
/// from the headers (a "trailers-only" answer); `None` when neither has one.
pub fn answer_status(
    headers: &HeaderMap,
    trailers: Option<&HeaderMap>,
) -> Option<Result<(), (ErrorClass, String)>> {
    let map = match trailers {
        Some(t) if t.contains_key("grpc-status") => t,
        _ => headers,
    };
    let code = map.get("grpc-status")?;
    let code = match code
        .to_str()
        .ok()
        .and_then(|c| c.trim().parse::<i32>().ok())
    {
        Some(code) => code,
        None => {
            return Some(Err((
                ErrorClass::Protocol,
                format!("grpc-status {code:?} is not a number"),
            )))
        }
    };
    if code == 0 {
        return Some(Ok(()));
    }
    let message = map
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(|m| percent_decode_str(m).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    Some(Err((
        ErrorClass::Grpc(code),
        message.chars().take(300).collect(),
    )))
}

/// The class of an h2 failure: a stream the server reset counts as the
/// gRPC status the gRPC HTTP/2 spec gives its reason (a server shedding
/// load with REFUSED_STREAM is `grpc_UNAVAILABLE`, not a broken
/// connection); an I/O error by its kind; anything else (GOAWAY, a
/// protocol error) as the connection breaking.
pub fn h2_error(e: &h2::Error) -> ErrorClass {
    if let Some(io) = e.get_io() {
        return outcome::io_error(io);
    }
    match e.reason() {
        Some(reason) if e.is_reset() && e.is_remote() => ErrorClass::Grpc(reset_code(reason)),
        _ => ErrorClass::Io,
    }
}

/// gRPC's code for an RST_STREAM reason (PROTOCOL-HTTP2.md, "Errors").
fn reset_code(reason: Reason) -> i32 {
    match reason {
        Reason::REFUSED_STREAM => 14,     // UNAVAILABLE
        Reason::CANCEL => 1,              // CANCELLED
        Reason::ENHANCE_YOUR_CALM => 8,   // RESOURCE_EXHAUSTED
        Reason::INADEQUATE_SECURITY => 7, // PERMISSION_DENIED
        _ => 13,                          // INTERNAL
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    hyper::header::HeaderName::from_static(k),
                    HeaderValue::from_static(v),
                )
            })
            .collect()
    }

    #[test]
    fn status_from_trailers_then_headers() {
        let ok = map(&[("grpc-status", "0")]);
        assert_eq!(answer_status(&HeaderMap::new(), Some(&ok)), Some(Ok(())));
        let refused = map(&[
            ("grpc-status", "5"),
            ("grpc-message", "no%20model%20%22x%22"),
        ]);
        assert_eq!(
            answer_status(&refused, None),
            Some(Err((ErrorClass::Grpc(5), "no model \"x\"".into())))
        );
        // Trailers without a status leave the headers' word.
        assert_eq!(
            answer_status(&refused, Some(&HeaderMap::new()))
                .unwrap()
                .unwrap_err()
                .0,
            ErrorClass::Grpc(5)
        );
        assert_eq!(answer_status(&HeaderMap::new(), None), None);
        let garbled = map(&[("grpc-status", "five")]);
        assert_eq!(
            answer_status(&garbled, None).unwrap().unwrap_err().0,
            ErrorClass::Protocol
        );
    }

    #[test]
    fn resets_map_to_grpc_codes() {
        assert_eq!(reset_code(Reason::REFUSED_STREAM), 14);
        assert_eq!(reset_code(Reason::ENHANCE_YOUR_CALM), 8);
        assert_eq!(reset_code(Reason::CANCEL), 1);
        assert_eq!(reset_code(Reason::PROTOCOL_ERROR), 13);
        // A reset h2 sends itself is not the server's answer.
        assert_eq!(
            h2_error(&h2::Error::from(Reason::REFUSED_STREAM)),
            ErrorClass::Io
        );
    }

    #[test]
    fn reserved_metadata_is_refused() {
        assert!(check_metadata_name("x-user-id").is_ok());
        assert!(check_metadata_name("authorization").is_ok());
        let e = check_metadata_name("connection").unwrap_err();
        assert!(e.contains("not allowed on gRPC calls"), "{e}");
        assert!(check_metadata_name("te").is_err());
        assert!(check_metadata_name("content-type").is_err());
    }
}
