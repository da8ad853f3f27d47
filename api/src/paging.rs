//! The REST list envelope `{count, next, previous, results}` with absolute links (jhe-compat §2.4). A page may end
//! at most [`MAX_PAGE_DEPTH`] rows deep (`page` × `page_size`).

use crate::error::{ApiError, ApiResult};
use crate::extract::RequestUrl;
use axum::response::Response;
use jhe_catalog::{Page, PageRequest};
use jhe_query::fhir_params::{MAX_PAGE_DEPTH, within_page_depth};
use serde::Serialize;
use std::num::IntErrorKind;

pub(crate) const DEFAULT_PAGE_SIZE: u32 = 20;
pub(crate) const MAX_PAGE_SIZE: u32 = 1000;

fn invalid_page() -> ApiError {
    ApiError::not_found("page").with_detail("Invalid page.")
}

impl ApiError {
    fn with_detail(self, detail: &str) -> Self {
        ApiError::new(jhe_schemas::ErrorKind::NotFound, detail)
    }
}

/// `page` and `page_size` from the query; a page size above the maximum is capped as the reference does.
pub(crate) fn page_request(url: &RequestUrl, default_size: u32) -> ApiResult<PageRequest> {
    let page_size = match url.param("page_size") {
        None | Some("") => default_size,
        Some(text) => match text.parse::<u32>() {
            Ok(size) if size >= 1 => size.min(MAX_PAGE_SIZE),
            // a size too large for the type is a large size
            Err(error) if *error.kind() == IntErrorKind::PosOverflow => MAX_PAGE_SIZE,
            _ => default_size,
        },
    };
    within_depth(page_number(url)?, page_size)
}

/// `page`: a whole number from 1 (of any length); anything else is Django REST framework's 404 `Invalid page.`.
fn page_number(url: &RequestUrl) -> ApiResult<u64> {
    match url.param("page") {
        None | Some("") => Ok(1),
        Some(text) => match text.parse::<u64>() {
            Ok(page) if page >= 1 => Ok(page),
            Err(error) if *error.kind() == IntErrorKind::PosOverflow => Ok(u64::MAX),
            _ => Err(invalid_page()),
        },
    }
}

/// Page `page` of `page_size` rows, or a 400 when it ends past [`MAX_PAGE_DEPTH`] rows: skipping the rows before
/// it would sort every one of them.
fn within_depth(page: u64, page_size: u32) -> ApiResult<PageRequest> {
    match u32::try_from(page) {
        Ok(page) if within_page_depth(u64::from(page), u64::from(page_size)) => Ok(PageRequest { page, page_size }),
        _ => Err(ApiError::bad_request(format!(
            "page: page {page} of {page_size} would end past row {MAX_PAGE_DEPTH}, the deepest a page may reach; \
             narrow the list with its filters."
        ))),
    }
}

#[derive(Serialize)]
struct Envelope<T> {
    count: i64,
    next: Option<String>,
    previous: Option<String>,
    results: Vec<T>,
}

fn link(url: &RequestUrl, page: Option<u32>) -> String {
    let mut pairs: Vec<(String, String)> = url.query.iter().filter(|(k, _)| k != "page").cloned().collect();
    if let Some(page) = page {
        pairs.push(("page".to_owned(), page.to_string()));
    }
    pairs.sort();
    if pairs.is_empty() {
        return format!("{}{}", url.base, url.path);
    }
    let query: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    format!("{}{}?{}", url.base, url.path, query)
}

/// The page as the REST envelope. A page past the end is a 404 `Invalid page.`, except an empty first page.
pub(crate) fn paged<T: Serialize>(url: &RequestUrl, request: PageRequest, page: Page<T>) -> ApiResult<Response> {
    let size = i64::from(request.page_size.max(1));
    let pages = (page.count.saturating_add(size - 1) / size).max(1);
    let number = i64::from(request.page);
    if number > pages {
        return Err(invalid_page());
    }
    let next = (number < pages).then(|| link(url, Some(request.page.saturating_add(1))));
    let previous = match request.page {
        0 | 1 => None,
        2 => Some(link(url, None)),
        n => Some(link(url, Some(n - 1))),
    };
    let rows = page.items.len() as i64;
    let mut response = crate::extract::ok(&Envelope { count: page.count, next, previous, results: page.items })?;
    response.extensions_mut().insert(crate::audit::AuditRows(rows));
    Ok(response)
}

/// Lists the reference serves without a pagination class (clients, settings, invitations, API keys): pages of
/// 1000, `page` honoured, `pageSize` ignored (jhe-compat §2.4).
pub(crate) fn fixed_page_request(url: &RequestUrl) -> ApiResult<PageRequest> {
    within_depth(page_number(url)?, MAX_PAGE_SIZE)
}
