//! The jhe HTTP server: the Admin REST API (`/api/v1`), health and the OpenAPI document. The `jhe` binary
//! (`main.rs`) wires the subcommands to the entry points here.

mod access;
pub mod audit;
mod camel;
pub mod cli;
mod error;
mod extract;
pub mod login_limits;
pub mod mail;
mod openapi;
mod paging;
pub mod pipeline;
mod routes;
mod smart_scopes;
pub mod token_cache;
pub mod validate_cmd;

use axum::Router;
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Federated login through an upstream OpenID Connect provider (`JHE_OIDC_*`, docs/identity.md).
pub use routes::oauth::{CALLBACK_PATH as OIDC_CALLBACK_PATH, Federation, FederationConfig, FederationConfigError};
/// ID-token signing keys of the OAuth provider (`rotate_signing_key` makes a new key sign from now on).
pub use routes::oauth::{KeyError, ServerSecret, rotate_signing_key};

/// The search-parameter parser of the Postgres-backed FHIR resources, for the fuzz target (`api/fuzz`).
#[doc(hidden)]
pub use routes::parse_fhir_search_for_fuzzing;

/// The version `GET /health` reports.
pub const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"));

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The external base URL for links (`JHE_SITE_URL`); when unset, links in answers derive it from the request
    /// (`X-Forwarded-*` only from `JHE_TRUSTED_PROXIES`) and links in mail use [`AppState::listen_url`].
    pub site_url: Option<Arc<str>>,
    /// `http://<address the server listens on>`, set by [`serve`]: the base of mailed links when no site URL is
    /// configured.
    pub listen_url: Option<Arc<str>>,
    /// Uploads (`POST /FHIR/R5/…`); `None` answers them with 503.
    pub ingest: Option<jhe_ingest::Ingestor>,
    /// Observation reads (`GET /FHIR/R5/Observation`, `/api/v1/observations`); `None` answers them with 503.
    pub query: Option<jhe_query::QueryEngine>,
    /// The Prometheus recorder behind `GET /metrics` of the admin listener ([`serve_admin`]).
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The audit trail of reads, searches and exports.
    pub audit: audit::AuditLog,
    /// Recent bearer-token checks (`JHE_TOKEN_CACHE_TTL_MS`); cleared whenever this process changes tokens or users.
    pub token_cache: token_cache::TokenCache,
    /// Mail of the account pages (verification and password-reset links); `JHE_SMTP_URL` / `JHE_MAIL_DIR`.
    pub mailer: mail::Mailer,
    /// Failed-login lockout and the per-client-IP budget of the account forms.
    pub login_limits: login_limits::LoginLimits,
    /// Federated login through an upstream OpenID Connect provider (`JHE_OIDC_*`); `None` when not configured.
    pub federation: Option<Arc<Federation>>,
    /// Seals the stored ID-token signing keys (`JHE_SECRET_KEY`); `ServerSecret::none()` stores them as plaintext.
    pub server_secret: ServerSecret,
    /// Slots for NDJSON bulk uploads running at once (`JHE_BULK_UPLOAD_CONCURRENCY`); without a free one, 429.
    pub bulk_uploads: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    /// The REST API only (no uploads, no metrics), with the audit trail written to `pool` (starts its writer on the
    /// current runtime).
    pub fn new(pool: PgPool) -> Self {
        let audit = audit::AuditLog::start(pool.clone());
        let token_cache = token_cache::TokenCache::from_env();
        Self {
            pool,
            site_url: None,
            listen_url: None,
            ingest: None,
            query: None,
            metrics: None,
            audit,
            token_cache,
            mailer: mail::Mailer::log_only(),
            login_limits: login_limits::LoginLimits::from_env(),
            federation: None,
            server_secret: ServerSecret::none(),
            bulk_uploads: bulk_upload_slots_from_env(),
        }
    }
}

/// The NDJSON bulk uploads one server runs at once: `JHE_BULK_UPLOAD_CONCURRENCY` (default 4, at least 1). Each
/// holds up to one batch of its body in memory (`jhe_ingest::MAX_HELD_BYTES`).
pub fn bulk_upload_slots_from_env() -> Arc<tokio::sync::Semaphore> {
    const VARIABLE: &str = "JHE_BULK_UPLOAD_CONCURRENCY";
    const DEFAULT: usize = 4;
    let slots = match std::env::var(VARIABLE) {
        Err(_) => DEFAULT,
        Ok(text) => match text.trim().parse::<usize>() {
            Ok(slots) if (1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&slots) => slots,
            _ => {
                let problem = "not an acceptable number; using the default";
                tracing::error!(variable = VARIABLE, value = %text, default = DEFAULT, "{problem}");
                DEFAULT
            }
        },
    };
    Arc::new(tokio::sync::Semaphore::new(slots))
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
    let cache = state.token_cache.clone();
    routes::router(state).layer(axum::middleware::from_fn(move |request, next| {
        token_cache::clear_after_writes(cache.clone(), request, next)
    }))
}

/// Serves `app(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // the OAuth provider's signing key is made (and stored keys sealed) on start, not by the first login (RSA
    // generation is slow); a JHE_SECRET_KEY that cannot open the stored keys stops the server here
    match routes::oauth::prepare_signing_keys(&state.pool, &state.server_secret).await {
        Ok(()) => {}
        Err(error) if error.is_secret_mismatch() => return Err(std::io::Error::other(error)),
        Err(error) => tracing::error!(%error, "could not prepare the ID-token signing key; OAuth requests will retry"),
    }
    // export jobs left by stopped processes, and the sweeper of expired exports' files (stops with the server)
    let _export_upkeep = routes::start_export_upkeep(&state).await;
    let mut state = state;
    if state.listen_url.is_none() {
        state.listen_url = Some(Arc::from(format!("http://{}", listener.local_addr()?)));
    }
    axum::serve(listener, app(state).into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The operators' endpoints, and nothing else: `/metrics` (Prometheus), `/livez`, `/readyz` (the database
/// answers) and `/health`. Kept off the public listener: metrics describe traffic and data volumes.
pub fn admin_app(state: AppState) -> Router {
    routes::admin_router(state)
}

/// Serves [`admin_app`] on `listener` (`JHE_ADMIN_LISTEN`) until `shutdown` resolves.
pub async fn serve_admin(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, admin_app(state)).with_graceful_shutdown(shutdown).await
}
