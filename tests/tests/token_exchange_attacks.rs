//! Attacks on the SMART EHR-launch token exchange (`POST /o/token-exchange`) against a running jhe and Postgres,
//! with EHRs on loopback (axum servers in the test that publish their JWKS and sign ID tokens):
//!
//! * a client not registered for the exchange — a practitioner's API key above all — presents a valid ID token and
//!   is refused with `unauthorized_client`, nothing issued;
//! * a trusted EHR's ID token names a practitioner id that a jhe user has at *another* trusted EHR, and does not
//!   act as that user: the user match is keyed by (issuer, id), never by an id alone.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jhe_tests::{TestServer, seeded};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

const SOF_CLIENT_ID: &str = "sof-ehr-launch";
const SOF_CLIENT_SECRET: &str = "sof-ehr-launch-test-secret";
const AUDIENCE: &str = "jhe-at-the-ehrs";
const KID: &str = "ehr-key-1";
/// The practitioner id both EHRs use, each for its own practitioner.
const SHARED_ID: &str = "17";

/// An EHR on loopback: its issuer URL and the key it signs ID tokens with.
struct Ehr {
    issuer: String,
    signing_key: EncodingKey,
}

/// Serves `<issuer>/.well-known/smart-configuration` and the JWKS of a new RSA key; the issuer ends in `name`.
async fn start_ehr(name: &str) -> Ehr {
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("an RSA key");
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PEM");
    let jwk = json!({
        "kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(key.n_bytes()),
        "e": URL_SAFE_NO_PAD.encode(key.e_bytes()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}/{name}/oauth2");
    let configuration = json!({"issuer": issuer, "jwks_uri": format!("http://{addr}/{name}/jwks")});
    let jwks = json!({"keys": [jwk]});
    let app = axum::Router::new()
        .route(
            &format!("/{name}/oauth2/.well-known/smart-configuration"),
            axum::routing::get(move || async move { axum::Json(configuration) }),
        )
        .route(&format!("/{name}/jwks"), axum::routing::get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ehr { issuer, signing_key: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("the key") }
}

impl Ehr {
    /// A valid ID token of this EHR whose `sub` and `fhirUser` name its practitioner `id`; `iss` as given.
    fn id_token_as(&self, issuer: &str, id: &str) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "iss": issuer,
            "sub": id,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "fhirUser": format!("{}/fhir/Practitioner/{id}", self.issuer),
        });
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.signing_key).unwrap()
    }

    fn id_token(&self, id: &str) -> String {
        self.id_token_as(&self.issuer, id)
    }
}

/// A jhe that trusts `ehrs` and knows the "SoF EHR Launch" client (registered for the exchange by the seeded
/// `auth.token_exchange_clients`); returns it and its site URL (the exchange's audience).
async fn server_trusting(ehrs: &[&Ehr]) -> (TestServer, String) {
    let server = TestServer::start().await.unwrap();
    let pool = &server.db.pool;
    let issuers: Vec<&str> = ehrs.iter().map(|ehr| ehr.issuer.as_str()).collect();
    sqlx::query("UPDATE settings SET value_json = $1 WHERE key = 'auth.sof.trusted_issuers'")
        .bind(json!(issuers))
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE settings SET value_string = $1 WHERE key = 'auth.sof.trusted_audience'")
        .bind(AUDIENCE)
        .execute(pool)
        .await
        .unwrap();
    let secret_hash = jhe_catalog::passwords::hash_password(SOF_CLIENT_SECRET).unwrap();
    sqlx::query(
        "INSERT INTO oauth_clients (client_id, client_secret_hash, name, client_type, grant_type)
         VALUES ($1, $2, 'SoF EHR Launch', 'confidential', 'authorization-code')",
    )
    .bind(SOF_CLIENT_ID)
    .bind(secret_hash)
    .execute(pool)
    .await
    .unwrap();
    let site: String =
        sqlx::query_scalar("SELECT value_string FROM settings WHERE key = 'site.url'").fetch_one(pool).await.unwrap();
    (server, site.trim_end_matches('/').to_owned())
}

