//! jhe's OAuth 2 / OpenID Connect provider against a relying party built on the `openidconnect` crate:
//! discovery, the code flow with PKCE through jhe's login page (CSRF token + session cookie), ID-token verification
//! against the JWKS, userinfo, refresh with rotation, introspection and revocation; client-credentials API keys; and
//! every refusal with its RFC 6749 error. (RFC 7009 revocation is sent with reqwest: the `oauth2` crate refuses to
//! revoke over plain http, which the test server speaks.)

use jhe_tests::browser::{Browser, authorize_url, http, location};
use jhe_tests::{TestServer, seeded};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdTokenClaims, CoreProviderMetadata, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IntrospectionUrl, IssuerUrl, JsonWebKey,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, SubjectIdentifier, TokenIntrospectionResponse,
    TokenResponse,
};
use serde_json::{Value, json};

const PASSWORD: &str = jhe_catalog::SEED_PASSWORD;
/// The seeded clients' redirect URI (the seed's site URL); nothing listens there, the tests read the Location.
const REDIRECT: &str = "http://127.0.0.1:8000/auth/callback";

/// A confidential authorization-code client that asks for consent; returns its secret.
async fn confidential_client(server: &TestServer, client_id: &str) -> String {
    let secret = jhe_catalog::random_token(32);
    server.add_confidential_client(client_id, &secret, "Research Hub", REDIRECT).await;
    secret
}

fn query_param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// An authorization code for `client_id` with a fresh PKCE pair: (code, verifier).
async fn code_for(server: &TestServer, client_id: &str, email: &str) -> (String, String) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let auth_url = authorize_url(server, client_id, REDIRECT, "openid email", Some("st"), challenge.as_str());
    let back = Browser::at(server).authorize(auth_url.as_str(), email, true).await;
    assert_eq!(query_param(&back, "state").as_deref(), Some("st"));
    (query_param(&back, "code").expect("a code"), verifier.secret().clone())
}

/// A form POST to the token endpoint (or another /o/ endpoint), with optional Basic credentials.
async fn form_post(
    server: &TestServer,
    path: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
) -> (u16, Value) {
    use base64::Engine;
    let authorization = basic.map(|(user, password)| {
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
    });
    jhe_tests::browser::form_post(server, path, authorization.as_deref(), form).await
}

/// An RFC 6749 error body: exactly `error` and `error_description`.
fn assert_oauth_error(answer: &(u16, Value), status: u16, error: &str) {
    assert_eq!(answer.0, status, "{:?}", answer.1);
    assert_eq!(answer.1["error"], error, "{:?}", answer.1);
    let mut keys: Vec<&String> = answer.1.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["error", "error_description"], "{:?}", answer.1);
}

async fn profile_status(server: &TestServer, token: &str) -> u16 {
    server.get("/api/v1/users/profile", token).await.status
}

async fn user_id(server: &TestServer, email: &str) -> i64 {
    server.id_of("users", "email", email).await
}

#[tokio::test]
async fn discovery_documents_and_jwks() {
    jhe_tests::init_logs();
    let server = TestServer::start().await.unwrap();
    let http = http();
    let issuer = format!("{}/o", server.base);
    let get_json = |path: &str| {
        let request = http.get(format!("{}{path}", server.base));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    for path in ["/o/.well-known/openid-configuration", "/o/.well-known/openid-configuration/"] {
        let doc = get_json(path).await;
        assert_eq!(doc["issuer"], issuer.as_str());
        assert_eq!(doc["token_endpoint"], format!("{}/o/token/", server.base));
        assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    }
    let metadata = get_json("/o/.well-known/oauth-authorization-server").await;
    assert_eq!(metadata["issuer"], issuer.as_str());
    assert_eq!(metadata["revocation_endpoint"], format!("{}/o/revoke_token/", server.base));
    let smart = get_json("/FHIR/R5/.well-known/smart-configuration").await;
    assert_eq!(smart["authorization_endpoint"], format!("{}/o/authorize/", server.base));
    // the reference's three (§7.7), then the SMART scope permissions jhe enforces (tests/tests/smart_scopes.rs)
    assert_eq!(
        smart["capabilities"],
        json!([
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "permission-v2",
            "permission-v1",
            "permission-patient",
            "permission-user"
        ])
    );

    // CORS for browser apps on /o/ (§7.1), and a preflight answered with 204
    let preflight = http.request(reqwest::Method::OPTIONS, format!("{}/o/token/", server.base)).send().await.unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");

    let provider = CoreProviderMetadata::discover_async(IssuerUrl::new(issuer.clone()).unwrap(), &http).await.unwrap();
    assert_eq!(provider.issuer().as_str(), issuer);
    assert_eq!(provider.jwks().keys().len(), 1, "the key made on first start");
    let jwks: Value =
        http.get(format!("{}/o/.well-known/jwks.json", server.base)).send().await.unwrap().json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["alg"].as_str(), key["use"].as_str()),
        (Some("RSA"), Some("RS256"), Some("sig"))
    );
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");
}

