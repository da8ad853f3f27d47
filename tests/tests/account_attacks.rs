//! Attacks on accounts and the OAuth provider, performed over HTTP against a real server and Postgres, each shown to
//! fail with nothing stored or changed: a practitioner reading a patient's record through `users/search_by_email`, a
//! password changed through the REST API with a stolen token, an open redirect through the login's `next`, anonymous
//! page views filling the session table, and an intercepted authorization code spent by someone else.

use jhe_tests::browser::{Browser, authorize_url, form_post, http};
use jhe_tests::{TestServer, seeded};
use openidconnect::PkceCodeChallenge;
use serde_json::{Value, json};

const PASSWORD: &str = jhe_catalog::SEED_PASSWORD;
/// The seeded SPA client (public, skips consent) and its redirect URI.
const SPA: &str = "jhe-admin-ui";
const REDIRECT: &str = "http://127.0.0.1:8000/auth/callback";

async fn count(server: &TestServer, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&server.db.pool).await.unwrap()
}

async fn password_hash(server: &TestServer, email: &str) -> String {
    sqlx::query_scalar("SELECT password FROM users WHERE email = $1")
        .bind(email)
        .fetch_one(&server.db.pool)
        .await
        .unwrap()
}

async fn profile_status(server: &TestServer, token: &str) -> u16 {
    server.get("/api/v1/users/profile", token).await.status
}

// ---- users/search_by_email ----

#[tokio::test]
async fn search_by_email_describes_patients_only_within_the_callers_organizations() {
    let server = TestServer::start().await.unwrap();
    let megan = server.token(seeded::MEGAN).await; // member of Lifespan Lab
    let percy_id = server.id_of("users", "email", seeded::PERCY).await; // a patient of Neptunian Pulse Lab
    let (family, given, birth): (Option<String>, Option<String>, Option<chrono::NaiveDate>) =
        sqlx::query_as("SELECT name_family, name_given, birth_date FROM patients WHERE user_id = $1")
            .bind(percy_id)
            .fetch_one(&server.db.pool)
            .await
            .unwrap();

    // the attack: a practitioner of another organization asks for Percy by email and reads his record
    let found = server.get(&format!("/api/v1/users/search_by_email?email={}", seeded::PERCY), &megan).await;
    assert_eq!(found.status, 200, "{:?}", found.body);
    assert_eq!(
        found.body,
        json!({"id": percy_id, "email": seeded::PERCY, "firstName": "", "lastName": "", "patient": null,
               "userType": null, "isSuperuser": false}),
        "only that the account exists"
    );
    let text = found.body.to_string();
    let family = family.filter(|name| !name.is_empty()).expect("Percy has a family name");
    for phi in [Some(family.as_str()), given.as_deref()].into_iter().flatten().filter(|name| !name.is_empty()) {
        assert!(!text.contains(phi), "{phi} leaked: {text}");
    }
    if let Some(birth) = birth {
        assert!(!text.contains(&birth.to_string()), "the birth date leaked: {text}");
    }
    // any case of the address, and the same for a patient in two organizations neither of which is Megan's
    let upper =
        server.get(&format!("/api/v1/users/search_by_email?email={}", seeded::PAT.to_uppercase()), &megan).await;
    assert!(upper.body["patient"].is_null() && upper.body["lastName"] == "", "{:?}", upper.body);

    // a patient of the caller's organization is described, as `patients/global_lookup` would
    let peter = server.get(&format!("/api/v1/users/search_by_email?email={}", seeded::PETER), &megan).await;
    assert_eq!(peter.status, 200);
    assert_eq!(peter.body["patient"]["organizations"][0]["name"], "Lifespan Lab", "{:?}", peter.body);
    assert!(peter.body["patient"]["nameFamily"].is_string());
    // Tom shares Neptunian Pulse Lab with Percy; a superuser sees everyone
    let tom = server.token(seeded::TOM).await;
    let by_tom = server.get(&format!("/api/v1/users/search_by_email?email={}", seeded::PERCY), &tom).await;
    assert_eq!(by_tom.body["patient"]["nameFamily"], family.as_str());
    let admin = server.token(seeded::ADMIN).await;
    let by_admin = server.get(&format!("/api/v1/users/search_by_email?email={}", seeded::PERCY), &admin).await;
    assert_eq!(by_admin.body["patient"]["nameFamily"], family.as_str());

    // practitioners are still found with their id (the web UI adds them to organizations by it); unknown: no id
    let mary = server.get(&format!("/api/v1/users/search_by_email?email={}", seeded::MARY), &megan).await;
    assert_eq!((mary.body["userType"].as_str(), mary.body["id"].is_i64()), (Some("practitioner"), true));
    let nobody = server.get("/api/v1/users/search_by_email?email=nobody@example.org", &megan).await;
    assert!(nobody.body.get("id").is_none(), "{:?}", nobody.body);

    // a patient may not look anyone up, not even a fellow patient of the same organization
    let pamela = server.token(seeded::PAMELA).await;
    let refused = server.get(&format!("/api/v1/users/search_by_email?email={}", seeded::PETER), &pamela).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert!(refused.body.get("patient").is_none());
}

