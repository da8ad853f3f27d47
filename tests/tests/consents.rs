//! `/api/v1/patients/{id}/consents`: the consent view, consent writes, and who may do what.

use jhe_tests::{TestServer, seeded};
use serde_json::{Value, json};

const BP_HR_STUDY: &str = "Lifespan Study on BP & HR";
const BP_STUDY: &str = "Lifespan Study on BP";
const OMH: &str = "https://w3id.org/openmhealth";
const FHIR_TYPES: &str = "http://hl7.org/fhir/resource-types";

async fn patient(server: &TestServer, email: &str) -> i64 {
    let user = server.id_of("users", "email", email).await;
    server.id_of("patients", "user_id::text", &user.to_string()).await
}

async fn study(server: &TestServer, name: &str) -> i64 {
    server.id_of("studies", "name", name).await
}

fn consents_path(patient_id: i64) -> String {
    format!("/api/v1/patients/{patient_id}/consents")
}

/// A camelCase write body for one code of one study.
fn one_code(study_id: i64, system: &str, code: &str, consented: bool) -> Value {
    json!({"studyScopeConsents": [{"studyId": study_id,
        "scopeConsents": [{"codingSystem": system, "codingCode": code, "consented": consented}]}]})
}

fn codes(list: &Value) -> Vec<&str> {
    list.as_array().unwrap().iter().map(|c| c["code"]["codingCode"].as_str().unwrap()).collect()
}

fn is_utc_datetime(value: &Value) -> bool {
    value.as_str().is_some_and(|text| text.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(text).is_ok())
}

