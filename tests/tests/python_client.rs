//! The real Python `jupyterhealth-client` (from PyPI) against a real jhe server: its REST methods must work
//! unchanged. `scripts/setup` makes the virtual environment; `JHE_PYTHON` overrides the interpreter.

use jhe_tests::omh::{self, BLOOD_PRESSURE, HEART_RATE};
use jhe_tests::{ALL_ROLES, TestDatabase, TestServer, embedded_pipeline, seeded};
use serde_json::{Value, json};

fn python() -> String {
    jhe_tests::python().unwrap_or_else(|| "python3".to_owned())
}

#[tokio::test]
async fn jupyterhealth_client_rest_methods_work_unchanged() {
    let server = TestServer::start().await.unwrap();
    let token = server.token(seeded::MARY).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/client_rest.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .env("JHE_URL", &server.base)
        .env("JHE_TOKEN", &token)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {} (run scripts/setup to create the venv): {e}", python()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "client script failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("jupyterhealth-client REST contract: ok"), "{stdout}");
}

/// A heart-rate 2.0 data point whose header also names a datasheet, as the data point §11.4 of the spec was verified
/// with, so the DataFrame columns can be compared with the reference's list one for one.
fn heart_rate_with_datasheet(uuid: &str, minute: u32, bpm: f64) -> Value {
    let mut point = omh::heart_rate(uuid, minute, bpm);
    point["header"]["external_datasheets"] =
        json!([{"datasheet_type": "manufacturer", "datasheet_reference": "https://example.org/carex-datasheet"}]);
    point
}

fn blood_pressure(uuid: &str, minute: u32) -> Value {
    let (hour, minute) = (minute / 60 % 24, minute % 60);
    json!({
        "header": {
            "uuid": uuid,
            "schema_id": {"namespace": "omh", "name": "blood-pressure", "version": "4.0"},
            "source_creation_date_time": "2025-01-01T01:04:01-08:00",
            "modality": "sensed"
        },
        "body": {
            "systolic_blood_pressure": {"value": 120 + minute % 10, "unit": "mmHg"},
            "diastolic_blood_pressure": {"value": 80, "unit": "mmHg"},
            "effective_time_frame": {"date_time": format!("2025-01-01T{hour:02}:{minute:02}:00-08:00")}
        }
    })
}

/// Uploads `points` as `patient` in Bundles of at most 500 and returns how many were accepted.
async fn upload(server: &TestServer, token: &str, patient: i64, device: i64, points: Vec<(&str, Value)>) -> usize {
    let mut accepted = 0;
    let observations: Vec<Value> = points
        .into_iter()
        .map(|(code, point)| {
            let uuid = point["header"]["uuid"].as_str().unwrap().to_owned();
            omh::observation(patient, device, code, &point, Some(&uuid))
        })
        .collect();
    for chunk in observations.chunks(500) {
        let answer = server.post("/FHIR/R5/", token, omh::bundle(chunk.to_vec())).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        for entry in answer.body["entry"].as_array().unwrap() {
            assert_eq!(entry["response"]["status"], "201 Created", "{entry}");
            accepted += 1;
        }
    }
    accepted
}

async fn run_script(script: &str, server: &TestServer, token: &str, args: &[String]) -> String {
    let output = tokio::process::Command::new(python())
        .arg(script)
        .args(args)
        .env("JHE_URL", &server.base)
        .env("JHE_TOKEN", token)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {} (run scripts/setup to create the venv): {e}", python()));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "client script {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    stdout
}

/// The client's FHIR side (list_observations[_df], get_fhir, list_fhir, the capability statement) over data that
/// went through the real pipeline; a consent revoked between two runs hides the data from the next one.
#[tokio::test]
async fn jupyterhealth_client_fhir_methods_work_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir.path()), ALL_ROLES).await.unwrap();
    let (peter, pamela) = (server.patient_id(seeded::PETER).await, server.patient_id(seeded::PAMELA).await);
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let both_study = server.id_of("studies", "name", "Lifespan Study on BP & HR").await;
    let bp_study = server.id_of("studies", "name", "Lifespan Study on BP").await;

    // Peter: 30 heart rate + 5 blood pressure; Pamela: 2,500 heart rate (three pages at the client's _count=1000)
    // and 3 blood pressure.
    let mut points: Vec<(&str, Value)> = (0..30)
        .map(|m| (HEART_RATE, heart_rate_with_datasheet(&format!("peter-hr-{m}"), m, 60.0 + f64::from(m))))
        .collect();
    points.extend((0..5).map(|m| (BLOOD_PRESSURE, blood_pressure(&format!("peter-bp-{m}"), m * 60))));
    let peter_token = server.token(seeded::PETER).await;
    assert_eq!(upload(&server, &peter_token, peter, carex, points).await, 35);
    let mut points: Vec<(&str, Value)> =
        (0..2500).map(|m| (HEART_RATE, omh::heart_rate(&format!("pamela-hr-{m}"), m, 70.0))).collect();
    points.extend((0..3).map(|m| (BLOOD_PRESSURE, blood_pressure(&format!("pamela-bp-{m}"), m * 60))));
    let pamela_token = server.token(seeded::PAMELA).await;
    assert_eq!(upload(&server, &pamela_token, pamela, carex, points).await, 2503);
    let published = server.wait_for_published_rows(2538, std::time::Duration::from_secs(60)).await;
    assert_eq!(published, 2538, "every upload is published once");

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/client_fhir.py");
    let token = server.token(seeded::MARY).await;
    let ids = |phase: &str| {
        vec![phase.to_owned(), peter.to_string(), pamela.to_string(), both_study.to_string(), bp_study.to_string()]
    };
    let stdout = run_script(script, &server, &token, &ids("before")).await;
    assert!(stdout.contains("jupyterhealth-client FHIR contract (before): ok"), "{stdout}");

    // Peter withdraws heart rate from the study: the very next read no longer shows it.
    let revoke = json!({"studyScopeConsents": [{"studyId": both_study,
        "scopeConsents": [{"codingSystem": omh::SYSTEM, "codingCode": HEART_RATE, "consented": false}]}]});
    let answer = server.patch(&format!("/api/v1/patients/{peter}/consents"), &peter_token, revoke).await;
    assert!(answer.status < 300, "{:?}", answer.body);
    let stdout = run_script(script, &server, &token, &ids("after-revoke")).await;
    assert!(stdout.contains("jupyterhealth-client FHIR contract (after-revoke): ok"), "{stdout}");
}
