//! SMART App Launch v2 scopes over HTTP (docs/identity.md "SMART scopes"): tokens obtained through the
//! real flows (client credentials with a practitioner API key and `scope`, the invitation code flow, refresh) carry
//! their scopes; FHIR and REST requests outside them are refused with 403 (an OperationOutcome with code
//! `forbidden` on FHIR routes, `{"detail"}` on REST and on the batch endpoint, as its other errors outside
//! entries) and nothing else happens; a token without SMART scopes keeps its user's full rights.

use base64::Engine as _;
use jhe_tests::browser::{authorize_url, http};
use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{ALL_ROLES, Answer, TestDatabase, TestServer, embedded_pipeline, seeded};
use serde_json::{Value, json};
use std::time::Duration;

const PETER_ROWS: u32 = 5;

/// A form POST to `path` with an API key (as the Basic credentials, §7.5) when given.
async fn form_post(server: &TestServer, path: &str, basic_key: Option<&str>, form: &[(&str, &str)]) -> (u16, Value) {
    let authorization = basic_key.map(|key| format!("Basic {key}"));
    jhe_tests::browser::form_post(server, path, authorization.as_deref(), form).await
}

/// A client-credentials token of an API key, asking for `scope` (none when empty).
async fn key_token(server: &TestServer, key: &str, scope: &str) -> String {
    let body = server.client_credentials(key, (!scope.is_empty()).then_some(scope)).await;
    assert_eq!(body["scope"], scope, "the token response names the granted scope");
    body["access_token"].as_str().unwrap().to_owned()
}

/// An invitation of Peter to CareX (issued by Megan), redeemed asking for `scope` and exchanged at the token
/// endpoint: the token response.
async fn invited_patient_tokens(server: &TestServer, scope: &str) -> Value {
    let megan = server.token(seeded::MEGAN).await;
    let peter = server.patient_id(seeded::PETER).await;
    let (_, token) = server.invite(&megan, peter).await;
    let path =
        reqwest::Url::parse_with_params(&format!("http://x/api/v1/invitation/{token}"), &[("scope", scope)]).unwrap();
    let redeemed = server.request("POST", &format!("{}?{}", path.path(), path.query().unwrap()), None, None).await;
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.body);
    let grant = &redeemed.body["grant"];
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.as_bytes());
    let (status, body) = server.exchange_grant(grant, &verifier).await;
    assert_eq!(status, 200, "{body:?}");
    body
}

/// Peter signing in to the CareX app with his own login (authorization code with PKCE, asking for `scope`): the
/// token response.
async fn patient_login_tokens(server: &TestServer, scope: &str) -> Value {
    const REDIRECT: &str = "http://127.0.0.1:8000/auth/callback";
    let (challenge, verifier) = openidconnect::PkceCodeChallenge::new_random_sha256();
    let url = authorize_url(server, "carex", REDIRECT, scope, None, challenge.as_str());
    let back = jhe_tests::browser::Browser::at(server).authorize(url.as_str(), seeded::PETER, true).await;
    let code = back.query_pairs().find(|(k, _)| k == "code").expect("a code").1.into_owned();
    let (status, body) = server.exchange_code("carex", &code, REDIRECT, verifier.secret()).await;
    assert_eq!(status, 200, "{body:?}");
    body
}

/// A 403 OperationOutcome with issue code `forbidden` naming the missing scope.
fn assert_fhir_forbidden(answer: &Answer, needs: &str) {
    assert_eq!(answer.status, 403, "{:?}", answer.body);
    assert_eq!(answer.body["resourceType"], "OperationOutcome", "{:?}", answer.body);
    assert_eq!(answer.body["issue"][0]["code"], "forbidden", "{:?}", answer.body);
    let diagnostics = answer.body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(diagnostics.contains(&format!("(needs {needs})")), "`{diagnostics}` should name {needs}");
}

/// A 403 `{"detail"}` (and nothing else) naming the missing scope.
fn assert_rest_forbidden(answer: &Answer, needs: &str) {
    assert_eq!(answer.status, 403, "{:?}", answer.body);
    let keys: Vec<&String> = answer.body.as_object().expect("a JSON object").keys().collect();
    assert_eq!(keys, ["detail"], "{:?}", answer.body);
    assert!(answer.detail().contains(&format!("(needs {needs})")), "`{}` should name {needs}", answer.detail());
}

