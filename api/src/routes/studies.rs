//! `/api/v1/studies` and `/api/v1/organizations/{id}/studies`: studies and what they link to (jhe-compat §5.8).
//!
//! Access, closing the gaps of jhe-compat §13.2:
//! * studies are for practitioners only. Patient users get a 403 with a message on every route here (the reference
//!   answers them with a 404, which reads like a missing study);
//! * reads need membership of the study's organization, in any role (or a superuser). A study outside the
//!   caller's organizations is a 403; a study id that does not exist is a 404 (the reference answers 403);
//! * writes, including every sub-resource write, need `study.manage_for_organization` (member or manager) in the
//!   study's organization; creating a study needs it in the body's `organization`.

use crate::AppState;
use crate::access::{require_member, require_permission, require_practitioner};
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, created_empty, id_value, link_id, no_content, ok};
use crate::paging::{DEFAULT_PAGE_SIZE, page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use jhe_catalog::{Caller, NewStudy, PatientFilter, Study, StudyChanges, StudyFilter, StudyPatient};
use jhe_schemas::{ErrorKind, Permission};
use serde::Serialize;
use serde_json::{Value, json};

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    list,
    retrieve,
    create,
    update,
    destroy,
    organization_studies,
    list_patients,
    enroll_patients,
    unenroll_patients,
    list_scope_requests,
    add_scope_request,
    remove_scope_request,
    list_clients,
    add_client,
    remove_client,
    list_data_sources,
    add_data_source,
    remove_data_source,
))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/studies", get(list).post(create))
        .route("/studies/{id}", get(retrieve).patch(update).put(update).delete(destroy))
        .route("/studies/{id}/patients", get(list_patients).post(enroll_patients).delete(unenroll_patients))
        .route(
            "/studies/{id}/scope_requests",
            get(list_scope_requests).post(add_scope_request).delete(remove_scope_request),
        )
        .route("/studies/{id}/clients", get(list_clients).post(add_client).delete(remove_client))
        .route("/studies/{id}/data_sources", get(list_data_sources).post(add_data_source).delete(remove_data_source))
        .route("/organizations/{id}/studies", get(organization_studies))
}

/// Fields a client may send for a study; `id` is accepted and ignored so a client can send back what it read.
const STUDY_FIELDS: &[&str] = &["id", "name", "description", "organization", "icon_url"];

/// A missing row that the request body names is the caller's input mistake (400), not a missing resource (404).
pub(super) fn missing_as_bad_request(error: jhe_catalog::Error, detail: String) -> ApiError {
    match error.kind() {
        ErrorKind::NotFound => ApiError::bad_request(detail),
        _ => error.into(),
    }
}

/// The study, if the caller may read it: a practitioner of its organization, or a superuser.
async fn readable_study(state: &AppState, caller: &Caller, id: i64) -> ApiResult<Study> {
    require_practitioner(caller)?;
    let study = jhe_catalog::get_study(&state.pool, id).await?;
    require_member(caller, study.organization.id, "Current User does not have authorization to access this Study.")?;
    Ok(study)
}

/// The study, if the caller may change it and what links to it.
async fn writable_study(state: &AppState, caller: &Caller, id: i64) -> ApiResult<Study> {
    let study = readable_study(state, caller, id).await?;
    require_permission(caller, study.organization.id, Permission::StudyManageForOrganization)?;
    Ok(study)
}

/// The sticky organization and study of the web UI. Unlike the patient list, the study list only ever sets them,
/// as the reference does: the UI lists studies to fill a menu and must not lose the selected study.
async fn remember_view(state: &AppState, caller: &Caller, url: &RequestUrl) -> ApiResult<()> {
    let Some(practitioner_id) = caller.practitioner_id else {
        return Ok(());
    };
    let mut view = serde_json::Map::new();
    if let Some(organization_id) = url.int_param("organization_id")? {
        view.insert("current_organization_id".into(), json!(organization_id));
    }
    if let Some(study_id) = url.int_param("study_id")? {
        view.insert("current_study_id".into(), json!(study_id));
    }
    if !view.is_empty() {
        jhe_catalog::remember_practitioner_settings(&state.pool, practitioner_id, Value::Object(view), &[]).await?;
    }
    Ok(())
}

