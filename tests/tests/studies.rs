//! `/api/v1/studies`, its sub-resources, and `/api/v1/organizations/{id}/studies`.

use jhe_tests::{Answer, TestServer, seeded};
use serde_json::{Value, json};

const BP_HR_STUDY: &str = "Lifespan Study on BP & HR";
const BP_STUDY: &str = "Lifespan Study on BP";
const OMH: &str = "https://w3id.org/openmhealth";

async fn org(server: &TestServer, name: &str) -> i64 {
    server.id_of("organizations", "name", name).await
}

async fn study(server: &TestServer, name: &str) -> i64 {
    server.id_of("studies", "name", name).await
}

async fn patient(server: &TestServer, email: &str) -> i64 {
    let user = server.id_of("users", "email", email).await;
    server.id_of("patients", "user_id::text", &user.to_string()).await
}

async fn code(server: &TestServer, coding_code: &str) -> i64 {
    server.id_of("codeable_concepts", "coding_code", coding_code).await
}

fn names(answer: &Answer) -> Vec<String> {
    let items = answer.body.get("results").unwrap_or(&answer.body);
    items.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap().to_owned()).collect()
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn every_route_needs_a_token() {
    let server = TestServer::start().await.unwrap();
    let bp = study(&server, BP_STUDY).await;
    let lifespan = org(&server, "Lifespan Lab").await;
    let mut routes = vec![
        ("GET", "/api/v1/studies".to_owned()),
        ("POST", "/api/v1/studies".to_owned()),
        ("GET", format!("/api/v1/studies/{bp}")),
        ("PATCH", format!("/api/v1/studies/{bp}")),
        ("PUT", format!("/api/v1/studies/{bp}")),
        ("DELETE", format!("/api/v1/studies/{bp}")),
        ("GET", format!("/api/v1/organizations/{lifespan}/studies")),
    ];
    for sub in ["patients", "scope_requests", "clients", "data_sources"] {
        for method in ["GET", "POST", "DELETE"] {
            routes.push((method, format!("/api/v1/studies/{bp}/{sub}")));
        }
    }
    for (method, path) in routes {
        let answer = server.request(method, &path, None, Some(json!({}))).await;
        assert_eq!(answer.status, 401, "{method} {path}");
        assert_eq!(answer.detail(), "Authentication credentials were not provided.");
    }
}

#[tokio::test]
async fn list_is_scoped_ordered_and_remembers_the_view() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let lifespan = org(&server, "Lifespan Lab").await;
    let cosmic = org(&server, "Cosmic Cardio Lab").await;
    let bp = study(&server, BP_STUDY).await;

    let listed = server.get("/api/v1/studies", &mary).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["count"], 2);
    assert_eq!(names(&listed), [BP_STUDY, BP_HR_STUDY]);
    assert_eq!(
        listed.body["results"][0],
        json!({"id": bp, "name": BP_STUDY, "description": "Blood Pressure",
               "organization": {"id": lifespan, "name": "Lifespan Lab", "type": "laboratory"}, "iconUrl": null})
    );

    let tom = server.token(seeded::TOM).await;
    let all_of_tom = server.get("/api/v1/studies", &tom).await;
    assert_eq!(
        names(&all_of_tom),
        ["Cosmic Cardio Lab Study on O2", BP_STUDY, BP_HR_STUDY, "Nep Pulse Lab Study on BT"]
    );
    assert_eq!(
        names(&server.get(&format!("/api/v1/studies?organizationId={cosmic}"), &tom).await),
        ["Cosmic Cardio Lab Study on O2"]
    );
    assert_eq!(server.get(&format!("/api/v1/studies?organization_id={cosmic}"), &tom).await.body["count"], 1);
    assert_eq!(server.get(&format!("/api/v1/studies?organization_id={cosmic}"), &mary).await.body["count"], 0);
    assert_eq!(
        names(&server.get("/api/v1/studies", &server.token(seeded::MARK).await).await),
        ["Cardiology Div Study on BGL", "Nep Pulse Lab Study on BT"]
    );
    assert_eq!(server.get("/api/v1/studies", &server.token(seeded::ADMIN).await).await.body["count"], 5);
    let paged = server.get("/api/v1/studies?pageSize=1&page=2", &tom).await;
    assert_eq!(names(&paged), [BP_STUDY]);
    assert!(paged.body["next"].as_str().unwrap().contains("page=3"));

    let bad = server.get("/api/v1/studies?organization_id=abc", &mary).await;
    assert_eq!(bad.status, 400);
    assert!(bad.detail().contains("abc"), "{}", bad.detail());
    let patient = server.get("/api/v1/studies", &server.token(seeded::PETER).await).await;
    assert_eq!(patient.status, 403);
    assert_eq!(patient.detail(), "This action is available to practitioners only.");

    // the web UI's sticky organization and study; listing without a study keeps the study
    server.get(&format!("/api/v1/studies?organizationId={lifespan}&studyId={bp}"), &mary).await;
    server.get("/api/v1/studies", &mary).await;
    let settings: Value = sqlx::query_scalar(
        "SELECT pr.settings FROM practitioners pr JOIN users u ON u.id = pr.user_id WHERE u.email = $1",
    )
    .bind(seeded::MARY)
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(settings["current_organization_id"], lifespan);
    assert_eq!(settings["current_study_id"], bp);
}

