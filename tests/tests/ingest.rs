//! Uploads (`POST /FHIR/R5/Observation`, batch Bundles, NDJSON): the checks of jhe-compat §6.7 in the reference's
//! order and statuses, on the embedded pipeline.

use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{ALL_ROLES, TestDatabase, TestServer, embedded_pipeline, seeded};
use serde_json::{Value, json};

struct Fixture {
    server: TestServer,
    _dir: tempfile::TempDir,
    peter: i64,
    pamela: i64,
    carex: i64,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir.path()), ALL_ROLES).await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let pamela = patient(&server, seeded::PAMELA).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    Fixture { server, _dir: dir, peter, pamela, carex }
}

async fn patient(server: &TestServer, email: &str) -> i64 {
    let user = server.id_of("users", "email", email).await;
    server.id_of("patients", "user_id::text", &user.to_string()).await
}

fn diagnostics(body: &Value) -> String {
    body["issue"][0]["diagnostics"].as_str().unwrap_or_default().to_owned()
}

fn valid(f: &Fixture, identifier: Option<&str>) -> Value {
    omh::observation(f.peter, f.carex, HEART_RATE, &omh::heart_rate("u-1", 4, 67.5), identifier)
}

#[tokio::test]
async fn a_patient_uploads_one_observation_and_gets_the_short_body() {
    let f = fixture().await;
    let token = f.server.token(seeded::PETER).await;
    let answer = f.server.post("/FHIR/R5/Observation", &token, valid(&f, Some("a-1"))).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.body["resourceType"], "Observation");
    assert_eq!(answer.body["status"], "final");
    assert_eq!(answer.body["subject"]["reference"], format!("Patient/{}", f.peter));
    let id: i64 = answer.body["id"].as_str().unwrap().parse().unwrap();
    assert!(id > 0);
    assert!(answer.body.get("valueAttachment").is_none(), "patients get the short body");
}

#[tokio::test]
async fn a_practitioner_gets_the_full_observation() {
    let f = fixture().await;
    let token = f.server.token(seeded::MARY).await;
    let answer = f.server.post("/FHIR/R5/Observation", &token, valid(&f, None)).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(answer.body["code"]["coding"][0]["code"], HEART_RATE);
    assert_eq!(answer.body["device"]["reference"], format!("Device/{}", f.carex));
    assert_eq!(answer.body["effectiveDateTime"], "2025-01-01T08:04:00Z");
    let data = answer.body["valueAttachment"]["data"].as_str().unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(data).unwrap();
    let point: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(point["body"]["effective_time_frame"]["date_time"], "2025-01-01T00:04:00-08:00", "offset kept");
}

#[tokio::test]
async fn single_upload_checks_run_in_the_reference_order_with_its_statuses() {
    let f = fixture().await;
    let peter = f.server.token(seeded::PETER).await;
    let mark = f.server.token(seeded::MARK).await; // a practitioner outside Peter's organization
    let post = |token: String, body: Value| {
        let server = &f.server;
        async move { server.post("/FHIR/R5/Observation", &token, body).await }
    };

    let unknown_patient = omh::observation(999_999, f.carex, HEART_RATE, &omh::heart_rate("u", 1, 60.0), None);
    let answer = post(peter.clone(), unknown_patient).await;
    assert_eq!((answer.status, diagnostics(&answer.body)), (400, "Patient id=999999 can not be found.".to_owned()));
    assert_eq!(answer.body["resourceType"], "OperationOutcome");

    let answer = post(mark.clone(), valid(&f, None)).await;
    assert_eq!(
        (answer.status, diagnostics(&answer.body)),
        (403, "Current user doesn't have access to the Patient.".into())
    );

    let for_pamela = omh::observation(f.pamela, f.carex, HEART_RATE, &omh::heart_rate("u", 1, 60.0), None);
    let answer = post(peter.clone(), for_pamela).await;
    assert_eq!(
        (answer.status, diagnostics(&answer.body)),
        (403, "The Subject Patient does not match the current user.".into())
    );

    let mut no_device = valid(&f, None);
    no_device["device"] = json!({"reference": "Device/999999"});
    let answer = post(peter.clone(), no_device).await;
    assert_eq!(
        (answer.status, diagnostics(&answer.body)),
        (400, "Device Data Source id=999999 can not be found.".into())
    );

    let answer = post(peter.clone(), valid(&f, Some("dup-1"))).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    // step 5 comes before the code and OMH checks: a duplicate with a broken body is still a 409
    let mut duplicate = valid(&f, Some("dup-1"));
    duplicate["valueAttachment"]["data"] = json!("not base64!");
    let answer = post(peter.clone(), duplicate).await;
    assert_eq!(answer.status, 409, "{:?}", answer.body);
    assert_eq!(
        diagnostics(&answer.body),
        "Identifier already exists: system=https://example.org/test-uuid value=dup-1"
    );

    let mut unknown_code = valid(&f, None);
    unknown_code["code"]["coding"][0]["code"] = json!("omh:no-such-thing:1.0");
    let answer = post(peter.clone(), unknown_code).await;
    assert_eq!(answer.status, 400);
    assert_eq!(
        diagnostics(&answer.body),
        "Code not found: system=https://w3id.org/openmhealth code=omh:no-such-thing:1.0"
    );

    let mut not_consented = valid(&f, None);
    not_consented["code"]["coding"][0]["code"] = json!("omh:blood-glucose:4.0");
    let answer = post(peter.clone(), not_consented).await;
    assert_eq!(answer.status, 403);
    assert!(diagnostics(&answer.body).ends_with("has not been consented for any studies by this Patient."));

    let mut not_base64 = valid(&f, None);
    not_base64["valueAttachment"]["data"] = json!("%%%");
    let answer = post(peter.clone(), not_base64).await;
    assert_eq!(answer.status, 400);
    assert!(diagnostics(&answer.body).contains("valueAttachment.data must be Base 64 Encoded Binary JSON"));

    let mut wrong_unit = omh::heart_rate("u", 1, 60.0);
    wrong_unit["body"]["heart_rate"]["unit"] = json!("bpm");
    let answer = post(peter.clone(), omh::observation(f.peter, f.carex, HEART_RATE, &wrong_unit, None)).await;
    assert_eq!(answer.status, 422, "{:?}", answer.body);
    assert!(diagnostics(&answer.body).contains("body.heart_rate.unit"), "{}", diagnostics(&answer.body));

    let answer = f.server.send_bytes("/FHIR/R5/Observation", &peter, "application/json", b"{not json".to_vec()).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["resourceType"], "OperationOutcome");

    let answer = f.server.request("POST", "/FHIR/R5/Observation", None, Some(valid(&f, None))).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.body["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn batch_entries_answer_on_their_own_in_order() {
    let f = fixture().await;
    let token = f.server.token(seeded::PETER).await;
    let mut wrong_unit = omh::heart_rate("u", 1, 60.0);
    wrong_unit["body"]["heart_rate"]["unit"] = json!("bpm");
    let entries = vec![
        valid(&f, Some("b-1")),
        omh::observation(f.peter, f.carex, HEART_RATE, &wrong_unit, None),
        valid(&f, Some("b-1")), // the same identifier again within the batch: the first one wins
        omh::observation(f.pamela, f.carex, HEART_RATE, &omh::heart_rate("u", 2, 61.0), None),
        valid(&f, Some("b-2")),
    ];
    let answer = f.server.post("/FHIR/R5/", &token, omh::bundle(entries)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["type"], "batch-response");
    let statuses: Vec<&str> =
        answer.body["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201 Created", "422 Unprocessable Entity", "409 Conflict", "403 Forbidden", "201 Created"]);
    assert_eq!(answer.body["entry"][0]["resource"]["resourceType"], "Resource");
    assert!(answer.body["entry"][1]["response"]["outcome"]["issue"][0]["diagnostics"].is_string());

    // the pre-check: one entry without attachment data refuses the whole Bundle with DRF's list body
    let mut missing = valid(&f, None);
    missing["valueAttachment"].as_object_mut().unwrap().remove("data");
    let answer = f.server.post("/FHIR/R5/", &token, omh::bundle(vec![valid(&f, None), missing])).await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body, json!(["resource.valueAttachment.data must be not null."]));
}

