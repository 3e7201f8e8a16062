//! What one kind of table row is: its columns, the partition folder a row
//! goes to, and how rows become an Arrow record batch. The writer, its
//! journal and start-up recovery are one implementation over this trait;
//! the inference table ([`super::batch::Requests`]) and the feedback table
//! ([`super::feedback::Feedback`]) are its two kinds.

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

/// See the module doc.
pub trait RowKind: Clone + Send + 'static {
    /// One row, as the serving side hands it over.
    type Row: Send + 'static;

    /// The table's name in log lines ("inference table").
    const NAME: &'static str;

    /// The prefix of the table's metric names (`podium_table`): the writer
    /// counts `<prefix>_rows_written_total`, `<prefix>_rows_dropped_total`…
    const METRICS: &'static str;

    /// The Hive partition levels of a row's folder, outermost first
    /// (`["endpoint", "request_date"]`); recovery replays a journal only
    /// into a folder of this shape.
    const PARTITION: &'static [&'static str];

    /// Columns of mostly unique long text: no dictionary, no statistics.
    const UNIQUE_TEXT: &'static [&'static str];

    /// Columns of mostly unique numbers (times, durations): no dictionary,
    /// which would intern every value only to be larger than the values
    /// themselves; their statistics stay, so readers can skip by time.
    const UNIQUE_NUMBERS: &'static [&'static str] = &[];

    /// The columns stored in each file, in order.
    fn schema(&self) -> SchemaRef;

    /// The partition folder of `row`, relative to the table's root
    /// (`endpoint=fraud/request_date=2026-11-27`).
    fn partition(&self, row: &Self::Row) -> PathBuf;

    /// Whether `a` and `b` go to the same partition folder: much cheaper
    /// than building both names, and true for nearly every pair of rows in
    /// a row, so the writer asks this first.
    fn same_partition(&self, a: &Self::Row, b: &Self::Row) -> bool;

    /// Bytes of `row` counted against the queue's memory bound.
    fn size(row: &Self::Row) -> usize;

    /// One record batch of `rows` in [`RowKind::schema`]'s column order
    /// (runs on the writer thread).
    fn batch(&self, schema: &SchemaRef, rows: Vec<Self::Row>) -> anyhow::Result<RecordBatch>;
}
