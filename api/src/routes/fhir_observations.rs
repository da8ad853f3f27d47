//! Observation reads on the FHIR API (jhe-compat §6.3–§6.6, §6.9): `GET /FHIR/R5/Observation` (search),
//! `POST /FHIR/R5/Observation/_search` (the same, parameters also in a form body) and
//! `GET /FHIR/R5/Observation/{id}`. The query crate parses the parameters, applies consent and pages; this module
//! speaks HTTP: the searchset Bundle, its absolute links and OperationOutcome errors.
//!
//! Links: `self` is the request URL; `next` keeps every parameter of the request (keys sorted, values
//! re-encoded) with `_page` set to the next page number and `_cursor` to where it starts, so following it costs
//! what the first page cost; `previous` is the offset link of the page before (no `_page` for page 1), given while
//! that page lies within offset paging's depth (`MAX_PAGE_DEPTH` rows).

use crate::audit::AuditRows;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jhe_catalog::{Caller, CodeTexts};
use jhe_query::fhir_params::{CURSOR_PARAM, PAGE_PARAM, parse_search};
use jhe_query::{QueryEngine, SearchPage, SearchRequest};
use jhe_schemas::ErrorKind;
use jhe_schemas::ObservationRecord;
use jhe_schemas::fhir::bundle::{SearchsetLinks, searchset, summary_count};
use jhe_schemas::fhir::render;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, RequestUrl};

const OBSERVATION_PATH: &str = "/FHIR/R5/Observation";
/// The most bytes of a form-encoded `_search` body (parameters, not data).
const MAX_FORM_BYTES: usize = 64 * 1024;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route(OBSERVATION_PATH, get(search))
        .route("/FHIR/R5/Observation/", get(search))
        .route(
            "/FHIR/R5/Observation/_search",
            post(search_by_post).layer(axum::extract::DefaultBodyLimit::max(MAX_FORM_BYTES)),
        )
        .route("/FHIR/R5/Observation/{id}", get(read))
}

/// The engine, or 503 on a server that runs no data plane.
pub(super) fn engine(state: &AppState) -> ApiResult<&QueryEngine> {
    state.query.as_ref().ok_or_else(|| {
        ApiError::new(ErrorKind::Unavailable, "observation reads are not enabled on this server (no data plane)")
    })
}

/// `(key, value)` pairs of a query string or form body, decoded, keys as sent.
fn decode_pairs(encoded: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(encoded).map(|(key, value)| (key.into_owned(), value.into_owned())).collect()
}

async fn search(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    url: RequestUrl,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = decode_pairs(query.as_deref().unwrap_or_default().as_bytes());
    let self_url = match query.as_deref() {
        Some(query) if !query.is_empty() => format!("{}{}?{query}", url.base, url.path),
        _ => format!("{}{}", url.base, url.path),
    };
    let links = Links { base: format!("{}{}", url.base, url.path), self_url };
    respond(&headers, run_search(&state, auth, &params, &links).await)
}

/// `POST …/_search`: the parameters of the query string and of an `application/x-www-form-urlencoded` body.
async fn search_by_post(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    url: RequestUrl,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !body.is_empty() && !content_type.starts_with("application/x-www-form-urlencoded") {
        let error = ApiError::bad_request(format!(
            "a _search body must be application/x-www-form-urlencoded, not `{content_type}`"
        ));
        return respond(&headers, Err(error));
    }
    let mut params = decode_pairs(query.as_deref().unwrap_or_default().as_bytes());
    let body_params = decode_pairs(&body);
    params.extend(body_params.iter().cloned());
    // the links are those of the equivalent GET
    let base = format!("{}{OBSERVATION_PATH}", url.base);
    let links = Links { self_url: with_query(&base, params.clone()), base };
    crate::audit::with_body_query(respond(&headers, run_search(&state, auth, &params, &links).await), &body_params)
}

/// Where links point: the search URL without a query, and the request's own URL.
struct Links {
    base: String,
    self_url: String,
}

