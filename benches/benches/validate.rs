//! OMH data point validation throughput, per core: jhe's Rust validators (parse + validate header and body +
//! derive time and values, from bytes) against the generic `jsonschema` crate (parse to `serde_json::Value` +
//! validate the header with the official IEEE data-point 1.0 schema and the body with the official schema of its
//! type, both compiled once). Goals: ≥ 1,000,000 points/s/core, ≥ 5× jsonschema.
//!
//! `jhe` is `validate_data_point` as ingest calls it: points of a shape the thread has seen before (same keys,
//! order and schema id, other values) are checked along that shape, others by the one-pass validator.
//! `jhe-one-pass` is the one-pass validator alone, i.e. what every point of a new shape costs.
//!
//! `cargo bench -p jhe-benches --bench validate`. Criterion runs on one thread, so its `thrpt` (elem/s) is points
//! per second per core; a summary with the ratios is printed at the end. The official schemas and the example
//! data points are read from `JHE_OMH_SCHEMAS`, `JHE_IEEE_SCHEMAS` and `JHE_EXAMPLE_DATA_POINTS` (defaults: the
//! shared reference next to the project).

use criterion::{Criterion, Throughput};
use jhe_schemas::omh::Validators;
use serde_json::Value;
use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const POINTS: usize = 1024;
const OMH_BASE: &str = "https://w3id.org/openmhealth/schemas/omh/";
const IEEE_BASE: &str = "https://w3id.org/ieee/ieee-1752-schema/";
const TYPES: [(&str, &str); 3] = [
    ("heart-rate", "omh_heart-rate_2-0.json"),
    ("blood-glucose", "omh_blood-glucose_4-0.json"),
    ("blood-pressure", "omh_blood-pressure_4-0.json"),
];

fn folder(variable: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(variable).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default));
    assert!(path.is_dir(), "{} is not a folder: set {variable}", path.display());
    path
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The official schema files by address (OMH `-N.x.json` aliases hold the name of the file they stand for).
fn official_documents() -> HashMap<String, Value> {
    let omh =
        folder("JHE_OMH_SCHEMAS", concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/openmhealth/schema"))
            .join("omh");
    let ieee = folder("JHE_IEEE_SCHEMAS", concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/ieee-1752"));
    let mut documents = HashMap::new();
    for entry in std::fs::read_dir(&omh).expect("the omh schemas") {
        let path = entry.expect("an entry").path();
        let text = std::fs::read_to_string(&path).expect("a schema");
        let document = serde_json::from_str(&text).unwrap_or_else(|_| read_json(&omh.join(text.trim())));
        documents.insert(format!("{OMH_BASE}{}", path.file_name().expect("a name").to_string_lossy()), document);
    }
    for group in std::fs::read_dir(&ieee).expect("the ieee schemas") {
        let group = group.expect("an entry").path();
        if !group.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&group).expect("a folder") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|ext| ext == "json") {
                documents.insert(
                    format!("{IEEE_BASE}{}", path.file_name().expect("a name").to_string_lossy()),
                    read_json(&path),
                );
            }
        }
    }
    documents
}

#[derive(Clone)]
struct Offline(Arc<HashMap<String, Value>>);

impl jsonschema::Retrieve for Offline {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let address = uri.as_str().split('#').next().unwrap_or_default();
        self.0.get(address).cloned().ok_or_else(|| format!("not offline: {address}").into())
    }
}

fn compile(documents: &Offline, address: &str) -> jsonschema::Validator {
    jsonschema::options()
        .with_retriever(documents.clone())
        .with_base_uri(address.to_owned())
        .should_validate_formats(true)
        .with_format("uuid", |_: &str| true)
        .with_format("iri", |_: &str| true)
        .build(documents.0.get(address).unwrap_or_else(|| panic!("no {address}")))
        .unwrap_or_else(|e| panic!("{address}: {e}"))
}