/// Links the EHR practitioner (issuer, id) to the user with `email`, as an administrator registers it.
async fn link(server: &TestServer, issuer: &str, id: &str, email: &str) {
    let linked = sqlx::query(
        "INSERT INTO ehr_practitioner_links (issuer, practitioner_id, user_id)
         SELECT $1, $2, id FROM users WHERE email = $3",
    )
    .bind(issuer)
    .bind(id)
    .bind(email)
    .execute(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(linked.rows_affected(), 1, "{email} exists");
}

/// How the client authenticates.
enum Credentials<'a> {
    /// HTTP Basic with the base64 of `client_id:secret` (a practitioner API key as it is handed out)
    Basic(&'a str),
    /// `client_id` and `client_secret` in the form
    Form(&'a str, &'a str),
}

/// The "SoF EHR Launch" client's credentials.
const SOF_CLIENT: Credentials<'static> = Credentials::Form(SOF_CLIENT_ID, SOF_CLIENT_SECRET);

/// Posts an exchange of `subject_token`; returns the status and body.
async fn exchange(server: &TestServer, site: &str, credentials: Credentials<'_>, subject_token: &str) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
        ("audience", site),
        ("subject_token", subject_token),
    ];
    let mut request = reqwest::Client::new().post(format!("{}/o/token-exchange", server.base));
    match credentials {
        Credentials::Basic(key) => request = request.header("Authorization", format!("Basic {key}")),
        Credentials::Form(id, secret) => form.extend([("client_id", id), ("client_secret", secret)]),
    }
    let response = request.form(&form).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// (all access tokens, those issued by the exchange): a refused exchange changes neither.
async fn issued_tokens(server: &TestServer) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE source = 'token_exchange') FROM access_tokens")
        .fetch_one(&server.db.pool)
        .await
        .unwrap()
}

/// The email of the user a bearer token acts as.
async fn acting_as(server: &TestServer, token: &Value) -> String {
    let profile = server.get("/api/v1/users/profile", token.as_str().expect("an access token")).await;
    assert_eq!(profile.status, 200, "{:?}", profile.body);
    profile.body["email"].as_str().unwrap_or_default().to_owned()
}

fn assert_refused(answer: &(u16, Value), status: u16, mentions: &str) {
    assert_eq!(answer.0, status, "{:?}", answer.1);
    let message = answer.1["error"].as_str().unwrap_or_default();
    assert!(message.contains(mentions), "`{message}` should mention `{mentions}`");
    assert!(answer.1.get("access_token").is_none(), "a refusal carries no token: {:?}", answer.1);
}

