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
//!   study-scoped search would have returned at that moment. The job records what its files hold (the patients of
//!   each code), and every status and file request checks the caller's rights again, from Postgres as a search
//!   does, without reading the files: a caller who may no longer export the study (membership or role lost) gets
//!   403, and files holding a (patient, code) pair the caller may no longer see (a consent revoked, a patient gone
//!   from the study) answer 410. Either way the job is withdrawn and its files deleted.
//! * A completed export's files expire `JHE_EXPORT_TTL` (24 h) after it completed: its status and files answer 410
//!   from then on (with an `Expires` header on the manifest before), and a sweeper started with the server deletes
//!   the files of expired and withdrawn jobs.

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
use jhe_catalog::{Caller, ExportJob, ExportOutcome, NewExportJob};
use jhe_query::{
    AccessScope, ExportContents, ExportControl, ExportFormat, ExportRequest, ObservationFilters, QueryEngine,
    QueryError, WrittenExport,
};
use jhe_schemas::ErrorKind;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::task::AbortOnDropHandle;

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
/// Expired and withdrawn jobs whose files one sweep deletes at most.
const SWEEP_BATCH: i64 = 100;
/// Why a job was withdrawn when its caller lost the right to export its study (the caller is answered 403).
const RIGHTS_LOST: &str = "This export was withdrawn because you may no longer export its study; its files were \
                           deleted.";
/// Why a job was withdrawn when its files hold data its caller may no longer see.
const CONSENT_CHANGED: &str = "This export was withdrawn because its files hold observations you may no longer see \
                               (a patient revoked consent or left the study); its files were deleted. Start a new \
                               export for what you may see now.";

/// The exports this process is running, by job id, so a cancel reaching this process stops its job at once.
static RUNNING_EXPORTS: LazyLock<Mutex<HashMap<String, ExportControl>>> = LazyLock::new(Mutex::default);

fn running_exports() -> std::sync::MutexGuard<'static, HashMap<String, ExportControl>> {
    // a panic while the map was held leaves it consistent (inserts and removes only)
    RUNNING_EXPORTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Run at server start: marks failed the export jobs left running by processes that are gone, and starts the
/// sweeper of expired exports when this server has the query engine (which owns the files); the sweeper stops
/// when the returned handle is dropped.
pub(crate) async fn start_upkeep(state: &AppState) -> Option<AbortOnDropHandle<()>> {
    match jhe_catalog::fail_stale_export_jobs(&state.pool, STALE_AFTER, None).await {
        Ok(0) => {}
        Ok(failed) => tracing::info!(failed, "export jobs of stopped processes marked failed"),
        Err(error) => tracing::warn!(%error, "cannot check for export jobs of stopped processes"),
    }
    let engine = state.query.clone()?;
    let pool = state.pool.clone();
    Some(AbortOnDropHandle::new(tokio::spawn(async move {
        let mut every = tokio::time::interval(engine.export_sweep_interval());
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            sweep(&pool, &engine).await;
        }
    })))
}

