//! `/api/v1/patients/organization_requests` and `/api/v1/patients/me/organization_requests`: how a patient of
//! another organization joins the caller's. A practitioner may not add, see, invite or record consent for a
//! patient by id unless the patient is already in one of the practitioner's organizations; to bring in a patient
//! from elsewhere, a member or manager asks by the patient's exact email, and the patient accepts (or declines)
//! with their own login. The requester is shown the email they typed and the request's status, nothing of the
//! patient's record, until the patient accepts. Superusers may still add a patient directly
//! (`PATCH /patients/{id}/global_add_organization`).
//!
//! The patient's side is refused to tokens limited by SMART scopes (a patient app's invitation token included):
//! joining an organization is the patient's own decision, made with their own login.

use crate::AppState;
use crate::access::{require_permission, require_practitioner};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, no_content, ok};
use crate::paging::{DEFAULT_PAGE_SIZE, page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{delete, get, post};
use jhe_catalog::{Caller, RequestDecision};
use jhe_schemas::Permission;

#[derive(utoipa::OpenApi)]
#[openapi(paths(request, list, cancel, mine, accept, decline))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/patients/organization_requests", get(list).post(request))
        .route("/patients/organization_requests/{id}", delete(cancel))
        .route("/patients/me/organization_requests", get(mine))
        .route("/patients/me/organization_requests/{id}/accept", post(accept))
        .route("/patients/me/organization_requests/{id}/decline", post(decline))
}

#[utoipa::path(post, path = "/api/v1/patients/organization_requests", tag = "patients",
    summary = "Ask a patient of another organization, named by their exact email, to join `organizationId` (member or manager); nothing changes until the patient accepts",
    request_body(content = serde_json::Value, description = "`{\"organizationId\", \"telecomEmail\"}`"),
    responses((status = 201, description = "`{id, organization: {id, name}, requestedEmail, requestedBy, requestedAt, status: \"pending\", decidedAt}`; asking again answers the pending request"),
              (status = 400, description = "a missing field, an unknown organization, or no patient with this email"),
              (status = 403, description = "not a member or manager of the organization"),
              (status = 409, description = "the patient is already in the organization")))]
async fn request(State(state): State<AppState>, Auth(caller): Auth, body: Body) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    body.only(&["organization_id", "telecom_email"])?;
    let organization_id = body.required_int("organization_id", "organizationId")?;
    require_permission(&caller, organization_id, Permission::PatientManageForOrganization)?;
    let email = body.required_string("telecom_email")?;
    let email = email.trim();
    super::users::validate_email(email)?;
    let asked = jhe_catalog::request_patient_organization(&state.pool, organization_id, email, caller.user_id).await?;
    created(&asked)
}

#[utoipa::path(get, path = "/api/v1/patients/organization_requests", tag = "patients",
    summary = "Requests of the caller's organizations (superusers: all), newest first; `organizationId` narrows them",
    responses((status = 200, description = "paged requests"), (status = 403, description = "not a practitioner")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let page = page_request(&url, DEFAULT_PAGE_SIZE)?;
    let wanted = url.int_param("organization_id")?;
    let organization_ids: Option<Vec<i64>> = match (caller.is_superuser, wanted) {
        (true, None) => None,
        (true, Some(organization_id)) => Some(vec![organization_id]),
        (false, _) => Some(
            caller.organization_ids().into_iter().filter(|org| wanted.is_none_or(|wanted| wanted == *org)).collect(),
        ),
    };
    let requests =
        jhe_catalog::organization_requests_of_organizations(&state.pool, organization_ids.as_deref(), page).await?;
    paged(&url, page, requests)
}

#[utoipa::path(delete, path = "/api/v1/patients/organization_requests/{id}", tag = "patients",
    summary = "Withdraw a pending request (member or manager of its organization)",
    params(("id" = i64, Path, description = "the request id")),
    responses((status = 204, description = "withdrawn"), (status = 404, description = "no such request among the caller's organizations"),
              (status = 409, description = "the request is no longer pending")))]
async fn cancel(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let organization_id = jhe_catalog::organization_request_organization(&state.pool, id)
        .await?
        .filter(|org| caller.is_superuser || caller.role_in(*org).is_some())
        .ok_or_else(not_found)?;
    require_permission(&caller, organization_id, Permission::PatientManageForOrganization)?;
    jhe_catalog::cancel_organization_request(&state.pool, id).await?;
    no_content()
}

fn not_found() -> ApiError {
    ApiError::new(jhe_schemas::ErrorKind::NotFound, "No organization request matches the given query.")
}

/// The caller's own patient record: these routes act for the patient alone.
fn own_patient(caller: &Caller) -> ApiResult<i64> {
    caller.patient_id.ok_or_else(|| ApiError::forbidden("The current user is not a patient."))
}

#[utoipa::path(get, path = "/api/v1/patients/me/organization_requests", tag = "patients",
    summary = "Requests of organizations to add the calling patient, newest first (the patient's own login)",
    responses((status = 200, description = "a list of requests"), (status = 403, description = "not a patient, or a token limited by SMART scopes")))]
async fn mine(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    let patient_id = own_patient(&caller)?;
    ok(&jhe_catalog::organization_requests_of_patient(&state.pool, patient_id).await?)
}

async fn decide(state: &AppState, caller: &Caller, id: i64, decision: RequestDecision) -> ApiResult<Response> {
    let patient_id = own_patient(caller)?;
    ok(&jhe_catalog::decide_organization_request(&state.pool, patient_id, id, decision).await?)
}

#[utoipa::path(post, path = "/api/v1/patients/me/organization_requests/{id}/accept", tag = "patients",
    summary = "Join the organization that asked (the patient's own login)",
    params(("id" = i64, Path, description = "the request id")),
    responses((status = 200, description = "the request, now `accepted`"), (status = 404, description = "no such request addressed to the caller"),
              (status = 409, description = "the request is no longer pending")))]
async fn accept(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    decide(&state, &caller, id, RequestDecision::Accept).await
}

#[utoipa::path(post, path = "/api/v1/patients/me/organization_requests/{id}/decline", tag = "patients",
    summary = "Decline the request (the patient's own login)",
    params(("id" = i64, Path, description = "the request id")),
    responses((status = 200, description = "the request, now `declined`"), (status = 404, description = "no such request addressed to the caller"),
              (status = 409, description = "the request is no longer pending")))]
async fn decline(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    decide(&state, &caller, id, RequestDecision::Decline).await
}