#[utoipa::path(get, path = "/api/v1/studies", tag = "studies",
    params(("organizationId" = Option<i64>, Query, description = "only studies of this organization"),
           ("page" = Option<u32>, Query, description = "1-based page number"),
           ("pageSize" = Option<u32>, Query, description = "page size, default 20, at most 1000")),
    responses((status = 200, description = "paged studies of the caller's organizations (read shape), by name"),
              (status = 403, description = "the caller is not a practitioner")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let page = page_request(&url, DEFAULT_PAGE_SIZE)?;
    let filter = StudyFilter {
        visible_to_practitioner: (!caller.is_superuser).then(|| caller.practitioner_id.unwrap_or(-1)),
        organization_id: url.int_param("organization_id")?,
    };
    remember_view(&state, &caller, &url).await?;
    paged(&url, page, jhe_catalog::list_studies(&state.pool, &filter, page).await?)
}

#[utoipa::path(get, path = "/api/v1/studies/{id}", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    responses((status = 200, description = "the study (read shape: organization nested)"),
              (status = 403, description = "the study is not in one of the caller's organizations"),
              (status = 404, description = "no such study")))]
async fn retrieve(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    ok(&readable_study(&state, &caller, id).await?)
}

/// A non-blank string field that may be absent; present and blank is a 400.
fn changed_text(body: &Body, key: &str) -> ApiResult<Option<String>> {
    match body.string(key)? {
        None => Ok(None),
        Some(Some(text)) if !text.trim().is_empty() => Ok(Some(text.trim().to_owned())),
        Some(_) => Err(ApiError::bad_request(format!("{}: may not be blank", crate::camel::camelize_key(key)))),
    }
}

/// `iconUrl`: absent, or a URL, or null/blank to clear it.
fn icon_url(body: &Body) -> ApiResult<Option<Option<String>>> {
    Ok(body.string("icon_url")?.map(|url| url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty())))
}

#[utoipa::path(post, path = "/api/v1/studies", tag = "studies",
    request_body(content = serde_json::Value, description = "{\"name\", \"description\", \"organization\": id, \"iconUrl\"?}"),
    responses((status = 201, description = "the new study (write shape: organization as id)"),
              (status = 400, description = "a field is missing or invalid"),
              (status = 403, description = "the caller is not a member or manager of the organization")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, body: Body) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    body.only(STUDY_FIELDS)?;
    let organization_id = body.required_int("organization", "organization")?;
    jhe_catalog::get_organization(&state.pool, organization_id).await.map_err(|e| {
        missing_as_bad_request(e, format!("organization: organization {organization_id} does not exist"))
    })?;
    require_permission(&caller, organization_id, Permission::StudyManageForOrganization)?;
    let new = NewStudy {
        name: body.required_string("name")?,
        description: body.required_string("description")?,
        organization_id,
        icon_url: icon_url(&body)?.flatten(),
    };
    created(&jhe_catalog::create_study(&state.pool, &new).await?)
}

#[utoipa::path(method(patch, put), path = "/api/v1/studies/{id}", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    request_body(content = serde_json::Value, description = "any of {\"name\", \"description\", \"iconUrl\"}; \
        \"organization\" may only repeat the study's own"),
    responses((status = 200, description = "the study (write shape)"),
              (status = 400, description = "a field is invalid, or the organization would change"),
              (status = 403, description = "the caller is not a member or manager of the study's organization"),
              (status = 404, description = "no such study")))]
