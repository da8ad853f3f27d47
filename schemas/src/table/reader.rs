//! Turns stored rows back into [`ObservationRecord`]s, for rendering FHIR from query results.
//!
//! Batches reach the query layer through DataFusion, not straight from [`ObservationBatchBuilder`], so this accepts
//! what a faithful reader may hand back rather than exactly [`observation_schema`]: columns are found by name (any
//! order, extra columns ignored), text may come as `Utf8View`, `LargeUtf8` or a dictionary (DataFusion reads
//! Parquet strings as views by default), lists as `LargeList`, schema metadata may be gone and fields may be marked
//! nullable. Values still have to fit [`ObservationRecord`]: a null in a column every observation has is an error.
//!
//! [`ObservationBatchBuilder`]: super::ObservationBatchBuilder
//! [`observation_schema`]: super::observation_schema

use std::sync::Arc;

use arrow::array::{
    Array, ArrayAccessor, ArrayRef, AsArray, Float64Array, GenericListArray, Int64Array, RecordBatch, StringArray,
    StructArray, TimestampMicrosecondArray,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit, TimestampMicrosecondType};

use super::TableError;
use super::schema::{
    COL_CODING_CODE, COL_CODING_SYSTEM, COL_DATA_SOURCE_ID, COL_DIASTOLIC, COL_EFFECTIVE_END, COL_EFFECTIVE_START,
    COL_ID, COL_IDENTIFIERS, COL_JHE_USER_ID, COL_LAST_UPDATED, COL_OMH_JSON, COL_PATIENT_ID, COL_SYSTOLIC, COL_UNIT,
    COL_VALUE, IDENTIFIER_SYSTEM, IDENTIFIER_VALUE, SCHEMA_VERSION, SCHEMA_VERSION_KEY,
};
use crate::{EffectiveTime, Identifier, MeasuredValues, ObservationRecord};

/// The observations in `batch`, in row order.
pub fn records_from_batch(batch: &RecordBatch) -> Result<Vec<ObservationRecord>, TableError> {
    if let Some(found) = batch.schema_ref().metadata().get(SCHEMA_VERSION_KEY)
        && found != SCHEMA_VERSION
    {
        return Err(TableError::SchemaVersion {
            key: SCHEMA_VERSION_KEY,
            found: found.clone(),
            supported: SCHEMA_VERSION,
        });
    }
    let id = int64s(batch, COL_ID)?;
    let patient_id = int64s(batch, COL_PATIENT_ID)?;
    let jhe_user_id = int64s(batch, COL_JHE_USER_ID)?;
    let data_source_id = int64s(batch, COL_DATA_SOURCE_ID)?;
    let coding_system = texts(batch, COL_CODING_SYSTEM)?;
    let coding_code = texts(batch, COL_CODING_CODE)?;
    let effective_start = timestamps(batch, COL_EFFECTIVE_START)?;
    let effective_end = timestamps(batch, COL_EFFECTIVE_END)?;
    let last_updated = timestamps(batch, COL_LAST_UPDATED)?;
    let value = float64s(batch, COL_VALUE)?;
    let unit = texts(batch, COL_UNIT)?;
    let systolic = float64s(batch, COL_SYSTOLIC)?;
    let diastolic = float64s(batch, COL_DIASTOLIC)?;
    let identifiers = Identifiers::new(column(batch, COL_IDENTIFIERS)?)?;
    let omh_json = texts(batch, COL_OMH_JSON)?;

    (0..batch.num_rows())
        .map(|row| {
            Ok(ObservationRecord {
                id: required(id, row, COL_ID)?,
                patient_id: required(patient_id, row, COL_PATIENT_ID)?,
                jhe_user_id: optional(jhe_user_id, row),
                data_source_id: optional(data_source_id, row),
                coding_system: required(&coding_system, row, COL_CODING_SYSTEM)?.to_owned(),
                coding_code: required(&coding_code, row, COL_CODING_CODE)?.to_owned(),
                effective: EffectiveTime {
                    start_micros: required(effective_start, row, COL_EFFECTIVE_START)?,
                    end_micros: optional(effective_end, row),
                },
                last_updated_micros: required(last_updated, row, COL_LAST_UPDATED)?,
                identifiers: identifiers.row(row)?,
                omh_json: required(&omh_json, row, COL_OMH_JSON)?.to_owned(),
                values: MeasuredValues {
                    value: optional(value, row),
                    unit: optional(&unit, row).map(|unit| std::borrow::Cow::Owned(unit.to_owned())),
                    systolic: optional(systolic, row),
                    diastolic: optional(diastolic, row),
                },
            })
        })
        .collect()
}

fn missing(column: &str) -> TableError {
    TableError::MissingColumn { column: column.to_owned() }
}

