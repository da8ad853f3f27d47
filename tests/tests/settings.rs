//! `/api/v1/jhe_settings`: superuser-only typed settings, and the catalog's `setting_string`.

use jhe_tests::{TestServer, seeded};
use serde_json::{Value, json};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    keys.sort_unstable();
    keys
}

#[tokio::test]
async fn superusers_list_and_read_settings() {
    let server = TestServer::start().await.unwrap();
    let admin = server.token(seeded::ADMIN).await;
    let seeded_count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM settings").fetch_one(&server.db.pool).await.unwrap();

    // pages of 1000 whatever pageSize says
    let list = server.get("/api/v1/jhe_settings?pageSize=2", &admin).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.body["count"], seeded_count);
    let results = list.body["results"].as_array().unwrap();
    assert_eq!(results.len() as i64, seeded_count);
    assert!(list.body["next"].is_null());
    let site = results.iter().find(|s| s["key"] == "site.url").unwrap();
    assert_eq!(keys(site), ["id", "key", "lastUpdated", "resolvedValue", "valueType"]);
    assert_eq!(site["valueType"], "string");
    assert!(site["resolvedValue"].as_str().unwrap().starts_with("http"));
    assert!(site["lastUpdated"].as_str().unwrap().ends_with('Z'));
    let days = results.iter().find(|s| s["key"] == "auth.patient.invitation_expiration_days").unwrap();
    assert_eq!(days["resolvedValue"], 7);
    let ow = results.iter().find(|s| s["key"] == "module.ow").unwrap();
    assert_eq!(ow["resolvedValue"], false);

    let id = site["id"].as_i64().unwrap();
    let one = server.get(&format!("/api/v1/jhe_settings/{id}"), &admin).await;
    assert_eq!((one.status, &one.body), (200, site));
    let missing = server.get("/api/v1/jhe_settings/999999", &admin).await;
    assert_eq!((missing.status, missing.detail().as_str()), (404, "No JheSetting matches the given query."));

    for email in [seeded::MARY, seeded::VICTOR, seeded::PETER] {
        let token = server.token(email).await;
        assert_eq!(server.get("/api/v1/jhe_settings", &token).await.status, 403, "{email}");
        assert_eq!(server.get(&format!("/api/v1/jhe_settings/{id}"), &token).await.status, 403, "{email}");
    }
    assert_eq!(server.request("GET", "/api/v1/jhe_settings", None, None).await.status, 401);

    // the helper other endpoints use for `site.url`
    let url = jhe_catalog::setting_string(&server.db.pool, "site.url").await.unwrap();
    assert_eq!(url.as_deref(), site["resolvedValue"].as_str());
    assert_eq!(jhe_catalog::setting_string(&server.db.pool, "module.ow").await.unwrap(), None);
    assert_eq!(jhe_catalog::setting_string(&server.db.pool, "no.such.key").await.unwrap(), None);
}

