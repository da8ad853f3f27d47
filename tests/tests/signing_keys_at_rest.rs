//! The ID-token signing keys at rest: with `JHE_SECRET_KEY` the `oauth_signing_keys` rows hold only sealed keys
//! (no PEM, nothing that decodes as a key), tokens still sign and verify through the JWKS, rotation works, plaintext
//! rows are sealed at the first start with a secret, a server whose secret cannot open the keys refuses to start
//! (and one without a secret refuses to sign) naming JHE_SECRET_KEY, and the secret can be changed with
//! JHE_SECRET_KEY_PREVIOUS.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jhe_api::ServerSecret;
use jhe_tests::browser::{Browser, authorize_url, http};
use jhe_tests::{TestDatabase, TestServer, seeded};
use openidconnect::core::{CoreClient, CoreIdToken, CoreProviderMetadata};
use openidconnect::{ClientId, IssuerUrl, Nonce, PkceCodeChallenge};
use rsa::pkcs8::DecodePrivateKey;
use serde_json::{Value, json};
use sqlx::PgPool;

/// The seeded clients' redirect URI; nothing listens there, the tests read the Location.
const REDIRECT: &str = "http://127.0.0.1:8000/auth/callback";
const CLIENT: &str = "jhe-admin-ui";

/// A new random secret in the form JHE_SECRET_KEY takes.
fn new_secret_text() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).unwrap();
    STANDARD.encode(bytes)
}

fn secret(current: &str, previous: Option<&str>) -> ServerSecret {
    ServerSecret::from_settings(Some(current), previous).unwrap()
}

/// The stored rows as (kid, stored private key), oldest first.
async fn stored_keys(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as("SELECT kid, private_key_pem FROM oauth_signing_keys ORDER BY id").fetch_all(pool).await.unwrap()
}

/// Every row is sealed: the envelope prefix, no PEM, nothing that reads as a private key.
fn assert_sealed(rows: &[(String, String)]) {
    assert!(!rows.is_empty());
    for (kid, stored) in rows {
        assert!(stored.starts_with("enc:v1:"), "{kid} is not sealed");
        assert!(!stored.contains("PRIVATE KEY"), "{kid} holds a PEM");
        assert!(jsonwebtoken::EncodingKey::from_rsa_pem(stored.as_bytes()).is_err(), "{kid} reads as a PEM key");
        let envelope = STANDARD.decode(&stored["enc:v1:".len()..]).unwrap();
        for start in [0, 24] {
            assert!(rsa::PrivateKey::from_pkcs8_der(&envelope[start..]).is_err(), "{kid} holds a DER key");
        }
    }
}

/// Starts a server on `pool` with `secret` and stops it at once: the start readies the stored keys, or refuses.
async fn start_and_stop(pool: &PgPool, secret: ServerSecret) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let state = jhe_api::AppState { server_secret: secret, ..jhe_api::AppState::new(pool.clone()) };
    jhe_api::serve(listener, state, std::future::ready(())).await
}

/// The token response of the code flow of the seeded admin UI client for Tom.
async fn code_flow(server: &TestServer) -> (u16, Value) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let auth_url = authorize_url(server, CLIENT, REDIRECT, "openid email", Some("st"), challenge.as_str());
    let back = Browser::at(server).authorize(auth_url.as_str(), seeded::TOM, true).await;
    let code = back.query_pairs().find(|(key, _)| key == "code").expect("a code").1.into_owned();
    server.exchange_code(CLIENT, &code, REDIRECT, verifier.secret()).await
}

async fn id_token(server: &TestServer) -> String {
    let (status, body) = code_flow(server).await;
    assert_eq!(status, 200, "{body}");
    body["id_token"].as_str().expect("an ID token").to_owned()
}

fn kid_of(token: &str) -> String {
    let header = URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
    serde_json::from_slice::<Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
}

/// Verifies `token` against the server's discovery document and JWKS, as a relying party does.
async fn verify_through_jwks(server: &TestServer, token: &str) {
    let issuer = IssuerUrl::new(format!("{}/o", server.base)).unwrap();
    let provider = CoreProviderMetadata::discover_async(issuer, &http()).await.unwrap();
    let client = CoreClient::from_provider_metadata(provider, ClientId::new(CLIENT.into()), None);
    let parsed: CoreIdToken = serde_json::from_value(json!(token)).unwrap();
    parsed.claims(&client.id_token_verifier(), |_: Option<&Nonce>| Ok(())).expect("the ID token verifies");
}

