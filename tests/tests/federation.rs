//! Federated login (docs/identity.md "Federated login") with two real jhe servers: the upstream U is the OpenID
//! Connect provider, the downstream D is configured with U as its issuer. A browser (cookies kept per origin,
//! redirects followed by hand) signs in to D through U's login and consent pages, and D's own OAuth flow then
//! continues for D's client as the practitioner matched by verified email.

use jhe_api::{Federation, FederationConfig, OIDC_CALLBACK_PATH};
use jhe_tests::browser::{Browser, authorize_url, unescape};
use jhe_tests::{TestDatabase, TestServer, seeded};
use openidconnect::PkceCodeChallenge;
use serde_json::Value;

/// The seeded SPA client of D (public, skips consent) and its registered redirect URI (nothing listens there).
const D_CLIENT: &str = "jhe-admin-ui";
const D_REDIRECT: &str = "http://127.0.0.1:8000/auth/callback";
/// U's client for D.
const U_CLIENT: &str = "jhe-downstream";

/// Starts a federated sign-in on D (`/accounts/oidc/login/?next=…`) and goes through U as `email`; returns D's
/// callback URL (not opened yet).
async fn federated_callback_url(browser: &mut Browser, d: &TestServer, next: &str, email: &str, allow: bool) -> String {
    let start = url::Url::parse_with_params(&format!("{}/accounts/oidc/login/", d.base), &[("next", next)]).unwrap();
    let started = browser.get(start.as_str()).await;
    assert_eq!(started.status, 302, "{}", started.body);
    assert!(browser.cookie(&d.base, "jhe_oidc").is_some(), "the sign-in is bound to this browser");
    let upstream = started.next_url();
    let callback = browser.authorize(&upstream, email, allow).await.to_string();
    assert!(callback.starts_with(&format!("{}{OIDC_CALLBACK_PATH}?", d.base)), "{callback}");
    callback
}

fn query_param(url: &str, name: &str) -> Option<String> {
    url::Url::parse(url).ok()?.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned())
}

/// U and D: D's federation points at U, U has a confidential client for D whose redirect URI is D's callback.
struct Pair {
    upstream: TestServer,
    downstream: TestServer,
}

async fn pair() -> Pair {
    jhe_tests::init_logs();
    let upstream = TestServer::start().await.unwrap();
    let secret = jhe_catalog::random_token(32);
    let mut config = FederationConfig::new(format!("{}/o", upstream.base), U_CLIENT, secret.clone());
    config.name = "Upstream Health".to_owned();
    let federation = Federation::new(config).unwrap();
    let downstream = TestServer::start_configured(TestDatabase::create(true).await.unwrap(), move |state| {
        state.federation = Some(federation);
    })
    .await
    .unwrap();
    let callback = format!("{}{OIDC_CALLBACK_PATH}", downstream.base);
    upstream.add_confidential_client(U_CLIENT, &secret, "Downstream jhe", &callback).await;
    Pair { upstream, downstream }
}

async fn set_email(server: &TestServer, from: &str, to: &str, verified: bool) {
    let changed = sqlx::query("UPDATE users SET email = $2, email_is_verified = $3 WHERE lower(email) = lower($1)")
        .bind(from)
        .bind(to)
        .bind(verified)
        .execute(&server.db.pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1, "{from}");
}

async fn user_id(server: &TestServer, email: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM users WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_one(&server.db.pool)
        .await
        .unwrap()
}

