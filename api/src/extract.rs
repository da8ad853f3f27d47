//! Request extractors that answer bad input with `{"detail": …}` instead of axum's plain-text rejections.

use crate::AppState;
use crate::camel::{camelize, camelize_key, underscoreize, underscoreize_key};
use crate::error::{ApiError, ApiResult};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use jhe_catalog::Caller;
use serde::Serialize;
use serde_json::Value;

/// What a handler needs to know about the request URL: the external base (`scheme://host`), the path and the
/// query string with underscoreized keys (values untouched).
#[derive(Debug, Clone)]
pub(crate) struct RequestUrl {
    pub(crate) base: String,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
}

impl RequestUrl {
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// An optional integer query parameter; a value that is not an integer is a 400.
    pub(crate) fn int_param(&self, name: &str) -> ApiResult<Option<i64>> {
        match self.param(name) {
            None | Some("") => Ok(None),
            Some(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("{}: `{text}` is not an integer", camelize_key(name)))),
        }
    }

    pub(crate) fn bool_param(&self, name: &str) -> bool {
        matches!(self.param(name), Some("true" | "True" | "1" | "yes"))
    }
}

/// `JHE_SITE_URL`, else the request's `Host`; `X-Forwarded-Host`/`-Proto` count only when the peer is a trusted
/// proxy (`JHE_TRUSTED_PROXIES`), since any client can send them.
fn external_base(headers: &HeaderMap, site_url: Option<&str>, behind_trusted_proxy: bool) -> String {
    if let Some(site) = site_url {
        return site.trim_end_matches('/').to_owned();
    }
    let header_text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let forwarded = |name: &str| {
        behind_trusted_proxy.then(|| header_text(name)).flatten().and_then(|h| h.split(',').next()).map(str::trim)
    };
    let host = forwarded("x-forwarded-host").or_else(|| header_text("host")).unwrap_or("localhost");
    let scheme = forwarded("x-forwarded-proto").unwrap_or("http");
    let scheme = if scheme == "https" { "https" } else { "http" };
    format!("{scheme}://{host}")
}

fn behind_trusted_proxy(parts: &Parts, state: &AppState) -> bool {
    let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|info| info.0);
    state.login_limits.peer_is_trusted_proxy(peer)
}

impl FromRequestParts<AppState> for RequestUrl {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let query = parts
            .uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (underscoreize_key(&k), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(RequestUrl {
            base: external_base(&parts.headers, state.site_url.as_deref(), behind_trusted_proxy(parts, state)),
            // nested routers see a stripped path; links need the one the client asked for
            path: parts
                .extensions
                .get::<axum::extract::OriginalUri>()
                .map(|original| original.0.path().to_owned())
                .unwrap_or_else(|| parts.uri.path().to_owned()),
            query,
        })
    }
}

/// The authenticated caller (401 without a valid bearer token; 403 when the token's SMART scopes do not cover the
/// request, `smart_scopes::route_scope` says what each route needs), carrying the observation codes the scopes let
/// the request read (`Caller::observation_codes`, which the query engine's access scope applies).
#[derive(Debug, Clone)]
pub(crate) struct Auth(pub(crate) Caller);

/// The SMART scope check of a request by a valid token: the caller to act as, or the refusal.
fn within_scopes(parts: &Parts, found: &crate::token_cache::Authenticated) -> Result<Caller, ApiError> {
    use crate::smart_scopes::{Decision, RouteScope, as_patient, route_scope};
    let mut caller = found.caller.clone();
    let route = match parts.extensions.get::<axum::extract::MatchedPath>() {
        Some(matched) => {
            let path = parts
                .extensions
                .get::<axum::extract::OriginalUri>()
                .map(|original| original.0.path())
                .unwrap_or_else(|| parts.uri.path());
            route_scope(&parts.method, matched.as_str(), path)
        }
        None => RouteScope::Unmapped,
    };
    match found.scopes.decide(&caller, &route) {
        Decision::Allowed(codes) => {
            caller.observation_codes = codes;
            Ok(caller)
        }
        Decision::AsPatient(codes) => {
            as_patient(&mut caller);
            caller.observation_codes = codes;
            Ok(caller)
        }
        Decision::Refused(message) => Err(ApiError::insufficient_scope(message)),
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(token) = header.strip_prefix("Bearer ").or_else(|| header.strip_prefix("bearer ")) else {
            return Err(ApiError::unauthenticated());
        };
        let token = token.trim();
        if token.is_empty() || token.len() > 512 {
            return Err(ApiError::unauthenticated());
        }
        // cached for at most a few seconds (token_cache.rs); revocations through this process evict at once
        match state.token_cache.check(&state.pool, token).await? {
            Some(found) => {
                if let Some(slot) = parts.extensions.get::<crate::audit::AuditSlot>() {
                    slot.set_user(found.caller.user_id);
                }
                within_scopes(parts, &found).map(Auth)
            }
            None => Err(ApiError::new(jhe_schemas::ErrorKind::Unauthenticated, "Invalid token.")),
        }
    }
}