#[tokio::test]
async fn code_flow_with_consent_id_token_userinfo_refresh_introspection_and_revocation() {
    let server = TestServer::start().await.unwrap();
    let secret = confidential_client(&server, "research-hub").await;
    let http = http();
    let issuer = IssuerUrl::new(format!("{}/o", server.base)).unwrap();
    let provider = CoreProviderMetadata::discover_async(issuer, &http).await.unwrap();
    let client = CoreClient::from_provider_metadata(
        provider,
        ClientId::new("research-hub".into()),
        Some(ClientSecret::new(secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.into()).unwrap())
    .set_introspection_url(IntrospectionUrl::new(format!("{}/o/introspect/", server.base)).unwrap());

    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, state, nonce) = client
        .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
        .add_scope(Scope::new("email".into()))
        .set_pkce_challenge(challenge)
        .url();
    let back = Browser::at(&server).authorize(auth_url.as_str(), seeded::MEGAN, true).await;
    assert!(back.as_str().starts_with(REDIRECT), "{back}");
    assert_eq!(query_param(&back, "state").as_deref(), Some(state.secret().as_str()));
    let code = query_param(&back, "code").unwrap();

    let tokens = client
        .exchange_code(AuthorizationCode::new(code))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .unwrap();
    let megan = user_id(&server, seeded::MEGAN).await;
    let scopes: Vec<String> = tokens.scopes().unwrap().iter().map(|s| s.to_string()).collect();
    assert_eq!(scopes, ["openid", "email"]);
    let expires_in = tokens.expires_in().unwrap().as_secs();
    assert!((14 * 24 * 3600 - 60..=14 * 24 * 3600).contains(&expires_in), "{expires_in}");

    // the ID token verifies against the JWKS, with the nonce, at_hash and the jhe user
    let id_token = tokens.id_token().expect("an ID token for the openid scope");
    let verifier = client.id_token_verifier();
    let claims: &CoreIdTokenClaims = id_token.claims(&verifier, &nonce).unwrap();
    assert_eq!(claims.subject().as_str(), megan.to_string());
    assert_eq!(claims.issuer().as_str(), format!("{}/o", server.base));
    assert_eq!(claims.email().map(|e| e.as_str()), Some(seeded::MEGAN));
    assert!(claims.auth_time().is_some());
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    assert!(id_token.claims(&verifier, &Nonce::new("other".into())).is_err(), "a wrong nonce is refused");

    // userinfo, and the access token works on the REST API as that user
    let info: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), Some(SubjectIdentifier::new(megan.to_string())))
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_eq!(info.email().map(|e| e.as_str()), Some(seeded::MEGAN));
    let access = tokens.access_token().secret().clone();
    let profile = server.get("/api/v1/users/profile", &access).await;
    assert_eq!((profile.status, profile.body["id"].as_i64()), (200, Some(megan)));

    // introspection by the (confidential) client
    let introspected = client.introspect(tokens.access_token()).request_async(&http).await.unwrap();
    assert!(introspected.active());
    assert_eq!(introspected.username(), Some(seeded::MEGAN));
    assert_eq!(introspected.client_id().map(|c| c.as_str()), Some("research-hub"));

    // refresh rotates: new access and refresh tokens, the old access token stops working
    let refresh = tokens.refresh_token().unwrap().clone();
    let refreshed = client.exchange_refresh_token(&refresh).unwrap().request_async(&http).await.unwrap();
    assert_ne!(refreshed.access_token().secret(), &access);
    assert_ne!(refreshed.refresh_token().unwrap().secret(), refresh.secret());
    assert_eq!(profile_status(&server, &access).await, 401);
    let access2 = refreshed.access_token().secret().clone();
    assert_eq!(profile_status(&server, &access2).await, 200);

    // RFC 7009 revocation: 200, then the token is inactive and refused
    let revoked = form_post(&server, "/o/revoke_token/", Some(("research-hub", &secret)), &[("token", &access2)]).await;
    assert_eq!(revoked.0, 200);
    assert_eq!(profile_status(&server, &access2).await, 401);
    let introspected = client.introspect(refreshed.access_token()).request_async(&http).await.unwrap();
    assert!(!introspected.active());
    let answer = form_post(&server, "/o/introspect/", Some(("research-hub", &secret)), &[("token", &access2)]).await;
    assert_eq!(answer, (200, json!({"active": false})));
    // revoking the refresh token ends the family's last live token
    let refresh2 = refreshed.refresh_token().unwrap().secret().clone();
    let revoked = form_post(
        &server,
        "/o/revoke_token/",
        Some(("research-hub", &secret)),
        &[("token", &refresh2), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(revoked.0, 200);
    let answer = form_post(
        &server,
        "/o/token/",
        Some(("research-hub", &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh2)],
    )
    .await;
    assert_oauth_error(&answer, 400, "invalid_grant");
}

#[tokio::test]
async fn public_client_skips_consent_and_login_checks_csrf_and_password() {
    let server = TestServer::start().await.unwrap();
    // the seeded SPA client: public, skip_authorization; no consent page, no secret
    let (code, verifier) = code_for(&server, "jhe-admin-ui", seeded::MARY).await;
    let answer = form_post(
        &server,
        "/o/token",
        None,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", "jhe-admin-ui"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(answer.0, 200, "{:?}", answer.1);
    let mut keys: Vec<&String> = answer.1.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["access_token", "expires_in", "id_token", "refresh_token", "scope", "token_type"]);
    assert_eq!((answer.1["token_type"].as_str(), answer.1["scope"].as_str()), (Some("Bearer"), Some("openid email")));
    let mary = user_id(&server, seeded::MARY).await;
    let userinfo = http()
        .get(format!("{}/o/userinfo/", server.base))
        .bearer_auth(answer.1["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(
        userinfo.json::<Value>().await.unwrap(),
        json!({"sub": mary.to_string(), "email": seeded::MARY, "email_verified": false})
    );

    // the login form: without the CSRF token 403; a wrong password shows the form again, with no session
    let mut browser = Browser::at(&server);
    let page = browser.get("/accounts/login/?next=/o/authorize/").await;
    assert_eq!(page.status, 200);
    let form = page.form();
    let forged = browser
        .post(
            "/accounts/login/",
            &[("email".into(), seeded::MARY.into()), ("password".into(), PASSWORD.into()), ("next".into(), "/".into())],
        )
        .await;
    assert_eq!(forged.status, 403);
    let mut wrong = form.clone();
    wrong.push(("email".into(), seeded::MARY.into()));
    wrong.push(("password".into(), "not-the-password".into()));
    let refused = browser.post("/accounts/login/", &wrong).await;
    assert_eq!(refused.status, 200);
    assert!(refused.body.contains("Please enter a correct email address and password"));
    // an open redirect through `next` is not followed
    let mut evil = form.into_iter().filter(|(name, _)| name != "next").collect::<Vec<_>>();
    evil.push(("next".into(), "//evil.example/".into()));
    evil.push(("email".into(), seeded::MARY.into()));
    evil.push(("password".into(), PASSWORD.into()));
    let logged_in = browser.post("/accounts/login/", &evil).await;
    assert_eq!((logged_in.status, logged_in.location.as_str()), (302, "/"));
}

#[tokio::test]
async fn authorization_requests_without_pkce_or_with_a_foreign_redirect_are_refused() {
    let server = TestServer::start().await.unwrap();
    let http = http();
    let authorize = |params: &[(&str, &str)]| {
        url::Url::parse_with_params(&format!("{}/o/authorize/", server.base), params).unwrap().to_string()
    };
    // no PKCE: back to the client with invalid_request and the state
    let no_pkce = http
        .get(authorize(&[
            ("response_type", "code"),
            ("client_id", "jhe-admin-ui"),
            ("redirect_uri", REDIRECT),
            ("state", "s1"),
        ]))
        .send()
        .await
        .unwrap();
    let back = url::Url::parse(&location(&no_pkce)).unwrap();
    assert_eq!(query_param(&back, "error").as_deref(), Some("invalid_request"));
    assert_eq!(query_param(&back, "state").as_deref(), Some("s1"));
    // plain PKCE is not accepted either
    let plain = http
        .get(authorize(&[
            ("response_type", "code"),
            ("client_id", "jhe-admin-ui"),
            ("redirect_uri", REDIRECT),
            ("code_challenge", "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            ("code_challenge_method", "plain"),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(query_param(&url::Url::parse(&location(&plain)).unwrap(), "error").as_deref(), Some("invalid_request"));
    // an unregistered redirect URI or client is never redirected to
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    for (client, redirect) in [("jhe-admin-ui", "https://evil.example/cb"), ("nobody", REDIRECT)] {
        let refused = http
            .get(authorize(&[
                ("response_type", "code"),
                ("client_id", client),
                ("redirect_uri", redirect),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
            ]))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400);
        assert!(refused.headers().get("location").is_none());
    }
}

#[tokio::test]
async fn code_exchanges_are_refused_with_the_right_rfc_6749_error() {
    let server = TestServer::start().await.unwrap();
    let secret = confidential_client(&server, "research-hub").await;
    let exchange = |code: String, verifier: String, redirect: &'static str, secret: String| {
        let server = &server;
        async move {
            form_post(
                server,
                "/o/token/",
                Some(("research-hub", &secret)),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", redirect),
                    ("code_verifier", &verifier),
                ],
            )
            .await
        }
    };

    // PKCE mismatch
    let (code, _) = code_for(&server, "research-hub", seeded::MEGAN).await;
    let (_, other_verifier) = PkceCodeChallenge::new_random_sha256();
    assert_oauth_error(
        &exchange(code, other_verifier.secret().clone(), REDIRECT, secret.clone()).await,
        400,
        "invalid_grant",
    );

    // wrong redirect_uri
    let (code, verifier) = code_for(&server, "research-hub", seeded::MEGAN).await;
    assert_oauth_error(
        &exchange(code, verifier, "http://127.0.0.1:8000/other", secret.clone()).await,
        400,
        "invalid_grant",
    );

    // wrong client secret: 401 invalid_client with a Basic challenge, and the code stays usable
    let (code, verifier) = code_for(&server, "research-hub", seeded::MEGAN).await;
    let response = http()
        .post(format!("{}/o/token/", server.base))
        .basic_auth("research-hub", Some("wrong-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    let answer = (response.status().as_u16(), response.json::<Value>().await.unwrap());
    assert_oauth_error(&answer, 401, "invalid_client");

    // the right secret works once; a second use of the code is refused and revokes what the first one gave
    let first = exchange(code.clone(), verifier.clone(), REDIRECT, secret.clone()).await;
    assert_eq!(first.0, 200, "{:?}", first.1);
    let access = first.1["access_token"].as_str().unwrap().to_owned();
    assert_eq!(profile_status(&server, &access).await, 200);
    assert_oauth_error(&exchange(code, verifier, REDIRECT, secret.clone()).await, 400, "invalid_grant");
    assert_eq!(profile_status(&server, &access).await, 401, "tokens of a reused code are revoked");
    let refresh = first.1["refresh_token"].as_str().unwrap();
    let answer = form_post(
        &server,
        "/o/token/",
        Some(("research-hub", &secret)),
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_oauth_error(&answer, 400, "invalid_grant");

    // expired code (codes live 60 s; this one is moved into the past)
    let (code, verifier) = code_for(&server, "research-hub", seeded::MEGAN).await;
    sqlx::query("UPDATE oauth_grants SET expires_at = now() - interval '1 second' WHERE used_at IS NULL")
        .execute(&server.db.pool)
        .await
        .unwrap();
    assert_oauth_error(&exchange(code, verifier, REDIRECT, secret.clone()).await, 400, "invalid_grant");

    // unknown code, missing verifier, missing and unknown grant types
    let (_, verifier) = PkceCodeChallenge::new_random_sha256();
    assert_oauth_error(
        &exchange("nope".into(), verifier.secret().clone(), REDIRECT, secret.clone()).await,
        400,
        "invalid_grant",
    );
    let answer = form_post(
        &server,
        "/o/token/",
        Some(("research-hub", &secret)),
        &[("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_oauth_error(&answer, 400, "invalid_request");
    assert_oauth_error(
        &form_post(&server, "/o/token/", Some(("research-hub", &secret)), &[]).await,
        400,
        "invalid_request",
    );
    let answer = form_post(&server, "/o/token/", Some(("research-hub", &secret)), &[("grant_type", "password")]).await;
    assert_oauth_error(&answer, 400, "unsupported_grant_type");
    // a confidential client without its secret
    let answer = form_post(
        &server,
        "/o/token/",
        None,
        &[("grant_type", "refresh_token"), ("client_id", "research-hub"), ("refresh_token", "x")],
    )
    .await;
    assert_oauth_error(&answer, 401, "invalid_client");
}

/// A token request of the public SPA client.
async fn public(server: &TestServer, form: &[(&str, &str)]) -> (u16, Value) {
    let mut form = form.to_vec();
    form.push(("client_id", "jhe-admin-ui"));
    form_post(server, "/o/token/", None, &form).await
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_whole_family() {
    let server = TestServer::start().await.unwrap();
    let (code, verifier) = code_for(&server, "jhe-admin-ui", seeded::VICTOR).await;
    let first = public(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    assert_eq!(first.0, 200, "{:?}", first.1);
    let refresh1 = first.1["refresh_token"].as_str().unwrap().to_owned();
    let second = public(&server, &[("grant_type", "refresh_token"), ("refresh_token", &refresh1)]).await;
    assert_eq!(second.0, 200, "{:?}", second.1);
    assert!(second.1["id_token"].is_string(), "an ID token on refresh with openid");
    let access2 = second.1["access_token"].as_str().unwrap().to_owned();
    let refresh2 = second.1["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(profile_status(&server, &access2).await, 200);

    // the rotated-out token comes back (stolen?): refused, and everything issued after it is revoked
    let reuse = public(&server, &[("grant_type", "refresh_token"), ("refresh_token", &refresh1)]).await;
    assert_oauth_error(&reuse, 400, "invalid_grant");
    assert_eq!(profile_status(&server, &access2).await, 401);
    let after = public(&server, &[("grant_type", "refresh_token"), ("refresh_token", &refresh2)]).await;
    assert_oauth_error(&after, 400, "invalid_grant");
    // a refresh token only works for the client it was issued to
    let unknown = public(&server, &[("grant_type", "refresh_token"), ("refresh_token", "unknown")]).await;
    assert_oauth_error(&unknown, 400, "invalid_grant");
}

#[tokio::test]
async fn expired_or_revoked_tokens_are_refused_everywhere() {
    let server = TestServer::start().await.unwrap();
    let secret = confidential_client(&server, "research-hub").await;
    let (code, verifier) = code_for(&server, "research-hub", seeded::MEGAN).await;
    let answer = form_post(
        &server,
        "/o/token/",
        Some(("research-hub", &secret)),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let access = answer.1["access_token"].as_str().unwrap().to_owned();
    let base = server.base.clone();
    let userinfo = |token: String| {
        let url = format!("{base}/o/userinfo/");
        async move {
            let response = http().get(url).bearer_auth(token).send().await.unwrap();
            let challenge = response.headers().get("www-authenticate").map(|v| v.to_str().unwrap().to_owned());
            (response.status().as_u16(), challenge, response.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(userinfo(access.clone()).await.0, 200);

    sqlx::query(
        "UPDATE access_tokens SET expires_at = now() - interval '1 second' WHERE source = 'authorization_code'",
    )
    .execute(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(profile_status(&server, &access).await, 401);
    let (status, challenge, body) = userinfo(access.clone()).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid_token")));
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    let introspected =
        form_post(&server, "/o/introspect/", Some(("research-hub", &secret)), &[("token", &access)]).await;
    assert_eq!(introspected, (200, json!({"active": false})));

    // introspection needs client authentication; revocation without a token parameter is invalid_request
    let anonymous = form_post(&server, "/o/introspect/", None, &[("token", &access)]).await;
    assert_oauth_error(&anonymous, 401, "invalid_client");
    let public = form_post(&server, "/o/introspect/", None, &[("token", &access), ("client_id", "jhe-admin-ui")]).await;
    assert_oauth_error(&public, 401, "invalid_client");
    let no_token = form_post(&server, "/o/revoke_token/", Some(("research-hub", &secret)), &[]).await;
    assert_oauth_error(&no_token, 400, "invalid_request");
    // a CLI token (no openid scope) may not read userinfo
    let cli = server.token(seeded::MEGAN).await;
    let (status, _, body) = userinfo(cli).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("insufficient_scope")));
}

#[tokio::test]
async fn practitioner_api_keys_get_client_credentials_tokens_acting_as_their_owner() {
    let server = TestServer::start().await.unwrap();
    let mary_token = server.token(seeded::MARY).await;
    let key = server.practitioner_api_key(&mary_token, "notebook").await;

    // the key is used verbatim as the Basic credentials (§7.5)
    let body = server.client_credentials(&key, None).await;
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["access_token", "expires_in", "scope", "token_type"], "no refresh or ID token");
    let token = body["access_token"].as_str().unwrap();
    let profile = server.get("/api/v1/users/profile", token).await;
    assert_eq!(profile.status, 200);
    assert_eq!(profile.body["email"], seeded::MARY);

    // a wrong secret, and a client-credentials client asking for a code grant
    use base64::Engine;
    let client_id = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&key).unwrap())
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let wrong =
        form_post(&server, "/o/token/", Some((&client_id, "wrong")), &[("grant_type", "client_credentials")]).await;
    assert_oauth_error(&wrong, 401, "invalid_client");
    let secret = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&key).unwrap())
        .unwrap()
        .split_once(':')
        .unwrap()
        .1
        .to_owned();
    let code = form_post(
        &server,
        "/o/token/",
        Some((&client_id, &secret)),
        &[("grant_type", "authorization_code"), ("code", "x"), ("code_verifier", "y"), ("redirect_uri", REDIRECT)],
    )
    .await;
    assert_oauth_error(&code, 400, "unauthorized_client");
    // a public client may not use client_credentials
    let public =
        form_post(&server, "/o/token/", None, &[("grant_type", "client_credentials"), ("client_id", "jhe-admin-ui")])
            .await;
    assert_oauth_error(&public, 400, "unauthorized_client");
}

#[tokio::test]
async fn rotated_signing_keys_stay_in_the_jwks_while_their_tokens_live() {
    let server = TestServer::start().await.unwrap();
    let http = http();
    let issuer = IssuerUrl::new(format!("{}/o", server.base)).unwrap();
    let id_token_of = |answer: &(u16, Value)| answer.1["id_token"].as_str().unwrap().to_owned();
    let exchange = |code: String, verifier: String| {
        let server = &server;
        async move { server.exchange_code("jhe-admin-ui", &code, REDIRECT, &verifier).await }
    };
    let (code, verifier) = code_for(&server, "jhe-admin-ui", seeded::TOM).await;
    let old_token = id_token_of(&exchange(code, verifier).await);

    let new_kid = jhe_api::rotate_signing_key(&server.db.pool, &jhe_api::ServerSecret::none()).await.unwrap();
    let provider = CoreProviderMetadata::discover_async(issuer, &http).await.unwrap();
    let kids: Vec<String> =
        provider.jwks().keys().iter().filter_map(|k| k.key_id().map(|id| id.as_str().to_owned())).collect();
    assert_eq!(kids.len(), 2, "{kids:?}");
    assert_eq!(kids[0], new_kid, "the new key is listed first");

    let client = CoreClient::from_provider_metadata(provider, ClientId::new("jhe-admin-ui".into()), None);
    let verifier = client.id_token_verifier();
    let parse = |token: &str| serde_json::from_value::<openidconnect::core::CoreIdToken>(json!(token)).unwrap();
    let old = parse(&old_token);
    let tom = user_id(&server, seeded::TOM).await.to_string();
    // no nonce was sent: accept its absence
    let no_nonce = |_: Option<&Nonce>| Ok(());
    assert_eq!(old.claims(&verifier, no_nonce).unwrap().subject().as_str(), tom, "tokens of the retired key verify");
    let (code, pkce) = code_for(&server, "jhe-admin-ui", seeded::TOM).await;
    let new_raw = id_token_of(&exchange(code, pkce).await);
    let new = parse(&new_raw);
    assert_eq!(new.claims(&verifier, no_nonce).unwrap().subject().as_str(), tom);
    let header: Value = {
        use base64::Engine;
        let first = new_raw.split('.').next().unwrap().to_owned();
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(first).unwrap()).unwrap()
    };
    assert_eq!(header["kid"], new_kid.as_str(), "new ID tokens are signed with the new key");
}

async fn redeem(server: &TestServer, token: &str) -> jhe_tests::Answer {
    server.request("POST", &format!("/api/v1/invitation/{token}"), None, None).await
}

async fn set_invitation(server: &TestServer, id: i64, sql_set: &str) {
    sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE patient_invitations SET {sql_set} WHERE id = $1")))
        .bind(id)
        .execute(&server.db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn invitation_redemption_signs_the_patient_in_and_answers_every_failure_status() {
    use base64::Engine;
    let server = TestServer::start().await.unwrap();
    let megan = server.token(seeded::MEGAN).await;
    let peter = server.patient_id(seeded::PETER).await;
    let (first_id, token) = server.invite(&megan, peter).await;

    // redeem with a plain HTTP client and no credentials
    let redeemed = redeem(&server, &token).await;
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.body);
    let grant = &redeemed.body["grant"];
    let mut keys: Vec<&String> = grant.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["client_id", "code", "grant_type", "redirect_uri"]);
    assert_eq!(
        (grant["grant_type"].as_str(), grant["client_id"].as_str()),
        (Some("authorization_code"), Some("carex"))
    );
    assert!(redeemed.body["token_endpoint"].as_str().unwrap().ends_with("/o/token/"));
    assert!(redeemed.body["expires"].as_str().unwrap().ends_with('Z'));
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.as_bytes());
    let tokens = server.exchange_grant(grant, &verifier).await;
    assert_eq!(tokens.0, 200, "{:?}", tokens.1);
    // a patient app's token: uploads, the patient's own consents and profile, no observation reads
    assert_eq!(tokens.1["scope"], "openid email patient/Observation.c patient/Consent.cruds patient/Patient.r");
    let profile = server.get("/api/v1/users/profile", tokens.1["access_token"].as_str().unwrap()).await;
    let peter_user = user_id(&server, seeded::PETER).await;
    assert_eq!((profile.status, profile.body["id"].as_i64()), (200, Some(peter_user)), "{:?}", profile.body);
    assert_eq!(profile.body["patient"]["id"].as_i64(), Some(peter));

    // a retry within the 12-hour window works again; the verifier must be base64url(token)
    let retry = redeem(&server, &token).await;
    assert_eq!(retry.status, 200, "{:?}", retry.body);
    let wrong = server
        .exchange_grant(&retry.body["grant"], &base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("x".repeat(32)))
        .await;
    assert_oauth_error(&wrong, 400, "invalid_grant");
    // after the window: 409
    set_invitation(&server, first_id, "last_updated = now() - interval '13 hours'").await;
    let late = redeem(&server, &token).await;
    assert_eq!((late.status, late.detail().as_str()), (409, "Invitation has already been used."));

    // reissuing retires the older issued link: 409
    let (_, older) = server.invite(&megan, peter).await;
    let (newest_id, newest) = server.invite(&megan, peter).await;
    assert_eq!(redeem(&server, &older).await.status, 409);
    // older than the expiration (7 days): 410, and it stays expired
    set_invitation(&server, newest_id, "last_updated = now() - interval '8 days'").await;
    let expired = redeem(&server, &newest).await;
    assert_eq!((expired.status, expired.detail().as_str()), (410, "Invitation has expired."));
    assert_eq!(redeem(&server, &newest).await.status, 410);
    // cancelled: 403
    let (cancelled_id, cancelled) = server.invite(&megan, peter).await;
    set_invitation(&server, cancelled_id, "status = 'cancelled'").await;
    let refused = redeem(&server, &cancelled).await;
    assert_eq!((refused.status, refused.detail().as_str()), (403, "Invitation has been cancelled."));
    // unknown or malformed tokens: 404
    for unknown in ["A".repeat(32), "short".to_owned()] {
        let missing = redeem(&server, &unknown).await;
        assert_eq!((missing.status, missing.detail().as_str()), (404, "Invitation not found or already used."));
    }
}
