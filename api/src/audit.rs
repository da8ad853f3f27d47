//! The audit trail of reads, searches and exports (who, which query, how many rows, when), and of changes to a
//! patient's consents and organizations (who recorded them).
//!
//! A middleware around the whole router notes every request that reads health or people data: `GET` under
//! `/FHIR/R5/` and `/api/v1/`, `POST …/_search`, and the `$export`/`$`-operations; and every write of a patient's
//! consents or organization memberships. The `Auth` extractor writes the
//! caller into the request's [`AuditSlot`]; a handler that knows how many rows it returned attaches [`AuditRows`]
//! (and, for form-body searches, [`AuditQuery`]) to its response. The event is handed to a bounded channel and
//! written by one background task in multi-row inserts, so a request pays a channel send (microseconds), not a
//! database round trip. When the writer falls behind, requests wait for room in the channel rather than drop
//! events: the trail is complete or the service slows down, never silently partial.

use axum::extract::{Request, State};
use axum::http::{HeaderName, Method};
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use jhe_catalog::AuditEvent;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Events waiting for the writer before requests have to wait.
const CHANNEL_CAPACITY: usize = 65_536;
/// Events per insert.
const WRITE_BATCH: usize = 2_000;
/// Longest stored query text (longer ones are cut, marked with `…`).
const MAX_QUERY_CHARS: usize = 4_096;

/// The handle requests use to record events; cheap to clone. `disabled()` records nothing (benchmarks only).
#[derive(Debug, Clone)]
pub struct AuditLog {
    sender: Option<mpsc::Sender<AuditEvent>>,
}

impl AuditLog {
    /// Starts the writer task on the current runtime.
    pub fn start(pool: PgPool) -> Self {
        let (sender, receiver) = mpsc::channel(CHANNEL_CAPACITY);
        tokio::spawn(write_events(pool, receiver));
        Self { sender: Some(sender) }
    }

    /// No audit trail (`JHE_AUDIT=off`; for measuring the trail's own cost, not for production).
    pub fn disabled() -> Self {
        Self { sender: None }
    }

    pub fn is_enabled(&self) -> bool {
        self.sender.is_some()
    }

    async fn record(&self, event: AuditEvent) {
        let Some(sender) = &self.sender else { return };
        match sender.try_send(event) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                metrics::counter!("jhe_audit_backpressure_total").increment(1);
                // the writer is behind: wait for room rather than lose the event
                let _ = sender.send(event).await;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::error!("the audit writer has stopped; an audit event was not recorded");
            }
        }
    }
}

/// Writes events in batches until every sender is gone. A failed insert is retried (with backoff) until it works,
/// holding the batch; meanwhile the channel fills and requests slow down.
async fn write_events(pool: PgPool, mut receiver: mpsc::Receiver<AuditEvent>) {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while receiver.recv_many(&mut batch, WRITE_BATCH).await > 0 {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match jhe_catalog::insert_audit_events(&pool, &batch).await {
                Ok(()) => {
                    metrics::counter!("jhe_audit_events_total").increment(batch.len() as u64);
                    metrics::histogram!("jhe_audit_write_seconds").record(started.elapsed().as_secs_f64());
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, events = batch.len(), "writing audit events failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        batch.clear();
    }
}

/// Per-request note the `Auth` extractor fills with the caller.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditSlot(Arc<AtomicI64>);

/// No caller (yet).
const NO_USER: i64 = i64::MIN;

impl AuditSlot {
    pub(crate) fn set_user(&self, user_id: i64) {
        self.0.store(user_id, Ordering::Relaxed);
    }

    fn user(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|id| *id != NO_USER)
    }
}

/// Rows a read returned; handlers attach it to their response (`response.extensions_mut().insert(..)`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AuditRows(pub(crate) i64);

/// The query of a search whose parameters came in a form body.
#[derive(Debug, Clone)]
pub(crate) struct AuditQuery(pub(crate) String);

/// Records the parameters a `_search` body carried with the response, so its audit event names the whole query
/// (the middleware sees only the URL's query string).
pub(crate) fn with_body_query(
    mut response: axum::response::Response,
    params: &[(String, String)],
) -> axum::response::Response {
    if !params.is_empty() {
        let encoded = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
        response.extensions_mut().insert(AuditQuery(encoded));
    }
    response
}

/// What kind of audited access a request is, and the resource it names; `None`: not audited.
fn classify(method: &Method, path: &str) -> Option<(&'static str, String)> {
    let (rest, fhir) = if let Some(rest) = path.strip_prefix("/FHIR/R5/") {
        (rest, true)
    } else if let Some(rest) = path.strip_prefix("/api/v1/") {
        (rest, false)
    } else {
        return None;
    };
    let mut segments = rest.split('/').filter(|segment| !segment.is_empty());
    let resource = segments.next()?;
    // public documents with no personal data
    if fhir && (resource == "metadata" || resource.starts_with('.')) {
        return None;
    }
    let last = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
    if let Some(change) = audited_change(method, fhir, resource, path) {
        return Some((change, resource.to_owned()));
    }
    let action = if last.contains("$export") || path.contains("/$export-") {
        "export"
    } else if last.starts_with('$') {
        "analytics"
    } else if *method == Method::POST && last == "_search" {
        "search"
    } else if *method == Method::GET || *method == Method::HEAD {
        if fhir && segments.next().is_none() { "search" } else { "read" }
    } else {
        return None;
    };
    Some((action, resource.to_owned()))
}

/// Changes that are audited like reads: who recorded or withdrew a patient's consent (`consent`), and who changed
/// the organizations a patient belongs to (`membership`: adding, removing, and the requests a patient accepts).
fn audited_change(method: &Method, fhir: bool, resource: &str, path: &str) -> Option<&'static str> {
    if fhir || resource != "patients" || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let path = path.trim_end_matches('/');
    if path.ends_with("/consents") {
        Some("consent")
    } else if path.ends_with("/global_add_organization")
        || path.contains("/organization_requests")
        || (*method == Method::DELETE && path.rsplit('/').next().is_some_and(|id| id.parse::<i64>().is_ok()))
    {
        Some("membership")
    } else {
        None
    }
}

