//! Operations attacks over HTTP against a real server and Postgres: mailed links steered by forged `Host` and
//! `X-Forwarded-*` headers, secrets in the log when no mail transport is configured, the application served on the
//! admin listener (and `/metrics` on the public one), and logging a user out from another site.

use jhe_tests::browser::Browser;
use jhe_tests::{TestDatabase, TestServer, seeded};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing_subscriber::util::SubscriberInitExt;

const PASSWORD: &str = jhe_catalog::SEED_PASSWORD;
const EVIL: &str = "evil.example";

/// A fresh database without the `site.url` setting (so links fall back to what the server knows of itself).
async fn database_without_site_url() -> TestDatabase {
    let db = TestDatabase::create(true).await.unwrap();
    sqlx::query("DELETE FROM settings WHERE key = 'site.url'").execute(&db.pool).await.unwrap();
    db
}

/// Trusts 127.0.0.1 (where the tests' requests come from) as a proxy when `trusted`.
fn proxies(state: &mut jhe_api::AppState, trusted: bool) {
    let proxies = if trusted { vec![jhe_api::login_limits::TrustedProxy::parse("127.0.0.1").unwrap()] } else { vec![] };
    state.login_limits =
        jhe_api::login_limits::LoginLimits::new(jhe_api::login_limits::default_lockout(), 1000, proxies);
}

