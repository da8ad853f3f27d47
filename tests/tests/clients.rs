//! `/api/v1/clients` (patient apps and their data sources), `/patients/{id}/consolidated_clients` and
//! `/api/v1/practitioner_clients` (practitioners' API keys).

use jhe_tests::{TestServer, seeded};
use serde_json::{Value, json};

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value.as_object().map(|o| o.keys().map(String::as_str).collect()).unwrap_or_default();
    keys.sort_unstable();
    keys
}

fn is_alphanumeric(text: &str, length: usize) -> bool {
    text.len() == length && text.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Standard base64 with padding (the tests crate has no base64 dependency).
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let (mut bits, mut held, mut out) = (0u32, 0u32, Vec::new());
    for byte in text.bytes().filter(|b| *b != b'=') {
        let value = ALPHABET.iter().position(|a| *a == byte).unwrap_or_else(|| panic!("not base64: {text}"));
        bits = (bits << 6) | value as u32;
        held += 6;
        if held >= 8 {
            held -= 8;
            out.push((bits >> held) as u8);
            bits &= (1 << held) - 1;
        }
    }
    out
}

#[tokio::test]
async fn practitioners_read_patient_apps_without_secrets() {
    let server = TestServer::start().await.unwrap();
    let victor = server.token(seeded::VICTOR).await;
    let carex = server.id_of("oauth_clients", "client_id", "carex").await;
    let admin_ui = server.id_of("oauth_clients", "client_id", "jhe-admin-ui").await;

    let list = server.get("/api/v1/clients?pageSize=1", &victor).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    // only patient apps, newest first, and pages of 1000 whatever pageSize says
    assert_eq!(list.body["count"], 3);
    let results = list.body["results"].as_array().unwrap();
    let ids: Vec<i64> = results.iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert!(!ids.contains(&admin_ui));
    for client in results {
        assert_eq!(keys(client), ["clientId", "id", "invitationUrl", "name"]);
    }
    assert!(!list.body.to_string().to_lowercase().contains("secret"));

    let one = server.get(&format!("/api/v1/clients/{carex}"), &victor).await;
    assert_eq!(one.status, 200);
    assert_eq!(
        one.body,
        json!({"id": carex, "name": "CareX", "clientId": "carex", "invitationUrl": "https://carex.ai/invitation/CODE"})
    );
    assert_eq!(server.get(&format!("/api/v1/clients/{admin_ui}"), &victor).await.status, 404);
    let missing = server.get("/api/v1/clients/999999", &victor).await;
    assert_eq!((missing.status, missing.detail().as_str()), (404, "No Client matches the given query."));

    let sources = server.get(&format!("/api/v1/clients/{carex}/data_sources"), &victor).await;
    assert_eq!(sources.status, 200);
    let names: Vec<&str> = sources.body.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["CareX", "Questionnaire"]);
    assert_eq!(keys(&sources.body[0]), ["id", "name", "supportedScopes", "type"]);
    assert_eq!(server.get("/api/v1/clients/999999/data_sources", &victor).await.status, 404);

    let peter = server.token(seeded::PETER).await;
    for path in [
        "/api/v1/clients".to_owned(),
        format!("/api/v1/clients/{carex}"),
        format!("/api/v1/clients/{carex}/data_sources"),
    ] {
        assert_eq!(server.get(&path, &peter).await.status, 403, "{path}");
        assert_eq!(server.request("GET", &path, None, None).await.status, 401, "{path}");
    }
}

