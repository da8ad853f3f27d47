//! Observations → record batch → observations, and what `records_from_batch` accepts from readers.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, ListArray, RecordBatch, StringArray, StructArray};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema};
use jhe_schemas::table::{
    COL_CODING_CODE, COL_DATA_SOURCE_ID, COL_DIASTOLIC, COL_EFFECTIVE_END, COL_IDENTIFIERS, COL_JHE_USER_ID,
    COL_OMH_JSON, COL_PATIENT_ID, COL_SYSTOLIC, COL_UNIT, COL_VALUE, ObservationBatchBuilder, SCHEMA_VERSION_KEY,
    observation_schema, records_from_batch,
};
use jhe_schemas::{EffectiveTime, Identifier, MeasuredValues, ObservationRecord};

const OMH: &str = "https://w3id.org/openmhealth";
/// 2025-01-01T08:04:00Z
const JAN_1_2025_MICROS: i64 = 1_735_718_640_000_000;

/// A varied observation: heart rates, blood pressures (with an interval) and glucose, 0–2 identifiers, and the
/// nullable parts absent on some rows.
fn record(n: i64) -> ObservationRecord {
    let start_micros = JAN_1_2025_MICROS + n * 60_000_000;
    let (code, values, end_micros) = match n % 3 {
        0 => (
            "omh:heart-rate:2.0",
            MeasuredValues {
                value: Some(60.0 + (n % 40) as f64),
                unit: Some("beats/min".into()),
                ..Default::default()
            },
            None,
        ),
        1 => (
            "omh:blood-pressure:4.0",
            MeasuredValues {
                value: None,
                unit: Some("mmHg".into()),
                systolic: Some(110.0 + (n % 20) as f64),
                diastolic: Some(70.5),
            },
            Some(start_micros + 30_000_000),
        ),
        _ => ("omh:blood-glucose:4.0", MeasuredValues { value: Some(129.0), unit: None, ..Default::default() }, None),
    };
    let identifiers = (0..n % 3)
        .map(|k| Identifier { system: format!("https://commonhealth.org/{k}"), value: format!("uuid-{n}-{k}") })
        .collect();
    ObservationRecord {
        id: 1_000_000_000_000 + n,
        patient_id: 40_000 + n % 7,
        jhe_user_id: (n % 5 != 0).then_some(10_000 + n % 7),
        data_source_id: (n % 4 != 0).then_some(70_001),
        coding_system: OMH.into(),
        coding_code: code.into(),
        effective: EffectiveTime { start_micros, end_micros },
        last_updated_micros: start_micros + 5_000_000,
        identifiers,
        omh_json: format!(
            r#"{{"header":{{"uuid":"uuid-{n}","schema_id":{{"namespace":"omh","name":"x","version":"1.0"}}}},"body":{{"note":"µ°C ✓ {n}"}}}}"#
        ),
        values,
    }
}

fn batch_of(records: &[ObservationRecord]) -> RecordBatch {
    let mut builder = ObservationBatchBuilder::with_capacity(records.len());
    for record in records {
        builder.append(record).unwrap();
    }
    assert_eq!(builder.len(), records.len());
    builder.finish().unwrap()
}

#[test]
fn records_survive_a_round_trip() {
    let records: Vec<_> = (0..50).map(record).collect();
    let batch = batch_of(&records);
    assert!(Arc::ptr_eq(&batch.schema(), &observation_schema()));
    assert_eq!(batch.num_rows(), 50);
    assert_eq!(records_from_batch(&batch).unwrap(), records);
}

#[test]
fn an_empty_builder_finishes_an_empty_batch() {
    let batch = ObservationBatchBuilder::with_capacity(0).finish().unwrap();
    assert_eq!(batch.num_rows(), 0);
    assert_eq!(batch.schema(), observation_schema());
    assert!(records_from_batch(&batch).unwrap().is_empty());
}

#[test]
fn empty_identifiers_are_an_empty_list_not_a_null() {
    let records = vec![ObservationRecord { identifiers: Vec::new(), ..record(0) }];
    let batch = batch_of(&records);
    let identifiers = batch.column_by_name(COL_IDENTIFIERS).unwrap().as_list::<i32>();
    assert_eq!(identifiers.null_count(), 0);
    assert_eq!(identifiers.value_length(0), 0);
    assert_eq!(records_from_batch(&batch).unwrap(), records);
}

