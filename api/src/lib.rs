//! The jhe HTTP server: the Admin REST API (`/api/v1`), health and the OpenAPI document. The `jhe` binary
//! (`main.rs`) wires the subcommands to the entry points here.

mod access;
pub mod audit;
mod camel;
pub mod cli;
mod error;
mod extract;
mod openapi;
mod paging;
pub mod pipeline;
mod routes;
pub mod validate_cmd;

use axum::Router;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The version `GET /health` reports.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The external base URL for links; derived from each request when unset.
    pub site_url: Option<Arc<str>>,
    /// Uploads (`POST /FHIR/R5/…`); `None` answers them with 503.
    pub ingest: Option<jhe_ingest::Ingestor>,
    /// Observation reads (`GET /FHIR/R5/Observation`, `/api/v1/observations`); `None` answers them with 503.
    pub query: Option<jhe_query::QueryEngine>,
    /// The Prometheus recorder behind `GET /metrics`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The audit trail of reads, searches and exports.
    pub audit: audit::AuditLog,
}

impl AppState {
    /// The REST API only (no uploads, no metrics), with the audit trail written to `pool` (starts its writer on the
    /// current runtime).
    pub fn new(pool: PgPool) -> Self {
        let audit = audit::AuditLog::start(pool.clone());
        Self { pool, site_url: None, ingest: None, query: None, metrics: None, audit }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("site_url", &self.site_url)
            .field("ingest", &self.ingest.is_some())
            .field("query", &self.query.is_some())
            .field("metrics", &self.metrics.is_some())
            .field("audit", &self.audit.is_enabled())
            .finish_non_exhaustive()
    }
}

/// The complete HTTP application.
pub fn app(state: AppState) -> Router {
    routes::router(state)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
