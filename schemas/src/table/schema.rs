//! Column names and the Arrow schema of the observation table.
//!
//! Type choices (every reader — DataFusion, pyarrow/pandas, DuckDB, Polars — handles these natively):
//! * ids are `Int64`, like the database keys they come from.
//! * Text columns, including the low-cardinality `coding_system`, `coding_code` and `unit`, are plain `Utf8`, not
//!   `Dictionary<Int32, Utf8>`: the Parquet writer dictionary-encodes text columns on disk anyway, so the dictionary
//!   type would only change what readers get back in memory — pandas and Polars turn it into `Categorical` columns,
//!   surprising in notebooks — and building it costs a hash lookup per value. (DataFusion reads `Utf8` columns from
//!   Parquet as `Utf8View`, which [`super::records_from_batch`] accepts.)
//! * `omh_json` is `Utf8` (32-bit offsets), not `LargeUtf8`: a batch holds a few thousand data points of a few
//!   hundred bytes, far below the 2 GiB one array can address (the builder refuses a row that would pass it rather
//!   than panicking); `Utf8` is what arrow-rs, DataFusion and pyarrow (`pa.string()`) use by default, and on disk
//!   both are the same Parquet `BYTE_ARRAY`, so nothing is gained by doubling the offsets.
//! * Times are `Timestamp(Microsecond, "UTC")`: instants, like the domain type's UTC microseconds; Parquet stores
//!   them as `TIMESTAMP(MICROS, isAdjustedToUTC=true)`, which every reader maps to a UTC-aware type; nanoseconds
//!   would end in 2262 and add nothing.
//! * `identifiers` is a non-null `List<Struct<system, value>>` (empty when the upload carried none), so readers never
//!   see a null list; its items and their fields are non-null because [`crate::Identifier`] has no optional parts.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

pub const COL_ID: &str = "id";
pub const COL_PATIENT_ID: &str = "patient_id";
pub const COL_JHE_USER_ID: &str = "jhe_user_id";
pub const COL_DATA_SOURCE_ID: &str = "data_source_id";
pub const COL_CODING_SYSTEM: &str = "coding_system";
pub const COL_CODING_CODE: &str = "coding_code";
pub const COL_EFFECTIVE_START: &str = "effective_start";
pub const COL_EFFECTIVE_END: &str = "effective_end";
pub const COL_LAST_UPDATED: &str = "last_updated";
pub const COL_VALUE: &str = "value";
pub const COL_UNIT: &str = "unit";
pub const COL_SYSTOLIC: &str = "systolic";
pub const COL_DIASTOLIC: &str = "diastolic";
pub const COL_IDENTIFIERS: &str = "identifiers";
pub const COL_OMH_JSON: &str = "omh_json";

/// The name of the list item field of `identifiers` (the Arrow default, which pyarrow also uses).
pub const IDENTIFIER_ITEM: &str = "item";
pub const IDENTIFIER_SYSTEM: &str = "system";
pub const IDENTIFIER_VALUE: &str = "value";

/// The time zone of every timestamp column.
pub const TIMEZONE: &str = "UTC";

/// Schema-level metadata key naming the version of this persisted format.
pub const SCHEMA_VERSION_KEY: &str = "jhe.observation.schema_version";
/// Bump on any change of a column's name, type, nullability or meaning.
pub const SCHEMA_VERSION: &str = "1";

/// The number of columns in [`observation_schema`], shared by the builder.
pub(super) const COLUMN_COUNT: usize = 15;

pub(super) fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some(TIMEZONE.into()))
}

/// The fields of one identifier (the struct inside the `identifiers` list).
pub(super) fn identifier_fields() -> Fields {
    Fields::from(vec![
        Field::new(IDENTIFIER_SYSTEM, DataType::Utf8, false),
        Field::new(IDENTIFIER_VALUE, DataType::Utf8, false),
    ])
}

pub(super) fn identifier_item_field() -> Arc<Field> {
    Arc::new(Field::new(IDENTIFIER_ITEM, DataType::Struct(identifier_fields()), false))
}

static OBSERVATION_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    // Small typed columns first and the bulky JSON last, so a notebook's `df.head()` shows what matters.
    let columns: [(&str, DataType, bool); COLUMN_COUNT] = [
        (COL_ID, DataType::Int64, false),
        (COL_PATIENT_ID, DataType::Int64, false),
        (COL_JHE_USER_ID, DataType::Int64, true),
        (COL_DATA_SOURCE_ID, DataType::Int64, true),
        (COL_CODING_SYSTEM, DataType::Utf8, false),
        (COL_CODING_CODE, DataType::Utf8, false),
        (COL_EFFECTIVE_START, timestamp_type(), false),
        (COL_EFFECTIVE_END, timestamp_type(), true),
        (COL_LAST_UPDATED, timestamp_type(), false),
        (COL_VALUE, DataType::Float64, true),
        (COL_UNIT, DataType::Utf8, true),
        (COL_SYSTOLIC, DataType::Float64, true),
        (COL_DIASTOLIC, DataType::Float64, true),
        (COL_IDENTIFIERS, DataType::List(identifier_item_field()), false),
        (COL_OMH_JSON, DataType::Utf8, false),
    ];
    let fields: Vec<Field> =
        columns.into_iter().map(|(name, data_type, nullable)| Field::new(name, data_type, nullable)).collect();
    let metadata = HashMap::from([(SCHEMA_VERSION_KEY.to_owned(), SCHEMA_VERSION.to_owned())]);
    Arc::new(Schema::new_with_metadata(fields, metadata))
});

/// The schema of the observation table (built once; cloning the returned `Arc` is all a call costs).
pub fn observation_schema() -> SchemaRef {
    Arc::clone(&OBSERVATION_SCHEMA)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_built_once() {
        assert!(Arc::ptr_eq(&observation_schema(), &observation_schema()));
    }
}