#[test]
fn every_nullable_column_can_be_null() {
    let bare = ObservationRecord {
        jhe_user_id: None,
        data_source_id: None,
        effective: EffectiveTime { start_micros: JAN_1_2025_MICROS, end_micros: None },
        values: MeasuredValues::default(),
        ..record(0)
    };
    let full = ObservationRecord {
        values: MeasuredValues {
            value: Some(1.5),
            unit: Some("mmHg".into()),
            systolic: Some(120.0),
            diastolic: Some(80.0),
        },
        ..record(1)
    };
    assert!(full.jhe_user_id.is_some() && full.data_source_id.is_some() && full.effective.end_micros.is_some());
    let records = vec![bare.clone(), full, bare];
    let batch = batch_of(&records);
    for field in observation_schema().fields() {
        let nulls = batch.column_by_name(field.name()).unwrap().null_count();
        assert_eq!(nulls, if field.is_nullable() { 2 } else { 0 }, "nulls in `{}`", field.name());
    }
    let schema = observation_schema();
    let nullable: Vec<&str> =
        schema.fields().iter().filter(|field| field.is_nullable()).map(|f| f.name().as_str()).collect();
    let expected =
        [COL_JHE_USER_ID, COL_DATA_SOURCE_ID, COL_EFFECTIVE_END, COL_VALUE, COL_UNIT, COL_SYSTOLIC, COL_DIASTOLIC];
    assert_eq!(nullable, expected);
    assert_eq!(records_from_batch(&batch).unwrap(), records);
}

#[test]
fn large_batches_round_trip_and_the_builder_is_reusable() {
    let records: Vec<_> = (0..100_000).map(record).collect();
    // Capacity far below the row count: buffers must grow; then a second batch from the same builder.
    let mut builder = ObservationBatchBuilder::with_capacity(1024);
    for chunk in records.chunks(60_000) {
        for record in chunk {
            builder.append(record).unwrap();
        }
        let text_bytes = builder.text_bytes();
        let batch = builder.finish().unwrap();
        assert!(builder.is_empty() && builder.text_bytes() == 0);
        assert_eq!(batch.num_rows(), chunk.len());
        let omh_bytes = batch.column_by_name(COL_OMH_JSON).unwrap().as_string::<i32>().values().len();
        assert!(omh_bytes < text_bytes, "{omh_bytes} bytes of JSON, {text_bytes} of text");
        assert_eq!(records_from_batch(&batch).unwrap(), chunk);
    }
}

#[test]
fn sliced_batches_read_back_their_own_rows() {
    let records: Vec<_> = (0..30).map(record).collect();
    let batch = batch_of(&records);
    assert_eq!(records_from_batch(&batch.slice(7, 11)).unwrap(), &records[7..18]);
}

/// Replaces column `name` of `batch` by `array`, marking the field nullable as query engines often do.
fn replace_column(batch: &RecordBatch, name: &str, array: ArrayRef) -> RecordBatch {
    let index = batch.schema().index_of(name).unwrap();
    let mut fields: Vec<Field> = batch.schema().fields().iter().map(|field| field.as_ref().clone()).collect();
    fields[index] = Field::new(name, array.data_type().clone(), true);
    let mut columns = batch.columns().to_vec();
    columns[index] = array;
    RecordBatch::try_new(Arc::new(Schema::new_with_metadata(fields, batch.schema().metadata().clone())), columns)
        .unwrap()
}

