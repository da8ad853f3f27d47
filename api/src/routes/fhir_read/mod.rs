//! FHIR R5 reads and searches of the resources kept in Postgres — Patient, Group (studies), Organization,
//! Practitioner, Device (data sources) — and the CapabilityStatement (jhe-compat §6.1–§6.6, §6.9, §6.10).
//!
//! * `GET /FHIR/R5/<Type>` and `POST /FHIR/R5/<Type>/_search` (form-encoded or JSON parameters, merged with the
//!   query string) answer a searchset Bundle; `GET /FHIR/R5/<Type>/<id>` the resource; `GET /FHIR/R5/metadata`
//!   the CapabilityStatement (public). Every path also answers with a trailing slash.
//! * Scoping (§4.3 with the gaps of §13.2 closed): practitioners see what surrounds their organizations, patients
//!   their own records, superusers everything; the catalog applies it inside the counting statement. `patient`,
//!   `patient._has:Group:member:_id` and `patient.organization` naming something outside the caller's
//!   organizations are a 403; a read of a resource the caller may not see is a 404, like a missing one.
//! * Types the reference keeps only in its imported-record store (Condition, Encounter, …) are searchable and
//!   always empty: jhe has no such store. Observation is routed by its own module.
//! * Errors are OperationOutcomes; bad input is a 4xx, never a 500.

mod params;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Auth, RequestUrl};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use jhe_catalog::{Caller, FhirAccess, FhirFilter, FhirQuery, FhirResourceKind, FhirRows, PageRequest};
use jhe_schemas::ErrorKind;
use jhe_schemas::fhir::bundle::{SearchsetLinks, searchset, summary_count};
use jhe_schemas::fhir::capability::{CapabilityContext, capability_statement, resource_types};
use jhe_schemas::fhir::outcome::OperationOutcome;
use jhe_schemas::fhir::render;
#[doc(hidden)]
pub use params::parse_for_fuzzing;
use params::{PageWanted, SearchRequest, invalid_page, normalize_key};
use serde::Serialize;
use serde_json::Value;
use std::sync::OnceLock;

pub(super) fn routes() -> Router<AppState> {
    // the CapabilityStatement's `date`: when this process started serving
    let _ = started_at_micros();
    let search = || get(search_get).post(search_post).fallback(method_not_allowed);
    let read_route = || get(read).fallback(method_not_allowed);
    let type_level = || get(search_get).fallback(method_not_allowed);
    Router::new()
        .route("/FHIR/R5/metadata", get(metadata).options(preflight))
        .route("/FHIR/R5/metadata/", get(metadata).options(preflight))
        .route("/FHIR/R5/{resource_type}", type_level())
        .route("/FHIR/R5/{resource_type}/", type_level())
        .route("/FHIR/R5/{resource_type}/_search", search())
        .route("/FHIR/R5/{resource_type}/_search/", search())
        .route("/FHIR/R5/{resource_type}/{id}", read_route())
        .route("/FHIR/R5/{resource_type}/{id}/", read_route())
        .layer(from_fn(negotiate_content_type))
}

fn started_at_micros() -> i64 {
    static STARTED: OnceLock<i64> = OnceLock::new();
    *STARTED.get_or_init(|| chrono::Utc::now().timestamp_micros())
}

/// How a resource type is served here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    Native(FhirResourceKind),
    /// Known only to the reference's imported-record store: empty here.
    Imported,
}

fn served(resource_type: &str) -> Result<Served, ApiError> {
    if let Some(kind) = FhirResourceKind::from_type_name(resource_type) {
        return Ok(Served::Native(kind));
    }
    if resource_type == "Observation" {
        // Observation has its own routes (the Parquet-backed query service); reaching this module means they
        // are not mounted in this server
        return Err(ApiError::new(ErrorKind::Unavailable, "Observation reads are not available on this server."));
    }
    if resource_types().any(|name| name == resource_type) {
        Ok(Served::Imported)
    } else {
        Err(ApiError::new(ErrorKind::NotFound, format!("Unsupported FHIR resource type: {resource_type}.")))
    }
}

/// What the caller may see before any parameter narrows it.
fn access_of(caller: &Caller) -> FhirAccess {
    if caller.is_superuser {
        FhirAccess::Everything
    } else if caller.is_practitioner() {
        FhirAccess::Organizations(caller.organization_ids())
    } else if let Some(patient_id) = caller.patient_id {
        FhirAccess::Patient(patient_id)
    } else {
        FhirAccess::Nothing
    }
}

