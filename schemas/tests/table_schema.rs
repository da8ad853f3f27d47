//! Golden test of the observation table schema. The schema is a persisted format (Parquet files keep it for as long
//! as they are stored): if this test fails, the change must be deliberate — bump `SCHEMA_VERSION` and update the
//! literal below in the same change.

use arrow::datatypes::{DataType, Field, Schema};
use jhe_schemas::table::{
    COL_CODING_CODE, COL_CODING_SYSTEM, COL_DATA_SOURCE_ID, COL_DIASTOLIC, COL_EFFECTIVE_END, COL_EFFECTIVE_START,
    COL_ID, COL_IDENTIFIERS, COL_JHE_USER_ID, COL_LAST_UPDATED, COL_OMH_JSON, COL_PATIENT_ID, COL_SYSTOLIC, COL_UNIT,
    COL_VALUE, SCHEMA_VERSION, SCHEMA_VERSION_KEY, observation_schema,
};

const GOLDEN: &str = r#"metadata jhe.observation.schema_version = "1"
id: Int64 not null
patient_id: Int64 not null
jhe_user_id: Int64 null
data_source_id: Int64 null
coding_system: Utf8 not null
coding_code: Utf8 not null
effective_start: Timestamp(Microsecond, "UTC") not null
effective_end: Timestamp(Microsecond, "UTC") null
last_updated: Timestamp(Microsecond, "UTC") not null
value: Float64 null
unit: Utf8 null
systolic: Float64 null
diastolic: Float64 null
identifiers: List<item: Struct<system: Utf8 not null, value: Utf8 not null> not null> not null
omh_json: Utf8 not null
"#;

/// A rendering of our own, so that upgrading arrow (whose `Display` of types changes between versions) cannot
/// change the golden text; it knows only the types the schema uses.
fn render_schema(schema: &Schema) -> String {
    let mut metadata: Vec<_> = schema.metadata().iter().collect();
    metadata.sort();
    let mut text: String = metadata.iter().map(|(key, value)| format!("metadata {key} = {value:?}\n")).collect();
    for field in schema.fields() {
        text.push_str(&render_field(field));
        text.push('\n');
    }
    text
}

fn render_field(field: &Field) -> String {
    assert!(field.metadata().is_empty(), "field `{}` has metadata: render it in the golden text", field.name());
    let nullability = if field.is_nullable() { "null" } else { "not null" };
    format!("{}: {} {nullability}", field.name(), render_type(field.data_type()))
}

fn render_type(data_type: &DataType) -> String {
    match data_type {
        DataType::Int64 | DataType::Float64 | DataType::Utf8 => format!("{data_type:?}"),
        DataType::Timestamp(unit, Some(zone)) => format!("Timestamp({unit:?}, {zone:?})"),
        DataType::List(item) => format!("List<{}>", render_field(item)),
        DataType::Struct(fields) => {
            let fields: Vec<String> = fields.iter().map(|field| render_field(field)).collect();
            format!("Struct<{}>", fields.join(", "))
        }
        other => panic!("the golden renderer does not know {other:?}: add it"),
    }
}

#[test]
fn the_schema_matches_the_golden_text() {
    assert_eq!(render_schema(&observation_schema()), GOLDEN);
}

#[test]
fn the_version_tag_is_the_one_in_the_golden_text() {
    assert_eq!(observation_schema().metadata().get(SCHEMA_VERSION_KEY).map(String::as_str), Some(SCHEMA_VERSION));
    assert!(GOLDEN.starts_with(&format!("metadata {SCHEMA_VERSION_KEY} = {SCHEMA_VERSION:?}\n")));
}

#[test]
fn the_column_constants_name_the_columns_in_order() {
    let names: Vec<String> = observation_schema().fields().iter().map(|field| field.name().clone()).collect();
    let constants = [
        COL_ID,
        COL_PATIENT_ID,
        COL_JHE_USER_ID,
        COL_DATA_SOURCE_ID,
        COL_CODING_SYSTEM,
        COL_CODING_CODE,
        COL_EFFECTIVE_START,
        COL_EFFECTIVE_END,
        COL_LAST_UPDATED,
        COL_VALUE,
        COL_UNIT,
        COL_SYSTOLIC,
        COL_DIASTOLIC,
        COL_IDENTIFIERS,
        COL_OMH_JSON,
    ];
    assert_eq!(names, constants);
}
