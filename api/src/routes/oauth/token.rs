//! The token endpoint (RFC 6749 §3.2: authorization_code, refresh_token with rotation and reuse detection,
//! client_credentials for practitioner API keys §5.5/§7.5), userinfo (OIDC Core §5.3), introspection (RFC 7662)
//! and revocation (RFC 7009). Every error is an RFC 6749 JSON error.

use super::keys::{at_hash, sign};
use super::{CONFIG, form_pairs, granted_scope, has_scope, issuer, param};
use crate::AppState;
use crate::error::OAuthError;
use crate::extract::RequestUrl;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jhe_catalog::{IssuedTokens, OAuthClient, RefreshOutcome, TokenGrant};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/o/token/", post(token).options(super::preflight))
        .route("/o/token", post(token).options(super::preflight))
        .route("/o/userinfo/", get(userinfo).post(userinfo).options(super::preflight))
        .route("/o/userinfo", get(userinfo).post(userinfo).options(super::preflight))
        .route("/o/introspect/", post(introspect).get(introspect).options(super::preflight))
        .route("/o/introspect", post(introspect).get(introspect).options(super::preflight))
        .route("/o/revoke_token/", post(revoke).options(super::preflight))
        .route("/o/revoke_token", post(revoke).options(super::preflight))
}

type OAuthResult<T> = Result<T, OAuthError>;

/// Client credentials as presented: HTTP Basic (RFC 6749 §2.3.1) or `client_id`/`client_secret` in the form.
#[derive(Debug)]
pub(super) struct PresentedClient {
    client_id: String,
    secret: Option<String>,
}

fn form_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("v={text}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

pub(super) fn presented_client(
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> OAuthResult<Option<PresentedClient>> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if let Some(encoded) = authorization.strip_prefix("Basic ").or_else(|| authorization.strip_prefix("basic ")) {
        let decoded = STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| OAuthError::invalid_client("the Basic credentials are not valid base64"))?;
        let (id, secret) =
            decoded.split_once(':').ok_or_else(|| OAuthError::invalid_client("the Basic credentials lack a ':'"))?;
        // RFC 6749 §2.3.1: both parts are form-encoded before base64
        return Ok(Some(PresentedClient { client_id: form_decode(id), secret: Some(form_decode(secret)) }));
    }
    Ok(param(pairs, "client_id").map(|client_id| PresentedClient {
        client_id: client_id.to_owned(),
        secret: param(pairs, "client_secret").map(str::to_owned),
    }))
}

