//! `/api/v1/patients/{id}/consents`: a patient's answers to what their studies request (jhe-compat §5.7, §8).
//!
//! Reading: the patient themself, a practitioner sharing an organization with the patient, or a superuser.
//! Writing: the patient themself, a superuser, or a practitioner who shares an organization with the patient and
//! is a member or manager of the organization of every study the body names (the patient must be enrolled, which
//! needs the patient in that organization). The audit trail records every write with who made it (`consent`). Every case the reference answers
//! with a 500 is a 4xx here, and a write changes all the rows it names or none.

use super::patients::require_patient_visible;
use super::studies::missing_as_bad_request;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Body, Id, RequestUrl, created, id_value, no_content, ok};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use jhe_catalog::{Caller, ConsentWrite, ScopeConsentChange, StudyConsentChanges, StudyScopeConsent};
use jhe_schemas::{Permission, role_allows};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;

#[derive(utoipa::OpenApi)]
#[openapi(paths(read, create, update, remove))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/patients/{id}/consents", get(read).post(create).patch(update).delete(remove))
}

#[utoipa::path(get, path = "/api/v1/patients/{id}/consents", tag = "consents",
    params(("id" = i64, Path, description = "patient id"),
           ("reset" = Option<bool>, Query, description = "`true` deletes all the patient's consents and answers \
               {\"resetCount\": n} (the patient themself or a superuser only)")),
    responses((status = 200, description = "{\"patient\", \"consolidatedConsentedScopes\", \"studiesPendingConsent\", \
               \"studies\"}"),
              (status = 403, description = "another patient, or a practitioner outside the patient's organizations"),
              (status = 404, description = "no such patient")))]
async fn read(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, url: RequestUrl) -> ApiResult<Response> {
    require_patient_visible(&state, &caller, id).await?;
    let patient = jhe_catalog::get_patient(&state.pool, id).await?;
    if url.bool_param("reset") {
        if caller.patient_id != Some(id) && !caller.is_superuser {
            return Err(ApiError::forbidden("Only the patient themself or a superuser can reset consents."));
        }
        let reset_count = jhe_catalog::reset_patient_consents(&state.pool, id).await?;
        return ok(&json!({ "reset_count": reset_count }));
    }
    ok(&jhe_catalog::patient_consents(&state.pool, patient).await?)
}

#[derive(Serialize)]
struct WrittenConsents {
    study_scope_consents: Vec<StudyScopeConsent>,
}

const BODY_DESCRIPTION: &str = "{\"studyScopeConsents\": [{\"studyId\", \"scopeConsents\": [{\"codingSystem\", \
    \"codingCode\", \"consented\"}]}]}";

#[utoipa::path(post, path = "/api/v1/patients/{id}/consents", tag = "consents",
    params(("id" = i64, Path, description = "patient id")),
    request_body(content = serde_json::Value, description = BODY_DESCRIPTION),
    responses((status = 201, description = "{\"studyScopeConsents\": [{\"id\", \"studyPatient\", \"scopeCode\", \
               \"consented\", \"consentedTime\"}]}"),
              (status = 400, description = "malformed body, patient not enrolled, unknown or unrequested code"),
              (status = 403, description = "the caller may not change this patient's consents for that study"),
              (status = 404, description = "no such patient"),
              (status = 409, description = "a code is already answered; nothing was written")))]
async fn create(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    let study_scope_consents = write(&state, &caller, id, &body, ConsentWrite::Create).await?;
    created(&WrittenConsents { study_scope_consents })
}

#[utoipa::path(patch, path = "/api/v1/patients/{id}/consents", tag = "consents",
    params(("id" = i64, Path, description = "patient id")),
    request_body(content = serde_json::Value, description = BODY_DESCRIPTION),
    responses((status = 200, description = "{\"studyScopeConsents\": […]} as for POST"),
              (status = 400, description = "malformed body, patient not enrolled, or a code not answered yet"),
              (status = 403, description = "the caller may not change this patient's consents for that study"),
              (status = 404, description = "no such patient")))]
async fn update(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    let study_scope_consents = write(&state, &caller, id, &body, ConsentWrite::Update).await?;
    ok(&WrittenConsents { study_scope_consents })
}

#[utoipa::path(delete, path = "/api/v1/patients/{id}/consents", tag = "consents",
    params(("id" = i64, Path, description = "patient id")),
    request_body(content = serde_json::Value, description = BODY_DESCRIPTION),
    responses((status = 204, description = "the answers are withdrawn (the codes are pending again)"),
              (status = 400, description = "malformed body, patient not enrolled, or a code not answered"),
              (status = 403, description = "the caller may not change this patient's consents for that study"),
              (status = 404, description = "no such patient")))]
