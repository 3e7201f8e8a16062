//! Reading the requests to replay from a Podium inference table: the
//! Parquet files under `endpoint=<e>/request_date=<d>/`, filtered by
//! endpoint and time, in recorded order, each row either a request that can
//! be sent again or a reason it cannot (counted).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The columns a replay reads; the others are never decoded.
const COLUMNS: [&str; 7] = [
    "request_id",
    "request_time",
    "protocol",
    "status_code",
    "request",
    "response",
    "logging_error_codes",
];

/// Podium's logging error codes of bodies stored as null for their size.
const REQUEST_TOO_LARGE: &str = "MAX_REQUEST_SIZE_EXCEEDED";
const RESPONSE_TOO_LARGE: &str = "MAX_RESPONSE_SIZE_EXCEEDED";

/// Which rows to replay.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Only this endpoint's partition (all endpoints when `None`).
    pub endpoint: Option<String>,
    /// Rows received at or after this time...
    pub since: Option<DateTime<Utc>>,
    /// ...and before this one.
    pub until: Option<DateTime<Utc>>,
    /// At most this many requests, the first ones in recorded order.
    pub max_requests: Option<u64>,
}

impl Filter {
    fn admits_date(&self, date: NaiveDate) -> bool {
        self.since.is_none_or(|s| date >= s.date_naive())
            && self.until.is_none_or(|u| date <= u.date_naive())
    }

    fn admits_time(&self, us: i64) -> bool {
        self.since.is_none_or(|s| us >= s.timestamp_micros())
            && self.until.is_none_or(|u| us < u.timestamp_micros())
    }
}

/// How a request reached the recording server, which decides where it is
/// sent again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// OIP REST (JSON or binary) or gRPC: the table holds the request in
    /// the OIP JSON form, sent again as OIP REST JSON.
    Oip,
    /// MLflow `/invocations`: the body as sent (JSON or CSV).
    Invocations,
}

/// A recorded request that can be sent again.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    pub request_id: String,
    pub endpoint: String,
    /// When it arrived, microseconds since the epoch.
    pub time_us: i64,
    pub kind: Kind,
    /// The request body (shared with the request that sends it again).
    pub request: Bytes,
    /// The recorded answer; `None` when it was too large to log.
    pub response: Option<String>,
}

/// Why a recorded row is not replayed (the keys of `skipped`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// Recorded with `log_payloads = false`: the request body is not in the table.
    NoPayload,
    /// The request was over `--table-max-payload-bytes` and stored as null.
    Truncated,
    /// The recording server answered with an error status.
    RecordedError,
    /// A protocol this version does not know how to send.
    UnknownProtocol,
    /// An MLflow `/invocations` request, with `--model-version`: that
    /// route cannot name a version.
    NoVersionRoute,
}

impl Skip {
    pub fn key(self) -> &'static str {
        match self {
            Skip::NoPayload => "no_payload",
            Skip::Truncated => "truncated",
            Skip::RecordedError => "recorded_error",
            Skip::UnknownProtocol => "unknown_protocol",
            Skip::NoVersionRoute => "no_version_route",
        }
    }
}

/// The rows a replay selected, in recorded order.
#[derive(Debug, Default)]
pub struct Selection {
    pub requests: Vec<Recorded>,
    /// Rows within the filters that are not replayed, by reason.
    pub skipped: BTreeMap<Skip, u64>,
    /// Parquet files read.
    pub files: usize,
}

