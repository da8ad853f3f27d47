//! Rendering of the jhe-native resources and Bundles (jhe-compat §6.5, §6.6, §6.8, §11.4). Expected bodies were
//! produced by running the reference's rendering engine on the same rows; keys are compared in order.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::NaiveDate;
use jhe_schemas::fhir::bundle::{
    BatchEntryResult, SearchsetLinks, batch_response, searchset, status_line, summary_count,
};
use jhe_schemas::fhir::render::{
    DataSourceRow, OrganizationRow, PatientRow, PractitionerRow, StudyRow, created_observation_summary, device, group,
    observation, organization, patient, practitioner,
};
use jhe_schemas::fhir::{parse_observation, render};
use jhe_schemas::{EffectiveTime, Identifier, MeasuredValues, ObservationRecord};
use serde::Serialize;
use serde_json::{Value, json};

/// 2026-02-11T22:39:09.246655Z
const LAST_UPDATED: i64 = 1_770_849_549_246_655;
const OMH: &str = r#"{"header": {"uuid": "u-1"}, "body": {"heart_rate": {"value": 67.5, "unit": "beats/min"}, "effective_time_frame": {"date_time": "2025-01-01T00:04:00-08:00"}}}"#;

/// Serializes with keys in emission order, to compare with a `json!` literal (which keeps its own order).
fn ordered(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

fn micros(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_micros()
}

fn heart_rate_record() -> ObservationRecord {
    ObservationRecord {
        id: 60061,
        patient_id: 40018,
        jhe_user_id: Some(10007),
        data_source_id: None,
        coding_system: "https://w3id.org/openmhealth".into(),
        coding_code: "omh:heart-rate:2.0".into(),
        effective: EffectiveTime { start_micros: micros("2025-01-01T08:04:00Z"), end_micros: None },
        last_updated_micros: LAST_UPDATED,
        identifiers: vec![Identifier { system: "https://commonhealth.org".into(), value: "u-u-i-d".into() }],
        omh_json: OMH.into(),
        values: MeasuredValues { value: Some(67.5), unit: Some("beats/min".into()), ..MeasuredValues::default() },
    }
}

#[test]
fn observation_matches_the_reference_rendering() {
    let record = heart_rate_record();
    let expected = json!({
        "meta": {"lastUpdated": "2026-02-11T22:39:09.246655Z", "source": "https://jupyterhealth.org/jhe"},
        "id": "60061",
        "identifier": [{"system": "https://commonhealth.org", "value": "u-u-i-d"}],
        "status": "final",
        "code": {"coding": [{"system": "https://w3id.org/openmhealth", "code": "omh:heart-rate:2.0", "display": "Heart Rate"}]},
        "effectiveDateTime": "2025-01-01T08:04:00Z",
        "subject": {
            "reference": "Patient/40018",
            "identifier": {"system": "https://jupyterhealth.org/fhir/identifier/jhe-user-id", "value": "10007"}
        },
        "valueAttachment": {
            "contentType": "application/json",
            "data": "eyJoZWFkZXIiOiB7InV1aWQiOiAidS0xIn0sICJib2R5IjogeyJoZWFydF9yYXRlIjogeyJ2YWx1ZSI6IDY3LjUsICJ1bml0IjogImJlYXRzL21pbiJ9LCAiZWZmZWN0aXZlX3RpbWVfZnJhbWUiOiB7ImRhdGVfdGltZSI6ICIyMDI1LTAxLTAxVDAwOjA0OjAwLTA4OjAwIn19fQ=="
        },
        "resourceType": "Observation"
    });
    assert_eq!(ordered(&observation(&record, Some("Heart Rate"))), expected.to_string());
}

#[test]
fn observation_period_device_and_pruning() {
    let record = ObservationRecord {
        jhe_user_id: None,
        data_source_id: Some(70001),
        identifiers: vec![
            Identifier { system: String::new(), value: "only-value".into() },
            Identifier { system: String::new(), value: String::new() },
        ],
        effective: EffectiveTime {
            start_micros: micros("2025-01-01T08:04:00Z"),
            end_micros: Some(micros("2025-01-01T09:04:00.5Z")),
        },
        ..heart_rate_record()
    };
    let rendered = serde_json::to_value(observation(&record, None)).unwrap();
    assert_eq!(rendered["identifier"], json!([{"value": "only-value"}]));
    assert_eq!(
        rendered["code"],
        json!({"coding": [{"system": "https://w3id.org/openmhealth", "code": "omh:heart-rate:2.0"}]})
    );
    assert_eq!(
        rendered["effectivePeriod"],
        json!({"start": "2025-01-01T08:04:00Z", "end": "2025-01-01T09:04:00.500000Z"})
    );
    assert_eq!(rendered.get("effectiveDateTime"), None);
    assert_eq!(rendered["subject"], json!({"reference": "Patient/40018"}));
    assert_eq!(rendered["device"], json!({"reference": "Device/70001"}));
    let keys: Vec<&str> = rendered.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "meta",
            "id",
            "identifier",
            "status",
            "code",
            "effectivePeriod",
            "subject",
            "valueAttachment",
            "device",
            "resourceType"
        ]
    );
    let empty = ObservationRecord { identifiers: vec![], ..record };
    assert_eq!(serde_json::to_value(observation(&empty, Some(""))).unwrap().get("identifier"), None);
}

