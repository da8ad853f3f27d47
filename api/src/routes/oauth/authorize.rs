//! `/o/authorize/`: the authorization-code flow (RFC 6749 §4.1) with PKCE S256 required (RFC 7636) and OpenID
//! Connect's `nonce`. Without a signed-in session the browser goes to the login page and comes back; then a
//! client that skips authorization gets its code at once, any other shows a consent page (CSRF-protected POST).
//!
//! Errors about the client or its redirect URI are shown to the user (never redirected: the URI is not
//! trusted); every other error goes back to the client as `?error=…&state=…` (RFC 6749 §4.1.2.1).

use super::pages::{csrf_matches, current_session, error_page, escape, html, redirect};
use super::{CONFIG, form_pairs, granted_scope, param};
use crate::AppState;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/o/authorize/", get(authorize_get).post(authorize_post).options(super::preflight))
        .route("/o/authorize", get(authorize_get).post(authorize_post).options(super::preflight))
}

/// The authorization parameters a request carries, after validation.
#[derive(Debug, Clone)]
struct AuthorizeRequest {
    client: jhe_catalog::OAuthClient,
    redirect_uri: String,
    state: Option<String>,
    scope: String,
    code_challenge: String,
    nonce: Option<String>,
    prompt: Option<String>,
}

/// What an invalid request gets.
enum Invalid {
    /// shown to the user
    Page(String),
    /// sent back to the client's redirect URI
    Redirect(Response),
    Internal(Response),
}

/// `redirect_uri` with the answer's parameters added to its query.
fn client_redirect(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page(StatusCode::BAD_REQUEST, "The client's redirect URI is not a valid URL.");
    };
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in params {
            query.append_pair(key, value);
        }
    }
    redirect(url.as_str())
}

fn error_redirect(redirect_uri: &str, state: Option<&str>, error: &str, description: &str) -> Invalid {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    Invalid::Redirect(client_redirect(redirect_uri, &params))
}

async fn validate(app: &AppState, pairs: &[(String, String)]) -> Result<AuthorizeRequest, Invalid> {
    let Some(client_id) = param(pairs, "client_id") else {
        return Err(Invalid::Page("The request names no client (client_id is missing).".into()));
    };
    let client = match jhe_catalog::find_oauth_client(&app.pool, client_id).await {
        Ok(Some(client)) => client,
        Ok(None) => return Err(Invalid::Page(format!("The client `{client_id}` is not registered here."))),
        Err(error) => return Err(Invalid::Internal(crate::error::OAuthError::from(error).into_response())),
    };
    let redirect_uri = match param(pairs, "redirect_uri") {
        Some(uri) if client.allows_redirect(uri) => uri.to_owned(),
        Some(_) => return Err(Invalid::Page("The redirect_uri is not registered for this client.".into())),
        // RFC 6749 §3.1.2.3: may be omitted when exactly one is registered
        None => {
            let mut registered = client.redirect_uris.split_whitespace();
            match (registered.next(), registered.next()) {
                (Some(only), None) => only.to_owned(),
                _ => return Err(Invalid::Page("The request names no redirect_uri.".into())),
            }
        }
    };
    let state = param(pairs, "state").map(str::to_owned);
    let back = |error: &str, description: &str| error_redirect(&redirect_uri, state.as_deref(), error, description);
    if client.grant_type != "authorization-code" {
        return Err(back("unauthorized_client", "this client may not use the authorization-code grant"));
    }
    if param(pairs, "response_type") != Some("code") {
        return Err(back("unsupported_response_type", "response_type must be code"));
    }
    let Some(code_challenge) = param(pairs, "code_challenge") else {
        return Err(back("invalid_request", "code_challenge is required (PKCE with S256)"));
    };
    if param(pairs, "code_challenge_method") != Some("S256") {
        return Err(back("invalid_request", "code_challenge_method must be S256"));
    }
    // base64url of a sha256: 43 characters
    if code_challenge.len() != 43
        || !code_challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(back("invalid_request", "code_challenge must be base64url(sha256(code_verifier)) without padding"));
    }
    // a signed-in user grants user/ and patient/ scopes; system/ ones belong to client-credentials clients
    let scope = match granted_scope(param(pairs, "scope"), "openid", false) {
        Ok(scope) => scope,
        Err(message) => return Err(back("invalid_scope", &message)),
    };
    Ok(AuthorizeRequest {
        scope,
        client,
        code_challenge: code_challenge.to_owned(),
        nonce: param(pairs, "nonce").map(str::to_owned),
        prompt: param(pairs, "prompt").map(str::to_owned),
        redirect_uri,
        state,
    })
}