// ---- PATCH /api/v1/users/{id} with a password ----

async fn patch_password(server: &TestServer, token: &str, user_id: i64, body: Value) -> jhe_tests::Answer {
    server.patch(&format!("/api/v1/users/{user_id}"), token, body).await
}

#[tokio::test]
async fn a_stolen_token_cannot_change_the_password_and_a_change_signs_out_everywhere() {
    let server = TestServer::start().await.unwrap();
    let email = seeded::MEGAN;
    let megan_id = server.id_of("users", "email", email).await;
    let stolen = server.token(email).await;
    let other_app = server.token(email).await;
    let mut browser = Browser::at(&server);
    assert_eq!(browser.login(email, PASSWORD).await.status, 302);
    let before = password_hash(&server, email).await;

    // the attack: whoever holds a token sets a password of their own choosing
    let takeover = patch_password(&server, &stolen, megan_id, json!({"password": "attacker's choice"})).await;
    assert_eq!(takeover.status, 400, "{:?}", takeover.body);
    assert!(takeover.detail().starts_with("currentPassword:"), "{}", takeover.detail());
    let guessed = json!({"password": "attacker's choice", "currentPassword": "a guess"});
    let guessed = patch_password(&server, &stolen, megan_id, guessed).await;
    assert_eq!(guessed.status, 400);
    assert_eq!(guessed.detail(), "currentPassword: the current password is not correct");
    // the password form's rules hold here too, and a refused password changes no other field either
    let weak = json!({"password": "1234567890", "currentPassword": PASSWORD, "firstName": "Changed"});
    let weak = patch_password(&server, &stolen, megan_id, weak).await;
    assert_eq!(weak.status, 400);
    assert!(weak.detail().starts_with("password:") && weak.detail().contains("entirely numeric"), "{}", weak.detail());
    let similar = json!({"password": "member_megan", "current_password": PASSWORD});
    assert!(patch_password(&server, &stolen, megan_id, similar).await.detail().contains("too similar"));
    assert_eq!(password_hash(&server, email).await, before, "nothing changed");
    let first_name: String = sqlx::query_scalar("SELECT first_name FROM users WHERE id = $1")
        .bind(megan_id)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_ne!(first_name, "Changed");
    assert_eq!(profile_status(&server, &other_app).await, 200, "refused changes revoke nothing");
    assert_eq!(browser.get("/accounts/password/change/").await.status, 200, "and end no session");

    // the owner, with the current password: the password changes, every other session and token ends
    let changed = json!({"password": "brand new pass", "currentPassword": PASSWORD});
    let changed = patch_password(&server, &stolen, megan_id, changed).await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.body["email"], email);
    assert_eq!(profile_status(&server, &stolen).await, 200, "the token of the change stays");
    assert_eq!(profile_status(&server, &other_app).await, 401, "other tokens are revoked at once");
    assert_eq!(browser.get("/accounts/password/change/").await.status, 302, "browser sessions end");
    let mut fresh = Browser::at(&server);
    assert_eq!(fresh.login(email, PASSWORD).await.status, 200, "the old password no longer works");
    assert_eq!(fresh.login(email, "brand new pass").await.status, 302);
}

#[tokio::test]
async fn a_superuser_sets_another_users_password_by_the_same_rules() {
    let server = TestServer::start().await.unwrap();
    let admin = server.token(seeded::ADMIN).await;
    let victor_id = server.id_of("users", "email", seeded::VICTOR).await;
    let victor = server.token(seeded::VICTOR).await;
    let before = password_hash(&server, seeded::VICTOR).await;

    // another user's password stays out of reach of a non-superuser, with or without a current password
    let megan = server.token(seeded::MEGAN).await;
    let body = json!({"password": "brand new pass", "currentPassword": PASSWORD});
    assert_eq!(patch_password(&server, &megan, victor_id, body).await.status, 403);
    let weak = patch_password(&server, &admin, victor_id, json!({"password": "short"})).await;
    assert_eq!(weak.status, 400);
    assert!(weak.detail().contains("too short"), "{}", weak.detail());
    assert_eq!(password_hash(&server, seeded::VICTOR).await, before);
    assert_eq!(profile_status(&server, &victor).await, 200);

    let set = patch_password(&server, &admin, victor_id, json!({"password": "set by the admin"})).await;
    assert_eq!(set.status, 200, "{:?}", set.body);
    assert_eq!(profile_status(&server, &victor).await, 401, "all of Victor's tokens end");
    assert_eq!(profile_status(&server, &admin).await, 200, "the superuser's own token is not Victor's");
    assert_eq!(Browser::at(&server).login(seeded::VICTOR, "set by the admin").await.status, 302);

    // a superuser changing their own password proves the current one like everybody else
    let admin_id = server.id_of("users", "email", seeded::ADMIN).await;
    let own = patch_password(&server, &admin, admin_id, json!({"password": "another new one"})).await;
    assert_eq!(own.status, 400, "{:?}", own.body);
    assert!(own.detail().starts_with("currentPassword:"));
}

