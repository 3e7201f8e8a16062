//! Rows and a payload renderer for the table's unit tests.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::batch::Requests;
use super::{Payload, Protocol, Record, RenderPayload};
use crate::request::{InferRequest, InferResponse};

/// Tests store text bodies only.
pub(super) struct Plain;

impl RenderPayload for Plain {
    fn request(&self, _: &InferRequest) -> Vec<u8> {
        b"request".to_vec()
    }
    fn response(&self, _: &InferResponse) -> Vec<u8> {
        b"response".to_vec()
    }
}

/// The inference table's kind of row, with [`Plain`] payloads.
pub(super) fn requests() -> Requests {
    Requests {
        render: Arc::new(Plain),
        replica: "test".into(),
    }
}

/// A row of the endpoint `fraud` with a `body`-byte request, and a unique id.
pub(super) fn record(body: usize) -> Record {
    Record {
        request_id: format!("r{}", fastrand::u64(..)),
        client_request_id: None,
        received: std::time::SystemTime::now(),
        endpoint: "fraud".into(),
        arm: None,
        model_name: None,
        model_version: None,
        protocol: Protocol::Rest,
        status_code: 200,
        grpc_status: None,
        error: None,
        execution: None,
        total: Duration::from_millis(1),
        queue: None,
        batch_size: None,
        sampling_fraction: 1.0,
        // Letters that do not compress, like real payloads.
        request: Payload::Text(bytes::Bytes::from(
            (0..body)
                .map(|_| fastrand::u8(b'a'..=b'z'))
                .collect::<Vec<u8>>(),
        )),
        response: Payload::Absent,
        shadow: None,
        requester: None,
        trace_id: None,
        logging_error_codes: Vec::new(),
    }
}

/// Every file under `dir`, at any depth.
pub(super) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().unwrap().is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

/// The files under `dir`, at any depth, whose names end with `suffix`.
pub(super) fn named(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    walk(dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

/// The rows of every Parquet file under `dir`.
pub(super) fn parquet_rows(dir: &Path) -> usize {
    named(dir, ".parquet")
        .iter()
        .map(|p| {
            ParquetRecordBatchReaderBuilder::try_new(File::open(p).unwrap())
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap().num_rows())
                .sum::<usize>()
        })
        .sum()
}
