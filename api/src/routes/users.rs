//! `/api/v1/users`: accounts. Users read and edit only themselves unless superuser (closing jhe-compat §13.2).

use super::oauth::{ClientAddr, PasswordChangeError, PasswordProof, change_password};
use crate::AppState;
use crate::access::{current_user_role, require_practitioner, require_superuser};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, no_content, ok};
use crate::paging::{DEFAULT_PAGE_SIZE, page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use jhe_catalog::{Caller, FoundUser, KeepSignedIn, NewUser, UserChanges};
use jhe_schemas::{ErrorKind, UserType};
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

#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users", summary = "Update a user (themselves or superuser); PUT is accepted too. A new `password` follows the password form's rules and ends every session and token of the user but the caller's own token; for one's own password `currentPassword` is required (a superuser setting another user's password needs none)",
    params(("id" = i64, Path, description = "the id")),
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 200, description = "success"), (status = 400, description = "invalid input (a missing or wrong `currentPassword`, a weak `password`); `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found"), (status = 429, description = "too many password changes from this address; try again later")))]
async fn update(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    client: ClientAddr,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    if id != caller.user_id && !caller.is_superuser {
        return Err(ApiError::permission_denied());
    }
    body.only(&[
        "id",
        "email",
        "first_name",
        "last_name",
        "password",
        "current_password",
        "is_superuser",
        "user_type",
        "patient",
    ])?;
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
    };
    // the password first: when it is refused, nothing has changed
    if let Some(password) = body.string("password")?.flatten() {
        let current = body.string("current_password")?.flatten();
        set_password(&state, &caller, id, &password, current.as_deref(), (client, &headers)).await?;
    }
    ok(&jhe_catalog::update_user(&state.pool, id, &changes).await?)
}

/// A new password for user `id` by the password form's rule ([`change_password`]). A user changing their own
/// proves the current password and keeps the bearer token of this request (the app that made the change stays
/// signed in; the token's refresh token is revoked with the others, so it lasts until it expires). A superuser
/// setting another user's password needs no current password; every session and token of that user ends.
async fn set_password(
    state: &AppState,
    caller: &Caller,
    id: i64,
    password: &str,
    current: Option<&str>,
    client: (ClientAddr, &HeaderMap),
) -> ApiResult<()> {
    let own = id == caller.user_id;
    let proof = match (own, caller.is_superuser) {
        (true, _) => PasswordProof::CurrentPassword(current),
        (false, true) => PasswordProof::Superuser,
        (false, false) => return Err(ApiError::permission_denied()),
    };
    let token = bearer_sha256(client.1);
    let keep = match &token {
        Some(sha256) if own => KeepSignedIn::AccessToken(sha256),
        _ => KeepSignedIn::Nothing,
    };
    change_password(state, client, id, proof, password, keep).await.map_err(|error| match error {
        PasswordChangeError::Budget(refusal) => ApiError::new(ErrorKind::TooManyRequests, refusal.message),
        PasswordChangeError::WrongCurrentPassword if current.is_none_or(str::is_empty) => {
            ApiError::bad_request("currentPassword: your current password is required to change your password")
        }
        PasswordChangeError::WrongCurrentPassword => {
            ApiError::bad_request("currentPassword: the current password is not correct")
        }
        PasswordChangeError::Weak(problem) => ApiError::bad_request(format!("password: {problem}")),
        PasswordChangeError::NoAccount => jhe_catalog::Error::NotFound { entity: "JheUser" }.into(),
        PasswordChangeError::Failed(error) => error.into(),
    })
}

/// sha256 of the request's bearer token (which the `Auth` extractor has accepted).
fn bearer_sha256(headers: &HeaderMap) -> Option<[u8; 32]> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
    Some(jhe_catalog::token_sha256(token))
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

#[utoipa::path(get, path = "/api/v1/users/search_by_email", tag = "users", summary = "Find a user by email (practitioners). A patient outside the caller's organizations is only said to exist: `id` and the email asked for, no names, no patient record; no such user: an object without `id`",
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this")))]
async fn search_by_email(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let Some(email) = url.param("email").map(str::trim).filter(|e| !e.is_empty()) else {
        return Err(ApiError::bad_request("email: this query parameter is required"));
    };
    // the scope of `patients/global_lookup`: patients are described in the caller's organizations only
    let organization_ids = caller.organization_ids();
    let visible_in = (!caller.is_superuser).then_some(organization_ids.as_slice());
    match jhe_catalog::find_user_by_email(&state.pool, email, visible_in).await? {
        Some(FoundUser::Described(user)) => ok(&user),
        // the web UI needs the id to add a practitioner to an organization, nothing else
        Some(FoundUser::Exists { id }) => ok(&json!({"id": id, "email": email, "first_name": "", "last_name": "",
                                                     "patient": null, "user_type": null, "is_superuser": false})),
        // the web UI tests `id === undefined` to offer creating the account
        None => ok(&json!({"email": email, "first_name": "", "last_name": "", "patient": null,
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
