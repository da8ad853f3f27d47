//! `/api/v1/users`: profiles, and accounts that only their owner or a superuser may read or change.

use jhe_tests::{TestServer, seeded};
use serde_json::json;

#[tokio::test]
async fn profile_of_practitioner_and_patient() {
    let server = TestServer::start().await.unwrap();
    let mary = server.get("/api/v1/users/profile", &server.token(seeded::MARY).await).await;
    assert_eq!(mary.status, 200);
    let keys: Vec<&str> = mary.body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "email", "firstName", "lastName", "patient", "userType", "isSuperuser", "settings"]);
    assert_eq!(mary.body["userType"], "practitioner");
    assert_eq!(mary.body["isSuperuser"], false);

    let admin = server.get("/api/v1/users/profile", &server.token(seeded::ADMIN).await).await;
    assert_eq!(admin.body["isSuperuser"], true);

    let peter = server.get("/api/v1/users/profile", &server.token(seeded::PETER).await).await;
    assert_eq!(peter.status, 200);
    assert_eq!(peter.body["userType"], "patient");
    let patient = peter.body["patient"].as_object().unwrap();
    let keys: Vec<&str> = patient.keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "jheUserId", "identifiers", "organizations"]);
    assert!(peter.body.get("email").is_none(), "patient profile strips PHI");
}

#[tokio::test]
async fn practitioners_settings_remember_the_current_view() {
    let server = TestServer::start().await.unwrap();
    let megan = server.token(seeded::MEGAN).await;
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await;
    let study = server.id_of("studies", "name", "Lifespan Study on BP").await;
    server.get(&format!("/api/v1/patients?organizationId={lifespan}&studyId={study}"), &megan).await;
    let profile = server.get("/api/v1/users/profile", &megan).await;
    assert_eq!(profile.body["settings"]["currentOrganizationId"], lifespan);
    assert_eq!(profile.body["settings"]["currentStudyId"], study);
    server.get(&format!("/api/v1/patients?organization_id={lifespan}"), &megan).await;
    let profile = server.get("/api/v1/users/profile", &megan).await;
    assert!(profile.body["settings"].get("currentStudyId").is_none());
}

#[tokio::test]
async fn users_read_and_edit_only_themselves_unless_superuser() {
    let server = TestServer::start().await.unwrap();
    let megan = server.token(seeded::MEGAN).await;
    let admin = server.token(seeded::ADMIN).await;
    let megan_id = server.id_of("users", "email", seeded::MEGAN).await;
    let mary_id = server.id_of("users", "email", seeded::MARY).await;

    let listed = server.get("/api/v1/users", &megan).await;
    assert_eq!(listed.body["count"], 1);
    assert_eq!(listed.body["results"][0]["email"], seeded::MEGAN);
    let all = server.get("/api/v1/users", &admin).await;
    assert_eq!(all.body["count"], 11);
    assert_eq!(server.get(&format!("/api/v1/users?email={}", seeded::MARY), &admin).await.body["count"], 1);

    assert_eq!(server.get(&format!("/api/v1/users/{megan_id}"), &megan).await.status, 200);
    assert_eq!(server.get(&format!("/api/v1/users/{mary_id}"), &megan).await.status, 403);
    assert_eq!(server.get(&format!("/api/v1/users/{mary_id}"), &admin).await.status, 200);
    assert_eq!(server.get("/api/v1/users/999999", &admin).await.status, 404);

    let renamed =
        server.patch(&format!("/api/v1/users/{megan_id}"), &megan, json!({"firstName": "Meg", "last_name": "M"})).await;
    assert_eq!(renamed.status, 200);
    assert_eq!(renamed.body["firstName"], "Meg");
    assert_eq!(renamed.body["lastName"], "M");
    let escalate = server.patch(&format!("/api/v1/users/{megan_id}"), &megan, json!({"isSuperuser": true})).await;
    assert_eq!(escalate.status, 403);
    assert_eq!(server.patch(&format!("/api/v1/users/{mary_id}"), &megan, json!({"firstName": "x"})).await.status, 403);
    assert_eq!(
        server.patch(&format!("/api/v1/users/{megan_id}"), &admin, json!({"isSuperuser": "yes"})).await.status,
        400
    );
    let promoted = server.patch(&format!("/api/v1/users/{megan_id}"), &admin, json!({"isSuperuser": true})).await;
    assert_eq!(promoted.body["isSuperuser"], true);
}

#[tokio::test]
async fn create_and_delete_users_is_for_superusers() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let admin = server.token(seeded::ADMIN).await;
    let body = json!({"email": "new.person@example.com", "firstName": "New", "lastName": "Person",
                      "userType": "practitioner", "password": "s3cret-Pass"});
    assert_eq!(server.post("/api/v1/users", &mary, body.clone()).await.status, 403);
    let created = server.post("/api/v1/users", &admin, body.clone()).await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["userType"], "practitioner");
    let duplicate = server.post("/api/v1/users", &admin, body).await;
    assert_eq!(duplicate.status, 409);
    assert!(duplicate.detail().contains("already exists"));
    let bad_email = server.post("/api/v1/users", &admin, json!({"email": "nope"})).await;
    assert_eq!(bad_email.status, 400);
    assert!(bad_email.detail().contains("not a valid email"));
    let bad_type = server.post("/api/v1/users", &admin, json!({"email": "a@b.org", "user_type": "robot"})).await;
    assert_eq!(bad_type.status, 400);
    assert!(bad_type.detail().starts_with("userType:"));

    let id = created.body["id"].as_i64().unwrap();
    // a new practitioner can log in with the password given: argon2 hash in place
    let token = server.token("new.person@example.com").await;
    assert_eq!(server.get("/api/v1/users/profile", &token).await.body["email"], "new.person@example.com");
    assert_eq!(server.delete(&format!("/api/v1/users/{id}"), &mary, None).await.status, 403);
    assert_eq!(server.delete(&format!("/api/v1/users/{id}"), &admin, None).await.status, 204);
    assert_eq!(server.delete(&format!("/api/v1/users/{id}"), &admin, None).await.status, 404);
    assert_eq!(server.get("/api/v1/users/profile", &token).await.status, 401, "tokens go with the account");
    let admin_id = server.id_of("users", "email", seeded::ADMIN).await;
    assert_eq!(server.delete(&format!("/api/v1/users/{admin_id}"), &admin, None).await.status, 400);
}

#[tokio::test]
async fn search_by_email() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let found = server.get(&format!("/api/v1/users/search_by_email?email={}", seeded::MEGAN), &mary).await;
    assert_eq!(found.status, 200);
    assert_eq!(found.body["email"], seeded::MEGAN);
    assert!(found.body["id"].is_i64());
    let missing = server.get("/api/v1/users/search_by_email?email=nobody@example.com", &mary).await;
    assert_eq!(missing.status, 200);
    assert!(missing.body.get("id").is_none(), "the web UI tests `id === undefined`");
    assert_eq!(server.get("/api/v1/users/search_by_email", &mary).await.status, 400);
    let peter = server.token(seeded::PETER).await;
    assert_eq!(server.get("/api/v1/users/search_by_email?email=a@b.org", &peter).await.status, 403);
}