async fn remove(State(state): State<AppState>, Auth(caller): Auth, Id(id): Id, body: Body) -> ApiResult<Response> {
    write(&state, &caller, id, &body, ConsentWrite::Delete).await?;
    no_content()
}

/// Checks who may write, then writes all of the body in one transaction.
async fn write(
    state: &AppState,
    caller: &Caller,
    patient_id: i64,
    body: &Body,
    write: ConsentWrite,
) -> ApiResult<Vec<StudyScopeConsent>> {
    let acts_without_study_role = caller.patient_id == Some(patient_id) || caller.is_superuser;
    if !acts_without_study_role {
        require_patient_visible(state, caller, patient_id).await?;
    }
    jhe_catalog::get_patient(&state.pool, patient_id).await?;
    let changes = parse_changes(body, write)?;
    if !acts_without_study_role {
        let study_ids: BTreeSet<i64> = changes.iter().map(|study| study.study_id).collect();
        for study_id in study_ids {
            require_study_role(state, caller, study_id).await?;
        }
    }
    Ok(jhe_catalog::write_patient_consents(&state.pool, patient_id, write, &changes).await?)
}

/// A practitioner changes consents only for studies of organizations where they are a member or manager.
async fn require_study_role(state: &AppState, caller: &Caller, study_id: i64) -> ApiResult<()> {
    let study = jhe_catalog::get_study(&state.pool, study_id)
        .await
        .map_err(|e| missing_as_bad_request(e, format!("studyScopeConsents: study {study_id} does not exist")))?;
    let organization_id = study.organization.id;
    if role_allows(caller.role_in(organization_id), caller.is_superuser, Permission::StudyManageForOrganization) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "Changing consents for study {study_id} needs the member or manager role in its organization \
             ({organization_id})."
        )))
    }
}

fn required(path: &str, what: &str) -> ApiError {
    ApiError::bad_request(format!("{path}: this field is required ({what})"))
}

/// The body, with each problem named by its path (`studyScopeConsents[0].scopeConsents[1].codingCode`).
/// `consented` is required except when deleting.
fn parse_changes(body: &Body, write: ConsentWrite) -> ApiResult<Vec<StudyConsentChanges>> {
    body.only(&["study_scope_consents"])?;
    let Some(Value::Array(studies)) = body.0.get("study_scope_consents") else {
        return Err(required("studyScopeConsents", "a list of {\"studyId\", \"scopeConsents\"}"));
    };
    let mut changes = Vec::with_capacity(studies.len());
    for (study_index, study) in studies.iter().enumerate() {
        let study_path = format!("studyScopeConsents[{study_index}]");
        let study_id = study
            .get("study_id")
            .and_then(id_value)
            .ok_or_else(|| required(&format!("{study_path}.studyId"), "a study id"))?;
        let Some(Value::Array(scopes)) = study.get("scope_consents") else {
            return Err(required(&format!("{study_path}.scopeConsents"), "a list of codes"));
        };
        let mut scope_consents = Vec::with_capacity(scopes.len());
        for (scope_index, scope) in scopes.iter().enumerate() {
            let path = format!("{study_path}.scopeConsents[{scope_index}]");
            let text = |key: &str, camel_name: &str| {
                scope
                    .get(key)
                    .and_then(Value::as_str)
                    .map(str::trim)
                    .filter(|text| !text.is_empty())
                    .map(str::to_owned)
                    .ok_or_else(|| required(&format!("{path}.{camel_name}"), "a string"))
            };
            let consented = match scope.get("consented") {
                Some(Value::Bool(consented)) => Some(*consented),
                None | Some(Value::Null) if write == ConsentWrite::Delete => None,
                None | Some(Value::Null) => return Err(required(&format!("{path}.consented"), "true or false")),
                Some(other) => {
                    return Err(ApiError::bad_request(format!("{path}.consented: `{other}` is not true or false")));
                }
            };
            scope_consents.push(ScopeConsentChange {
                coding_system: text("coding_system", "codingSystem")?,
                coding_code: text("coding_code", "codingCode")?,
                consented,
            });
        }
        changes.push(StudyConsentChanges { study_id, scope_consents });
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi;

    #[test]
    fn api_doc_lists_every_method() {
        let doc = super::ApiDoc::openapi();
        let item = &doc.paths.paths["/api/v1/patients/{id}/consents"];
        assert!(item.get.is_some() && item.post.is_some() && item.patch.is_some() && item.delete.is_some());
        let post =
            item.post.as_ref().and_then(|op| op.request_body.as_ref()).and_then(|body| body.description.as_deref());
        assert!(post.is_some_and(|text| text.contains("studyScopeConsents")));
    }
}
