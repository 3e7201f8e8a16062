//! What one request came to: an answer (with the arm and version that gave
//! it) or an error of a class the summary counts separately.

use std::fmt;

/// Why a request did not get a good answer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// An HTTP answer with a status other than 2xx.
    Http(u16),
    /// A gRPC answer with a status other than OK (the numeric code).
    Grpc(i32),
    /// No answer within `--timeout`.
    Timeout,
    /// The TCP (or HTTP/2) connection could not be opened.
    Connect,
    /// The connection broke while the request was in flight.
    Io,
    /// A success status with an answer the generator cannot read (a body
    /// that is not the protocol's, no model version where one is needed).
    Protocol,
}

/// The names of gRPC status codes, by number.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl fmt::Display for ErrorClass {
    /// The key used in the summary and in `--json`: `http_503`,
    /// `grpc_UNAVAILABLE`, `timeout`, `connect`, `io`, `protocol`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorClass::Http(status) => write!(f, "http_{status}"),
            ErrorClass::Grpc(code) => {
                match usize::try_from(*code).ok().and_then(|c| GRPC_CODES.get(c)) {
                    Some(name) => write!(f, "grpc_{name}"),
                    None => write!(f, "grpc_{code}"),
                }
            }
            ErrorClass::Timeout => f.write_str("timeout"),
            ErrorClass::Connect => f.write_str("connect"),
            ErrorClass::Io => f.write_str("io"),
            ErrorClass::Protocol => f.write_str("protocol"),
        }
    }
}

/// An HTTP status: `None` for 2xx, else its class.
pub fn http_status(status: u16) -> Option<ErrorClass> {
    (!(200..300).contains(&status)).then_some(ErrorClass::Http(status))
}

/// An I/O error from opening a connection or using it.
pub fn io_error(e: &std::io::Error) -> ErrorClass {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused | K::AddrNotAvailable | K::AddrInUse | K::NotFound => {
            ErrorClass::Connect
        }
        K::TimedOut => ErrorClass::Timeout,
        _ => ErrorClass::Io,
    }
}

/// An error from sending a request on an open connection: the first I/O
/// error among its causes decides, else it is the connection breaking.
pub fn send_error(e: &(dyn std::error::Error + 'static)) -> ErrorClass {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    for _ in 0..16 {
        let Some(c) = cause else { break };
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return io_error(io);
        }
        cause = c.source();
    }
    ErrorClass::Io
}

/// One answered request, as the statistics see it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answer {
    /// `x-podium-endpoint` (REST header or gRPC metadata).
    pub endpoint: Option<String>,
    /// `x-podium-arm`.
    pub arm: Option<String>,
    /// `x-podium-model-version`.
    pub header_version: Option<String>,
    /// The `model_version` of the body (OIP) or message (gRPC), when the
    /// answer was read that far.
    pub body_version: Option<String>,
    /// A hash of the outputs, when the answer was read that far: the same
    /// input to the same version must give the same outputs.
    pub fingerprint: Option<u64>,
}

impl Answer {
    /// The version that answered: the body's word, else the header's.
    pub fn version(&self) -> Option<&str> {
        self.body_version
            .as_deref()
            .or(self.header_version.as_deref())
    }
}

/// The result of one request.
pub type Outcome = Result<Answer, (ErrorClass, String)>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses() {
        assert_eq!(http_status(200), None);
        assert_eq!(http_status(204), None);
        assert_eq!(http_status(429), Some(ErrorClass::Http(429)));
        assert_eq!(http_status(503).unwrap().to_string(), "http_503");
    }

    #[test]
    fn grpc_codes_by_name() {
        assert_eq!(ErrorClass::Grpc(8).to_string(), "grpc_RESOURCE_EXHAUSTED");
        assert_eq!(ErrorClass::Grpc(14).to_string(), "grpc_UNAVAILABLE");
        assert_eq!(ErrorClass::Grpc(99).to_string(), "grpc_99");
    }

    #[test]
    fn io_errors_by_kind() {
        use std::io::{Error, ErrorKind};
        assert_eq!(
            io_error(&Error::from(ErrorKind::ConnectionRefused)),
            ErrorClass::Connect
        );
        assert_eq!(
            io_error(&Error::from(ErrorKind::TimedOut)),
            ErrorClass::Timeout
        );
        assert_eq!(
            io_error(&Error::from(ErrorKind::ConnectionReset)),
            ErrorClass::Io
        );
    }

    #[derive(Debug)]
    struct Wrapper(std::io::Error);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("request failed")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn send_errors_look_through_their_causes() {
        use std::io::{Error, ErrorKind};
        let refused = Wrapper(Error::from(ErrorKind::ConnectionRefused));
        assert_eq!(send_error(&refused), ErrorClass::Connect);
        let reset = Wrapper(Error::from(ErrorKind::ConnectionReset));
        assert_eq!(send_error(&reset), ErrorClass::Io);
        let other = std::fmt::Error;
        assert_eq!(send_error(&other), ErrorClass::Io);
    }

    #[test]
    fn the_body_names_the_version_first() {
        let a = Answer {
            header_version: Some("1".into()),
            body_version: Some("2".into()),
            ..Answer::default()
        };
        assert_eq!(a.version(), Some("2"));
        let a = Answer {
            header_version: Some("1".into()),
            ..Answer::default()
        };
        assert_eq!(a.version(), Some("1"));
    }
}