#[test]
fn what_query_engines_hand_back_is_accepted() {
    let records: Vec<_> = (0..20).map(record).collect();
    let batch = batch_of(&records);
    // DataFusion reads Parquet strings as views; other readers may widen or dictionary-encode them.
    for (column, data_type) in [
        (COL_OMH_JSON, DataType::Utf8View),
        (COL_UNIT, DataType::LargeUtf8),
        (COL_CODING_CODE, DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))),
    ] {
        let recast = replace_column(&batch, column, cast(batch.column_by_name(column).unwrap(), &data_type).unwrap());
        assert_eq!(records_from_batch(&recast).unwrap(), records, "{column} as {data_type}");
    }
    // Views inside the identifiers and a LargeList around them.
    let item = Field::new(
        "item",
        DataType::Struct(
            vec![Field::new("system", DataType::Utf8View, true), Field::new("value", DataType::Utf8View, true)].into(),
        ),
        true,
    );
    let identifiers = cast(batch.column_by_name(COL_IDENTIFIERS).unwrap(), &DataType::LargeList(Arc::new(item)));
    let recast = replace_column(&batch, COL_IDENTIFIERS, identifiers.unwrap());
    assert_eq!(records_from_batch(&recast).unwrap(), records);

    // Columns reordered, one extra column, no metadata (projections drop it).
    let schema = batch.schema();
    let mut order: Vec<usize> = (0..schema.fields().len()).rev().collect();
    order.push(0);
    let projected = batch.project(&order).unwrap();
    let mut fields: Vec<Field> = projected.schema().fields().iter().map(|field| field.as_ref().clone()).collect();
    fields.last_mut().unwrap().set_name("date");
    let bare = RecordBatch::try_new(Arc::new(Schema::new(fields)), projected.columns().to_vec()).unwrap();
    assert_eq!(records_from_batch(&bare).unwrap(), records);
}

fn error_of(batch: &RecordBatch) -> String {
    records_from_batch(batch).unwrap_err().to_string()
}

#[test]
fn batches_that_do_not_hold_observations_are_refused_with_the_column_named() {
    let batch = batch_of(&(0..3).map(record).collect::<Vec<_>>());

    let without_patient = {
        let mut batch = batch.clone();
        batch.remove_column(batch.schema().index_of(COL_PATIENT_ID).unwrap());
        batch
    };
    assert_eq!(error_of(&without_patient), "column `patient_id` is missing from the record batch");

    let patient_as_text = cast(batch.column_by_name(COL_PATIENT_ID).unwrap(), &DataType::Utf8).unwrap();
    assert_eq!(
        error_of(&replace_column(&batch, COL_PATIENT_ID, patient_as_text)),
        "column `patient_id` has type Utf8, expected Int64"
    );

    let null_patient = Arc::new(Int64Array::from(vec![Some(1), None, Some(3)]));
    assert_eq!(
        error_of(&replace_column(&batch, COL_PATIENT_ID, null_patient)),
        "column `patient_id` is null in row 1, but every observation has one"
    );

    let json = StringArray::from(vec![Some("{}"), Some("{}"), None]);
    assert_eq!(
        error_of(&replace_column(&batch, COL_OMH_JSON, Arc::new(json))),
        "column `omh_json` is null in row 2, but every observation has one"
    );

    let identifiers = batch.column_by_name(COL_IDENTIFIERS).unwrap().as_list::<i32>().clone();
    let (field, offsets, items, _) = identifiers.into_parts();
    let null_list = ListArray::new(field, offsets, items, Some(NullBuffer::from(vec![true, false, true])));
    assert_eq!(
        error_of(&replace_column(&batch, COL_IDENTIFIERS, Arc::new(null_list))),
        "column `identifiers` is null in row 1, but every observation has one"
    );

    // Row 2 has two identifiers, the second without a value.
    let system = Arc::new(StringArray::from(vec!["a", "b", "c"])) as ArrayRef;
    let value = Arc::new(StringArray::from(vec![Some("1"), Some("2"), None])) as ArrayRef;
    let items = StructArray::from(vec![
        (Arc::new(Field::new("system", DataType::Utf8, true)), system),
        (Arc::new(Field::new("value", DataType::Utf8, true)), value),
    ]);
    let item_field = Arc::new(Field::new("item", items.data_type().clone(), true));
    let list = ListArray::new(item_field, OffsetBuffer::from_lengths([0, 1, 2]), Arc::new(items), None);
    assert_eq!(
        error_of(&replace_column(&batch, COL_IDENTIFIERS, Arc::new(list))),
        "column `identifiers.item.value` is null in row 2, but every observation has one"
    );

    let version_2 = HashMap::from([(SCHEMA_VERSION_KEY.to_owned(), "2".to_owned())]);
    let schema = Schema::new_with_metadata(batch.schema().fields().clone(), version_2);
    let future = RecordBatch::try_new(Arc::new(schema), batch.columns().to_vec()).unwrap();
    assert_eq!(
        error_of(&future),
        r#"record batch is observation schema version "2" (metadata `jhe.observation.schema_version`), this build reads version "1""#
    );
}
