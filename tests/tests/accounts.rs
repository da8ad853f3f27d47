//! The browser account pages over HTTP against a real server and Postgres (docs/identity.md "Accounts"): signup
//! with the invite code, email verification, password change and reset (mail read from the server's file outbox),
//! the failed-login lockout and the per-client-IP limit.

use jhe_tests::browser::{Browser, authorize_url, unescape};
use jhe_tests::{TestDatabase, TestServer, seeded};
use openidconnect::PkceCodeChallenge;
use std::path::{Path, PathBuf};
use std::time::Duration;

const PASSWORD: &str = jhe_catalog::SEED_PASSWORD;
/// The seeded SPA client (public, skips consent) and its redirect URI.
const SPA: &str = "jhe-admin-ui";
const REDIRECT: &str = "http://127.0.0.1:8000/auth/callback";

/// A server whose mail goes to a fresh outbox directory.
async fn server_with_outbox() -> (TestServer, tempfile::TempDir) {
    let outbox = tempfile::tempdir().unwrap();
    let dir = outbox.path().to_path_buf();
    let server = TestServer::start_configured(TestDatabase::create(true).await.unwrap(), move |state| {
        state.mailer = jhe_api::mail::Mailer::outbox(dir);
    })
    .await
    .unwrap();
    (server, outbox)
}

/// What the account tests ask of a browser at their server.
trait AccountBrowser {
    /// Whether this browser's session is signed in (the password-change page is for signed-in sessions).
    async fn signed_in(&mut self) -> bool;
    async fn access_token(&mut self, server: &TestServer) -> String;
}

impl AccountBrowser for Browser {
    async fn signed_in(&mut self) -> bool {
        let page = self.get("/accounts/password/change/").await;
        match page.status {
            200 => true,
            302 => {
                assert!(page.location.starts_with("/accounts/login/"), "{}", page.location);
                false
            }
            other => panic!("password change page: {other}"),
        }
    }

    /// An access token for the signed-in user through the authorization-code flow (SPA client, PKCE).
    async fn access_token(&mut self, server: &TestServer) -> String {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let authorize = authorize_url(server, SPA, REDIRECT, "openid email", None, challenge.as_str());
        let back = self.get(authorize.as_str()).await;
        assert_eq!(back.status, 302, "{}", back.body);
        let back = url::Url::parse(&back.location).unwrap();
        assert!(back.as_str().starts_with(REDIRECT), "{back}");
        let code = back.query_pairs().find(|(k, _)| k == "code").expect("a code").1.into_owned();
        let (_, token) = server.exchange_code(SPA, &code, REDIRECT, verifier.secret()).await;
        token["access_token"].as_str().expect("an access token").to_owned()
    }
}

/// The messages in the outbox sent to `to` (waits up to 5 s for `count` of them: mail is sent in the background).
async fn mail_to(outbox: &Path, to: &str, count: usize) -> Vec<String> {
    let mut found = Vec::new();
    for _ in 0..100 {
        let mut files: Vec<PathBuf> = std::fs::read_dir(outbox)
            .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|path| path.extension().is_some_and(|ext| ext == "eml"));
        files.sort();
        found = files
            .iter()
            .filter_map(|path| std::fs::read_to_string(path).ok())
            .filter(|text| text.lines().any(|line| line.starts_with("To: ") && line.contains(to)))
            .collect();
        if found.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found.len() >= count, "expected {count} mail(s) to {to}, found {}", found.len());
    found
}

fn eml_count(outbox: &Path) -> usize {
    std::fs::read_dir(outbox)
        .map(|dir| dir.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "eml")).count())
        .unwrap_or(0)
}

/// The path of the first link under `prefix` in a message (the host is the configured site, not this server).
fn link_path(mail: &str, prefix: &str) -> String {
    // undo quoted-printable soft line breaks, should the body be encoded that way
    let mail = mail.replace("=\r\n", "");
    let start = mail.find(prefix).unwrap_or_else(|| panic!("no {prefix} link in {mail}"));
    mail[start..].split_whitespace().next().unwrap().to_owned()
}