#[tokio::test]
async fn retrieve_needs_membership_of_the_study_organization() {
    let server = TestServer::start().await.unwrap();
    let bp_hr = study(&server, BP_HR_STUDY).await;
    let lifespan = org(&server, "Lifespan Lab").await;

    let victor = server.get(&format!("/api/v1/studies/{bp_hr}"), &server.token(seeded::VICTOR).await).await;
    assert_eq!(victor.status, 200, "reads are scoped by membership, not role");
    assert_eq!(
        victor.body,
        json!({"id": bp_hr, "name": BP_HR_STUDY, "description": "Blood Pressure & Heart Rate",
               "organization": {"id": lifespan, "name": "Lifespan Lab", "type": "laboratory"}, "iconUrl": null})
    );
    assert_eq!(server.get(&format!("/api/v1/studies/{bp_hr}"), &server.token(seeded::ADMIN).await).await.status, 200);

    let outsider = server.get(&format!("/api/v1/studies/{bp_hr}"), &server.token(seeded::MARK).await).await;
    assert_eq!(outsider.status, 403);
    assert_eq!(outsider.detail(), "Current User does not have authorization to access this Study.");
    let mary = server.token(seeded::MARY).await;
    let missing = server.get("/api/v1/studies/999999", &mary).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.detail(), "No Study matches the given query.");
    assert_eq!(server.get("/api/v1/studies/abc", &mary).await.status, 404);
    assert_eq!(server.get(&format!("/api/v1/studies/{bp_hr}"), &server.token(seeded::PETER).await).await.status, 403);
}