async fn links(server: &TestServer) -> Vec<(String, String, i64)> {
    sqlx::query_as("SELECT issuer, subject, user_id FROM federated_identities ORDER BY id")
        .fetch_all(&server.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn practitioner_signs_in_through_upstream_jhe_and_d_oauth_flow_continues() {
    let Pair { upstream: u, downstream: d } = pair().await;
    // U's Megan and D's Victor share one address (different case, different user ids): the email decides, not the id
    set_email(&u, seeded::MEGAN, "dr.who@example.org", true).await;
    set_email(&d, seeded::VICTOR, "Dr.Who@Example.org", false).await;
    let megan_at_u = user_id(&u, "dr.who@example.org").await;
    let victor_at_d = user_id(&d, "dr.who@example.org").await;
    assert_ne!(megan_at_u, victor_at_d);

    // D's client starts its flow; D has no session, so its login page, which offers the upstream
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let authorize = authorize_url(&d, D_CLIENT, D_REDIRECT, "openid email", Some("d-state"), challenge.as_str());
    let mut browser = Browser::new();
    let to_login = browser.get(authorize.as_str()).await;
    assert_eq!(to_login.status, 302);
    let login_page = browser.get(&to_login.next_url()).await;
    assert_eq!(login_page.status, 200);
    let link = login_page
        .body
        .split("<a href=\"")
        .filter_map(|rest| rest.split('"').next())
        .map(unescape)
        .find(|href| href.starts_with("/accounts/oidc/login/"))
        .unwrap_or_else(|| panic!("no single sign-on link: {}", login_page.body));
    assert!(login_page.body.contains("Sign in with Upstream Health"), "{}", login_page.body);
    assert_eq!(browser.cookie(&d.base, "jhe_session"), None, "showing the login page starts no session");

    // D → U authorize (state, nonce, PKCE S256, D's callback) → U login and consent → back to D's callback
    let started = browser.get(&format!("{}{link}", d.base)).await;
    assert_eq!(started.status, 302, "{}", started.body);
    let upstream_authorize = started.next_url();
    assert!(upstream_authorize.starts_with(&format!("{}/o/authorize", u.base)), "{upstream_authorize}");
    assert_eq!(query_param(&upstream_authorize, "client_id").as_deref(), Some(U_CLIENT));
    assert_eq!(query_param(&upstream_authorize, "code_challenge_method").as_deref(), Some("S256"));
    assert!(query_param(&upstream_authorize, "nonce").is_some());
    assert_eq!(query_param(&upstream_authorize, "redirect_uri"), Some(format!("{}{OIDC_CALLBACK_PATH}", d.base)));
    let scope = query_param(&upstream_authorize, "scope").unwrap();
    assert!(scope.split(' ').any(|s| s == "openid") && scope.split(' ').any(|s| s == "email"), "{scope}");
    let callback = browser.authorize(&upstream_authorize, "dr.who@example.org", true).await.to_string();
    assert!(callback.starts_with(&format!("{}{OIDC_CALLBACK_PATH}?", d.base)), "{callback}");

    // D: a new signed-in session, the binding cookie cleared, on to `next` (D's authorize)
    let signed_in = browser.get(&callback).await;
    assert_eq!(signed_in.status, 302, "{}", signed_in.body);
    assert!(signed_in.location.starts_with("/o/authorize/?"), "{}", signed_in.location);
    assert!(browser.cookie(&d.base, "jhe_session").is_some(), "a sign-in starts a session");
    assert_eq!(browser.cookie(&d.base, "jhe_oidc"), None);
    let back = browser.get(&signed_in.next_url()).await;
    assert_eq!(back.status, 302, "{}", back.body);
    let code = query_param(&back.location, "code").expect("D's code");
    assert_eq!(query_param(&back.location, "state").as_deref(), Some("d-state"));

    // D's token endpoint, then D's REST API as the matched practitioner
    let (_, tokens) = d.exchange_code(D_CLIENT, &code, D_REDIRECT, verifier.secret()).await;
    let access = tokens["access_token"].as_str().unwrap_or_else(|| panic!("{tokens}"));
    // jhe's ID tokens carry email_verified with the email scope (what makes jhe usable as an upstream); D's copy of
    // Victor's address is unverified
    let id_token = tokens["id_token"].as_str().unwrap();
    let payload = id_token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&claims["email"], &claims["email_verified"]),
        (&Value::from("Dr.Who@Example.org"), &Value::from(false))
    );
    let profile = d.get("/api/v1/users/profile", access).await;
    assert_eq!(profile.status, 200, "{:?}", profile.body);
    assert_eq!(profile.body["id"].as_i64(), Some(victor_at_d));
    assert_eq!(profile.body["email"], "Dr.Who@Example.org");
    let issuer = format!("{}/o", u.base);
    assert_eq!(links(&d).await, [(issuer.clone(), megan_at_u.to_string(), victor_at_d)]);

    // the callback URL cannot be used again: not by this browser, not by another one
    let replayed = browser.get(&callback).await;
    assert_eq!(replayed.status, 400, "{}", replayed.body);
    assert!(replayed.body.contains("invalid, expired or already used"), "{}", replayed.body);
    let stolen = Browser::new().get(&callback).await;
    assert_eq!(stolen.status, 400);

    // a callback presented by another browser does not spend the sign-in: its own browser still completes it
    let mut owner = Browser::new();
    let callback = federated_callback_url(&mut owner, &d, "/accounts/profile/", "dr.who@example.org", true).await;
    let mut thief = Browser::new();
    let refused = thief.get(&callback).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let tampered = callback.replace("state=", "state=x");
    assert_eq!(owner.get(&tampered).await.status, 400, "a state that was never issued");
    let completed = owner.get(&callback).await;
    assert_eq!((completed.status, completed.location.as_str()), (302, "/accounts/profile/"), "{}", completed.body);

    // the link decides from now on: Megan's upstream address changes, she still signs in as Victor
    set_email(&u, "dr.who@example.org", "megan.elsewhere@example.org", true).await;
    let mut again = Browser::new();
    let callback = federated_callback_url(&mut again, &d, "/", "megan.elsewhere@example.org", true).await;
    let page = again.get(&callback).await;
    assert_eq!((page.status, page.location.as_str()), (302, "/"), "{}", page.body);
    let session = again.cookie(&d.base, "jhe_session").unwrap();
    let signed_in = jhe_catalog::find_login_session(&d.db.pool, &session).await.unwrap().unwrap();
    assert_eq!(signed_in.user_id, Some(victor_at_d));

    // and another upstream account that now claims Victor's address (verified) cannot take the linked account over
    set_email(&u, seeded::TOM, "dr.who@example.org", true).await;
    let mut intruder = Browser::new();
    let callback = federated_callback_url(&mut intruder, &d, "/", "dr.who@example.org", true).await;
    let page = intruder.get(&callback).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("already linked to another Upstream Health account"), "{}", page.body);
    assert_eq!(intruder.cookie(&d.base, "jhe_session"), None);
    assert_eq!(links(&d).await.len(), 1);
}

