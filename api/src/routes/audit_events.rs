//! `/api/v1/audit_events`: the audit trail of reads, searches and exports (superuser only; newest first).

use crate::AppState;
use crate::access::require_superuser;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, RequestUrl};
use crate::paging::{DEFAULT_PAGE_SIZE, page_request, paged};
use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, NaiveDate, Utc};
use jhe_catalog::{AuditFilter, Page};
use serde::Serialize;

#[derive(utoipa::OpenApi)]
#[openapi(paths(list))]
pub(super) struct ApiDoc;

pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/audit_events", get(list))
}

#[derive(Serialize)]
struct AuditEventOut {
    id: i64,
    at: DateTime<Utc>,
    user_id: Option<i64>,
    action: String,
    resource_type: String,
    method: String,
    path: String,
    query: String,
    status: i16,
    row_count: Option<i64>,
    duration_us: i64,
    request_id: Option<String>,
}

/// `2026-01-02` (midnight UTC) or an RFC 3339 instant.
fn instant(url: &RequestUrl, name: &str) -> ApiResult<Option<DateTime<Utc>>> {
    let Some(text) = url.param(name).filter(|text| !text.is_empty()) else { return Ok(None) };
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(instant.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .map(|midnight| Some(midnight.and_utc()))
        .ok_or_else(|| {
            ApiError::bad_request(format!("`{name}` must be a date (2026-01-02) or an RFC 3339 time, not {text:?}."))
        })
}

#[utoipa::path(get, path = "/api/v1/audit_events", tag = "audit", summary = "The audit trail (superuser): who read, searched or exported what, when, and how many rows",
    params(
        ("user_id" = Option<i64>, Query, description = "only this user's requests"),
        ("action" = Option<String>, Query, description = "read, search, export, analytics, consent (consent writes) or membership (a patient's organizations changed)"),
        ("resource_type" = Option<String>, Query, description = "e.g. Observation or patients"),
        ("since" = Option<String>, Query, description = "from this date or instant (inclusive)"),
        ("until" = Option<String>, Query, description = "before this date or instant"),
        ("page" = Option<u32>, Query, description = "page number"),
        ("page_size" = Option<u32>, Query, description = "rows per page (max 1000)")),
    responses((status = 200, description = "success"), (status = 400, description = "invalid input; `detail` says what to change"), (status = 401, description = "no valid bearer token"), (status = 403, description = "the caller may not do this")))]
async fn list(State(state): State<AppState>, Auth(caller): Auth, url: RequestUrl) -> ApiResult<Response> {
    require_superuser(&caller)?;
    let page = page_request(&url, DEFAULT_PAGE_SIZE)?;
    let action = url.param("action").filter(|text| !text.is_empty()).map(str::to_owned);
    if let Some(action) = &action
        && !["read", "search", "export", "analytics", "consent", "membership"].contains(&action.as_str())
    {
        return Err(ApiError::bad_request(format!(
            "`action` must be one of read, search, export, analytics, consent, membership, not {action:?}."
        )));
    }
    let filter = AuditFilter {
        user_id: url.int_param("user_id")?,
        action,
        resource_type: url.param("resource_type").filter(|text| !text.is_empty()).map(str::to_owned),
        since: instant(&url, "since")?,
        until: instant(&url, "until")?,
    };
    let offset = i64::from(page.page - 1) * page.limit();
    let (count, events) = jhe_catalog::audit_events(&state.pool, &filter, offset, page.limit()).await?;
    let items = events
        .into_iter()
        .map(|(id, event)| AuditEventOut {
            id,
            at: event.at,
            user_id: event.user_id,
            action: event.action,
            resource_type: event.resource_type,
            method: event.method,
            path: event.path,
            query: event.query,
            status: event.status,
            row_count: event.row_count,
            duration_us: event.duration_us,
            request_id: event.request_id,
        })
        .collect();
    paged(&url, page, Page { count, items })
}
