//! Differential test: jhe's Rust validators against the generic `jsonschema` crate running the official schema
//! files (loaded offline from `JHE_OMH_SCHEMAS` and `JHE_IEEE_SCHEMAS`, `format` asserted for date-time and uri
//! as jhe does), on every official test document and on mutations of valid documents (each key removed, each
//! value replaced by other types and values, unknown keys added, duplicate keys). Accept/reject must be identical.
//! It also needs the official test data (`JHE_OMH_TEST_DATA`) and the reference examples (`JHE_EXAMPLE_DATA_POINTS`);
//! without any of these folders it reports that it was not run.

use jhe_schemas::omh::{SchemaId, Validators};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[path = "support/reference_data.rs"]
mod reference_data;

use reference_data::{EXAMPLE_DATA_POINTS, IEEE_SCHEMAS, OMH_SCHEMAS, OMH_TEST_DATA, reference_folders};

const OMH_BASE: &str = "https://w3id.org/openmhealth/schemas/omh/";
const IEEE_BASE: &str = "https://w3id.org/ieee/ieee-1752-schema/";
const GRANOLA_BASE: &str = "https://w3id.org/openmhealth/schemas/granola/";

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).expect("a folder").map(|e| e.expect("an entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_under(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "json") {
            out.push(path);
        }
    }
}

/// The official schema files by the address they are referenced with. OMH `-N.x.json` files are aliases whose
/// content is the name of the file they stand for.
fn official_documents(omh: &Path, ieee: &Path) -> HashMap<String, Value> {
    let mut documents = HashMap::new();
    for (folder, base) in [("omh", OMH_BASE), ("granola", GRANOLA_BASE)] {
        let dir = omh.join(folder);
        for entry in std::fs::read_dir(&dir).expect("the schemas") {
            let path = entry.expect("an entry").path();
            let name = path.file_name().expect("a name").to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("a schema");
            let document = serde_json::from_str(&text).unwrap_or_else(|_| {
                let target = dir.join(text.trim());
                serde_json::from_str(&std::fs::read_to_string(&target).expect("an alias target")).expect("JSON")
            });
            documents.insert(format!("{base}{name}"), document);
        }
    }
    let mut files = Vec::new();
    files_under(ieee, &mut files);
    for path in files {
        let document: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("a schema")).expect("JSON");
        let name = path.file_name().expect("a name").to_string_lossy().into_owned();
        if let Some(id) = document.get("$id").and_then(Value::as_str) {
            documents.insert(id.to_owned(), document.clone());
        }
        documents.insert(format!("{IEEE_BASE}{name}"), document);
    }
    documents
}

#[derive(Clone)]
struct Offline(std::sync::Arc<HashMap<String, Value>>);

impl jsonschema::Retrieve for Offline {
    fn retrieve(&self, uri: &jsonschema::Uri<String>) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let address = uri.as_str().split('#').next().unwrap_or_default();
        self.0.get(address).cloned().ok_or_else(|| format!("not offline: {address}").into())
    }
}

struct Official {
    documents: Offline,
    compiled: HashMap<String, jsonschema::Validator>,
}

impl Official {
    fn validator(&mut self, id: &SchemaId) -> &jsonschema::Validator {
        let base = match id.namespace.as_str() {
            "ieee" => IEEE_BASE,
            "granola" => GRANOLA_BASE,
            _ => OMH_BASE,
        };
        let address = format!("{base}{}-{}.json", id.name, id.version);
        let documents = self.documents.clone();
        self.compiled.entry(address.clone()).or_insert_with(|| {
            let schema = documents.0.get(&address).unwrap_or_else(|| panic!("no official file {address}")).clone();
            jsonschema::options()
                .with_retriever(documents.clone())
                .with_base_uri(address.clone())
                .should_validate_formats(true)
                .with_format("uuid", |_: &str| true)
                .with_format("iri", |_: &str| true)
                .build(&schema)
                .unwrap_or_else(|error| panic!("compiling {address}: {error}"))
        })
    }
}

fn official(omh: &Path, ieee: &Path) -> Official {
    Official { documents: Offline(std::sync::Arc::new(official_documents(omh, ieee))), compiled: HashMap::new() }
}

