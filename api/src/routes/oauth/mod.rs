//! jhe's OAuth 2 / OpenID Connect provider (jhe-compat §7, docs/identity.md): the authorization-code flow with
//! PKCE behind jhe's own login page, the token endpoint (authorization_code, refresh_token with rotation,
//! client_credentials for practitioner API keys), userinfo, introspection, revocation, and the discovery
//! documents. Paths answer with and without the trailing slash, since DOT's have one and clients differ (§2.2).

mod accounts;
mod authorize;
mod federation;
mod invitation;
mod keys;
mod pages;
mod token;
mod token_exchange;

use super::clients::site_url as clients_site_url;
pub(crate) use accounts::{ClientAddr, PasswordChangeError, PasswordProof, change_password};
pub use federation::{CALLBACK_PATH, Federation, FederationConfig, FederationConfigError};
pub(crate) use invitation::{InvitationApiDoc, redeem_invitation};
pub(crate) use keys::prepare_signing_keys;
pub use keys::{KeyError, ServerSecret, rotate_signing_key};

use crate::AppState;
use crate::extract::RequestUrl;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::LazyLock;

/// Lifetimes of what the provider issues; read once from the environment (docs/identity.md).
#[derive(Debug, Clone)]
pub(crate) struct OAuthConfig {
    /// `JHE_ACCESS_TOKEN_LIFETIME_SECONDS`, default 14 days (the reference's ACCESS_TOKEN_EXPIRE_SECONDS)
    pub(crate) access_token_lifetime: chrono::Duration,
    /// `JHE_ID_TOKEN_LIFETIME_SECONDS`, default 10 hours (DOT's default); retired keys stay published this long
    pub(crate) id_token_lifetime: chrono::Duration,
    /// authorization codes live 60 s (DOT's default)
    pub(crate) code_lifetime: chrono::Duration,
    /// `JHE_SESSION_LIFETIME_SECONDS`, default 14 days (Django's session default)
    pub(crate) session_lifetime: chrono::Duration,
}

fn seconds_from_env(name: &str, default: i64) -> chrono::Duration {
    match std::env::var(name) {
        Err(_) => chrono::Duration::seconds(default),
        Ok(text) => match text.trim().parse::<i64>() {
            Ok(seconds) if seconds > 0 => chrono::Duration::seconds(seconds),
            _ => {
                tracing::error!(variable = name, value = %text, default, "not a positive number of seconds; using the default");
                chrono::Duration::seconds(default)
            }
        },
    }
}

pub(crate) static CONFIG: LazyLock<OAuthConfig> = LazyLock::new(|| OAuthConfig {
    access_token_lifetime: seconds_from_env("JHE_ACCESS_TOKEN_LIFETIME_SECONDS", 14 * 24 * 3600),
    id_token_lifetime: seconds_from_env("JHE_ID_TOKEN_LIFETIME_SECONDS", 36_000),
    code_lifetime: chrono::Duration::seconds(60),
    session_lifetime: seconds_from_env("JHE_SESSION_LIFETIME_SECONDS", 14 * 24 * 3600),
});

/// The scopes jhe issues besides SMART resource scopes. Others in a request are dropped (RFC 6749 §3.3 lets the
/// server narrow a request; the token response then names what was granted).
pub(crate) const SUPPORTED_SCOPES: &[&str] = &["openid", "email", "introspection"];

/// The SMART resource scopes discovery advertises (any `patient/`, `user/` or `system/` scope on a FHIR type or
/// `*`, with v2 letters or the v1 forms, is accepted; these are examples of the forms).
const SMART_SCOPE_EXAMPLES: &[&str] = &[
    "patient/*.cruds",
    "patient/*.rs",
    "patient/Observation.rs",
    "patient/Observation.c",
    "user/*.cruds",
    "user/*.rs",
    "user/Observation.rs",
    "user/Patient.rs",
    "system/*.rs",
    "patient/*.read",
    "user/*.read",
];

/// The granted scope for a requested one: the supported scopes and the SMART resource scopes, in request order
/// without duplicates; other scopes are dropped. A malformed resource scope, or a `system/` one where
/// `allow_system` is false (a user signs in), is an error message for RFC 6749 `invalid_scope`.
pub(crate) fn granted_scope(requested: Option<&str>, default: &str, allow_system: bool) -> Result<String, String> {
    let requested = requested.map(str::trim).filter(|s| !s.is_empty()).unwrap_or(default);
    let resources = crate::smart_scopes::requested_resource_scopes(requested, allow_system)?;
    let mut granted: Vec<&str> = Vec::new();
    for scope in requested.split_whitespace() {
        let keep = SUPPORTED_SCOPES.contains(&scope) || resources.iter().any(|r| r == scope);
        if keep && !granted.contains(&scope) {
            granted.push(scope);
        }
    }
    Ok(granted.join(" "))
}

pub(crate) fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split_whitespace().any(|s| s == wanted)
}

/// The issuer: `<origin>/o`, without a trailing slash (§7.2).
pub(crate) fn issuer(url: &RequestUrl) -> String {
    format!("{}/o", url.base)
}

/// A form-encoded body or query string as key/value pairs (the first value of a repeated key wins in `param`).
pub(crate) fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

pub(crate) fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str()).filter(|value| !value.is_empty())
}

