//! `/api/v1/organizations`: the organization tree and practitioners' roles in it.

use crate::AppState;
use crate::access::{current_user_role, require_member, require_permission, require_practitioner};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, no_content, ok, rest};
use crate::paging::{DEFAULT_PAGE_SIZE, page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use jhe_catalog::{Caller, Organization, ROOT_ORGANIZATION_ID};
use jhe_schemas::{ORGANIZATION_TYPES, Permission, Role, organization_type_label};

#[derive(utoipa::OpenApi)]
#[openapi(paths(types, list, create, retrieve, update, destroy, tree, users, add_user, remove_user))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/organizations", get(list).post(create))
        .route("/organizations/types", get(types))
        .route("/organizations/{id}", get(retrieve).patch(update).put(update).delete(destroy))
        .route("/organizations/{id}/tree", get(tree))
        .route("/organizations/{id}/users", get(users))
        .route("/organizations/{id}/user", post(add_user))
        .route("/organizations/{id}/remove_user", delete(remove_user))
}

fn with_role(caller: &Caller, mut organization: Organization) -> Organization {
    organization.current_user_role = current_user_role(caller, organization.id);
    organization.children =
        std::mem::take(&mut organization.children).into_iter().map(|child| with_role(caller, child)).collect();
    organization
}

#[utoipa::path(get, path = "/api/v1/organizations", tag = "organizations", summary = "List organizations (filter `partOf`)",
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    let page = page_request(&url, DEFAULT_PAGE_SIZE)?;
    let part_of = url.int_param("part_of")?;
    let mut organizations = jhe_catalog::list_organizations(&state.pool, part_of, page).await?;
    organizations.items = organizations.items.into_iter().map(|o| with_role(&caller, o)).collect();
    paged(&url, page, organizations)
}

#[utoipa::path(get, path = "/api/v1/organizations/types", tag = "organizations",
    responses((status = 200, description = "organization type codes and labels")))]
async fn types(Auth(_caller): Auth) -> ApiResult<Response> {
    let map: serde_json::Map<String, serde_json::Value> =
        ORGANIZATION_TYPES.iter().map(|(code, label)| ((*code).to_owned(), (*label).into())).collect();
    // type codes are data, not keys to camelize
    Ok(axum::response::IntoResponse::into_response(axum::Json(map)))
}

#[utoipa::path(get, path = "/api/v1/organizations/{id}", tag = "organizations", summary = "An organization",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token"), (status = 404, description = "not found")))]
async fn retrieve(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    ok(&with_role(&caller, jhe_catalog::get_organization(&state.pool, id).await?))
}

fn parse_type(body: &Body, required: bool) -> ApiResult<Option<String>> {
    let kind = if required { Some(body.required_string("type")?) } else { body.string("type")?.flatten() };
    match kind {
        Some(kind) if kind == "root" => {
            Err(ApiError::bad_request("type: `root` is reserved for the ROOT organization"))
        }
        Some(kind) if organization_type_label(&kind).is_none() => {
            let codes: Vec<&str> = ORGANIZATION_TYPES.iter().skip(1).map(|(c, _)| *c).collect();
            Err(ApiError::bad_request(format!(
                "type: `{kind}` is not a valid choice; expected one of {}",
                codes.join(", ")
            )))
        }
        other => Ok(other),
    }
}

#[utoipa::path(post, path = "/api/v1/organizations", tag = "organizations", summary = "Create an organization (superuser for top level, manager of the parent otherwise)",
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 201, description = "created"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, body: Body) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    body.only(&["id", "name", "type", "part_of", "children", "current_user_role"])?;
    let part_of = body.int("part_of")?.unwrap_or(ROOT_ORGANIZATION_ID);
    if part_of == ROOT_ORGANIZATION_ID && !caller.is_superuser {
        return Err(ApiError::forbidden("You don't have permission to create a top-level organization."));
    }
    if part_of != ROOT_ORGANIZATION_ID {
        jhe_catalog::get_organization(&state.pool, part_of)
            .await
            .map_err(|_| ApiError::bad_request(format!("partOf: organization {part_of} does not exist")))?;
        require_permission(&caller, part_of, Permission::OrganizationManageForPractitioners)?;
    }
    let name = body.required_string("name")?;
    let kind = parse_type(&body, true)?.unwrap_or_default();
    let organization =
        jhe_catalog::create_organization(&state.pool, &name, &kind, part_of, caller.practitioner_id).await?;
    let mut caller = caller;
    if let Some(_practitioner) = caller.practitioner_id.filter(|_| part_of != ROOT_ORGANIZATION_ID) {
        caller.memberships.push((organization.id, Role::Manager));
    }
    created(&with_role(&caller, organization))
}

