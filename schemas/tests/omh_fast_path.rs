//! The fast path of `validate_data_point` (one pass over the bytes, no tree) against the detailed validator it
//! stands in for: on whole data points built from every official shouldPass body and the reference examples,
//! on mutations of them (header and body: each key removed, each value replaced, unknown and duplicate keys,
//! whitespace, members reordered), with and without a `--code`. Whenever the fast path answers it must give
//! exactly the detailed validator's `ValidatedDataPoint`; it must answer for every valid point it is meant for;
//! and `validate_data_point` must always equal the detailed result. That comparison needs the official test data and
//! the reference examples (it reports that it was not run without them); shapes are checked on variations of
//! example data points the tests build.

use jhe_schemas::omh::{SchemaId, Validators};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[path = "support/example_data_points.rs"]
mod examples;
#[path = "support/reference_data.rs"]
mod reference_data;

use reference_data::{EXAMPLE_DATA_POINTS, OMH_TEST_DATA, reference_folders};

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

fn header(id: &SchemaId) -> Value {
    json!({
        "uuid": "aaaa1234-1a2b-3c4d-5e6f-000000000004",
        "schema_id": {"namespace": id.namespace, "name": id.name, "version": id.version},
        "source_creation_date_time": "2025-01-01T01:04:01-08:00",
        "modality": "sensed",
        "acquisition_rate": {"number_of_times": 1, "time_window": {"value": 1, "unit": "min"}},
        "external_datasheets": [{"datasheet_type": "manufacturer", "datasheet_reference": "iHealth"}],
    })
}

