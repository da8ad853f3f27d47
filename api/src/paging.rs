//! The REST list envelope `{count, next, previous, results}` with absolute links (jhe-compat §2.4).

use crate::error::{ApiError, ApiResult};
use crate::extract::RequestUrl;
use axum::response::Response;
use jhe_catalog::{Page, PageRequest};
use serde::Serialize;

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
    let page = match url.param("page") {
        None | Some("") => 1,
        Some(text) => text.parse::<u32>().ok().filter(|p| *p >= 1).ok_or_else(invalid_page)?,
    };
    let page_size = match url.param("page_size") {
        None | Some("") => default_size,
        Some(text) => match text.parse::<u32>() {
            Ok(size) if size >= 1 => size.min(MAX_PAGE_SIZE),
            _ => default_size,
        },
    };
    Ok(PageRequest { page, page_size })
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
    let size = i64::from(request.page_size);
    let pages = ((page.count + size - 1) / size).max(1);
    let number = i64::from(request.page);
    if number > pages {
        return Err(invalid_page());
    }
    let next = (number < pages).then(|| link(url, Some((number + 1) as u32)));
    let previous = match number {
        1 => None,
        2 => Some(link(url, None)),
        n => Some(link(url, Some((n - 1) as u32))),
    };
    let rows = page.items.len() as i64;
    let mut response = crate::extract::ok(&Envelope { count: page.count, next, previous, results: page.items })?;
    response.extensions_mut().insert(crate::audit::AuditRows(rows));
    Ok(response)
}

/// Lists the reference serves without a pagination class (clients, settings, invitations, API keys): pages of
/// 1000, `page` honoured, `pageSize` ignored (jhe-compat §2.4).
pub(crate) fn fixed_page_request(url: &RequestUrl) -> ApiResult<PageRequest> {
    Ok(PageRequest { page_size: MAX_PAGE_SIZE, ..page_request(url, MAX_PAGE_SIZE)? })
}