#[tokio::test]
async fn with_a_secret_rows_are_sealed_and_tokens_verify_through_the_jwks_across_rotation() {
    let secret_text = new_secret_text();
    let key = secret(&secret_text, None);
    let configured = key.clone();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_configured(db, move |state| state.server_secret = configured).await.unwrap();
    let first = id_token(&server).await;
    verify_through_jwks(&server, &first).await;
    let rows = stored_keys(&server.db.pool).await;
    assert_eq!(rows.len(), 1);
    assert_sealed(&rows);
    assert!(rows.iter().all(|(_, stored)| !stored.contains(&secret_text)));

    let new_kid = jhe_api::rotate_signing_key(&server.db.pool, &key).await.unwrap();
    let rows = stored_keys(&server.db.pool).await;
    assert_eq!(rows.len(), 2);
    assert_sealed(&rows);
    let second = id_token(&server).await;
    assert_eq!(kid_of(&second), new_kid, "the new key signs");
    verify_through_jwks(&server, &first).await;
    verify_through_jwks(&server, &second).await;

    // a rotation with another secret adds nothing and says which setting is wrong
    let wrong = jhe_api::rotate_signing_key(&server.db.pool, &secret(&new_secret_text(), None)).await.unwrap_err();
    assert!(wrong.to_string().contains("JHE_SECRET_KEY"), "{wrong}");
    assert_eq!(stored_keys(&server.db.pool).await, rows);
}

#[tokio::test]
async fn plaintext_rows_are_sealed_at_the_first_start_with_a_secret() {
    // without a secret: as before, a plaintext PEM
    let server = TestServer::start_configured(TestDatabase::create(true).await.unwrap(), |_| {}).await.unwrap();
    let before = id_token(&server).await;
    let plaintext = stored_keys(&server.db.pool).await;
    assert_eq!(plaintext.len(), 1);
    assert!(plaintext[0].1.contains("BEGIN PRIVATE KEY"));

    let key = new_secret_text();
    start_and_stop(&server.db.pool, secret(&key, None)).await.expect("a start with a secret");
    let sealed = stored_keys(&server.db.pool).await;
    assert_eq!(sealed.len(), 1);
    assert_eq!(sealed[0].0, plaintext[0].0, "the same key, sealed");
    assert_sealed(&sealed);

    // the sealed key still verifies the token it signed before
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state =
        jhe_api::AppState { server_secret: secret(&key, None), ..jhe_api::AppState::new(server.db.pool.clone()) };
    tokio::spawn(jhe_api::serve(listener, state, std::future::pending()));
    let jwks: Value = http().get(format!("{base}/o/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kid"], kid_of(&before));
    let decoding =
        jsonwebtoken::DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[CLIENT]);
    jsonwebtoken::decode::<Value>(&before, &decoding, &validation).expect("verifies with the published key");

    // the server still running without the secret cannot sign with the sealed key: no ID token
    let (status, body) = code_flow(&server).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.get("id_token").is_none());
    // and a server started without it refuses, naming the setting; nothing changes
    let refused = start_and_stop(&server.db.pool, ServerSecret::none()).await.unwrap_err().to_string();
    assert!(refused.contains("JHE_SECRET_KEY is not set"), "{refused}");
    assert_eq!(stored_keys(&server.db.pool).await, sealed);
}

#[tokio::test]
async fn a_server_whose_secret_cannot_open_the_keys_refuses_to_start_and_the_secret_can_be_changed() {
    let db = TestDatabase::create(false).await.unwrap();
    let old = new_secret_text();
    start_and_stop(&db.pool, secret(&old, None)).await.expect("first start makes a sealed key");
    let sealed = stored_keys(&db.pool).await;
    assert_sealed(&sealed);

    let new = new_secret_text();
    let refused = start_and_stop(&db.pool, secret(&new, None)).await.unwrap_err().to_string();
    assert!(refused.contains("cannot be decrypted with JHE_SECRET_KEY"), "{refused}");
    assert!(!refused.contains(&new) && !refused.contains(&old), "the message holds no secret");
    assert_eq!(stored_keys(&db.pool).await, sealed, "a refused start changes nothing");

    // the change: new secret, old one as the previous; the keys are sealed again with the new one
    start_and_stop(&db.pool, secret(&new, Some(&old))).await.expect("a start during the change");
    let resealed = stored_keys(&db.pool).await;
    assert_sealed(&resealed);
    assert_eq!(resealed[0].0, sealed[0].0);
    assert_ne!(resealed[0].1, sealed[0].1);
    start_and_stop(&db.pool, secret(&new, None)).await.expect("the new secret alone opens them");
    assert!(start_and_stop(&db.pool, secret(&old, None)).await.is_err(), "the old one no longer does");
}
