//! Observation analytics: FHIR `GET /FHIR/R5/Observation/$lastn` and `GET /FHIR/R5/Observation/$stats`,
//! and the REST `GET /api/v1/studies/{id}/observation_summary`. The query crate parses the parameters and answers
//! with one DataFusion plan under the caller's consent (the same as searches); this module speaks HTTP.
//! Shapes: docs/query.md, "Analytics".
//!
//! The literal `$lastn` and `$stats` segments win over `/FHIR/R5/Observation/{id}` (axum matches static segments
//! before parameters), so neither is read as an observation id.

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jhe_catalog::Caller;
use jhe_query::{Granularity, ObservationAggregate, Statistic, parse_lastn, parse_stats, parse_study_summary};
use jhe_schemas::fhir::bundle::{SearchsetLinks, searchset};
use jhe_schemas::fhir::render;
use serde_json::{Value, json};

use super::fhir_observations::{code_texts, engine};
use crate::AppState;
use crate::access::require_member;
use crate::audit::AuditRows;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Id, RequestUrl};

/// The REST route's share of the OpenAPI document (the FHIR operations are described in docs/query.md).
#[derive(utoipa::OpenApi)]
#[openapi(paths(study_summary))]
pub(super) struct ApiDoc;

/// The FHIR operations, mounted at the top level.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/FHIR/R5/Observation/$lastn", get(lastn)).route("/FHIR/R5/Observation/$stats", get(stats))
}

/// The REST study summary, mounted under `/api/v1`.
pub(super) fn rest_routes() -> Router<AppState> {
    Router::new().route("/studies/{id}/observation_summary", get(study_summary))
}

fn decode_pairs(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

fn with_rows(mut response: Response, rows: usize) -> Response {
    response.extensions_mut().insert(AuditRows(i64::try_from(rows).unwrap_or(i64::MAX)));
    response
}

/// `$lastn`: the latest `max` observations of each patient and code, as a searchset Bundle of every match.
async fn lastn(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    url: RequestUrl,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Auth(caller) = auth?;
        let engine = engine(&state)?;
        let request = parse_lastn(&decode_pairs(query.as_deref()), chrono::Utc::now())?;
        let records = engine.last_n(&caller, &request.filters, request.max).await?;
        let texts = code_texts(&state, &records).await?;
        let resources: Vec<_> = records
            .iter()
            .map(|record| render::observation(record, texts.get(&record.coding_system, &record.coding_code)))
            .collect();
        let self_url = match query.as_deref() {
            Some(query) if !query.is_empty() => format!("{}{}?{query}", url.base, url.path),
            _ => format!("{}{}", url.base, url.path),
        };
        let links = SearchsetLinks { self_url, previous: None, next: None };
        let total = u64::try_from(resources.len()).unwrap_or(u64::MAX);
        let response = axum::Json(searchset(total, &resources, &links)).into_response();
        Ok(with_rows(response, resources.len()))
    }
    .await;
    respond_fhir(&headers, result)
}

/// `$stats`: count/min/max/mean of each patient and code as a `Parameters` resource, one `statistic` parameter
/// per (patient, code).
async fn stats(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Auth(caller) = auth?;
        let engine = engine(&state)?;
        let request = parse_stats(&decode_pairs(query.as_deref()), chrono::Utc::now())?;
        let groups = engine.aggregate(&caller, &request.filters, Granularity::All).await?;
        let parameter: Vec<Value> = groups.iter().map(|group| stats_parameter(group, &request.statistics)).collect();
        let rows = parameter.len();
        let response = axum::Json(json!({"resourceType": "Parameters", "parameter": parameter})).into_response();
        Ok(with_rows(response, rows))
    }
    .await;
    respond_fhir(&headers, result)
}

fn stats_parameter(group: &ObservationAggregate, statistics: &[Statistic]) -> Value {
    let mut part = vec![
        json!({"name": "subject", "valueReference": {"reference": format!("Patient/{}", group.patient_id)}}),
        json!({"name": "code", "valueCoding": {"system": group.coding_system, "code": group.coding_code}}),
    ];
    for statistic in statistics {
        let value = match statistic {
            Statistic::Count => Some(json!({"name": "count", "valueInteger": group.count})),
            Statistic::Min => group.min.map(|min| json!({"name": "min", "valueDecimal": min})),
            Statistic::Max => group.max.map(|max| json!({"name": "max", "valueDecimal": max})),
            Statistic::Mean => group.mean.map(|mean| json!({"name": "mean", "valueDecimal": mean})),
        };
        part.extend(value);
    }
    json!({"name": "statistic", "part": part})
}

/// `GET /api/v1/studies/{id}/observation_summary`: per patient, code and UTC day of the study, under the
/// study-scoped consent rule; practitioners of the study's organization only.
#[utoipa::path(get, path = "/api/v1/studies/{id}/observation_summary", tag = "studies",
    params(("id" = i64, Path, description = "study id"),
           ("code" = Option<String>, Query, description = "`system|code` or `code`, comma list"),
           ("start" = Option<String>, Query, description = "first day or instant (inclusive)"),
           ("end" = Option<String>, Query, description = "last day or instant (inclusive)"),
           ("granularity" = Option<String>, Query, description = "`day` (the default and only one)")),
    responses((status = 200, description = "`{\"results\": [{patientId, codingSystem, code, day, count, mean, min, max}]}`"),
              (status = 400, description = "a parameter cannot be understood"),
              (status = 403, description = "not a practitioner of the study's organization"),
              (status = 404, description = "no such study")))]
async fn study_summary(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Id(study_id): Id,
    url: RequestUrl,
) -> ApiResult<Response> {
    require_study_reader(&state, &caller, study_id).await?;
    let engine = engine(&state)?;
    let (filters, granularity) = parse_study_summary(study_id, &url.query, chrono::Utc::now())?;
    let groups = engine.aggregate(&caller, &filters, granularity).await?;
    let results: Vec<Value> = groups
        .iter()
        .map(|group| {
            json!({
                "patientId": group.patient_id,
                "codingSystem": group.coding_system,
                "code": group.coding_code,
                "day": group.day(),
                "count": group.count,
                "mean": group.mean,
                "min": group.min,
                "max": group.max,
            })
        })
        .collect();
    let rows = results.len();
    Ok(with_rows(axum::Json(json!({ "results": results })).into_response(), rows))
}

/// A practitioner (or superuser) of the study's organization; the study must exist (as the other study reads).
async fn require_study_reader(state: &AppState, caller: &Caller, study_id: i64) -> ApiResult<()> {
    let study = jhe_catalog::get_study(&state.pool, study_id).await?;
    require_member(caller, study.organization.id, "Current User does not have authorization to access this Study.")
}

/// Errors as OperationOutcome; `application/fhir+json` when the client asked for it.
fn respond_fhir(headers: &HeaderMap, result: ApiResult<Response>) -> Response {
    let mut response = result.unwrap_or_else(ApiError::into_fhir_response);
    let wants_fhir = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/fhir+json"));
    if wants_fhir {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
    }
    response
}