pub(crate) fn routes() -> Router<AppState> {
    let oauth = Router::new()
        .route("/o/.well-known/openid-configuration", get(openid_configuration).options(preflight))
        .route("/o/.well-known/openid-configuration/", get(openid_configuration).options(preflight))
        .route("/o/.well-known/oauth-authorization-server", get(authorization_server_metadata).options(preflight))
        .route("/o/.well-known/oauth-authorization-server/", get(authorization_server_metadata).options(preflight))
        .route("/o/.well-known/jwks.json", get(keys::jwks).options(preflight))
        .route("/FHIR/R5/.well-known/smart-configuration", get(smart_configuration).options(preflight))
        .merge(token::routes())
        .merge(token_exchange::routes())
        .merge(authorize::routes())
        .layer(axum::middleware::from_fn(cors));
    oauth.merge(pages::routes()).merge(accounts::routes()).merge(federation::routes())
}

/// The answer to a CORS preflight; [`cors`] adds the headers.
pub(super) async fn preflight() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `/o/*` and the discovery documents may be called from any origin (§7.1): preflights get 204, answers carry
/// `Access-Control-Allow-Origin: *`. Nothing here relies on cookies cross-origin, so `*` is safe.
async fn cors(request: Request, next: Next) -> Response {
    let mut response = if request.method() == Method::OPTIONS {
        let mut preflight = StatusCode::NO_CONTENT.into_response();
        let headers = preflight.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, OPTIONS"));
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Authorization, Content-Type"));
        preflight
    } else {
        next.run(request).await
    };
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

fn scopes_supported() -> Vec<&'static str> {
    SUPPORTED_SCOPES.iter().chain(SMART_SCOPE_EXAMPLES).copied().collect()
}

fn endpoints(url: &RequestUrl) -> serde_json::Map<String, serde_json::Value> {
    let base = &url.base;
    let mut doc = serde_json::Map::new();
    doc.insert("issuer".into(), json!(issuer(url)));
    doc.insert("authorization_endpoint".into(), json!(format!("{base}/o/authorize/")));
    doc.insert("token_endpoint".into(), json!(format!("{base}/o/token/")));
    doc.insert("userinfo_endpoint".into(), json!(format!("{base}/o/userinfo/")));
    doc.insert("jwks_uri".into(), json!(format!("{base}/o/.well-known/jwks.json")));
    doc.insert("introspection_endpoint".into(), json!(format!("{base}/o/introspect/")));
    doc.insert("revocation_endpoint".into(), json!(format!("{base}/o/revoke_token/")));
    doc.insert("response_types_supported".into(), json!(["code"]));
    doc.insert("response_modes_supported".into(), json!(["query"]));
    doc.insert("grant_types_supported".into(), json!(["authorization_code", "refresh_token", "client_credentials"]));
    doc.insert("code_challenge_methods_supported".into(), json!(["S256"]));
    doc.insert("scopes_supported".into(), json!(scopes_supported()));
    doc.insert(
        "token_endpoint_auth_methods_supported".into(),
        json!(["client_secret_basic", "client_secret_post", "none"]),
    );
    doc.insert(
        "revocation_endpoint_auth_methods_supported".into(),
        json!(["client_secret_basic", "client_secret_post", "none"]),
    );
    doc.insert(
        "introspection_endpoint_auth_methods_supported".into(),
        json!(["client_secret_basic", "client_secret_post"]),
    );
    doc
}

/// OpenID Connect Discovery 1.0.
async fn openid_configuration(url: RequestUrl) -> Response {
    let mut doc = endpoints(&url);
    doc.insert("subject_types_supported".into(), json!(["public"]));
    doc.insert("id_token_signing_alg_values_supported".into(), json!(["RS256"]));
    doc.insert(
        "claims_supported".into(),
        json!(["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "jti", "email", "email_verified"]),
    );
    axum::Json(doc).into_response()
}

/// RFC 8414 authorization server metadata.
async fn authorization_server_metadata(url: RequestUrl) -> Response {
    axum::Json(endpoints(&url)).into_response()
}

/// SMART App Launch discovery (§7.7): the reference's keys, plus the issuer and JWKS a v2 client may look for.
async fn smart_configuration(url: RequestUrl) -> Response {
    let base = &url.base;
    axum::Json(json!({
        "issuer": issuer(&url),
        "jwks_uri": format!("{base}/o/.well-known/jwks.json"),
        "authorization_endpoint": format!("{base}/o/authorize/"),
        "token_endpoint": format!("{base}/o/token/"),
        "grant_types_supported": ["authorization_code"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": [
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "permission-v2",
            "permission-v1",
            "permission-patient",
            "permission-user",
        ],
        "scopes_supported": scopes_supported(),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn granted_scope_keeps_supported_scopes_once() {
        let granted = |requested, default| granted_scope(requested, default, false);
        assert_eq!(
            granted(Some("openid email openid patient/*.rs launch/patient"), "openid").as_deref(),
            Ok("openid email patient/*.rs")
        );
        assert_eq!(granted(None, "openid").as_deref(), Ok("openid"));
        assert_eq!(granted(Some("  "), "").as_deref(), Ok(""));
        assert!(granted(Some("openid patient/Observation.x"), "openid").is_err());
        assert!(granted(Some("system/*.rs"), "").is_err());
        assert_eq!(granted_scope(Some("system/*.rs"), "", true).as_deref(), Ok("system/*.rs"));
        assert!(has_scope("openid email", "email"));
        assert!(!has_scope("openid emails", "email"));
    }
}
