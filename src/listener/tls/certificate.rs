//! What Podium reads from an X.509 certificate: the subject's common name
//! and the end of its validity, for logs.

use std::time::SystemTime;

use x509_cert::der::Decode;
use x509_cert::Certificate;

/// The parts of a certificate that logs show.
pub(crate) struct Summary {
    pub common_name: Option<String>,
    pub not_after: SystemTime,
}

/// Parses a DER certificate.
pub(crate) fn summarize(der: &[u8]) -> Result<Summary, x509_cert::der::Error> {
    let cert = Certificate::from_der(der)?;
    let tbs = cert.tbs_certificate();
    Ok(Summary {
        common_name: tbs
            .subject()
            .common_name()
            .ok()
            .flatten()
            .map(|cn| cn.value().into_owned()),
        not_after: SystemTime::UNIX_EPOCH + tbs.validity().not_after.to_unix_duration(),
    })
}

/// The subject CN of a DER certificate, if it has one that parses.
pub(crate) fn common_name(der: &[u8]) -> Option<String> {
    summarize(der).ok()?.common_name
}

/// `2026-11-27 10:00:00 UTC`.
pub(crate) fn format_time(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at)
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}
