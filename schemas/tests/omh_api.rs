//! The public validation API: messages, derived time and values, headerless bodies, extra schemas.

use jhe_schemas::omh::{DataPointError, LoadError, SchemaId, ValidationError, Validators};
use serde_json::json;

fn point(schema: &str, body: serde_json::Value) -> Vec<u8> {
    let id: SchemaId = schema.parse().unwrap();
    serde_json::to_vec(&json!({
        "header": {
            "uuid": "aaaa1234-1a2b-3c4d-5e6f-000000000002",
            "schema_id": {"namespace": id.namespace, "name": id.name, "version": id.version},
            "source_creation_date_time": "2025-01-01T01:04:01-08:00",
            "modality": "sensed"
        },
        "body": body
    }))
    .unwrap()
}

fn errors(result: Result<impl std::fmt::Debug, DataPointError>) -> Vec<String> {
    match result {
        Err(DataPointError::Invalid(errors)) => errors.iter().map(ValidationError::to_string).collect(),
        other => panic!("expected validation errors, got {other:?}"),
    }
}

fn micros(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_micros()
}

#[test]
fn errors_name_the_path_and_the_rule() {
    let validators = Validators::builtin();
    let bad_unit = point(
        "omh:heart-rate:2.0",
        json!({"heart_rate": {"value": 60, "unit": "bpm"}, "effective_time_frame": {"date_time": "2025-01-01T00:00:00Z"}}),
    );
    assert_eq!(errors(validators.validate_data_point(&bad_unit)), [r#"body.heart_rate.unit: expected "beats/min""#]);

    let mut no_version: serde_json::Value = serde_json::from_slice(&bad_unit).unwrap();
    no_version["header"]["schema_id"].as_object_mut().unwrap().remove("version");
    no_version["header"]["modality"] = json!("guessed");
    assert_eq!(
        errors(validators.validate_data_point(&serde_json::to_vec(&no_version).unwrap())),
        [
            r#"header.schema_id.version: required property is missing"#,
            r#"header.modality: expected one of "sensed", "self-reported""#
        ]
    );

    let glucose = point(
        "omh:blood-glucose:4.0",
        json!({"blood_glucose": {"value": "129", "unit": "MGDL"}, "temporal_relationship_to_meal": "unknown", "effective_time_frame": {"date_time": "2025-01-01T00:00:00"}}),
    );
    assert_eq!(
        errors(validators.validate_data_point(&glucose)),
        [
            "body.blood_glucose.value: expected a number, found a string",
            r#"body.blood_glucose.unit: expected one of "mg/dL", "mmol/L""#,
            "body.effective_time_frame.date_time: expected an RFC 3339 date-time with an offset, e.g. 2025-01-01T00:04:00-08:00",
            r#"body.temporal_relationship_to_meal: expected one of "fasting", "not fasting", "before meal", "after meal", "before breakfast", "after breakfast", "before lunch", "after lunch", "before dinner", "after dinner", "2 hours postprandial", "with meal", ... (13 values)"#,
        ]
    );

    let both = point(
        "omh:heart-rate:2.0",
        json!({"heart_rate": {"value": 60, "unit": "beats/min"}, "effective_time_frame": {"time_interval": {"start_date_time": "2025-01-01T00:00:00Z", "end_date_time": "2025-01-01T01:00:00Z", "duration": {"value": 1, "unit": "h"}}}}),
    );
    assert_eq!(
        errors(validators.validate_data_point(&both)),
        [
            "body.effective_time_frame.time_interval: expected exactly one of {start_date_time, duration} | {end_date_time, duration} | {start_date_time, end_date_time} | {date, part_of_day}, but it matches 3 of them ({start_date_time, duration} | {end_date_time, duration} | {start_date_time, end_date_time})"
        ]
    );
    let neither = point(
        "omh:heart-rate:2.0",
        json!({"heart_rate": {"value": 60, "unit": "beats/min"}, "effective_time_frame": {}}),
    );
    assert_eq!(
        errors(validators.validate_data_point(&neither)),
        ["body.effective_time_frame: expected exactly one of {date_time} | {time_interval} (oneOf)"]
    );

    let unknown = point("omh:heart-beat:9.0", json!({}));
    assert_eq!(
        validators.validate_data_point(&unknown).unwrap_err().to_string(),
        "header.schema_id: unknown data type omh:heart-beat:9.0 (no builtin or extra schema has this code)"
    );
    assert_eq!(
        validators.validate_data_point(b"{\"header\": ").unwrap_err().to_string(),
        "invalid JSON at line 1 column 12: unexpected end of input"
    );
}

#[test]
fn data_points_yield_time_and_values() {
    let validators = Validators::builtin();
    let interval = point(
        "omh:step-count:3.0",
        json!({"step_count": {"value": 1200, "unit": "steps"}, "effective_time_frame": {"time_interval": {"start_date_time": "2025-01-01T08:00:00+01:00", "duration": {"value": 30, "unit": "min"}}}}),
    );
    let steps = validators.validate_data_point(&interval).unwrap();
    assert_eq!(steps.coding_code, "omh:step-count:3.0");
    assert_eq!(
        (steps.effective.start_micros, steps.effective.end_micros),
        (micros("2025-01-01T07:00:00Z"), Some(micros("2025-01-01T07:30:00Z")))
    );
    assert_eq!((steps.values.value, steps.values.unit.as_deref()), (Some(1200.0), Some("steps")));

    // heart-rate 1.0 needs no time frame: the header's creation time stands in
    let untimed = point("omh:heart-rate:1.0", json!({"heart_rate": {"value": 61, "unit": "beats/min"}}));
    let heart = validators.validate_data_point(&untimed).unwrap();
    assert_eq!((heart.effective.start_micros, heart.effective.end_micros), (micros("2025-01-01T01:04:01-08:00"), None));

    let sleep = point(
        "ieee:sleep-stage-summary:1.0",
        json!({"sleep_stage_summary": {"total_sleep_time": {"value": 400, "unit": "min"}}, "effective_time_frame": {"time_interval": {"end_date_time": "2025-01-02T07:00:00Z", "duration": {"value": 8, "unit": "h"}}}}),
    );
    let sleep = validators.validate_data_point(&sleep).unwrap();
    assert_eq!(sleep.coding_system, "https://w3id.org/ieee1752");
    assert_eq!(sleep.effective.start_micros, micros("2025-01-01T23:00:00Z"));
    assert_eq!((sleep.values.value, sleep.values.unit.as_deref()), (Some(400.0), Some("min")));

    // JSON Schema sees the last of duplicate keys
    let duplicated = br#"{"header":{"uuid":"x","schema_id":{"namespace":"omh","name":"heart-rate","version":"2.0"},"source_creation_date_time":"2025-01-01T00:00:00Z"},
        "body":{"heart_rate":{"value":"bad"},"heart_rate":{"value":70,"unit":"beats/min"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00Z"}}}"#;
    assert_eq!(validators.validate_data_point(duplicated).unwrap().values.value, Some(70.0));
}

#[test]
fn headerless_bodies_with_a_code() {
    let validators = Validators::builtin();
    let code: SchemaId = "omh:body-weight:3.0".parse().unwrap();
    let body =
        br#"{"body_weight":{"value":70.5,"unit":"kg"},"effective_time_frame":{"date_time":"2025-01-01T00:00:00Z"}}"#;
    let weight = validators.validate_data_point_as(body, &code).unwrap();
    assert_eq!((weight.values.value, weight.values.unit.as_deref()), (Some(70.5), Some("kg")));
    assert!(validators.validate_body(&code, body).is_ok());
    assert!(validators.validate_body_value(&code, &serde_json::from_slice(body).unwrap()).is_ok());
    let untimed: SchemaId = "omh:heart-rate:1.0".parse().unwrap();
    let no_time = br#"{"heart_rate":{"value":61,"unit":"beats/min"}}"#;
    assert_eq!(validators.validate_data_point_as(no_time, &untimed), Err(DataPointError::NoEffectiveTime));
    assert_eq!(validators.validate_document(no_time, Some(&untimed)), Ok(()));
}

const EXTRA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "$id": "https://example.org/schemas/acme/glucose-ketone-index-1.0.json",
  "type": "object",
  "properties": {
    "glucose_ketone_index": {"$ref": "https://w3id.org/ieee/ieee-1752-schema/unit-value-1.0.json"},
    "effective_time_frame": {"$ref": "https://w3id.org/ieee/ieee-1752-schema/time-frame-1.0.json"},
    "device": {"$ref": "device-1.0.json"}
  },
  "required": ["glucose_ketone_index", "effective_time_frame"]
}"#;

const DEVICE: &str =
    r#"{"$id": "https://example.org/schemas/acme/device-1.0.json", "type": "string", "enum": ["meter"]}"#;

#[test]
fn validators_are_shared_across_threads() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    shareable::<Validators>();
}

#[test]
fn extra_schemas_answer_to_their_id() {
    let schemas = vec![serde_json::from_str(EXTRA).unwrap(), serde_json::from_str(DEVICE).unwrap()];
    let validators = Validators::with_extra_schemas(schemas).unwrap();
    let codes: Vec<String> = validators.codes().iter().map(ToString::to_string).collect();
    assert!(
        codes.contains(&"acme:glucose-ketone-index:1.0".to_owned()) && codes.contains(&"omh:heart-rate:2.0".to_owned())
    );

    let good = point(
        "acme:glucose-ketone-index:1.0",
        json!({"glucose_ketone_index": {"value": 1.5, "unit": "GKI"}, "device": "meter", "effective_time_frame": {"date_time": "2025-01-01T00:00:00Z"}}),
    );
    let validated = validators.validate_data_point(&good).unwrap();
    assert_eq!(validated.coding_system, "https://w3id.org/openmhealth");
    assert_eq!((validated.values.value, validated.values.unit.as_deref()), (Some(1.5), Some("GKI")));

    let bad = point(
        "acme:glucose-ketone-index:1.0",
        json!({"glucose_ketone_index": {"value": 1.5}, "device": "phone", "effective_time_frame": {"date_time": "2025-01-01T00:00:00"}}),
    );
    let messages = errors(validators.validate_data_point(&bad));
    let paths: Vec<&str> = messages.iter().map(|m| m.split(':').next().unwrap()).collect();
    assert!(paths.contains(&"body.glucose_ketone_index") && paths.contains(&"body.device"), "{messages:?}");
    assert!(
        paths.iter().any(|p| p.starts_with("body.effective_time_frame")),
        "date-time is asserted for extras too: {messages:?}"
    );
    assert!(Validators::builtin().validate_data_point(&good).is_err(), "the builtin set does not know the site code");
}

#[test]
fn extra_schemas_that_cannot_load() {
    let load = |schemas: Vec<&str>| {
        Validators::with_extra_schemas(schemas.iter().map(|s| serde_json::from_str(s).unwrap()).collect())
    };
    assert_eq!(load(vec![r#"{"type": "object"}"#]).unwrap_err(), LoadError::MissingId { index: 0 });
    assert!(matches!(
        load(vec![r#"{"$id": "https://example.org/acme/glucose.json"}"#]),
        Err(LoadError::UncodedId { .. })
    ));
    assert!(matches!(
        load(vec![r#"{"$id": "https://w3id.org/openmhealth/schemas/omh/heart-rate-2.0.json"}"#]),
        Err(LoadError::ShadowsBuiltin { .. })
    ));
    assert!(matches!(load(vec![DEVICE, DEVICE]), Err(LoadError::Duplicate { .. })));
    let unresolvable = load(vec![EXTRA]).unwrap_err();
    assert!(unresolvable.to_string().contains("device-1.0.json"), "{unresolvable}");
}