async fn user_flags(server: &TestServer, email: &str) -> Option<(String, bool)> {
    sqlx::query_as("SELECT user_type, email_is_verified FROM users WHERE lower(email) = lower($1)")
        .bind(email)
        .fetch_optional(&server.db.pool)
        .await
        .unwrap()
}

async fn profile(server: &TestServer, token: &str) -> jhe_tests::Answer {
    server.get("/api/v1/users/profile", token).await
}

#[tokio::test]
async fn signup_makes_a_signed_in_practitioner_with_default_orgs_and_a_verification_link() {
    let (server, outbox) = server_with_outbox().await;
    let org: i64 = sqlx::query_scalar("SELECT min(id) FROM organizations").fetch_one(&server.db.pool).await.unwrap();
    sqlx::query("UPDATE settings SET value_string = $1 WHERE key = 'auth.default_orgs'")
        .bind(format!("{org}:member"))
        .execute(&server.db.pool)
        .await
        .unwrap();

    let mut browser = Browser::at(&server);
    // the login page links to signup and to the password reset
    let login = browser.get("/accounts/login/").await;
    assert!(
        login.body.contains("href=\"/accounts/signup/\"") && login.body.contains("href=\"/accounts/password/reset/\"")
    );
    assert_eq!(browser.get("/accounts/signup").await.status, 200, "without the trailing slash too");
    let email = "New.Person@Example.org";
    let signed_up = browser
        .submit(
            "/accounts/signup/?next=/accounts/password/change/",
            &[("email", email), ("password1", "a long secret"), ("password2", "a long secret"), ("invite_code", "jhe")],
        )
        .await;
    assert_eq!(signed_up.status, 302, "{}", signed_up.body);
    assert_eq!(signed_up.location, "/accounts/password/change/");
    assert!(browser.signed_in().await, "signup signs the new user in");
    assert_eq!(user_flags(&server, email).await, Some(("practitioner".to_owned(), false)));

    // the session works for the OAuth code flow: the SPA gets a token for the new practitioner
    let token = browser.access_token(&server).await;
    let me = profile(&server, &token).await;
    assert_eq!(me.status, 200, "{:?}", me.body);
    assert_eq!(me.body["email"], email);
    assert_eq!(me.body["userType"], "practitioner");
    let orgs = server.get("/api/v1/users/organizations", &token).await;
    assert_eq!(orgs.status, 200, "{:?}", orgs.body);
    let role: String = sqlx::query_scalar(
        "SELECT po.role FROM practitioner_organizations po JOIN practitioners p ON p.id = po.practitioner_id
         JOIN users u ON u.id = p.user_id WHERE u.email = $1 AND po.organization_id = $2",
    )
    .bind(email)
    .bind(org)
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(role, "member", "auth.default_orgs gives the membership");

    // the verification link marks the email verified, once
    let mail = mail_to(outbox.path(), email, 1).await.remove(0);
    assert!(mail.contains("Subject: Confirm your email address"), "{mail}");
    let link = link_path(&mail, "/accounts/verify_email/");
    let mut stranger = Browser::at(&server);
    let verified = stranger.get(&link).await;
    assert_eq!(verified.status, 200, "{}", verified.body);
    assert_eq!(user_flags(&server, email).await, Some(("practitioner".to_owned(), true)));
    assert_eq!(stranger.get(&link).await.status, 400, "a verification link works once");
    assert_eq!(stranger.get("/accounts/verify_email/not-a-token/").await.status, 400);

    // the new account logs in with its password (any case of the email)
    let mut again = Browser::at(&server);
    assert_eq!(again.login("new.person@example.org", "a long secret").await.status, 302);
}

