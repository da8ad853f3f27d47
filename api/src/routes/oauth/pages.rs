//! jhe's browser login: `/accounts/login/` (email + password) and `/accounts/logout/`, as the reference's Django
//! pages (§7.8). The session cookie is Secure, HttpOnly and SameSite=Lax; the form carries a CSRF token bound to
//! the session (synchronizer token), and a successful login starts a new session (no fixation).

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

/// An argon2 hash no password matches in practice, checked for unknown emails.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| jhe_catalog::passwords::hash_password(&jhe_catalog::random_token(32)).unwrap_or_default());

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/accounts/login/", get(login_page).post(login_submit))
        .route("/accounts/login", get(login_page).post(login_submit))
        .route("/accounts/logout/", get(logout).post(logout))
        .route("/accounts/logout", get(logout).post(logout))
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

/// The session cookie's value, if the request carries one.
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        (name == SESSION_COOKIE && !value.is_empty() && value.len() <= 128).then(|| value.to_owned())
    })
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

pub(super) fn set_cookie(response: &mut Response, value: &str, max_age: i64) {
    let cookie = format!("{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Whether a submitted CSRF token is the session's (in constant time).
pub(super) fn csrf_matches(session: &jhe_catalog::LoginSession, submitted: Option<&str>) -> bool {
    submitted.is_some_and(|submitted| bool::from(submitted.as_bytes().ct_eq(session.csrf_token.as_bytes())))
}

/// Only same-site paths are followed after login (no open redirect).
pub(super) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') => next.to_owned(),
        _ => "/".to_owned(),
    }
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

/// `GET /accounts/login/?next=…`: the form, with a session that carries its CSRF token.
async fn login_page(State(state): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let pairs = form_pairs(query.unwrap_or_default().as_bytes());
    let next = safe_next(param(&pairs, "next"));
    let session = match current_session(&state, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let (csrf, new_cookie) = match session {
        Some(session) => (session.csrf_token, None),
        None => {
            let csrf = jhe_catalog::random_token(40);
            match jhe_catalog::create_login_session(&state.pool, &csrf, None, CONFIG.session_lifetime).await {
                Ok(cookie) => (csrf, Some(cookie)),
                Err(error) => return OAuthError::from(error).into_response(),
            }
        }
    };
    let form = login_form(&csrf, &next, "", None) + &super::federation::login_link(&state, &next);
    let mut response = html(StatusCode::OK, "Log in", &form);
    if let Some(cookie) = new_cookie {
        set_cookie(&mut response, &cookie, CONFIG.session_lifetime.num_seconds());
    }
    response
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
    let session = match current_session(&state, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return error_page(
                StatusCode::FORBIDDEN,
                "CSRF verification failed: your session expired; reload the login page.",
            );
        }
        Err(error) => return error.into_response(),
    };
    if !csrf_matches(&session, param(&pairs, "csrfmiddlewaretoken")) {
        return error_page(StatusCode::FORBIDDEN, "CSRF verification failed; reload the login page.");
    }
    let next = safe_next(param(&pairs, "next"));
    let email = param(&pairs, "email").unwrap_or_default().trim().to_owned();
    let password = param(&pairs, "password").unwrap_or_default().to_owned();
    // the client's POST budget and the email's failed-login lock (docs/identity.md "Accounts")
    match super::accounts::login_refusal(&state, client, &headers, &email).await {
        Ok(None) => {}
        Ok(Some(refused)) => {
            return refused.page("Log in", &login_form(&session.csrf_token, &next, &email, Some(&refused.message)));
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
                return locked.page("Log in", &login_form(&session.csrf_token, &next, &email, Some(&locked.message)));
            }
            Err(error) => return error.into_response(),
        }
        let form = login_form(
            &session.csrf_token,
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
        Ok(()) => start_session(&state, Some(session.id), user.id, &next).await,
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
            response
        }
        Err(error) => OAuthError::from(error).into_response(),
    }
}

/// `/accounts/logout/`: ends the session and clears the cookie.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Ok(Some(session)) = current_session(&state, &headers).await
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
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; jhe_session=abc; b=2"));
        assert_eq!(session_cookie(&headers).as_deref(), Some("abc"));
        assert_eq!(escape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;");
    }
}