#[tokio::test]
async fn create_needs_a_member_or_manager_of_the_organization() {
    let server = TestServer::start().await.unwrap();
    let lifespan = org(&server, "Lifespan Lab").await;
    let megan = server.token(seeded::MEGAN).await;
    let body = json!({"name": "Sleep", "description": "Sleep study", "organization": lifespan,
                      "iconUrl": "https://example.com/sleep.png"});

    let made = server.post("/api/v1/studies", &megan, body.clone()).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    let id = made.body["id"].as_i64().unwrap();
    assert_eq!(
        made.body,
        json!({"id": id, "name": "Sleep", "description": "Sleep study", "organization": lifespan,
               "iconUrl": "https://example.com/sleep.png"})
    );
    let snake = server
        .post(
            "/api/v1/studies",
            &megan,
            json!({"name": "Steps", "description": "d", "organization": lifespan,
                                                 "icon_url": "https://example.com/steps.png"}),
        )
        .await;
    assert_eq!(snake.status, 201);
    assert_eq!(snake.body["iconUrl"], "https://example.com/steps.png");
    let read = server.get(&format!("/api/v1/studies/{id}"), &megan).await;
    assert_eq!(read.body["organization"]["name"], "Lifespan Lab");

    for (who, email) in [("viewer", seeded::VICTOR), ("other organization", seeded::MARK), ("patient", seeded::PETER)] {
        let denied = server.post("/api/v1/studies", &server.token(email).await, body.clone()).await;
        assert_eq!(denied.status, 403, "{who}");
    }

    let cases = [
        (json!({"description": "d", "organization": lifespan}), "name: this field is required"),
        (json!({"name": "n", "organization": lifespan}), "description: this field is required"),
        (json!({"name": "n", "description": "d"}), "organization: this field is required"),
        (
            json!({"name": "n", "description": "d", "organization": 999999}),
            "organization: organization 999999 does not exist",
        ),
        (json!({"name": "n", "description": "d", "organization": "abc"}), "organization: `abc` is not an integer"),
        (
            json!({"name": "n", "description": "d", "organization": lifespan, "colour": "red"}),
            "unknown field(s) colour",
        ),
    ];
    for (bad, message) in cases {
        let answer = server.post("/api/v1/studies", &megan, bad).await;
        assert_eq!(answer.status, 400, "{message}");
        assert!(answer.detail().starts_with(message), "{} does not start with {message}", answer.detail());
    }
    let root = server
        .post(
            "/api/v1/studies",
            &server.token(seeded::ADMIN).await,
            json!({"name": "n", "description": "d", "organization": 0}),
        )
        .await;
    assert_eq!(root.status, 400);
    assert_eq!(root.detail(), "organization: a study cannot belong to the ROOT organization");
    let not_json = server.raw("POST", "/api/v1/studies", &megan, "application/json", "{").await;
    assert_eq!(not_json.status, 400);
}

#[tokio::test]
async fn update_and_delete_need_a_role_in_the_study_organization() {
    let server = TestServer::start().await.unwrap();
    let bp = study(&server, BP_STUDY).await;
    let lifespan = org(&server, "Lifespan Lab").await;
    let megan = server.token(seeded::MEGAN).await;
    let path = format!("/api/v1/studies/{bp}");

    let patched =
        server.patch(&path, &megan, json!({"name": "BP only", "iconUrl": "https://example.com/bp.png"})).await;
    assert_eq!(patched.status, 200);
    assert_eq!(
        patched.body,
        json!({"id": bp, "name": "BP only", "description": "Blood Pressure", "organization": lifespan,
               "iconUrl": "https://example.com/bp.png"})
    );
    let put = server
        .put(
            &path,
            &megan,
            json!({"id": bp, "name": "BP", "description": "New", "organization": lifespan, "icon_url": null}),
        )
        .await;
    assert_eq!(put.status, 200);
    assert_eq!(put.body["description"], "New");
    assert_eq!(put.body["iconUrl"], Value::Null);

    for email in [seeded::VICTOR, seeded::MARK, seeded::PETER] {
        assert_eq!(server.patch(&path, &server.token(email).await, json!({"name": "x"})).await.status, 403, "{email}");
        assert_eq!(server.delete(&path, &server.token(email).await, None).await.status, 403, "{email}");
    }
    let moved = server.patch(&path, &megan, json!({"organization": org(&server, "Cosmic Cardio Lab").await})).await;
    assert_eq!(moved.status, 400);
    assert_eq!(moved.detail(), "organization: a study cannot be moved to another organization");
    let blank = server.patch(&path, &megan, json!({"name": "  "})).await;
    assert_eq!(blank.status, 400);
    assert_eq!(blank.detail(), "name: may not be blank");
    assert_eq!(server.patch(&path, &megan, json!({"owner": 1})).await.status, 400);
    assert_eq!(server.patch("/api/v1/studies/999999", &megan, json!({"name": "x"})).await.status, 404);
    assert_eq!(server.delete("/api/v1/studies/999999", &megan, None).await.status, 404);

    let deleted = server.delete(&path, &megan, None).await;
    assert_eq!(deleted.status, 204);
    assert_eq!(server.get(&path, &megan).await.status, 404);
    // enrolments and consents went with the study
    let enrolments: i64 = sqlx::query_scalar("SELECT count(*) FROM study_patients WHERE study_id = $1")
        .bind(bp)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(enrolments, 0);
}

