//! `/api/v1/data_sources`: reads for practitioners, writes for superusers, supported scopes.

use jhe_tests::{TestServer, seeded};
use serde_json::{Value, json};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    keys.sort_unstable();
    keys
}

fn find<'a>(items: &'a Value, name: &str) -> &'a Value {
    items.as_array().and_then(|a| a.iter().find(|i| i["name"] == name)).unwrap_or_else(|| panic!("{name} in {items}"))
}

#[tokio::test]
async fn practitioners_read_data_sources_with_their_scopes() {
    let server = TestServer::start().await.unwrap();
    let victor = server.token(seeded::VICTOR).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;

    let list = server.get("/api/v1/data_sources", &victor).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.body["count"], 6);
    assert_eq!(keys(&list.body), ["count", "next", "previous", "results"]);
    let item = find(&list.body["results"], "CareX");
    assert_eq!(keys(item), ["id", "name", "supportedScopes", "type"]);
    assert_eq!(item["type"], "personal_device");
    let scopes = item["supportedScopes"].as_array().unwrap();
    let texts: Vec<&str> = scopes.iter().map(|s| s["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["Blood pressure", "Heart Rate"]);
    assert_eq!(keys(&scopes[0]), ["codingCode", "codingSystem", "id", "text"]);
    assert_eq!(scopes[0]["codingCode"], "omh:blood-pressure:4.0");
    let names: Vec<&str> =
        list.body["results"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    // name order as the database collates it
    let expected: Vec<String> =
        sqlx::query_scalar("SELECT name FROM data_sources ORDER BY name, id").fetch_all(&server.db.pool).await.unwrap();
    assert_eq!(names, expected);

    let paged = server.get("/api/v1/data_sources?pageSize=2", &victor).await;
    assert_eq!(paged.body["results"].as_array().unwrap().len(), 2);
    assert!(paged.body["next"].as_str().unwrap().contains("page=2"));

    // the detail carries its supported scopes (the reference always answers [] here)
    let one = server.get(&format!("/api/v1/data_sources/{carex}"), &victor).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["supportedScopes"].as_array().unwrap().len(), 2);
    assert_eq!(server.get("/api/v1/data_sources/999999", &victor).await.status, 404);

    let all = server.get("/api/v1/data_sources/all_scopes", &victor).await;
    assert_eq!(all.status, 200);
    let all = all.body.as_array().unwrap();
    assert_eq!(all.len(), 16);
    assert_eq!(all[0]["text"], "Blood glucose");
    assert_eq!(keys(&all[0]), ["codingCode", "codingSystem", "id", "text"]);

    let links = server.get(&format!("/api/v1/data_sources/{carex}/supported_scopes"), &victor).await;
    assert_eq!(links.status, 200);
    let links = links.body.as_array().unwrap();
    assert_eq!(links.len(), 2);
    assert_eq!(keys(&links[0]), ["dataSource", "id", "scopeCode"]);
    assert_eq!(keys(&links[0]["dataSource"]), ["id", "lastUpdated", "name", "type"]);
    assert_eq!(links[0]["dataSource"]["id"], carex);
    assert!(links[0]["dataSource"]["lastUpdated"].as_str().unwrap().ends_with('Z'));
    assert_eq!(keys(&links[0]["scopeCode"]), ["codingCode", "codingSystem", "id", "text"]);
    assert_eq!(server.get("/api/v1/data_sources/999999/supported_scopes", &victor).await.status, 404);

    // patients and anonymous callers
    let peter = server.token(seeded::PETER).await;
    for path in [
        "/api/v1/data_sources".to_owned(),
        format!("/api/v1/data_sources/{carex}"),
        "/api/v1/data_sources/all_scopes".to_owned(),
        format!("/api/v1/data_sources/{carex}/supported_scopes"),
    ] {
        assert_eq!(server.get(&path, &peter).await.status, 403, "{path}");
        let anonymous = server.request("GET", &path, None, None).await;
        assert_eq!(anonymous.status, 401, "{path}");
        assert_eq!(anonymous.detail(), "Authentication credentials were not provided.");
    }
}

#[tokio::test]
async fn superusers_create_change_and_delete_data_sources() {
    let server = TestServer::start().await.unwrap();
    let admin = server.token(seeded::ADMIN).await;

    let made = server.post("/api/v1/data_sources", &admin, json!({"name": "Withings"})).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(keys(&made.body), ["id", "name", "supportedScopes", "type"]);
    assert_eq!(made.body["type"], "personal_device");
    assert_eq!(made.body["supportedScopes"], json!([]));
    let id = made.body["id"].as_i64().unwrap();

    let typed =
        server.post("/api/v1/data_sources", &admin, json!({"name": "Clinic scale", "type": "medical_device"})).await;
    assert_eq!(typed.status, 201);
    assert_eq!(typed.body["type"], "medical_device");

    let bad_type = server.post("/api/v1/data_sources", &admin, json!({"name": "X", "type": "phone"})).await;
    assert_eq!(bad_type.status, 400);
    assert!(bad_type.detail().starts_with("type: `phone` is not a valid choice"), "{}", bad_type.detail());
    assert!(bad_type.detail().contains("personal_device"));
    let no_name = server.post("/api/v1/data_sources", &admin, json!({"type": "patient_app"})).await;
    assert_eq!((no_name.status, no_name.detail().as_str()), (400, "name: this field is required"));
    let unknown = server.post("/api/v1/data_sources", &admin, json!({"name": "X", "vendor": "Y"})).await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.detail().contains("vendor"));

    let path = format!("/api/v1/data_sources/{id}");
    let renamed = server.patch(&path, &admin, json!({"name": "Withings BPM", "type": "patient_app"})).await;
    assert_eq!(renamed.status, 200);
    assert_eq!(
        (renamed.body["name"].as_str(), renamed.body["type"].as_str()),
        (Some("Withings BPM"), Some("patient_app"))
    );
    let put = server.put(&path, &admin, json!({"name": "Withings"})).await;
    assert_eq!((put.status, put.body["type"].as_str()), (200, Some("patient_app")));
    let blank = server.patch(&path, &admin, json!({"name": "  "})).await;
    assert_eq!((blank.status, blank.detail().as_str()), (400, "name: may not be blank"));
    assert_eq!(server.patch("/api/v1/data_sources/999999", &admin, json!({"name": "X"})).await.status, 404);

    // only superusers write
    for email in [seeded::MARY, seeded::VICTOR, seeded::PETER] {
        let token = server.token(email).await;
        assert_eq!(server.post("/api/v1/data_sources", &token, json!({"name": "X"})).await.status, 403, "{email}");
        assert_eq!(server.patch(&path, &token, json!({"name": "X"})).await.status, 403, "{email}");
        assert_eq!(server.delete(&path, &token, None).await.status, 403, "{email}");
    }
    assert_eq!(server.request("POST", "/api/v1/data_sources", None, Some(json!({"name": "X"}))).await.status, 401);

    assert_eq!(server.delete(&path, &admin, None).await.status, 204);
    assert_eq!(server.get(&path, &admin).await.status, 404);
    assert_eq!(server.delete(&path, &admin, None).await.status, 404);

    // a data source a study uses is not deleted behind the study's back
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let in_use = server.delete(&format!("/api/v1/data_sources/{carex}"), &admin, None).await;
    assert_eq!(in_use.status, 409);
    assert!(in_use.detail().contains("Lifespan Study on BP"), "{}", in_use.detail());
    assert_eq!(server.get(&format!("/api/v1/data_sources/{carex}"), &admin).await.status, 200);
}

