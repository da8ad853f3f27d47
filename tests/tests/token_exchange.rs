//! SMART EHR-launch token exchange (`POST /o/token-exchange`, jhe-compat §7.6) against a running jhe: an EHR on
//! loopback (an axum server in the test, the party jhe trusts) publishes its JWKS and signs ID tokens; the app
//! exchanges them for jhe access tokens acting as the practitioner named by `fhirUser`.

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jhe_tests::{TestServer, seeded};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

const CLIENT_ID: &str = "sof-ehr-launch";
const CLIENT_SECRET: &str = "sof-ehr-launch-test-secret";
const AUDIENCE: &str = "jhe-at-the-ehr";
const PRACTITIONER: &str = "ehr-practitioner-17";
const KID: &str = "ehr-key-1";

/// An EHR: its issuer URL and the key it signs ID tokens with.
struct Ehr {
    issuer: String,
    signing_key: EncodingKey,
}

/// A new RSA key: the PEM to sign with and its public JWK.
fn rsa_key(kid: &str) -> (EncodingKey, Value) {
    let key = rsa::PrivateKey::new(&mut getrandom::SysRng, 2048).expect("an RSA key");
    let pem = key.to_pkcs8_pem(LineEnding::LF).expect("PEM");
    let jwk = json!({
        "kty": "RSA",
        "kid": kid,
        "use": "sig",
        "alg": "RS256",
        "n": URL_SAFE_NO_PAD.encode(key.n_bytes()),
        "e": URL_SAFE_NO_PAD.encode(key.e_bytes()),
    });
    (EncodingKey::from_rsa_pem(pem.as_bytes()).expect("the key"), jwk)
}

/// Serves `/.well-known/smart-configuration` and `/jwks` on loopback.
async fn start_ehr() -> Ehr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let issuer = format!("http://{addr}/ehr/oauth2");
    let (signing_key, jwk) = rsa_key(KID);
    let jwks = json!({"keys": [jwk]});
    let configuration = json!({"issuer": issuer, "jwks_uri": format!("http://{addr}/ehr/jwks")});
    let app = axum::Router::new()
        .route(
            "/ehr/oauth2/.well-known/smart-configuration",
            axum::routing::get(move || async move { axum::Json(configuration) }),
        )
        .route("/ehr/jwks", axum::routing::get(move || async move { axum::Json(jwks) }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ehr { issuer, signing_key }
}

impl Ehr {
    /// An ID token for `fhir_user`, with `changes` applied to the standard claims.
    fn id_token(&self, fhir_user: &str, changes: Value) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": "ehr-user-17",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "fhirUser": fhir_user,
        });
        for (key, value) in changes.as_object().unwrap() {
            claims[key] = value.clone();
        }
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(KID.to_owned());
        jsonwebtoken::encode(&header, &claims, &self.signing_key).unwrap()
    }
}

/// A jhe that trusts `ehr`, knows the EHR launch client (registered for the exchange by the seeded
/// `auth.token_exchange_clients`), and whose Mary is linked to the EHR's practitioner 17.
async fn server_trusting(ehr: &Ehr) -> (TestServer, String) {
    let server = TestServer::start().await.unwrap();
    let pool = &server.db.pool;
    sqlx::query("UPDATE settings SET value_json = $1 WHERE key = 'auth.sof.trusted_issuers'")
        .bind(json!([format!("{}/", ehr.issuer)]))
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE settings SET value_string = $1 WHERE key = 'auth.sof.trusted_audience'")
        .bind(AUDIENCE)
        .execute(pool)
        .await
        .unwrap();
    let site: String =
        sqlx::query_scalar("SELECT value_string FROM settings WHERE key = 'site.url'").fetch_one(pool).await.unwrap();
    let secret_hash = jhe_catalog::passwords::hash_password(CLIENT_SECRET).unwrap();
    sqlx::query(
        "INSERT INTO oauth_clients (client_id, client_secret_hash, name, client_type, grant_type)
         VALUES ($1, $2, 'SoF EHR Launch', 'confidential', 'authorization-code')",
    )
    .bind(CLIENT_ID)
    .bind(secret_hash)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO ehr_practitioner_links (issuer, practitioner_id, user_id)
         SELECT $1, $2, id FROM users WHERE email = $3",
    )
    .bind(&ehr.issuer)
    .bind(PRACTITIONER)
    .bind(seeded::MARY)
    .execute(pool)
    .await
    .unwrap();
    (server, site.trim_end_matches('/').to_owned())
}

/// Posts an exchange with the client's Basic credentials; returns the status and body.
async fn exchange(server: &TestServer, secret: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/o/token-exchange", server.base))
        .basic_auth(CLIENT_ID, Some(secret))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn form<'a>(audience: &'a str, subject_token: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
        ("audience", audience),
        ("subject_token", subject_token),
    ]
}