#[tokio::test]
async fn superusers_create_change_and_delete_patient_apps() {
    let server = TestServer::start().await.unwrap();
    let admin = server.token(seeded::ADMIN).await;
    let body =
        json!({"name": "Pulse", "clientId": "pulse-app", "invitationUrl": "https://pulse.example/join?code=CODE"});

    let made = server.post("/api/v1/clients", &admin, body.clone()).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(keys(&made.body), ["clientId", "id", "invitationUrl", "name"]);
    assert_eq!(made.body["clientId"], "pulse-app");
    let id = made.body["id"].as_i64().unwrap();
    let row: (String, String, String, bool, String, String) = sqlx::query_as(
        "SELECT client_type, grant_type, redirect_uris, skip_authorization, algorithm, client_secret_hash
         FROM oauth_clients WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    let site: String = sqlx::query_scalar("SELECT value_string FROM settings WHERE key = 'site.url'")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(
        row,
        (
            "public".into(),
            "authorization-code".into(),
            format!("{site}/auth/callback"),
            true,
            "RS256".into(),
            String::new()
        )
    );

    // snake_case keys work too
    let snake = server
        .post(
            "/api/v1/clients",
            &admin,
            json!({"name": "Beat", "client_id": "beat", "invitation_url": "beat://invite/CODE"}),
        )
        .await;
    assert_eq!((snake.status, snake.body["clientId"].as_str()), (201, Some("beat")));

    let duplicate = server.post("/api/v1/clients", &admin, body.clone()).await;
    assert_eq!(duplicate.status, 409);
    assert!(duplicate.detail().contains("pulse-app"), "{}", duplicate.detail());
    let no_code = server
        .post(
            "/api/v1/clients",
            &admin,
            json!({"name": "X", "clientId": "x", "invitationUrl": "https://x.example/join"}),
        )
        .await;
    assert_eq!(no_code.status, 400);
    assert!(no_code.detail().starts_with("invitationUrl: must contain the placeholder CODE"), "{}", no_code.detail());
    let missing = server.post("/api/v1/clients", &admin, json!({"name": "X", "clientId": "x"})).await;
    assert_eq!((missing.status, missing.detail().as_str()), (400, "invitationUrl: this field is required"));
    let bad_id = server
        .post(
            "/api/v1/clients",
            &admin,
            json!({"name": "X", "clientId": "a b", "invitationUrl": "https://x.example/CODE"}),
        )
        .await;
    assert_eq!(bad_id.status, 400);
    assert!(bad_id.detail().starts_with("clientId: "));
    let not_url =
        server.post("/api/v1/clients", &admin, json!({"name": "X", "clientId": "x", "invitationUrl": "CODE"})).await;
    assert_eq!((not_url.status, not_url.detail().as_str()), (400, "invitationUrl: `CODE` is not an absolute URL"));
    let secret = server
        .post(
            "/api/v1/clients",
            &admin,
            json!({"name": "X", "clientId": "x", "invitationUrl": "https://x/CODE", "clientSecret": "s"}),
        )
        .await;
    assert_eq!(secret.status, 400);

    let path = format!("/api/v1/clients/{id}");
    let changed =
        server.patch(&path, &admin, json!({"name": "Pulse 2", "invitationUrl": "https://pulse.example/v2/CODE"})).await;
    assert_eq!(changed.status, 200);
    assert_eq!(changed.body["name"], "Pulse 2");
    assert_eq!(changed.body["invitationUrl"], "https://pulse.example/v2/CODE");
    let renamed = server.patch(&path, &admin, json!({"client_id": "pulse-2"})).await;
    assert_eq!((renamed.status, renamed.body["clientId"].as_str()), (200, Some("pulse-2")));
    let taken = server.patch(&path, &admin, json!({"clientId": "carex"})).await;
    assert_eq!(taken.status, 409);
    let no_code = server.patch(&path, &admin, json!({"invitationUrl": "https://pulse.example/"})).await;
    assert_eq!(no_code.status, 400);
    let blank = server.patch(&path, &admin, json!({"name": ""})).await;
    assert_eq!((blank.status, blank.detail().as_str()), (400, "name: may not be blank"));
    assert_eq!(server.patch("/api/v1/clients/999999", &admin, json!({"name": "X"})).await.status, 404);

    for email in [seeded::MARY, seeded::VICTOR, seeded::PETER] {
        let token = server.token(email).await;
        assert_eq!(server.post("/api/v1/clients", &token, body.clone()).await.status, 403, "{email}");
        assert_eq!(server.patch(&path, &token, json!({"name": "X"})).await.status, 403, "{email}");
        assert_eq!(server.delete(&path, &token, None).await.status, 403, "{email}");
    }
    assert_eq!(server.request("POST", "/api/v1/clients", None, Some(body)).await.status, 401);

    assert_eq!(server.delete(&path, &admin, None).await.status, 204);
    assert_eq!(server.get(&path, &admin).await.status, 404);
    assert_eq!(server.delete(&path, &admin, None).await.status, 404);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM oauth_clients WHERE id = $1")
        .bind(id)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn superusers_link_data_sources_to_patient_apps() {
    let server = TestServer::start().await.unwrap();
    let admin = server.token(seeded::ADMIN).await;
    let carex = server.id_of("oauth_clients", "client_id", "carex").await;
    let oura = server.id_of("data_sources", "name", "Oura").await;
    let dexcom = server.id_of("data_sources", "name", "Dexcom").await;
    let path = format!("/api/v1/clients/{carex}/data_sources");

    let linked = server.post(&path, &admin, json!({"dataSourceId": oura})).await;
    assert_eq!(linked.status, 201, "{:?}", linked.body);
    assert_eq!(keys(&linked.body), ["client_id", "dataSourceId", "id"]);
    assert_eq!((linked.body["client_id"].as_i64(), linked.body["dataSourceId"].as_i64()), (Some(carex), Some(oura)));
    let snake = server.post(&path, &admin, json!({"data_source_id": dexcom})).await;
    assert_eq!(snake.status, 201);
    assert_eq!(server.get(&path, &admin).await.body.as_array().unwrap().len(), 4);

    let duplicate = server.post(&path, &admin, json!({"data_source_id": oura})).await;
    assert_eq!(duplicate.status, 409);
    let missing = server.post(&path, &admin, json!({})).await;
    assert_eq!((missing.status, missing.detail().as_str()), (400, "dataSourceId: this field is required"));
    let unknown = server.post(&path, &admin, json!({"dataSourceId": 999999})).await;
    assert_eq!((unknown.status, unknown.detail().as_str()), (400, "dataSourceId: data source 999999 does not exist"));
    assert_eq!(
        server.post("/api/v1/clients/999999/data_sources", &admin, json!({"dataSourceId": oura})).await.status,
        404
    );

    for email in [seeded::MARY, seeded::VICTOR, seeded::PETER] {
        let token = server.token(email).await;
        assert_eq!(server.post(&path, &token, json!({"dataSourceId": oura})).await.status, 403, "{email}");
        assert_eq!(server.delete(&path, &token, Some(json!({"dataSourceId": oura}))).await.status, 403, "{email}");
    }
    assert_eq!(server.request("POST", &path, None, Some(json!({"dataSourceId": oura}))).await.status, 401);

    assert_eq!(server.delete(&path, &admin, Some(json!({"dataSourceId": oura}))).await.status, 204);
    assert_eq!(server.delete(&format!("{path}?dataSourceId={dexcom}"), &admin, None).await.status, 204);
    let gone = server.delete(&path, &admin, Some(json!({"data_source_id": oura}))).await;
    assert_eq!((gone.status, gone.detail().as_str()), (404, "No ClientDataSource matches the given query."));
    assert_eq!(server.get(&path, &admin).await.body.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn consolidated_clients_list_the_apps_of_a_patients_studies_with_invitations() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let peter_id: i64 =
        sqlx::query_scalar("SELECT p.id FROM patients p JOIN users u ON u.id = p.user_id WHERE u.email = $1")
            .bind(seeded::PETER)
            .fetch_one(&server.db.pool)
            .await
            .unwrap();
    let carex = server.id_of("oauth_clients", "client_id", "carex").await;
    for _ in 0..2 {
        let issued =
            server.post("/api/v1/invitation", &mary, json!({"patient_id": peter_id, "client_id": carex})).await;
        assert_eq!(issued.status, 201, "{:?}", issued.body);
    }
    let path = format!("/api/v1/patients/{peter_id}/consolidated_clients");

    let answer = server.get(&path, &mary).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let clients = answer.body.as_array().unwrap();
    // Peter's two Lifespan studies use CareX (both) and Patient Access: each app once
    let names: Vec<&str> = clients.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["CareX", "Patient Access"]);
    assert_eq!(keys(&clients[0]), ["clientId", "id", "invitationUrl", "name", "patientInvitations"]);
    let invitations = clients[0]["patientInvitations"].as_array().unwrap();
    assert_eq!(invitations.len(), 2);
    assert_eq!(
        keys(&invitations[0]),
        ["client_id", "id", "invitationLink", "lastUpdated", "patientId", "status", "token", "tokenHash"]
    );
    // newest first: the second invitation replaced the first
    assert_eq!(
        (invitations[0]["status"].as_str(), invitations[1]["status"].as_str()),
        (Some("issued"), Some("reissued"))
    );
    assert!(invitations[0]["token"].is_null());
    assert_eq!(clients[1]["patientInvitations"], json!([]));

    let own = server.get(&path, &server.token(seeded::PETER).await).await;
    assert_eq!(own.status, 200);
    assert_eq!(own.body.as_array().unwrap().len(), 2);
    assert_eq!(server.get(&path, &server.token(seeded::VICTOR).await).await.status, 200);

    for email in [seeded::PAMELA, seeded::MARK] {
        assert_eq!(server.get(&path, &server.token(email).await).await.status, 403, "{email}");
    }
    assert_eq!(server.request("GET", &path, None, None).await.status, 401);
    // an id that does not exist reads like a patient of another organization
    assert_eq!(server.get("/api/v1/patients/999999/consolidated_clients", &mary).await.status, 403);
    let admin = server.token(seeded::ADMIN).await;
    assert_eq!(server.get("/api/v1/patients/999999/consolidated_clients", &admin).await.status, 404);
}

#[tokio::test]
async fn practitioners_manage_their_own_api_keys() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;

    let made = server.post("/api/v1/practitioner_clients", &mary, json!({"label": "notebook"})).await;
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(keys(&made.body), ["created", "id", "key", "label", "name"]);
    assert_eq!(made.body["label"], "notebook");
    assert!(made.body["created"].as_str().unwrap().ends_with('Z'));
    let id = made.body["id"].as_i64().unwrap();

    // key = base64(client_id:client_secret), shown only now
    let key = String::from_utf8(base64_decode(made.body["key"].as_str().unwrap())).unwrap();
    let (client_id, secret) = key.split_once(':').unwrap();
    assert!(is_alphanumeric(client_id, 16), "{client_id}");
    assert!(is_alphanumeric(secret, 32), "{secret}");
    let (kind, grant, hash, owner): (String, String, String, String) = sqlx::query_as(
        "SELECT c.client_type, c.grant_type, c.client_secret_hash, u.email
         FROM oauth_clients c JOIN users u ON u.id = c.owner_user_id WHERE c.client_id = $1",
    )
    .bind(client_id)
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    assert_eq!((kind.as_str(), grant.as_str(), owner.as_str()), ("confidential", "client-credentials", seeded::MARY));
    assert!(hash.starts_with("$argon2") && !hash.contains(secret));
    assert!(jhe_catalog::passwords::verify_password(secret, &hash));

    let path = format!("/api/v1/practitioner_clients/{id}");
    let one = server.get(&path, &mary).await;
    assert_eq!(one.status, 200);
    assert_eq!(keys(&one.body), ["created", "id", "key", "label", "name"]);
    assert!(one.body["key"].is_null());
    let list = server.get("/api/v1/practitioner_clients", &mary).await;
    assert_eq!(list.body["count"], 1);
    assert!(list.body["results"][0]["key"].is_null());

    let relabelled = server.patch(&path, &mary, json!({"label": "analysis"})).await;
    assert_eq!((relabelled.status, relabelled.body["label"].as_str()), (200, Some("analysis")));
    let no_label = server.patch(&path, &mary, json!({})).await;
    assert_eq!((no_label.status, no_label.detail().as_str()), (400, "label: this field is required"));
    let no_label = server.post("/api/v1/practitioner_clients", &mary, json!({"label": " "})).await;
    assert_eq!((no_label.status, no_label.detail().as_str()), (400, "label: may not be blank"));
    assert_eq!(server.put(&path, &mary, json!({"label": "x"})).await.status, 405);

    // someone else's key does not exist for them
    let megan = server.token(seeded::MEGAN).await;
    assert_eq!(server.get(&path, &megan).await.status, 404);
    assert_eq!(server.patch(&path, &megan, json!({"label": "mine"})).await.status, 404);
    assert_eq!(server.delete(&path, &megan, None).await.status, 404);
    assert_eq!(server.get("/api/v1/practitioner_clients", &megan).await.body["count"], 0);
    let peter = server.token(seeded::PETER).await;
    assert_eq!(server.get("/api/v1/practitioner_clients", &peter).await.status, 403);
    assert_eq!(server.post("/api/v1/practitioner_clients", &peter, json!({"label": "x"})).await.status, 403);
    assert_eq!(server.get(&path, &peter).await.status, 403);
    assert_eq!(server.request("GET", "/api/v1/practitioner_clients", None, None).await.status, 401);
    assert_eq!(server.get("/api/v1/practitioner_clients/999999", &mary).await.status, 404);

    assert_eq!(server.delete(&path, &mary, None).await.status, 204);
    assert_eq!(server.get(&path, &mary).await.status, 404);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM oauth_clients WHERE client_id = $1")
        .bind(client_id)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}