/// The client behind the presented credentials. A confidential client must prove its secret; a public client
/// is identified by its id alone (it has no secret, RFC 6749 §2.1).
pub(super) async fn authenticate_client(
    state: &AppState,
    presented: Option<PresentedClient>,
) -> OAuthResult<OAuthClient> {
    let Some(presented) = presented else {
        return Err(OAuthError::invalid_client("client authentication is required (HTTP Basic or client_id)"));
    };
    let client = jhe_catalog::find_oauth_client(&state.pool, &presented.client_id)
        .await?
        .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
    if client.is_confidential() {
        let Some(secret) = presented.secret.filter(|s| !s.is_empty()) else {
            return Err(OAuthError::invalid_client("client authentication failed"));
        };
        let stored = client.client_secret_hash.clone();
        let matches = tokio::task::spawn_blocking(move || jhe_catalog::passwords::verify_password(&secret, &stored))
            .await
            .unwrap_or(false);
        if !matches {
            return Err(OAuthError::invalid_client("client authentication failed"));
        }
    }
    Ok(client)
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The token response (RFC 6749 §5.1), with an ID token when `openid` was granted and a user is known.
async fn token_response(
    state: &AppState,
    url: &RequestUrl,
    client: &OAuthClient,
    tokens: &IssuedTokens,
    scope: &str,
    id_token_for: Option<(i64, chrono::DateTime<chrono::Utc>, Option<&str>)>,
) -> OAuthResult<Response> {
    let expires_in = (tokens.access.expires_at - chrono::Utc::now()).num_seconds().max(0);
    let mut body = Map::new();
    body.insert("access_token".into(), json!(tokens.access.token));
    body.insert("expires_in".into(), json!(expires_in));
    body.insert("token_type".into(), json!("Bearer"));
    body.insert("scope".into(), json!(scope));
    if let Some(refresh) = &tokens.refresh {
        body.insert("refresh_token".into(), json!(refresh));
    }
    if let Some((user_id, auth_time, nonce)) = id_token_for.filter(|_| has_scope(scope, "openid")) {
        let (email, email_verified) = jhe_catalog::active_user_email_verified(&state.pool, user_id)
            .await?
            .ok_or_else(|| OAuthError::invalid_grant("the user is not active"))?;
        let now = chrono::Utc::now();
        let mut claims = json!({
            "iss": issuer(url),
            "sub": user_id.to_string(),
            "aud": client.client_id,
            "iat": now.timestamp(),
            "exp": (now + CONFIG.id_token_lifetime).timestamp(),
            "auth_time": auth_time.timestamp(),
            "at_hash": at_hash(&tokens.access.token),
            "jti": jhe_catalog::random_token(32),
            "email": email,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = json!(nonce);
        }
        // a relying party (another jhe's federated login) matches accounts by verified email (OIDC Core §5.1)
        if has_scope(scope, "email") {
            claims["email_verified"] = json!(email_verified);
        }
        body.insert("id_token".into(), json!(sign(&state.pool, &state.server_secret, &claims).await?));
    }
    Ok(no_store(axum::Json(Value::Object(body)).into_response()))
}

/// `POST /o/token/` (form-encoded).
async fn token(State(state): State<AppState>, url: RequestUrl, headers: HeaderMap, body: Bytes) -> Response {
    match token_inner(&state, &url, &headers, &body).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(error = error.error_code(), "token request refused");
            error.into_response()
        }
    }
}

async fn token_inner(state: &AppState, url: &RequestUrl, headers: &HeaderMap, body: &[u8]) -> OAuthResult<Response> {
    let pairs = form_pairs(body);
    let Some(grant_type) = param(&pairs, "grant_type") else {
        return Err(OAuthError::invalid_request("grant_type is required"));
    };
    if !matches!(grant_type, "authorization_code" | "refresh_token" | "client_credentials") {
        return Err(OAuthError::unsupported_grant_type(format!("grant_type `{grant_type}` is not supported")));
    }
    let client = authenticate_client(state, presented_client(headers, &pairs)?).await?;
    match grant_type {
        "authorization_code" => authorization_code(state, url, &client, &pairs).await,
        "refresh_token" => refresh_token(state, url, &client, &pairs).await,
        _ => client_credentials(state, url, &client, &pairs).await,
    }
}

/// RFC 7636 §4.1: 43–128 characters of `[A-Za-z0-9-._~]`.
fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// S256: base64url(sha256(verifier)) without padding.
pub(crate) fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

