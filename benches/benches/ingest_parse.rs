//! Upload parsing per observation, before and after the borrowed parser (ingest side): a batch Bundle of
//! 1,000 Observations as the end-to-end benchmark posts them (heart rate and blood pressure, base64 OMH, one
//! identifier each), and the same Observations one by one (single `POST` / NDJSON lines).
//!
//! * `bundle/parse`: `parse_bundle` alone. `legacy` is the parser this replaced (a `serde_json::Value` tree of the
//!   whole body, the OMH payload parsed into a second `Value`; `schemas/tests/support/legacy_fhir_upload.rs`, the
//!   code of git `b402a05`); `borrowed` is `jhe_schemas::fhir::parse_bundle`.
//! * `bundle/parse+checks`: the parse plus the per-entry work of ingest's checks that needs no control plane: device
//!   reference, coding, schema id, OMH validation (`validate_data_point_as`, the same for both) and building the
//!   stored record, each side as its ingest code did it (`legacy`: copies of identifiers, coding and payload, a
//!   schema id parsed per entry; `borrowed`: the parts moved, a schema id parsed per code). The control-plane lookups (hash maps) are left out: the same on both sides.
//! * `observation/parse`: `parse_observation` for each of the 1,000 bodies.
//!
//! `cargo bench -p jhe-benches --bench ingest_parse` (release). Criterion runs on one thread, so `thrpt` (elem/s)
//! is observations per second per core. A summary with the ratios, in CPU time (less disturbed by other work on
//! the machine than criterion's wall time), is printed at the end; `cargo bench -p jhe-benches --bench
//! ingest_parse -- summary` prints only that (the filter matches no criterion benchmark).

#[path = "../../schemas/tests/support/legacy_fhir_upload.rs"]
mod legacy;

use base64::Engine as _;
use criterion::{Criterion, Throughput};
use jhe_schemas::fhir::{FhirError, ObservationUpload, parse_bundle, parse_observation};
use jhe_schemas::omh::{SchemaId, Validators};
use jhe_schemas::{Identifier, ObservationRecord};
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

const ENTRIES: usize = 1000;
const OMH_SYSTEM: &str = "https://w3id.org/openmhealth";
const IDENTIFIER_SYSTEM: &str = "https://carex.example.com/reading-uuid";

/// One reading as a wearable gateway uploads it: its code, patient, identifier and OMH JSON.
fn readings() -> Vec<(&'static str, i64, String, String)> {
    (0..ENTRIES)
        .map(|i| {
            let patient = 40_001 + (i as i64 % 97);
            let uuid = format!("6f2c1a3e-0000-4000-8000-{i:012}");
            let minute = i / 97;
            let effective = format!("2025-03-01T{:02}:{:02}:00-08:00", minute / 60 % 24, minute % 60);
            let created = format!("2025-03-01T{:02}:{:02}:02-08:00", minute / 60 % 24, minute % 60);
            if i % 7 == 6 {
                let omh = format!(
                    r#"{{"header":{{"uuid":"{uuid}","schema_id":{{"namespace":"omh","name":"blood-pressure","version":"4.0"}},"source_creation_date_time":"{created}","modality":"sensed"}},"body":{{"systolic_blood_pressure":{{"value":{},"unit":"mmHg"}},"diastolic_blood_pressure":{{"value":{},"unit":"mmHg"}},"effective_time_frame":{{"date_time":"{effective}"}}}}}}"#,
                    105 + i % 40,
                    65 + i % 25
                );
                ("omh:blood-pressure:4.0", patient, uuid, omh)
            } else {
                let omh = format!(
                    r#"{{"header":{{"uuid":"{uuid}","schema_id":{{"namespace":"omh","name":"heart-rate","version":"2.0"}},"source_creation_date_time":"{created}","modality":"sensed"}},"body":{{"heart_rate":{{"value":{},"unit":"beats/min"}},"effective_time_frame":{{"date_time":"{effective}"}}}}}}"#,
                    55 + i % 50
                );
                ("omh:heart-rate:2.0", patient, uuid, omh)
            }
        })
        .collect()
}

fn observation_body(code: &str, patient: i64, uuid: &str, omh: &str) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(omh.as_bytes());
    format!(
        r#"{{"resourceType":"Observation","status":"final","code":{{"coding":[{{"system":"{OMH_SYSTEM}","code":"{code}"}}]}},"subject":{{"reference":"Patient/{patient}"}},"device":{{"reference":"Device/70001"}},"identifier":[{{"system":"{IDENTIFIER_SYSTEM}","value":"{uuid}"}}],"valueAttachment":{{"contentType":"application/json","data":"{data}"}}}}"#
    )
}