// ---- open redirect through `next` ----

#[tokio::test]
async fn login_never_redirects_off_site() {
    let server = TestServer::start().await.unwrap();
    let mut browser = Browser::at(&server);
    let payloads = [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r\n/evil.example",
        "//evil.example/",
        "/\\evil.example",
        "\\/evil.example",
        "/.//evil.example",
        "https:evil.example",
        "javascript:alert(1)",
        " //evil.example",
    ];
    for payload in payloads {
        let page = browser.get("/accounts/login/").await;
        let mut form: Vec<(String, String)> = page.form().into_iter().filter(|(name, _)| name != "next").collect();
        form.push(("next".into(), payload.into()));
        form.push(("email".into(), seeded::MARY.into()));
        form.push(("password".into(), PASSWORD.into()));
        let logged_in = browser.post("/accounts/login/", &form).await;
        assert_eq!((logged_in.status, logged_in.location.as_str()), (302, "/"), "{payload:?}");
    }
    // the login page does not carry such a `next` into its form either
    let page = browser.get("/accounts/login/?next=%2F%09%2Fevil.example").await;
    assert!(page.form().contains(&("next".into(), "/".into())), "{:?}", page.form());
    // a path on this site is followed, normalised
    let page = browser.get("/accounts/login/").await;
    let mut form: Vec<(String, String)> = page.form().into_iter().filter(|(name, _)| name != "next").collect();
    form.push(("next".into(), "/o/authorize/?client_id=x&scope=openid+email".into()));
    form.push(("email".into(), seeded::MARY.into()));
    form.push(("password".into(), PASSWORD.into()));
    let logged_in = browser.post("/accounts/login/", &form).await;
    assert_eq!(logged_in.location, "/o/authorize/?client_id=x&scope=openid+email");
}

// ---- anonymous page views store nothing ----

#[tokio::test]
async fn anonymous_form_pages_store_no_session_and_their_forms_still_work() {
    let server = TestServer::start().await.unwrap();
    let victor_id = server.id_of("users", "email", seeded::VICTOR).await;
    let reset_token = jhe_catalog::create_account_token(
        &server.db.pool,
        victor_id,
        jhe_catalog::AccountTokenPurpose::PasswordReset,
        seeded::VICTOR,
        chrono::Duration::hours(1),
    )
    .await
    .unwrap();
    let reset_page = format!("/accounts/password/reset/{reset_token}/");
    let sessions = || count(&server, "SELECT count(*) FROM oauth_sessions");
    let before = sessions().await;

    // the attack: a flood of cookieless GETs, each of which used to insert a 14-day session row
    let client = http();
    for path in ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/", reset_page.as_str()] {
        for _ in 0..5 {
            let response = client.get(format!("{}{path}", server.base)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{path}");
            let cookies: Vec<String> =
                response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect();
            assert_eq!(cookies.len(), 1, "{path}: {cookies:?}");
            assert!(cookies[0].starts_with("__Host-jhe_csrf="), "{path}: {cookies:?}");
            for attribute in ["Path=/;", "HttpOnly", "Secure", "SameSite=Lax"] {
                assert!(cookies[0].contains(attribute), "{path}: {cookies:?}");
            }
            assert!(!cookies[0].contains("Domain"), "a __Host- cookie has no Domain");
        }
    }
    assert_eq!(sessions().await, before, "20 anonymous page views, no session row");

    // the CSRF token of the cookie still guards the forms: without it, or with another one, 403 and nothing stored
    let mut browser = Browser::at(&server);
    let form = browser.get("/accounts/login/").await.form();
    let csrf = form.iter().find(|(name, _)| name == "csrfmiddlewaretoken").unwrap().1.clone();
    let credentials = [("email".to_owned(), seeded::MARY.to_owned()), ("password".to_owned(), PASSWORD.to_owned())];
    let mut stranger = Browser::at(&server);
    let mut forged: Vec<(String, String)> = vec![("csrfmiddlewaretoken".into(), csrf.clone())];
    forged.extend(credentials.iter().cloned());
    assert_eq!(stranger.post("/accounts/login/", &forged).await.status, 403, "a token without its cookie");
    stranger.get("/accounts/login/").await;
    assert_eq!(stranger.post("/accounts/login/", &forged).await.status, 403, "another browser's token");
    assert_eq!(sessions().await, before);

    // a wrong password stores no session either; the right one stores exactly one, signed in
    let mut wrong = form.clone();
    wrong.extend([("email".into(), seeded::MARY.into()), ("password".into(), "wrong password".into())]);
    assert_eq!(browser.post("/accounts/login/", &wrong).await.status, 200);
    assert_eq!(sessions().await, before);
    let mut right = form;
    right.extend(credentials.iter().cloned());
    let logged_in = browser.post("/accounts/login/", &right).await;
    assert_eq!(logged_in.status, 302, "{}", logged_in.body);
    assert_eq!(sessions().await, before + 1);
    let mary = server.id_of("users", "email", seeded::MARY).await;
    let session = browser.session().expect("a session cookie");
    let found = jhe_catalog::find_login_session(&server.db.pool, &session).await.unwrap().unwrap();
    assert_eq!(found.user_id, Some(mary));
    assert!(browser.cookie(&server.base, "__Host-jhe_csrf").is_none(), "the session's token takes over");
}