async fn authorization_code(
    state: &AppState,
    url: &RequestUrl,
    client: &OAuthClient,
    pairs: &[(String, String)],
) -> OAuthResult<Response> {
    if client.grant_type != "authorization-code" {
        return Err(OAuthError::unauthorized_client("this client may not use the authorization_code grant"));
    }
    let Some(code) = param(pairs, "code") else {
        return Err(OAuthError::invalid_request("code is required"));
    };
    let Some(verifier) = param(pairs, "code_verifier") else {
        return Err(OAuthError::invalid_request("code_verifier is required (PKCE)"));
    };
    // nothing changes until the client, redirect URI and verifier are right: someone who intercepted the code
    // (but has no verifier, or is another client) cannot spend it and the rightful client can still exchange it
    let grant = jhe_catalog::find_grant(&state.pool, code)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the authorization code is invalid"))?;
    if grant.client_pk != client.id {
        return Err(OAuthError::invalid_grant("the authorization code was issued to another client"));
    }
    if param(pairs, "redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request"));
    }
    if !valid_verifier(verifier) || s256_challenge(verifier) != grant.code_challenge {
        return Err(OAuthError::invalid_grant("the code_verifier does not match the code_challenge"));
    }
    if grant.used_before.is_some() {
        return Err(code_reused(state, client, grant.id).await);
    }
    if grant.expires_at <= chrono::Utc::now() {
        return Err(OAuthError::invalid_grant("the authorization code has expired"));
    }
    let issued = jhe_catalog::redeem_grant(
        &state.pool,
        &TokenGrant {
            user_id: Some(grant.user_id),
            client_pk: client.id,
            scope: &grant.scope,
            source: "authorization_code",
            grant_id: Some(grant.id),
            lifetime: CONFIG.access_token_lifetime,
        },
    )
    .await?;
    // `None`: a concurrent exchange of the same code won the race
    let Some(tokens) = issued else {
        return Err(code_reused(state, client, grant.id).await);
    };
    token_response(
        state,
        url,
        client,
        &tokens,
        &grant.scope,
        Some((grant.user_id, grant.auth_time, grant.nonce.as_deref())),
    )
    .await
}

/// RFC 6749 §4.1.2: a code presented again (with its client's verifier) revokes what it was exchanged for. The
/// answer is the error to send; a failed revocation is that failure instead.
async fn code_reused(state: &AppState, client: &OAuthClient, grant_id: i64) -> OAuthError {
    if let Err(error) = jhe_catalog::revoke_grant_family(&state.pool, grant_id).await {
        return error.into();
    }
    state.token_cache.clear();
    tracing::warn!(grant = grant_id, client = %client.client_id, "authorization code reused; its tokens are revoked");
    OAuthError::invalid_grant("the authorization code has already been used")
}

async fn refresh_token(
    state: &AppState,
    url: &RequestUrl,
    client: &OAuthClient,
    pairs: &[(String, String)],
) -> OAuthResult<Response> {
    let Some(refresh) = param(pairs, "refresh_token") else {
        return Err(OAuthError::invalid_request("refresh_token is required"));
    };
    let requested = param(pairs, "scope");
    let outcome =
        jhe_catalog::rotate_refresh_token(&state.pool, refresh, client.id, CONFIG.access_token_lifetime, |granted| {
            crate::smart_scopes::narrowed_scope(granted, requested)
        })
        .await?;
    // rotation deletes the previous access token, reuse the whole family: neither may stay cached
    state.token_cache.clear();
    match outcome {
        RefreshOutcome::Invalid => Err(OAuthError::invalid_grant("the refresh token is invalid")),
        RefreshOutcome::Reused => {
            tracing::warn!(client = %client.client_id, "refresh token reused; its token family is revoked");
            Err(OAuthError::invalid_grant("the refresh token has already been used; its tokens are revoked"))
        }
        RefreshOutcome::InvalidScope(message) => Err(OAuthError::invalid_scope(message)),
        // the family keeps the scope of the original grant, or a narrower one the request named (RFC 6749 §6)
        RefreshOutcome::Rotated { tokens, user_id, scope, auth_time, .. } => {
            token_response(state, url, client, &tokens, &scope, Some((user_id, auth_time, None))).await
        }
    }
}

async fn client_credentials(
    state: &AppState,
    url: &RequestUrl,
    client: &OAuthClient,
    pairs: &[(String, String)],
) -> OAuthResult<Response> {
    if !client.is_confidential() || client.grant_type != "client-credentials" {
        return Err(OAuthError::unauthorized_client("this client may not use the client_credentials grant"));
    }
    if client.owner_user_id.is_none() {
        return Err(OAuthError::unauthorized_client("this client has no owner to act as"));
    }
    // the token acts as the owning practitioner (§7.5); `openid` is meaningless without a user session
    let scope = granted_scope(param(pairs, "scope"), "", true)
        .map_err(OAuthError::invalid_scope)?
        .split_whitespace()
        .filter(|s| *s != "openid")
        .collect::<Vec<_>>()
        .join(" ");
    let tokens = jhe_catalog::issue_tokens(
        &state.pool,
        &TokenGrant {
            user_id: None,
            client_pk: client.id,
            scope: &scope,
            source: "client_credentials",
            grant_id: None,
            lifetime: CONFIG.access_token_lifetime,
        },
    )
    .await?;
    token_response(state, url, client, &tokens, &scope, None).await
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())?;
    let token = authorization.strip_prefix("Bearer ").or_else(|| authorization.strip_prefix("bearer "))?.trim();
    (!token.is_empty() && token.len() <= 512).then_some(token)
}

