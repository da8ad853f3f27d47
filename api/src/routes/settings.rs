//! `/api/v1/jhe_settings`: site settings (`site.url`, `auth.*`, …), superusers only. Values are written as
//! `{"key", "valueType", "value"}` and read back as `resolvedValue`.

use super::clients::{required, text_field};
use crate::AppState;
use crate::access::require_superuser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, no_content, ok};
use crate::paging::{fixed_page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use jhe_catalog::{SettingValue, coerce_setting_value};
use jhe_schemas::SettingValueType;
use serde_json::Value;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, retrieve, update, destroy))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/jhe_settings", get(list).post(create))
        .route("/jhe_settings/{id}", get(retrieve).patch(update).put(update).delete(destroy))
}

/// Fields a client may send; the read-only ones of the output shape are accepted and ignored.
const FIELDS: &[&str] = &["key", "value_type", "value", "id", "resolved_value", "last_updated"];

fn key(body: &Body) -> ApiResult<Option<String>> {
    let key = text_field(body, &["key"], "key")?;
    if let Some(key) = &key
        && (key.chars().any(char::is_whitespace) || key.len() > 255)
    {
        return Err(ApiError::bad_request(format!(
            "key: `{key}` may not contain spaces and has at most 255 characters"
        )));
    }
    Ok(key)
}

fn value_type(body: &Body) -> ApiResult<Option<SettingValueType>> {
    text_field(body, &["value_type"], "valueType")?
        .map(|code| SettingValueType::parse(&code).map_err(|e| ApiError::bad_request(format!("valueType: {e}"))))
        .transpose()
}

/// `value` as sent; null counts as absent, as in the reference.
fn raw_value(body: &Body) -> Option<&Value> {
    body.0.get("value").filter(|value| !value.is_null())
}

#[utoipa::path(get, path = "/api/v1/jhe_settings", tag = "jhe_settings",
    params(("page" = Option<u32>, Query, description = "1-based page of 1000")),
    responses((status = 200, description = "paged settings `{id, key, valueType, resolvedValue, lastUpdated}` by key"),
              (status = 401, description = "no token"), (status = 403, description = "not a superuser")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_superuser(&caller)?;
    let page = fixed_page_request(&url)?;
    paged(&url, page, jhe_catalog::list_settings(&state.pool, page).await?)
}

#[utoipa::path(get, path = "/api/v1/jhe_settings/{id}", tag = "jhe_settings",
    params(("id" = i64, Path, description = "setting id")),
    responses((status = 200, description = "the setting"), (status = 403, description = "not a superuser"),
              (status = 404, description = "no such setting")))]
async fn retrieve(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_superuser(&caller)?;
    ok(&jhe_catalog::get_setting(&state.pool, id).await?)
}

#[utoipa::path(post, path = "/api/v1/jhe_settings", tag = "jhe_settings",
    request_body(content = serde_json::Value, description = "`{\"key\", \"valueType\": string|int|bool|float|json, \"value\"}`; the value is coerced to the type"),
    responses((status = 201, description = "the new setting"), (status = 400, description = "a missing field, an unknown type or a value that does not fit it"),
              (status = 403, description = "not a superuser"), (status = 409, description = "the key exists")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, body: Body) -> ApiResult<Response> {
    require_superuser(&caller)?;
    body.only(FIELDS)?;
    let key = required(key(&body)?, "key")?;
    let value_type = required(value_type(&body)?, "valueType")?;
    let value = coerce_setting_value(value_type, required(raw_value(&body), "value")?)?;
    created(&jhe_catalog::create_setting(&state.pool, &key, &value).await?)
}

#[utoipa::path(method(patch, put), path = "/api/v1/jhe_settings/{id}", tag = "jhe_settings",
    params(("id" = i64, Path, description = "setting id")),
    request_body(content = serde_json::Value, description = "`{\"key\"?, \"valueType\"?, \"value\"?}`; a new valueType needs a value"),
    responses((status = 200, description = "the changed setting"), (status = 400, description = "an unknown type or a value that does not fit it"),
              (status = 403, description = "not a superuser"), (status = 404, description = "no such setting"),
              (status = 409, description = "the new key exists")))]
async fn update(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    require_superuser(&caller)?;
    let current = jhe_catalog::get_setting(&state.pool, id).await?;
    body.only(FIELDS)?;
    let key = key(&body)?;
    let value: Option<SettingValue> = match (value_type(&body)?, raw_value(&body)) {
        (Some(_), None) => return Err(ApiError::bad_request("value: required when changing valueType")),
        (Some(value_type), Some(value)) => Some(coerce_setting_value(value_type, value)?),
        (None, Some(value)) => {
            let stored_type = SettingValueType::parse(&current.value_type).map_err(|_| ApiError::internal())?;
            Some(coerce_setting_value(stored_type, value)?)
        }
        (None, None) => None,
    };
    ok(&jhe_catalog::update_setting(&state.pool, id, key.as_deref(), value.as_ref()).await?)
}

#[utoipa::path(delete, path = "/api/v1/jhe_settings/{id}", tag = "jhe_settings",
    params(("id" = i64, Path, description = "setting id")),
    responses((status = 204, description = "deleted"), (status = 403, description = "not a superuser"),
              (status = 404, description = "no such setting")))]
async fn destroy(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_superuser(&caller)?;
    jhe_catalog::delete_setting(&state.pool, id).await?;
    no_content()
}
