//! `/api/v1/patients`: patients, their identifiers and organizations. PHI is visible only to practitioners who
//! share an organization with the patient, and to the patient themself.

use crate::AppState;
use crate::access::{practitioner_sees_patient, require_permission, require_practitioner};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, no_content, ok};
use crate::paging::{DEFAULT_PAGE_SIZE, page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, patch};
use chrono::NaiveDate;
use jhe_catalog::{Caller, NewPatient, PatientChanges, PatientFilter};
use jhe_schemas::Permission;
use serde_json::{Value, json};

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, me, global_lookup, retrieve, update, remove_from_organization, global_add_organization))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/patients", get(list).post(create))
        .route("/patients/me", get(me))
        .route("/patients/global_lookup", get(global_lookup))
        .route("/patients/{id}", get(retrieve).patch(update).put(update).delete(remove_from_organization))
        .route("/patients/{id}/global_add_organization", patch(global_add_organization))
}

/// Fields a client may send for a patient; read-only fields of the output shape are accepted and ignored so a
/// client can send back what it read.
const PATIENT_FIELDS: &[&str] = &[
    "organization_id",
    "telecom_email",
    "name_family",
    "name_given",
    "birth_date",
    "telecom_phone",
    "identifiers",
    "id",
    "jhe_user_id",
    "organizations",
];

#[utoipa::path(get, path = "/api/v1/patients", tag = "patients", summary = "Patients sharing an organization with the caller (filters `organizationId`, `studyId`, `patientId`, `patientIdentifierValue`)",
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let page = page_request(&url, DEFAULT_PAGE_SIZE)?;
    let organization_id = url.int_param("organization_id")?;
    // reads are scoped by membership (jhe-compat §4.3): the organizations shared with the caller, narrowed by the filter
    let organization_ids = caller
        .organization_ids()
        .into_iter()
        .filter(|org| organization_id.is_none_or(|wanted| wanted == *org))
        .collect();
    let filter = PatientFilter {
        organization_ids: Some(organization_ids),
        study_id: url.int_param("study_id")?,
        patient_id: url.int_param("patient_id")?,
        identifier_value: url.param("patient_identifier_value").filter(|v| !v.is_empty()).map(str::to_owned),
    };
    remember_current_view(&state, &caller, organization_id, filter.study_id).await?;
    let patients = jhe_catalog::list_patients(&state.pool, &filter, page).await?;
    paged(&url, page, patients)
}

/// The web UI's "sticky" organization and study (jhe-compat §5.6): list endpoints remember what was asked for.
pub(crate) async fn remember_current_view(
    state: &AppState,
    caller: &Caller,
    organization_id: Option<i64>,
    study_id: Option<i64>,
) -> ApiResult<()> {
    let Some(practitioner_id) = caller.practitioner_id else {
        return Ok(());
    };
    let mut set = serde_json::Map::new();
    if let Some(organization_id) = organization_id {
        set.insert("current_organization_id".into(), json!(organization_id));
    }
    let remove: &[&str] = match study_id {
        Some(study_id) => {
            set.insert("current_study_id".into(), json!(study_id));
            &[]
        }
        None => &["current_study_id"],
    };
    jhe_catalog::remember_practitioner_settings(&state.pool, practitioner_id, Value::Object(set), remove).await?;
    Ok(())
}

/// Patients see themselves; practitioners see patients of their organizations. Checked before anything is read,
/// so a patient outside the caller's organizations answers the same as an id that does not exist.
pub(crate) async fn require_patient_visible(state: &AppState, caller: &Caller, patient_id: i64) -> ApiResult<()> {
    if caller.patient_id == Some(patient_id) {
        return Ok(());
    }
    if caller.is_patient() && !caller.is_practitioner() {
        return Err(ApiError::forbidden("The Patient does not match the current patient user."));
    }
    if practitioner_sees_patient(&state.pool, caller, patient_id).await? {
        Ok(())
    } else {
        Err(ApiError::forbidden("This patient is not in any of your organizations."))
    }
}

