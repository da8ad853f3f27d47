//! Example data points built by the tests themselves, one per type the reference's examples cover (blood glucose,
//! blood pressure, body temperature, heart rate, oxygen saturation, respiratory rate, RR interval), shaped as the
//! reference writes them: a full header with a manufacturer datasheet and a body with an effective `date_time`.
#![allow(dead_code, unreachable_pub)]

use serde_json::{Value, json};

/// The examples as (file name, data point), e.g. `omh_heart-rate_2-0.json`.
pub fn example_data_points() -> Vec<(String, Value)> {
    let measures = [
        ("blood-glucose", "4.0", json!({"blood_glucose": {"unit": "mg/dL", "value": 129}})),
        (
            "blood-pressure",
            "4.0",
            json!({
                "systolic_blood_pressure": {"value": 115, "unit": "mmHg"},
                "diastolic_blood_pressure": {"value": 60, "unit": "mmHg"},
            }),
        ),
        (
            "body-temperature",
            "4.0",
            json!({"body_temperature": {"value": 97, "unit": "F"}, "measurement_location": "forehead"}),
        ),
        ("heart-rate", "2.0", json!({"heart_rate": {"value": 67.5, "unit": "beats/min"}})),
        ("oxygen-saturation", "2.0", json!({"oxygen_saturation": {"value": 95, "unit": "%"}})),
        ("respiratory-rate", "2.0", json!({"respiratory_rate": {"value": 12, "unit": "breaths/min"}})),
        ("rr-interval", "1.0", json!({"rr_interval": {"value": 30, "unit": "ms"}})),
    ];
    measures
        .into_iter()
        .zip(1..)
        .map(|((name, version, mut body), minute)| {
            body["effective_time_frame"] = json!({"date_time": format!("2025-01-01T00:{minute:02}:00-08:00")});
            let point = json!({
                "header": {
                    "uuid": format!("aaaa1234-1a2b-3c4d-5e6f-{minute:012}"),
                    "schema_id": {"name": name, "version": version, "namespace": "omh"},
                    "source_creation_date_time": format!("2025-01-01T01:{minute:02}:01-08:00"),
                    "modality": "sensed",
                    "external_datasheets": [{"datasheet_type": "manufacturer", "datasheet_reference": "iHealth"}],
                },
                "body": body,
            });
            (format!("omh_{name}_{}.json", version.replace('.', "-")), point)
        })
        .collect()
}

/// The examples as their files hold them (pretty-printed JSON).
pub fn example_files() -> Vec<(String, Vec<u8>)> {
    example_data_points()
        .into_iter()
        .map(|(name, point)| (name, serde_json::to_vec_pretty(&point).expect("a JSON value serializes")))
        .collect()
}