fn clipped(text: &str) -> String {
    match text.char_indices().nth(MAX_QUERY_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The middleware (mounted inside the request-id layer, so the id is known).
pub(crate) async fn audit_requests(State(log): State<AuditLog>, mut request: Request, next: Next) -> Response {
    if !log.is_enabled() {
        return next.run(request).await;
    }
    let Some((action, resource_type)) = classify(request.method(), request.uri().path()) else {
        return next.run(request).await;
    };
    let started = Instant::now();
    let at = Utc::now();
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let query = clipped(request.uri().query().unwrap_or(""));
    let request_id = request
        .headers()
        .get(HeaderName::from_static("x-request-id"))
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let slot = AuditSlot::default();
    slot.0.store(NO_USER, Ordering::Relaxed);
    request.extensions_mut().insert(slot.clone());

    let response = next.run(request).await;

    let query = match response.extensions().get::<AuditQuery>() {
        Some(AuditQuery(form)) if query.is_empty() => clipped(form),
        Some(AuditQuery(form)) => clipped(&format!("{query}&{form}")),
        None => query,
    };
    let event = AuditEvent {
        at,
        user_id: slot.user(),
        action: action.to_owned(),
        resource_type,
        method,
        path,
        query,
        status: i16::try_from(response.status().as_u16()).unwrap_or(i16::MAX),
        row_count: response.extensions().get::<AuditRows>().map(|rows| rows.0),
        duration_us: i64::try_from(started.elapsed().as_micros()).unwrap_or(i64::MAX),
        request_id,
    };
    log.record(event).await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_reads_searches_exports_and_skips_the_rest() {
        let get = Method::GET;
        assert_eq!(classify(&get, "/FHIR/R5/Observation"), Some(("search", "Observation".into())));
        assert_eq!(classify(&get, "/FHIR/R5/Observation/"), Some(("search", "Observation".into())));
        assert_eq!(classify(&get, "/FHIR/R5/Observation/12"), Some(("read", "Observation".into())));
        assert_eq!(classify(&Method::POST, "/FHIR/R5/Patient/_search"), Some(("search", "Patient".into())));
        assert_eq!(classify(&get, "/FHIR/R5/Observation/$lastn"), Some(("analytics", "Observation".into())));
        assert_eq!(classify(&get, "/FHIR/R5/Group/30001/$export"), Some(("export", "Group".into())));
        assert_eq!(classify(&get, "/api/v1/patients"), Some(("read", "patients".into())));
        assert_eq!(classify(&get, "/api/v1/patients/40001/consents"), Some(("read", "patients".into())));
        assert_eq!(classify(&get, "/FHIR/R5/metadata"), None);
        assert_eq!(classify(&get, "/FHIR/R5/.well-known/smart-configuration"), None);
        assert_eq!(classify(&Method::POST, "/FHIR/R5/Observation"), None, "uploads are not reads");
        assert_eq!(classify(&Method::PATCH, "/api/v1/patients/1"), None);
        let consent = Some(("consent", "patients".into()));
        assert_eq!(classify(&Method::POST, "/api/v1/patients/40001/consents"), consent);
        assert_eq!(classify(&Method::DELETE, "/api/v1/patients/40001/consents"), consent);
        let membership = Some(("membership", "patients".into()));
        assert_eq!(classify(&Method::PATCH, "/api/v1/patients/40001/global_add_organization"), membership);
        assert_eq!(classify(&Method::DELETE, "/api/v1/patients/40001"), membership);
        assert_eq!(classify(&Method::POST, "/api/v1/patients/organization_requests"), membership);
        assert_eq!(classify(&Method::POST, "/api/v1/patients/me/organization_requests/3/accept"), membership);
        assert_eq!(classify(&Method::POST, "/api/v1/patients"), None);
        assert_eq!(classify(&get, "/health"), None);
    }

    #[test]
    fn long_queries_are_cut() {
        let long = "a".repeat(MAX_QUERY_CHARS + 10);
        assert_eq!(clipped(&long).chars().count(), MAX_QUERY_CHARS + 1);
        assert_eq!(clipped("patient=1"), "patient=1");
    }
}