async fn update(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    let study = writable_study(&state, &caller, id).await?;
    body.only(STUDY_FIELDS)?;
    if let Some(organization_id) = body.int("organization")?
        && organization_id != study.organization.id
    {
        return Err(ApiError::bad_request("organization: a study cannot be moved to another organization"));
    }
    let changes = StudyChanges {
        name: changed_text(&body, "name")?,
        description: changed_text(&body, "description")?,
        icon_url: icon_url(&body)?,
    };
    ok(&jhe_catalog::update_study(&state.pool, id, &changes).await?)
}

#[utoipa::path(delete, path = "/api/v1/studies/{id}", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    responses((status = 204, description = "deleted, with its enrolments, consents and links"),
              (status = 403, description = "the caller is not a member or manager of the study's organization"),
              (status = 404, description = "no such study")))]
async fn destroy(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    writable_study(&state, &caller, id).await?;
    jhe_catalog::delete_study(&state.pool, id).await?;
    no_content()
}

#[utoipa::path(get, path = "/api/v1/organizations/{id}/studies", tag = "studies",
    params(("id" = i64, Path, description = "organization id")),
    responses((status = 200, description = "the organization's studies (write shape), by name"),
              (status = 403, description = "the caller is not a member of the organization"),
              (status = 404, description = "no such organization")))]
async fn organization_studies(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    jhe_catalog::get_organization(&state.pool, id).await?;
    require_member(&caller, id, "You are not a member of this organization.")?;
    ok(&jhe_catalog::organization_studies(&state.pool, id).await?)
}

#[utoipa::path(get, path = "/api/v1/studies/{id}/patients", tag = "studies",
    params(("id" = i64, Path, description = "study id"),
           ("page" = Option<u32>, Query, description = "1-based page number"),
           ("pageSize" = Option<u32>, Query, description = "page size, default 20, at most 1000")),
    responses((status = 200, description = "paged patients enrolled in the study, by id"),
              (status = 403, description = "the caller is not a member of the study's organization"),
              (status = 404, description = "no such study")))]
async fn list_patients(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    url: RequestUrl,
) -> ApiResult<Response> {
    readable_study(&state, &caller, id).await?;
    let page = page_request(&url, DEFAULT_PAGE_SIZE)?;
    let filter = PatientFilter { study_id: Some(id), ..PatientFilter::default() };
    paged(&url, page, jhe_catalog::list_patients(&state.pool, &filter, page).await?)
}

/// `patientIds`: a list of patient ids (numbers, or strings holding one).
fn patient_ids(body: &Body) -> ApiResult<Vec<i64>> {
    body.only(&["patient_ids"])?;
    let Some(Value::Array(items)) = body.0.get("patient_ids") else {
        return Err(ApiError::bad_request("patientIds: this field is required (a list of patient ids)"));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            id_value(item)
                .ok_or_else(|| ApiError::bad_request(format!("patientIds[{index}]: `{item}` is not a patient id")))
        })
        .collect()
}

#[derive(Serialize)]
struct Enrolments {
    study_patients: Vec<StudyPatient>,
}

#[utoipa::path(post, path = "/api/v1/studies/{id}/patients", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    request_body(content = serde_json::Value, description = "{\"patientIds\": [id, …]}"),
    responses((status = 201, description = "{\"studyPatients\": [{\"id\", \"study\", \"patient\"}]}"),
              (status = 400, description = "a patient does not exist or is not in the study's organization"),
              (status = 403, description = "the caller is not a member or manager of the study's organization"),
              (status = 409, description = "a patient is already enrolled; nothing was enrolled")))]
async fn enroll_patients(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    body: Body,
) -> ApiResult<Response> {
    writable_study(&state, &caller, id).await?;
    let study_patients = jhe_catalog::enroll_patients(&state.pool, id, &patient_ids(&body)?).await?;
    created(&Enrolments { study_patients })
}

#[utoipa::path(delete, path = "/api/v1/studies/{id}/patients", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    request_body(content = serde_json::Value, description = "{\"patientIds\": [id, …]}"),
    responses((status = 204, description = "the enrolments and their consents are removed"),
              (status = 400, description = "a patient is not enrolled; nothing was removed"),
              (status = 403, description = "the caller is not a member or manager of the study's organization")))]