/// A server on the embedded pipeline where Peter uploaded `PETER_ROWS` heart rates, all published; the ids of the
/// uploaded observations.
async fn uploaded() -> (TestServer, tempfile::TempDir, Vec<String>) {
    jhe_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir.path()), ALL_ROLES).await.unwrap();
    let peter = server.patient_id(seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let token = server.token(seeded::PETER).await;
    let entries = (0..PETER_ROWS)
        .map(|minute| {
            let uuid = format!("scopes-{minute}");
            omh::observation(peter, carex, HEART_RATE, &omh::heart_rate(&uuid, minute, 70.0), Some(&uuid))
        })
        .collect();
    let answer = server.post("/FHIR/R5/", &token, omh::bundle(entries)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let ids: Vec<String> = answer.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().expect("created").to_owned())
        .collect();
    let published = server.wait_for_published_rows(i64::from(PETER_ROWS), Duration::from_secs(30)).await;
    assert_eq!(published, i64::from(PETER_ROWS));
    (server, dir, ids)
}

fn heart_rate_upload(peter: i64, carex: i64, uuid: &str) -> Value {
    omh::observation(peter, carex, HEART_RATE, &omh::heart_rate(uuid, 59, 80.0), Some(uuid))
}

#[tokio::test]
async fn scoped_practitioner_tokens_reach_only_what_their_scopes_name() {
    let (server, _dir, ids) = uploaded().await;
    let mary = server.token(seeded::MARY).await;
    let key = server.practitioner_api_key(&mary, "smart").await;
    let peter = server.patient_id(seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let search = format!("/FHIR/R5/Observation?patient={peter}");
    let read = format!("/FHIR/R5/Observation/{}", ids[0]);

    // user/Observation.rs: Observation search and read; nothing else
    let rs = key_token(&server, &key, "user/Observation.rs").await;
    let found = server.get(&search, &rs).await;
    assert_eq!((found.status, found.body["total"].as_u64()), (200, Some(u64::from(PETER_ROWS))), "{:?}", found.body);
    assert_eq!(server.get(&read, &rs).await.status, 200);
    assert_eq!(server.get("/api/v1/observations", &rs).await.status, 200);
    assert_fhir_forbidden(&server.get("/FHIR/R5/Patient", &rs).await, "user/Patient.s");
    assert_fhir_forbidden(&server.get(&format!("/FHIR/R5/Patient/{peter}"), &rs).await, "user/Patient.r");
    assert_rest_forbidden(&server.get("/api/v1/patients", &rs).await, "user/Patient.s");
    assert_rest_forbidden(&server.get("/api/v1/studies", &rs).await, "user/Group.s");
    // uploads are creates: refused before anything is stored
    let single = server.post("/FHIR/R5/Observation", &rs, heart_rate_upload(peter, carex, "refused-single")).await;
    assert_fhir_forbidden(&single, "user/Observation.c");
    let batch =
        server.post("/FHIR/R5/", &rs, omh::bundle(vec![heart_rate_upload(peter, carex, "refused-batch")])).await;
    assert_rest_forbidden(&batch, "user/Observation.c");
    // identity endpoints stay open; API keys (credentials) need a `*` scope
    assert_eq!(server.get("/api/v1/users/profile", &rs).await.status, 200);
    let clients = || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM oauth_clients").fetch_one(&server.db.pool).await.unwrap()
    };
    let before = clients().await;
    assert_rest_forbidden(&server.post("/api/v1/practitioner_clients", &rs, json!({"label": "x"})).await, "user/*.c");
    assert_eq!(clients().await, before, "a refused request creates nothing");

    // user/Observation.r: a read by id, not a search
    let r = key_token(&server, &key, "user/Observation.r").await;
    assert_eq!(server.get(&read, &r).await.status, 200);
    assert_fhir_forbidden(&server.get(&search, &r).await, "user/Observation.s");
    let by_post = server.raw("POST", "/FHIR/R5/Observation/_search", &r, "application/x-www-form-urlencoded", "").await;
    assert_fhir_forbidden(&by_post, "user/Observation.s");
    assert_fhir_forbidden(&server.get("/FHIR/R5/Observation/$lastn", &r).await, "user/Observation.s");
    assert_rest_forbidden(&server.get("/api/v1/observations", &r).await, "user/Observation.s");

    // v1 user/*.read: every read and search, no write
    let read_all = key_token(&server, &key, "user/*.read").await;
    assert_eq!(server.get(&search, &read_all).await.status, 200);
    assert_eq!(server.get("/FHIR/R5/Patient", &read_all).await.status, 200);
    assert_eq!(server.get("/api/v1/patients", &read_all).await.status, 200);
    assert_eq!(server.get(&format!("/api/v1/patients/{peter}"), &read_all).await.status, 200);
    let upload = server.post("/FHIR/R5/Observation", &read_all, heart_rate_upload(peter, carex, "refused-v1")).await;
    assert_fhir_forbidden(&upload, "user/Observation.c");
    let study =
        server.post("/api/v1/studies", &read_all, json!({"name": "x", "description": "y", "organization": 1})).await;
    assert_rest_forbidden(&study, "user/Group.c");
    let renamed = server.patch(&format!("/api/v1/patients/{peter}"), &read_all, json!({"nameFamily": "X"})).await;
    assert_rest_forbidden(&renamed, "user/Patient.u");

    // system/ scopes act as user/ ones on client-credentials tokens
    let system = key_token(&server, &key, "system/Observation.rs").await;
    assert_eq!(server.get(&search, &system).await.status, 200);
    assert_fhir_forbidden(&server.get("/FHIR/R5/Patient", &system).await, "user/Patient.s");

    // patient/ scopes grant a practitioner (no patient in context) nothing
    let patient_scope = key_token(&server, &key, "patient/Observation.rs").await;
    assert_fhir_forbidden(&server.get(&search, &patient_scope).await, "user/Observation.s");

    // without SMART scopes: the practitioner's full rights, as in the reference
    let plain = key_token(&server, &key, "").await;
    assert_eq!(server.get(&search, &plain).await.status, 200);
    assert_eq!(server.get("/FHIR/R5/Patient", &plain).await.status, 200);
    assert_eq!(server.get("/api/v1/patients", &plain).await.status, 200);
    let created = server.post("/FHIR/R5/Observation", &plain, heart_rate_upload(peter, carex, "allowed-plain")).await;
    assert_eq!(created.status, 201, "{:?}", created.body);

    // nothing refused was stored: only the plain token's upload joined Peter's rows
    let rows = server.wait_for_published_rows(i64::from(PETER_ROWS) + 1, Duration::from_secs(30)).await;
    assert_eq!(rows, i64::from(PETER_ROWS) + 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.published_rows().await, i64::from(PETER_ROWS) + 1);
}

