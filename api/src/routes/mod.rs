//! The HTTP routes. Each module owns one REST resource and returns its `Router`.

mod audit_events;
mod clients;
mod consents;
mod data_sources;
mod fhir_analytics;
mod fhir_export;
mod fhir_ingest;
mod fhir_observations;
mod fhir_read;
mod invitations;
pub(crate) mod oauth;
mod observations;
mod organization_requests;
mod organizations;
mod patients;
mod practitioner_clients;
mod practitioners;
mod settings;
mod studies;
mod users;

pub(crate) use fhir_export::start_upkeep as start_export_upkeep;
#[doc(hidden)]
pub use fhir_read::parse_for_fuzzing as parse_fhir_search_for_fuzzing;

use crate::AppState;
use crate::error::ApiError;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

/// Each resource module's share of the OpenAPI document.
pub(crate) fn openapi_parts() -> Vec<utoipa::openapi::OpenApi> {
    use utoipa::OpenApi;
    vec![
        users::ApiDoc::openapi(),
        organizations::ApiDoc::openapi(),
        practitioners::ApiDoc::openapi(),
        patients::ApiDoc::openapi(),
        organization_requests::ApiDoc::openapi(),
        consents::ApiDoc::openapi(),
        studies::ApiDoc::openapi(),
        data_sources::ApiDoc::openapi(),
        clients::ApiDoc::openapi(),
        practitioner_clients::ApiDoc::openapi(),
        settings::ApiDoc::openapi(),
        invitations::ApiDoc::openapi(),
        oauth::InvitationApiDoc::openapi(),
        observations::ApiDoc::openapi(),
        audit_events::ApiDoc::openapi(),
        fhir_analytics::ApiDoc::openapi(),
    ]
}

pub(crate) fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(users::routes())
        .merge(organizations::routes())
        .merge(practitioners::routes())
        .merge(practitioner_clients::routes())
        .merge(patients::routes())
        .merge(organization_requests::routes())
        .merge(consents::routes())
        .merge(studies::routes())
        .merge(data_sources::routes())
        .merge(clients::routes())
        .merge(settings::routes())
        .merge(invitations::routes())
        .merge(observations::routes())
        .merge(fhir_analytics::rest_routes())
        .merge(audit_events::routes());
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/health", get(health))
        .merge(fhir_ingest::routes())
        .merge(fhir_read::routes())
        .merge(fhir_observations::routes())
        .merge(fhir_analytics::routes())
        .merge(fhir_export::routes())
        .merge(oauth::routes())
        .nest("/api/v1", api)
        .merge(crate::openapi::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.audit.clone(), crate::audit::audit_requests))
        .with_state(state)
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The admin listener's routes (`crate::admin_app`).
pub(crate) fn admin_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(health))
        .route("/readyz", get(ready))
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(state)
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
}

/// Ready when the database answers (the pool pings a connection before handing it out).
async fn ready(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match state.pool.acquire().await {
        Ok(_) => axum::Json(json!({ "status": "ok", "version": crate::VERSION })).into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check: the database does not answer");
            (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "status": "unavailable" })))
                .into_response()
        }
    }
}

/// Prometheus metrics of this process (ingest and, when it runs here, the processor).
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => {
            ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response()
        }
        None => {
            ApiError::new(jhe_schemas::ErrorKind::NotFound, "metrics are not enabled in this process").into_response()
        }
    }
}

async fn health() -> Response {
    axum::Json(json!({ "status": "ok", "version": crate::VERSION })).into_response()
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(jhe_schemas::ErrorKind::NotFound, format!("Not found: {}", uri.path()))
}

async fn method_not_allowed(method: Method) -> Response {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(json!({ "detail": format!("Method \"{method}\" not allowed.") })),
    )
        .into_response()
}