#[test]
fn rendered_observation_uploads_back_unchanged() {
    let record = ObservationRecord { data_source_id: Some(70001), ..heart_rate_record() };
    let body = ordered(&observation(&record, Some("Heart Rate")));
    let upload = parse_observation(body.as_bytes()).unwrap();
    assert_eq!(upload.status, "final");
    assert_eq!(upload.subject_patient_id, record.patient_id);
    assert_eq!(upload.device_id(), Ok(70001));
    assert_eq!(upload.identifiers, record.identifiers);
    let coding = upload.coding().unwrap();
    assert_eq!(
        (coding.system.as_str(), coding.code.as_str()),
        (record.coding_system.as_str(), record.coding_code.as_str())
    );
    assert_eq!(coding.display.as_deref(), Some("Heart Rate"));
    assert_eq!(upload.attachment_content_type.as_deref(), Some("application/json"));
    assert_eq!(upload.omh().unwrap().json, record.omh_json);
    assert_eq!(upload.first_error(), None);
}

/// `tidy_observation` of jupyterhealth-client 0.5.0: every top-level key but `valueAttachment`, flattened with `_`.
fn flatten(prefix: &str, value: &Value, columns: &mut Vec<(String, Value)>) {
    let join = |key: &str| if prefix.is_empty() { key.to_owned() } else { format!("{prefix}_{key}") };
    match value {
        Value::Object(map) => map.iter().for_each(|(key, child)| flatten(&join(key), child, columns)),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, child)| flatten(&join(&i.to_string()), child, columns))
        }
        leaf => columns.push((prefix.to_owned(), leaf.clone())),
    }
}

