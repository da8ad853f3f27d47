//! `/api/v1/users`: accounts. Users read and edit only themselves unless superuser (closing jhe-compat §13.2).

use crate::AppState;
use crate::access::{current_user_role, require_practitioner, require_superuser};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, no_content, ok};
use crate::paging::{DEFAULT_PAGE_SIZE, page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use jhe_catalog::{NewUser, UserChanges};
use jhe_schemas::UserType;
use serde_json::json;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, profile, organizations, search_by_email, retrieve, update, destroy))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/users", get(list).post(create))
        .route("/users/profile", get(profile))
        .route("/users/organizations", get(organizations))
        .route("/users/search_by_email", get(search_by_email))
        .route("/users/{id}", get(retrieve).patch(update).put(update).delete(destroy))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", summary = "List users (superusers: all; others: themselves)",
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    let page = page_request(&url, DEFAULT_PAGE_SIZE)?;
    let only_user = (!caller.is_superuser).then_some(caller.user_id);
    let users = jhe_catalog::list_users(&state.pool, url.param("email"), only_user, page).await?;
    paged(&url, page, users)
}

#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users", summary = "A user (themselves or superuser)",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn retrieve(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    if id != caller.user_id && !caller.is_superuser {
        return Err(ApiError::permission_denied());
    }
    ok(&jhe_catalog::get_user(&state.pool, id).await?)
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", summary = "Create a user (superuser)",
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 201, description = "created"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 409, description = "conflicts with what is stored")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, body: Body) -> ApiResult<Response> {
    require_superuser(&caller)?;
    body.only(&["email", "password", "first_name", "last_name", "user_type", "is_superuser"])?;
    let email = body.required_string("email")?;
    validate_email(&email)?;
    let user_type = match body.string("user_type")?.flatten() {
        Some(kind) => Some(UserType::parse(&kind).map_err(|e| ApiError::bad_request(format!("userType: {e}")))?),
        None => None,
    };
    let new = NewUser {
        email,
        password: body.string("password")?.flatten(),
        first_name: body.string("first_name")?.flatten().unwrap_or_default(),
        last_name: body.string("last_name")?.flatten().unwrap_or_default(),
        user_type: user_type.map(|t| t.as_str().to_owned()),
        is_superuser: body.0.get("is_superuser").and_then(|v| v.as_bool()).unwrap_or(false),
    };
    created(&jhe_catalog::create_user(&state.pool, &new).await?)
}

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", summary = "Update a user (themselves or superuser); PUT is accepted too",
    params(("id" = i64, Path, description = "the id")),
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn update(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    if id != caller.user_id && !caller.is_superuser {
        return Err(ApiError::permission_denied());
    }
    body.only(&["id", "email", "first_name", "last_name", "password", "is_superuser", "user_type", "patient"])?;
    let is_superuser = match body.0.get("is_superuser") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Bool(flag)) => Some(*flag),
        Some(_) => return Err(ApiError::bad_request("isSuperuser: expected true or false")),
    };
    if is_superuser.is_some() && !caller.is_superuser {
        return Err(ApiError::forbidden("Only a superuser can change isSuperuser."));
    }
    let changes = UserChanges {
        first_name: body.string("first_name")?.flatten(),
        last_name: body.string("last_name")?.flatten(),
        is_superuser,
        password: body.string("password")?.flatten(),
    };
    ok(&jhe_catalog::update_user(&state.pool, id, &changes).await?)
}

#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users", summary = "Delete a user (superuser)",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 204, description = "done, no body"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn destroy(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_superuser(&caller)?;
    if id == caller.user_id {
        return Err(ApiError::bad_request("you cannot delete your own account"));
    }
    jhe_catalog::delete_user(&state.pool, id).await?;
    no_content()
}

/// The caller's own profile: practitioners with their UI settings; patients without PHI.
#[utoipa::path(get, path = "/api/v1/users/profile", tag = "users", summary = "The caller's profile",
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token")))]
async fn profile(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    let user = jhe_catalog::get_user(&state.pool, caller.user_id).await?;
    if caller.is_patient() && !caller.is_practitioner() {
        let patient = user.patient.as_ref().map(|p| {
            json!({"id": p.id, "jhe_user_id": p.jhe_user_id, "identifiers": p.identifiers, "organizations": p.organizations})
        });
        return ok(&json!({"id": user.id, "patient": patient, "user_type": "patient", "is_superuser": false}));
    }
    let settings = match caller.practitioner_id {
        Some(practitioner_id) => jhe_catalog::practitioner_settings(&state.pool, practitioner_id).await?,
        None => json!({}),
    };
    let mut profile = serde_json::to_value(&user).map_err(|_| ApiError::internal())?;
    if let Some(object) = profile.as_object_mut() {
        object.insert("settings".into(), settings);
    }
    ok(&profile)
}

#[utoipa::path(get, path = "/api/v1/users/organizations", tag = "users", summary = "Organizations the caller is a practitioner member of",
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token")))]
async fn organizations(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    let mut organizations = jhe_catalog::organizations_of_user(&state.pool, caller.user_id).await?;
    for organization in &mut organizations {
        organization.current_user_role = current_user_role(&caller, organization.id);
    }
    ok(&organizations)
}

#[utoipa::path(get, path = "/api/v1/users/search_by_email", tag = "users", summary = "Find a user by email (practitioners)",
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this")))]
async fn search_by_email(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let Some(email) = url.param("email").filter(|e| !e.trim().is_empty()) else {
        return Err(ApiError::bad_request("email: this query parameter is required"));
    };
    match jhe_catalog::find_user_by_email(&state.pool, email.trim()).await? {
        Some(user) => ok(&user),
        // the web UI tests `id === undefined` to offer creating the account
        None => ok(&json!({"email": email.trim(), "first_name": "", "last_name": "", "patient": null,
                           "user_type": null, "is_superuser": false})),
    }
}

pub(crate) fn validate_email(email: &str) -> ApiResult<()> {
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if valid { Ok(()) } else { Err(ApiError::bad_request(format!("`{email}` is not a valid email address"))) }
}