#[tokio::test]
async fn patient_scopes_cover_the_patients_own_data_and_refresh_never_widens() {
    let (server, _dir, ids) = uploaded().await;
    let tokens = patient_login_tokens(&server, "openid email patient/Observation.rs").await;
    assert_eq!(tokens["scope"], "openid email patient/Observation.rs");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let peter = server.patient_id(seeded::PETER).await;

    let own = server.get("/FHIR/R5/Observation", &access).await;
    assert_eq!((own.status, own.body["total"].as_u64()), (200, Some(u64::from(PETER_ROWS))), "{:?}", own.body);
    assert_eq!(server.get(&format!("/FHIR/R5/Observation/{}", ids[0]), &access).await.status, 200);
    assert_fhir_forbidden(&server.get(&format!("/FHIR/R5/Patient/{peter}"), &access).await, "user/Patient.r");
    assert_rest_forbidden(&server.get(&format!("/api/v1/patients/{peter}/consents"), &access).await, "user/Consent.s");
    assert_eq!(server.get("/api/v1/users/profile", &access).await.status, 200);

    // introspection echoes the scope (the CareX client is public, so a practitioner API key introspects)
    let mary = server.token(seeded::MARY).await;
    let key = server.practitioner_api_key(&mary, "introspect").await;
    let (status, info) = form_post(&server, "/o/introspect/", Some(&key), &[("token", &access)]).await;
    assert_eq!((status, info["active"].as_bool()), (200, Some(true)), "{info:?}");
    assert_eq!(info["scope"], "openid email patient/Observation.rs");

    // a refresh may not widen: another type, more letters, `*`, or dropping every resource scope (full rights)
    for wider in
        ["patient/Patient.rs", "patient/Observation.crs", "patient/*.rs", "openid email", "user/Observation.rs"]
    {
        let (status, body) = form_post(
            &server,
            "/o/token/",
            None,
            &[("grant_type", "refresh_token"), ("client_id", "carex"), ("refresh_token", &refresh), ("scope", wider)],
        )
        .await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{wider}: {body:?}");
    }
    // the refused requests changed nothing: the token still works and the refresh token can still narrow
    assert_eq!(server.get("/FHIR/R5/Observation", &access).await.status, 200);
    let (status, narrowed) = form_post(
        &server,
        "/o/token/",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "carex"),
            ("refresh_token", &refresh),
            ("scope", "openid patient/Observation.r"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{narrowed:?}");
    assert_eq!(narrowed["scope"], "openid patient/Observation.r");
    let narrow = narrowed["access_token"].as_str().unwrap();
    assert_eq!(server.get(&format!("/FHIR/R5/Observation/{}", ids[1]), narrow).await.status, 200);
    assert_fhir_forbidden(&server.get("/FHIR/R5/Observation", narrow).await, "user/Observation.s");
    // and the narrowed family stays narrow: refreshing without `scope` keeps it, asking for `.rs` again is refused
    let next_refresh = narrowed["refresh_token"].as_str().unwrap();
    let (status, body) = form_post(
        &server,
        "/o/token/",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", "carex"),
            ("refresh_token", next_refresh),
            ("scope", "patient/Observation.rs"),
        ],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{body:?}");
    let (status, kept) = form_post(
        &server,
        "/o/token/",
        None,
        &[("grant_type", "refresh_token"), ("client_id", "carex"), ("refresh_token", next_refresh)],
    )
    .await;
    assert_eq!((status, kept["scope"].as_str()), (200, Some("openid patient/Observation.r")), "{kept:?}");

    // an invitation without SMART scopes: a patient app's token, which reads the patient but no observations
    let plain = invited_patient_tokens(&server, "").await;
    assert_eq!(plain["scope"], "openid email patient/Observation.c patient/Consent.cruds patient/Patient.r");
    let plain = plain["access_token"].as_str().unwrap();
    assert_eq!(server.get(&format!("/FHIR/R5/Patient/{peter}"), plain).await.status, 200);
    assert_fhir_forbidden(&server.get("/FHIR/R5/Observation", plain).await, "user/Observation.s");
}

#[tokio::test]
async fn malformed_scopes_are_invalid_scope_and_discovery_lists_smart_scopes() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let key = server.practitioner_api_key(&mary, "invalid").await;
    for bad in ["user/Observation.x", "user/observation.rs", "group/Observation.rs", "user/Observation.sr"] {
        let (status, body) =
            form_post(&server, "/o/token/", Some(&key), &[("grant_type", "client_credentials"), ("scope", bad)]).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{bad}: {body:?}");
        let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["error", "error_description"]);
    }
    // unknown non-SMART scopes are still dropped, not refused
    let (status, body) = form_post(
        &server,
        "/o/token/",
        Some(&key),
        &[("grant_type", "client_credentials"), ("scope", "profile user/*.rs")],
    )
    .await;
    assert_eq!((status, body["scope"].as_str()), (200, Some("user/*.rs")), "{body:?}");

    // the authorization endpoint answers the client (before any login) with invalid_scope, also for system/
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    for bad in ["openid user/Observation.x", "openid system/*.rs"] {
        let url =
            authorize_url(&server, "jhe-admin-ui", "http://127.0.0.1:8000/auth/callback", bad, Some("st"), challenge);
        let response = http().get(url).send().await.unwrap();
        assert_eq!(response.status(), 302);
        let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        let params: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        assert!(params.contains(&("error".into(), "invalid_scope".into())), "{bad}: {params:?}");
        assert!(params.contains(&("state".into(), "st".into())));
    }

    // an invitation redeemed with a malformed scope is a 400 and stays redeemable
    let peter = server.patient_id(seeded::PETER).await;
    let (invitation, token) = server.invite(&mary, peter).await;
    let refused =
        server.request("POST", &format!("/api/v1/invitation/{token}?scope=patient%2FObservation.q"), None, None).await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert!(refused.detail().starts_with("invalid_scope"), "{}", refused.detail());
    let status: String = sqlx::query_scalar("SELECT status FROM patient_invitations WHERE id = $1")
        .bind(invitation)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "issued");

    // discovery
    let smart = server.request("GET", "/FHIR/R5/.well-known/smart-configuration", None, None).await;
    let capabilities = smart.body["capabilities"].as_array().unwrap();
    for capability in
        ["launch-standalone", "client-public", "client-confidential-symmetric", "permission-v2", "permission-v1"]
    {
        assert!(capabilities.iter().any(|c| c == capability), "{capability}: {capabilities:?}");
    }
    let scopes = smart.body["scopes_supported"].as_array().unwrap();
    assert!(scopes.iter().any(|s| s == "patient/*.rs") && scopes.iter().any(|s| s == "openid"), "{scopes:?}");
    let oidc = server.request("GET", "/o/.well-known/openid-configuration", None, None).await;
    assert!(oidc.body["scopes_supported"].as_array().unwrap().iter().any(|s| s == "user/*.rs"));
}
