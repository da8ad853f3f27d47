//! FHIR Bulk Data v2 export for notebooks: `GET|POST /FHIR/R5/Group/{study}/$export` starts a job,
//! `GET /FHIR/R5/$export-status/{job}` polls it (`DELETE` cancels it), `GET /FHIR/R5/$export-file/{job}/{name}`
//! downloads a file with the same token.
//!
//! * Kick-off needs `Prefer: respond-async` (the only mode) and checks everything it can before answering 202:
//!   the parameters (`_type` = `Observation`, `_since` an instant, `_outputFormat` NDJSON or Parquet) and the
//!   caller's right to read the study (403 otherwise), so a job fails only for server reasons.
//! * The job runs on this process as a task; its state is the `export_jobs` row, so every process answers its
//!   status. The task moves the row's heartbeat every few seconds; a running job whose heartbeat is stale lost
//!   its process (a crash, a restart) and is marked failed when its status is next read, and at server start.
//! * `DELETE` on the status URL cancels: a running export stops at its next batch (on whichever replica runs
//!   it, at its next heartbeat) and deletes what it wrote; a finished export's files are deleted at once.
//! * Files are written and downloaded as streams, in parts of at most `JHE_EXPORT_ROWS_PER_FILE` observations.
//! * Jobs and files are private to the user who started them: anyone else gets 404, as for an unknown job.
//! * Consent is applied when the job runs (the query engine's access predicate), so the files hold what a
//!   study-scoped search would have returned at that moment.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use jhe_catalog::{Caller, ExportJob, NewExportJob};
use jhe_query::{AccessScope, ExportControl, ExportFormat, ExportRequest, ObservationFilters, QueryEngine};
use jhe_schemas::ErrorKind;
use serde_json::{Value, json};

use super::fhir_observations::engine;
use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, RequestUrl};

/// The resource types an export can hold.
const SUPPORTED_TYPES: [&str; 1] = ["Observation"];
/// Kick-off parameters of FHIR Bulk Data this server does not implement (refused rather than ignored, so a
/// client never gets more data than it asked for).
const UNSUPPORTED_PARAMS: [&str; 5] = ["_typeFilter", "_elements", "patient", "includeAssociatedData", "_until"];
/// The largest kick-off body (a Parameters resource).
const MAX_BODY_BYTES: usize = 64 * 1024;
/// How often a running export proves it is alive and learns whether it was cancelled through another replica.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A running job whose heartbeat is older than this has lost its process.
const STALE_AFTER: Duration = Duration::from_secs(30);

/// The exports this process is running, by job id, so a cancel reaching this process stops its job at once.
static RUNNING_EXPORTS: LazyLock<Mutex<HashMap<String, ExportControl>>> = LazyLock::new(Mutex::default);

fn running_exports() -> std::sync::MutexGuard<'static, HashMap<String, ExportControl>> {
    // a panic while the map was held leaves it consistent (inserts and removes only)
    RUNNING_EXPORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Marks failed the export jobs left running by processes that are gone; run at server start.
pub(crate) async fn fail_stale_jobs(pool: &sqlx::PgPool) {
    match jhe_catalog::fail_stale_export_jobs(pool, STALE_AFTER, None).await {
        Ok(0) => {}
        Ok(failed) => tracing::info!(failed, "export jobs of stopped processes marked failed"),
        Err(error) => tracing::warn!(%error, "cannot check for export jobs of stopped processes"),
    }
}

pub(super) fn routes() -> Router<AppState> {
    // The literal `$export` segment sits below `Group/{id}`, a route fhir_read owns as `{resource_type}/{id}`;
    // the router prefers literal segments, so both coexist (tests/tests/export.rs reads a Group next to it).
    Router::new()
        .route(
            "/FHIR/R5/Group/{study}/$export",
            get(kick_off_get).post(kick_off_post).layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES)),
        )
        .route("/FHIR/R5/$export-status/{job}", get(status).delete(cancel))
        .route("/FHIR/R5/$export-file/{job}/{name}", get(file))
}

/// This process, as recorded on the jobs it runs: the pid and the start time, so a restarted server (even one
/// reusing the pid) does not take an earlier process's job for its own.
fn instance() -> &'static str {
    static INSTANCE: OnceLock<String> = OnceLock::new();
    INSTANCE.get_or_init(|| {
        let started = Utc::now();
        format!("{}-{}", std::process::id(), started.timestamp_micros())
    })
}

