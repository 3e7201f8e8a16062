//! The codec of the table's Parquet files (`--table-compression`): CPU on
//! the writer thread against bytes on disk. Measured on rows with varied
//! bodies (`benches/table_writer`, BENCHMARKS.md "Codecs"), relative to
//! snappy: lz4 ~0.8x the writer's CPU and ~1.07x the bytes, zstd about the
//! same CPU and ~0.54x the bytes, none ~0.5x the CPU and ~1.74x the bytes.

use parquet::basic::{Compression, ZstdLevel};

/// How the table's Parquet pages are compressed (the journal of open files
/// never is). pandas/pyarrow and DuckDB read every one of them (tested).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TableCompression {
    /// Snappy, what Spark writes by default: readable everywhere.
    #[default]
    Snappy,
    /// LZ4 (Parquet's `LZ4_RAW`): the cheapest codec, files a little larger
    /// than snappy's. It dates from Parquet format 2.9 (2021): older
    /// readers lack it.
    Lz4,
    /// Zstandard at level 1: about snappy's CPU, files about half the size.
    Zstd,
    /// No compression: the least CPU, the largest files.
    None,
}

impl TableCompression {
    /// The codec the Parquet writer is given.
    pub fn codec(self) -> Compression {
        match self {
            TableCompression::Snappy => Compression::SNAPPY,
            TableCompression::Lz4 => Compression::LZ4_RAW,
            // Level 1 measured both smaller and cheaper than level 3 here.
            TableCompression::Zstd => Compression::ZSTD(ZstdLevel::default()),
            TableCompression::None => Compression::UNCOMPRESSED,
        }
    }
}