#[utoipa::path(get, path = "/api/v1/patients/{id}", tag = "patients", summary = "A patient",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn retrieve(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    require_patient_visible(&state, &caller, id).await?;
    ok(&jhe_catalog::get_patient(&state.pool, id).await?)
}

#[utoipa::path(get, path = "/api/v1/patients/me", tag = "patients", summary = "The calling patient",
    responses((status = 200, description = "success"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this")))]
async fn me(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    let Some(patient_id) = caller.patient_id else {
        return Err(ApiError::forbidden("The current user is not a patient."));
    };
    ok(&jhe_catalog::get_patient(&state.pool, patient_id).await?)
}

fn parse_birth_date(body: &Body) -> ApiResult<Option<Option<NaiveDate>>> {
    match body.string("birth_date")? {
        None => Ok(None),
        Some(None) => Ok(Some(None)),
        Some(Some(text)) if text.trim().is_empty() => Ok(Some(None)),
        Some(Some(text)) => NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
            .map(|date| Some(Some(date)))
            .map_err(|_| ApiError::bad_request(format!("birthDate: `{text}` is not a date in the format YYYY-MM-DD"))),
    }
}

fn parse_identifiers(body: &Body) -> ApiResult<Option<Vec<(String, String)>>> {
    let Some(value) = body.0.get("identifiers") else {
        return Ok(None);
    };
    let Some(items) = value.as_array() else {
        return Err(ApiError::bad_request("identifiers: expected a list of {\"system\", \"value\"} objects"));
    };
    let mut identifiers = Vec::with_capacity(items.len());
    for item in items {
        let system = item.get("system").and_then(Value::as_str).map(str::trim).unwrap_or("");
        let value = item.get("value").and_then(Value::as_str).map(str::trim).unwrap_or("");
        if system.is_empty() || value.is_empty() {
            return Err(ApiError::bad_request("identifiers: each identifier needs a non-empty system and value"));
        }
        identifiers.push((system.to_owned(), value.to_owned()));
    }
    Ok(Some(identifiers))
}

fn optional_text(body: &Body, key: &str) -> ApiResult<Option<Option<String>>> {
    Ok(body.string(key)?.map(|v| v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())))
}

#[utoipa::path(post, path = "/api/v1/patients", tag = "patients", summary = "Create a patient in an organization (member or manager)",
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 201, description = "created"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 409, description = "conflicts with what is stored")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, body: Body) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    body.only(PATIENT_FIELDS)?;
    let organization_id = body.required_int("organization_id", "organizationId")?;
    require_permission(&caller, organization_id, Permission::PatientManageForOrganization)?;
    let telecom_email = body.required_string("telecom_email")?;
    super::users::validate_email(&telecom_email)?;
    let new = NewPatient {
        organization_id,
        telecom_email,
        name_family: optional_text(&body, "name_family")?.flatten(),
        name_given: optional_text(&body, "name_given")?.flatten(),
        birth_date: parse_birth_date(&body)?.flatten(),
        telecom_phone: optional_text(&body, "telecom_phone")?.flatten(),
        identifiers: parse_identifiers(&body)?.unwrap_or_default(),
    };
    created(&jhe_catalog::create_patient(&state.pool, &new).await?)
}

/// Writes to a patient need `patient.manage_for_organization` in the organization named by `organization_id`,
/// and the patient must belong to it; a patient outside it answers as one that does not exist. Returns the
/// organization and the patient's organizations.
async fn require_manage_in(
    state: &AppState,
    caller: &Caller,
    url: &RequestUrl,
    patient_id: i64,
) -> ApiResult<(i64, Vec<i64>)> {
    let Some(organization_id) = url.int_param("organization_id")? else {
        return Err(ApiError::bad_request("organizationId required"));
    };
    require_permission(caller, organization_id, Permission::PatientManageForOrganization)?;
    let organizations = jhe_catalog::patient_organization_ids(&state.pool, patient_id).await?;
    if !organizations.contains(&organization_id) {
        return Err(ApiError::new(
            jhe_schemas::ErrorKind::NotFound,
            format!("No Patient {patient_id} in organization {organization_id}."),
        ));
    }
    Ok((organization_id, organizations))
}