fn fhir(result: ApiResult<Response>) -> Response {
    result.unwrap_or_else(ApiError::into_fhir_response)
}

fn decode_pairs(encoded: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(encoded).map(|(key, value)| (key.into_owned(), value.into_owned())).collect()
}

async fn kick_off_get(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    url: RequestUrl,
    Path(study): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let params = decode_pairs(query.as_deref().unwrap_or_default().as_bytes());
    fhir(kick_off(&state, auth, &url, &study, query.as_deref(), &params, &headers).await)
}

/// `POST`: the query string's parameters and those of a FHIR `Parameters` body.
async fn kick_off_post(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    url: RequestUrl,
    Path(study): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut params = decode_pairs(query.as_deref().unwrap_or_default().as_bytes());
    match parameters_body(&body) {
        Ok(more) => params.extend(more),
        Err(error) => return fhir(Err(error)),
    }
    fhir(kick_off(&state, auth, &url, &study, query.as_deref(), &params, &headers).await)
}

/// The `(name, value)` pairs of a `Parameters` resource (`valueString`, `valueCode`, `valueInstant`, …).
fn parameters_body(body: &[u8]) -> ApiResult<Vec<(String, String)>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the body is not a FHIR Parameters resource: {error}")))?;
    if value["resourceType"] != "Parameters" {
        return Err(ApiError::bad_request("the body must be a FHIR Parameters resource"));
    }
    let mut pairs = Vec::new();
    for parameter in value["parameter"].as_array().map(Vec::as_slice).unwrap_or_default() {
        let name = parameter["name"].as_str().unwrap_or_default();
        let value = parameter.as_object().and_then(|fields| {
            fields.iter().find(|(key, _)| key.starts_with("value")).and_then(|(_, value)| value.as_str())
        });
        match value {
            Some(value) if !name.is_empty() => pairs.push((name.to_owned(), value.to_owned())),
            _ => {
                return Err(ApiError::bad_request(format!("parameter `{name}`: a name and a string value are needed")));
            }
        }
    }
    Ok(pairs)
}

/// The parsed kick-off parameters.
fn export_request(study_id: i64, params: &[(String, String)]) -> ApiResult<ExportRequest> {
    let mut request = ExportRequest { study_id, since: None, format: ExportFormat::Ndjson };
    for (name, value) in params {
        match name.as_str() {
            "_type" => {
                for resource_type in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !SUPPORTED_TYPES.contains(&resource_type) {
                        return Err(ApiError::bad_request(format!(
                            "_type: `{resource_type}` cannot be exported; supported types: {}",
                            SUPPORTED_TYPES.join(", ")
                        )));
                    }
                }
            }
            "_since" => {
                let since = DateTime::parse_from_rfc3339(value.trim()).map_err(|_| {
                    ApiError::bad_request(format!(
                        "_since: `{value}` is not a FHIR instant (e.g. 2025-01-01T00:00:00Z)"
                    ))
                })?;
                request.since = Some(since.with_timezone(&Utc));
            }
            "_outputFormat" => {
                request.format = ExportFormat::parse(value).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "_outputFormat: `{value}` is not supported; use application/fhir+ndjson (ndjson) or \
                         application/vnd.apache.parquet (parquet)"
                    ))
                })?;
            }
            other if UNSUPPORTED_PARAMS.contains(&other) => {
                return Err(ApiError::bad_request(format!("{other}: not supported by this server's $export")));
            }
            _ => {}
        }
    }
    Ok(request)
}