/// Every value of `document` replaced or removed in turn, plus unknown keys.
fn mutations(document: &Value) -> Vec<Value> {
    fn replacements(value: &Value) -> Vec<Value> {
        let mut values =
            vec![json!(null), json!(true), json!("bogus"), json!(7), json!(7.5), json!(1.0), json!({}), json!([])];
        match value {
            Value::String(text) => {
                values.push(json!(format!("{text}x")));
                values.push(json!(text.to_uppercase()));
                values.push(json!(format!("{text}\u{e9}")));
                if text.len() >= 20 && text.as_bytes().get(10) == Some(&b'T') {
                    values.extend([json!(&text[..19]), json!(&text[..10]), json!(text.replace('T', " "))]);
                }
            }
            Value::Number(_) => values.extend([json!("12"), json!(-3), json!(0), json!(-0.0), json!(1e300)]),
            Value::Object(object) => {
                let mut extra = object.clone();
                extra.insert("unexpected_key".into(), json!(1));
                values.push(Value::Object(extra));
            }
            Value::Array(items) => values.push(json!([items.first().cloned().unwrap_or(json!(1)), 5])),
            _ => {}
        }
        values
    }
    fn walk(value: &Value, path: &mut Vec<Value>, out: &mut Vec<(Vec<Value>, Option<Value>)>) {
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
                    walk(child, path, out);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    path.push(json!(index));
                    walk(child, path, out);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let mut edits = Vec::new();
    walk(document, &mut Vec::new(), &mut edits);
    let mut out = Vec::new();
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
    out
}

/// Texts of one document: compact, pretty, members reversed (the body before the header), then (with duplicate
/// keys) each member of each object first repeated with a bogus value, and with one valid duplicate first.
fn texts(document: &Value) -> Vec<Vec<u8>> {
    let mut texts =
        vec![serde_json::to_vec(document).expect("JSON"), serde_json::to_vec_pretty(document).expect("JSON")];
    if let Value::Object(object) = document {
        let reversed: serde_json::Map<String, Value> =
            object.iter().rev().map(|(key, value)| (key.clone(), value.clone())).collect();
        texts.push(serde_json::to_vec(&Value::Object(reversed)).expect("JSON"));
        let text = serde_json::to_string(document).expect("JSON");
        for (key, value) in object {
            texts.push(format!("{{{}:{{\"bogus\":[1,2]}},{}", json!(key), &text[1..]).into_bytes());
            texts.push(format!("{{{}:{},{}", json!(key), value, &text[1..]).into_bytes());
            if let Value::Object(inner) = value {
                let inner_text = serde_json::to_string(value).expect("JSON");
                for (inner_key, inner_value) in inner {
                    let mut copy = object.clone();
                    let edited = format!("{{{}:\"bogus\",{}", json!(inner_key), &inner_text[1..]);
                    copy.insert(key.clone(), Value::Null);
                    let outer = serde_json::to_string(&Value::Object(copy)).expect("JSON");
                    let null_member = format!("{}:null", json!(key));
                    texts.push(outer.replacen(&null_member, &format!("{}:{edited}", json!(key)), 1).into_bytes());
                    let _ = inner_value;
                }
            }
        }
    }
    texts.push(b"{\"header\":{},\"body\":{}} x".to_vec());
    texts
}

struct Tally {
    compared: usize,
    valid: usize,
    one_pass_answers: usize,
    replayed: usize,
    learnt: usize,
    problems: Vec<String>,
}

impl Tally {
    /// Compares the fast paths with the detailed validator on `text`; only texts with duplicate keys may be
    /// valid and left to the detailed validator by the one-pass validator.
    fn compare(
        &mut self,
        validators: &Validators,
        text: &[u8],
        has_duplicates: bool,
        code: Option<&SchemaId>,
        label: &str,
    ) {
        let detailed = validators.detailed_data_point(text, code);
        let combined = match code {
            Some(code) => validators.validate_data_point_as(text, code),
            None => validators.validate_data_point(text),
        };
        self.compared += 1;
        let shown = || String::from_utf8_lossy(text).into_owned();
        let mut problem = |what: String| self.problems.push(format!("{label}: {what} on {}", shown()));
        if combined != detailed {
            problem(format!("validate gives {combined:?}, the detailed validator {detailed:?}"));
        }
        if code.is_none() {
            let document = validators.validate_document(text, None);
            if document.is_ok() != detailed.is_ok() {
                problem(format!("validate_document gives {document:?}, detailed {detailed:?}"));
            }
        }
        // the one-pass validator
        let one_pass = validators.one_pass_data_point(text, code);
        if let Some(point) = &one_pass {
            if detailed.as_ref() != Ok(point) {
                problem(format!("the one-pass validator gives {point:?}, detailed {detailed:?}"));
            }
        } else if detailed.is_ok() && !has_duplicates {
            problem("the one-pass validator left a valid point to the detailed one".to_owned());
        }
        // the fast path as a whole (shapes kept so far, then the one-pass validator)
        if let Some(point) = validators.fast_data_point(text, code)
            && detailed.as_ref() != Ok(&point)
        {
            problem(format!("the fast path gives {point:?}, detailed {detailed:?}"));
        }
        if code.is_none() {
            // the shapes of earlier points
            if let Some(point) = validators.shape_data_point(text) {
                self.replayed += 1;
                if detailed.as_ref() != Ok(&point) {
                    problem(format!("a shape seen before gives {point:?}, detailed {detailed:?}"));
                }
            }
            // its own shape
            if one_pass.is_some() && validators.learn_shape(text) {
                self.learnt += 1;
                let point = validators.shape_data_point(text);
                if point.as_ref() != detailed.as_ref().ok() {
                    problem(format!("its own shape gives {point:?}, detailed {detailed:?}"));
                }
            }
        }
        self.one_pass_answers += usize::from(one_pass.is_some());
        self.valid += usize::from(detailed.is_ok());
    }
}

#[test]
fn the_fast_path_gives_what_the_detailed_validator_gives() {
    let suite = "omh_fast_path::the_fast_path_gives_what_the_detailed_validator_gives";
    let Some([test_data, examples]) = reference_folders(suite, [&OMH_TEST_DATA, &EXAMPLE_DATA_POINTS]) else {
        return;
    };
    let validators = Validators::builtin();
    let mut points: Vec<(SchemaId, Value)> = Vec::new();
    for id in validators.codes() {
        let dir = test_data.join(&id.namespace).join(&id.name).join(&id.version).join("shouldPass");
        let mut files = Vec::new();
        if dir.is_dir() {
            files_under(&dir, &mut files);
        }
        for file in files {
            let body: Value = serde_json::from_slice(&std::fs::read(&file).expect("a file")).expect("JSON");
            points.push((id.clone(), json!({"header": header(&id), "body": body})));
        }
    }
    let mut example_files = Vec::new();
    files_under(&examples, &mut example_files);
    let mut seeds = Vec::new();
    for file in example_files {
        let point: Value = serde_json::from_slice(&std::fs::read(&file).expect("an example")).expect("JSON");
        let id = SchemaId::from_json(&point["header"]["schema_id"]).expect("a schema id");
        seeds.push((id, point));
    }
    let mut tally = Tally { compared: 0, valid: 0, one_pass_answers: 0, replayed: 0, learnt: 0, problems: Vec::new() };
    for (id, point) in seeds.iter().chain(&points) {
        for (index, text) in texts(point).into_iter().enumerate() {
            tally.compare(&validators, &text, index >= 3, None, &format!("{id}"));
            tally.compare(&validators, &text, index >= 3, Some(id), &format!("{id} as {id}"));
        }
    }
    // mutations of the examples and of one point of each type
    let mut mutated_types = std::collections::BTreeSet::new();
    let mut to_mutate: Vec<&(SchemaId, Value)> = seeds.iter().collect();
    to_mutate.extend(points.iter().filter(|(id, _)| mutated_types.insert(id.to_string())));
    let blood_pressure: SchemaId = "omh:blood-pressure:4.0".parse().expect("a code");
    for (id, point) in to_mutate {
        for mutated in mutations(point) {
            for text in texts(&mutated).into_iter().take(3) {
                tally.compare(&validators, &text, false, None, &format!("mutation of {id}"));
                let label = format!("mutation of {id} as blood pressure");
                tally.compare(&validators, &text, false, Some(&blood_pressure), &label);
            }
        }
    }
    println!(
        "fast path: {} data points compared with the detailed validator ({} seeds, {} valid), the one-pass \
         validator answered {}, shapes seen before {} (of {} shapes learnt), {} problems",
        tally.compared,
        seeds.len() + points.len(),
        tally.valid,
        tally.one_pass_answers,
        tally.replayed,
        tally.learnt,
        tally.problems.len()
    );
    let shown: Vec<&String> = tally.problems.iter().take(30).collect();
    assert!(tally.problems.is_empty(), "{} problems, first ones:\n{shown:#?}", tally.problems.len());
}

#[test]
fn escapes_and_odd_input_go_to_the_detailed_validator() {
    let validators = Validators::builtin();
    let point = |body: &str| {
        format!(
            r#"{{"header":{{"uuid":"u","schema_id":{{"namespace":"omh","name":"heart-rate","version":"2.0"}},"source_creation_date_time":"2025-01-01T00:00:00Z"}},"body":{body}}}"#
        )
    };
    let valid = point(
        r#"{"heart_rate":{"value":60,"unit":"beats/min"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00Z"}}"#,
    );
    assert!(validators.fast_data_point(valid.as_bytes(), None).is_some());
    for text in [
        // escapes: the detailed validator unescapes
        point(
            r#"{"heart_rate":{"value":60,"unit":"beats\/min"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00Z"}}"#,
        ),
        point(
            r#"{"heart_rate":{"value":60,"unit":"beats/min"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00\u005a"}}"#,
        ),
        point(
            r#"{"heart_rate":{"value":60,"unit":"beats/min"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00Z"},"x":"\ud800"}"#,
        ),
        // a duplicate whose first value is invalid
        point(
            r#"{"heart_rate":{"value":"x"},"heart_rate":{"value":60,"unit":"beats/min"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00Z"}}"#,
        ),
        point(
            r#"{"heart_rate":{"value":60,"unit":"beats/min"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00Z"},"heart_rate":{"value":1e999,"unit":"beats/min"}}"#,
        ),
        point(
            r#"{"heart_rate":{"value":60,"unit":"beats/min"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00Z"}}  ,"#,
        ),
        format!("{valid}\n\u{0}"),
        valid.replace("\"body\"", "\"body\":{},\"body\""),
        format!("[{valid}]"),
    ] {
        let fast = validators.fast_data_point(text.as_bytes(), None);
        let detailed = validators.detailed_data_point(text.as_bytes(), None);
        if let Some(fast) = fast {
            assert_eq!(Ok(fast), detailed, "{text}");
        }
        assert_eq!(validators.validate_data_point(text.as_bytes()), detailed, "{text}");
    }
}

/// Paths to every string and number of `value`.
fn scalar_paths(value: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match value {
        Value::String(_) | Value::Number(_) => out.push(path.clone()),
        Value::Object(object) => {
            for (key, child) in object {
                path.push(json!(key));
                scalar_paths(child, path, out);
                path.pop();
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                path.push(json!(index));
                scalar_paths(child, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

fn at_path<'v>(value: &'v mut Value, path: &[Value]) -> &'v mut Value {
    path.iter().fold(value, |node, step| match step {
        Value::String(key) => &mut node[key.as_str()],
        _ => &mut node[step.as_u64().expect("an index") as usize],
    })
}

#[test]
fn shapes_replay_exactly_what_the_detailed_validator_accepts() {
    let validators = Validators::builtin();
    let strings = [
        "2025-01-01T00:04:00-08:00",
        "2025-06-30T23:59:59.999999+14:00",
        "2016-12-31T23:59:60Z",
        "2016-12-31T15:59:60-08:00",
        "2016-12-31T23:58:60Z",
        "2024-02-29T12:00:00z",
        "2025-02-29T12:00:00Z",
        "2025-01-01T00:04:00",
        "2025-01-01 00:04:00Z",
        "2025-01-01T00:04:00.Z",
        "2025-01-01T24:00:00Z",
        "2025-01-01T00:04:00+24:00",
        "beats/min",
        "mg/dL",
        "mmol/L",
        "mmHg",
        "sensed",
        "self-reported",
        "manufacturer",
        "iHealth",
        "aaaa1234-1a2b-3c4d-5e6f-000000000001",
        "",
        "x",
        "bogus",
        "é",
        "日本語",
        "\u{1F600}",
        "a\"b",
        "a\\b",
        "tab\there",
        "line\nbreak",
        "\u{7f}",
    ];
    let numbers = [
        json!(0),
        json!(-0.0),
        json!(67.5),
        json!(120),
        json!(-3),
        json!(0.1),
        json!(1e300),
        json!(1.5e-7),
        json!(12_345_678_901_234_567u64),
    ];
    let (mut compared, mut replayed, mut problems) = (0, 0, Vec::new());
    for (name, point) in examples::example_data_points() {
        let text = serde_json::to_vec(&point).expect("JSON");
        assert!(validators.learn_shape(&text), "{name}: the example's shape is kept");
        let mut paths = Vec::new();
        scalar_paths(&point, &mut Vec::new(), &mut paths);
        for path in &paths {
            let original = at_path(&mut point.clone(), path).clone();
            let candidates: Vec<Value> =
                if original.is_string() { strings.iter().map(|text| json!(text)).collect() } else { numbers.to_vec() };
            for candidate in candidates {
                let mut varied = point.clone();
                *at_path(&mut varied, path) = candidate;
                let text = serde_json::to_vec(&varied).expect("JSON");
                compared += 1;
                let detailed = validators.detailed_data_point(&text, None);
                if let Some(point) = validators.shape_data_point(&text) {
                    replayed += 1;
                    if detailed.as_ref() != Ok(&point) {
                        problems.push(format!(
                            "shape gives {point:?}, detailed {detailed:?} on {}",
                            String::from_utf8_lossy(&text)
                        ));
                    }
                }
                assert_eq!(validators.validate_data_point(&text), detailed);
            }
        }
    }
    println!("shapes: {compared} variations of the examples, {replayed} replayed, {} problems", problems.len());
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(replayed * 4 > compared, "too few variations replayed: {replayed} of {compared}");
}