/// A patient's login email belongs to the patient, not to one organization: an organization may change it only
/// while the patient is in no other organization (a superuser always may). The new email is unverified until the
/// patient confirms it.
fn require_may_change_email(caller: &Caller, organizations: &[i64]) -> ApiResult<()> {
    if caller.is_superuser || organizations.len() <= 1 {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "telecomEmail: this patient's login email is shared by all their organizations; only the patient or a \
             superuser can change it",
        ))
    }
}

#[utoipa::path(patch, path = "/api/v1/patients/{id}", tag = "patients", summary = "Update a patient (`organizationId` query parameter names the organization whose role applies); PUT is accepted too",
    params(("id" = i64, Path, description = "the id")),
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn update(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    url: RequestUrl,
    body: Body,
) -> ApiResult<Response> {
    let (_, organizations) = require_manage_in(&state, &caller, &url, id).await?;
    body.only(PATIENT_FIELDS)?;
    let telecom_email = match body.string("telecom_email")? {
        Some(Some(email)) => {
            super::users::validate_email(email.trim())?;
            require_may_change_email(&caller, &organizations)?;
            Some(email.trim().to_owned())
        }
        Some(None) => return Err(ApiError::bad_request("telecomEmail: may not be null")),
        None => None,
    };
    let changes = PatientChanges {
        name_family: optional_text(&body, "name_family")?,
        name_given: optional_text(&body, "name_given")?,
        birth_date: parse_birth_date(&body)?,
        telecom_phone: optional_text(&body, "telecom_phone")?,
        telecom_email,
        identifiers: parse_identifiers(&body)?,
    };
    ok(&jhe_catalog::update_patient(&state.pool, id, &changes).await?)
}

#[utoipa::path(delete, path = "/api/v1/patients/{id}", tag = "patients", summary = "Remove a patient from the organization `organizationId` (deleted when in no organization)",
    params(("id" = i64, Path, description = "the id")),
    responses((status = 204, description = "done, no body"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn remove_from_organization(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    url: RequestUrl,
) -> ApiResult<Response> {
    let (organization_id, _) = require_manage_in(&state, &caller, &url, id).await?;
    jhe_catalog::remove_patient_from_organization(&state.pool, id, organization_id).await?;
    no_content()
}

#[utoipa::path(get, path = "/api/v1/patients/global_lookup", tag = "patients", summary = "Patients with this email, among those the caller may see",
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this")))]
async fn global_lookup(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let Some(email) = url.param("email").map(str::trim).filter(|e| !e.is_empty()) else {
        return Err(ApiError::bad_request("email: this query parameter is required"));
    };
    let organization_ids = caller.organization_ids();
    let visible_in = (!caller.is_superuser).then_some(organization_ids.as_slice());
    ok(&jhe_catalog::patients_by_email(&state.pool, email, visible_in).await?)
}

#[utoipa::path(patch, path = "/api/v1/patients/{id}/global_add_organization", tag = "patients", summary = "Add a patient already in one of the caller's organizations to another of them, `organizationId` (superusers: any patient); a patient of another organization joins by accepting a request (`POST /api/v1/patients/organization_requests`)",
    params(("id" = i64, Path, description = "the id")),
    request_body(content = serde_json::Value, description = "JSON object; camelCase or snake_case keys"),
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this"), (status = 404, description = "not found")))]
async fn global_add_organization(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    url: RequestUrl,
) -> ApiResult<Response> {
    let Some(organization_id) = url.int_param("organization_id")? else {
        return Err(ApiError::bad_request("organizationId required"));
    };
    require_permission(&caller, organization_id, Permission::PatientManageForOrganization)?;
    if !practitioner_sees_patient(&state.pool, &caller, id).await? {
        return Err(ApiError::new(
            jhe_schemas::ErrorKind::NotFound,
            "No Patient matches the given query among your organizations' patients. To add a patient of another \
             organization, ask them by email (POST /api/v1/patients/organization_requests); they join when they \
             accept.",
        ));
    }
    ok(&jhe_catalog::add_patient_to_organization(&state.pool, id, organization_id).await?)
}