fn not_authorized(reference: String) -> ApiError {
    ApiError::forbidden(format!("Current user is not authorized to access {reference}."))
}

/// The caller's query: their access, the parameters' filters and the location targets, each checked first for a
/// practitioner (403 when it is not theirs), ignored for a patient (who sees only their own records anyway).
async fn scoped_query(state: &AppState, caller: &Caller, request: &SearchRequest) -> Result<FhirQuery, ApiError> {
    let access = access_of(caller);
    let mut filters = request.filters.clone();
    let targets_apply = match &access {
        FhirAccess::Everything => true,
        FhirAccess::Organizations(organization_ids) => {
            for organization_id in &request.organizations {
                if !organization_ids.contains(organization_id) {
                    return Err(not_authorized(format!("Organization/{organization_id}")));
                }
            }
            for study_id in &request.studies {
                let owner = jhe_catalog::fhir_study_organization_id(&state.pool, *study_id).await?;
                if !owner.is_some_and(|owner| organization_ids.contains(&owner)) {
                    return Err(not_authorized(format!("Group/{study_id}")));
                }
            }
            for patient_id in &request.patients {
                let theirs = jhe_catalog::patient_organization_ids(&state.pool, *patient_id).await?;
                if !theirs.iter().any(|organization_id| organization_ids.contains(organization_id)) {
                    return Err(not_authorized(format!("Patient/{patient_id}")));
                }
            }
            true
        }
        FhirAccess::Patient(_) | FhirAccess::Nothing => false,
    };
    if targets_apply {
        filters.extend(request.patients.iter().map(|id| FhirFilter::Patient(*id)));
        filters.extend(request.studies.iter().map(|id| FhirFilter::Study(*id)));
        filters.extend(request.organizations.iter().map(|id| FhirFilter::Organization(*id)));
    }
    Ok(FhirQuery { access, filters, sort: request.sort.clone() })
}

/// Where a search's links point: the type's search URL and every parameter (query string and form body).
#[derive(Debug)]
struct SearchUrl {
    base: String,
    path: String,
    params: Vec<(String, String)>,
    /// The `self` link: the request URL as received for a GET, the equivalent GET for a POST.
    self_url: String,
}

impl SearchUrl {
    /// The search with `_page` set to `page` (removed for `None`), keys sorted as Django REST framework's
    /// paginator writes them (jhe-compat §6.6).
    fn with_page(&self, page: Option<u32>) -> String {
        let mut pairs: Vec<(String, String)> =
            self.params.iter().filter(|(key, _)| normalize_key(key) != "_page").cloned().collect();
        if let Some(page) = page {
            pairs.push(("_page".to_owned(), page.to_string()));
        }
        link_url(&self.base, &self.path, pairs)
    }
}

/// `base` + `path` + the form-encoded `pairs`, keys sorted (stably: repeated keys keep their order).
fn link_url(base: &str, path: &str, mut pairs: Vec<(String, String)>) -> String {
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    if pairs.is_empty() {
        return format!("{base}{path}");
    }
    let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    format!("{base}{path}?{query}")
}

fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .map(|q| url::form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
        .unwrap_or_default()
}

/// `Prefer: handling=strict` makes unknown parameters a 400 (FHIR R5 search §3.2.1.1.5).
fn strict_handling(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split([',', ';']).any(|part| part.trim().eq_ignore_ascii_case("handling=strict")))
}

fn resource_type_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(resource_type)| resource_type)
        .map_err(|_| ApiError::new(ErrorKind::NotFound, "Unsupported FHIR resource type."))
}

/// `GET /FHIR/R5/<Type>` (and `…/_search`).
async fn search_get(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    url: RequestUrl,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Auth(caller) = auth?;
        let resource_type = resource_type_of(path)?;
        let self_url = match query.as_deref() {
            Some(query) if !query.is_empty() => format!("{}{}?{query}", url.base, url.path),
            _ => format!("{}{}", url.base, url.path),
        };
        let search_url = SearchUrl { base: url.base, path: url.path, params: query_pairs(query.as_deref()), self_url };
        run_search(&state, &caller, &resource_type, &search_url, strict_handling(&headers)).await
    }
    .await;
    result.unwrap_or_else(ApiError::into_fhir_response)
}

