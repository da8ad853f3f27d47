//! SMART EHR-launch token exchange (`POST /o/token-exchange`, RFC 8693, jhe-compat §7.6): an app launched from an
//! EHR trades the EHR's ID token for a jhe access token that acts as the practitioner the ID token names.
//!
//! * The client authenticates as a confidential client (HTTP Basic or form), as at `/o/token/`, and must be
//!   registered for the exchange: its client id listed in the `auth.token_exchange_clients` setting. Any other
//!   client (a practitioner's API key, say) is refused before the subject token is looked at.
//! * The ID token's issuer must be listed in the `auth.sof.trusted_issuers` setting (a trailing slash ignored);
//!   its keys come from the JWKS named by `<iss>/.well-known/smart-configuration`, else
//!   `<iss>/.well-known/openid-configuration`, fetched over https only (plain http is accepted for loopback
//!   issuers, so a local EHR sandbox and the tests work) and kept for five minutes; an unknown `kid` refetches
//!   once, so the EHR's key rotation is followed.
//! * RS256, RS384 or ES384; `aud` must be the `auth.sof.trusted_audience` setting; 30 s of clock leeway.
//! * `fhirUser` must end in `Practitioner/<id>`, and (issuer, `<id>`) must be linked to an active jhe practitioner
//!   (`ehr_practitioner_links`): an id alone names no one, since two EHRs may both have a Practitioner/17.
//! * Errors are `{"error": "<message>"}` with 400, 401, 403, 404, 500 or 502, as the reference answers.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::token::{authenticate_client, presented_client};
use super::{CONFIG, form_pairs, param};
use crate::AppState;
use crate::extract::RequestUrl;

const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const ID_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:id_token";
/// The setting listing the client ids registered for the exchange.
const EXCHANGE_CLIENTS_SETTING: &str = "auth.token_exchange_clients";
/// Clock difference tolerated between the EHR and jhe.
const LEEWAY_SECONDS: u64 = 30;
/// How long an issuer's keys are trusted before they are fetched again.
const JWKS_TTL: Duration = Duration::from_secs(300);
/// The longest wait for an issuer's discovery document or keys.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/o/token-exchange", post(exchange).options(super::preflight))
        .route("/o/token-exchange/", post(exchange).options(super::preflight))
}

/// A refused exchange: `{"error": message}` with its status (§7.6's shape, not RFC 6749's).
#[derive(Debug)]
struct ExchangeError {
    status: StatusCode,
    message: String,
}

impl ExchangeError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, message)
    }
}

impl From<jhe_catalog::Error> for ExchangeError {
    fn from(error: jhe_catalog::Error) -> Self {
        tracing::error!(%error, "token exchange: catalog error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "the server could not complete the exchange")
    }
}

impl IntoResponse for ExchangeError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(json!({"error": self.message}))).into_response();
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

async fn exchange(State(state): State<AppState>, url: RequestUrl, headers: HeaderMap, body: Bytes) -> Response {
    match exchange_inner(&state, &url, &headers, &body).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(status = error.status.as_u16(), error = error.message, "token exchange refused");
            error.into_response()
        }
    }
}

