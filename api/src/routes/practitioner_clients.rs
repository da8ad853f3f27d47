//! `/api/v1/practitioner_clients`: a practitioner's own API keys (confidential client-credentials clients whose
//! tokens act as the practitioner, jhe-compat §5.5, §7.5). Each practitioner sees only their own keys; anyone
//! else's id is a 404.
//!
//! Deliberate difference from the reference: it stores the client secret in clear so that every read can show
//! `key` = base64(`client_id:client_secret`) again. jhe stores only an argon2 hash of the secret, so `key` is
//! returned once, in the answer to the POST that creates it, and is `null` in every later read. A lost key is
//! replaced by creating a new one and deleting the old.

use super::clients::{required, text_field};
use crate::AppState;
use crate::access::require_practitioner;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, no_content, ok};
use crate::paging::{fixed_page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use jhe_catalog::Caller;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, retrieve, update, destroy))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/practitioner_clients", get(list).post(create))
        // no PUT: the label is the only thing that can change
        .route("/practitioner_clients/{id}", get(retrieve).patch(update).delete(destroy))
}

/// Fields a client may send; the read-only ones of the output shape are accepted and ignored.
const FIELDS: &[&str] = &["label", "id", "created", "name", "key"];
const MAX_LABEL_LENGTH: usize = 200;

/// The caller's practitioner id: API keys belong to practitioners.
fn own_practitioner(caller: &Caller) -> ApiResult<i64> {
    require_practitioner(caller)?;
    caller
        .practitioner_id
        .ok_or_else(|| ApiError::forbidden("API keys belong to a practitioner profile, and this account has none."))
}

fn label(body: &Body) -> ApiResult<String> {
    body.only(FIELDS)?;
    let label = required(text_field(body, &["label"], "label")?, "label")?;
    if label.chars().count() > MAX_LABEL_LENGTH {
        return Err(ApiError::bad_request(format!("label: at most {MAX_LABEL_LENGTH} characters")));
    }
    Ok(label)
}

#[utoipa::path(get, path = "/api/v1/practitioner_clients", tag = "practitioner_clients",
    params(("page" = Option<u32>, Query, description = "1-based page of 1000")),
    responses((status = 200, description = "paged own API keys `{id, label, created, name, key: null}`"),
              (status = 401, description = "no token"), (status = 403, description = "not a practitioner")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    let practitioner_id = own_practitioner(&caller)?;
    let page = fixed_page_request(&url)?;
    paged(&url, page, jhe_catalog::list_practitioner_clients(&state.pool, practitioner_id, page).await?)
}

#[utoipa::path(get, path = "/api/v1/practitioner_clients/{id}", tag = "practitioner_clients",
    params(("id" = i64, Path, description = "API key id")),
    responses((status = 200, description = "the API key (`key` is null: the secret is not stored)"),
              (status = 403, description = "not a practitioner"), (status = 404, description = "no such key of the caller")))]
async fn retrieve(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    let practitioner_id = own_practitioner(&caller)?;
    ok(&jhe_catalog::get_practitioner_client(&state.pool, practitioner_id, id).await?)
}

#[utoipa::path(post, path = "/api/v1/practitioner_clients", tag = "practitioner_clients",
    request_body(content = serde_json::Value, description = "`{\"label\"}`"),
    responses((status = 201, description = "the new API key with `key` = base64(client_id:client_secret), shown only here"),
              (status = 400, description = "missing label"), (status = 403, description = "not a practitioner")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, body: Body) -> ApiResult<Response> {
    let practitioner_id = own_practitioner(&caller)?;
    let label = label(&body)?;
    let name = format!("API key of {}", caller.email);
    created(
        &jhe_catalog::create_practitioner_client(&state.pool, practitioner_id, caller.user_id, &label, &name).await?,
    )
}

#[utoipa::path(patch, path = "/api/v1/practitioner_clients/{id}", tag = "practitioner_clients",
    params(("id" = i64, Path, description = "API key id")),
    request_body(content = serde_json::Value, description = "`{\"label\"}`"),
    responses((status = 200, description = "the relabelled API key"), (status = 400, description = "missing or blank label"),
              (status = 403, description = "not a practitioner"), (status = 404, description = "no such key of the caller")))]
async fn update(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    let practitioner_id = own_practitioner(&caller)?;
    let label = label(&body)?;
    ok(&jhe_catalog::update_practitioner_client(&state.pool, practitioner_id, id, &label).await?)
}

#[utoipa::path(delete, path = "/api/v1/practitioner_clients/{id}", tag = "practitioner_clients",
    params(("id" = i64, Path, description = "API key id")),
    responses((status = 204, description = "the key's OAuth client and its tokens are deleted"),
              (status = 403, description = "not a practitioner"), (status = 404, description = "no such key of the caller")))]
async fn destroy(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    let practitioner_id = own_practitioner(&caller)?;
    jhe_catalog::delete_practitioner_client(&state.pool, practitioner_id, id).await?;
    no_content()
}