/// `POST /FHIR/R5/<Type>/_search`: the query string and the body's parameters together; links are the
/// equivalent GET searches.
async fn search_post(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    url: RequestUrl,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut from_body = Vec::new();
    let result = async {
        let Auth(caller) = auth?;
        let resource_type = resource_type_of(path)?;
        let body =
            body.map_err(|rejection| ApiError::bad_request(format!("could not read the request body: {rejection}")))?;
        let mut params = query_pairs(query.as_deref());
        from_body = body_params(&headers, &body)?;
        params.extend(from_body.iter().cloned());
        let path = format!("/FHIR/R5/{resource_type}");
        let self_url = link_url(&url.base, &path, params.clone());
        let search_url = SearchUrl { base: url.base, path, params, self_url };
        run_search(&state, &caller, &resource_type, &search_url, strict_handling(&headers)).await
    }
    .await;
    crate::audit::with_body_query(result.unwrap_or_else(ApiError::into_fhir_response), &from_body)
}

/// Search parameters in a `_search` body: `application/x-www-form-urlencoded` (FHIR's form), or JSON (a
/// `Parameters` resource, or an object of parameter names to values).
fn body_params(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let content_type =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").trim().to_ascii_lowercase();
    if content_type.is_empty() || content_type.starts_with("application/x-www-form-urlencoded") {
        return Ok(url::form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect());
    }
    if !content_type.contains("json") {
        return Err(ApiError::bad_request(format!(
            "Unsupported media type \"{content_type}\" in a _search body; send application/x-www-form-urlencoded \
             or application/fhir+json"
        )));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("JSON parse error - {e}")))?;
    json_params(&value)
}

fn json_params(value: &Value) -> Result<Vec<(String, String)>, ApiError> {
    let scalar = |value: &Value| match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    };
    let Value::Object(object) = value else {
        return Err(ApiError::bad_request("a JSON _search body must be a Parameters resource or an object"));
    };
    let mut pairs = Vec::new();
    if object.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
        for parameter in object.get("parameter").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
            let name = parameter.get("name").and_then(Value::as_str);
            let value = parameter.as_object().and_then(|fields| {
                fields.iter().find(|(key, _)| key.starts_with("value")).and_then(|(_, value)| scalar(value))
            });
            match (name, value) {
                (Some(name), Some(value)) => pairs.push((name.to_owned(), value)),
                _ => {
                    return Err(ApiError::bad_request(
                        "each Parameters.parameter needs a name and a primitive value[x]",
                    ));
                }
            }
        }
        return Ok(pairs);
    }
    for (name, value) in object {
        match value {
            Value::Array(items) => {
                for item in items {
                    let text = scalar(item)
                        .ok_or_else(|| ApiError::bad_request(format!("{name}: expected strings or numbers")))?;
                    pairs.push((name.clone(), text));
                }
            }
            other => {
                let text = scalar(other)
                    .ok_or_else(|| ApiError::bad_request(format!("{name}: expected a string or number")))?;
                pairs.push((name.clone(), text));
            }
        }
    }
    Ok(pairs)
}

async fn run_search(
    state: &AppState,
    caller: &Caller,
    resource_type: &str,
    url: &SearchUrl,
    strict: bool,
) -> Result<Response, ApiError> {
    let served = served(resource_type)?;
    let kind = match served {
        Served::Native(kind) => Some(kind),
        Served::Imported => None,
    };
    let request = params::parse(kind, &url.params, strict)?;
    let query = scoped_query(state, caller, &request).await?;
    let size = request.count;
    let Some(kind) = kind else {
        // nothing is stored for these types; the search still pages like any other
        if request.summary_count {
            return Ok(json(&summary_count(0, &url.self_url)));
        }
        if request.page != PageWanted::Number(1) && request.page != PageWanted::Last {
            return Err(invalid_page());
        }
        let links = SearchsetLinks { self_url: url.self_url.clone(), previous: None, next: None };
        return Ok(json(&searchset::<()>(0, &[], &links)));
    };
    if request.summary_count {
        let total = jhe_catalog::fhir_count(&state.pool, kind, &query).await?;
        return Ok(json(&summary_count(u64::try_from(total).unwrap_or_default(), &url.self_url)));
    }
    let number = match request.page {
        PageWanted::Number(number) => number,
        PageWanted::Last => {
            let total = jhe_catalog::fhir_count(&state.pool, kind, &query).await?;
            let last = page_count(total, size);
            params::check_page_depth("_page", "last", last, size)?;
            last
        }
    };
    let page =
        jhe_catalog::fhir_search(&state.pool, kind, &query, PageRequest { page: number, page_size: size }).await?;
    let pages = page_count(page.total, size);
    if number > pages {
        return Err(invalid_page());
    }
    let links = SearchsetLinks {
        self_url: url.self_url.clone(),
        previous: match number {
            1 => None,
            2 => Some(url.with_page(None)),
            n => Some(url.with_page(Some(n - 1))),
        },
        next: (number < pages).then(|| url.with_page(Some(number + 1))),
    };
    let total = u64::try_from(page.total).unwrap_or_default();
    Ok(match &page.rows {
        FhirRows::Patients(rows) => bundle(total, rows.iter().map(render::patient).collect(), &links),
        FhirRows::Groups(rows) => bundle(total, rows.iter().map(render::group).collect(), &links),
        FhirRows::Organizations(rows) => bundle(total, rows.iter().map(render::organization).collect(), &links),
        FhirRows::Practitioners(rows) => bundle(total, rows.iter().map(render::practitioner).collect(), &links),
        FhirRows::Devices(rows) => bundle(total, rows.iter().map(render::device).collect(), &links),
    })
}