#[tokio::test]
async fn a_practitioner_api_key_cannot_exchange_an_ehr_id_token() {
    jhe_tests::init_logs();
    let ehr = start_ehr("ehr").await;
    let (server, site) = server_trusting(&[&ehr]).await;
    link(&server, &ehr.issuer, SHARED_ID, seeded::MARY).await;
    let id_token = ehr.id_token(SHARED_ID);

    // Megan's own API key (a confidential client-credentials client) tries to become the EHR's practitioner, Mary
    let megan = server.token(seeded::MEGAN).await;
    let key = server.practitioner_api_key(&megan, "exchange").await;
    let before = issued_tokens(&server).await;
    let by_basic = exchange(&server, &site, Credentials::Basic(&key), &id_token).await;
    assert_refused(&by_basic, 403, "unauthorized_client");
    let decoded = String::from_utf8(STANDARD.decode(&key).unwrap()).unwrap();
    let (key_id, key_secret) = decoded.split_once(':').unwrap();
    let by_form = exchange(&server, &site, Credentials::Form(key_id, key_secret), &id_token).await;
    assert_refused(&by_form, 403, "unauthorized_client");

    // nor does any other confidential client that is not registered for it
    let secret_hash = jhe_catalog::passwords::hash_password("other-secret").unwrap();
    sqlx::query(
        "INSERT INTO oauth_clients (client_id, client_secret_hash, name, client_type, grant_type)
         VALUES ('other-confidential-app', $1, 'Other app', 'confidential', 'authorization-code')",
    )
    .bind(secret_hash)
    .execute(&server.db.pool)
    .await
    .unwrap();
    let other = exchange(&server, &site, Credentials::Form("other-confidential-app", "other-secret"), &id_token).await;
    assert_refused(&other, 403, "unauthorized_client");
    assert_eq!(issued_tokens(&server).await, before, "a refused exchange issues nothing");

    // the registered client exchanges the very same ID token
    let sof = exchange(&server, &site, SOF_CLIENT, &id_token).await;
    assert_eq!(sof.0, 200, "{:?}", sof.1);
    assert_eq!(acting_as(&server, &sof.1["access_token"]).await, seeded::MARY);

    // the registration is the setting: unlisting the SoF client refuses it too
    sqlx::query("UPDATE settings SET value_json = '[]' WHERE key = 'auth.token_exchange_clients'")
        .execute(&server.db.pool)
        .await
        .unwrap();
    let after_sof = issued_tokens(&server).await;
    assert_refused(&exchange(&server, &site, SOF_CLIENT, &id_token).await, 403, "unauthorized_client");
    assert_eq!(issued_tokens(&server).await, after_sof, "a refused exchange issues nothing");
}

#[tokio::test]
async fn a_practitioner_id_names_a_user_only_at_the_ehr_it_is_linked_for() {
    jhe_tests::init_logs();
    let home = start_ehr("home-ehr").await;
    let other = start_ehr("other-ehr").await;
    let (server, site) = server_trusting(&[&home, &other]).await;
    // Mary is practitioner 17 at her home EHR; the identifier column says so too (what the id alone once matched)
    link(&server, &home.issuer, SHARED_ID, seeded::MARY).await;
    sqlx::query("UPDATE users SET identifier = $1 WHERE email = $2")
        .bind(SHARED_ID)
        .bind(seeded::MARY)
        .execute(&server.db.pool)
        .await
        .unwrap();

    // the other EHR's practitioner 17 (fhirUser and sub both "17") is not Mary
    let before = issued_tokens(&server).await;
    let foreign = exchange(&server, &site, SOF_CLIENT, &other.id_token(SHARED_ID)).await;
    assert_refused(&foreign, 404, "no practitioner is linked to Practitioner/17");
    assert_eq!(issued_tokens(&server).await, before, "a refused exchange issues nothing");

    // Mary's own EHR's token is hers, with or without a trailing slash on its issuer
    let own = exchange(&server, &site, SOF_CLIENT, &home.id_token(SHARED_ID)).await;
    assert_eq!(own.0, 200, "{:?}", own.1);
    assert_eq!(acting_as(&server, &own.1["access_token"]).await, seeded::MARY);
    let slashed = home.id_token_as(&format!("{}/", home.issuer), SHARED_ID);
    let own_slashed = exchange(&server, &site, SOF_CLIENT, &slashed).await;
    assert_eq!(own_slashed.0, 200, "{:?}", own_slashed.1);
    assert_eq!(acting_as(&server, &own_slashed.1["access_token"]).await, seeded::MARY);

    // once the other EHR's 17 is linked (to Mark), its tokens act as Mark, never as Mary
    link(&server, &other.issuer, SHARED_ID, seeded::MARK).await;
    let linked = exchange(&server, &site, SOF_CLIENT, &other.id_token(SHARED_ID)).await;
    assert_eq!(linked.0, 200, "{:?}", linked.1);
    assert_eq!(acting_as(&server, &linked.1["access_token"]).await, seeded::MARK);
}