#[tokio::test]
async fn superusers_write_settings_with_typed_values() {
    let server = TestServer::start().await.unwrap();
    let admin = server.token(seeded::ADMIN).await;

    // camelCase and snake_case keys, values coerced by type
    for (body, resolved) in [
        (json!({"key": "test.int", "valueType": "int", "value": "42"}), json!(42)),
        (json!({"key": "test.bool", "value_type": "bool", "value": "yes"}), json!(true)),
        (json!({"key": "test.float", "valueType": "float", "value": 1.5}), json!(1.5)),
        (json!({"key": "test.string", "valueType": "string", "value": 3}), json!("3")),
        (json!({"key": "test.json", "valueType": "json", "value": ["a", {"b": 1}]}), json!(["a", {"b": 1}])),
    ] {
        let made = server.post("/api/v1/jhe_settings", &admin, body.clone()).await;
        assert_eq!(made.status, 201, "{body}: {:?}", made.body);
        assert_eq!(keys(&made.body), ["id", "key", "lastUpdated", "resolvedValue", "valueType"]);
        assert_eq!(made.body["resolvedValue"], resolved, "{body}");
    }

    let bad =
        server.post("/api/v1/jhe_settings", &admin, json!({"key": "x", "valueType": "int", "value": "abc"})).await;
    assert_eq!((bad.status, bad.detail().as_str()), (400, "value: `abc` is not a valid int"));
    let bad =
        server.post("/api/v1/jhe_settings", &admin, json!({"key": "x", "valueType": "bool", "value": "maybe"})).await;
    assert_eq!(bad.status, 400);
    assert!(bad.detail().starts_with("value: "));
    let bad = server.post("/api/v1/jhe_settings", &admin, json!({"key": "x", "valueType": "date", "value": "1"})).await;
    assert_eq!(bad.status, 400);
    assert!(bad.detail().starts_with("valueType: `date` is not a valid choice"), "{}", bad.detail());
    let bad = server.post("/api/v1/jhe_settings", &admin, json!({"key": "x", "valueType": "int"})).await;
    assert_eq!((bad.status, bad.detail().as_str()), (400, "value: this field is required"));
    let bad = server.post("/api/v1/jhe_settings", &admin, json!({"valueType": "int", "value": 1})).await;
    assert_eq!((bad.status, bad.detail().as_str()), (400, "key: this field is required"));
    let bad = server
        .post("/api/v1/jhe_settings", &admin, json!({"key": "x", "valueType": "int", "value": 1, "settingId": 3}))
        .await;
    assert_eq!(bad.status, 400);
    let duplicate = server
        .post("/api/v1/jhe_settings", &admin, json!({"key": "site.url", "valueType": "string", "value": "x"}))
        .await;
    assert_eq!(
        (duplicate.status, duplicate.detail().as_str()),
        (409, "key: a setting with the key `site.url` already exists")
    );

    let id = server.id_of("settings", "key", "test.int").await;
    let path = format!("/api/v1/jhe_settings/{id}");
    // a value alone keeps the stored type
    let changed = server.patch(&path, &admin, json!({"value": "7"})).await;
    assert_eq!((changed.status, &changed.body["resolvedValue"]), (200, &json!(7)));
    let retyped =
        server.patch(&path, &admin, json!({"value_type": "float", "value": "2.5", "key": "test.ratio"})).await;
    assert_eq!(retyped.status, 200);
    assert_eq!(
        (&retyped.body["valueType"], &retyped.body["resolvedValue"], &retyped.body["key"]),
        (&json!("float"), &json!(2.5), &json!("test.ratio"))
    );
    let stale: (Option<i64>, Option<f64>) = sqlx::query_as("SELECT value_int, value_float FROM settings WHERE id = $1")
        .bind(id)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(stale, (None, Some(2.5)));
    let put = server.put(&path, &admin, json!({"valueType": "bool", "value": false})).await;
    assert_eq!((put.status, &put.body["resolvedValue"]), (200, &json!(false)));
    let no_value = server.patch(&path, &admin, json!({"valueType": "int"})).await;
    assert_eq!((no_value.status, no_value.detail().as_str()), (400, "value: required when changing valueType"));
    let wrong = server.patch(&path, &admin, json!({"value": "perhaps"})).await;
    assert_eq!(wrong.status, 400);
    let taken = server.patch(&path, &admin, json!({"key": "site.url"})).await;
    assert_eq!(taken.status, 409);
    let blank = server.patch(&path, &admin, json!({"key": ""})).await;
    assert_eq!((blank.status, blank.detail().as_str()), (400, "key: may not be blank"));
    assert_eq!(server.patch("/api/v1/jhe_settings/999999", &admin, json!({"value": 1})).await.status, 404);

    for email in [seeded::MARY, seeded::MEGAN, seeded::PETER] {
        let token = server.token(email).await;
        assert_eq!(
            server
                .post("/api/v1/jhe_settings", &token, json!({"key": "y", "valueType": "int", "value": 1}))
                .await
                .status,
            403
        );
        assert_eq!(server.patch(&path, &token, json!({"value": true})).await.status, 403, "{email}");
        assert_eq!(server.delete(&path, &token, None).await.status, 403, "{email}");
    }
    assert_eq!(server.request("DELETE", &path, None, None).await.status, 401);

    assert_eq!(server.delete(&path, &admin, None).await.status, 204);
    assert_eq!(server.get(&path, &admin).await.status, 404);
    assert_eq!(server.delete(&path, &admin, None).await.status, 404);
}