#[tokio::test]
async fn signup_errors_show_the_form_again_with_a_message() {
    let (server, outbox) = server_with_outbox().await;
    let mut browser = Browser::at(&server);
    let email = "someone@example.org";
    let attempt = |email: &'static str, password1: &'static str, password2: &'static str, code: &'static str| {
        [("email", email), ("password1", password1), ("password2", password2), ("invite_code", code)]
    };
    let cases = [
        (attempt(email, "a long secret", "a long secret", "wrong"), "The invite code is not valid."),
        (attempt(email, "a long secret", "a long secret", ""), "The invite code is not valid."),
        (attempt(email, "short", "short", "jhe"), "too short"),
        (attempt(email, "12345678901", "12345678901", "jhe"), "entirely numeric"),
        (attempt(email, "someone@example.org", "someone@example.org", "jhe"), "too similar to the email"),
        (attempt(email, "a long secret", "another secret", "jhe"), "didn't match"),
        (attempt("not-an-email", "a long secret", "a long secret", "jhe"), "valid email address"),
        // the seeded practitioner, in another case
        (attempt("Manager_Mary@Example.com", "a long secret", "a long secret", "jhe"), "already registered"),
    ];
    for (fields, message) in cases {
        let page = browser.submit("/accounts/signup/", &fields).await;
        assert_eq!(page.status, 400, "{message}: {}", page.body);
        assert!(unescape(&page.body).contains(message), "{message}: {}", page.body);
        assert!(page.body.contains("<form"), "the form is shown again");
    }
    assert_eq!(user_flags(&server, email).await, None, "no account was made");
    let users: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE lower(email) = lower($1)")
        .bind(seeded::MARY)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(users, 1);

    // without the session's CSRF token nothing happens
    let forged = browser
        .post(
            "/accounts/signup/",
            &[("email", email), ("password1", "a long secret"), ("password2", "a long secret"), ("invite_code", "jhe")]
                .map(|(k, v)| (k.to_owned(), v.to_owned())),
        )
        .await;
    assert_eq!(forged.status, 403);

    // an empty invite-code setting closes signup instead of opening it to every code
    sqlx::query("UPDATE settings SET value_string = '' WHERE key = 'site.registration_invite_code'")
        .execute(&server.db.pool)
        .await
        .unwrap();
    let closed = browser.submit("/accounts/signup/", &attempt(email, "a long secret", "a long secret", "")).await;
    assert_eq!(closed.status, 400);
    assert!(closed.body.contains("closed"), "{}", closed.body);
    assert_eq!(user_flags(&server, email).await, None);
    assert_eq!(eml_count(outbox.path()), 0, "no mail for refused signups");
}

#[tokio::test]
async fn password_change_ends_other_sessions_and_revokes_tokens() {
    let (server, _outbox) = server_with_outbox().await;
    let email = seeded::MEGAN;
    let mut here = Browser::at(&server);
    let mut elsewhere = Browser::at(&server);
    assert_eq!(here.login(email, PASSWORD).await.status, 302);
    assert_eq!(elsewhere.login(email, PASSWORD).await.status, 302);
    let oauth_token = elsewhere.access_token(&server).await;
    let cli_token = server.token(email).await;
    assert_eq!(profile(&server, &oauth_token).await.status, 200);

    // an anonymous browser is sent to the login page
    let anonymous = Browser::at(&server).get("/accounts/password/change").await;
    assert_eq!(anonymous.status, 302);
    assert!(anonymous.location.starts_with("/accounts/login/?next="), "{}", anonymous.location);

    let change = |old: &'static str, new1: &'static str, new2: &'static str| {
        [("old_password", old), ("new_password1", new1), ("new_password2", new2)]
    };
    let wrong_old =
        here.submit("/accounts/password/change/", &change("nope", "brand new pass", "brand new pass")).await;
    assert_eq!(wrong_old.status, 400);
    assert!(wrong_old.body.contains("old password was entered incorrectly"), "{}", wrong_old.body);
    let weak = here.submit("/accounts/password/change/", &change(PASSWORD, "1234567890", "1234567890")).await;
    assert_eq!(weak.status, 400);
    assert!(weak.body.contains("entirely numeric"));
    assert!(elsewhere.signed_in().await, "refused changes end nothing");

    let changed =
        here.submit("/accounts/password/change/", &change(PASSWORD, "brand new pass", "brand new pass")).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert!(here.signed_in().await, "the browser that changed the password stays signed in");
    assert!(!elsewhere.signed_in().await, "other sessions end");
    assert_eq!(profile(&server, &oauth_token).await.status, 401, "tokens issued before are revoked");
    assert_eq!(profile(&server, &cli_token).await.status, 401);

    let mut fresh = Browser::at(&server);
    assert_eq!(fresh.login(email, PASSWORD).await.status, 200, "the old password no longer works");
    assert_eq!(fresh.login(email, "brand new pass").await.status, 302);
}