/// Pages of `size` holding `total` rows; an empty result still has its first page.
fn page_count(total: i64, size: u32) -> u32 {
    let size = i64::from(size.max(1));
    u32::try_from(((total + size - 1) / size).max(1)).unwrap_or(u32::MAX)
}

fn bundle<R: Serialize>(total: u64, resources: Vec<R>, links: &SearchsetLinks) -> Response {
    let mut response = json(&searchset(total, &resources, links));
    response.extensions_mut().insert(crate::audit::AuditRows(resources.len() as i64));
    response
}

fn json<T: Serialize>(value: &T) -> Response {
    (StatusCode::OK, axum::Json(value)).into_response()
}

/// `GET /FHIR/R5/<Type>/<id>`.
async fn read(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Response {
    let result = async {
        let Auth(caller) = auth?;
        let Path((resource_type, raw_id)) =
            path.map_err(|_| ApiError::new(ErrorKind::NotFound, "Unsupported FHIR resource type."))?;
        let missing = || ApiError::new(ErrorKind::NotFound, format!("{resource_type}/{raw_id} not found."));
        let Served::Native(kind) = served(&resource_type)? else {
            return Err(missing());
        };
        // jhe-native ids are integers; anything else (an imported record's UUID) is not here
        let id: i64 = raw_id.parse().map_err(|_| missing())?;
        let query =
            FhirQuery { access: access_of(&caller), filters: vec![FhirFilter::Ids(vec![id])], sort: Vec::new() };
        let page = jhe_catalog::fhir_search(&state.pool, kind, &query, PageRequest { page: 1, page_size: 1 }).await?;
        let response = match &page.rows {
            FhirRows::Patients(rows) => rows.first().map(|row| json(&render::patient(row))),
            FhirRows::Groups(rows) => rows.first().map(|row| json(&render::group(row))),
            FhirRows::Organizations(rows) => rows.first().map(|row| json(&render::organization(row))),
            FhirRows::Practitioners(rows) => rows.first().map(|row| json(&render::practitioner(row))),
            FhirRows::Devices(rows) => rows.first().map(|row| json(&render::device(row))),
        };
        response.ok_or_else(missing)
    }
    .await;
    result.unwrap_or_else(ApiError::into_fhir_response)
}

/// `GET /FHIR/R5/metadata`: public, cacheable for an hour, readable from any origin (as the reference serves it).
async fn metadata(url: RequestUrl) -> Response {
    let statement = capability_statement(&CapabilityContext {
        base_url: &url.base,
        software_name: "JupyterHealth Exchange",
        software_version: Some(crate::VERSION),
        started_at_micros: started_at_micros(),
    });
    let mut response = json(&statement);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// The CORS preflight of `metadata`.
async fn preflight() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("3600"));
    response
}

/// A method these resources do not serve (create, update, delete): 405 as an OperationOutcome.
async fn method_not_allowed(method: Method) -> Response {
    let outcome = OperationOutcome::error(format!("Method \"{method}\" not allowed."));
    (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")], axum::Json(outcome)).into_response()
}

/// Answers `application/fhir+json` when the client asks for it (`Accept` or `_format`), `application/json`
/// otherwise — the Python client sends no `Accept` at all (jhe-compat §6.1, §11.1).
async fn negotiate_content_type(request: Request, next: Next) -> Response {
    let accept = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let format_asks = query_pairs(request.uri().query()).iter().any(|(key, value)| {
        normalize_key(key) == "_format" && (value.contains("fhir") || value.trim().eq_ignore_ascii_case("json"))
    });
    let wants_fhir = format_asks || accept.to_ascii_lowercase().contains("application/fhir+json");
    let mut response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|content_type| content_type.starts_with("application/json"));
    if wants_fhir && is_json {
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+json"));
    }
    response
}