async fn kick_off(
    state: &AppState,
    auth: Result<Auth, ApiError>,
    url: &RequestUrl,
    study: &str,
    query: Option<&str>,
    params: &[(String, String)],
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let Auth(caller) = auth?;
    let engine = engine(state)?.clone();
    let asynchronous = headers
        .get_all("prefer")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.split(',').any(|part| part.trim() == "respond-async"));
    if !asynchronous {
        return Err(ApiError::bad_request("$export runs asynchronously: send the header `Prefer: respond-async`"));
    }
    let study_id = study.trim().parse::<i64>().map_err(|_| ApiError::not_found("Group"))?;
    let request = export_request(study_id, params)?;
    if !caller.is_practitioner() {
        return Err(ApiError::forbidden("a Group export is for practitioners; patients read their own data by search"));
    }
    // the caller's right to the study, checked now so that the job fails only for server reasons
    let filters = ObservationFilters { study_id: Some(study_id), ..ObservationFilters::default() };
    AccessScope::resolve(&state.pool, &caller, &filters).await?;

    let request_url = match query {
        Some(query) if !query.is_empty() => format!("{}{}?{query}", url.base, url.path),
        _ => format!("{}{}", url.base, url.path),
    };
    let job = jhe_catalog::create_export_job(
        &state.pool,
        &NewExportJob {
            user_id: caller.user_id,
            study_id,
            request: &request_url,
            output_format: request.format.name(),
            since: request.since,
            instance: instance(),
        },
    )
    .await?;
    tracing::info!(user = caller.user_id, job = %job.id, study = study_id, format = request.format.name(), "export started");
    tokio::spawn(run(state.pool.clone(), engine, caller, request, job.id.clone()));
    let location = format!("{}/FHIR/R5/$export-status/{}", url.base, job.id);
    let mut response = StatusCode::ACCEPTED.into_response();
    let location = HeaderValue::from_str(&location).map_err(|_| ApiError::internal())?;
    response.headers_mut().insert(header::CONTENT_LOCATION, location);
    Ok(response)
}

/// The job's task: writes the files, beats the job's heartbeat meanwhile, and records the outcome (unless the
/// job was cancelled meanwhile: then the export stops and deletes its files).
async fn run(pool: sqlx::PgPool, engine: QueryEngine, caller: Caller, request: ExportRequest, job: String) {
    let control = ExportControl::default();
    running_exports().insert(job.clone(), control.clone());
    let export = engine.export_study(&caller, &request, &job, &control);
    tokio::pin!(export);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let result = loop {
        tokio::select! {
            result = &mut export => break result,
            _ = heartbeat.tick() => {
                let progress = format!("{} observations written", control.written());
                match jhe_catalog::export_heartbeat(&pool, &job, &progress).await {
                    Ok(true) => {}
                    Ok(false) => control.stop(),
                    Err(error) => tracing::warn!(%error, job, "cannot record the export's heartbeat"),
                }
            }
        }
    };
    running_exports().remove(&job);
    let (status, output, error) = match result {
        Ok(Some(files)) => {
            let output: Vec<Value> = files
                .iter()
                .map(|file| json!({"type": file.resource_type, "name": file.name, "count": file.count}))
                .collect();
            (jhe_catalog::EXPORT_COMPLETED, Value::Array(output), None)
        }
        Ok(None) => {
            tracing::info!(job, "export stopped: it was cancelled");
            return;
        }
        Err(error) => {
            tracing::error!(%error, job, "export failed");
            let message = error.user_message().unwrap_or_else(|| match error.kind() {
                ErrorKind::Unavailable => {
                    "the observation store could not be read or written; start the export again".to_owned()
                }
                _ => "the export failed on the server; the server log has the details".to_owned(),
            });
            (jhe_catalog::EXPORT_FAILED, json!([]), Some(message))
        }
    };
    match jhe_catalog::finish_export_job(&pool, &job, status, &output, error.as_deref()).await {
        Ok(true) => tracing::info!(job, status, "export finished"),
        Ok(false) => {
            // cancelled between the last heartbeat and now: its files must go as well
            tracing::info!(job, "export finished after it was cancelled");
            if let Err(error) = engine.delete_export_files(&job).await {
                tracing::warn!(%error, job, "cannot delete the files of a cancelled export");
            }
        }
        Err(error) => tracing::error!(%error, job, "cannot record the end of an export"),
    }
}

/// The caller's own job, failed first if its process is gone; 404 for anyone else's, a cancelled or an unknown
/// job.
async fn own_job(state: &AppState, caller: &Caller, id: &str) -> ApiResult<ExportJob> {
    let not_found = || ApiError::new(ErrorKind::NotFound, format!("No export job `{id}`."));
    let mut job = jhe_catalog::export_job(&state.pool, id).await?.ok_or_else(not_found)?;
    if job.user_id != caller.user_id || job.status == jhe_catalog::EXPORT_CANCELLED {
        return Err(not_found());
    }
    if job.status == jhe_catalog::EXPORT_RUNNING
        && jhe_catalog::fail_stale_export_jobs(&state.pool, STALE_AFTER, Some(id)).await? > 0
    {
        job = jhe_catalog::export_job(&state.pool, id).await?.ok_or_else(not_found)?;
    }
    Ok(job)
}