fn assert_error(answer: &(u16, Value), status: u16, mentions: &str) {
    assert_eq!(answer.0, status, "{:?}", answer.1);
    let message = answer.1["error"].as_str().unwrap_or_default();
    assert!(message.contains(mentions), "`{message}` should mention `{mentions}`");
}

#[tokio::test]
async fn an_ehr_id_token_is_exchanged_for_a_token_acting_as_its_practitioner() {
    jhe_tests::init_logs();
    let ehr = start_ehr().await;
    let (server, site) = server_trusting(&ehr).await;
    let fhir_user = format!("{}/fhir/Practitioner/{PRACTITIONER}", ehr.issuer);
    let id_token = ehr.id_token(&fhir_user, json!({}));

    let answer = exchange(&server, CLIENT_SECRET, &form(&format!("{site}/"), &id_token)).await;
    assert_eq!(answer.0, 200, "{:?}", answer.1);
    assert_eq!(answer.1["issued_token_type"], "urn:ietf:params:oauth:token-type:access_token");
    assert_eq!(answer.1["token_type"], "Bearer");
    assert_eq!(answer.1["scope"], "openid");
    assert!(answer.1["expires_in"].as_i64().unwrap() > 0);
    let token = answer.1["access_token"].as_str().unwrap();
    let profile = server.get("/api/v1/users/profile", token).await;
    assert_eq!(profile.status, 200, "{:?}", profile.body);
    assert_eq!(profile.body["email"], seeded::MARY);

    // the request and the client
    let wrong_secret = exchange(&server, "not-the-secret", &form(&site, &id_token)).await;
    assert_error(&wrong_secret, 401, "client authentication");
    assert_error(
        &exchange(&server, CLIENT_SECRET, &form("https://elsewhere.example.org", &id_token)).await,
        400,
        "audience",
    );
    assert_error(&exchange(&server, CLIENT_SECRET, &form(&site, "")).await, 400, "subject_token is required");
    assert_error(&exchange(&server, CLIENT_SECRET, &form(&site, "not-a-jwt")).await, 400, "not a JWT");
    let mut with_scope = form(&site, &id_token);
    with_scope.push(("scope", "openid user/*.rs"));
    assert_error(&exchange(&server, CLIENT_SECRET, &with_scope).await, 400, "only openid");

    // the ID token
    let expired = ehr.id_token(&fhir_user, json!({"exp": chrono::Utc::now().timestamp() - 120}));
    assert_error(&exchange(&server, CLIENT_SECRET, &form(&site, &expired)).await, 401, "not valid");
    let other_audience = ehr.id_token(&fhir_user, json!({"aud": "someone-else"}));
    assert_error(&exchange(&server, CLIENT_SECRET, &form(&site, &other_audience)).await, 401, "not valid");
    let untrusted = ehr.id_token(&fhir_user, json!({"iss": "https://untrusted.example.org"}));
    assert_error(&exchange(&server, CLIENT_SECRET, &form(&site, &untrusted)).await, 403, "not trusted");
    let patient = ehr.id_token(&format!("{}/fhir/Patient/9", ehr.issuer), json!({}));
    assert_error(&exchange(&server, CLIENT_SECRET, &form(&site, &patient)).await, 403, "Practitioner");
    let stranger = ehr.id_token(&format!("{}/fhir/Practitioner/nobody", ehr.issuer), json!({}));
    assert_error(&exchange(&server, CLIENT_SECRET, &form(&site, &stranger)).await, 404, "nobody");
    // signed by a key the EHR does not publish, under the EHR's kid
    let (forger_key, _) = rsa_key(KID);
    let forged = Ehr { issuer: ehr.issuer.clone(), signing_key: forger_key }.id_token(&fhir_user, json!({}));
    assert_error(&exchange(&server, CLIENT_SECRET, &form(&site, &forged)).await, 401, "not valid");
}

#[tokio::test]
async fn an_unreachable_issuer_is_a_bad_gateway() {
    jhe_tests::init_logs();
    let ehr = start_ehr().await;
    // a trusted issuer nobody answers for: a port that was free a moment ago
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let gone = Ehr { issuer: format!("http://{closed}/ehr/oauth2"), signing_key: ehr.signing_key };
    let (server, site) = server_trusting(&gone).await;
    let id_token = gone.id_token(&format!("Practitioner/{PRACTITIONER}"), json!({}));
    assert_error(
        &exchange(&server, CLIENT_SECRET, &form(&site, &id_token)).await,
        502,
        "cannot find the issuer's keys",
    );
}