/// `POINTS` distinct data points of one type, derived from the reference example (values, times, uuids vary).
fn points(example: &Value) -> Vec<Vec<u8>> {
    (0..POINTS)
        .map(|n| {
            let mut point = example.clone();
            point["header"]["uuid"] = format!("{:08x}-1a2b-4c4d-8e6f-{n:012x}", n * 2_654_435_761 % 0xffff_ffff).into();
            point["header"]["source_creation_date_time"] =
                format!("2025-01-{:02}T{:02}:{:02}:30-08:00", 1 + n % 28, n % 24, n % 60).into();
            point["body"]["effective_time_frame"]["date_time"] =
                format!("2025-01-{:02}T{:02}:{:02}:00-08:00", 1 + n % 28, n % 24, n % 60).into();
            if let Some(body) = point["body"].as_object_mut() {
                for (key, measure) in body.iter_mut() {
                    if key != "effective_time_frame" && measure.get("value").is_some() {
                        measure["value"] = (50 + n % 90).into();
                    }
                }
            }
            serde_json::to_vec(&point).expect("JSON")
        })
        .collect()
}

struct Subject {
    name: &'static str,
    points: Vec<Vec<u8>>,
    header: jsonschema::Validator,
    body: jsonschema::Validator,
}

fn ours(validators: &Validators, points: &[Vec<u8>]) -> usize {
    points.iter().filter(|point| validators.validate_data_point(point).is_ok()).count()
}

fn one_pass(validators: &Validators, points: &[Vec<u8>]) -> usize {
    points.iter().filter(|point| validators.one_pass_data_point(point, None).is_some()).count()
}

fn generic(subject: &Subject) -> usize {
    subject
        .points
        .iter()
        .filter(|point| {
            let value: Value = serde_json::from_slice(point).expect("JSON");
            subject.header.is_valid(&value) && subject.body.is_valid(&value["body"])
        })
        .count()
}

/// Points per second of `run` over `points` points, measured for about a second.
fn rate(points: usize, mut run: impl FnMut() -> usize) -> f64 {
    let start = Instant::now();
    let mut done = 0;
    while start.elapsed() < Duration::from_secs(1) {
        assert_eq!(run(), points, "every benchmark point is valid");
        done += points;
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let examples = folder(
        "JHE_EXAMPLE_DATA_POINTS",
        concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/reference/jhe-examples/data-points"),
    );
    let documents = Offline(Arc::new(official_documents()));
    let header = format!("{IEEE_BASE}data-point-1.0.json");
    let subjects: Vec<Subject> = TYPES
        .iter()
        .map(|(name, file)| {
            let example = read_json(&examples.join(file));
            let version = example["header"]["schema_id"]["version"].as_str().expect("a version").to_owned();
            Subject {
                name,
                points: points(&example),
                header: compile(&documents, &header),
                body: compile(&documents, &format!("{OMH_BASE}{name}-{version}.json")),
            }
        })
        .collect();
    let validators = Validators::builtin();

    let mut criterion = Criterion::default().configure_from_args();
    for subject in &subjects {
        let mut group = criterion.benchmark_group(format!("validate/{}", subject.name));
        group.throughput(Throughput::Elements(POINTS as u64));
        group.bench_function("jhe", |b| b.iter(|| ours(&validators, black_box(&subject.points))));
        group.bench_function("jhe-one-pass", |b| b.iter(|| one_pass(&validators, black_box(&subject.points))));
        group.bench_function("jsonschema", |b| b.iter(|| generic(black_box(subject))));
        group.finish();
    }
    criterion.final_summary();

    println!("\nper core (one thread), parse + validate a data point:");
    for subject in &subjects {
        let jhe = rate(POINTS, || ours(&validators, &subject.points));
        let jhe_one_pass = rate(POINTS, || one_pass(&validators, &subject.points));
        let generic_rate = rate(POINTS, || generic(subject));
        println!(
            "  {:<15} jhe {:>10.0} points/s   jsonschema {:>9.0} points/s   {:>5.1}x   \
             (one-pass alone {:>9.0} points/s, {:>4.1}x)",
            subject.name,
            jhe,
            generic_rate,
            jhe / generic_rate,
            jhe_one_pass,
            jhe_one_pass / generic_rate
        );
    }
}
