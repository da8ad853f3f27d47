//! jhe's browser login: `/accounts/login/` (email + password) and `/accounts/logout/` (a form; only its POST,
//! with the CSRF token, ends the session, so another site cannot log a user out), as the reference's Django
//! pages (§7.8). The session cookie is Secure, HttpOnly and SameSite=Lax. A form carries a CSRF token: the
//! session's (synchronizer token) in a signed-in browser, otherwise the one of the `__Host-jhe_csrf` cookie (double
//! submit), so showing a form to an anonymous browser stores nothing. A successful login starts a new session (no
//! fixation); it is the first row a browser gets.

use super::{CONFIG, form_pairs, param};
use crate::AppState;
use crate::error::OAuthError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::LazyLock;
use subtle::ConstantTimeEq;

pub(super) const SESSION_COOKIE: &str = "jhe_session";
/// The CSRF token of a browser's forms while it has no session. `__Host-`: only this origin, over https, may set
/// it (a sibling domain cannot plant a token it knows), and it goes to every path of the site.
const CSRF_COOKIE: &str = "__Host-jhe_csrf";
const CSRF_TOKEN_LENGTH: usize = 40;

/// An argon2 hash no password matches in practice, checked for unknown emails.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| jhe_catalog::passwords::hash_password(&jhe_catalog::random_token(32)).unwrap_or_default());

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/accounts/login/", get(login_page).post(login_submit))
        .route("/accounts/login", get(login_page).post(login_submit))
        .route("/accounts/logout/", get(logout_page).post(logout))
        .route("/accounts/logout", get(logout_page).post(logout))
}

/// Escapes text for HTML element content and attribute values.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML page that no cache keeps and no other site frames (the consent page must not be clickjacked).
pub(super) fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width, initial-scale=1\"><title>{title} · JupyterHealth Exchange</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}\
         label,input,button{{display:block;width:100%;margin:.4rem 0}}input,button{{padding:.5rem}}\
         .error{{color:#b00020}}</style></head><body><h1>{title}</h1>{body}</body></html>",
        title = escape(title)
    );
    let mut response = (status, page).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"),
    );
    response
}

/// An error page for what cannot be redirected to the client.
pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    html(status, "Error", &format!("<p class=\"error\">{}</p>", escape(message)))
}

/// The value of cookie `wanted`, if the request carries it.
fn cookie(headers: &HeaderMap, wanted: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == wanted && !value.is_empty() && value.len() <= 128).then(|| value.to_owned())
    })
}

/// The session cookie's value, if the request carries one.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The live session of the request.
pub(super) async fn current_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<jhe_catalog::LoginSession>, OAuthError> {
    match session_cookie(headers) {
        Some(cookie) => Ok(jhe_catalog::find_login_session(&state.pool, &cookie).await?),
        None => Ok(None),
    }
}