#[tokio::test]
async fn password_reset_by_mailed_link_once_within_the_hour() {
    let (server, outbox) = server_with_outbox().await;
    let email = seeded::VICTOR;
    let mut signed_in = Browser::at(&server);
    assert_eq!(signed_in.login(email, PASSWORD).await.status, 302);
    let oauth_token = signed_in.access_token(&server).await;

    // the answer is the same whether or not the address has an account
    let mut browser = Browser::at(&server);
    let known = browser.submit("/accounts/password/reset/", &[("email", "Viewer_Victor@example.com")]).await;
    let unknown = browser.submit("/accounts/password/reset", &[("email", "nobody@example.org")]).await;
    assert_eq!(known.status, 200);
    assert_eq!((unknown.status, &unknown.body), (known.status, &known.body));
    assert!(known.body.contains("If an account with that email address exists"));
    let mail = mail_to(outbox.path(), email, 1).await.remove(0);
    assert!(mail.contains("Subject: Reset your password"), "{mail}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(eml_count(outbox.path()), 1, "no mail for an address without an account");

    let link = link_path(&mail, "/accounts/password/reset/");
    let form = browser.get(&link).await;
    assert_eq!(form.status, 200, "{}", form.body);
    let mismatch = browser.submit(&link, &[("new_password1", "reset password 1"), ("new_password2", "other")]).await;
    assert_eq!(mismatch.status, 400);
    assert!(unescape(&mismatch.body).contains("didn't match"));
    let weak = browser.submit(&link, &[("new_password1", "viewer_victor"), ("new_password2", "viewer_victor")]).await;
    assert_eq!(weak.status, 400);
    assert!(weak.body.contains("too similar"), "{}", weak.body);
    let reset =
        browser.submit(&link, &[("new_password1", "reset password 1"), ("new_password2", "reset password 1")]).await;
    assert_eq!(reset.status, 302, "{}", reset.body);
    assert_eq!(reset.location, "/accounts/login/");

    // every session ended, tokens revoked; the new password works, the old one does not
    assert!(!signed_in.signed_in().await);
    assert_eq!(profile(&server, &oauth_token).await.status, 401);
    let mut fresh = Browser::at(&server);
    assert_eq!(fresh.login(email, PASSWORD).await.status, 200);
    assert_eq!(fresh.login(email, "reset password 1").await.status, 302);

    // the link works once: no form, and a POST with a good CSRF token is refused too
    assert_eq!(browser.get(&link).await.status, 400);
    let mut replay = browser.get("/accounts/password/reset/").await.form();
    replay.push(("new_password1".into(), "reset password 2".into()));
    replay.push(("new_password2".into(), "reset password 2".into()));
    assert_eq!(browser.post(&link, &replay).await.status, 400);
    assert_eq!(fresh.login(email, "reset password 2").await.status, 200);

    // an expired link is refused
    let again = browser.submit("/accounts/password/reset/", &[("email", email)]).await;
    assert_eq!(again.status, 200);
    let mail = mail_to(outbox.path(), email, 2).await.pop().unwrap();
    let second = link_path(&mail, "/accounts/password/reset/");
    assert_ne!(second, link);
    assert_eq!(browser.get(&second).await.status, 200);
    sqlx::query("UPDATE account_tokens SET expires_at = now() - interval '1 second' WHERE used_at IS NULL")
        .execute(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(browser.get(&second).await.status, 400);
}

#[tokio::test]
async fn five_failed_logins_lock_the_email_for_a_while() {
    let (server, _outbox) = server_with_outbox().await;
    let email = seeded::TOM;
    let mut browser = Browser::at(&server);
    for attempt in 1..=4 {
        let page = browser.login(email, "wrong password").await;
        assert_eq!(page.status, 200, "attempt {attempt}");
        assert!(page.body.contains("Please enter a correct email address and password"));
    }
    let fifth = browser.login(&email.to_uppercase(), "wrong password").await;
    assert_eq!(fifth.status, 429, "{}", fifth.body);
    assert!(fifth.body.contains("Too many failed login attempts. Try again in 15 minutes."), "{}", fifth.body);
    let locked = browser.login(email, PASSWORD).await;
    assert_eq!(locked.status, 429, "the right password is refused while locked");
    let retry: u64 = locked.retry_after.expect("Retry-After").parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(!browser.signed_in().await);

    // an address without an account locks the same way (the lock tells nothing about which emails exist)
    for _ in 0..4 {
        assert_eq!(browser.login("ghost@example.org", "x").await.status, 200);
    }
    assert_eq!(browser.login("ghost@example.org", "x").await.status, 429);

    // when the lock has run out, the right password works and clears the count
    sqlx::query("UPDATE login_failures SET locked_until = now() - interval '1 second' WHERE email = lower($1)")
        .bind(email)
        .execute(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(browser.login(email, PASSWORD).await.status, 302);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM login_failures WHERE email = lower($1)")
        .bind(email)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "a successful login resets the counter");
}

#[tokio::test]
async fn each_client_address_has_a_budget_of_account_posts() {
    // 3 POSTs a minute; X-Forwarded-For is not believed from an untrusted peer
    let limited = |trusted: Vec<jhe_api::login_limits::TrustedProxy>| {
        move |state: &mut jhe_api::AppState| {
            state.login_limits =
                jhe_api::login_limits::LoginLimits::new(jhe_api::login_limits::default_lockout(), 3, trusted);
        }
    };
    let server =
        TestServer::start_configured(TestDatabase::create(true).await.unwrap(), limited(Vec::new())).await.unwrap();
    let mut browser = Browser::at(&server);
    browser.forwarded_for = Some("198.51.100.1".into());
    for _ in 0..3 {
        assert_eq!(browser.login(seeded::MARK, "wrong password").await.status, 200);
    }
    browser.forwarded_for = Some("198.51.100.2".into());
    let refused = browser.submit("/accounts/password/reset/", &[("email", seeded::MARK)]).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert!(refused.body.contains("Too many requests from your network"), "{}", refused.body);
    assert!(refused.retry_after.is_some());
    assert_eq!(browser.login(seeded::MARK, PASSWORD).await.status, 429, "login counts against the same budget");

    // behind a trusted proxy each forwarded client has its own budget
    let proxied = TestServer::start_configured(
        TestDatabase::create(true).await.unwrap(),
        limited(vec![jhe_api::login_limits::TrustedProxy::parse("127.0.0.1").unwrap()]),
    )
    .await
    .unwrap();
    let mut first = Browser::at(&proxied);
    first.forwarded_for = Some("198.51.100.1".into());
    for _ in 0..3 {
        assert_eq!(first.login(seeded::MARK, "wrong password").await.status, 200);
    }
    assert_eq!(first.login(seeded::MARK, "wrong password").await.status, 429);
    let mut second = Browser::at(&proxied);
    second.forwarded_for = Some("203.0.113.5".into());
    assert_eq!(second.login(seeded::MARK, PASSWORD).await.status, 302);
}