#[test]
fn python_client_columns_are_produced() {
    let rendered = serde_json::to_value(observation(&heart_rate_record(), Some("Heart Rate"))).unwrap();
    let attachment = &rendered["valueAttachment"];
    assert!(attachment["contentType"].as_str().unwrap().contains("json"));
    let omh: Value = serde_json::from_slice(&BASE64.decode(attachment["data"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(omh["body"]["effective_time_frame"]["date_time"], "2025-01-01T00:04:00-08:00");

    let mut columns = Vec::new();
    for (key, value) in rendered.as_object().unwrap() {
        if key != "valueAttachment" {
            flatten(key, value, &mut columns);
        }
    }
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    for expected in [
        "resourceType",
        "id",
        "status",
        "meta_lastUpdated",
        "meta_source",
        "identifier_0_system",
        "identifier_0_value",
        "subject_reference",
        "subject_identifier_system",
        "subject_identifier_value",
        "code_coding_0_system",
        "code_coding_0_code",
        "code_coding_0_display",
        "effectiveDateTime",
    ] {
        assert!(names.contains(&expected), "missing column {expected} in {names:?}");
    }
    let column = |name: &str| columns.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(column("code_coding_0_code"), "omh:heart-rate:2.0");
    assert_eq!(column("subject_reference"), "Patient/40018");
    assert_eq!(column("id"), "60061");
}

#[test]
fn created_summary_for_patient_callers() {
    let record = ObservationRecord { last_updated_micros: micros("2026-02-11T22:39:09Z"), ..heart_rate_record() };
    assert_eq!(
        ordered(&created_observation_summary(&record)),
        json!({
            "resourceType": "Observation",
            "id": "60061",
            "status": "final",
            "meta": {"lastUpdated": "2026-02-11T22:39:09+00:00"},
            "subject": {"reference": "Patient/40018"},
            "code": {"coding": [{"system": "https://w3id.org/openmhealth", "code": "omh:heart-rate:2.0"}]}
        })
        .to_string()
    );
}

fn meta() -> Value {
    json!({"lastUpdated": "2026-02-11T22:39:09Z", "source": "https://jupyterhealth.org/jhe"})
}

fn model_type(code: &str) -> Value {
    json!({"coding": [{"system": "https://jupyterhealth.org/fhir/CodeSystem/model", "code": code}]})
}

#[test]
fn mapped_resources_match_the_reference_rendering() {
    let at = micros("2026-02-11T22:39:09Z");
    let peter = PatientRow {
        id: 40001,
        last_updated_micros: at,
        identifiers: vec![Identifier { system: "urn:oid:1.2.3.4".into(), value: "E1234".into() }],
        name_family: "Patient".into(),
        name_given: "Peter".into(),
        birth_date: NaiveDate::from_ymd_opt(1955, 1, 1),
        telecom_phone: None,
        email: Some("peter@example.com".into()),
    };
    let bare =
        PatientRow { id: 40002, last_updated_micros: at, telecom_phone: Some("555".into()), ..PatientRow::default() };
    let cases: Vec<(String, Value)> = vec![
        (
            ordered(&patient(&peter)),
            json!({
                "id": "40001",
                "identifier": [{"system": "urn:oid:1.2.3.4", "value": "E1234"}],
                "meta": meta(),
                "name": [{"family": "Patient", "given": ["Peter"]}],
                "birthDate": "1955-01-01",
                "telecom": [{"system": "email", "value": "peter@example.com", "use": "home"}],
                "resourceType": "Patient"
            }),
        ),
        (
            ordered(&patient(&bare)),
            json!({
                "id": "40002",
                "meta": meta(),
                "telecom": [{"system": "phone", "value": "555", "use": "mobile"}],
                "resourceType": "Patient"
            }),
        ),
        (
            ordered(&group(&StudyRow { id: 30001, last_updated_micros: at, name: "Lifespan".into() })),
            json!({"id": "30001", "membership": "enumerated", "meta": meta(), "name": "Lifespan", "type": model_type("study"), "resourceType": "Group"}),
        ),
        (
            ordered(&organization(&OrganizationRow { id: 0, last_updated_micros: at, name: "ROOT".into() })),
            json!({"id": "0", "meta": meta(), "name": "ROOT", "type": model_type("organization"), "resourceType": "Organization"}),
        ),
        (
            ordered(&practitioner(&PractitionerRow {
                id: 80001,
                last_updated_micros: at,
                name_family: "Mary".into(),
                name_given: String::new(),
            })),
            json!({"id": "80001", "meta": meta(), "name": [{"family": "Mary"}], "resourceType": "Practitioner"}),
        ),
        (
            ordered(&device(&DataSourceRow { id: 70001, last_updated_micros: at, name: Some("CareX".into()) })),
            json!({"id": "70001", "meta": meta(), "name": "CareX", "type": model_type("data-source"), "resourceType": "Device"}),
        ),
        (
            ordered(&device(&DataSourceRow { id: 70002, last_updated_micros: at, name: None })),
            json!({"id": "70002", "meta": meta(), "type": model_type("data-source"), "resourceType": "Device"}),
        ),
    ];
    for (rendered, expected) in cases {
        assert_eq!(rendered, expected.to_string());
    }
}

#[test]
fn searchset_links_and_entries() {
    let records = [heart_rate_record(), ObservationRecord { id: 60062, ..heart_rate_record() }];
    let resources: Vec<render::ObservationResource<'_>> = records.iter().map(|r| observation(r, None)).collect();
    let base = "https://jhe.example.org/FHIR/R5/Observation";
    let first_page = SearchsetLinks {
        self_url: format!("{base}?_count=2&patient=40018"),
        previous: None,
        next: Some(format!("{base}?_count=2&_page=2&patient=40018")),
    };
    let bundle = serde_json::to_value(searchset(3, &resources, &first_page)).unwrap();
    let keys: Vec<&str> = bundle.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["resourceType", "type", "total", "entry", "link", "meta"]);
    assert_eq!(bundle["total"], 3);
    assert_eq!(bundle["meta"], json!({}));
    assert_eq!(bundle["entry"][1]["resource"]["id"], "60062");
    assert_eq!(bundle["entry"][0].as_object().unwrap().len(), 1, "no fullUrl");
    assert_eq!(
        bundle["link"],
        json!([
            {"relation": "self", "url": format!("{base}?_count=2&patient=40018")},
            {"relation": "next", "url": format!("{base}?_count=2&_page=2&patient=40018")}
        ])
    );

    let last_page = SearchsetLinks {
        self_url: format!("{base}?_count=2&_page=2&patient=40018"),
        previous: Some(format!("{base}?_count=2&patient=40018")),
        next: None,
    };
    let bundle = serde_json::to_value(searchset(3, &resources[..1], &last_page)).unwrap();
    let relations: Vec<&str> =
        bundle["link"].as_array().unwrap().iter().map(|l| l["relation"].as_str().unwrap()).collect();
    assert_eq!(relations, ["self", "previous"]);

    let empty: [render::ObservationResource<'_>; 0] = [];
    let links = SearchsetLinks { self_url: base.into(), ..SearchsetLinks::default() };
    assert_eq!(
        ordered(&searchset(0, &empty, &links)),
        json!({"resourceType": "Bundle", "type": "searchset", "total": 0, "entry": [], "link": [{"relation": "self", "url": base}], "meta": {}}).to_string()
    );
    assert_eq!(
        ordered(&summary_count(7, base)),
        json!({"resourceType": "Bundle", "type": "searchset", "total": 7, "entry": [], "link": [{"relation": "self", "url": base}], "meta": {}}).to_string()
    );
}

#[test]
fn batch_response_entries() {
    let results = [
        BatchEntryResult::Created { id: "60061".into() },
        BatchEntryResult::Failed { status: 409, diagnostics: "Identifier already exists".into() },
        BatchEntryResult::Failed { status: 422, diagnostics: "omh_data: invalid".into() },
    ];
    let outcome = |message: &str| json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing", "diagnostics": message}]});
    assert_eq!(
        ordered(&batch_response(&results)),
        json!({
            "resourceType": "Bundle",
            "type": "batch-response",
            "entry": [
                {"resource": {"resourceType": "Resource", "id": "60061"}, "response": {"status": "201 Created"}},
                {"response": {"status": "409 Conflict", "outcome": outcome("Identifier already exists")}},
                {"response": {"status": "422 Unprocessable Entity", "outcome": outcome("omh_data: invalid")}}
            ]
        })
        .to_string()
    );
    assert_eq!(ordered(&batch_response(&[])), json!({"resourceType": "Bundle", "type": "batch-response"}).to_string());
    assert_eq!(status_line(403), "403 Forbidden");
    assert_eq!(status_line(400), "400 Bad Request");
    assert_eq!(status_line(599), "599");
}
