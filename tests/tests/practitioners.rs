//! `/api/v1/practitioners` (superuser only).

use jhe_tests::{TestServer, seeded};
use serde_json::json;

#[tokio::test]
async fn superuser_manages_practitioners() {
    let server = TestServer::start().await.unwrap();
    let admin = server.token(seeded::ADMIN).await;
    let mary = server.token(seeded::MARY).await;
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await;

    assert_eq!(server.get("/api/v1/practitioners", &mary).await.status, 403);
    assert_eq!(server.get("/api/v1/practitioners", &server.token(seeded::PETER).await).await.status, 403);
    let listed = server.get("/api/v1/practitioners", &admin).await;
    assert_eq!(listed.status, 200);
    assert_eq!(listed.body["count"], 6);
    let first = &listed.body["results"][0];
    let keys: Vec<&str> = first.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["id", "jheUserId", "nameFamily", "nameGiven", "telecomEmail", "organizations"]);

    let created = server
        .post("/api/v1/practitioners", &admin, json!({"telecomEmail": "dr.new@example.com", "nameFamily": "New", "name_given": "Dr", "organizationId": lifespan}))
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    assert_eq!(created.body["organizations"][0]["id"], lifespan);
    let id = created.body["id"].as_i64().unwrap();
    let users = server.get(&format!("/api/v1/organizations/{lifespan}/users"), &mary).await;
    assert!(users.body.as_array().unwrap().iter().any(|u| u["email"] == "dr.new@example.com" && u["role"] == "member"));

    assert_eq!(server.post("/api/v1/practitioners", &admin, json!({"nameFamily": "x"})).await.status, 400);
    assert_eq!(server.post("/api/v1/practitioners", &admin, json!({"telecomEmail": "bad"})).await.status, 400);
    let patient_email = server.post("/api/v1/practitioners", &admin, json!({"telecomEmail": seeded::PETER})).await;
    assert_eq!(patient_email.status, 409);
    assert_eq!(server.post("/api/v1/practitioners", &mary, json!({"telecomEmail": "x@example.com"})).await.status, 403);

    let path = format!("/api/v1/practitioners/{id}");
    assert_eq!(server.get(&path, &admin).await.body["telecomEmail"], "dr.new@example.com");
    let renamed = server.patch(&path, &admin, json!({"nameFamily": "Renamed"})).await;
    assert_eq!(renamed.body["nameFamily"], "Renamed");
    assert_eq!(server.patch(&path, &mary, json!({"nameFamily": "x"})).await.status, 403);
    assert_eq!(server.delete(&path, &mary, None).await.status, 403);
    assert_eq!(server.delete(&path, &admin, None).await.status, 204);
    assert_eq!(server.get(&path, &admin).await.status, 404);
    assert_eq!(server.delete(&path, &admin, None).await.status, 404);
}