async fn run_search(
    state: &AppState,
    auth: Result<Auth, ApiError>,
    params: &[(String, String)],
    links: &Links,
) -> ApiResult<Response> {
    let Auth(caller) = auth?;
    let engine = engine(state)?;
    let request = parse_search(params, chrono::Utc::now())?;
    let page = engine.search(&caller, &request).await?;
    if request.summary_count {
        let mut response = axum::Json(summary_count(page.total, &links.self_url)).into_response();
        response.extensions_mut().insert(AuditRows(i64::try_from(page.total).unwrap_or(i64::MAX)));
        return Ok(response);
    }
    let texts = code_texts(state, &page.records).await?;
    let resources: Vec<_> = page
        .records
        .iter()
        .map(|record| render::observation(record, texts.get(&record.coding_system, &record.coding_code)))
        .collect();
    let links = page_links(links, params, &request, &page);
    let mut response = axum::Json(searchset(page.total, &resources, &links)).into_response();
    response.extensions_mut().insert(AuditRows(resources.len() as i64));
    Ok(response)
}

/// The code table's text of each code among `records` (rendered as `code.coding[0].display`).
pub(super) async fn code_texts(state: &AppState, records: &[ObservationRecord]) -> ApiResult<CodeTexts> {
    Ok(engine(state)?.code_texts(records).await?)
}

/// `base?k=v&…` with the keys sorted (repeated keys keep their order) and the values re-encoded.
fn with_query(base: &str, mut params: Vec<(String, String)>) -> String {
    if params.is_empty() {
        return base.to_owned();
    }
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let query = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    format!("{base}?{query}")
}

fn page_links(
    links: &Links,
    params: &[(String, String)],
    request: &SearchRequest,
    page: &SearchPage,
) -> SearchsetLinks {
    let others: Vec<(String, String)> =
        params.iter().filter(|(key, _)| key != PAGE_PARAM && key != CURSOR_PARAM).cloned().collect();
    let link = |number: u32, cursor: Option<String>| {
        let mut params = others.clone();
        if number > 1 {
            params.push((PAGE_PARAM.to_owned(), number.to_string()));
        }
        if let Some(cursor) = cursor {
            params.push((CURSOR_PARAM.to_owned(), cursor));
        }
        with_query(&links.base, params)
    };
    SearchsetLinks {
        self_url: links.self_url.clone(),
        // an offset link deeper than offset paging goes would only answer 400: a cursor walk that far has none
        previous: (request.page > 1
            && jhe_query::fhir_params::within_page_depth(
                u64::from(request.page - 1),
                u64::try_from(request.count).unwrap_or(u64::MAX),
            ))
        .then(|| link(request.page - 1, None)),
        next: page.next.as_ref().map(|cursor| link(request.page.saturating_add(1), Some(cursor.encode()))),
    }
}

async fn read(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let Auth(caller) = auth?;
        let record = read_one(&state, &caller, &id).await?;
        let texts = code_texts(&state, std::slice::from_ref(&record)).await?;
        let resource = render::observation(&record, texts.get(&record.coding_system, &record.coding_code));
        Ok(axum::Json(resource).into_response())
    }
    .await;
    respond(&headers, result)
}

/// The observation with this id if the caller may see it; any other id (not a number, missing, not visible) is
/// a 404, so ids cannot be probed.
pub(super) async fn read_one(state: &AppState, caller: &Caller, id: &str) -> ApiResult<ObservationRecord> {
    let engine = engine(state)?;
    let Ok(id) = id.trim().parse::<i64>() else {
        return Err(ApiError::not_found("Observation"));
    };
    engine.observation(caller, id).await?.ok_or_else(|| ApiError::not_found("Observation"))
}

/// The answer in FHIR form: errors as OperationOutcome; `application/fhir+json` when the client asked for it.
fn respond(headers: &HeaderMap, result: ApiResult<Response>) -> Response {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn previous_link(page: u32, count: usize) -> Option<String> {
        let links = Links { base: "http://x/FHIR/R5/Observation".into(), self_url: "http://x/self".into() };
        let request = SearchRequest { page, count, ..SearchRequest::default() };
        let found = SearchPage { total: 0, records: Vec::new(), next: None };
        page_links(&links, &[], &request, &found).previous
    }

    #[test]
    fn previous_links_stay_within_offset_paging() {
        assert_eq!(previous_link(1, 1000), None);
        assert_eq!(previous_link(2, 1000).as_deref(), Some("http://x/FHIR/R5/Observation"));
        assert_eq!(previous_link(101, 1000).as_deref(), Some("http://x/FHIR/R5/Observation?_page=100"));
        // a cursor walk past the depth offset paging serves gets no link that could only answer 400
        assert_eq!(previous_link(102, 1000), None);
    }
}