#[tokio::test]
async fn superusers_manage_supported_scopes() {
    let server = TestServer::start().await.unwrap();
    let admin = server.token(seeded::ADMIN).await;
    let oura = server.id_of("data_sources", "name", "Oura").await;
    let steps = server.id_of("codeable_concepts", "coding_code", "omh:step-count:3.0").await;
    let sleep = server.id_of("codeable_concepts", "coding_code", "omh:sleep-duration:2.0").await;
    let path = format!("/api/v1/data_sources/{oura}/supported_scopes");

    let added = server.post(&path, &admin, json!({"scopeCodeId": steps})).await;
    assert_eq!(added.status, 201, "{:?}", added.body);
    assert_eq!(keys(&added.body), ["dataSource", "id", "scopeCode"]);
    assert_eq!(added.body["dataSource"]["name"], "Oura");
    assert_eq!(added.body["scopeCode"]["codingCode"], "omh:step-count:3.0");
    let snake = server.post(&path, &admin, json!({"scope_code_id": sleep})).await;
    assert_eq!(snake.status, 201);

    let duplicate = server.post(&path, &admin, json!({"scope_code_id": steps})).await;
    assert_eq!(duplicate.status, 409);
    assert!(duplicate.detail().contains("already supports"));
    let missing = server.post(&path, &admin, json!({})).await;
    assert_eq!((missing.status, missing.detail().as_str()), (400, "scopeCodeId: this field is required"));
    let unknown = server.post(&path, &admin, json!({"scopeCodeId": 999999})).await;
    assert_eq!((unknown.status, unknown.detail().as_str()), (400, "scopeCodeId: scope code 999999 does not exist"));
    let not_int = server.post(&path, &admin, json!({"scopeCodeId": "steps"})).await;
    assert_eq!(not_int.status, 400);
    assert_eq!(
        server.post("/api/v1/data_sources/999999/supported_scopes", &admin, json!({"scopeCodeId": steps})).await.status,
        404
    );

    let listed = server.get(&path, &admin).await;
    assert_eq!(listed.body.as_array().unwrap().len(), 3);
    let detail = server.get(&format!("/api/v1/data_sources/{oura}"), &admin).await;
    assert_eq!(detail.body["supportedScopes"].as_array().unwrap().len(), 3);

    for email in [seeded::MARY, seeded::MEGAN, seeded::PETER] {
        let token = server.token(email).await;
        assert_eq!(server.post(&path, &token, json!({"scopeCodeId": steps})).await.status, 403, "{email}");
        assert_eq!(server.delete(&path, &token, Some(json!({"scopeCodeId": steps}))).await.status, 403, "{email}");
    }
    assert_eq!(server.request("DELETE", &path, None, Some(json!({"scopeCodeId": steps}))).await.status, 401);

    assert_eq!(server.delete(&path, &admin, Some(json!({"scopeCodeId": steps}))).await.status, 204);
    assert_eq!(server.delete(&path, &admin, Some(json!({"scope_code_id": sleep}))).await.status, 204);
    let gone = server.delete(&path, &admin, Some(json!({"scopeCodeId": steps}))).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.detail(), "No DataSourceSupportedScope matches the given query.");
    let no_id = server.delete(&path, &admin, Some(json!({}))).await;
    assert_eq!((no_id.status, no_id.detail().as_str()), (400, "scopeCodeId: this field is required"));
    assert_eq!(server.get(&path, &admin).await.body.as_array().unwrap().len(), 1);
}