#[tokio::test]
async fn ndjson_bulk_upload_reports_every_line() {
    let f = fixture().await;
    let token = f.server.token(seeded::MARY).await;
    let mut lines = Vec::new();
    for i in 0..200 {
        let point = omh::heart_rate(&format!("n-{i}"), i, 60.0 + f64::from(i % 40));
        lines.push(omh::observation(f.peter, f.carex, HEART_RATE, &point, Some(&format!("n-{i}"))).to_string());
    }
    lines.insert(10, "{broken".to_owned());
    lines.insert(20, String::new());
    let body = lines.join("\n").into_bytes();
    let answer =
        f.server.send_bytes("/FHIR/R5/Observation/$bulk-upload", &token, "application/fhir+ndjson", body).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["received"], 201);
    assert_eq!(answer.body["accepted"], 200);
    assert_eq!(answer.body["rejected"], 1);
    assert_eq!(answer.body["errors"][0]["line"], 11);
    assert_eq!(answer.body["errors"][0]["status"], 400);
    let ids = answer.body["ids"].as_array().unwrap();
    assert_eq!(ids.len(), 201);
    assert!(ids[10].is_null());
}

#[tokio::test]
async fn a_revoked_consent_stops_uploads_within_a_second() {
    let f = fixture().await;
    let token = f.server.token(seeded::PETER).await;
    assert_eq!(f.server.post("/FHIR/R5/Observation", &token, valid(&f, None)).await.status, 201);
    let study = f.server.id_of("studies", "name", "Lifespan Study on BP & HR").await;
    let revoke = json!({"studyScopeConsents": [{"studyId": study,
        "scopeConsents": [{"codingSystem": omh::SYSTEM, "codingCode": HEART_RATE, "consented": false}]}]});
    let answer = f.server.patch(&format!("/api/v1/patients/{}/consents", f.peter), &token, revoke).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let answer = f.server.post("/FHIR/R5/Observation", &token, valid(&f, None)).await;
    assert_eq!(answer.status, 403, "{:?}", answer.body);
}

#[tokio::test]
async fn id_allocators_never_hand_out_the_same_id() {
    let db = TestDatabase::create(false).await.unwrap();
    let first = jhe_ingest::IdAllocator::new(db.pool.clone());
    let second = jhe_ingest::IdAllocator::new(db.pool.clone());
    let mut seen = std::collections::HashSet::new();
    for round in 0..50 {
        let count = 1 + (round * 997) % 40_000;
        for allocator in [&first, &second] {
            let start = allocator.allocate(count).await.unwrap();
            for id in start..start + count as i64 {
                assert!(id > 0 && seen.insert(id), "id {id} handed out twice");
            }
        }
    }
}