#[tokio::test]
async fn peter_sees_his_consented_and_pending_studies() {
    let server = TestServer::start().await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let bp_hr = study(&server, BP_HR_STUDY).await;
    let bp = study(&server, BP_STUDY).await;
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await;
    let token = server.token(seeded::PETER).await;

    let view = server.get(&consents_path(peter), &token).await;
    assert_eq!(view.status, 200, "{:?}", view.body);
    let body = &view.body;
    let mut top: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    top.sort_unstable();
    assert_eq!(top, ["consolidatedConsentedScopes", "patient", "studies", "studiesPendingConsent"]);
    assert_eq!(body["patient"]["id"], peter);
    assert_eq!(body["patient"]["telecomEmail"], seeded::PETER);

    let consolidated: Vec<&str> = body["consolidatedConsentedScopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["codingCode"].as_str().unwrap())
        .collect();
    assert_eq!(consolidated, ["omh:blood-pressure:4.0", "omh:heart-rate:2.0", "QuestionnaireResponse"]);
    assert_eq!(
        body["consolidatedConsentedScopes"][0],
        json!({"id": body["consolidatedConsentedScopes"][0]["id"], "codingSystem": OMH,
               "codingCode": "omh:blood-pressure:4.0", "text": "Blood pressure"})
    );

    // the BP & HR study is fully answered; the BP study is fully pending
    let studies = body["studies"].as_array().unwrap();
    assert_eq!(studies.len(), 1);
    let answered = &studies[0];
    let mut study_keys: Vec<&str> = answered.as_object().unwrap().keys().map(String::as_str).collect();
    study_keys.sort_unstable();
    assert_eq!(study_keys, ["dataSources", "description", "id", "name", "organization", "scopeConsents"]);
    assert_eq!(answered["id"], bp_hr);
    assert_eq!(answered["name"], BP_HR_STUDY);
    assert_eq!(answered["organization"], json!({"id": lifespan, "name": "Lifespan Lab", "type": "laboratory"}));
    assert_eq!(
        codes(&answered["scopeConsents"]),
        ["omh:blood-pressure:4.0", "omh:heart-rate:2.0", "QuestionnaireResponse"]
    );
    for consent in answered["scopeConsents"].as_array().unwrap() {
        assert_eq!(consent["consented"], true);
        assert!(is_utc_datetime(&consent["consentedTime"]), "{}", consent["consentedTime"]);
    }
    let data_sources: Vec<&str> =
        answered["dataSources"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(data_sources, ["CareX", "Questionnaire"]);
    assert_eq!(answered["dataSources"][0]["supportedScopes"][0]["codingCode"], "omh:blood-pressure:4.0");

    let pending = body["studiesPendingConsent"].as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["id"], bp);
    assert!(pending[0].get("scopeConsents").is_none());
    assert_eq!(codes(&pending[0]["pendingScopeConsents"]), ["omh:blood-pressure:4.0", "QuestionnaireResponse"]);
    assert_eq!(pending[0]["pendingScopeConsents"][1]["consented"], Value::Null);
    assert_eq!(pending[0]["pendingScopeConsents"][1]["consentedTime"], Value::Null);
    assert_eq!(pending[0]["pendingScopeConsents"][1]["code"]["codingSystem"], FHIR_TYPES);

    // answering one code of the BP study puts that study in both lists
    let answered_one =
        server.post(&consents_path(peter), &token, one_code(bp, OMH, "omh:blood-pressure:4.0", false)).await;
    assert_eq!(answered_one.status, 201);
    let view = server.get(&consents_path(peter), &token).await;
    let study_ids: Vec<&Value> = view.body["studies"].as_array().unwrap().iter().map(|s| &s["id"]).collect();
    assert_eq!(study_ids, [&json!(bp_hr), &json!(bp)]);
    assert_eq!(codes(&view.body["studies"][1]["scopeConsents"]), ["omh:blood-pressure:4.0"]);
    assert_eq!(view.body["studies"][1]["scopeConsents"][0]["consented"], false);
    assert_eq!(codes(&view.body["studiesPendingConsent"][0]["pendingScopeConsents"]), ["QuestionnaireResponse"]);
}

#[tokio::test]
async fn who_may_read_consents() {
    let server = TestServer::start().await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let path = consents_path(peter);

    for email in [seeded::PETER, seeded::MEGAN, seeded::VICTOR, seeded::TOM, seeded::ADMIN] {
        assert_eq!(server.get(&path, &server.token(email).await).await.status, 200, "{email}");
    }
    let other_patient = server.get(&path, &server.token(seeded::PAMELA).await).await;
    assert_eq!(other_patient.status, 403);
    assert_eq!(other_patient.detail(), "The Patient does not match the current patient user.");
    let other_organization = server.get(&path, &server.token(seeded::MARK).await).await;
    assert_eq!(other_organization.status, 403);
    assert_eq!(other_organization.detail(), "This patient is not in any of your organizations.");
    // an id that does not exist reads exactly like a patient of another organization
    let missing = server.get(&consents_path(999999), &server.token(seeded::MEGAN).await).await;
    assert_eq!((missing.status, missing.detail()), (other_organization.status, other_organization.detail()));
    assert_eq!(server.get("/api/v1/patients/abc/consents", &server.token(seeded::MEGAN).await).await.status, 404);
    for method in ["GET", "POST", "PATCH", "DELETE"] {
        assert_eq!(server.request(method, &path, None, None).await.status, 401, "{method}");
    }
}

#[tokio::test]
async fn revoking_with_patch_shows_as_not_consented() {
    let server = TestServer::start().await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let bp_hr = study(&server, BP_HR_STUDY).await;
    let token = server.token(seeded::PETER).await;
    let before = server.get(&consents_path(peter), &token).await;
    let time_before = before.body["studies"][0]["scopeConsents"][1]["consentedTime"].clone();

    let revoked = server.patch(&consents_path(peter), &token, one_code(bp_hr, OMH, "omh:heart-rate:2.0", false)).await;
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    let row = &revoked.body["studyScopeConsents"][0];
    let study_patient: i64 =
        sqlx::query_scalar("SELECT id FROM study_patients WHERE study_id = $1 AND patient_id = $2")
            .bind(bp_hr)
            .bind(peter)
            .fetch_one(&server.db.pool)
            .await
            .unwrap();
    let heart_rate = server.id_of("codeable_concepts", "coding_code", "omh:heart-rate:2.0").await;
    assert_eq!(
        row,
        &json!({"id": row["id"], "studyPatient": {"id": study_patient, "study": bp_hr, "patient": peter},
                "scopeCode": {"id": heart_rate, "codingSystem": OMH, "codingCode": "omh:heart-rate:2.0", "text": "Heart Rate"},
                "consented": false, "consentedTime": row["consentedTime"]})
    );
    assert!(is_utc_datetime(&row["consentedTime"]));
    assert_ne!(row["consentedTime"], time_before, "consentedTime is set on every write");

    let after = server.get(&consents_path(peter), &token).await;
    let heart = &after.body["studies"][0]["scopeConsents"][1];
    assert_eq!(heart["code"]["codingCode"], "omh:heart-rate:2.0");
    assert_eq!(heart["consented"], false);
    let consolidated: Vec<&str> = after.body["consolidatedConsentedScopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["codingCode"].as_str().unwrap())
        .collect();
    assert_eq!(consolidated, ["omh:blood-pressure:4.0", "QuestionnaireResponse"]);

    // snake_case bodies work as well
    let snake = json!({"study_scope_consents": [{"study_id": bp_hr,
        "scope_consents": [{"coding_system": OMH, "coding_code": "omh:heart-rate:2.0", "consented": true}]}]});
    let restored = server.patch(&consents_path(peter), &token, snake).await;
    assert_eq!(restored.status, 200);
    assert_eq!(restored.body["studyScopeConsents"][0]["consented"], true);
}

#[tokio::test]
async fn bad_writes_are_4xx_and_write_nothing() {
    let server = TestServer::start().await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let bp = study(&server, BP_STUDY).await;
    let bp_hr = study(&server, BP_HR_STUDY).await;
    let glucose_study = study(&server, "Cardiology Div Study on BGL").await;
    let token = server.token(seeded::PETER).await;
    let path = consents_path(peter);

    let not_enrolled = server.post(&path, &token, one_code(glucose_study, OMH, "omh:blood-glucose:4.0", true)).await;
    assert_eq!(not_enrolled.status, 400);
    assert_eq!(
        not_enrolled.detail(),
        format!("studyScopeConsents[0].studyId: patient {peter} is not enrolled in study {glucose_study}")
    );
    let unknown_code = server.post(&path, &token, one_code(bp, OMH, "omh:made-up:1.0", true)).await;
    assert_eq!(unknown_code.status, 400);
    assert_eq!(
        unknown_code.detail(),
        format!("studyScopeConsents[0].scopeConsents[0]: unknown code {OMH}|omh:made-up:1.0 (codingSystem|codingCode)")
    );
    let not_requested = server.post(&path, &token, one_code(bp, OMH, "omh:heart-rate:2.0", true)).await;
    assert_eq!(not_requested.status, 400);
    assert_eq!(
        not_requested.detail(),
        format!("studyScopeConsents[0].scopeConsents[0]: study {bp} does not request code {OMH}|omh:heart-rate:2.0")
    );
    let duplicate = server.post(&path, &token, one_code(bp_hr, OMH, "omh:heart-rate:2.0", true)).await;
    assert_eq!(duplicate.status, 409);
    assert!(duplicate.detail().contains("has already answered code"), "{}", duplicate.detail());
    let unanswered = server.patch(&path, &token, one_code(bp, OMH, "omh:blood-pressure:4.0", true)).await;
    assert_eq!(unanswered.status, 400);
    assert!(unanswered.detail().contains("has not answered code"), "{}", unanswered.detail());
    assert_eq!(server.delete(&path, &token, Some(one_code(bp, OMH, "omh:blood-pressure:4.0", true))).await.status, 400);
    let missing_study = server.post(&path, &server.token(seeded::MEGAN).await, one_code(999999, OMH, "x", true)).await;
    assert_eq!(missing_study.status, 400);
    assert_eq!(missing_study.detail(), "studyScopeConsents: study 999999 does not exist");

    let malformed = [
        (json!({}), "studyScopeConsents: this field is required (a list of {\"studyId\", \"scopeConsents\"})"),
        (
            json!({"studyScopeConsents": {}}),
            "studyScopeConsents: this field is required (a list of {\"studyId\", \"scopeConsents\"})",
        ),
        (
            json!({"studyScopeConsents": [{"scopeConsents": []}]}),
            "studyScopeConsents[0].studyId: this field is required (a study id)",
        ),
        (
            json!({"studyScopeConsents": [{"studyId": bp}]}),
            "studyScopeConsents[0].scopeConsents: this field is required (a list of codes)",
        ),
        (
            json!({"studyScopeConsents": [{"studyId": bp, "scopeConsents": [{"codingSystem": OMH, "consented": true}]}]}),
            "studyScopeConsents[0].scopeConsents[0].codingCode: this field is required (a string)",
        ),
        (
            json!({"studyScopeConsents": [{"studyId": bp, "scopeConsents": [{"codingSystem": OMH, "codingCode": "omh:blood-pressure:4.0"}]}]}),
            "studyScopeConsents[0].scopeConsents[0].consented: this field is required (true or false)",
        ),
        (
            json!({"studyScopeConsents": [{"studyId": bp, "scopeConsents": [{"codingSystem": OMH, "codingCode": "omh:blood-pressure:4.0", "consented": "yes"}]}]}),
            "studyScopeConsents[0].scopeConsents[0].consented: `\"yes\"` is not true or false",
        ),
        (
            json!({"studyScopeConsents": [], "patientId": peter}),
            "unknown field(s) patientId; accepted fields are studyScopeConsents",
        ),
    ];
    for (body, message) in malformed {
        let answer = server.post(&path, &token, body).await;
        assert_eq!(answer.status, 400, "{message}");
        assert_eq!(answer.detail(), message);
    }
    assert_eq!(server.raw("POST", &path, &token, "application/json", "{").await.status, 400);

    // one bad code makes the whole request fail: the valid first code stays pending
    let mixed = json!({"studyScopeConsents": [{"studyId": bp, "scopeConsents": [
        {"codingSystem": OMH, "codingCode": "omh:blood-pressure:4.0", "consented": true},
        {"codingSystem": OMH, "codingCode": "omh:heart-rate:2.0", "consented": true}]}]});
    assert_eq!(server.post(&path, &token, mixed).await.status, 400);
    let listed_twice = json!({"studyScopeConsents": [{"studyId": bp, "scopeConsents": [
        {"codingSystem": OMH, "codingCode": "omh:blood-pressure:4.0", "consented": true},
        {"codingSystem": OMH, "codingCode": "omh:blood-pressure:4.0", "consented": false}]}]});
    let twice = server.post(&path, &token, listed_twice).await;
    assert_eq!(twice.status, 400);
    assert!(twice.detail().contains("is listed twice"), "{}", twice.detail());
    let view = server.get(&path, &token).await;
    assert_eq!(
        codes(&view.body["studiesPendingConsent"][0]["pendingScopeConsents"]),
        ["omh:blood-pressure:4.0", "QuestionnaireResponse"]
    );
}

#[tokio::test]
async fn post_patch_delete_round_trip() {
    let server = TestServer::start().await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let bp = study(&server, BP_STUDY).await;
    let token = server.token(seeded::PETER).await;
    let path = consents_path(peter);
    let both = json!({"studyScopeConsents": [{"studyId": bp, "scopeConsents": [
        {"codingSystem": OMH, "codingCode": "omh:blood-pressure:4.0", "consented": true},
        {"codingSystem": FHIR_TYPES, "codingCode": "QuestionnaireResponse", "consented": false}]}]});

    let made = server.post(&path, &token, both).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let rows = made.body["studyScopeConsents"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["scopeCode"]["codingCode"], "omh:blood-pressure:4.0");
    assert_eq!(rows[0]["consented"], true);
    assert_eq!(rows[1]["consented"], false);
    assert_eq!(rows[0]["studyPatient"]["study"], bp);
    assert_eq!(rows[0]["studyPatient"]["patient"], peter);
    assert_eq!(rows[0]["consentedTime"], rows[1]["consentedTime"], "one request, one consent time");
    let view = server.get(&path, &token).await;
    assert_eq!(view.body["studiesPendingConsent"], json!([]));
    assert_eq!(view.body["studies"].as_array().unwrap().len(), 2);

    // DELETE ignores `consented` and makes the code pending again
    let withdraw = json!({"studyScopeConsents": [{"studyId": bp, "scopeConsents": [
        {"codingSystem": FHIR_TYPES, "codingCode": "QuestionnaireResponse"}]}]});
    let deleted = server.delete(&path, &token, Some(withdraw)).await;
    assert_eq!(deleted.status, 204);
    let view = server.get(&path, &token).await;
    assert_eq!(codes(&view.body["studiesPendingConsent"][0]["pendingScopeConsents"]), ["QuestionnaireResponse"]);
}

#[tokio::test]
async fn reset_is_for_the_patient_or_a_superuser() {
    let server = TestServer::start().await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let pamela = patient(&server, seeded::PAMELA).await;
    let reset = format!("{}?reset=true", consents_path(peter));

    for email in [seeded::MEGAN, seeded::MARY] {
        let denied = server.get(&reset, &server.token(email).await).await;
        assert_eq!(denied.status, 403, "{email}");
        assert_eq!(denied.detail(), "Only the patient themself or a superuser can reset consents.");
    }
    assert_eq!(server.get(&reset, &server.token(seeded::PAMELA).await).await.status, 403);
    let done = server.get(&reset, &server.token(seeded::PETER).await).await;
    assert_eq!(done.status, 200);
    assert_eq!(done.body, json!({"resetCount": 3}));
    let view = server.get(&consents_path(peter), &server.token(seeded::PETER).await).await;
    assert_eq!(view.body["studies"], json!([]));
    assert_eq!(view.body["consolidatedConsentedScopes"], json!([]));
    assert_eq!(view.body["studiesPendingConsent"].as_array().unwrap().len(), 2);

    let by_admin =
        server.get(&format!("{}?reset=true", consents_path(pamela)), &server.token(seeded::ADMIN).await).await;
    assert_eq!(by_admin.body, json!({"resetCount": 5}));
}

#[tokio::test]
async fn who_may_write_consents() {
    let server = TestServer::start().await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let bp = study(&server, BP_STUDY).await;
    let path = consents_path(peter);
    let body = one_code(bp, OMH, "omh:blood-pressure:4.0", true);
    let admin = server.token(seeded::ADMIN).await;

    let cases = [
        ("the patient themself", seeded::PETER, 201),
        ("another patient", seeded::PAMELA, 403),
        ("a viewer of the study organization", seeded::VICTOR, 403),
        ("a viewer there who is a member elsewhere", seeded::TOM, 403),
        ("a member of the study organization", seeded::MEGAN, 201),
        ("a manager of the study organization", seeded::MARY, 201),
        ("a practitioner of another organization", seeded::MARK, 403),
        ("a superuser", seeded::ADMIN, 201),
    ];
    for (who, email, expected) in cases {
        let token = server.token(email).await;
        let posted = server.post(&path, &token, body.clone()).await;
        assert_eq!(posted.status, expected, "POST by {who}: {:?}", posted.body);
        let patched = server.patch(&path, &token, one_code(bp, OMH, "omh:blood-pressure:4.0", false)).await;
        let withdrawn = server.delete(&path, &token, Some(body.clone())).await;
        if expected == 201 {
            assert_eq!(patched.status, 200, "PATCH by {who}");
            assert_eq!(withdrawn.status, 204, "DELETE by {who}");
        } else {
            assert_eq!(patched.status, 403, "PATCH by {who}");
            assert_eq!(withdrawn.status, 403, "DELETE by {who}");
            // nothing was written for the refused caller
            let view = server.get(&path, &admin).await;
            assert_eq!(view.body["studiesPendingConsent"][0]["id"], bp, "after {who}");
        }
    }
    let viewer = server.post(&path, &server.token(seeded::VICTOR).await, body.clone()).await;
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await;
    assert_eq!(
        viewer.detail(),
        format!("Changing consents for study {bp} needs the member or manager role in its organization ({lifespan}).")
    );
    assert_eq!(
        server.post(&path, &server.token(seeded::PAMELA).await, body).await.detail(),
        "The Patient does not match the current patient user."
    );
    assert_eq!(server.post(&consents_path(999999), &admin, json!({})).await.status, 404);
}
