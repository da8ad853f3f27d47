//! `/api/v1/observations` (jhe-compat §5.9): observations in the REST shape, for practitioners (patients get 404,
//! as in the reference). The same engine and consent rules as the FHIR search; newest `lastUpdated` first, ties
//! by id; paged by `page`/`pageSize`.

use std::collections::{BTreeSet, HashMap};

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use jhe_catalog::{Caller, Page};
use jhe_query::{ObservationFilters, SearchRequest};
use jhe_schemas::{ErrorKind, ObservationRecord};
use serde::Serialize;
use serde_json::Value;

use super::fhir_observations::{engine, read_one};
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, RequestUrl, ok};
use crate::paging::{DEFAULT_PAGE_SIZE, page_request, paged};

#[derive(utoipa::OpenApi)]
#[openapi(paths(list, retrieve))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/observations", get(list)).route("/observations/{id}", get(retrieve))
}

/// One observation as the reference's serializer shapes it (camelized on output; `omhData` is left as uploaded).
#[derive(Debug, Serialize)]
struct ObservationItem {
    id: i64,
    subject_patient_id: i64,
    patient_name_family: Option<String>,
    patient_name_given: Option<String>,
    jhe_user_id: Option<i64>,
    codeable_concept_id: Option<i64>,
    coding_system: String,
    coding_code: String,
    coding_text: Option<String>,
    last_updated: String,
    omh_data: Value,
}

/// Patients see no REST observations (jhe-compat §5.9).
fn require_practitioner(caller: &Caller) -> ApiResult<()> {
    if caller.is_practitioner() { Ok(()) } else { Err(ApiError::new(ErrorKind::NotFound, "Not found.")) }
}

#[utoipa::path(get, path = "/api/v1/observations", tag = "observations",
    params(("organization_id" = Option<i64>, Query, description = "only patients of this organization (one of yours)"),
           ("study_id" = Option<i64>, Query, description = "a study-scoped read: enrolled patients, codes the study requests and consents for it"),
           ("patient_id" = Option<i64>, Query, description = "one patient (in your organizations)"),
           ("observation_id" = Option<i64>, Query, description = "one observation"),
           ("page" = Option<u32>, Query, description = "1-based page; page × pageSize at most 100,000 (400 beyond)"),
           ("pageSize" = Option<u32>, Query, description = "page size (default 20, max 1000)")),
    responses((status = 200, description = "paged observations the caller may see under consent, newest first"),
              (status = 400, description = "an id that is not an integer, or a page past row 100,000"),
              (status = 401, description = "no token"),
              (status = 403, description = "an organization, study or patient outside your organizations"),
              (status = 404, description = "a patient caller, or a page past the end")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let page = page_request(&url, DEFAULT_PAGE_SIZE)?;
    let mut filters = ObservationFilters {
        study_id: url.int_param("study_id")?,
        organization_id: url.int_param("organization_id")?,
        ..ObservationFilters::default()
    };
    if let Some(patient) = url.int_param("patient_id")? {
        filters.restrict_patients([patient]);
    }
    if let Some(id) = url.int_param("observation_id")? {
        filters.ids = Some(BTreeSet::from([id]));
    }
    let request =
        SearchRequest { filters, count: page.page_size as usize, page: page.page, ..SearchRequest::default() };
    let found = engine(&state)?.search(&caller, &request).await?;
    let items = items(&state, &found.records).await?;
    paged(&url, page, Page { count: i64::try_from(found.total).unwrap_or(i64::MAX), items })
}

#[utoipa::path(get, path = "/api/v1/observations/{id}", tag = "observations",
    params(("id" = i64, Path, description = "observation id")),
    responses((status = 200, description = "the observation, if the caller may see it"),
              (status = 404, description = "no such observation, not visible to you, or a patient caller")))]
async fn retrieve(
    State(state): State<AppState>,
    Auth(caller): Auth,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> ApiResult<Response> {
    require_practitioner(&caller)?;
    let record = read_one(&state, &caller, &id).await?;
    let mut items = items(&state, std::slice::from_ref(&record)).await?;
    match items.pop() {
        Some(item) => ok(&item),
        None => Err(ApiError::not_found("Observation")),
    }
}

/// The REST items of `records`, with the patients' names and the codes' ids and texts from the control plane.
async fn items(state: &AppState, records: &[ObservationRecord]) -> ApiResult<Vec<ObservationItem>> {
    let mut patient_ids: Vec<i64> = records.iter().map(|record| record.patient_id).collect();
    patient_ids.sort_unstable();
    patient_ids.dedup();
    let names: HashMap<i64, jhe_catalog::PatientName> =
        jhe_catalog::patient_names(&state.pool, &patient_ids).await?.into_iter().map(|name| (name.id, name)).collect();
    let mut pairs: Vec<(String, String)> =
        records.iter().map(|record| (record.coding_system.clone(), record.coding_code.clone())).collect();
    pairs.sort_unstable();
    pairs.dedup();
    let codes: HashMap<(String, String), jhe_catalog::CodeDetails> = jhe_catalog::code_details(&state.pool, &pairs)
        .await?
        .into_iter()
        .map(|code| ((code.coding_system.clone(), code.coding_code.clone()), code))
        .collect();
    records
        .iter()
        .map(|record| {
            let name = names.get(&record.patient_id);
            let code = codes.get(&(record.coding_system.clone(), record.coding_code.clone()));
            // stored data points are JSON (validated at upload); a damaged one is a server fault, not the caller's
            let omh_data = serde_json::from_str(&record.omh_json).map_err(|error| {
                tracing::error!(observation = record.id, %error, "stored OMH data point is not JSON");
                ApiError::internal()
            })?;
            Ok(ObservationItem {
                id: record.id,
                subject_patient_id: record.patient_id,
                patient_name_family: name.and_then(|name| name.name_family.clone()),
                patient_name_given: name.and_then(|name| name.name_given.clone()),
                jhe_user_id: record.jhe_user_id,
                codeable_concept_id: code.map(|code| code.id),
                coding_system: record.coding_system.clone(),
                coding_code: record.coding_code.clone(),
                coding_text: code.map(|code| code.text.clone()),
                last_updated: drf_datetime(record.last_updated_micros),
                omh_data,
            })
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS[.ffffff]Z`, microseconds only when non-zero (the reference's REST encoder, §2.5).
fn drf_datetime(micros: i64) -> String {
    let time = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
    let fraction = time.timestamp_subsec_micros();
    if fraction == 0 {
        time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        format!("{}.{fraction:06}Z", time.format("%Y-%m-%dT%H:%M:%S"))
    }
}