/// Issues the code and sends the browser back to the client.
async fn grant(
    app: &AppState,
    request: &AuthorizeRequest,
    session: &jhe_catalog::LoginSession,
    user_id: i64,
) -> Response {
    let new = jhe_catalog::NewGrant {
        client_pk: request.client.id,
        user_id,
        redirect_uri: &request.redirect_uri,
        scope: &request.scope,
        code_challenge: &request.code_challenge,
        nonce: request.nonce.as_deref(),
        auth_time: session.auth_time.unwrap_or_else(chrono::Utc::now),
        lifetime: CONFIG.code_lifetime,
    };
    match jhe_catalog::create_grant(&app.pool, &new).await {
        Ok(code) => {
            let mut params = vec![("code", code.as_str())];
            if let Some(state) = &request.state {
                params.push(("state", state.as_str()));
            }
            client_redirect(&request.redirect_uri, &params)
        }
        Err(error) => crate::error::OAuthError::from(error).into_response(),
    }
}

fn consent_page(request: &AuthorizeRequest, pairs: &[(String, String)], csrf: &str) -> Response {
    let hidden: String = pairs
        .iter()
        .filter(|(key, _)| key != "csrfmiddlewaretoken" && key != "allow")
        .map(|(key, value)| format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", escape(key), escape(value)))
        .collect();
    let scopes: String = request.scope.split_whitespace().map(|scope| format!("<li>{}</li>", escape(scope))).collect();
    let body = format!(
        "<p><strong>{client}</strong> asks to access your JupyterHealth Exchange account with these scopes:</p>\
         <ul>{scopes}</ul><form method=\"post\" action=\"/o/authorize/\">{hidden}\
         <input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"{csrf}\">\
         <button type=\"submit\" name=\"allow\" value=\"Authorize\">Authorize</button>\
         <button type=\"submit\" name=\"deny\" value=\"Cancel\">Cancel</button></form>",
        client = escape(if request.client.name.is_empty() { &request.client.client_id } else { &request.client.name }),
        csrf = escape(csrf),
    );
    html(StatusCode::OK, "Authorize access", &body)
}

/// `GET /o/authorize/`.
async fn authorize_get(State(app): State<AppState>, headers: HeaderMap, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let pairs = form_pairs(query.as_bytes());
    let request = match validate(&app, &pairs).await {
        Ok(request) => request,
        Err(Invalid::Page(message)) => return error_page(StatusCode::BAD_REQUEST, &message),
        Err(Invalid::Redirect(response) | Invalid::Internal(response)) => return response,
    };
    let session = match current_session(&app, &headers).await {
        Ok(session) => session,
        Err(error) => return error.into_response(),
    };
    let signed_in = session.and_then(|session| session.user_id.map(|user| (session, user)));
    let Some((session, user_id)) = signed_in.filter(|_| request.prompt.as_deref() != Some("login")) else {
        if request.prompt.as_deref() == Some("none") {
            return client_redirect(&request.redirect_uri, &login_required(&request));
        }
        // come back here after login, without `prompt=login` (it has been honoured by then)
        let back: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs.iter().filter(|(key, value)| !(key == "prompt" && value == "login")))
            .finish();
        let next = format!("/o/authorize/?{back}");
        let login = url::form_urlencoded::Serializer::new(String::from("/accounts/login/?"))
            .append_pair("next", &next)
            .finish();
        return redirect(&login);
    };
    if request.client.skip_authorization {
        return grant(&app, &request, &session, user_id).await;
    }
    if request.prompt.as_deref() == Some("none") {
        let mut params = vec![("error", "consent_required")];
        if let Some(state) = &request.state {
            params.push(("state", state.as_str()));
        }
        return client_redirect(&request.redirect_uri, &params);
    }
    consent_page(&request, &pairs, &session.csrf_token)
}

fn login_required(request: &AuthorizeRequest) -> Vec<(&'static str, &str)> {
    let mut params = vec![("error", "login_required")];
    if let Some(state) = &request.state {
        params.push(("state", state.as_str()));
    }
    params
}

/// `POST /o/authorize/`: the consent form.
async fn authorize_post(State(app): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let pairs = form_pairs(&body);
    let session = match current_session(&app, &headers).await {
        Ok(Some(session)) => session,
        Ok(None) => {
            return error_page(StatusCode::FORBIDDEN, "Your session expired; start again from the application.");
        }
        Err(error) => return error.into_response(),
    };
    if !csrf_matches(&session, param(&pairs, "csrfmiddlewaretoken")) {
        return error_page(StatusCode::FORBIDDEN, "CSRF verification failed; start again from the application.");
    }
    let Some(user_id) = session.user_id else {
        return error_page(StatusCode::FORBIDDEN, "You are not logged in; start again from the application.");
    };
    let request = match validate(&app, &pairs).await {
        Ok(request) => request,
        Err(Invalid::Page(message)) => return error_page(StatusCode::BAD_REQUEST, &message),
        Err(Invalid::Redirect(response) | Invalid::Internal(response)) => return response,
    };
    if param(&pairs, "allow").is_none() {
        let mut params = vec![("error", "access_denied"), ("error_description", "the user denied access")];
        if let Some(state) = &request.state {
            params.push(("state", state.as_str()));
        }
        return client_redirect(&request.redirect_uri, &params);
    }
    grant(&app, &request, &session, user_id).await
}