#[tokio::test]
async fn organization_studies_are_for_its_members() {
    let server = TestServer::start().await.unwrap();
    let lifespan = org(&server, "Lifespan Lab").await;
    let bp = study(&server, BP_STUDY).await;
    let path = format!("/api/v1/organizations/{lifespan}/studies");

    let listed = server.get(&path, &server.token(seeded::VICTOR).await).await;
    assert_eq!(listed.status, 200);
    assert_eq!(names(&listed), [BP_STUDY, BP_HR_STUDY]);
    assert_eq!(
        listed.body[0],
        json!({"id": bp, "name": BP_STUDY, "description": "Blood Pressure", "organization": lifespan, "iconUrl": null})
    );
    assert_eq!(server.get(&path, &server.token(seeded::ADMIN).await).await.body.as_array().unwrap().len(), 2);
    let outsider = server.get(&path, &server.token(seeded::MARK).await).await;
    assert_eq!(outsider.status, 403);
    assert_eq!(outsider.detail(), "You are not a member of this organization.");
    assert_eq!(server.get(&path, &server.token(seeded::PETER).await).await.status, 403);
    assert_eq!(server.get("/api/v1/organizations/999999/studies", &server.token(seeded::MARY).await).await.status, 404);
}

#[tokio::test]
async fn study_patients_list_enrol_and_remove() {
    let server = TestServer::start().await.unwrap();
    let lifespan = org(&server, "Lifespan Lab").await;
    let bp = study(&server, BP_STUDY).await;
    let bp_hr = study(&server, BP_HR_STUDY).await;
    let mary = server.token(seeded::MARY).await;
    let megan = server.token(seeded::MEGAN).await;
    let peter = patient(&server, seeded::PETER).await;
    let pamela = patient(&server, seeded::PAMELA).await;
    let percy = patient(&server, seeded::PERCY).await;
    let path = format!("/api/v1/studies/{bp}/patients");

    let listed = server.get(&path, &server.token(seeded::VICTOR).await).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["count"], 2);
    assert_eq!(listed.body["results"][0]["id"], peter);
    assert_eq!(
        keys(&listed.body["results"][0]),
        [
            "birthDate",
            "id",
            "identifiers",
            "jheUserId",
            "nameFamily",
            "nameGiven",
            "organizations",
            "telecomEmail",
            "telecomPhone"
        ]
    );
    assert_eq!(server.get(&path, &server.token(seeded::MARK).await).await.status, 403);
    assert_eq!(server.get(&path, &server.token(seeded::PETER).await).await.status, 403);
    assert_eq!(server.get("/api/v1/studies/999999/patients", &mary).await.status, 404);

    let mut new_patients = Vec::new();
    for email in ["new_one@example.com", "new_two@example.com"] {
        let made =
            server.post("/api/v1/patients", &mary, json!({"organizationId": lifespan, "telecomEmail": email})).await;
        assert_eq!(made.status, 201);
        new_patients.push(made.body["id"].as_i64().unwrap());
    }
    let (first, second) = (new_patients[0], new_patients[1]);

    let enrolled = server.post(&path, &megan, json!({"patientIds": [first]})).await;
    assert_eq!(enrolled.status, 201, "{:?}", enrolled.body);
    let row = &enrolled.body["studyPatients"][0];
    assert_eq!(keys(row), ["id", "patient", "study"]);
    assert_eq!(
        row["study"],
        json!({"id": bp, "name": BP_STUDY, "description": "Blood Pressure", "organization": lifespan, "iconUrl": null})
    );
    assert_eq!(row["patient"]["id"], first);
    assert_eq!(row["patient"]["telecomEmail"], "new_one@example.com");
    assert_eq!(server.get(&path, &megan).await.body["count"], 3);

    let again = server.post(&path, &megan, json!({"patient_ids": [first]})).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.detail(), format!("patientIds: patient {first} is already enrolled in study {bp}"));
    // all or nothing: the valid second patient is not enrolled when Percy (another organization) is refused
    // and Percy reads exactly like an id that does not exist
    let outsider = server.post(&path, &megan, json!({"patient_ids": [second, percy]})).await;
    assert_eq!(outsider.status, 404);
    let absent =
        |id: i64| format!("patientIds: organization {lifespan} (which owns study {bp}) has no patient with id {id}");
    assert_eq!(outsider.detail(), absent(percy));
    assert_eq!(server.get(&path, &megan).await.body["count"], 3);
    let unknown = server.post(&path, &megan, json!({"patientIds": [999999]})).await;
    assert_eq!((unknown.status, unknown.detail()), (404, absent(999999)));
    let cases = [
        (json!({"patientIds": []}), "patientIds: list at least one patient id".to_owned()),
        (json!({"patientIds": [second, second]}), format!("patientIds: patient {second} is listed more than once")),
        (json!({"patientIds": ["x"]}), "patientIds[0]: `\"x\"` is not a patient id".to_owned()),
        (json!({"patientIds": 5}), "patientIds: this field is required (a list of patient ids)".to_owned()),
        (json!({}), "patientIds: this field is required (a list of patient ids)".to_owned()),
        (
            json!({"patientIds": [second], "studyId": bp}),
            "unknown field(s) studyId; accepted fields are patientIds".to_owned(),
        ),
    ];
    for (body, message) in cases {
        let answer = server.post(&path, &megan, body).await;
        assert_eq!(answer.status, 400, "{message}");
        assert_eq!(answer.detail(), message);
    }
    for email in [seeded::VICTOR, seeded::MARK, seeded::PETER] {
        let token = server.token(email).await;
        assert_eq!(server.post(&path, &token, json!({"patientIds": [second]})).await.status, 403, "{email}");
        assert_eq!(server.delete(&path, &token, Some(json!({"patientIds": [first]}))).await.status, 403, "{email}");
    }

    // removing Pamela's enrolment in the BP & HR study takes her consents for it along
    let bp_hr_path = format!("/api/v1/studies/{bp_hr}/patients");
    assert_eq!(server.delete(&bp_hr_path, &mary, Some(json!({"patientIds": [pamela]}))).await.status, 204);
    let consents = server.get(&format!("/api/v1/patients/{pamela}/consents"), &mary).await;
    let study_ids: Vec<&Value> = consents.body["studies"].as_array().unwrap().iter().map(|s| &s["id"]).collect();
    assert_eq!(study_ids, [&json!(bp)]);
    let left: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM study_patient_scope_consents c JOIN study_patients sp ON sp.id = c.study_patient_id
         WHERE sp.patient_id = $1 AND sp.study_id = $2",
    )
    .bind(pamela)
    .bind(bp_hr)
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(left, 0);

    let not_enrolled = server.delete(&bp_hr_path, &mary, Some(json!({"patient_ids": [pamela, peter]}))).await;
    assert_eq!(not_enrolled.status, 400);
    assert_eq!(not_enrolled.detail(), format!("patientIds: patient {pamela} is not enrolled in study {bp_hr}"));
    assert_eq!(server.get(&bp_hr_path, &mary).await.body["count"], 1, "Peter is still enrolled");
}