impl Selection {
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Reads the rows of the table at `dir` that `filter` admits.
pub fn read(dir: &Path, filter: &Filter) -> Result<Selection> {
    let meta = std::fs::metadata(dir).with_context(|| {
        format!(
            "cannot read the inference table {}: give the --table-dir of the server that recorded it",
            dir.display()
        )
    })?;
    if !meta.is_dir() {
        bail!(
            "{} is not a directory; --replay takes an inference table directory (a server's --table-dir)",
            dir.display()
        );
    }
    let files = files(dir, filter)?;
    if files.is_empty() {
        let which = match &filter.endpoint {
            Some(e) => format!(" of endpoint {e:?}"),
            None => String::new(),
        };
        bail!(
            "{} holds no table files{which} for the --since/--until range (a server publishes a file every --table-roll-secs; hidden .inprogress files are not complete yet)",
            dir.display()
        );
    }
    // (row, its position in the files) so that rows of the same microsecond
    // keep the order the files hold them in.
    let mut rows: Vec<(i64, usize, Result<Recorded, Skip>)> = Vec::new();
    for (endpoint, path) in &files {
        read_file(path, endpoint, filter, &mut rows)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    rows.sort_by_key(|(time, seq, _)| (*time, *seq));
    let mut selection = Selection {
        files: files.len(),
        ..Selection::default()
    };
    let max = filter.max_requests.unwrap_or(u64::MAX);
    for (_, _, row) in rows {
        if selection.requests.len() as u64 >= max {
            break;
        }
        match row {
            Ok(request) => selection.requests.push(request),
            Err(skip) => *selection.skipped.entry(skip).or_default() += 1,
        }
    }
    Ok(selection)
}

/// Podium's directory name for `endpoint`: every byte outside
/// `[A-Za-z0-9_.-]` percent-encoded.
fn partition_dir(endpoint: &str) -> String {
    const KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-').remove(b'.');
    format!("endpoint={}", utf8_percent_encode(endpoint, KEEP))
}

/// The complete Parquet files of the partitions `filter` admits, with the
/// endpoint each belongs to, sorted by path.
fn files(dir: &Path, filter: &Filter) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for endpoint_dir in subdirs(dir)? {
        let name = endpoint_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Some(encoded) = name.strip_prefix("endpoint=") else {
            continue;
        };
        if filter
            .endpoint
            .as_ref()
            .is_some_and(|e| partition_dir(e) != name)
        {
            continue;
        }
        let endpoint = percent_decode_str(encoded).decode_utf8_lossy().into_owned();
        for date_dir in subdirs(&endpoint_dir)? {
            let date = date_dir
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_prefix("request_date="))
                .and_then(|d| d.parse::<NaiveDate>().ok());
            if date.is_none_or(|d| !filter.admits_date(d)) {
                continue;
            }
            for entry in read_dir(&date_dir)? {
                let path = entry.path();
                let name = entry.file_name().to_string_lossy().into_owned();
                // Files being written are hidden (`.part-….inprogress`).
                if name.ends_with(".parquet") && !name.starts_with('.') && path.is_file() {
                    out.push((endpoint.clone(), path));
                }
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    std::fs::read_dir(dir)
        .and_then(|entries| entries.collect::<std::io::Result<Vec<_>>>())
        .with_context(|| format!("cannot list {}", dir.display()))
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = read_dir(dir)?
        .into_iter()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn read_file(
    path: &Path,
    endpoint: &str,
    filter: &Filter,
    rows: &mut Vec<(i64, usize, Result<Recorded, Skip>)>,
) -> Result<()> {
    let file = File::open(path)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
    let schema = builder.schema().clone();
    let mut roots = Vec::with_capacity(COLUMNS.len());
    for name in COLUMNS {
        roots.push(schema.index_of(name).map_err(|_| {
            anyhow!("the file has no column {name:?}: it is not a Podium inference table")
        })?);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    for batch in builder.with_projection(mask).build()? {
        rows_of(&batch?, endpoint, filter, rows)?;
    }
    Ok(())
}

fn rows_of(
    batch: &RecordBatch,
    endpoint: &str,
    filter: &Filter,
    rows: &mut Vec<(i64, usize, Result<Recorded, Skip>)>,
) -> Result<()> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| anyhow!("no column {name:?}"))
    };
    let wrong = |name: &str| {
        anyhow!("column {name:?} has an unexpected type; is this a Podium inference table?")
    };
    let text = |name: &'static str| {
        column(name).and_then(|c| c.as_string_opt::<i32>().ok_or_else(|| wrong(name)))
    };
    let request_id = text("request_id")?;
    let protocol = text("protocol")?;
    let request = text("request")?;
    let response = text("response")?;
    let time = column("request_time")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or_else(|| wrong("request_time"))?;
    let status = column("status_code")?
        .as_primitive_opt::<Int32Type>()
        .ok_or_else(|| wrong("status_code"))?;
    let codes = column("logging_error_codes")?
        .as_list_opt::<i32>()
        .ok_or_else(|| wrong("logging_error_codes"))?;
    for i in 0..batch.num_rows() {
        if time.is_null(i) {
            continue;
        }
        let us = time.value(i);
        if !filter.admits_time(us) {
            continue;
        }
        let logged = |code: &str| {
            !codes.is_null(i)
                && codes
                    .value(i)
                    .as_string_opt::<i32>()
                    .is_some_and(|c| c.iter().flatten().any(|v| v == code))
        };
        let row = if request.is_null(i) {
            Err(if logged(REQUEST_TOO_LARGE) {
                Skip::Truncated
            } else {
                Skip::NoPayload
            })
        } else if status.is_null(i) || !(200..300).contains(&status.value(i)) {
            Err(Skip::RecordedError)
        } else {
            let kind = match protocol.is_valid(i).then(|| protocol.value(i)) {
                Some("rest" | "rest-binary" | "grpc") => Some(Kind::Oip),
                Some("invocations") => Some(Kind::Invocations),
                _ => None,
            };
            match kind {
                None => Err(Skip::UnknownProtocol),
                Some(kind) => Ok(Recorded {
                    request_id: if request_id.is_null(i) {
                        String::new()
                    } else {
                        request_id.value(i).to_string()
                    },
                    endpoint: endpoint.to_string(),
                    time_us: us,
                    kind,
                    request: Bytes::copy_from_slice(request.value(i).as_bytes()),
                    response: (response.is_valid(i) && !logged(RESPONSE_TOO_LARGE))
                        .then(|| response.value(i).to_string()),
                }),
            }
        };
        let seq = rows.len();
        rows.push((us, seq, row));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_directories_are_named_as_podium_names_them() {
        assert_eq!(partition_dir("fraud-ab_2.x"), "endpoint=fraud-ab_2.x");
        assert_eq!(partition_dir("a/b=c d"), "endpoint=a%2Fb%3Dc%20d");
    }

    #[test]
    fn the_time_range_includes_since_and_excludes_until() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let f = Filter {
            since: Some(t("2026-11-27T10:00:00Z")),
            until: Some(t("2026-11-28T00:00:00Z")),
            ..Filter::default()
        };
        let us = |s: &str| t(s).timestamp_micros();
        assert!(f.admits_time(us("2026-11-27T10:00:00Z")));
        assert!(f.admits_time(us("2026-11-27T23:59:59.999999Z")));
        assert!(!f.admits_time(us("2026-11-27T09:59:59.999999Z")));
        assert!(!f.admits_time(us("2026-11-28T00:00:00Z")));
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        assert!(!f.admits_date(d("2026-11-26")));
        assert!(f.admits_date(d("2026-11-27")));
        // The date of `until` may still hold rows before it (not here, at
        // midnight, but in general): its partition is read.
        assert!(f.admits_date(d("2026-11-28")));
        assert!(!f.admits_date(d("2026-11-29")));
    }

    #[test]
    fn a_missing_or_empty_table_says_what_to_give() {
        let e = read(Path::new("/nonexistent/table"), &Filter::default()).unwrap_err();
        assert!(format!("{e:#}").contains("--table-dir"), "{e:#}");
        let dir = std::env::temp_dir().join(format!("podium-replay-empty-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("endpoint=fraud/request_date=2026-11-27")).unwrap();
        let e = read(&dir, &Filter::default()).unwrap_err();
        assert!(format!("{e:#}").contains("holds no table files"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