fn append_cookie(response: &mut Response, name: &str, value: &str, max_age: i64) {
    let cookie = format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Sets (or, with an empty value and `max_age` 0, deletes) the session cookie.
pub(super) fn set_cookie(response: &mut Response, value: &str, max_age: i64) {
    append_cookie(response, SESSION_COOKIE, value, max_age);
}

fn same_token(submitted: Option<&str>, expected: &str) -> bool {
    submitted.is_some_and(|submitted| bool::from(submitted.as_bytes().ct_eq(expected.as_bytes())))
}

/// Whether a submitted CSRF token is the session's (in constant time).
pub(super) fn csrf_matches(session: &jhe_catalog::LoginSession, submitted: Option<&str>) -> bool {
    same_token(submitted, &session.csrf_token)
}

/// The CSRF cookie's token, if the request carries a well-formed one.
fn csrf_cookie(headers: &HeaderMap) -> Option<String> {
    cookie(headers, CSRF_COOKIE)
        .filter(|token| token.len() == CSRF_TOKEN_LENGTH && token.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// What a form of the login and account pages is bound to: the browser's live session, if it has one, and the
/// CSRF token the form carries.
pub(super) struct FormBinding {
    pub(super) csrf: String,
    pub(super) session: Option<jhe_catalog::LoginSession>,
    /// the browser had no usable CSRF cookie: [`FormBinding::finish`] sets this one
    new_csrf_cookie: bool,
}

impl FormBinding {
    /// For showing a form: the session's CSRF token, else the CSRF cookie's, else a new token for a new cookie.
    /// Nothing is stored: an anonymous visitor costs no row.
    pub(super) async fn for_page(state: &AppState, headers: &HeaderMap) -> Result<Self, OAuthError> {
        if let Some(session) = current_session(state, headers).await? {
            return Ok(FormBinding {
                csrf: session.csrf_token.clone(),
                session: Some(session),
                new_csrf_cookie: false,
            });
        }
        Ok(match csrf_cookie(headers) {
            Some(csrf) => FormBinding { csrf, session: None, new_csrf_cookie: false },
            None => {
                let csrf = jhe_catalog::random_token(CSRF_TOKEN_LENGTH);
                FormBinding { csrf, session: None, new_csrf_cookie: true }
            }
        })
    }

    /// For a posted form: `None` unless the submitted token is the session's or the CSRF cookie's (compared in
    /// constant time), which another site cannot read.
    pub(super) async fn of_post(
        state: &AppState,
        headers: &HeaderMap,
        submitted: Option<&str>,
    ) -> Result<Option<Self>, OAuthError> {
        let session = current_session(state, headers).await?;
        if let Some(session) = session.as_ref().filter(|session| csrf_matches(session, submitted)) {
            let csrf = session.csrf_token.clone();
            return Ok(Some(FormBinding { csrf, session: Some(session.clone()), new_csrf_cookie: false }));
        }
        Ok(csrf_cookie(headers).filter(|csrf| same_token(submitted, csrf)).map(|csrf| FormBinding {
            csrf,
            session,
            new_csrf_cookie: false,
        }))
    }

    /// `response` with the CSRF cookie its form needs.
    pub(super) fn finish(&self, mut response: Response) -> Response {
        if self.new_csrf_cookie {
            append_cookie(&mut response, CSRF_COOKIE, &self.csrf, CONFIG.session_lifetime.num_seconds());
        }
        response
    }
}

/// The 403 page of a form posted without its CSRF token.
pub(super) fn csrf_failed() -> Response {
    error_page(StatusCode::FORBIDDEN, "CSRF verification failed; reload the page and send the form again.")
}

/// Only same-site paths are followed after login (no open redirect): `next` as [`same_site_path`] makes it, else
/// `/`.
pub(super) fn safe_next(next: Option<&str>) -> String {
    next.and_then(same_site_path).unwrap_or_else(|| "/".to_owned())
}

/// `next` as a normalised path (with query and fragment) on this site, or `None`. Browsers read a Location
/// leniently (WHATWG URL): they drop tabs and newlines anywhere, trim control characters and spaces, and take `\`
/// for `/`, so `/\t/evil.example` arrives as `//evil.example`, another site. Such input is refused outright rather
/// than cleaned, and what is left must parse as a path of this origin: no scheme, no authority.
fn same_site_path(next: &str) -> Option<String> {
    let lenient = |c: char| c.is_control() || c.is_whitespace() || c == '\\';
    if !next.starts_with('/') || next.starts_with("//") || next.chars().any(lenient) {
        return None;
    }
    let base = url::Url::parse("https://this-site.invalid/").ok()?;
    let resolved = base.join(next).ok()?;
    if resolved.origin() != base.origin() || !resolved.username().is_empty() || resolved.password().is_some() {
        return None;
    }
    let mut path = resolved.path().to_owned();
    // dot segments are resolved: `/.//evil.example` becomes `//evil.example`
    if !path.starts_with('/') || path.starts_with("//") {
        return None;
    }
    if let Some(query) = resolved.query() {
        path.push('?');
        path.push_str(query);
    }
    if let Some(fragment) = resolved.fragment() {
        path.push('#');
        path.push_str(fragment);
    }
    Some(path)
}

fn login_form(csrf: &str, next: &str, email: &str, error: Option<&str>) -> String {
    let error = error.map(|e| format!("<p class=\"error\">{}</p>", escape(e))).unwrap_or_default();
    format!(
        "{error}<form method=\"post\" action=\"/accounts/login/\">\
         <input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"next\" value=\"{next}\">\
         <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\" value=\"{email}\" \
         autocomplete=\"username\" required autofocus>\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required>\
         <button type=\"submit\">Log in</button></form>\
         <p><a href=\"/accounts/password/reset/\">Forgot your password?</a></p>\
         <p>No account yet? <a href=\"/accounts/signup/\">Sign up</a></p>",
        csrf = escape(csrf),
        next = escape(next),
        email = escape(email),
    )
}

/// `GET /accounts/login/?next=…`: the form with its CSRF token (see [`FormBinding`]).
async fn login_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    let next = safe_next(param(&pairs, "next"));
    let binding = match FormBinding::for_page(&state, &headers).await {
        Ok(binding) => binding,
        Err(error) => return error.into_response(),
    };
    let form = login_form(&binding.csrf, &next, "", None) + &super::federation::login_link(&state, &next);
    binding.finish(html(StatusCode::OK, "Log in", &form))
}

/// `POST /accounts/login/`: checks the CSRF token and the password, then starts a signed-in session and goes on to
/// `next`. A wrong password re-renders the form with one message for every failure (no account probing).
async fn login_submit(
    State(state): State<AppState>,
    client: super::accounts::ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = form_pairs(&body);
    let binding = match FormBinding::of_post(&state, &headers, param(&pairs, "csrfmiddlewaretoken")).await {
        Ok(Some(binding)) => binding,
        Ok(None) => return csrf_failed(),
        Err(error) => return error.into_response(),
    };
    let next = safe_next(param(&pairs, "next"));
    let email = param(&pairs, "email").unwrap_or_default().trim().to_owned();
    let password = param(&pairs, "password").unwrap_or_default().to_owned();
    // the client's POST budget and the email's failed-login lock (docs/identity.md "Accounts")
    match super::accounts::login_refusal(&state, client, &headers, &email).await {
        Ok(None) => {}
        Ok(Some(refused)) => {
            return refused.page("Log in", &login_form(&binding.csrf, &next, &email, Some(&refused.message)));
        }
        Err(error) => return error.into_response(),
    }
    let user = match jhe_catalog::find_login_user(&state.pool, &email).await {
        Ok(user) => user,
        Err(error) => return OAuthError::from(error).into_response(),
    };
    let checked = match user {
        Some(user) if user.is_active && !password.is_empty() => {
            let stored = user.password.clone();
            let candidate = password.clone();
            // argon2 takes tens of milliseconds; keep it off the async workers
            let ok = tokio::task::spawn_blocking(move || jhe_catalog::passwords::verify_password(&candidate, &stored))
                .await
                .unwrap_or(false);
            ok.then_some(user)
        }
        _ => {
            // the same work as for a real account, so response times do not tell which emails exist
            let candidate = password.clone();
            let _ =
                tokio::task::spawn_blocking(move || jhe_catalog::passwords::verify_password(&candidate, &DUMMY_HASH))
                    .await;
            None
        }
    };
    let Some(user) = checked else {
        match super::accounts::login_failed(&state, &email).await {
            Ok(None) => {}
            Ok(Some(locked)) => {
                return locked.page("Log in", &login_form(&binding.csrf, &next, &email, Some(&locked.message)));
            }
            Err(error) => return error.into_response(),
        }
        let form = login_form(
            &binding.csrf,
            &next,
            &email,
            Some("Please enter a correct email address and password. Note that both fields may be case-sensitive."),
        );
        return html(StatusCode::OK, "Log in", &(form + &super::federation::login_link(&state, &next)));
    };
    let rehashed = if jhe_catalog::passwords::needs_rehash(&user.password) {
        jhe_catalog::passwords::hash_password(&password).ok()
    } else {
        None
    };
    let started = async {
        jhe_catalog::record_login(&state.pool, user.id, rehashed.as_deref()).await?;
        jhe_catalog::clear_login_failures(&state.pool, &email).await?;
        Ok::<_, jhe_catalog::Error>(())
    };
    match started.await {
        Ok(()) => start_session(&state, binding.session.map(|session| session.id), user.id, &next).await,
        Err(error) => OAuthError::from(error).into_response(),
    }
}

/// Signs `user_id` in after a successful login (password or federated): ends the browser's `previous` session, starts
/// a new signed-in one (no session fixation) and sends the browser to `next` (made same-site) with its cookie.
pub(super) async fn start_session(state: &AppState, previous: Option<i64>, user_id: i64, next: &str) -> Response {
    let started = async {
        if let Some(previous) = previous {
            jhe_catalog::delete_login_session(&state.pool, previous).await?;
        }
        let csrf = jhe_catalog::random_token(40);
        jhe_catalog::create_login_session(&state.pool, &csrf, Some(user_id), CONFIG.session_lifetime).await
    };
    match started.await {
        Ok(cookie) => {
            let mut response = redirect(&safe_next(Some(next)));
            set_cookie(&mut response, &cookie, CONFIG.session_lifetime.num_seconds());
            // the session's token takes over; a new anonymous visit gets a new one (as Django rotates on login)
            append_cookie(&mut response, CSRF_COOKIE, "", 0);
            response
        }
        Err(error) => OAuthError::from(error).into_response(),
    }
}

/// `GET /accounts/logout/`: asks to confirm with a form (a GET changes nothing: an image or link on another site
/// must not end the session).
async fn logout_page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let binding = match FormBinding::for_page(&state, &headers).await {
        Ok(binding) => binding,
        Err(error) => return error.into_response(),
    };
    if binding.session.is_none() {
        return html(StatusCode::OK, "Logged out", "<p>You are not logged in.</p>");
    }
    let form = format!(
        "<form method=\"post\" action=\"/accounts/logout/\">\
         <input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"{csrf}\">\
         <button type=\"submit\">Log out</button></form>",
        csrf = escape(&binding.csrf),
    );
    binding.finish(html(StatusCode::OK, "Log out", &form))
}

/// `POST /accounts/logout/`: with the form's CSRF token, ends the session and clears the cookie; without it, 403
/// and the session goes on.
async fn logout(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let pairs = form_pairs(&body);
    let binding = match FormBinding::of_post(&state, &headers, param(&pairs, "csrfmiddlewaretoken")).await {
        Ok(Some(binding)) => binding,
        Ok(None) => return csrf_failed(),
        Err(error) => return error.into_response(),
    };
    if let Some(session) = &binding.session
        && let Err(error) = jhe_catalog::delete_login_session(&state.pool, session.id).await
    {
        return OAuthError::from(error).into_response();
    }
    let mut response = html(StatusCode::OK, "Logged out", "<p>You are logged out.</p>");
    set_cookie(&mut response, "", 0);
    response
}

/// A 302 to `location`.
pub(super) fn redirect(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(value) => {
            let mut response = StatusCode::FOUND.into_response();
            response.headers_mut().insert(header::LOCATION, value);
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(_) => error_page(StatusCode::BAD_REQUEST, "The redirect address is not valid."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/o/authorize/?a=b")), "/o/authorize/?a=b");
        assert_eq!(
            safe_next(Some("/o/authorize/?response_type=code&scope=openid+email&redirect_uri=http%3A%2F%2Fx%2Fcb")),
            "/o/authorize/?response_type=code&scope=openid+email&redirect_uri=http%3A%2F%2Fx%2Fcb"
        );
        assert_eq!(safe_next(Some("/accounts/password/change/")), "/accounts/password/change/");
        assert_eq!(safe_next(Some("/a/b#frag")), "/a/b#frag");
        assert_eq!(safe_next(Some("/a/../b/./c")), "/b/c", "dot segments are resolved");
        // percent-encoded characters stay encoded: a browser does not decode them into an authority
        assert_eq!(safe_next(Some("/%09/evil.example")), "/%09/evil.example");
        assert_eq!(safe_next(Some("/%2F/evil.example")), "/%2F/evil.example");
        assert_eq!(safe_next(Some("/%5C/evil.example")), "/%5C/evil.example");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn open_redirect_payloads_go_home() {
        let payloads = [
            "//evil.example/",
            "///evil.example",
            "https://evil.example/",
            "https:evil.example",
            "http:/evil.example",
            "javascript:alert(1)",
            "JavaScript:alert(1)",
            "data:text/html,<script>alert(1)</script>",
            "evil.example",
            "",
            " /x",
            "/x ",
            "\t/x",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/evil.example",
            "/\r\n/evil.example",
            "/\x00/evil.example",
            "/\x0b/evil.example",
            "/\x0c/evil.example",
            "/\x1f/evil.example",
            "/\x7f/evil.example",
            "/ /evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "/\\/evil.example",
            "\\/evil.example",
            "/.//evil.example",
            "/./../..//evil.example",
            "/a/..//evil.example",
            "//evil.example@this-site.invalid/",
            "//user:pass@evil.example/",
            "/\u{3000}/evil.example",
        ];
        for payload in payloads {
            let followed = safe_next(Some(payload));
            assert!(
                !followed.starts_with("//") && !followed.contains('\\') && followed.starts_with('/'),
                "{payload:?} -> {followed:?}"
            );
            let whitespace = payload.chars().any(|c| c.is_whitespace() || c.is_control());
            if whitespace || !payload.starts_with('/') || payload.starts_with("//") || payload.contains('\\') {
                assert_eq!(followed, "/", "{payload:?} is refused");
            }
        }
        assert_eq!(safe_next(Some("/.//evil.example")), "/");
        assert_eq!(safe_next(Some("/a/..//evil.example")), "/");
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; jhe_session=abc; b=2"));
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        let token = "a".repeat(CSRF_TOKEN_LENGTH);
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("x=1; {CSRF_COOKIE}={token}")).unwrap());
        assert_eq!(csrf_cookie(&headers), Some(token));
        for planted in ["short", "a;b", &"é".repeat(20), &format!("{}!", "a".repeat(CSRF_TOKEN_LENGTH - 1))] {
            let cookie = format!("{CSRF_COOKIE}={planted}");
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                headers.insert(header::COOKIE, value);
                assert_eq!(csrf_cookie(&headers), None, "{planted}");
            }
        }
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;");
    }
}
