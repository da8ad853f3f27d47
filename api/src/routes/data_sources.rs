//! `/api/v1/data_sources`: the devices and apps observations come from, and the scope codes each supports.
//! Practitioners read them; only superusers change them (`data_source.manage`).

use crate::AppState;
use crate::access::{require_practitioner, require_superuser};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, link_id, no_content, ok};
use crate::paging::{DEFAULT_PAGE_SIZE, page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use jhe_schemas::DataSourceType;

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list,
    create,
    all_scopes,
    retrieve,
    update,
    destroy,
    supported_scopes,
    add_supported_scope,
    remove_supported_scope
))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/data_sources", get(list).post(create))
        .route("/data_sources/all_scopes", get(all_scopes))
        .route("/data_sources/{id}", get(retrieve).patch(update).put(update).delete(destroy))
        .route(
            "/data_sources/{id}/supported_scopes",
            get(supported_scopes).post(add_supported_scope).delete(remove_supported_scope),
        )
}

/// Fields a client may send; the read-only ones of the output shape are accepted and ignored.
const DATA_SOURCE_FIELDS: &[&str] = &["name", "type", "id", "supported_scopes"];

#[utoipa::path(get, path = "/api/v1/data_sources", tag = "data_sources",
    params(("page" = Option<u32>, Query, description = "1-based page"),
           ("pageSize" = Option<u32>, Query, description = "page size (default 20, max 1000)")),
    responses((status = 200, description = "paged data sources `{id, name, type, supportedScopes}` by name"),
              (status = 401, description = "no token"), (status = 403, description = "not a practitioner")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let page = page_request(&url, DEFAULT_PAGE_SIZE)?;
    paged(&url, page, jhe_catalog::list_data_sources(&state.pool, page).await?)
}

#[utoipa::path(get, path = "/api/v1/data_sources/{id}", tag = "data_sources",
    params(("id" = i64, Path, description = "data source id")),
    responses((status = 200, description = "the data source with its supported scopes"),
              (status = 403, description = "not a practitioner"), (status = 404, description = "no such data source")))]
async fn retrieve(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    ok(&jhe_catalog::get_data_source(&state.pool, id).await?)
}

/// `type` from the body: one of the data source type codes.
fn parse_type(body: &Body) -> ApiResult<Option<&'static str>> {
    match body.string("type")? {
        None | Some(None) => Ok(None),
        Some(Some(code)) => DataSourceType::parse(code.trim())
            .map(|kind| Some(kind.as_str()))
            .map_err(|e| ApiError::bad_request(format!("type: {e}"))),
    }
}

#[utoipa::path(post, path = "/api/v1/data_sources", tag = "data_sources",
    request_body(content = serde_json::Value, description = "`{\"name\", \"type\"}`; type is medical_device, personal_device (default) or patient_app"),
    responses((status = 201, description = "the new data source"), (status = 400, description = "missing name or unknown type"),
              (status = 403, description = "not a superuser")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, body: Body) -> ApiResult<Response> {
    require_superuser(&caller)?;
    body.only(DATA_SOURCE_FIELDS)?;
    let name = body.required_string("name")?;
    let kind = parse_type(&body)?.unwrap_or(DataSourceType::PersonalDevice.as_str());
    created(&jhe_catalog::create_data_source(&state.pool, &name, kind).await?)
}

#[utoipa::path(method(patch, put), path = "/api/v1/data_sources/{id}", tag = "data_sources",
    params(("id" = i64, Path, description = "data source id")),
    request_body(content = serde_json::Value, description = "`{\"name\"?, \"type\"?}`"),
    responses((status = 200, description = "the changed data source"), (status = 400, description = "blank name or unknown type"),
              (status = 403, description = "not a superuser"), (status = 404, description = "no such data source")))]
async fn update(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    require_superuser(&caller)?;
    body.only(DATA_SOURCE_FIELDS)?;
    let name = match body.string("name")? {
        None => None,
        Some(Some(name)) if !name.trim().is_empty() => Some(name.trim().to_owned()),
        Some(_) => return Err(ApiError::bad_request("name: may not be blank")),
    };
    let kind = parse_type(&body)?;
    ok(&jhe_catalog::update_data_source(&state.pool, id, name.as_deref(), kind).await?)
}

#[utoipa::path(delete, path = "/api/v1/data_sources/{id}", tag = "data_sources",
    params(("id" = i64, Path, description = "data source id")),
    responses((status = 204, description = "deleted with its supported scopes and client links"),
              (status = 403, description = "not a superuser"), (status = 404, description = "no such data source"),
              (status = 409, description = "a study still uses the data source; remove it from the study first")))]
async fn destroy(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_superuser(&caller)?;
    jhe_catalog::delete_data_source(&state.pool, id).await?;
    no_content()
}

#[utoipa::path(get, path = "/api/v1/data_sources/all_scopes", tag = "data_sources",
    responses((status = 200, description = "every scope code `{id, codingSystem, codingCode, text}` by text"),
              (status = 403, description = "not a practitioner")))]
async fn all_scopes(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    ok(&jhe_catalog::all_scope_codes(&state.pool).await?)
}

#[utoipa::path(get, path = "/api/v1/data_sources/{id}/supported_scopes", tag = "data_sources",
    params(("id" = i64, Path, description = "data source id")),
    responses((status = 200, description = "`[{id, dataSource, scopeCode}]`"),
              (status = 403, description = "not a practitioner"), (status = 404, description = "no such data source")))]
async fn supported_scopes(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    ok(&jhe_catalog::data_source_supported_scopes(&state.pool, id).await?)
}

#[utoipa::path(post, path = "/api/v1/data_sources/{id}/supported_scopes", tag = "data_sources",
    params(("id" = i64, Path, description = "data source id")),
    request_body(content = serde_json::Value, description = "`{\"scopeCodeId\"}`"),
    responses((status = 201, description = "the new `{id, dataSource, scopeCode}` row"),
              (status = 400, description = "missing or unknown scopeCodeId"), (status = 403, description = "not a superuser"),
              (status = 404, description = "no such data source"), (status = 409, description = "already supported")))]
async fn add_supported_scope(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    url: RequestUrl,
    body: Body,
) -> ApiResult<Response> {
    require_superuser(&caller)?;
    let code = link_id(&body, Some(&url), &["scope_code_id"], "scopeCodeId")?;
    created(&jhe_catalog::add_supported_scope(&state.pool, id, code).await?)
}

#[utoipa::path(delete, path = "/api/v1/data_sources/{id}/supported_scopes", tag = "data_sources",
    params(("id" = i64, Path, description = "data source id")),
    request_body(content = serde_json::Value, description = "`{\"scopeCodeId\"}` (or `?scopeCodeId=`)"),
    responses((status = 204, description = "no longer supported"), (status = 400, description = "missing scopeCodeId"),
              (status = 403, description = "not a superuser"), (status = 404, description = "no such data source or scope link")))]
async fn remove_supported_scope(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    url: RequestUrl,
    body: Body,
) -> ApiResult<Response> {
    require_superuser(&caller)?;
    let code = link_id(&body, Some(&url), &["scope_code_id"], "scopeCodeId")?;
    jhe_catalog::remove_supported_scope(&state.pool, id, code).await?;
    no_content()
}
