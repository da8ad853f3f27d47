//! Parsing uploads (jhe-compat §6.7, §6.8): what the reference accepts is accepted, everything else is refused with
//! a 400 that names the FHIR path, and nothing panics.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jhe_schemas::fhir::{FhirError, MAX_OBSERVATION_BYTES, parse_bundle, parse_observation};
use jhe_schemas::omh::Validators;
use jhe_schemas::{ErrorKind, Identifier};
use serde_json::{Value, json};

#[path = "support/example_data_points.rs"]
mod examples;

fn upload_body(omh: &[u8]) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "https://w3id.org/openmhealth", "code": "omh:heart-rate:2.0"}]},
        "subject": {"reference": "Patient/40001"},
        "device": {"reference": "Device/70001"},
        "identifier": [{"system": "https://commonhealth.org", "value": "u-1"}],
        "valueAttachment": {"contentType": "application/json", "data": BASE64.encode(omh)}
    })
}

fn valid_body() -> Value {
    upload_body(
        br#"{"header":{"uuid":"u-1"},"body":{"effective_time_frame":{"date_time":"2025-01-01T00:04:00-08:00"}}}"#,
    )
}

fn parse(body: &Value) -> Result<jhe_schemas::fhir::ObservationUpload, FhirError> {
    parse_observation(body.to_string().as_bytes())
}

/// Applies `edit` to a valid body (a JSON merge: `null` removes a key).
fn edited(edit: Value) -> Value {
    let mut body = valid_body();
    for (key, value) in edit.as_object().unwrap() {
        match value {
            Value::Null => {
                body.as_object_mut().unwrap().remove(key);
            }
            value => body[key] = value.clone(),
        }
    }
    body
}

