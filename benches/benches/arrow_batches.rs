//! Arrow batch building: validated observations → record batches of the observation table (goal: ≥ 1,000,000
//! rows/s per core), and the inverse the query layer uses.
//!
//! `cargo bench -p jhe-benches --bench arrow_batches`. Criterion runs on one thread, so its `thrpt` (elem/s) is
//! rows per second per core.

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use jhe_schemas::table::{ObservationBatchBuilder, records_from_batch};
use jhe_schemas::{EffectiveTime, Identifier, MeasuredValues, ObservationRecord};

const BATCH_ROWS: usize = 8192;
/// 2025-01-01T08:00:00Z
const START_MICROS: i64 = 1_735_718_400_000_000;

/// A realistic observation: a compact OMH data point as apps upload it (300–400 bytes), 1–2 identifiers, the typed
/// values of its type.
fn observation(n: usize) -> ObservationRecord {
    let minute = n % 60;
    let uuid = format!("{:08x}-1a2b-4c4d-8e6f-{:012x}", n * 2_654_435_761 % 0xffff_ffff, n);
    // Half of the apps name the device maker.
    let datasheets = if n.is_multiple_of(2) {
        r#","external_datasheets":[{"datasheet_type":"manufacturer","datasheet_reference":"iHealth"}]"#
    } else {
        ""
    };
    let header = format!(
        r#""header":{{"uuid":"{uuid}","schema_id":{{"namespace":"omh","name":"{{name}}","version":"{{version}}"}},"source_creation_date_time":"2025-01-01T01:{minute:02}:01-08:00","modality":"sensed"{datasheets}}}"#
    );
    let time_frame = format!(r#""effective_time_frame":{{"date_time":"2025-01-01T00:{minute:02}:00-08:00"}}"#);
    let (code, name, version, body, values) = match n % 3 {
        0 => {
            let rate = 55 + n % 50;
            let body = format!(r#""heart_rate":{{"value":{rate},"unit":"beats/min"}}"#);
            let values =
                MeasuredValues { value: Some(rate as f64), unit: Some("beats/min".into()), ..Default::default() };
            ("omh:heart-rate:2.0", "heart-rate", "2.0", body, values)
        }
        1 => {
            let (systolic, diastolic) = (100 + n % 40, 60 + n % 25);
            let body = format!(
                r#""systolic_blood_pressure":{{"value":{systolic},"unit":"mmHg"}},"diastolic_blood_pressure":{{"value":{diastolic},"unit":"mmHg"}}"#
            );
            let values = MeasuredValues {
                value: None,
                unit: Some("mmHg".into()),
                systolic: Some(systolic as f64),
                diastolic: Some(diastolic as f64),
            };
            ("omh:blood-pressure:4.0", "blood-pressure", "4.0", body, values)
        }
        _ => {
            let glucose = 80 + n % 90;
            let body = format!(r#""blood_glucose":{{"unit":"mg/dL","value":{glucose}}}"#);
            let values =
                MeasuredValues { value: Some(glucose as f64), unit: Some("mg/dL".into()), ..Default::default() };
            ("omh:blood-glucose:4.0", "blood-glucose", "4.0", body, values)
        }
    };
    let header = header.replace("{name}", name).replace("{version}", version);
    let mut identifiers = vec![Identifier { system: "https://commonhealth.org".into(), value: uuid.clone() }];
    if n.is_multiple_of(2) {
        identifiers.push(Identifier { system: "https://jupyterhealth.org/ios".into(), value: format!("hk-{n}") });
    }
    let start_micros = START_MICROS + n as i64 * 60_000_000;
    ObservationRecord {
        id: 7_000_000_000_000 + n as i64,
        patient_id: 40_000 + (n % 500) as i64,
        jhe_user_id: Some(10_000 + (n % 500) as i64),
        data_source_id: Some(70_001),
        coding_system: "https://w3id.org/openmhealth".into(),
        coding_code: code.into(),
        effective: EffectiveTime { start_micros, end_micros: None },
        last_updated_micros: start_micros + 1_500_000,
        identifiers,
        omh_json: format!("{{{header},\"body\":{{{body},{time_frame}}}}}"),
        values,
    }
}

fn build(builder: &mut ObservationBatchBuilder, records: &[ObservationRecord]) -> arrow::array::RecordBatch {
    for record in records {
        builder.append(record).expect("a batch of 8192 small observations fits");
    }
    builder.finish().expect("the builder's columns match the schema")
}

fn bench(criterion: &mut Criterion) {
    let records: Vec<ObservationRecord> = (0..BATCH_ROWS).map(observation).collect();
    let json_bytes: usize = records.iter().map(|record| record.omh_json.len()).sum();
    let mean_json_bytes = json_bytes / records.len();
    assert!((300..=400).contains(&mean_json_bytes), "mean OMH JSON size {mean_json_bytes} bytes");
    println!("{BATCH_ROWS} rows per batch, OMH JSON {mean_json_bytes} bytes per row on average");

    let mut group = criterion.benchmark_group("arrow_batches");
    group.throughput(Throughput::Elements(BATCH_ROWS as u64));
    let mut builder = ObservationBatchBuilder::with_capacity(BATCH_ROWS);
    group.bench_function("build_8192", |bencher| bencher.iter(|| black_box(build(&mut builder, black_box(&records)))));
    let batch = build(&mut builder, &records);
    group.bench_function("records_from_batch_8192", |bencher| {
        bencher.iter(|| black_box(records_from_batch(black_box(&batch)).expect("a batch the builder made")))
    });
    group.finish();
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