/// The `.eml` files under `dir`, waiting up to 5 s for `count` of them (mail is sent in the background).
async fn mails(dir: &Path, count: usize) -> Vec<String> {
    let mut found = Vec::new();
    for _ in 0..100 {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|dir| dir.filter_map(|e| e.ok()).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|path| path.extension().is_some_and(|ext| ext == "eml"));
        files.sort();
        found = files.iter().filter_map(|path| std::fs::read_to_string(path).ok()).collect();
        if found.len() >= count {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(found.len() >= count, "expected {count} mail(s), found {}", found.len());
    found
}

/// The first link in a message that contains `marker`.
fn link(mail: &str, marker: &str) -> String {
    let mail = mail.replace("=\r\n", "");
    let start = mail.find(marker).unwrap_or_else(|| panic!("no {marker} link in {mail}"));
    let begin = mail[..start].rfind("http").unwrap_or_else(|| panic!("no URL before {marker} in {mail}"));
    mail[begin..].split_whitespace().next().unwrap().to_owned()
}

fn forging(browser: &mut Browser) {
    browser.headers = vec![
        ("x-forwarded-host".into(), EVIL.into()),
        ("x-forwarded-proto".into(), "https".into()),
        ("forwarded".into(), format!("host={EVIL};proto=https")),
    ];
}

#[tokio::test]
async fn mailed_links_ignore_forged_host_headers_even_behind_a_trusted_proxy() {
    for trusted in [false, true] {
        let outbox = tempfile::tempdir().unwrap();
        let dir = outbox.path().to_path_buf();
        let server = TestServer::start_configured(database_without_site_url().await, move |state| {
            state.mailer = jhe_api::mail::Mailer::outbox(dir);
            proxies(state, trusted);
        })
        .await
        .unwrap();
        let mut attacker = Browser::at(&server);
        forging(&mut attacker);
        let asked = attacker.submit("/accounts/password/reset/", &[("email", seeded::VICTOR)]).await;
        assert_eq!(asked.status, 200, "{}", asked.body);
        let signed_up = attacker
            .submit(
                "/accounts/signup/",
                &[
                    ("email", "forged.host@example.org"),
                    ("password1", "a long secret"),
                    ("password2", "a long secret"),
                    ("invite_code", "jhe"),
                ],
            )
            .await;
        assert_eq!(signed_up.status, 302, "{}", signed_up.body);

        let sent = mails(outbox.path(), 2).await;
        let reset = sent.iter().find(|mail| mail.contains("/accounts/password/reset/")).expect("a reset mail");
        let verify = sent.iter().find(|mail| mail.contains("/accounts/verify_email/")).expect("a verification mail");
        for (mail, marker) in [(reset, "/accounts/password/reset/"), (verify, "/accounts/verify_email/")] {
            assert!(!mail.contains(EVIL), "trusted proxy {trusted}: {mail}");
            let url = link(mail, marker);
            assert!(url.starts_with(&format!("{}{marker}", server.base)), "trusted proxy {trusted}: {url}");
        }
    }
}

#[tokio::test]
async fn forwarded_headers_count_only_from_trusted_proxies() {
    for trusted in [false, true] {
        let server = TestServer::start_configured(database_without_site_url().await, move |state| {
            proxies(state, trusted);
        })
        .await
        .unwrap();
        let mut client = Browser::at(&server);
        forging(&mut client);
        let discovery = client.get("/o/.well-known/openid-configuration").await;
        assert_eq!(discovery.status, 200, "{}", discovery.body);
        let document: serde_json::Value = serde_json::from_str(&discovery.body).unwrap();
        let issuer = document["issuer"].as_str().expect("an issuer");
        if trusted {
            assert!(issuer.starts_with(&format!("https://{EVIL}")), "{issuer}");
        } else {
            assert!(issuer.starts_with(&server.base), "an untrusted peer's X-Forwarded-Host is ignored: {issuer}");
        }
    }
}

/// Everything the server logs while the guard lives (this test's runtime is one thread: the server's tasks
/// run on it).
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn without_a_mail_transport_links_go_to_the_outbox_and_never_to_the_log() {
    let log = CapturedLog::default();
    let writer = log.clone();
    let _guard = tracing_subscriber::fmt()
        .with_env_filter("trace,sqlx=warn,hyper=warn,h2=warn,reqwest=warn")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish()
        .set_default();
    let data_dir = tempfile::tempdir().unwrap();
    let mailer = jhe_api::mail::Mailer::from_env(Some(data_dir.path())).unwrap();
    let server = TestServer::start_configured(database_without_site_url().await, move |state| {
        state.mailer = mailer;
    })
    .await
    .unwrap();
    let mut browser = Browser::at(&server);
    let asked = browser.submit("/accounts/password/reset/", &[("email", seeded::VICTOR)]).await;
    assert_eq!(asked.status, 200, "{}", asked.body);

    let mail = mails(&data_dir.path().join("mail"), 1).await.remove(0);
    let url = link(&mail, "/accounts/password/reset/");
    let token = url.trim_end_matches('/').rsplit('/').next().unwrap().to_owned();
    assert!(token.len() >= 20, "{url}");
    // the log line follows the file's rename: wait for it, then look for the secret
    for _ in 0..100 {
        if log.text().contains("written to the outbox") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = log.text();
    assert!(text.contains("written to the outbox"), "{text}");
    assert!(!text.contains(&token), "the reset token is in the log");
    assert!(!text.contains("/accounts/password/reset/") || !text.contains(&url), "the link is in the log");
    // the link works: the outbox is how a developer reads it
    assert_eq!(browser.get(&url.replacen(&server.base, "", 1)).await.status, 200);
}

/// An admin listener over the test server's database, as `jhe serve` and `jhe process` start it.
async fn admin_listener(server: &TestServer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = jhe_api::AppState::new(server.db.pool.clone());
    tokio::spawn(async move { jhe_api::serve_admin(listener, state, std::future::pending()).await });
    base
}

#[tokio::test]
async fn metrics_are_on_the_admin_listener_only_and_it_serves_nothing_else() {
    let server = TestServer::start().await.unwrap();
    let token = server.token(seeded::MARY).await;
    let public = server.request("GET", "/metrics", None, None).await;
    assert_eq!(public.status, 404, "{:?}", public.body);
    assert_eq!(server.request("GET", "/health", None, None).await.status, 200);

    let admin = admin_listener(&server).await;
    let http = reqwest::Client::new();
    for path in ["/livez", "/readyz", "/health"] {
        let answer = http.get(format!("{admin}{path}")).send().await.unwrap();
        assert_eq!(answer.status(), 200, "{path}");
    }
    // the metrics handler answers here (this state has no recorder: it says so, rather than "not found: /metrics")
    let metrics = http.get(format!("{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("metrics are not enabled"), "{metrics}");
    for (method, path) in [
        ("GET", "/api/v1/users/profile"),
        ("GET", "/api/v1/patients"),
        ("GET", "/FHIR/R5/Observation"),
        ("POST", "/FHIR/R5/"),
        ("GET", "/accounts/login/"),
        ("POST", "/o/token/"),
        ("GET", "/o/.well-known/openid-configuration"),
    ] {
        let answer =
            http.request(method.parse().unwrap(), format!("{admin}{path}")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(answer.status(), 404, "{method} {path} on the admin listener");
    }
}

async fn session_is_live(server: &TestServer, session: &str) -> bool {
    jhe_catalog::find_login_session(&server.db.pool, session).await.unwrap().is_some()
}

async fn signed_in(browser: &mut Browser) -> bool {
    browser.get("/accounts/password/change/").await.status == 200
}

#[tokio::test]
async fn logout_takes_a_post_with_the_csrf_token() {
    let server = TestServer::start().await.unwrap();
    let mut browser = Browser::at(&server);
    assert_eq!(browser.login(seeded::VICTOR, PASSWORD).await.status, 302);
    let session = browser.session().expect("a session cookie");

    // a link or image on another site: GET shows the confirmation form and ends nothing
    for path in ["/accounts/logout/", "/accounts/logout"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("<form method=\"post\" action=\"/accounts/logout/\""), "{}", page.body);
    }
    assert!(signed_in(&mut browser).await);

    // a cross-site form post carries the session cookie but cannot know the CSRF token
    let cross_site = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for form in [vec![], vec![("csrfmiddlewaretoken", "guessed-token-000000000000000000000000000")]] {
        let answer = cross_site
            .post(format!("{}/accounts/logout/", server.base))
            .header("cookie", format!("jhe_session={session}"))
            .header("origin", "https://evil.example")
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 403);
    }
    assert!(signed_in(&mut browser).await, "the session goes on");
    assert_eq!(browser.session().as_deref(), Some(session.as_str()));

    // the user's own form ends the session and its row
    assert!(session_is_live(&server, &session).await);
    let out = browser.logout().await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert!(browser.session().is_none(), "the cookie is cleared");
    assert!(!signed_in(&mut browser).await);
    assert!(!session_is_live(&server, &session).await);
}
