//! FHIR uploads (`jhe-compat.md` §6.7–§6.8) and the NDJSON bulk upload. The checks live in the `ingest` crate; this
//! module only speaks HTTP: statuses, OperationOutcomes and batch-response Bundles.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Auth;
use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jhe_ingest::{BulkUpload, IngestError, Ingestor};
use jhe_schemas::ErrorKind;
use jhe_schemas::fhir::bundle::{BatchEntryResult, batch_response};
use jhe_schemas::fhir::render;
use jhe_schemas::fhir::{MAX_BUNDLE_BYTES, MAX_OBSERVATION_BYTES};
use std::pin::Pin;
use std::sync::Arc;

/// What a refused bulk upload is told to wait before trying again, in seconds: uploads take seconds, and a client
/// that retries sooner would mostly resend its body for another 429.
const BULK_RETRY_AFTER_SECONDS: &str = "5";

pub(crate) fn routes() -> Router<AppState> {
    // Body limits sit a little above the parsers' own limits, so an oversized body gets their precise message.
    let single = DefaultBodyLimit::max(MAX_OBSERVATION_BYTES + 1024);
    let batch = DefaultBodyLimit::max(MAX_BUNDLE_BYTES + 1024);
    Router::new()
        .route("/FHIR/R5/Observation", post(create_observation).layer(single))
        .route("/FHIR/R5/Observation/", post(create_observation).layer(single))
        .route("/FHIR/R5/", post(batch_upload).layer(batch))
        .route("/FHIR/R5", post(batch_upload).layer(batch))
        .route("/FHIR/R5/Observation/$bulk-upload", post(bulk_upload))
}

fn ingestor(state: &AppState) -> Result<&Ingestor, ApiError> {
    state.ingest.as_ref().ok_or_else(|| {
        ApiError::new(ErrorKind::Unavailable, "uploads are not enabled on this server (no observation log configured)")
    })
}

fn ingest_error(error: IngestError) -> ApiError {
    match error {
        IngestError::Invalid(error) => ApiError::bad_request(error.to_string()),
        IngestError::BundlePrecheck(message) => ApiError::bad_request(message),
        IngestError::Unavailable(message) => ApiError::new(ErrorKind::Unavailable, message),
    }
}

/// `POST /FHIR/R5/Observation`: 201 with the full Observation for practitioners, the short summary for patients.
async fn create_observation(State(state): State<AppState>, auth: Result<Auth, ApiError>, body: Bytes) -> Response {
    let result = async {
        let Auth(caller) = auth?;
        let outcome = ingestor(&state)?.create(&caller, body).await.map_err(ingest_error)?;
        match outcome {
            Ok(accepted) => {
                // serialized straight from the renderers' structs (no `Value` in between)
                let record = &accepted.record;
                let body = if caller.is_practitioner() {
                    serde_json::to_vec(&render::observation(record, accepted.code_text.as_deref()))
                } else {
                    serde_json::to_vec(&render::created_observation_summary(record))
                };
                let body = body.map_err(|_| ApiError::internal())?;
                Ok((StatusCode::CREATED, [(header::CONTENT_TYPE, "application/json")], body).into_response())
            }
            Err(rejection) => Err(ApiError::new(rejection.kind(), rejection.diagnostics)),
        }
    }
    .await;
    result.unwrap_or_else(ApiError::into_fhir_response)
}

/// `POST /FHIR/R5/` with a batch (or transaction) Bundle: always 200 with one batch-response entry per input entry;
/// errors outside the entries (authentication, the pre-check) use the REST format, as in the reference.
async fn batch_upload(State(state): State<AppState>, Auth(caller): Auth, body: Bytes) -> Result<Response, ApiError> {
    let outcomes = match ingestor(&state)?.batch(&caller, body).await {
        Ok(outcomes) => outcomes,
        // the §6.8 pre-check answers with DRF's list body: `["resource.valueAttachment.data must be not null."]`
        Err(IngestError::BundlePrecheck(message)) => {
            return Ok((StatusCode::BAD_REQUEST, axum::Json(vec![message])).into_response());
        }
        Err(other) => return Err(ingest_error(other)),
    };
    let results: Vec<BatchEntryResult> = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(accepted) => BatchEntryResult::Created { id: accepted.record.id.to_string() },
            Err(rejection) => BatchEntryResult::Failed { status: rejection.status, diagnostics: rejection.diagnostics },
        })
        .collect();
    Ok((StatusCode::OK, axum::Json(batch_response(&results))).into_response())
}

/// `POST /FHIR/R5/Observation/$bulk-upload`: NDJSON, one Observation per line, read and stored batch by batch as
/// it arrives; 200 with counts, the ids aligned with the lines and the first errors. At most
/// `AppState::bulk_uploads` run at once; more answer 429 with `Retry-After`, before any of their body is read.
async fn bulk_upload(
    State(state): State<AppState>,
    auth: Result<Auth, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let Auth(caller) = auth?;
        let ingestor = ingestor(&state)?;
        let Ok(_slot) = Arc::clone(&state.bulk_uploads).try_acquire_owned() else {
            metrics::counter!("jhe_ingest_bulk_uploads_refused_total").increment(1);
            return Ok(too_many_bulk_uploads());
        };
        let declared = headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse().ok());
        let upload = ingestor.bulk_upload(&caller, declared).map_err(ingest_error)?;
        let report = read_ndjson(upload, body).await.map_err(ingest_error)?;
        Ok::<_, ApiError>((StatusCode::OK, axum::Json(report)).into_response())
    }
    .await;
    result.unwrap_or_else(ApiError::into_fhir_response)
}

/// Feeds the body to `upload` piece by piece as it arrives, until it ends or the upload stops reading.
async fn read_ndjson(mut upload: BulkUpload, body: Body) -> Result<jhe_ingest::BulkReport, IngestError> {
    let mut pieces = body.into_data_stream();
    loop {
        match std::future::poll_fn(|cx| Pin::new(&mut pieces).poll_frame(cx)).await {
            None => break,
            Some(Err(error)) => {
                upload.body_failed(&error.to_string());
                break;
            }
            Some(Ok(frame)) => {
                if let Ok(piece) = frame.into_data()
                    && !upload.feed(&piece).await
                {
                    break;
                }
            }
        }
    }
    upload.finish().await
}

fn too_many_bulk_uploads() -> Response {
    let detail = "too many bulk uploads are running on this server; try again shortly (nothing of this one was stored)";
    let mut response = ApiError::new(ErrorKind::TooManyRequests, detail).into_fhir_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static(BULK_RETRY_AFTER_SECONDS));
    response
}