async fn status(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    url: RequestUrl,
    Path(id): Path<String>,
) -> Response {
    fhir(status_of(&state, auth, &url, &id).await)
}

async fn status_of(state: &AppState, auth: Result<Auth, ApiError>, url: &RequestUrl, id: &str) -> ApiResult<Response> {
    let Auth(caller) = auth?;
    let job = own_job(state, &caller, id).await?;
    match job.status.as_str() {
        jhe_catalog::EXPORT_COMPLETED => {
            let output: Vec<Value> = job
                .output
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .map(|file| {
                    let name = file["name"].as_str().unwrap_or_default();
                    json!({
                        "type": file["type"],
                        "url": format!("{}/FHIR/R5/$export-file/{}/{name}", url.base, job.id),
                        "count": file["count"],
                    })
                })
                .collect();
            let manifest = json!({
                "transactionTime": job.transaction_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "request": job.request,
                "requiresAccessToken": true,
                "output": output,
                "error": [],
            });
            Ok(axum::Json(manifest).into_response())
        }
        jhe_catalog::EXPORT_FAILED => Err(ApiError::new(
            ErrorKind::Internal,
            job.error.unwrap_or_else(|| "the export failed on the server".to_owned()),
        )),
        _ => {
            let mut response = StatusCode::ACCEPTED.into_response();
            let progress = job.progress.as_deref().unwrap_or("queued");
            if let Ok(progress) = HeaderValue::from_str(progress) {
                response.headers_mut().insert("x-progress", progress);
            }
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(response)
        }
    }
}

/// `DELETE`: cancels a running job, or withdraws a finished one's files; both 202.
async fn cancel(State(state): State<AppState>, auth: Result<Auth, ApiError>, Path(id): Path<String>) -> Response {
    fhir(cancel_job(&state, auth, &id).await)
}

async fn cancel_job(state: &AppState, auth: Result<Auth, ApiError>, id: &str) -> ApiResult<Response> {
    let Auth(caller) = auth?;
    let job = own_job(state, &caller, id).await?;
    // the status the job had when the cancel took effect (the one `own_job` read may be stale: the job may have
    // finished since, and then its files are this handler's to delete)
    let Some(previous) = jhe_catalog::cancel_export_job(&state.pool, &job.id).await? else {
        return Ok(StatusCode::ACCEPTED.into_response());
    };
    tracing::info!(user = caller.user_id, job = %job.id, "export cancelled");
    let running_here = running_exports().get(&job.id).cloned();
    match running_here {
        // the export deletes what it wrote as it stops
        Some(control) => control.stop(),
        // a finished job's files go now; a job still running (on another replica, or here between the end of its
        // export and recording it) finds the cancel when it records its end or beats its heartbeat, and deletes them
        None if previous != jhe_catalog::EXPORT_RUNNING => {
            if let Some(engine) = state.query.as_ref() {
                engine.delete_export_files(&job.id).await?;
            }
        }
        None => {}
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn file(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    fhir(file_of(&state, auth, &id, &name).await)
}

async fn file_of(state: &AppState, auth: Result<Auth, ApiError>, id: &str, name: &str) -> ApiResult<Response> {
    let Auth(caller) = auth?;
    let engine = engine(state)?;
    let job = own_job(state, &caller, id).await?;
    let not_found = || ApiError::new(ErrorKind::NotFound, format!("No file `{name}` in export job `{id}`."));
    let listed = job.status == jhe_catalog::EXPORT_COMPLETED
        && job.output.as_array().is_some_and(|files| files.iter().any(|file| file["name"] == name));
    if !listed {
        return Err(not_found());
    }
    let format = ExportFormat::from_name(&job.output_format).unwrap_or(ExportFormat::Ndjson);
    let file = engine.export_file(&job.id, name).await?.ok_or_else(not_found)?;
    let mut response = axum::body::Body::from_stream(file.stream).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(format.content_type()));
    response.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(file.size));
    Ok(response)
}