#[tokio::test]
async fn scope_requests_list_add_and_remove() {
    let server = TestServer::start().await.unwrap();
    let lifespan = org(&server, "Lifespan Lab").await;
    let bp = study(&server, BP_STUDY).await;
    let megan = server.token(seeded::MEGAN).await;
    let blood_pressure = code(&server, "omh:blood-pressure:4.0").await;
    let heart_rate = code(&server, "omh:heart-rate:2.0").await;
    let path = format!("/api/v1/studies/{bp}/scope_requests");

    let listed = server.get(&path, &server.token(seeded::VICTOR).await).await;
    assert_eq!(listed.status, 200);
    let rows = listed.body.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows[0]["id"].as_i64() < rows[1]["id"].as_i64());
    assert_eq!(
        rows[0],
        json!({"id": rows[0]["id"],
               "study": {"id": bp, "name": BP_STUDY, "description": "Blood Pressure", "organization": lifespan, "iconUrl": null},
               "scopeCode": {"id": blood_pressure, "codingSystem": OMH, "codingCode": "omh:blood-pressure:4.0",
                             "text": "Blood pressure"}})
    );
    assert_eq!(rows[1]["scopeCode"]["codingCode"], "QuestionnaireResponse");

    let added = server.post(&path, &megan, json!({"scopeCodeId": heart_rate})).await;
    assert_eq!(added.status, 201);
    assert_eq!(added.body["scopeCode"]["codingCode"], "omh:heart-rate:2.0");
    assert_eq!(added.body["study"]["id"], bp);
    assert!(added.body["id"].is_i64());
    assert_eq!(server.get(&path, &megan).await.body.as_array().unwrap().len(), 3);
    let twice = server.post(&path, &megan, json!({"scope_code_id": heart_rate})).await;
    assert_eq!(twice.status, 409);
    assert_eq!(twice.detail(), format!("scopeCodeId: code {heart_rate} is already linked to study {bp}"));
    let unknown = server.post(&path, &megan, json!({"scopeCodeId": 999999})).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.detail(), "scopeCodeId: no code with id 999999");
    let missing = server.post(&path, &megan, json!({})).await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.detail(), "scopeCodeId: this field is required");

    for email in [seeded::VICTOR, seeded::MARK, seeded::PETER] {
        let token = server.token(email).await;
        assert_eq!(server.post(&path, &token, json!({"scopeCodeId": heart_rate})).await.status, 403, "{email}");
        assert_eq!(server.delete(&path, &token, Some(json!({"scopeCodeId": heart_rate}))).await.status, 403, "{email}");
    }
    assert_eq!(server.get(&path, &server.token(seeded::MARK).await).await.status, 403);
    assert_eq!(server.get("/api/v1/studies/999999/scope_requests", &megan).await.status, 404);

    assert_eq!(server.delete(&path, &megan, Some(json!({"scope_code_id": heart_rate}))).await.status, 204);
    let gone = server.delete(&path, &megan, Some(json!({"scopeCodeId": heart_rate}))).await;
    assert_eq!(gone.status, 400);
    assert_eq!(gone.detail(), format!("scopeCodeId: code {heart_rate} is not linked to study {bp}"));
}

