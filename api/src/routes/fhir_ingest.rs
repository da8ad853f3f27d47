//! FHIR uploads (`jhe-compat.md` §6.7–§6.8) and the NDJSON bulk upload. The checks live in the `ingest` crate; this
//! module only speaks HTTP: statuses, OperationOutcomes and batch-response Bundles.

use crate::AppState;
use crate::error::ApiError;
use crate::extract::Auth;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use jhe_ingest::{IngestError, Ingestor};
use jhe_schemas::ErrorKind;
use jhe_schemas::fhir::bundle::{BatchEntryResult, batch_response};
use jhe_schemas::fhir::render;
use jhe_schemas::fhir::{MAX_BUNDLE_BYTES, MAX_OBSERVATION_BYTES};

/// The largest NDJSON upload.
const MAX_NDJSON_BYTES: usize = 256 * 1024 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    // Body limits sit a little above the parsers' own limits, so an oversized body gets their precise message.
    let single = DefaultBodyLimit::max(MAX_OBSERVATION_BYTES + 1024);
    let batch = DefaultBodyLimit::max(MAX_BUNDLE_BYTES + 1024);
    Router::new()
        .route("/FHIR/R5/Observation", post(create_observation).layer(single))
        .route("/FHIR/R5/Observation/", post(create_observation).layer(single))
        .route("/FHIR/R5/", post(batch_upload).layer(batch))
        .route("/FHIR/R5", post(batch_upload).layer(batch))
        .route("/FHIR/R5/Observation/$bulk-upload", post(bulk_upload).layer(DefaultBodyLimit::max(MAX_NDJSON_BYTES)))
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

/// `POST /FHIR/R5/Observation/$bulk-upload`: NDJSON, one Observation per line; 200 with counts, the ids aligned
/// with the lines and the first errors.
async fn bulk_upload(State(state): State<AppState>, auth: Result<Auth, ApiError>, body: Bytes) -> Response {
    let result = async {
        let Auth(caller) = auth?;
        let report = ingestor(&state)?.bulk_ndjson(&caller, body).await.map_err(ingest_error)?;
        Ok::<_, ApiError>((StatusCode::OK, axum::Json(report)).into_response())
    }
    .await;
    result.unwrap_or_else(ApiError::into_fhir_response)
}
