//! `/api/v1/patients`: lists scoped to the caller's organizations, PHI only for those who share one.

use jhe_tests::{TestServer, seeded};
use serde_json::json;

async fn patient(server: &TestServer, email: &str) -> i64 {
    let user = server.id_of("users", "email", email).await;
    server.id_of("patients", "user_id::text", &user.to_string()).await
}

#[tokio::test]
async fn list_is_scoped_and_filtered() {
    let server = TestServer::start().await.unwrap();
    let megan = server.token(seeded::MEGAN).await;
    let tom = server.token(seeded::TOM).await;
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await;
    let cosmic = server.id_of("organizations", "name", "Cosmic Cardio Lab").await;
    let bp_study = server.id_of("studies", "name", "Lifespan Study on BP").await;

    let listed = server.get("/api/v1/patients", &megan).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["count"], 2);
    let peter = &listed.body["results"][0];
    let keys: Vec<&str> = peter.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "jheUserId",
            "identifiers",
            "nameFamily",
            "nameGiven",
            "birthDate",
            "telecomPhone",
            "telecomEmail",
            "organizations"
        ]
    );
    assert_eq!(peter["telecomEmail"], seeded::PETER);
    assert_eq!(peter["identifiers"][0]["system"], "https://openwearables.io/ns/patient-id");
    assert_eq!(peter["identifiers"][0]["value"], "abc123");
    assert_eq!(peter["organizations"][0]["id"], lifespan);

    // three_org_tom sees Lifespan Lab, Neptunian Pulse Lab and Cosmic Cardio Lab patients
    assert_eq!(server.get("/api/v1/patients", &tom).await.body["count"], 5);
    assert_eq!(server.get(&format!("/api/v1/patients?organizationId={cosmic}"), &tom).await.body["count"], 2);
    assert_eq!(server.get(&format!("/api/v1/patients?organization_id={cosmic}"), &megan).await.body["count"], 0);
    assert_eq!(server.get(&format!("/api/v1/patients?study_id={bp_study}"), &megan).await.body["count"], 2);
    assert_eq!(server.get("/api/v1/patients?patientIdentifierValue=E1234", &megan).await.body["count"], 1);
    assert_eq!(server.get("/api/v1/patients?patient_identifier_value=nope", &megan).await.body["count"], 0);
    let peter_id = patient(&server, seeded::PETER).await;
    assert_eq!(server.get(&format!("/api/v1/patients?patientId={peter_id}"), &megan).await.body["count"], 1);
    assert_eq!(server.get("/api/v1/patients?organization_id=abc", &megan).await.status, 400);
    assert_eq!(server.get("/api/v1/patients?unknown=1", &megan).await.status, 200);
    assert_eq!(server.get("/api/v1/patients", &server.token(seeded::PETER).await).await.status, 403);
}

#[tokio::test]
async fn retrieve_me_and_lookup_are_scoped() {
    let server = TestServer::start().await.unwrap();
    let megan = server.token(seeded::MEGAN).await;
    let mark = server.token(seeded::MARK).await;
    let peter_token = server.token(seeded::PETER).await;
    let peter = patient(&server, seeded::PETER).await;
    let pamela = patient(&server, seeded::PAMELA).await;

    assert_eq!(server.get(&format!("/api/v1/patients/{peter}"), &megan).await.status, 200);
    let other_org = server.get(&format!("/api/v1/patients/{peter}"), &mark).await;
    assert_eq!(other_org.status, 403);
    assert_eq!(server.get(&format!("/api/v1/patients/{peter}"), &peter_token).await.status, 200);
    let other_patient = server.get(&format!("/api/v1/patients/{pamela}"), &peter_token).await;
    assert_eq!(other_patient.status, 403);
    assert_eq!(other_patient.detail(), "The Patient does not match the current patient user.");
    // an id that does not exist reads like a patient of another organization
    let missing = server.get("/api/v1/patients/999999", &megan).await;
    assert_eq!((missing.status, missing.detail()), (other_org.status, other_org.detail()));
    assert_eq!(server.get(&format!("/api/v1/patients/{peter}"), &server.token(seeded::ADMIN).await).await.status, 200);

    let me = server.get("/api/v1/patients/me", &peter_token).await;
    assert_eq!(me.body["id"], peter);
    assert_eq!(server.get("/api/v1/patients/me", &megan).await.status, 403);

    let lookup = server.get(&format!("/api/v1/patients/global_lookup?email={}", seeded::PETER), &megan).await;
    assert_eq!(lookup.status, 200);
    assert_eq!(lookup.body[0]["id"], peter);
    let hidden = server.get(&format!("/api/v1/patients/global_lookup?email={}", seeded::PETER), &mark).await;
    assert_eq!(hidden.body, json!([]), "PHI lookups are scoped to the caller's organizations");
    assert_eq!(server.get("/api/v1/patients/global_lookup", &megan).await.status, 400);
    assert_eq!(server.get("/api/v1/patients/global_lookup?email=x@y.z", &peter_token).await.status, 403);
}