#[test]
fn example_data_points_upload_as_sent() {
    let files = examples::example_files();
    for (name, omh) in &files {
        let upload = parse(&upload_body(omh)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let payload = upload.omh().unwrap();
        assert_eq!(payload.json.as_bytes(), omh.as_slice(), "{name} must be kept byte for byte");
        let validated = Validators::builtin().validate_data_point(payload.json.as_bytes());
        assert!(validated.is_ok(), "{name} is a valid data point with an effective time: {validated:?}");
    }
    assert_eq!(files.len(), 7);
}

#[test]
fn accepted_shapes() {
    let upload = parse(&valid_body()).unwrap();
    assert_eq!(upload.subject_patient_id, 40001);
    assert_eq!(upload.device_id(), Ok(70001));
    assert_eq!(upload.identifiers, [Identifier { system: "https://commonhealth.org".into(), value: "u-1".into() }]);
    assert_eq!(upload.coding().unwrap().code, "omh:heart-rate:2.0");

    // snake_case keys (the reference camel-cases request keys), versioned references, nulls, base64 with line
    // breaks, the IEEE namespace, an identifier without a system, and other valid R5 elements.
    let data = valid_body()["valueAttachment"]["data"].as_str().unwrap().to_owned();
    let wrapped: String =
        data.as_bytes().chunks(8).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join("\r\n");
    let body = json!({
        "resource_type": "Observation",
        "status": "preliminary",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": "https://w3id.org/ieee1752", "code": "ieee:sleep-stage-summary:1.0", "user_selected": true}]},
        "subject": {"reference": "Patient/40001/_history/3", "display": "Peter"},
        "device": {"reference": "Device/070001"},
        "identifier": [{"value": "no-system"}],
        "effective_date_time": "2025-01-01T00:04:00-08:00",
        "note": null,
        "_status": {"extension": []},
        "value_attachment": {"content_type": "application/json", "data": wrapped}
    });
    let upload = parse(&body).unwrap();
    assert_eq!(upload.status, "preliminary");
    assert_eq!(upload.subject_patient_id, 40001);
    assert_eq!(upload.device_id(), Ok(70001));
    assert_eq!(upload.identifiers, [Identifier { system: String::new(), value: "no-system".into() }]);
    assert_eq!(upload.coding().unwrap().system, "https://w3id.org/ieee1752");
    assert!(matches!(upload.effective, Some(jhe_schemas::fhir::FhirEffective::DateTime(_))));
    assert_eq!(upload.omh().unwrap().json.as_bytes(), BASE64.decode(&data).unwrap());
}

/// Step (1) and (2) failures: the whole upload is refused.
#[test]
fn structural_rejections_name_the_path() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{".to_vec(), "Observation: not valid JSON"),
        (b"[]".to_vec(), "Observation: expected an object"),
        (
            edited(json!({"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}}))
                .to_string()
                .into_bytes(),
            "Observation.code.coding: no coding with system",
        ),
        (edited(json!({"code": null})).to_string().into_bytes(), "Observation.code.coding: no coding"),
        (
            edited(json!({"resourceType": "Patient"})).to_string().into_bytes(),
            "Observation.resourceType: expected \"Observation\"",
        ),
        (edited(json!({"status": null})).to_string().into_bytes(), "Observation.status: required"),
        (edited(json!({"status": " final"})).to_string().into_bytes(), "Observation.status: not a code"),
        (edited(json!({"status": 1})).to_string().into_bytes(), "Observation.status: expected a string"),
        (edited(json!({"valu": 1})).to_string().into_bytes(), "Observation.valu: is not an element"),
        (
            edited(json!({"identifier": {"value": "x"}})).to_string().into_bytes(),
            "Observation.identifier: expected an array",
        ),
        (
            edited(json!({"identifier": [{"system": "s"}]})).to_string().into_bytes(),
            "Observation.identifier[0].value: required",
        ),
        (
            edited(json!({"identifier": [{"value": "x", "label": "y"}]})).to_string().into_bytes(),
            "Observation.identifier[0].label: is not an element",
        ),
        (edited(json!({"valueQuantity": {"value": 1}})).to_string().into_bytes(), "only one of valueQuantity"),
        (
            edited(json!({"effectiveDateTime": "2025", "effectivePeriod": {}})).to_string().into_bytes(),
            "Observation.effectivePeriod: only one of",
        ),
        (
            edited(json!({"code": {"coding": [{"system": "https://w3id.org/openmhealth", "code": 5}]}}))
                .to_string()
                .into_bytes(),
            "Observation.code.coding[0].code: expected a string",
        ),
        (
            edited(json!({"subject": null})).to_string().into_bytes(),
            "Observation.subject.reference: required; expected \"Patient/<id>\"",
        ),
        (
            edited(json!({"subject": {"reference": "Device/1"}})).to_string().into_bytes(),
            "Observation.subject.reference: expected \"Patient/<id>\", found \"Device/1\"",
        ),
        (
            edited(json!({"subject": {"reference": "Patient/abc"}})).to_string().into_bytes(),
            "Observation.subject.reference: expected",
        ),
        (
            edited(json!({"subject": {"reference": "Patient/"}})).to_string().into_bytes(),
            "Observation.subject.reference: expected",
        ),
        (
            edited(json!({"subject": {"reference": "Patient/-1"}})).to_string().into_bytes(),
            "Observation.subject.reference: expected",
        ),
        (
            edited(json!({"subject": {"reference": "Patient/99999999999999999999"}})).to_string().into_bytes(),
            "Observation.subject.reference: expected",
        ),
        (
            edited(json!({"subject": {"reference": "https://x/Patient/1"}})).to_string().into_bytes(),
            "Observation.subject.reference: expected",
        ),
        (vec![b' '; MAX_OBSERVATION_BYTES + 1], "Observation: the body is"),
    ];
    for (body, expected) in cases {
        let error = parse_observation(&body).expect_err(expected);
        assert!(
            error.to_string().starts_with(expected) || error.to_string().contains(expected),
            "{error} ≠ {expected}"
        );
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
    }
}

/// Steps (4), (6) and (8) are kept for ingest to ask at their turn.
#[test]
fn deferred_rejections() {
    let device_missing = parse(&edited(json!({"device": null}))).unwrap();
    assert!(device_missing.device_id().unwrap_err().to_string().starts_with("Observation.device.reference: required"));
    let device_wrong = parse(&edited(json!({"device": {"reference": "Patient/3"}}))).unwrap();
    assert!(device_wrong.device_id().unwrap_err().to_string().contains("expected \"Device/<id>\""));
    assert!(device_wrong.coding().is_ok() && device_wrong.omh().is_ok());
    assert!(device_wrong.first_error().unwrap().to_string().starts_with("Observation.device.reference"));

    let two_codings = parse(&edited(json!({"code": {"coding": [
        {"system": "https://w3id.org/openmhealth", "code": "omh:heart-rate:2.0"},
        {"system": "http://loinc.org", "code": "8867-4"}
    ]}})))
    .unwrap();
    assert_eq!(
        two_codings.coding().unwrap_err(),
        FhirError::CodingCount { path: "Observation.code.coding".into(), count: 2 }
    );
    let no_code = parse(&edited(json!({"code": {"coding": [{"system": "https://w3id.org/openmhealth"}]}}))).unwrap();
    assert_eq!(no_code.coding().unwrap_err().to_string(), "Observation.code.coding[0].code: required");

    let attachment =
        |edit: Value| parse(&edited(json!({ "valueAttachment": edit }))).unwrap().omh().unwrap_err().to_string();
    let bad = [
        (json!({"contentType": "application/json"}), "missing"),
        (json!({"data": "not base64!"}), "not base64"),
        (json!({"data": "eyJ"}), "not base64"),
        (json!({"data": "eyJh"}), "not JSON"),
        (json!({"data": BASE64.encode("not json")}), "not JSON"),
        (json!({"data": BASE64.encode([0xff, 0xfe])}), "not UTF-8"),
    ];
    for (edit, reason) in bad {
        let message = attachment(edit);
        assert!(
            message.starts_with(
                "Observation.valueAttachment.data: valueAttachment.data must be Base 64 Encoded Binary JSON"
            ),
            "{message}"
        );
        assert!(message.contains(reason), "{message}");
    }
    let no_attachment = parse(&edited(json!({"valueAttachment": null}))).unwrap();
    assert!(no_attachment.omh().is_err());
    // Non-ASCII UTF-8 JSON is accepted (the reference required ASCII).
    let unicode = parse(&upload_body("{\"unit\":\"µmol/L\"}".as_bytes())).unwrap();
    assert_eq!(unicode.into_omh().unwrap().json, "{\"unit\":\"µmol/L\"}");
}

fn entry(resource: Value) -> Value {
    json!({"resource": resource, "request": {"method": "POST", "url": "Observation"}})
}

#[test]
fn batch_bundles_are_judged_per_entry() {
    let mut wrong_method = entry(valid_body());
    wrong_method["request"]["method"] = json!("PUT");
    let mut wrong_type = entry(valid_body());
    wrong_type["resource"]["resourceType"] = json!("Patient");
    let mut no_request = entry(valid_body());
    no_request.as_object_mut().unwrap().remove("request");
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            entry(valid_body()),
            wrong_method,
            wrong_type,
            no_request,
            entry(edited(json!({"subject": {"reference": "Group/1"}}))),
            {"resource": valid_body(), "request": {"method": "POST", "url": "Observation"}, "fullUrl": "urn:uuid:1"},
            {"resource": valid_body(), "request": {"method": "POST"}},
        ]
    });
    let upload = parse_bundle(bundle.to_string().as_bytes()).unwrap();
    assert_eq!(upload.bundle_type, "batch");
    let messages: Vec<String> =
        upload.entries.iter().map(|entry| entry.as_ref().err().map(ToString::to_string).unwrap_or_default()).collect();
    assert_eq!(
        messages,
        [
            "",
            "Bundle.entry[1].request.method: Only POST/Create method supported.",
            "Bundle.entry[2].resource.resourceType: Only Observation resourceType supported.",
            "Bundle.entry[3].request: required",
            "Observation.subject.reference: expected \"Patient/<id>\", found \"Group/1\"",
            "",
            "Bundle.entry[6].request.url: required",
        ]
    );
    assert_eq!(upload.entries[0].as_ref().unwrap().subject_patient_id, 40001);

    let transaction = json!({"resourceType": "Bundle", "type": "transaction", "entry": [entry(valid_body())]});
    assert_eq!(parse_bundle(transaction.to_string().as_bytes()).unwrap().entries.len(), 1);
    let empty = parse_bundle(br#"{"resourceType":"Bundle","type":"batch"}"#).unwrap();
    assert!(empty.entries.is_empty());
}

#[test]
fn malformed_bundles_are_refused_whole() {
    let without_data = entry(edited(json!({"valueAttachment": {"contentType": "application/json"}})));
    let too_many: Vec<Value> = (0..=jhe_schemas::fhir::MAX_BUNDLE_ENTRIES).map(|_| json!({})).collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "Bundle: expected an object"),
        (json!({"resourceType": "Observation", "type": "batch"}), "Bundle.resourceType: expected \"Bundle\""),
        (json!({"resourceType": "Bundle", "entry": []}), "Bundle.type: required"),
        (json!({"resourceType": "Bundle", "type": "batch", "entry": {}}), "Bundle.entry: expected an array"),
        (json!({"resourceType": "Bundle", "type": "batch", "entries": []}), "Bundle.entries: is not an element"),
        (
            json!({"resourceType": "Bundle", "type": "batch", "entry": [entry(valid_body()), without_data]}),
            "Bundle.entry[1].resource.valueAttachment.data: resource.valueAttachment.data must be not null",
        ),
        (
            json!({"resourceType": "Bundle", "type": "batch", "entry": [{"request": {}}]}),
            "Bundle.entry[0].resource.valueAttachment.data",
        ),
        (json!({"resourceType": "Bundle", "type": "batch", "entry": too_many}), "Bundle.entry: at most 10000 entries"),
    ];
    for (body, expected) in cases {
        let error = parse_bundle(body.to_string().as_bytes()).expect_err(expected);
        assert!(error.to_string().starts_with(expected), "{error} ≠ {expected}");
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
    }
    assert!(parse_bundle(b"\xff").unwrap_err().to_string().starts_with("Bundle: not valid JSON"));
}

/// Deterministic mutations of valid bodies (truncations, byte flips, splices): every parser returns, none panics.
#[test]
fn parsers_never_panic() {
    let observation = valid_body().to_string().into_bytes();
    let bundle =
        json!({"resourceType": "Bundle", "type": "batch", "entry": [entry(valid_body())]}).to_string().into_bytes();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for source in [&observation, &bundle] {
        for end in 0..source.len() {
            let _ = parse_observation(&source[..end]);
            let _ = parse_bundle(&source[..end]);
        }
        for _ in 0..3000 {
            let mut mutated = source.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % mutated.len();
                match next() % 3 {
                    0 => mutated[at] = next() as u8,
                    1 => mutated.insert(at, b"{}[]\",:0-9eE.\\/_"[(next() % 16) as usize]),
                    _ => {
                        mutated.remove(at);
                    }
                }
            }
            if let Ok(upload) = parse_observation(&mutated) {
                let _ = (upload.device_id(), upload.coding().cloned(), upload.first_error().cloned());
            }
            let _ = parse_bundle(&mutated);
        }
    }
}
