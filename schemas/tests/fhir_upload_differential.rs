//! The upload parser against the one it replaced (a `serde_json::Value` tree, kept in `support/`): the same result,
//! field by field and error message by error message, on valid bodies, on the edge cases the borrowed parser
//! handles on its own (repeated keys, `null`s, snake_case keys, escapes, numbers, nesting, base64 with whitespace,
//! bad base64, non-UTF-8, non-JSON payloads, large bodies) and on tens of thousands of mutations.

#[path = "support/legacy_fhir_upload.rs"]
mod legacy;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jhe_schemas::Identifier;
use jhe_schemas::fhir::{Coding, FhirEffective, FhirError, ObservationUpload, parse_bundle, parse_observation};
use serde_json::{Value, json};

/// Everything an upload exposes, comparable.
#[derive(Debug, PartialEq)]
struct View {
    status: String,
    subject_patient_id: i64,
    identifiers: Vec<Identifier>,
    effective: Option<FhirEffective>,
    attachment_content_type: Option<String>,
    device: Result<i64, FhirError>,
    coding: Result<Coding, FhirError>,
    omh: Result<String, FhirError>,
}

fn view(upload: &ObservationUpload) -> View {
    View {
        status: upload.status.clone(),
        subject_patient_id: upload.subject_patient_id,
        identifiers: upload.identifiers.clone(),
        effective: upload.effective.clone(),
        attachment_content_type: upload.attachment_content_type.clone(),
        device: upload.device_id(),
        coding: upload.coding().cloned(),
        omh: upload.omh().map(|payload| payload.json.clone()),
    }
}

fn legacy_view(upload: legacy::Upload) -> View {
    View {
        status: upload.status,
        subject_patient_id: upload.subject_patient_id,
        identifiers: upload.identifiers,
        effective: upload.effective,
        attachment_content_type: upload.attachment_content_type,
        device: upload.device,
        coding: upload.coding,
        omh: upload.omh.map(|(json, _)| json),
    }
}

/// Both parsers, as an Observation and as a Bundle; returns how many of the two the new parser accepted.
fn same(bytes: &[u8]) -> usize {
    let new = parse_observation(bytes).map(|upload| view(&upload));
    let old = legacy::parse_observation(bytes).map(legacy_view);
    assert_eq!(new, old, "parse_observation({:?})", String::from_utf8_lossy(bytes));
    let new = parse_bundle(bytes).map(|bundle| {
        (
            bundle.bundle_type,
            bundle.entries.iter().map(|e| e.as_ref().map(view).map_err(Clone::clone)).collect::<Vec<_>>(),
        )
    });
    let old = legacy::parse_bundle(bytes)
        .map(|bundle| (bundle.bundle_type, bundle.entries.into_iter().map(|e| e.map(legacy_view)).collect::<Vec<_>>()));
    let bundle_ok = old.is_ok();
    assert_eq!(new, old, "parse_bundle({:?})", String::from_utf8_lossy(bytes));
    usize::from(parse_observation(bytes).is_ok()) + usize::from(bundle_ok)
}

fn observation(data: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "https://w3id.org/openmhealth", "code": "omh:heart-rate:2.0"}]},
        "subject": {"reference": "Patient/40001"},
        "device": {"reference": "Device/70001"},
        "identifier": [{"system": "https://commonhealth.org", "value": "u-1"}],
        "valueAttachment": {"contentType": "application/json", "data": data}
    })
}

const OMH: &str = r#"{"header":{"uuid":"u-1","schema_id":{"namespace":"omh","name":"heart-rate","version":"2.0"},"source_creation_date_time":"2025-01-01T00:04:00-08:00","modality":"sensed"},"body":{"heart_rate":{"value":61,"unit":"beats/min"},"effective_time_frame":{"date_time":"2025-01-01T00:04:00-08:00"}}}"#;

fn valid() -> Value {
    observation(&BASE64.encode(OMH))
}

fn bundle(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "batch", "entry": entries})
}

fn entry(resource: Value) -> Value {
    json!({"resource": resource, "request": {"method": "POST", "url": "Observation"}})
}