// ---- an intercepted authorization code ----

/// A code of the SPA for Mary with a fresh PKCE pair: (code, verifier).
async fn spa_code(server: &TestServer) -> (String, String) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = authorize_url(server, SPA, REDIRECT, "openid email", None, challenge.as_str());
    let back = Browser::at(server).authorize(url.as_str(), seeded::MARY, true).await;
    let code = back.query_pairs().find(|(k, _)| k == "code").expect("a code").1.into_owned();
    (code, verifier.secret().clone())
}

async fn unused_codes(server: &TestServer) -> i64 {
    count(server, "SELECT count(*) FROM oauth_grants WHERE used_at IS NULL").await
}

#[tokio::test]
async fn an_intercepted_code_cannot_be_burnt_before_its_client_exchanges_it() {
    let server = TestServer::start().await.unwrap();
    let (code, verifier) = spa_code(&server).await;
    let unused = unused_codes(&server).await;
    let tokens = || count(&server, "SELECT count(*) FROM access_tokens");
    let issued_before = tokens().await;

    // the attacks: the code with a guessed verifier, with no verifier, at another client, with another redirect
    let (_, guessed) = PkceCodeChallenge::new_random_sha256();
    let (status, body) = server.exchange_code(SPA, &code, REDIRECT, guessed.secret()).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) = server.exchange_code(SPA, &code, REDIRECT, "not-a-verifier").await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) = server.exchange_code("carex", &code, REDIRECT, &verifier).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    let (status, body) = server.exchange_code(SPA, &code, "http://127.0.0.1:8000/other", &verifier).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(unused_codes(&server).await, unused, "the code is still unused");
    assert_eq!(tokens().await, issued_before, "nothing was issued");

    // the rightful client still gets its tokens
    let (status, first) = server.exchange_code(SPA, &code, REDIRECT, &verifier).await;
    assert_eq!(status, 200, "{first}");
    let access = first["access_token"].as_str().unwrap().to_owned();
    assert_eq!(profile_status(&server, &access).await, 200);

    // once used, a presentation without the verifier is refused and revokes nothing (it proves no theft)
    let (status, _) = server.exchange_code(SPA, &code, REDIRECT, guessed.secret()).await;
    assert_eq!(status, 400);
    assert_eq!(profile_status(&server, &access).await, 200);
    // with the verifier, a second use is a replay: refused, and what the code gave is revoked
    let (status, body) = server.exchange_code(SPA, &code, REDIRECT, &verifier).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("invalid_grant")), "{body}");
    assert_eq!(profile_status(&server, &access).await, 401, "tokens of a reused code are revoked");
}

#[tokio::test]
async fn two_concurrent_exchanges_of_one_code_are_a_reuse() {
    let server = TestServer::start().await.unwrap();
    let (code, verifier) = spa_code(&server).await;
    let (a, b) = tokio::join!(
        server.exchange_code(SPA, &code, REDIRECT, &verifier),
        server.exchange_code(SPA, &code, REDIRECT, &verifier),
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 400], "{a:?} {b:?}");
    let winner = if a.0 == 200 { a.1 } else { b.1 };
    let access = winner["access_token"].as_str().unwrap();
    assert_eq!(profile_status(&server, access).await, 401, "the loser saw a reuse and revoked the family");
    let refreshed = form_post(
        &server,
        "/o/token/",
        None,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", SPA),
            ("refresh_token", winner["refresh_token"].as_str().unwrap()),
        ],
    )
    .await;
    assert_eq!(refreshed.0, 400, "{:?}", refreshed.1);
}