fn wrong_type(column: &str, array: &dyn Array, expected: &'static str) -> TableError {
    TableError::ColumnType { column: column.to_owned(), found: array.data_type().clone(), expected }
}

fn optional<A: ArrayAccessor>(array: A, row: usize) -> Option<A::Item> {
    array.is_valid(row).then(|| array.value(row))
}

fn required<A: ArrayAccessor>(array: A, row: usize, column: &str) -> Result<A::Item, TableError> {
    optional(array, row).ok_or_else(|| null_at(column, row))
}

fn null_at(column: &str, row: usize) -> TableError {
    TableError::NullValue { column: column.to_owned(), row }
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef, TableError> {
    batch.column_by_name(name).ok_or_else(|| missing(name))
}

fn int64s<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int64Array, TableError> {
    let array = column(batch, name)?;
    array.as_primitive_opt::<Int64Type>().ok_or_else(|| wrong_type(name, array, "Int64"))
}

fn float64s<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Float64Array, TableError> {
    let array = column(batch, name)?;
    array.as_primitive_opt::<Float64Type>().ok_or_else(|| wrong_type(name, array, "Float64"))
}

/// Any time zone is accepted: the stored values are UTC instants whatever zone the type names.
fn timestamps<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a TimestampMicrosecondArray, TableError> {
    let array = column(batch, name)?;
    match array.data_type() {
        DataType::Timestamp(TimeUnit::Microsecond, Some(_)) => Ok(array.as_primitive::<TimestampMicrosecondType>()),
        _ => Err(wrong_type(name, array, "Timestamp(Microsecond, \"UTC\")")),
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn texts(batch: &RecordBatch, name: &str) -> Result<StringArray, TableError> {
    as_utf8(column(batch, name)?, name)
}

/// The array as `Utf8`; other text encodings are converted (copying the text once).
fn as_utf8(array: &ArrayRef, column: &str) -> Result<StringArray, TableError> {
    match array.data_type() {
        DataType::Utf8 => Ok(array.as_string::<i32>().clone()),
        DataType::LargeUtf8 | DataType::Utf8View => Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone()),
        DataType::Dictionary(_, values) if is_text(values) => {
            Ok(cast(array, &DataType::Utf8)?.as_string::<i32>().clone())
        }
        _ => Err(wrong_type(column, array, "Utf8")),
    }
}

/// The `identifiers` column: a list of `{system, value}` structs per row.
struct Identifiers {
    list: GenericListArray<i64>,
    items: StructArray,
    systems: StringArray,
    values: StringArray,
}

const ITEM_PATH: &str = "identifiers.item";
const SYSTEM_PATH: &str = "identifiers.item.system";
const VALUE_PATH: &str = "identifiers.item.value";

impl Identifiers {
    fn new(array: &ArrayRef) -> Result<Self, TableError> {
        // One code path for both list encodings: `List` offsets are widened, the items are not copied.
        let list = match array.data_type() {
            DataType::List(item) | DataType::LargeList(item) => {
                cast(array, &DataType::LargeList(Arc::clone(item)))?.as_list::<i64>().clone()
            }
            _ => return Err(wrong_type(COL_IDENTIFIERS, array, "List<Struct<system: Utf8, value: Utf8>>")),
        };
        let items = list.values();
        let items = items.as_struct_opt().ok_or_else(|| wrong_type(ITEM_PATH, items, "Struct<system, value>"))?.clone();
        let child = |name: &str, path: &str| items.column_by_name(name).ok_or_else(|| missing(path));
        let systems = as_utf8(child(IDENTIFIER_SYSTEM, SYSTEM_PATH)?, SYSTEM_PATH)?;
        let values = as_utf8(child(IDENTIFIER_VALUE, VALUE_PATH)?, VALUE_PATH)?;
        Ok(Self { list, items, systems, values })
    }

    /// Row `row`'s identifiers; errors name the row, not the item.
    fn row(&self, row: usize) -> Result<Vec<Identifier>, TableError> {
        if self.list.is_null(row) {
            return Err(null_at(COL_IDENTIFIERS, row));
        }
        // Offsets index the list's items, which slicing leaves whole, as do `items`, `systems` and `values`.
        let offsets = self.list.value_offsets();
        (offsets[row] as usize..offsets[row + 1] as usize)
            .map(|item| {
                if self.items.is_null(item) {
                    return Err(null_at(ITEM_PATH, row));
                }
                let system = optional(&self.systems, item).ok_or_else(|| null_at(SYSTEM_PATH, row))?;
                let value = optional(&self.values, item).ok_or_else(|| null_at(VALUE_PATH, row))?;
                Ok(Identifier { system: system.to_owned(), value: value.to_owned() })
            })
            .collect()
    }
}