async fn exchange_inner(
    state: &AppState,
    url: &RequestUrl,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ExchangeError> {
    let pairs = form_pairs(body);
    let required = |name: &str| {
        param(&pairs, name)
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| ExchangeError::bad_request(format!("{name} is required")))
    };
    let grant_type = required("grant_type")?;
    if grant_type != TOKEN_EXCHANGE_GRANT {
        return Err(ExchangeError::bad_request(format!("grant_type must be {TOKEN_EXCHANGE_GRANT}")));
    }
    if required("requested_token_type")? != ACCESS_TOKEN_TYPE {
        return Err(ExchangeError::bad_request(format!("requested_token_type must be {ACCESS_TOKEN_TYPE}")));
    }
    if required("subject_token_type")? != ID_TOKEN_TYPE {
        return Err(ExchangeError::bad_request(format!("subject_token_type must be {ID_TOKEN_TYPE}")));
    }
    let subject_token = required("subject_token")?;
    let site = super::super::clients::site_url(state, url)
        .await
        .map_err(|_| ExchangeError::new(StatusCode::INTERNAL_SERVER_ERROR, "the site URL cannot be read"))?;
    if required("audience")?.trim_end_matches('/') != site {
        return Err(ExchangeError::bad_request(format!("audience must be this server, {site}")));
    }
    let scope = param(&pairs, "scope").unwrap_or("openid").trim();
    if scope.split_whitespace().any(|part| part != "openid") {
        return Err(ExchangeError::bad_request("scope: only openid may be requested"));
    }

    let client = exchange_client(state, headers, &pairs).await?;
    let subject = verify_subject_token(state, subject_token).await?;
    let user_id = acting_practitioner(state, &subject).await?;
    let tokens = jhe_catalog::issue_tokens(
        &state.pool,
        &jhe_catalog::TokenGrant {
            user_id: Some(user_id),
            client_pk: client.id,
            scope: "openid",
            source: "token_exchange",
            grant_id: None,
            lifetime: CONFIG.access_token_lifetime,
        },
    )
    .await?;
    tracing::info!(user = user_id, client = client.client_id, "token exchanged for an EHR launch");
    let expires_in = (tokens.access.expires_at - chrono::Utc::now()).num_seconds().max(0);
    let mut response = axum::Json(json!({
        "access_token": tokens.access.token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": "openid",
    }))
    .into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The calling client, once it authenticated as a confidential client registered for the exchange (listed in
/// `auth.token_exchange_clients`). Checked before the subject token is read, so an unregistered client — a
/// practitioner's API key, say — obtains nothing and cannot make jhe fetch an issuer's keys either.
async fn exchange_client(
    state: &AppState,
    headers: &HeaderMap,
    pairs: &[(String, String)],
) -> Result<jhe_catalog::OAuthClient, ExchangeError> {
    let client = authenticate_client(state, presented_client(headers, pairs).ok().flatten())
        .await
        .map_err(|_| ExchangeError::unauthorized("client authentication failed"))?;
    if !client.is_confidential() {
        return Err(ExchangeError::unauthorized("the token exchange is for confidential clients"));
    }
    let registered = jhe_catalog::setting_json(&state.pool, EXCHANGE_CLIENTS_SETTING).await?;
    if !lists_client(registered.as_ref(), &client.client_id) {
        return Err(ExchangeError::new(
            StatusCode::FORBIDDEN,
            format!(
                "unauthorized_client: the client {} is not registered for the token exchange \
                 ({EXCHANGE_CLIENTS_SETTING})",
                client.client_id
            ),
        ));
    }
    Ok(client)
}

/// Whether the setting's value (a JSON list of client ids) names `client_id`; anything else names no one.
fn lists_client(setting: Option<&Value>, client_id: &str) -> bool {
    setting.and_then(Value::as_array).is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(client_id)))
}

/// The jhe user the subject token's `fhirUser` names: the practitioner linked to (issuer, Practitioner id).
async fn acting_practitioner(state: &AppState, subject: &SubjectToken) -> Result<i64, ExchangeError> {
    let fhir_user = subject.claims["fhirUser"].as_str().unwrap_or_default();
    let Some(id) = practitioner_id(fhir_user) else {
        return Err(ExchangeError::new(
            StatusCode::FORBIDDEN,
            "the subject_token's fhirUser must name a Practitioner (…/Practitioner/<id>)",
        ));
    };
    jhe_catalog::ehr_practitioner_user(&state.pool, &subject.issuer, id).await?.ok_or_else(|| {
        ExchangeError::new(
            StatusCode::NOT_FOUND,
            format!("no practitioner is linked to Practitioner/{id} of the issuer {}", subject.issuer),
        )
    })
}

/// `<id>` of a `fhirUser` that ends in `Practitioner/<id>` (absolute or relative).
fn practitioner_id(fhir_user: &str) -> Option<&str> {
    let (before, id) = fhir_user.trim().rsplit_once('/')?;
    let is_practitioner = before == "Practitioner" || before.ends_with("/Practitioner");
    (is_practitioner && !id.is_empty()).then_some(id)
}

