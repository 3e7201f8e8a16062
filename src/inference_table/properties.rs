//! How a table's Parquet files are encoded: codec, row groups, page size,
//! and no dictionary or statistics where they only cost.

use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::kind::RowKind;
use super::TableOptions;

/// The size a column's data page is cut at before compression (Parquet's
/// default is 1 MiB). With 1 MiB pages each page's buffers, and snappy's
/// output for it, were new memory that the writer grew and the kernel
/// zeroed; pages of 64 or 128 KiB cost 8-12% less writer CPU per row in
/// `benches/table_writer`, and 128 KiB made files ~3% larger there.
const PAGE_BYTES: usize = 128 * 1024;

/// The writer properties of a table of `K` rows with `options`.
pub(super) fn properties<K: RowKind>(options: &TableOptions) -> WriterProperties {
    let mut properties = WriterProperties::builder()
        .set_compression(options.compression.codec())
        .set_max_row_group_row_count(Some(64 * 1024))
        .set_data_page_size_limit(PAGE_BYTES)
        .set_created_by(format!("podium {}", env!("CARGO_PKG_VERSION")));
    for column in K::UNIQUE_TEXT {
        let path = ColumnPath::from(*column);
        properties = properties
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_statistics_enabled(path, EnabledStatistics::None);
    }
    for column in K::UNIQUE_NUMBERS {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    properties.build()
}