#[tokio::test]
async fn refusals_unverified_unknown_patient_denied_and_next_stays_on_site() {
    let Pair { upstream: u, downstream: d } = pair().await;
    let page_for = |email: &'static str, allow: bool| {
        let d = &d;
        async move {
            let mut browser = Browser::new();
            let callback = federated_callback_url(&mut browser, d, "/", email, allow).await;
            let page = browser.get(&callback).await;
            assert_eq!(browser.cookie(&d.base, "jhe_oidc"), None, "the binding cookie is cleared");
            (page, browser.cookie(&d.base, "jhe_session"))
        }
    };

    // Mary's address is not verified at U (the seed's default): refused, no session
    let (page, session) = page_for(seeded::MARY, true).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("is not verified"), "{}", page.body);
    assert_eq!(session, None);

    // verified at U, but no D account has the address
    set_email(&u, seeded::MEGAN, "nobody.at.d@example.org", true).await;
    let (page, session) = page_for("nobody.at.d@example.org", true).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("No jhe account has the email address nobody.at.d@example.org"), "{}", page.body);
    assert_eq!(session, None);

    // a patient at D: single sign-on is for practitioners
    set_email(&u, seeded::PETER, seeded::PETER, true).await;
    let (page, session) = page_for(seeded::PETER, true).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("not a practitioner account"), "{}", page.body);
    assert_eq!(session, None);

    // a deactivated practitioner at D
    set_email(&u, seeded::MARK, seeded::MARK, true).await;
    sqlx::query("UPDATE users SET is_active = FALSE WHERE email = $1")
        .bind(seeded::MARK)
        .execute(&d.db.pool)
        .await
        .unwrap();
    let (page, _) = page_for(seeded::MARK, true).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("is deactivated"), "{}", page.body);
    assert!(links(&d).await.is_empty(), "refused sign-ins link nothing");

    // the user cancels at U's consent page: U answers error=access_denied, D shows why
    set_email(&u, seeded::TOM, seeded::TOM, true).await;
    let (page, session) = page_for(seeded::TOM, false).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("was not completed") && page.body.contains("access_denied"), "{}", page.body);
    assert_eq!(session, None);

    // an open redirect through `next` is not followed; Tom (verified, practitioner) signs in
    let mut browser = Browser::new();
    let callback = federated_callback_url(&mut browser, &d, "//evil.example/", seeded::TOM, true).await;
    let page = browser.get(&callback).await;
    assert_eq!((page.status, page.location.as_str()), (302, "/"), "{}", page.body);
    assert!(browser.cookie(&d.base, "jhe_session").is_some());

    // a callback without state, or without the binding cookie, is refused
    let missing_state = Browser::new().get(&format!("{}{OIDC_CALLBACK_PATH}?code=abc", d.base)).await;
    assert_eq!(missing_state.status, 400);
}

#[tokio::test]
async fn upstream_down_is_a_502_page_and_no_configuration_no_button() {
    jhe_tests::init_logs();
    // an issuer where nothing listens
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}/o", closed.local_addr().unwrap());
    drop(closed);
    let federation = Federation::new(FederationConfig::new(issuer, "c", "s")).unwrap();
    let d = TestServer::start_configured(TestDatabase::create(true).await.unwrap(), move |state| {
        state.federation = Some(federation);
    })
    .await
    .unwrap();
    let mut browser = Browser::new();
    let login = browser.get(&format!("{}/accounts/login/?next=/x", d.base)).await;
    assert!(login.body.contains("Sign in with single sign-on"), "{}", login.body);
    for _ in 0..2 {
        // not cached: each try discovers again, and each failure is the same clear page
        let page = browser.get(&format!("{}/accounts/oidc/login/?next=/x", d.base)).await;
        assert_eq!(page.status, 502, "{}", page.body);
        assert!(
            page.body.contains("is unavailable right now") && page.body.contains("could not be loaded"),
            "{}",
            page.body
        );
        assert_eq!(browser.cookie(&d.base, "jhe_oidc"), None);
    }

    // a server without federation: no button, and the endpoints are 404 pages
    let plain = TestServer::start().await.unwrap();
    let login = browser.get(&format!("{}/accounts/login/", plain.base)).await;
    assert_eq!(login.status, 200);
    assert!(!login.body.contains("Sign in with"), "{}", login.body);
    for path in ["/accounts/oidc/login/", OIDC_CALLBACK_PATH] {
        let page = browser.get(&format!("{}{path}", plain.base)).await;
        assert_eq!(page.status, 404, "{path}");
        assert!(page.body.contains("not configured"), "{}", page.body);
    }

    // an issuer that is not an http(s) URL is refused when the server is configured
    assert!(Federation::new(FederationConfig::new("not a url", "c", "s")).is_err());
    assert!(Federation::new(FederationConfig::new("ftp://example.org/", "c", "s")).is_err());
}