/// Documents derived from a valid one: each key removed, each value replaced, extra keys, wrong types.
fn mutations(document: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    let replacements = |value: &Value| -> Vec<Value> {
        let mut values =
            vec![json!(null), json!(true), json!("bogus"), json!(7), json!(7.5), json!(1.0), json!({}), json!([])];
        match value {
            Value::String(text) => {
                values.push(json!(format!("{text}x")));
                values.push(json!(text.to_uppercase()));
                if text.len() >= 20 && text.as_bytes().get(10) == Some(&b'T') {
                    values.extend([json!(&text[..19]), json!(&text[..10]), json!(text.replace('T', " "))]);
                }
            }
            Value::Number(_) => values.extend([json!("12"), json!(-3), json!(0)]),
            Value::Object(object) => {
                let mut extra = object.clone();
                extra.insert("unexpected_key".into(), json!(1));
                values.push(Value::Object(extra));
            }
            Value::Array(items) => {
                values.push(json!([items.first().cloned().unwrap_or(json!(1)), 5]));
            }
            _ => {}
        }
        values
    };
    fn walk(
        value: &Value,
        path: &mut Vec<Value>,
        out: &mut Vec<(Vec<Value>, Option<Value>)>,
        replacements: &dyn Fn(&Value) -> Vec<Value>,
    ) {
        if !path.is_empty() {
            out.push((path.clone(), None));
            for replacement in replacements(value) {
                out.push((path.clone(), Some(replacement)));
            }
        }
        match value {
            Value::Object(object) => {
                for (key, child) in object {
                    path.push(json!(key));
                    walk(child, path, out, replacements);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    path.push(json!(index));
                    walk(child, path, out, replacements);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut edits = Vec::new();
    walk(document, &mut Vec::new(), &mut edits, &replacements);
    for (path, replacement) in edits {
        let mut copy = document.clone();
        let (last, parents) = path.split_last().expect("a path");
        let mut node = &mut copy;
        for step in parents {
            node = match step {
                Value::String(key) => &mut node[key.as_str()],
                _ => &mut node[step.as_u64().expect("an index") as usize],
            };
        }
        match (node, last, replacement) {
            (Value::Object(object), Value::String(key), None) => {
                object.shift_remove(key);
            }
            (Value::Array(items), index, None) => {
                items.remove(index.as_u64().expect("an index") as usize);
            }
            (Value::Object(object), Value::String(key), Some(value)) => {
                object.insert(key.clone(), value);
            }
            (Value::Array(items), index, Some(value)) => {
                items[index.as_u64().expect("an index") as usize] = value;
            }
            _ => continue,
        }
        out.push(copy);
    }
    if let Value::Object(object) = document {
        let mut extra = object.clone();
        extra.insert("unexpected_key".into(), json!("x"));
        out.push(Value::Object(extra));
    }
    for wrong in [json!(null), json!([]), json!("x"), json!(3)] {
        out.push(wrong);
    }
    out
}

/// The text of `document` with each top-level key first repeated with a bogus value: JSON Schema (and
/// serde_json) see the last occurrence, so validity must not change.
fn with_duplicate_keys(document: &Value) -> Option<String> {
    let object = document.as_object()?;
    let text = serde_json::to_string(document).ok()?;
    let bogus: Vec<String> = object.keys().map(|key| format!("{}:{{\"bogus\":[1,2]}}", json!(key))).collect();
    Some(format!("{{{},{}", bogus.join(","), &text[1..]))
}

struct Tally {
    compared: usize,
    accepted: usize,
    /// Documents the fast path decided on its own (the others it leaves to the detailed validator).
    fast_decided: usize,
    disagreements: Vec<String>,
}

impl Tally {
    fn compare(&mut self, official: &mut Official, ours: &Validators, id: &SchemaId, text: &[u8], label: &str) {
        let instance: Value = serde_json::from_slice(text).expect("valid JSON");
        let theirs = official.validator(id).is_valid(&instance);
        let mine = ours.validate_body(id, text);
        self.compared += 1;
        self.accepted += usize::from(theirs);
        if mine.is_ok() != theirs {
            self.disagreements
                .push(format!("{id} {label}: jsonschema {theirs}, jhe {mine:?} on {}", String::from_utf8_lossy(text)));
        }
        if let Some(fast) = ours.fast_body_verdict(id, text) {
            self.fast_decided += 1;
            if fast != theirs {
                self.disagreements.push(format!(
                    "{id} {label}: jsonschema {theirs}, jhe's fast path {fast} on {}",
                    String::from_utf8_lossy(text)
                ));
            }
        }
    }
}

/// Valid bodies for seeded types that have no official test data.
fn extra_seeds() -> Vec<(&'static str, Value)> {
    let frame = json!({"time_interval": {"start_date_time": "2025-01-01T00:00:00-08:00", "end_date_time": "2025-01-01T07:00:00-08:00"}});
    vec![
        (
            "omh:forced-vital-capacity:1.0",
            json!({"forced_vital_capacity": {"value": 4.1, "unit": "L"}, "measurement_quality": "acceptable", "effective_time_frame": {"date_time": "2025-01-01T00:00:00Z"}}),
        ),
        (
            "omh:forced-expiratory-volume-1-second:1.0",
            json!({"forced_expiratory_volume_1_second": {"value": 3.2, "unit": "L"}, "effective_time_frame": {"date_time": "2025-01-01T00:00:00Z"}, "temporal_relationship_to_physical_activity": "at rest"}),
        ),
        (
            "ieee:sleep-stage-summary:1.0",
            json!({
                "sleep_stage_summary": {"total_sleep_time": {"value": 400, "unit": "min"}, "rem_sleep_episode_count": 4, "deep_sleep_percentage": {"value": 20, "unit": "%"}, "descriptive_statistic_denominator": "d"},
                "sleep_stage_episodes": [{"sleep_stage_state": "REM_sleep", "sleep_stage_time_frame": frame.clone()}],
                "effective_time_frame": frame.clone(),
                "is_main_sleep": true,
            }),
        ),
        (
            "ieee:data-point:1.0",
            json!({
                "header": {
                    "uuid": "aaaa1234-1a2b-3c4d-5e6f-000000000002",
                    "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"},
                    "source_creation_date_time": "2025-01-01T01:04:01-08:00",
                    "modality": "sensed",
                    "acquisition_rate": {"number_of_times": 1, "time_window": {"value": 1, "unit": "min"}},
                    "external_datasheets": [{"datasheet_type": "manufacturer", "datasheet_reference": "iHealth"}],
                },
                "body": {"heart_rate": {"value": 67.5, "unit": "beats/min"}},
            }),
        ),
        (
            "ieee:physical-activity:1.0",
            json!({"activity_name": "walking", "base_movement_quantity": {"value": 5, "unit": "steps"}, "average_cadence": {"value": 90, "unit": "any"}, "effective_time_frame": frame.clone(), "descriptive_statistic_denominator": "anything"}),
        ),
        (
            "ieee:sleep-episode:1.0",
            json!({"number_of_awakenings": 2, "effective_time_frame": frame.clone(), "sleep_efficiency_percentage": {"value": 90, "unit": "%"}}),
        ),
        (
            "ieee:food-entry:0.1",
            json!({"food_name": "apple", "food_amount": {"value": 1}, "meal": "snack", "sugar": {"value": 19, "unit": "g"}, "calories": {"value": 95, "unit": "kcal"}, "effective_time_frame": {"full_date": "2025-01-01"}}),
        ),
        (
            "ieee:food-entry:0.1",
            json!({"food_name": "milk", "food_amount": {"value": 250, "unit": "mL"}, "effective_time_frame": {"date_time": "2025-01-01T08:00:00+01:00"}}),
        ),
        (
            "ieee:survey:1.0",
            json!({
                "items": [{"question": {"label": "q1", "text": "How did you sleep?"}, "answers": [{"value": "well"}, {"value": 3}], "asked_date_time": "2025-01-01T08:00:00Z"}],
                "delivery_details": {"start_date_time": "2025-01-01T08:00:00Z", "end_status": "completed"},
                "score": 7,
            }),
        ),
        ("ieee:survey-date-answer:1.0", json!({"value": "2025-01"})),
        ("ieee:survey-time-answer:1.0", json!({"value": "07:30"})),
        ("ieee:survey-categorical-answer:1.0", json!({"value": "yes", "code": 1})),
        (
            "ieee:body-weight:0.1",
            json!({"body_weight": {"value": 70, "unit": "kg"}, "body_fat_percentage": {"value": 20, "unit": "%"}, "effective_time_frame": {"date_time": "2025-01-01T08:00:00Z"}}),
        ),
        (
            "omh:geoposition:1.0",
            json!({"latitude": {"value": 1, "unit": "deg"}, "longitude": {"value": 2, "unit": "deg"}, "number_of_satellites_in_view": 4, "satellite_signal_strengths": [{"value": 3, "unit": "dB"}], "effective_time_frame": {"date_time": "2025-01-01T08:00:00Z"}}),
        ),
        ("omh:sleep-episode:1.0", json!({"number_of_awakenings": 2, "effective_time_frame": frame.clone()})),
        (
            "ieee:total-sleep-time:1.0",
            json!({"total_sleep_time": {"value": 7, "unit": "h"}, "sleep_events": [frame["time_interval"].clone()], "effective_time_frame": frame.clone()}),
        ),
    ]
}

#[test]
fn rust_validators_equal_the_official_schemas() {
    let needs = [&OMH_SCHEMAS, &IEEE_SCHEMAS, &OMH_TEST_DATA, &EXAMPLE_DATA_POINTS];
    let Some([omh, ieee, test_data, examples]) =
        reference_folders("omh_differential::rust_validators_equal_the_official_schemas", needs)
    else {
        return;
    };
    let ours = Validators::builtin();
    let mut official = official(&omh, &ieee);
    let mut tally = Tally { compared: 0, accepted: 0, fast_decided: 0, disagreements: Vec::new() };
    let mut valid_seeds: Vec<(SchemaId, Value)> = Vec::new();
    let mut official_documents = 0;
    for id in ours.codes() {
        let dir = test_data.join(&id.namespace).join(&id.name).join(&id.version);
        let mut files = Vec::new();
        if dir.is_dir() {
            files_under(&dir, &mut files);
        }
        for file in files {
            let text = std::fs::read(&file).expect("a test file");
            official_documents += 1;
            tally.compare(&mut official, &ours, &id, &text, &file.display().to_string());
            if file.components().any(|c| c.as_os_str() == "shouldPass") {
                valid_seeds.push((id.clone(), serde_json::from_slice(&text).expect("JSON")));
            }
        }
    }
    let mut example_files = Vec::new();
    files_under(&examples, &mut example_files);
    for file in example_files {
        let point: Value = serde_json::from_slice(&std::fs::read(&file).expect("an example")).expect("JSON");
        let id = SchemaId::from_json(&point["header"]["schema_id"]).expect("a schema id");
        valid_seeds.push((id, point["body"].clone()));
        valid_seeds.push(("ieee:data-point:1.0".parse().expect("a code"), point));
    }
    for (code, body) in extra_seeds() {
        valid_seeds.push((code.parse().expect("a code"), body));
    }
    let before_mutations = tally.compared;
    for (id, seed) in &valid_seeds {
        let label = format!("mutation of a valid {id}");
        for mutated in mutations(seed) {
            tally.compare(&mut official, &ours, id, &serde_json::to_vec(&mutated).expect("JSON"), &label);
        }
        if let Some(text) = with_duplicate_keys(seed) {
            tally.compare(&mut official, &ours, id, text.as_bytes(), "duplicate keys");
        }
    }
    println!(
        "differential: {} documents compared with jsonschema ({official_documents} official test documents, {} mutations \
         of {} valid documents; {} accepted, {} rejected), {} decided by the fast path alone, {} disagreements",
        tally.compared,
        tally.compared - before_mutations,
        valid_seeds.len(),
        tally.accepted,
        tally.compared - tally.accepted,
        tally.fast_decided,
        tally.disagreements.len()
    );
    let shown: Vec<&String> = tally.disagreements.iter().take(40).collect();
    assert!(tally.disagreements.is_empty(), "{} disagreements, first ones:\n{shown:#?}", tally.disagreements.len());
    // the fast path must see most documents, or this comparison would say little about it
    assert!(tally.fast_decided * 10 >= tally.compared * 9, "the fast path decided only {}", tally.fast_decided);
}
