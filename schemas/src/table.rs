//! The Arrow model of the observation table: one schema ([`observation_schema`]), the builder that turns validated
//! observations into record batches ([`ObservationBatchBuilder`]) and the inverse for the query layer
//! ([`records_from_batch`]).
//!
//! The schema is a persisted format: Parquet files written from these batches keep it (in their `ARROW:schema`
//! metadata) for as long as they are stored, and notebooks read them with pyarrow, pandas, DuckDB and Polars. Any
//! change to a column name, type or nullability is a format change: bump [`SCHEMA_VERSION`] and update the golden
//! test in `schemas/tests/table_schema.rs`.

mod builder;
mod error;
mod reader;
mod schema;

pub use builder::ObservationBatchBuilder;
pub use error::TableError;
pub use reader::records_from_batch;
pub use schema::{
    COL_CODING_CODE, COL_CODING_SYSTEM, COL_DATA_SOURCE_ID, COL_DIASTOLIC, COL_EFFECTIVE_END, COL_EFFECTIVE_START,
    COL_ID, COL_IDENTIFIERS, COL_JHE_USER_ID, COL_LAST_UPDATED, COL_OMH_JSON, COL_PATIENT_ID, COL_SYSTOLIC, COL_UNIT,
    COL_VALUE, IDENTIFIER_ITEM, IDENTIFIER_SYSTEM, IDENTIFIER_VALUE, SCHEMA_VERSION, SCHEMA_VERSION_KEY, TIMEZONE,
    observation_schema,
};