/// Hand-written bodies: the text is given as is (repeated keys and odd spellings survive no `Value`).
fn edge_cases() -> Vec<Vec<u8>> {
    let data = BASE64.encode(OMH);
    let wrapped: String =
        data.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\r\n");
    let with = |edit: &str| -> String {
        // `edit` is spliced in as the first members of the valid body
        let body = valid().to_string();
        format!("{{{edit},{}", &body[1..])
    };
    let mut cases: Vec<String> = vec![
        valid().to_string(),
        bundle(vec![entry(valid())]).to_string(),
        // repeated keys: first position, last value
        with(r#""status": 1"#),
        with(r#""status": "preliminary""#),
        with(r#""foo": 1, "status": 2"#),
        with(r#""status": "final", "status_": "final""#),
        with(r#""valueAttachment": null, "value_attachment": {"data": "eyJ9"}"#),
        with(r#""code": {"coding": []}"#),
        with(r#""code_": {"coding": [{"system": "https://w3id.org/openmhealth", "code": "x"}]}"#),
        with(r#""resource_type": "Observation""#),
        with(r#""resource__type": "Patient""#),
        with(r#""_status": {"extension": []}"#),
        with(r#""_status": "x""#),
        with(r#""_code": {}"#),
        with(r#""effectiveDateTime": "2025", "effective_period": {"start": "x"}"#),
        with(r#""effective_period": {"start": "a", "end": null, "id": 1}"#),
        with(r#""effective_period": {"start": "a", "start": "b"}"#),
        with(r#""valueQuantity": null"#),
        with(r#""valueQuantity": {"value": 1}"#),
        with(r#""note": [1e400]"#),
        with(r#""note": [1.5e300], "meta": {"a": {"b": [null, true, "\u00e9"]}}"#),
        with(r#""note": "not an array""#),
        with(r#""identifier": [{"value": "a"}, {"system": "s"}, {"value": 5}]"#),
        with(r#""identifier": [{"value": ""}]"#),
        with(r#""identifier": [{"value": "a", "value": null}]"#),
        with(r#""identifier": null"#),
        with(r#""subject": {"reference": "Patient/1", "reference": "Patient/2"}"#),
        with(r#""subject": {"reference": "Patient/1/_history/x/y"}"#),
        with(r#""subject": ["Patient/1"]"#),
        with(r#""device": {"reference": null}"#),
        with(r#""device": {"reference": "Device/1", "display": 3}"#),
        with(r#""device": "Device/1""#),
        with(r#""code": {"coding": [{"system": "https://w3id.org/openmhealth", "code": "a"}, 5]}"#),
        with(r#""code": {"coding": [{"system": "https://w3id.org/ieee1752", "code": ""}]}"#),
        with(
            r#""code": {"coding": [{"system": "https://w3id.org/openmhealth", "code": "a", "display": "\ud83d\ude00"}]}"#,
        ),
        with(r#""code": {"coding": {"system": "https://w3id.org/openmhealth"}}"#),
        with(r#""code": {"text": 1, "coding": [{"system": "https://w3id.org/openmhealth", "code": "a"}]}"#),
        with(r#""code": "https://w3id.org/openmhealth""#),
        with(r#""st\u0061tus": "final""#),
        with(r#""status": "fin\u0061l""#),
        with(r#""valueAttachment": {"data": "eyJhIjoxfQ==", "data": null}"#),
        with(&format!(r#""valueAttachment": {{"data": "{}"}}"#, wrapped.replace("\r\n", "\\r\\n"))),
        with(&format!(r#""valueAttachment": {{"data": "{}"}}"#, data.replace('A', "\\u0041"))),
        with(r#""valueAttachment": {"data": "e yJ hIjoxfQ=="}"#),
        with(r#""valueAttachment": {"data": "eyJhIjoxfQ= ="}"#),
        with(r#""valueAttachment": {"data": "eyJhIjox\ffQ=="}"#),
        with(r#""valueAttachment": {"data": "eyJhIjox\u000bfQ=="}"#),
        with(r#""valueAttachment": {"data": "eyJhIjoxfQ"}"#),
        with(r#""valueAttachment": {"data": "eyJhIjoxfR=="}"#),
        with(r#""valueAttachment": {"data": "eyJhIjoxfQ=== "}"#),
        with(r#""valueAttachment": {"data": "!!!!"}"#),
        with(r#""valueAttachment": {"data": ""}"#),
        with(r#""valueAttachment": {"data": 5}"#),
        with(r#""valueAttachment": {"data": "eyJhIjoxfQ==", "size": "12", "duration": 1.5, "height": 1.0}"#),
        with(r#""valueAttachment": {"data": "eyJhIjoxfQ==", "size": 12, "pages": -1}"#),
        with(r#""valueAttachment": {"data": "eyJhIjoxfQ==", "size": 1.5}"#),
        with(r#""valueAttachment": {"data": "eyJhIjoxfQ==", "frames": 18446744073709551616}"#),
        with(r#""valueAttachment": {"data": "eyJhIjoxfQ==", "_data": {}}"#),
    ];
    for payload in [
        &b"not json"[..],
        b"{\"a\": 1e400}",
        b"{\"a\": 1} x",
        b"\xff\xfe",
        b"\xc3\x28",
        b"{\"a\": \"\\ud800\"}",
        b" {\"a\": [1, 2, {\"b\": null}]} \n",
        b"{\"a\": 1, \"a\": 2}",
        "{\"unit\":\"µmol/L\"}".as_bytes(),
        b"",
        b"1",
    ] {
        cases.push(observation(&BASE64.encode(payload)).to_string());
    }
    let deep = format!("{}1{}", "[".repeat(130), "]".repeat(130));
    cases.push(observation(&BASE64.encode(&deep)).to_string());
    cases.push(with(&format!(r#""meta": {deep}"#)));
    // Bundles
    let body = valid();
    cases.extend([
        r#"{"resourceType":"Bundle","type":"batch"}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":"batch","entry":null}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":"batch","entry":[]}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":"batch","entry":["x"]}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":1,"entry":[]}"#.to_owned(),
        r#"{"resource_type":"Bundle","type":"batch","total":1.5}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":"batch","type":"transaction"}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":"batch","entry":[],"entry":[{}]}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"valueAttachment":{"data":1}}}]}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"value_attachment":{"data":"x"}},"request":{"method":"POST","url":"x"}}]}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"resource_type":"Observation","value_attachment":{"data":"x"}},"request":{"method":"POST","url":"x"}}]}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":"batch","entry":[{"resource":{"valueAttachment":null,"value_attachment":{"data":"x"}}}]}"#.to_owned(),
        r#"{"resourceType":"Bundle","type":"batch","entry":[{"resource":[],"request":{}}]}"#.to_owned(),
        bundle(vec![entry(body.clone()), json!({"resource": body, "request": {"method": "POST", "url": "Observation"}, "fullUrl": 1})]).to_string(),
        bundle(vec![json!({"resource": body, "request": {"method": "POST", "url": "Observation", "url": null}})]).to_string(),
        bundle(vec![json!({"resource": body, "request": "POST"})]).to_string(),
        bundle(vec![json!({"resource": body, "request": {"method": "GET", "url": "Observation", "ifMatch": 1}})]).to_string(),
        bundle(vec![json!({"resource": body, "request": {"method": "POST", "url": "Observation"}, "search": {}, "response": []})]).to_string(),
        bundle(vec![json!({"resource": body, "request": {"method": "POST", "url": "Observation"}, "res_ource": 1})]).to_string(),
    ]);
    // entries are read as they are parsed: whatever comes after them still decides
    let one = entry(body.clone()).to_string();
    cases.extend([
        format!(r#"{{"resourceType":"Bundle","type":"batch","entry":[{one}],"foo":1}}"#),
        format!(r#"{{"resourceType":"Bundle","type":"batch","entry":[{{"request":{{}}}}],"entry":[{one}]}}"#),
        format!(r#"{{"resourceType":"Bundle","type":"batch","entry":[{one}],"entry":[{{"request":{{}}}}]}}"#),
        format!(r#"{{"resourceType":"Bundle","type":"batch","entry":[{one}],"entry":null}}"#),
        format!(r#"{{"resourceType":"Bundle","type":"batch","entry":[{one}],"entry_":[]}}"#),
        format!(r#"{{"type":"batch","entry":[{one},{one}],"resourceType":"Observation"}}"#),
        format!(r#"{{"resourceType":"Bundle","entry":[{one}]}}"#),
        format!(r#"{{"resourceType":"Bundle","type":"batch","entry":[{one},{{}},{one}],"type":"x"}}"#),
        format!(r#"{{"resourceType":"Bundle","type":"batch","entry":[{one},{one}]}} x"#),
        format!(r#"{{"resourceType":"Bundle","type":"batch","entry":[{one},{one}],"entry":[1e400]}}"#),
    ]);
    let resource = body.to_string();
    cases.push(format!(
        r#"{{"resourceType":"Bundle","type":"batch","entry":[{{"resource":{resource},"resource":{resource},"request":{{"method":"POST","url":"Observation"}}}}]}}"#
    ));
    cases.push(format!(
        r#"{{"resourceType":"Bundle","type":"batch","entry":[{{"resource":{resource},"request":{{"method":"POST","url":"Observation"}},"resource":{{"resourceType":"Observation"}}}}]}}"#
    ));
    let mut bytes: Vec<Vec<u8>> = cases.into_iter().map(String::into_bytes).collect();
    // not UTF-8 outside and inside strings
    bytes.push(b"\xff".to_vec());
    let mut inside = valid().to_string().into_bytes();
    let at = inside.windows(5).position(|w| w == b"final").unwrap();
    inside[at] = 0xff;
    bytes.push(inside);
    bytes
}

#[test]
fn edge_cases_parse_as_before() {
    let cases = edge_cases();
    let accepted: usize = cases.iter().map(|case| same(case)).sum();
    assert!(accepted >= 10, "the cases include accepted bodies ({accepted})");
}

/// An object with many members (indexed rather than scanned for repeated keys), repeated keys among them.
#[test]
fn objects_with_many_members_parse_as_before() {
    let mut body = valid().to_string();
    body.pop();
    for i in 0..50 {
        body.push_str(&format!(r#","x{i}":{i}"#));
    }
    // every key of the first 20 given again: last value wins, first position kept
    for i in 0..20 {
        body.push_str(&format!(r#","x{i}":null"#));
    }
    body.push('}');
    same(body.as_bytes());
    let known: Vec<String> = ["note", "category", "meta", "text", "language", "issued", "method", "status"]
        .iter()
        .map(|k| format!(r#""{k}":null"#))
        .collect();
    let body = valid().to_string();
    let body = format!("{{{},{},{}", known.join(","), known.join(","), &body[1..]);
    assert_eq!(same(body.as_bytes()), 1);
}

#[test]
fn large_bodies_parse_as_before() {
    // a payload of about 1.5 MiB, and a Bundle of 2,000 entries
    let big = format!(r#"{{"header":{{}},"body":{{"values":[{}]}}}}"#, vec!["1.5"; 400_000].join(","));
    same(observation(&BASE64.encode(&big)).to_string().as_bytes());
    let entries: Vec<Value> = (0..2000).map(|_| entry(valid())).collect();
    assert_eq!(same(bundle(entries).to_string().as_bytes()), 1);
    // more entries than accepted: the count is refused before the pre-check, whatever the entries hold
    let small = json!({"resource": {"valueAttachment": {"data": "eyJ9"}}});
    let mut entries: Vec<Value> = vec![small; jhe_schemas::fhir::MAX_BUNDLE_ENTRIES + 1];
    same(bundle(entries.clone()).to_string().as_bytes());
    entries[jhe_schemas::fhir::MAX_BUNDLE_ENTRIES] = json!({});
    same(bundle(entries.clone()).to_string().as_bytes());
    entries.truncate(jhe_schemas::fhir::MAX_BUNDLE_ENTRIES);
    same(bundle(entries).to_string().as_bytes());
    let identifiers: Vec<Value> = (0..101).map(|i| json!({"value": i.to_string()})).collect();
    let mut body = valid();
    body["identifier"] = Value::Array(identifiers.clone());
    same(body.to_string().as_bytes());
    body["identifier"] = Value::Array(identifiers[..100].to_vec());
    assert_eq!(same(body.to_string().as_bytes()), 1);
    body["identifier"][100 - 1] = json!({"system": "no value"});
    same(body.to_string().as_bytes());
}

/// Deterministic mutations (byte flips, JSON punctuation inserted, bytes removed, truncations) of an
/// Observation and a Bundle: both parsers agree on every one.
#[test]
fn mutations_parse_as_before() {
    let mut with_extras = valid();
    with_extras["note"] = json!([{"text": "a"}]);
    with_extras["effectivePeriod"] = json!({"start": "2025-01-01T00:00:00Z"});
    with_extras["identifier"] = json!([{"system": "s", "value": "v"}, {"value": "w"}]);
    let sources = [
        valid().to_string().into_bytes(),
        with_extras.to_string().into_bytes(),
        bundle(vec![entry(valid()), entry(with_extras.clone())]).to_string().into_bytes(),
        edge_cases()[6].clone(),
    ];
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut accepted = 0;
    for source in &sources {
        for end in (0..source.len()).step_by(7) {
            same(&source[..end]);
        }
        for _ in 0..6000 {
            let mut mutated = source.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() as usize) % mutated.len();
                match next() % 4 {
                    0 => mutated[at] = next() as u8,
                    1 => mutated.insert(at, b"{}[]\",:0-9eE.\\/_ nulltrue"[(next() % 25) as usize]),
                    2 => {
                        mutated.remove(at);
                    }
                    _ => {
                        // duplicate a stretch (repeats keys and members)
                        let len = (next() as usize % 40).min(mutated.len() - at);
                        let copy = mutated[at..at + len].to_vec();
                        let to = (next() as usize) % mutated.len();
                        mutated.splice(to..to, copy);
                    }
                }
            }
            accepted += same(&mutated);
        }
    }
    assert!(accepted > 100, "some mutations stay valid ({accepted})");
}