#[tokio::test]
async fn clients_list_add_and_remove_without_secrets() {
    let server = TestServer::start().await.unwrap();
    let bp_hr = study(&server, BP_HR_STUDY).await;
    let bp = study(&server, BP_STUDY).await;
    let megan = server.token(seeded::MEGAN).await;
    let common_health = server.id_of("oauth_clients", "name", "CommonHealth").await;
    let path = format!("/api/v1/studies/{bp_hr}/clients");

    let listed = server.get(&path, &server.token(seeded::VICTOR).await).await;
    assert_eq!(listed.status, 200);
    let rows = listed.body.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(keys(&rows[0]), ["client", "id", "study"]);
    assert_eq!(keys(&rows[0]["client"]), ["clientId", "id", "invitationUrl", "name"]);
    assert_eq!(rows[0]["client"]["name"], "CareX");
    assert_eq!(rows[0]["client"]["invitationUrl"], "https://carex.ai/invitation/CODE");
    assert_eq!(rows[0]["study"]["id"], bp_hr);
    assert_eq!(rows[1]["client"]["name"], "Patient Access");
    assert!(!listed.body.to_string().to_lowercase().contains("secret"));

    let bp_path = format!("/api/v1/studies/{bp}/clients");
    let added = server.post(&bp_path, &megan, json!({"clientId": common_health})).await;
    assert_eq!(added.status, 201);
    assert_eq!(added.body, Value::Null, "the reference answers an empty body");
    let names: Vec<Value> = server
        .get(&bp_path, &megan)
        .await
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["client"]["name"].clone())
        .collect();
    assert_eq!(names, [json!("CareX"), json!("CommonHealth")]);
    let twice = server.post(&bp_path, &megan, json!({"client_id": common_health})).await;
    assert_eq!(twice.status, 409);
    let unknown = server.post(&bp_path, &megan, json!({"clientId": 999999})).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.detail(), "clientId: no patient app client with id 999999");
    assert_eq!(server.post(&bp_path, &megan, json!({})).await.detail(), "clientId: this field is required");

    for email in [seeded::VICTOR, seeded::MARK, seeded::PETER] {
        let token = server.token(email).await;
        assert_eq!(server.post(&bp_path, &token, json!({"clientId": common_health})).await.status, 403, "{email}");
        assert_eq!(
            server.delete(&bp_path, &token, Some(json!({"clientId": common_health}))).await.status,
            403,
            "{email}"
        );
    }
    assert_eq!(server.get(&bp_path, &server.token(seeded::MARK).await).await.status, 403);
    assert_eq!(server.get("/api/v1/studies/999999/clients", &megan).await.status, 404);

    assert_eq!(server.delete(&bp_path, &megan, Some(json!({"client_id": common_health}))).await.status, 204);
    let gone = server.delete(&bp_path, &megan, Some(json!({"clientId": common_health}))).await;
    assert_eq!(gone.status, 400);
    assert_eq!(gone.detail(), format!("clientId: patient app client {common_health} is not linked to study {bp}"));
}