/// A subject token whose issuer is trusted and whose signature, audience and lifetime hold.
struct SubjectToken {
    /// `iss`, as verified
    issuer: String,
    claims: Value,
}

/// The subject token once its issuer is trusted and its signature, audience and lifetime hold.
async fn verify_subject_token(state: &AppState, token: &str) -> Result<SubjectToken, ExchangeError> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|error| ExchangeError::bad_request(format!("subject_token is not a JWT: {error}")))?;
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::RS384 | Algorithm::ES384) {
        return Err(ExchangeError::bad_request(format!(
            "subject_token is signed with {:?}; RS256, RS384 and ES384 are accepted",
            header.alg
        )));
    }
    let unverified: Value = jsonwebtoken::dangerous::insecure_decode_claims(token)
        .map_err(|error| ExchangeError::bad_request(format!("subject_token has unreadable claims: {error}")))?;
    let Some(issuer) = unverified["iss"].as_str().map(str::to_owned) else {
        return Err(ExchangeError::bad_request("subject_token has no iss"));
    };
    let trusted = jhe_catalog::setting_json(&state.pool, "auth.sof.trusted_issuers").await?.unwrap_or(Value::Null);
    let is_trusted = trusted.as_array().is_some_and(|issuers| {
        issuers
            .iter()
            .filter_map(Value::as_str)
            .any(|known| known.trim_end_matches('/') == issuer.trim_end_matches('/'))
    });
    if !is_trusted {
        return Err(ExchangeError::new(StatusCode::FORBIDDEN, format!("the issuer {issuer} is not trusted")));
    }
    let audience = jhe_catalog::setting_string(&state.pool, "auth.sof.trusted_audience")
        .await?
        .filter(|audience| !audience.trim().is_empty())
        .ok_or_else(|| {
            ExchangeError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the server has no auth.sof.trusted_audience setting; an administrator must set it",
            )
        })?;

    let key = decoding_key(&issuer, header.kid.as_deref()).await?;
    let mut validation = Validation::new(header.alg);
    validation.set_audience(&[audience.trim()]);
    validation.set_issuer(&[issuer.as_str()]);
    validation.leeway = LEEWAY_SECONDS;
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let verified = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|error| ExchangeError::unauthorized(format!("subject_token is not valid: {error}")))?;
    Ok(SubjectToken { issuer, claims: verified.claims })
}

/// Issuers' keys, fetched at most every [`JWKS_TTL`] (and again for a `kid` they lack).
static JWKS_CACHE: LazyLock<Mutex<HashMap<String, FetchedKeys>>> = LazyLock::new(Mutex::default);

/// An issuer's keys and when they were fetched.
type FetchedKeys = (Instant, Arc<JwkSet>);

static HTTP: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
});

fn cached_jwks(issuer: &str) -> Option<Arc<JwkSet>> {
    let cache = JWKS_CACHE.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    cache.get(issuer).filter(|(fetched, _)| fetched.elapsed() < JWKS_TTL).map(|(_, keys)| Arc::clone(keys))
}

/// The key that signed a token of `issuer`: by `kid`, or the only key of a set when the token names none.
async fn decoding_key(issuer: &str, kid: Option<&str>) -> Result<DecodingKey, ExchangeError> {
    let pick = |keys: &JwkSet| match kid {
        Some(kid) => keys.find(kid).cloned(),
        None if keys.keys.len() == 1 => keys.keys.first().cloned(),
        None => None,
    };
    let mut jwk = cached_jwks(issuer).and_then(|keys| pick(&keys));
    if jwk.is_none() {
        let keys = Arc::new(fetch_jwks(issuer).await?);
        jwk = pick(&keys);
        JWKS_CACHE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(issuer.to_owned(), (Instant::now(), keys));
    }
    let jwk = jwk.ok_or_else(|| {
        ExchangeError::unauthorized(match kid {
            Some(kid) => format!("the issuer's keys have no key {kid}"),
            None => "subject_token names no kid and the issuer has several keys".to_owned(),
        })
    })?;
    DecodingKey::from_jwk(&jwk)
        .map_err(|error| ExchangeError::bad_gateway(format!("the issuer's key is unusable: {error}")))
}