#[tokio::test]
async fn create_update_and_remove() {
    let server = TestServer::start().await.unwrap();
    let megan = server.token(seeded::MEGAN).await;
    let victor = server.token(seeded::VICTOR).await;
    let mark = server.token(seeded::MARK).await;
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await;
    let body = json!({
        "organizationId": lifespan, "telecomEmail": "new.patient@example.com", "nameFamily": "Doe",
        "name_given": "Jane", "birthDate": "1970-01-02", "telecomPhone": "555",
        "identifiers": [{"system": "urn:site", "value": "P-1"}]
    });
    assert_eq!(server.post("/api/v1/patients", &victor, body.clone()).await.status, 403);
    assert_eq!(server.post("/api/v1/patients", &mark, body.clone()).await.status, 403);
    assert_eq!(server.post("/api/v1/patients", &server.token(seeded::PETER).await, body.clone()).await.status, 403);
    let created = server.post("/api/v1/patients", &megan, body.clone()).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["birthDate"], "1970-01-02");
    assert_eq!(created.body["identifiers"][0]["value"], "P-1");
    assert_eq!(created.body["organizations"][0]["id"], lifespan);
    let id = created.body["id"].as_i64().unwrap();

    let again = server.post("/api/v1/patients", &megan, body.clone()).await;
    assert_eq!(again.status, 400);
    assert_eq!(again.detail(), "The external identifier urn:site|P-1 is already in use by another patient.");
    let cases = [
        (json!({"organizationId": lifespan}), "telecomEmail: this field is required"),
        (json!({"telecomEmail": "a@b.org"}), "organizationId: this field is required"),
        (json!({"organizationId": lifespan, "telecomEmail": "a@b.org", "birthDate": "02/01/1970"}), "birthDate:"),
        (
            json!({"organizationId": lifespan, "telecomEmail": "a@b.org", "identifiers": [{"system": "s"}]}),
            "identifiers:",
        ),
        (json!({"organizationId": lifespan, "telecomEmail": "a@b.org", "favouriteColour": "red"}), "favouriteColour"),
        (json!({"organizationId": "abc", "telecomEmail": "a@b.org"}), "organizationId:"),
    ];
    for (bad, message) in cases {
        let answer = server.post("/api/v1/patients", &megan, bad.clone()).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert!(answer.detail().contains(message), "{bad}: {}", answer.detail());
    }
    let same_email = server
        .post(
            "/api/v1/patients",
            &megan,
            json!({"organizationId": lifespan, "telecomEmail": "new.patient@example.com"}),
        )
        .await;
    assert_eq!(same_email.status, 409);

    let path = format!("/api/v1/patients/{id}?organizationId={lifespan}");
    let updated = server
        .patch(&path, &megan, json!({"nameGiven": "Janet", "identifiers": [{"system": "urn:site", "value": "P-2"}]}))
        .await;
    assert_eq!(updated.status, 200, "{:?}", updated.body);
    assert_eq!(updated.body["nameGiven"], "Janet");
    assert_eq!(updated.body["nameFamily"], "Doe");
    assert_eq!(updated.body["identifiers"].as_array().unwrap().len(), 1);
    assert_eq!(updated.body["identifiers"][0]["value"], "P-2");
    let taken =
        server.patch(&path, &megan, json!({"identifiers": [{"system": "urn:oid:1.2.3.4", "value": "E1234"}]})).await;
    assert_eq!(taken.status, 400);
    assert_eq!(server.patch(&path, &victor, json!({"nameGiven": "x"})).await.status, 403);
    let no_org = server.patch(&format!("/api/v1/patients/{id}"), &megan, json!({"nameGiven": "x"})).await;
    assert_eq!(no_org.status, 400);
    assert_eq!(no_org.detail(), "organizationId required");
    assert_eq!(
        server.patch(&format!("/api/v1/patients/999999?organizationId={lifespan}"), &megan, json!({})).await.status,
        404
    );

    // adding to a second organization needs a role there
    let cosmic = server.id_of("organizations", "name", "Cosmic Cardio Lab").await;
    let add = format!("/api/v1/patients/{id}/global_add_organization?organizationId={cosmic}");
    assert_eq!(server.patch(&add, &megan, json!({})).await.status, 403);
    let tom = server.token(seeded::TOM).await;
    let added = server.patch(&add, &tom, json!({})).await;
    assert_eq!(added.status, 200);
    assert_eq!(added.body["organizations"].as_array().unwrap().len(), 2);
    assert_eq!(server.patch(&add, &tom, json!({})).await.status, 400);

    assert_eq!(
        server.delete(&format!("/api/v1/patients/{id}"), &megan, None).await.detail(),
        "organizationId required"
    );
    assert_eq!(server.delete(&path, &victor, None).await.status, 403);
    assert_eq!(server.delete(&path, &megan, None).await.status, 204);
    // still in Cosmic Cardio Lab, so the patient remains
    assert_eq!(server.get(&format!("/api/v1/patients/{id}"), &tom).await.status, 200);
    assert_eq!(server.delete(&format!("/api/v1/patients/{id}?organizationId={cosmic}"), &tom, None).await.status, 204);
    assert_eq!(server.get(&format!("/api/v1/patients/{id}"), &tom).await.status, 403, "gone");
    let user_left: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE email = 'new.patient@example.com')")
            .fetch_one(&server.db.pool)
            .await
            .unwrap();
    assert!(!user_left, "a patient in no organization is deleted with the account");
}