fn bundle_body(observations: &[String]) -> Vec<u8> {
    let mut body = String::from(r#"{"resourceType":"Bundle","type":"batch","entry":["#);
    for (i, observation) in observations.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(body, r#"{{"resource":{observation},"request":{{"method":"POST","url":"Observation"}}}}"#);
    }
    body.push_str("]}");
    body.into_bytes()
}

/// The stored record of a checked entry, as ingest's checks built it before (copies).
fn legacy_checks(validators: &Validators, upload: Result<legacy::Upload, FhirError>) -> Option<ObservationRecord> {
    let upload = upload.ok()?;
    let device_id = upload.device.clone().ok()?;
    let identifiers: Vec<(String, String)> =
        upload.identifiers.iter().map(|i| (i.system.clone(), i.value.clone())).collect();
    black_box(&identifiers);
    let coding = upload.coding.as_ref().ok()?;
    let (coding_system, coding_code) = (coding.system.clone(), coding.code.clone());
    let (json, _value) = upload.omh.as_ref().ok()?;
    let schema_id: SchemaId = coding_code.parse().ok()?;
    let validated = validators.validate_data_point_as(json.as_bytes(), &schema_id).ok()?;
    Some(ObservationRecord {
        id: 0,
        patient_id: upload.subject_patient_id,
        jhe_user_id: None,
        data_source_id: Some(device_id),
        coding_system,
        coding_code,
        effective: validated.effective,
        last_updated_micros: 0,
        identifiers: upload.identifiers.clone(),
        omh_json: json.trim().to_owned(),
        values: validated.values,
    })
}

/// The stored record of a checked entry, as ingest's checks build it now (parts moved, each code's schema id parsed
/// once per request).
fn borrowed_checks(
    validators: &Validators,
    schema_ids: &mut Vec<(String, SchemaId)>,
    upload: Result<ObservationUpload, FhirError>,
) -> Option<ObservationRecord> {
    let mut upload = upload.ok()?;
    let patient_id = upload.subject_patient_id;
    let identifiers: Vec<Identifier> = std::mem::take(&mut upload.identifiers);
    let (device, coding, omh) = upload.into_deferred();
    let device_id = device.ok()?;
    let coding = coding.ok()?;
    let omh = omh.ok()?;
    let known = schema_ids.iter().position(|(code, _)| *code == coding.code);
    let position = match known {
        Some(position) => position,
        None => {
            schema_ids.push((coding.code.clone(), coding.code.parse().ok()?));
            schema_ids.len() - 1
        }
    };
    let validated = validators.validate_data_point_as(omh.json.as_bytes(), &schema_ids[position].1).ok()?;
    let omh_json = if omh.json.trim().len() == omh.json.len() { omh.json } else { omh.json.trim().to_owned() };
    Some(ObservationRecord {
        id: 0,
        patient_id,
        jhe_user_id: None,
        data_source_id: Some(device_id),
        coding_system: coding.system,
        coding_code: coding.code,
        effective: validated.effective,
        last_updated_micros: 0,
        identifiers,
        omh_json,
        values: validated.values,
    })
}

/// CPU time this process has used (user + system), from `/proc/self/stat` in clock ticks of 10 ms: the machine is
/// shared with builds and services, so the summary counts the CPU a run takes rather than the wall time.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // the fields after the command name (which may hold spaces) start at its closing parenthesis
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |index: usize| fields.get(index).and_then(|field| field.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// CPU time per call of `work`, over at least two seconds of it.
fn cpu_per_call<T>(mut work: impl FnMut() -> T) -> Duration {
    for _ in 0..3 {
        black_box(work());
    }
    let started = cpu_time();
    let mut calls = 0u32;
    while cpu_time() - started < Duration::from_secs(2) {
        for _ in 0..10 {
            black_box(work());
        }
        calls += 10;
    }
    (cpu_time() - started) / calls
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args().measurement_time(Duration::from_secs(4));
    let validators = Validators::builtin();
    let observations: Vec<String> =
        readings().iter().map(|(code, patient, uuid, omh)| observation_body(code, *patient, uuid, omh)).collect();
    let bundle = bundle_body(&observations);

    // both parsers must agree before they are timed
    let old = legacy::parse_bundle(&bundle).expect("the legacy parser reads the bundle");
    let new = parse_bundle(&bundle).expect("the bundle parses");
    assert_eq!(old.entries.len(), ENTRIES);
    assert!(new.entries.iter().all(Result::is_ok) && old.entries.iter().all(Result::is_ok));
    let old_records: Vec<_> = old.entries.into_iter().map(|e| legacy_checks(&validators, e)).collect();
    let schema_ids = &mut Vec::new();
    let new_records: Vec<_> = new.entries.into_iter().map(|e| borrowed_checks(&validators, schema_ids, e)).collect();
    assert!(new_records.iter().all(Option::is_some));
    assert_eq!(old_records, new_records);

    let legacy_parse = || black_box(legacy::parse_bundle(black_box(&bundle)).map(|b| b.entries.len()));
    let borrowed_parse = || black_box(parse_bundle(black_box(&bundle)).map(|b| b.entries.len()));
    let legacy_checked = || {
        let bundle = legacy::parse_bundle(black_box(&bundle)).expect("parses");
        let records = bundle.entries.into_iter().filter_map(|e| legacy_checks(&validators, e)).count();
        black_box(records)
    };
    let borrowed_checked = || {
        let bundle = parse_bundle(black_box(&bundle)).expect("parses");
        let schema_ids = &mut Vec::new();
        let records = bundle.entries.into_iter().filter_map(|e| borrowed_checks(&validators, schema_ids, e)).count();
        black_box(records)
    };
    let legacy_single = || {
        for body in &observations {
            black_box(legacy::parse_observation(black_box(body.as_bytes())).is_ok());
        }
    };
    let borrowed_single = || {
        for body in &observations {
            black_box(parse_observation(black_box(body.as_bytes())).is_ok());
        }
    };

    // `INGEST_PARSE_PROFILE=<variant>:<calls>` runs one variant that many times and nothing else, for a profiler
    // (`perf record`, `valgrind --tool=callgrind`): variants `bundle-legacy`, `bundle-borrowed`,
    // `checks-legacy`, `checks-borrowed`, `observation-legacy`, `observation-borrowed`.
    if let Ok(profile) = std::env::var("INGEST_PARSE_PROFILE") {
        let (variant, calls) = profile.split_once(':').unwrap_or((profile.as_str(), "10"));
        let calls: usize = calls.parse().expect("INGEST_PARSE_PROFILE=<variant>:<calls>");
        for _ in 0..calls {
            match variant {
                "bundle-legacy" => {
                    let _ = black_box(legacy_parse());
                }
                "bundle-borrowed" => {
                    let _ = black_box(borrowed_parse());
                }
                "checks-legacy" => {
                    let _ = black_box(legacy_checked());
                }
                "checks-borrowed" => {
                    let _ = black_box(borrowed_checked());
                }
                "observation-legacy" => legacy_single(),
                "observation-borrowed" => borrowed_single(),
                other => panic!("unknown variant {other:?}"),
            }
        }
        return;
    }

    let mut group = criterion.benchmark_group("bundle");
    group.throughput(Throughput::Elements(ENTRIES as u64));
    group.bench_function("parse/legacy", |b| b.iter(legacy_parse));
    group.bench_function("parse/borrowed", |b| b.iter(borrowed_parse));
    group.bench_function("parse+checks/legacy", |b| b.iter(legacy_checked));
    group.bench_function("parse+checks/borrowed", |b| b.iter(borrowed_checked));
    group.finish();
    let mut group = criterion.benchmark_group("observation");
    group.throughput(Throughput::Elements(ENTRIES as u64));
    group.bench_function("parse/legacy", |b| b.iter(legacy_single));
    group.bench_function("parse/borrowed", |b| b.iter(borrowed_single));
    group.finish();
    criterion.final_summary();

    println!(
        "\nsummary ({ENTRIES} observations, {} KiB Bundle; CPU µs per observation, one core):",
        bundle.len() / 1024
    );
    let rows: [(&str, Duration, Duration); 3] = [
        ("bundle parse", cpu_per_call(legacy_parse), cpu_per_call(borrowed_parse)),
        ("bundle parse + checks", cpu_per_call(legacy_checked), cpu_per_call(borrowed_checked)),
        ("observation parse", cpu_per_call(legacy_single), cpu_per_call(borrowed_single)),
    ];
    for (name, old, new) in rows {
        let per = |d: Duration| d.as_secs_f64() * 1e6 / ENTRIES as f64;
        println!(
            "  {name:<22} legacy {:>6.2} µs  borrowed {:>6.2} µs  ×{:.2} faster  ({:.0} → {:.0} obs/s)",
            per(old),
            per(new),
            old.as_secs_f64() / new.as_secs_f64(),
            1e6 / per(old),
            1e6 / per(new)
        );
    }
}