async fn unenroll_patients(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    body: Body,
) -> ApiResult<Response> {
    writable_study(&state, &caller, id).await?;
    jhe_catalog::unenroll_patients(&state.pool, id, &patient_ids(&body)?).await?;
    no_content()
}

/// The one id field of a link request body: its accepted spellings, and its name in messages.
#[derive(Debug)]
struct LinkField {
    spellings: &'static [&'static str],
    name: &'static str,
}

const SCOPE_CODE_ID: LinkField = LinkField { spellings: &["scope_code_id"], name: "scopeCodeId" };
/// The `oauth_clients` row id of a patient app, not its OAuth client id. `clientId` is read as sent: `client_id`
/// is an ignored key of the camelCase rules, so `clientId` is not underscoreized (jhe-compat §2.1).
const CLIENT_ID: LinkField = LinkField { spellings: &["clientId", "client_id"], name: "clientId" };
const DATA_SOURCE_ID: LinkField = LinkField { spellings: &["data_source_id"], name: "dataSourceId" };

fn study_link_id(body: &Body, field: &LinkField) -> ApiResult<i64> {
    link_id(body, None, field.spellings, field.name)
}

#[utoipa::path(get, path = "/api/v1/studies/{id}/scope_requests", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    responses((status = 200, description = "[{\"id\", \"study\", \"scopeCode\"}] in id order"),
              (status = 403, description = "the caller is not a member of the study's organization"),
              (status = 404, description = "no such study")))]
async fn list_scope_requests(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    readable_study(&state, &caller, id).await?;
    ok(&jhe_catalog::study_scope_requests(&state.pool, id).await?)
}

#[utoipa::path(post, path = "/api/v1/studies/{id}/scope_requests", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    request_body(content = serde_json::Value, description = "{\"scopeCodeId\": id}"),
    responses((status = 201, description = "the new scope request {\"id\", \"study\", \"scopeCode\"}"),
              (status = 400, description = "unknown code"),
              (status = 403, description = "the caller is not a member or manager of the study's organization"),
              (status = 409, description = "the study already requests the code")))]
async fn add_scope_request(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    body: Body,
) -> ApiResult<Response> {
    writable_study(&state, &caller, id).await?;
    let code_id = study_link_id(&body, &SCOPE_CODE_ID)?;
    created(&jhe_catalog::add_study_scope_request(&state.pool, id, code_id).await?)
}

#[utoipa::path(delete, path = "/api/v1/studies/{id}/scope_requests", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    request_body(content = serde_json::Value, description = "{\"scopeCodeId\": id}"),
    responses((status = 204, description = "the study no longer requests the code"),
              (status = 400, description = "the study does not request the code"),
              (status = 403, description = "the caller is not a member or manager of the study's organization")))]
async fn remove_scope_request(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    body: Body,
) -> ApiResult<Response> {
    writable_study(&state, &caller, id).await?;
    let code_id = study_link_id(&body, &SCOPE_CODE_ID)?;
    jhe_catalog::remove_study_scope_request(&state.pool, id, code_id).await?;
    no_content()
}

#[utoipa::path(get, path = "/api/v1/studies/{id}/clients", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    responses((status = 200, description = "[{\"id\", \"study\", \"client\": {\"id\", \"name\", \"clientId\", \
        \"invitationUrl\"}}] in id order; never a secret"),
              (status = 403, description = "the caller is not a member of the study's organization"),
              (status = 404, description = "no such study")))]
async fn list_clients(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    readable_study(&state, &caller, id).await?;
    ok(&jhe_catalog::study_clients(&state.pool, id).await?)
}

#[utoipa::path(post, path = "/api/v1/studies/{id}/clients", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    request_body(content = serde_json::Value, description = "{\"clientId\": patient app id} (or \"client_id\")"),
    responses((status = 201, description = "linked (empty body)"),
              (status = 400, description = "no patient app with that id"),
              (status = 403, description = "the caller is not a member or manager of the study's organization"),
              (status = 409, description = "already linked")))]
