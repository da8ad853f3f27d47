//! The Postgres control plane of jhe. This crate owns every SQL statement and migration: organizations, people,
//! studies, consent, data sources, OAuth clients and tokens, settings. Callers get typed rows back; HTTP and
//! authorization policy live in the `api` crate.

mod accounts;
mod audit;
mod clients;
mod code_texts;
mod consents;
mod control_plane;
mod data_sources;
mod error;
mod export_jobs;
mod federation;
mod fhir_search;
mod files;
mod invitations;
mod oauth;
mod observation_access;
mod observations;
mod organization_requests;
mod organizations;
mod paging;
pub mod passwords;
mod patients;
mod people;
mod seed;
mod settings;
mod studies;
mod tokens;
mod wire;

pub use accounts::*;
pub use audit::*;
pub use clients::*;
pub use code_texts::*;
pub use consents::*;
pub use control_plane::*;
pub use data_sources::*;
pub use error::{Error, Result};
pub use export_jobs::*;
pub use federation::*;
pub use fhir_search::*;
pub use files::*;
pub use invitations::*;
pub use oauth::*;
pub use observation_access::*;
pub use observations::*;
pub use organization_requests::{
    OrganizationRequest, RequestDecision, RequestingOrganization, cancel_organization_request,
    decide_organization_request, get_organization_request, organization_request_organization,
    organization_requests_of_organizations, organization_requests_of_patient, request_patient_organization,
};
pub use organizations::*;
pub use paging::{Page, PageRequest};
pub use patients::*;
pub use people::*;
pub use seed::{SEED_PASSWORD, SeedReport, seed_demo};
pub use settings::*;
pub use studies::*;
pub use tokens::*;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgPool};
use std::str::FromStr;
use std::time::Duration;

/// The migrations of the control plane, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects a pool to `database_url`.
pub async fn connect(database_url: &str, max_connections: u32) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(database_url)
        .map_err(|source| Error::InvalidDatabaseUrl { reason: source.to_string() })?;
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Creates the database named in `database_url` if it does not exist yet (connecting to the server's
/// `postgres` database to do so). Returns whether it was created.
pub async fn create_database_if_missing(database_url: &str) -> Result<bool> {
    let options = PgConnectOptions::from_str(database_url)
        .map_err(|source| Error::InvalidDatabaseUrl { reason: source.to_string() })?;
    let Some(database) = options.get_database().map(str::to_owned) else {
        return Err(Error::InvalidDatabaseUrl { reason: "it names no database".into() });
    };
    let mut admin = options.database("postgres").connect().await?;
    let exists =
        sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS "exists!""#, database)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = database.replace('"', "\"\"");
        sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{quoted}\""))).execute(&mut admin).await?;
    }
    admin.close().await?;
    Ok(!exists)
}

/// Runs the pending migrations.
pub async fn migrate(pool: &PgPool) -> Result<()> {
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Versions of the embedded migrations that the database has not applied yet (all of them on a fresh database).
pub async fn pending_migrations(pool: &PgPool) -> Result<Vec<i64>> {
    let has_table: bool = sqlx::query_scalar!(r#"SELECT to_regclass('_sqlx_migrations') IS NOT NULL AS "exists!""#)
        .fetch_one(pool)
        .await?;
    let applied: Vec<i64> = if has_table {
        sqlx::query_scalar!("SELECT version FROM _sqlx_migrations WHERE success").fetch_all(pool).await?
    } else {
        Vec::new()
    };
    Ok(MIGRATOR.iter().map(|m| m.version).filter(|v| !applied.contains(v)).collect())
}

/// Whether the control plane holds no users yet (a fresh database that `jhe dev` seeds).
pub async fn is_empty(pool: &PgPool) -> Result<bool> {
    let any = sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM users) AS "exists!""#).fetch_one(pool).await?;
    Ok(!any)
}
