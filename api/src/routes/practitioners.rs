//! `/api/v1/practitioners`: practitioner accounts (superuser only).

use crate::AppState;
use crate::access::require_superuser;
use crate::error::ApiResult;
use crate::extract::{Auth, Body, Id, RequestUrl, created, no_content, ok};
use crate::paging::{MAX_PAGE_SIZE, page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, retrieve, update, destroy))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/practitioners", get(list).post(create))
        .route("/practitioners/{id}", get(retrieve).patch(update).put(update).delete(destroy))
}

const FIELDS: &[&str] =
    &["telecom_email", "name_family", "name_given", "organization_id", "id", "jhe_user_id", "organizations"];

#[utoipa::path(get, path = "/api/v1/practitioners", tag = "practitioners", summary = "List practitioners (superuser)",
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_superuser(&caller)?;
    let page = page_request(&url, MAX_PAGE_SIZE)?;
    let practitioners = jhe_catalog::list_practitioners(&state.pool, page).await?;
    paged(&url, page, practitioners)
}

#[utoipa::path(get, path = "/api/v1/practitioners/{id}", tag = "practitioners", summary = "A practitioner (superuser)",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn retrieve(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_superuser(&caller)?;
    ok(&jhe_catalog::get_practitioner(&state.pool, id).await?)
}

#[utoipa::path(post, path = "/api/v1/practitioners", tag = "practitioners", summary = "Create a practitioner (superuser)",
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 201, description = "created"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 409, description = "conflicts with what is stored")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, body: Body) -> ApiResult<Response> {
    require_superuser(&caller)?;
    body.only(FIELDS)?;
    let email = body.required_string("telecom_email")?;
    super::users::validate_email(&email)?;
    let practitioner = jhe_catalog::create_practitioner(
        &state.pool,
        &email,
        body.string("name_family")?.flatten().as_deref(),
        body.string("name_given")?.flatten().as_deref(),
        body.int("organization_id")?,
    )
    .await?;
    created(&practitioner)
}

#[utoipa::path(patch, path = "/api/v1/practitioners/{id}", tag = "practitioners", summary = "Update a practitioner's names (superuser); PUT is accepted too",
    params(("id" = i64, Path, description = "the id")),
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn update(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    require_superuser(&caller)?;
    body.only(FIELDS)?;
    let practitioner = jhe_catalog::update_practitioner(
        &state.pool,
        id,
        body.string("name_family")?.flatten().as_deref(),
        body.string("name_given")?.flatten().as_deref(),
    )
    .await?;
    ok(&practitioner)
}

#[utoipa::path(delete, path = "/api/v1/practitioners/{id}", tag = "practitioners", summary = "Delete a practitioner (superuser)",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 204, description = "done, no body"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn destroy(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_superuser(&caller)?;
    jhe_catalog::delete_practitioner(&state.pool, id).await?;
    no_content()
}