/// `GET|POST /o/userinfo/`: `{"sub", "email"}`, the email only with the `email` scope (§7.1).
async fn userinfo(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, OAuthError> {
    let Some(token) = bearer(&headers) else {
        return Err(OAuthError::invalid_token("a bearer token is required"));
    };
    let info = jhe_catalog::access_token_info(&state.pool, token)
        .await?
        .ok_or_else(|| OAuthError::invalid_token("the access token is invalid, expired or revoked"))?;
    if !has_scope(&info.scope, "openid") {
        return Err(OAuthError::insufficient_scope("userinfo needs a token with the openid scope"));
    }
    let mut body = json!({ "sub": info.user_id.to_string() });
    if has_scope(&info.scope, "email") {
        body["email"] = json!(info.email);
        let verified = jhe_catalog::active_user_email_verified(&state.pool, info.user_id).await?;
        body["email_verified"] = json!(verified.is_some_and(|(_, verified)| verified));
    }
    Ok(no_store(axum::Json(body).into_response()))
}

/// `POST /o/introspect/` (RFC 7662). The caller is a confidential client (Basic or form credentials) or holds a
/// token with the `introspection` scope; an unknown, expired or revoked token is `{"active": false}`.
async fn introspect(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthError> {
    let pairs = form_pairs(&body);
    let bearer_allowed = match bearer(&headers) {
        Some(token) => jhe_catalog::access_token_info(&state.pool, token)
            .await?
            .is_some_and(|info| has_scope(&info.scope, "introspection")),
        None => false,
    };
    if !bearer_allowed {
        let client = authenticate_client(&state, presented_client(&headers, &pairs)?).await?;
        if !client.is_confidential() {
            return Err(OAuthError::invalid_client("introspection needs a confidential client"));
        }
    }
    let Some(token) = param(&pairs, "token") else {
        return Err(OAuthError::invalid_request("token is required"));
    };
    let body = match jhe_catalog::access_token_info(&state.pool, token).await? {
        None => json!({ "active": false }),
        Some(info) => json!({
            "active": true,
            "scope": info.scope,
            "exp": info.expires_at.timestamp(),
            "iat": info.created.timestamp(),
            "client_id": info.client_id,
            "username": info.email,
            "sub": info.user_id.to_string(),
            "token_type": "Bearer",
        }),
    };
    Ok(no_store(axum::Json(body).into_response()))
}

/// `POST /o/revoke_token/` (RFC 7009): 200 whether or not the token existed; only the client it was issued to
/// can revoke it.
async fn revoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Result<Response, OAuthError> {
    let pairs = form_pairs(&body);
    let client = authenticate_client(&state, presented_client(&headers, &pairs)?).await?;
    let Some(token) = param(&pairs, "token") else {
        return Err(OAuthError::invalid_request("token is required"));
    };
    jhe_catalog::revoke_token(&state.pool, token, client.id).await?;
    state.token_cache.clear();
    Ok(no_store(StatusCode::OK.into_response()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        assert_eq!(
            s256_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(valid_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!valid_verifier("short"));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let mut headers = HeaderMap::new();
        let encoded = STANDARD.encode("my%20client:s%3Acret");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(&format!("Basic {encoded}")).unwrap());
        let presented = presented_client(&headers, &[]).unwrap().unwrap();
        assert_eq!((presented.client_id.as_str(), presented.secret.as_deref()), ("my client", Some("s:cret")));
    }
}