async fn add_client(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    writable_study(&state, &caller, id).await?;
    jhe_catalog::add_study_client(&state.pool, id, study_link_id(&body, &CLIENT_ID)?).await?;
    created_empty()
}

#[utoipa::path(delete, path = "/api/v1/studies/{id}/clients", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    request_body(content = serde_json::Value, description = "{\"clientId\": patient app id} (or \"client_id\")"),
    responses((status = 204, description = "unlinked"),
              (status = 400, description = "the client is not linked to the study"),
              (status = 403, description = "the caller is not a member or manager of the study's organization")))]
async fn remove_client(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    body: Body,
) -> ApiResult<Response> {
    writable_study(&state, &caller, id).await?;
    jhe_catalog::remove_study_client(&state.pool, id, study_link_id(&body, &CLIENT_ID)?).await?;
    no_content()
}

#[utoipa::path(get, path = "/api/v1/studies/{id}/data_sources", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    responses((status = 200, description = "[{\"id\", \"study\", \"dataSource\": {\"id\", \"name\", \"type\", \
        \"supportedScopes\"}}] in id order"),
              (status = 403, description = "the caller is not a member of the study's organization"),
              (status = 404, description = "no such study")))]
async fn list_data_sources(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id) -> ApiResult<Response> {
    readable_study(&state, &caller, id).await?;
    ok(&jhe_catalog::study_data_sources(&state.pool, id).await?)
}

#[utoipa::path(post, path = "/api/v1/studies/{id}/data_sources", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    request_body(content = serde_json::Value, description = "{\"dataSourceId\": id}"),
    responses((status = 201, description = "linked (empty body)"),
              (status = 400, description = "no data source with that id"),
              (status = 403, description = "the caller is not a member or manager of the study's organization"),
              (status = 409, description = "already linked")))]
async fn add_data_source(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    body: Body,
) -> ApiResult<Response> {
    writable_study(&state, &caller, id).await?;
    let data_source_id = study_link_id(&body, &DATA_SOURCE_ID)?;
    jhe_catalog::add_study_data_source(&state.pool, id, data_source_id).await?;
    created_empty()
}

#[utoipa::path(delete, path = "/api/v1/studies/{id}/data_sources", tag = "studies",
    params(("id" = i64, Path, description = "study id")),
    request_body(content = serde_json::Value, description = "{\"dataSourceId\": id}"),
    responses((status = 204, description = "unlinked"),
              (status = 400, description = "the data source is not linked to the study"),
              (status = 403, description = "the caller is not a member or manager of the study's organization")))]
async fn remove_data_source(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(id): Id,
    body: Body,
) -> ApiResult<Response> {
    writable_study(&state, &caller, id).await?;
    let data_source_id = study_link_id(&body, &DATA_SOURCE_ID)?;
    jhe_catalog::remove_study_data_source(&state.pool, id, data_source_id).await?;
    no_content()
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn api_doc_lists_every_route_and_method() {
        let doc = super::ApiDoc::openapi();
        let methods = |path: &str| {
            let item = doc.paths.paths.get(path).unwrap_or_else(|| panic!("{path} is not documented"));
            [item.get.is_some(), item.post.is_some(), item.put.is_some(), item.patch.is_some(), item.delete.is_some()]
        };
        assert_eq!(methods("/api/v1/studies"), [true, true, false, false, false]);
        assert_eq!(methods("/api/v1/studies/{id}"), [true, false, true, true, true]);
        assert_eq!(methods("/api/v1/organizations/{id}/studies"), [true, false, false, false, false]);
        for sub in ["patients", "scope_requests", "clients", "data_sources"] {
            assert_eq!(methods(&format!("/api/v1/studies/{{id}}/{sub}")), [true, true, false, false, true], "{sub}");
        }
    }
}
