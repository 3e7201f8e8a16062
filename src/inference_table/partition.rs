//! The writer's partitions: the folder a row goes to, and the rows of one
//! partition not yet in a closed file.

use std::ffi::OsStr;
use std::ops::Deref;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use super::file::OpenFile;

/// A partition: its folder relative to the table
/// (`endpoint=<e>/request_date=<d>`). Every row looks its partition up, so
/// the key is shared (cloned without allocating) and compared and hashed as
/// plain bytes (a `Path` hashes component by component).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct PartitionKey(pub Arc<OsStr>);

impl Deref for PartitionKey {
    type Target = Path;
    fn deref(&self) -> &Path {
        Path::new(&self.0)
    }
}

/// The rows of one partition not yet in a closed file.
pub(super) struct Partition<R> {
    pub pending: Vec<R>,
    /// Payload bytes of `pending`.
    pub pending_bytes: usize,
    pub file: Option<OpenFile>,
    /// When the oldest row not yet in a closed file arrived.
    pub oldest: Option<Instant>,
    /// When the oldest row of `pending` arrived.
    pub pending_since: Option<Instant>,
}

impl<R> Partition<R> {
    pub fn new() -> Partition<R> {
        Partition {
            pending: Vec::new(),
            pending_bytes: 0,
            file: None,
            oldest: None,
            pending_since: None,
        }
    }
}
