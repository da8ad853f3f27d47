use arrow::datatypes::DataType;
use arrow::error::ArrowError;

/// What can go wrong turning observations into record batches and back.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The batch being built cannot take this observation: its text would pass what one Arrow `Utf8` array can
    /// address. Finish the batch and append the observation to the next one.
    #[error(
        "observation {id}: the batch already holds {buffered_bytes} bytes of text in {rows} rows and this observation \
         adds {record_bytes}, past the {limit}-byte limit of one Arrow string column; finish the batch first"
    )]
    BatchFull { id: i64, rows: usize, buffered_bytes: usize, record_bytes: usize, limit: usize },

    #[error("column `{column}` is missing from the record batch")]
    MissingColumn { column: String },

    #[error("column `{column}` has type {found}, expected {expected}")]
    ColumnType { column: String, found: DataType, expected: &'static str },

    #[error("column `{column}` is null in row {row}, but every observation has one")]
    NullValue { column: String, row: usize },

    #[error(
        "record batch is observation schema version {found:?} (metadata `{key}`), this build reads version {supported:?}"
    )]
    SchemaVersion { key: &'static str, found: String, supported: &'static str },

    #[error("Arrow: {0}")]
    Arrow(#[from] ArrowError),
}
