//! The `jhe` command line: subcommands, configuration (defaults < TOML file < environment < flags).

use crate::AppState;
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/jhe";
const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
const DEFAULT_DATA_DIR: &str = "./var";

#[derive(Debug, Parser)]
#[command(name = "jhe", version, about = "JupyterHealth Exchange, rebuilt in Rust as a streaming system")]
pub struct Cli {
    /// A TOML configuration file (keys match the long flags, e.g. `database_url`, `listen`).
    #[arg(long, env = "JHE_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process on embedded defaults: creates the database, migrates, seeds the demo data
    /// when it is empty, and serves HTTP.
    Dev(ServerArgs),
    /// Serve the HTTP API (the database must be migrated).
    Serve(ServerArgs),
    /// Apply the database migrations.
    Migrate(DatabaseArgs),
    /// Load the reference demo data (idempotent).
    Seed(SeedArgs),
    /// Bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Validate Open mHealth / IEEE 1752 data points: prints one line per invalid point, exits 1 if any is
    /// invalid (2 on usage or I/O errors).
    Validate(ValidateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ValidateArgs {
    /// Files or folders (searched recursively for *.json and *.ndjson); none, or `-`, reads NDJSON from stdin
    pub paths: Vec<PathBuf>,
    /// Validate every document as this data type (e.g. omh:heart-rate:2.0) instead of its header's schema_id;
    /// a document without a header is then validated as a body of that type
    #[arg(long)]
    pub code: Option<String>,
    /// A folder of extra JSON Schema files (*.json, each answering to the code its "$id" ends with,
    /// e.g. .../acme/glucose-ketone-1.0.json is acme:glucose-ketone:1.0)
    #[arg(long, env = "JHE_SCHEMAS_DIR")]
    pub schemas_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new bearer token for a user.
    Create(TokenCreateArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Postgres connection URL [default: postgres://postgres@127.0.0.1:5432/jhe]
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Address and port to listen on [default: 127.0.0.1:8000]
    #[arg(long, env = "JHE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where jhe keeps its data files [default: ./var]
    #[arg(long, env = "JHE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// External base URL used in links (e.g. https://jhe.example.org) [default: derived from each request]
    #[arg(long, env = "JHE_SITE_URL")]
    pub site_url: Option<url::Url>,
    /// Largest number of Postgres connections [default: 16]
    #[arg(long, env = "JHE_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct SeedArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The site URL the demo clients redirect to [default: http://127.0.0.1:8000]
    #[arg(long, env = "JHE_SITE_URL")]
    pub site_url: Option<url::Url>,
}

#[derive(Debug, Clone, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The user's email
    #[arg(long)]
    pub email: String,
    /// How long the token is valid, in days
    #[arg(long, default_value_t = 30)]
    pub days: u32,
}

/// The optional configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub database_url: Option<String>,
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub site_url: Option<url::Url>,
    pub database_max_connections: Option<u32>,
}

impl FileConfig {
    pub fn load(path: Option<&PathBuf>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

/// The validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub database_url: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub site_url: Option<url::Url>,
    pub database_max_connections: u32,
}

impl ServerConfig {
    pub fn resolve(args: &ServerArgs, file: &FileConfig) -> anyhow::Result<Self> {
        let listen = match args.listen.or(file.listen) {
            Some(listen) => listen,
            None => DEFAULT_LISTEN.parse().context("default listen address")?,
        };
        let max = args.database_max_connections.or(file.database_max_connections).unwrap_or(16);
        anyhow::ensure!(max >= 1, "database_max_connections must be at least 1");
        Ok(ServerConfig {
            database_url: database_url(&args.database, file),
            listen,
            data_dir: args
                .data_dir
                .clone()
                .or_else(|| file.data_dir.clone())
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            site_url: args.site_url.clone().or_else(|| file.site_url.clone()),
            database_max_connections: max,
        })
    }
}

pub fn database_url(args: &DatabaseArgs, file: &FileConfig) -> String {
    args.database_url.clone().or_else(|| file.database_url.clone()).unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// Migrates (creating the database first when `create` is set) and returns a pool.
pub async fn prepare_database(database_url: &str, create: bool, max_connections: u32) -> anyhow::Result<sqlx::PgPool> {
    if create && jhe_catalog::create_database_if_missing(database_url).await.context("creating the database")? {
        tracing::info!("created the database");
    }
    let pool = jhe_catalog::connect(database_url, max_connections)
        .await
        .context("connecting to Postgres (is it running? set DATABASE_URL)")?;
    jhe_catalog::migrate(&pool).await.context("applying migrations")?;
    Ok(pool)
}

/// Serves HTTP until SIGINT/SIGTERM.
pub async fn run_server(config: ServerConfig, pool: sqlx::PgPool) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {} (set JHE_LISTEN to use another address)", config.listen))?;
    let state =
        AppState { pool, site_url: config.site_url.as_ref().map(|u| Arc::from(u.as_str().trim_end_matches('/'))) };
    tracing::info!(listen = %config.listen, "serving");
    crate::serve(listener, state, shutdown_signal()).await.context("serving HTTP")?;
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down: draining requests");
}