/// A JSON request body with underscoreized keys, as an object.
#[derive(Debug, Clone)]
pub(crate) struct Body(pub(crate) serde_json::Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::bad_request(format!("could not read the request body: {rejection}")))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Body(serde_json::Map::new()));
        }
        if !content_type.is_empty() && !content_type.contains("json") {
            return Err(ApiError::new(
                jhe_schemas::ErrorKind::InvalidInput,
                format!("Unsupported media type \"{content_type}\" in request; send application/json"),
            ));
        }
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::bad_request(format!("JSON parse error - {e}")))?;
        match underscoreize(value) {
            Value::Object(map) => Ok(Body(map)),
            _ => Err(ApiError::bad_request("the request body must be a JSON object")),
        }
    }
}

impl Body {
    pub(crate) fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// An optional integer field that may arrive as a number or a numeric string.
    pub(crate) fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(format!("{}: expected an integer", camelize_key(key)))),
            Some(Value::String(s)) if !s.trim().is_empty() => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("{}: `{s}` is not an integer", camelize_key(key)))),
            Some(Value::String(_)) => Ok(None),
            Some(_) => Err(ApiError::bad_request(format!("{}: expected an integer", camelize_key(key)))),
        }
    }

    pub(crate) fn required_int(&self, key: &str, camel_name: &str) -> ApiResult<i64> {
        self.int(key)?.ok_or_else(|| ApiError::bad_request(format!("{camel_name}: this field is required")))
    }

    /// An optional string field; `Some(None)` when the field is present and null.
    pub(crate) fn string(&self, key: &str) -> ApiResult<Option<Option<String>>> {
        match self.0.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(ApiError::bad_request(format!("{}: expected a string", camelize_key(key)))),
        }
    }

    /// A required, non-blank string field.
    pub(crate) fn required_string(&self, key: &str) -> ApiResult<String> {
        match self.string(key)? {
            Some(Some(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
            _ => Err(ApiError::bad_request(format!("{}: this field is required", camelize_key(key)))),
        }
    }

    /// Rejects keys outside `allowed` with a message listing them (the reference answers those with a 500).
    pub(crate) fn only(&self, allowed: &[&str]) -> ApiResult<()> {
        let unknown: Vec<String> =
            self.0.keys().filter(|k| !allowed.contains(&k.as_str())).map(|k| camelize_key(k)).collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            let allowed: Vec<String> = allowed.iter().map(|k| camelize_key(k)).collect();
            Err(ApiError::bad_request(format!(
                "unknown field(s) {}; accepted fields are {}",
                unknown.join(", "),
                allowed.join(", ")
            )))
        }
    }
}

/// An integer id from the path; anything else is a 404, as for a missing row.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Id(pub(crate) i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw): axum::extract::Path<String> =
            axum::extract::Path::from_request_parts(parts, state).await.map_err(|_| ApiError::not_found("object"))?;
        raw.parse().map(Id).map_err(|_| ApiError::not_found("object"))
    }
}

/// A REST response: the value camelized as the reference's renderer does.
pub(crate) fn rest<T: Serialize>(status: StatusCode, value: &T) -> ApiResult<Response> {
    let value = serde_json::to_value(value).map_err(|e| {
        tracing::error!(error = %e, "response serialization failed");
        ApiError::internal()
    })?;
    Ok((status, axum::Json(camelize(value))).into_response())
}

pub(crate) fn ok<T: Serialize>(value: &T) -> ApiResult<Response> {
    rest(StatusCode::OK, value)
}

pub(crate) fn created<T: Serialize>(value: &T) -> ApiResult<Response> {
    rest(StatusCode::CREATED, value)
}

pub(crate) fn no_content() -> ApiResult<Response> {
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// 201 with an empty body, as the reference answers some link creations.
pub(crate) fn created_empty() -> ApiResult<Response> {
    Ok(StatusCode::CREATED.into_response())
}

/// An id inside a JSON body: a number, or a string holding one.
pub(crate) fn id_value(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The id a link request names (`{"dataSourceId": 70001}`): under one of `keys` in the body (the only keys it may
/// have), else, when `url` is given, in the query string for clients that cannot send a DELETE body. `name` is the
/// field's wire name in messages.
pub(crate) fn link_id(body: &Body, url: Option<&RequestUrl>, keys: &[&str], name: &str) -> ApiResult<i64> {
    body.only(keys)?;
    if let Some(value) = keys.iter().find_map(|key| body.0.get(*key).filter(|value| !value.is_null())) {
        return id_value(value).ok_or_else(|| ApiError::bad_request(format!("{name}: `{value}` is not an id")));
    }
    match url.and_then(|url| keys.iter().find_map(|key| url.param(key))) {
        Some(text) => text.trim().parse().map_err(|_| ApiError::bad_request(format!("{name}: `{text}` is not an id"))),
        None => Err(ApiError::bad_request(format!("{name}: this field is required"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn forwarded_host_and_proto_count_only_behind_a_trusted_proxy() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("jhe.internal:8000"));
        headers.insert("x-forwarded-host", HeaderValue::from_static("evil.example, jhe.example.org"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(external_base(&headers, None, false), "http://jhe.internal:8000");
        assert_eq!(external_base(&headers, None, true), "https://evil.example");
        assert_eq!(external_base(&headers, Some("https://jhe.example.org/"), true), "https://jhe.example.org");
    }
}