/// https, or http to a loopback host (a local sandbox, the tests).
fn allowed_url(text: &str) -> bool {
    match url::Url::parse(text) {
        Ok(parsed) if parsed.scheme() == "https" => true,
        Ok(parsed) if parsed.scheme() == "http" => {
            matches!(parsed.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
        }
        _ => false,
    }
}

async fn fetch_json(address: &str) -> Result<Value, String> {
    let response = HTTP.get(address).send().await.map_err(|error| format!("{address}: {error}"))?;
    if !response.status().is_success() {
        return Err(format!("{address} answered {}", response.status()));
    }
    response.json().await.map_err(|error| format!("{address}: {error}"))
}

/// The issuer's JWKS, found through its SMART configuration, else its OpenID configuration.
async fn fetch_jwks(issuer: &str) -> Result<JwkSet, ExchangeError> {
    let base = issuer.trim_end_matches('/');
    if !allowed_url(base) {
        return Err(ExchangeError::bad_gateway(format!("the issuer {issuer} is not an https URL")));
    }
    let mut problems = Vec::new();
    let mut jwks_uri = None;
    for document in ["smart-configuration", "openid-configuration"] {
        match fetch_json(&format!("{base}/.well-known/{document}")).await {
            Ok(found) => match found["jwks_uri"].as_str() {
                Some(uri) => {
                    jwks_uri = Some(uri.to_owned());
                    break;
                }
                None => problems.push(format!("{document} has no jwks_uri")),
            },
            Err(problem) => problems.push(problem),
        }
    }
    let jwks_uri = jwks_uri
        .ok_or_else(|| ExchangeError::bad_gateway(format!("cannot find the issuer's keys: {}", problems.join("; "))))?;
    if !allowed_url(&jwks_uri) {
        return Err(ExchangeError::bad_gateway(format!("the issuer's jwks_uri {jwks_uri} is not https")));
    }
    let keys = fetch_json(&jwks_uri)
        .await
        .map_err(|problem| ExchangeError::bad_gateway(format!("cannot fetch the issuer's keys: {problem}")))?;
    serde_json::from_value(keys)
        .map_err(|error| ExchangeError::bad_gateway(format!("the issuer's JWKS is not valid: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fhir_user_names_a_practitioner() {
        assert_eq!(practitioner_id("https://ehr.example.org/fhir/Practitioner/abc-1"), Some("abc-1"));
        assert_eq!(practitioner_id("Practitioner/7"), Some("7"));
        assert_eq!(practitioner_id("https://ehr.example.org/fhir/Patient/7"), None);
        assert_eq!(practitioner_id("https://ehr.example.org/fhir/NotPractitioner/7"), None);
        assert_eq!(practitioner_id("Practitioner/"), None);
        assert_eq!(practitioner_id(""), None);
    }

    #[test]
    fn only_listed_clients_are_registered() {
        let listed = json!(["sof-ehr-launch", "other"]);
        assert!(lists_client(Some(&listed), "sof-ehr-launch"));
        assert!(!lists_client(Some(&listed), "sof-ehr"));
        assert!(!lists_client(Some(&json!([])), "sof-ehr-launch"));
        assert!(!lists_client(Some(&json!("sof-ehr-launch")), "sof-ehr-launch"));
        assert!(!lists_client(Some(&json!([{"id": "sof-ehr-launch"}])), "sof-ehr-launch"));
        assert!(!lists_client(None, "sof-ehr-launch"));
    }

    #[test]
    fn keys_come_over_https_or_from_loopback() {
        assert!(allowed_url("https://fhir.epic.com/interconnect-fhir-oauth/oauth2"));
        assert!(allowed_url("http://127.0.0.1:8080/ehr"));
        assert!(allowed_url("http://localhost/ehr"));
        assert!(!allowed_url("http://ehr.example.org"));
        assert!(!allowed_url("file:///etc/passwd"));
        assert!(!allowed_url("not a url"));
    }
}