/// Updating or deleting an organization needs a manager of its parent, or of itself when it is top-level.
async fn require_manage(state: &AppState, caller: &Caller, id: i64) -> ApiResult<Organization> {
    let organization = jhe_catalog::get_organization(&state.pool, id).await?;
    if id == ROOT_ORGANIZATION_ID {
        return Err(ApiError::forbidden("The ROOT organization cannot be changed."));
    }
    let governing = match organization.part_of {
        Some(parent) if parent != ROOT_ORGANIZATION_ID => parent,
        _ => id,
    };
    require_permission(caller, governing, Permission::OrganizationManageForPractitioners)?;
    Ok(organization)
}

#[utoipa::path(patch, path = "/api/v1/organizations/{id}", tag = "organizations", summary = "Update an organization (manager of the parent); PUT is accepted too",
    params(("id" = i64, Path, description = "the id")),
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn update(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    let current = require_manage(&state, &caller, id).await?;
    body.only(&["id", "name", "type", "part_of", "children", "current_user_role"])?;
    if let Some(part_of) = body.int("part_of")?
        && Some(part_of) != current.part_of
    {
        return Err(ApiError::bad_request("partOf: an organization cannot be moved to another parent"));
    }
    let name = match body.string("name")? {
        Some(Some(name)) if !name.trim().is_empty() => Some(name.trim().to_owned()),
        Some(_) => return Err(ApiError::bad_request("name: may not be blank")),
        None => None,
    };
    let kind = parse_type(&body, false)?;
    let organization = jhe_catalog::update_organization(&state.pool, id, name.as_deref(), kind.as_deref()).await?;
    ok(&with_role(&caller, organization))
}

#[utoipa::path(delete, path = "/api/v1/organizations/{id}", tag = "organizations", summary = "Delete an organization with its sub-organizations and studies",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 204, description = "done, no body"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn destroy(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_manage(&state, &caller, id).await?;
    jhe_catalog::delete_organization(&state.pool, id).await?;
    no_content()
}

#[utoipa::path(get, path = "/api/v1/organizations/{id}/tree", tag = "organizations", summary = "An organization with all its descendants",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token"), (status = 404, description = "not found")))]
async fn tree(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    ok(&with_role(&caller, jhe_catalog::organization_tree(&state.pool, id).await?))
}

#[utoipa::path(get, path = "/api/v1/organizations/{id}/users", tag = "organizations", summary = "Practitioners of an organization with their roles",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn users(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    jhe_catalog::get_organization(&state.pool, id).await?;
    require_member(&caller, id, "You are not a member of this organization.")?;
    ok(&jhe_catalog::organization_users(&state.pool, id).await?)
}

#[utoipa::path(post, path = "/api/v1/organizations/{id}/user", tag = "organizations", summary = "Give a practitioner a role in the organization (manager)",
    params(("id" = i64, Path, description = "the id")),
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 200, description = "success"), (status = 201, description = "created"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn add_user(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    jhe_catalog::get_organization(&state.pool, id).await?;
    require_permission(&caller, id, Permission::OrganizationManageForPractitioners)?;
    let user_id = body.required_int("jhe_user_id", "jheUserId")?;
    let role = match body.string("organization_partitioner_role")?.flatten() {
        Some(role) => {
            role.parse::<Role>().map_err(|e| ApiError::bad_request(format!("organizationPartitionerRole: {e}")))?
        }
        None => Role::Member,
    };
    let (membership, is_new) = jhe_catalog::upsert_membership(&state.pool, id, user_id, role).await?;
    rest(if is_new { StatusCode::CREATED } else { StatusCode::OK }, &membership)
}

#[utoipa::path(delete, path = "/api/v1/organizations/{id}/remove_user", tag = "organizations", summary = "Remove a practitioner from the organization (manager)",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 204, description = "done, no body"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn remove_user(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    jhe_catalog::get_organization(&state.pool, id).await?;
    require_permission(&caller, id, Permission::OrganizationManageForPractitioners)?;
    let user_id = body.required_int("jhe_user_id", "jheUserId")?;
    jhe_catalog::remove_membership(&state.pool, id, user_id).await?;
    no_content()
}