/// Marks expired the completed exports past their time, then deletes the files of expired and withdrawn ones
/// (a deletion that failed is tried again at the next sweep). Safe with several replicas: deleting twice is
/// harmless.
async fn sweep(pool: &PgPool, engine: &QueryEngine) {
    match jhe_catalog::expire_export_jobs(pool).await {
        Ok(0) => {}
        Ok(expired) => tracing::info!(expired, "exports expired"),
        Err(error) => tracing::warn!(%error, "cannot look for expired exports"),
    }
    let jobs = match jhe_catalog::export_jobs_with_files_left(pool, SWEEP_BATCH).await {
        Ok(jobs) => jobs,
        Err(error) => {
            tracing::warn!(%error, "cannot look for the files of expired exports");
            return;
        }
    };
    for job in jobs {
        match engine.delete_export_files(&job).await {
            Ok(()) => {
                if let Err(error) = jhe_catalog::export_files_deleted(pool, &job).await {
                    tracing::warn!(%error, job, "cannot record that an export's files were deleted");
                }
            }
            Err(error) => tracing::warn!(%error, job, "cannot delete the files of an expired or withdrawn export"),
        }
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
    // the caller's right to the study, checked now so that the job fails only for server reasons
    study_scope(&state.pool, &caller, study_id).await?;

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
    let Some((status, output, contents, error)) = outcome(&job, result) else { return };
    let outcome = ExportOutcome {
        status,
        output: &output,
        contents: &contents,
        error: error.as_deref(),
        keep_for: engine.export_ttl(),
    };
    match jhe_catalog::finish_export_job(&pool, &job, &outcome).await {
        Ok(true) => tracing::info!(job, status, "export finished"),
        Ok(false) => {
            // cancelled or withdrawn between the last heartbeat and now: its files must go as well
            tracing::info!(job, "export finished after it was cancelled or withdrawn");
            if let Err(error) = engine.delete_export_files(&job).await {
                tracing::warn!(%error, job, "cannot delete the files of a cancelled export");
            }
        }
        Err(error) => tracing::error!(%error, job, "cannot record the end of an export"),
    }
}

/// What to record of an export's end: status, output, contents and error; `None` when it was stopped (there is
/// nothing to record: the job was cancelled or withdrawn).
fn outcome(
    job: &str,
    result: jhe_query::Result<Option<WrittenExport>>,
) -> Option<(&'static str, Value, Value, Option<String>)> {
    match result {
        Ok(Some(written)) => {
            let output: Vec<Value> = written
                .files
                .iter()
                .map(|file| json!({"type": file.resource_type, "name": file.name, "count": file.count}))
                .collect();
            Some((jhe_catalog::EXPORT_COMPLETED, Value::Array(output), written.contents.to_json(), None))
        }
        Ok(None) => {
            tracing::info!(job, "export stopped: it was cancelled or withdrawn");
            None
        }
        Err(error) => {
            tracing::error!(%error, job, "export failed");
            let message = error.user_message().unwrap_or_else(|| match error.kind() {
                ErrorKind::Unavailable => {
                    "the observation store could not be read or written; start the export again".to_owned()
                }
                _ => "the export failed on the server; the server log has the details".to_owned(),
            });
            Some((jhe_catalog::EXPORT_FAILED, json!([]), json!({}), Some(message)))
        }
    }
}

/// What `caller` may see of a study, which is also their right to export it: a practitioner whose organizations
/// hold the study (403 otherwise) sees the consented (patient, code) pairs of its patients. Checked at kick-off
/// and again on every status and file request.
async fn study_scope(pool: &PgPool, caller: &Caller, study_id: i64) -> Result<AccessScope, QueryError> {
    if !caller.is_practitioner() {
        return Err(QueryError::Forbidden(
            "a Group export is for practitioners; patients read their own data by search".to_owned(),
        ));
    }
    let filters = ObservationFilters { study_id: Some(study_id), ..ObservationFilters::default() };
    AccessScope::resolve(pool, caller, &filters).await
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

/// The caller's own job ([`own_job`]) while the rights it was made under last: 403 when the caller may no longer
/// export its study; 410 when it expired or was withdrawn, or when its files hold a (patient, code) pair the
/// caller may no longer see. A job refused for lost rights or past its time is ended and its files deleted.
async fn live_job(state: &AppState, caller: &Caller, id: &str) -> ApiResult<ExportJob> {
    let job = own_job(state, caller, id).await?;
    let scope = match study_scope(&state.pool, caller, job.study_id).await {
        Ok(scope) => scope,
        Err(error) if error.kind() == ErrorKind::Forbidden => {
            withdraw(state, &job, jhe_catalog::EXPORT_WITHDRAWN, RIGHTS_LOST).await;
            return Err(error.into());
        }
        Err(error) => return Err(error.into()),
    };
    if let Some(gone) = gone(&job) {
        return Err(gone);
    }
    if job.status == jhe_catalog::EXPORT_COMPLETED {
        if let Some(expires_at) = job.expires_at.filter(|expires_at| *expires_at <= Utc::now()) {
            let detail = expired(expires_at);
            withdraw(state, &job, jhe_catalog::EXPORT_EXPIRED, &detail).await;
            return Err(ApiError::new(ErrorKind::Gone, detail));
        }
        // contents that cannot be read are treated as not shareable
        if !ExportContents::from_json(&job.contents).is_some_and(|contents| contents.is_within(&scope)) {
            // a token limited to some codes is refused a job holding others; the job stays for the user's others
            if caller.observation_codes.is_limited() {
                return Err(ApiError::insufficient_scope(
                    "this export holds observations of codes outside the token's SMART scopes",
                ));
            }
            withdraw(state, &job, jhe_catalog::EXPORT_WITHDRAWN, CONSENT_CHANGED).await;
            return Err(ApiError::new(ErrorKind::Gone, CONSENT_CHANGED));
        }
    }
    Ok(job)
}

/// The 410 of a job that expired or was withdrawn; `None` for any other.
fn gone(job: &ExportJob) -> Option<ApiError> {
    match job.status.as_str() {
        jhe_catalog::EXPORT_EXPIRED => {
            Some(ApiError::new(ErrorKind::Gone, expired(job.expires_at.unwrap_or(job.transaction_time))))
        }
        jhe_catalog::EXPORT_WITHDRAWN => {
            Some(ApiError::new(ErrorKind::Gone, job.error.clone().unwrap_or_else(|| CONSENT_CHANGED.to_owned())))
        }
        _ => None,
    }
}

/// Why an expired job is gone.
fn expired(expires_at: DateTime<Utc>) -> String {
    let at = expires_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!("This export expired at {at} and its files were deleted; start a new export.")
}

/// Ends `job` as `status` (expired or withdrawn) for `reason`, and removes its files ([`discard_files`]). Failures
/// are logged only: the caller is refused either way, the next request tries again, and the sweeper retries
/// deleting the files.
async fn withdraw(state: &AppState, job: &ExportJob, status: &str, reason: &str) {
    let previous = match jhe_catalog::withdraw_export_job(&state.pool, &job.id, status, reason).await {
        Ok(Some(previous)) => previous,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, job = %job.id, status, "cannot end an export whose rights are gone");
            return;
        }
    };
    tracing::info!(user = job.user_id, job = %job.id, status, "export ended: its files are no longer served");
    match discard_files(state, &job.id, &previous).await {
        Ok(true) => {
            if let Err(error) = jhe_catalog::export_files_deleted(&state.pool, &job.id).await {
                tracing::warn!(%error, job = %job.id, "cannot record that an export's files were deleted");
            }
        }
        Ok(false) => {}
        Err(error) => tracing::warn!(?error, job = %job.id, "cannot delete the files of an ended export"),
    }
}

