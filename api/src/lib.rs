//! The jhe HTTP server: the Admin REST API (`/api/v1`), health and the OpenAPI document. The `jhe` binary
//! (`main.rs`) wires the subcommands to the entry points here.

mod access;
mod camel;
pub mod cli;
mod error;
mod extract;
mod openapi;
mod paging;
mod routes;

use axum::Router;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The version `GET /health` reports.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The external base URL for links; derived from each request when unset.
    pub site_url: Option<Arc<str>>,
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