#[tokio::test]
async fn data_sources_list_add_and_remove() {
    let server = TestServer::start().await.unwrap();
    let bp = study(&server, BP_STUDY).await;
    let megan = server.token(seeded::MEGAN).await;
    let dexcom = server.id_of("data_sources", "name", "Dexcom").await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let path = format!("/api/v1/studies/{bp}/data_sources");

    let listed = server.get(&path, &server.token(seeded::VICTOR).await).await;
    assert_eq!(listed.status, 200);
    let rows = listed.body.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(keys(&rows[0]), ["dataSource", "id", "study"]);
    assert_eq!(rows[0]["study"]["id"], bp);
    let carex_row = &rows[0]["dataSource"];
    assert_eq!(keys(carex_row), ["id", "name", "supportedScopes", "type"]);
    assert_eq!(carex_row["id"], carex);
    assert_eq!(carex_row["type"], "personal_device");
    let scopes: Vec<&Value> =
        carex_row["supportedScopes"].as_array().unwrap().iter().map(|c| &c["codingCode"]).collect();
    assert_eq!(scopes, [&json!("omh:blood-pressure:4.0"), &json!("omh:heart-rate:2.0")]);
    assert_eq!(rows[1]["dataSource"]["name"], "Questionnaire");

    let added = server.post(&path, &megan, json!({"dataSourceId": dexcom})).await;
    assert_eq!(added.status, 201);
    assert_eq!(added.body, Value::Null);
    assert_eq!(server.get(&path, &megan).await.body[2]["dataSource"]["name"], "Dexcom");
    assert_eq!(server.post(&path, &megan, json!({"data_source_id": dexcom})).await.status, 409);
    let unknown = server.post(&path, &megan, json!({"dataSourceId": 999999})).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.detail(), "dataSourceId: no data source with id 999999");
    let wrong = server.post(&path, &megan, json!({"dataSourceId": "abc"})).await;
    assert_eq!(wrong.status, 400);
    assert_eq!(wrong.detail(), "dataSourceId: `\"abc\"` is not an id");

    for email in [seeded::VICTOR, seeded::MARK, seeded::PETER] {
        let token = server.token(email).await;
        assert_eq!(server.post(&path, &token, json!({"dataSourceId": dexcom})).await.status, 403, "{email}");
        assert_eq!(server.delete(&path, &token, Some(json!({"dataSourceId": dexcom}))).await.status, 403, "{email}");
    }
    assert_eq!(server.get(&path, &server.token(seeded::MARK).await).await.status, 403);
    assert_eq!(server.get("/api/v1/studies/999999/data_sources", &megan).await.status, 404);

    assert_eq!(server.delete(&path, &megan, Some(json!({"data_source_id": dexcom}))).await.status, 204);
    let gone = server.delete(&path, &megan, Some(json!({"dataSourceId": dexcom}))).await;
    assert_eq!(gone.status, 400);
    assert_eq!(gone.detail(), format!("dataSourceId: data source {dexcom} is not linked to study {bp}"));
}