/// Removes the files of a job that was just cancelled or withdrawn while it was `previous`. A running export on
/// this process stops and deletes what it wrote; a finished job's files are deleted now (then `true`); a job still
/// running elsewhere (another replica, or here between the end of its export and recording it) finds out at its
/// heartbeat or when it records its end, and deletes them.
async fn discard_files(state: &AppState, job: &str, previous: &str) -> ApiResult<bool> {
    let running_here = running_exports().get(job).cloned();
    match running_here {
        Some(control) => control.stop(),
        None if previous != jhe_catalog::EXPORT_RUNNING => {
            if let Some(engine) = state.query.as_ref() {
                engine.delete_export_files(job).await?;
                return Ok(true);
            }
        }
        None => {}
    }
    Ok(false)
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
    let job = live_job(state, &caller, id).await?;
    match job.status.as_str() {
        jhe_catalog::EXPORT_COMPLETED => Ok(manifest(&job, url)),
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

/// A completed job's manifest, with an `Expires` header saying until when its files are served.
fn manifest(job: &ExportJob, url: &RequestUrl) -> Response {
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
    let mut response = axum::Json(manifest).into_response();
    let expires = job.expires_at.map(|at| at.format("%a, %d %b %Y %H:%M:%S GMT").to_string());
    if let Some(expires) = expires.and_then(|expires| HeaderValue::from_str(&expires).ok()) {
        response.headers_mut().insert(header::EXPIRES, expires);
    }
    response
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
    discard_files(state, &job.id, &previous).await?;
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
    let job = live_job(state, &caller, id).await?;
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
