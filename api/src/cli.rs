//! The `jhe` command line: subcommands, configuration (defaults < TOML file < environment < flags).

use crate::AppState;
use crate::audit::AuditLog;
use crate::pipeline::{PipelineConfig, Roles};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/jhe";
const DEFAULT_LISTEN: &str = "127.0.0.1:8000";
const DEFAULT_DATA_DIR: &str = "./var";
const DEFAULT_TOPIC: &str = "jhe.observations";
const DEFAULT_LOG_PARTITIONS: i32 = 6;
const DEFAULT_FLUSH_INTERVAL_MS: u64 = 1000;
const DEFAULT_FLUSH_MAX_RECORDS: usize = jhe_processor::DEFAULT_FLUSH_MAX_RECORDS;
const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9464";

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
    /// Serve the HTTP API and take uploads (the database must be migrated). With Kafka (JHE_KAFKA_BROKERS) uploads
    /// go to the topic and `jhe process` stores them; without it, this process also runs the processor.
    Serve(ServerArgs),
    /// Run the processor: consume the Kafka topic and publish Parquet files (needs JHE_KAFKA_BROKERS). Scale out by
    /// starting more (one per partition at most).
    Process(ProcessArgs),
    /// Apply the database migrations.
    Migrate(DatabaseArgs),
    /// Load the reference demo data (idempotent).
    Seed(SeedArgs),
    /// Bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The OAuth provider's ID-token signing keys.
    #[command(subcommand)]
    SigningKey(SigningKeyCommand),
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

#[derive(Debug, Subcommand)]
pub enum SigningKeyCommand {
    /// Generate a new RS256 key that signs ID tokens from now on; the old keys stay in the JWKS until the ID tokens
    /// they signed have expired (JHE_ID_TOKEN_LIFETIME_SECONDS). Stored keys are first encrypted with JHE_SECRET_KEY
    /// (as at a server start). Prints the new key's id (kid).
    Rotate(SigningKeyArgs),
}

#[derive(Debug, Clone, Args)]
pub struct SigningKeyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub secret: SecretArgs,
}

/// The secret that encrypts the OAuth provider's ID-token signing keys stored in Postgres.
#[derive(Debug, Clone, Args)]
pub struct SecretArgs {
    /// 32 random bytes in base64 (`openssl rand -base64 32`) that encrypt the stored ID-token signing keys; prefer
    /// the environment variable to the flag [default: none: keys are stored unencrypted, with a warning]
    #[arg(long, env = "JHE_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<String>,
    /// The JHE_SECRET_KEY being replaced: it only decrypts keys, which are encrypted again with JHE_SECRET_KEY at
    /// start
    #[arg(long, env = "JHE_SECRET_KEY_PREVIOUS", hide_env_values = true)]
    pub secret_key_previous: Option<String>,
}

impl SecretArgs {
    /// The parsed secret (the values are never printed, not even in errors).
    pub fn resolve(&self) -> anyhow::Result<crate::ServerSecret> {
        Ok(crate::ServerSecret::from_settings(self.secret_key.as_deref(), self.secret_key_previous.as_deref())?)
    }
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
    /// External base URL used in links (e.g. https://jhe.example.org) [default: links in answers derive it from
    /// the request (X-Forwarded-* only from JHE_TRUSTED_PROXIES); links in mail use the listen address]
    #[arg(long, env = "JHE_SITE_URL")]
    pub site_url: Option<url::Url>,
    /// Address of the admin listener: GET /metrics (Prometheus), /livez, /readyz, /health [default: 127.0.0.1:9464]
    #[arg(long, env = "JHE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Largest number of Postgres connections [default: 16]
    #[arg(long, env = "JHE_DATABASE_MAX_CONNECTIONS")]
    pub database_max_connections: Option<u32>,
    /// Record every read, search and export in the audit trail (`off` only to measure its cost) [default: on]
    #[arg(long, env = "JHE_AUDIT", value_parser = clap::builder::BoolishValueParser::new())]
    pub audit: Option<bool>,
    #[command(flatten)]
    pub secret: SecretArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

/// The data plane: log, object store, processor tuning.
#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Kafka bootstrap servers (host:port,...); unset = the embedded durable log under the data directory
    #[arg(long, env = "JHE_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Where Parquet files go: s3://bucket/prefix (AWS_* variables for endpoint, region, credentials) or
    /// file:///dir [default: <data dir>/lake]
    #[arg(long, env = "JHE_OBJECT_STORE_URL")]
    pub object_store_url: Option<String>,
    /// The observation topic (dead letters go to <topic>.dlq) [default: jhe.observations]
    #[arg(long, env = "JHE_TOPIC")]
    pub topic: Option<String>,
    /// Partitions of topics jhe creates [default: 6]
    #[arg(long, env = "JHE_LOG_PARTITIONS")]
    pub log_partitions: Option<i32>,
    /// Longest wait before buffered observations are written and queryable, in milliseconds [default: 1000]
    #[arg(long, env = "JHE_FLUSH_INTERVAL_MS")]
    pub flush_interval_ms: Option<u64>,
    /// Extra librdkafka properties for every Kafka client, `key=value` separated by `;` (e.g.
    /// `security.protocol=SASL_SSL;sasl.mechanism=PLAIN;sasl.username=jhe`)
    #[arg(long, env = "JHE_KAFKA_PROPERTIES", hide_env_values = true)]
    pub kafka_properties: Option<String>,
    /// Kafka consumer group of the processors [default: jhe-processor]
    #[arg(long, env = "JHE_PROCESSOR_GROUP")]
    pub processor_group: Option<String>,
    /// Most observations written in one flush (one file per code and day each) [default: 25000]
    #[arg(long, env = "JHE_FLUSH_MAX_RECORDS")]
    pub flush_max_records: Option<usize>,
    /// A folder of extra JSON Schema files for site-specific data types
    #[arg(long, env = "JHE_SCHEMAS_DIR")]
    pub schemas_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Where jhe keeps its data files [default: ./var]
    #[arg(long, env = "JHE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the admin listener: GET /metrics (Prometheus), /livez, /readyz, /health; `JHE_METRICS_LISTEN`
    /// is read when this is unset [default: 127.0.0.1:9464]
    #[arg(long, alias = "metrics-listen", env = "JHE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
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
    pub audit: Option<bool>,
    pub kafka_brokers: Option<String>,
    pub object_store_url: Option<String>,
    pub topic: Option<String>,
    pub log_partitions: Option<i32>,
    pub flush_interval_ms: Option<u64>,
    pub flush_max_records: Option<usize>,
    pub processor_group: Option<String>,
    /// librdkafka properties (`security.protocol`, `sasl.*`, …); the environment/flag form is `k=v;k=v`
    pub kafka_properties: Option<std::collections::BTreeMap<String, String>>,
    pub schemas_dir: Option<PathBuf>,
    #[serde(alias = "metrics_listen")]
    pub admin_listen: Option<SocketAddr>,
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
    /// The admin listener (`/metrics`, `/livez`, `/readyz`, `/health`).
    pub admin_listen: SocketAddr,
    pub database_max_connections: u32,
    /// Whether reads are recorded in the audit trail.
    pub audit: bool,
    /// Encrypts the stored ID-token signing keys (`JHE_SECRET_KEY`).
    pub secret: crate::ServerSecret,
    pub pipeline: PipelineConfig,
}

/// The data-plane configuration from flags, file and defaults.
pub fn pipeline_config(
    args: &PipelineArgs,
    file: &FileConfig,
    data_dir: &std::path::Path,
) -> anyhow::Result<PipelineConfig> {
    let partitions = args.log_partitions.or(file.log_partitions).unwrap_or(DEFAULT_LOG_PARTITIONS);
    anyhow::ensure!((1..=1024).contains(&partitions), "log_partitions must be between 1 and 1024");
    let flush_ms = args.flush_interval_ms.or(file.flush_interval_ms).unwrap_or(DEFAULT_FLUSH_INTERVAL_MS);
    anyhow::ensure!((10..=600_000).contains(&flush_ms), "flush_interval_ms must be between 10 and 600000");
    let topic = args.topic.clone().or_else(|| file.topic.clone()).unwrap_or_else(|| DEFAULT_TOPIC.to_owned());
    anyhow::ensure!(!topic.trim().is_empty(), "topic must not be empty");
    let mut kafka_properties: Vec<(String, String)> =
        file.kafka_properties.clone().unwrap_or_default().into_iter().collect();
    if let Some(text) = &args.kafka_properties {
        for pair in text.split(';').map(str::trim).filter(|pair| !pair.is_empty()) {
            let (key, value) =
                pair.split_once('=').with_context(|| format!("kafka_properties: `{pair}` is not key=value"))?;
            kafka_properties.retain(|(existing, _)| existing != key.trim());
            kafka_properties.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    Ok(PipelineConfig {
        kafka_properties,
        kafka_brokers: args
            .kafka_brokers
            .clone()
            .or_else(|| file.kafka_brokers.clone())
            .filter(|b| !b.trim().is_empty()),
        object_store_url: args.object_store_url.clone().or_else(|| file.object_store_url.clone()),
        data_dir: data_dir.to_path_buf(),
        topic,
        partitions,
        group: args
            .processor_group
            .clone()
            .or_else(|| file.processor_group.clone())
            .unwrap_or_else(|| "jhe-processor".to_owned()),
        flush_interval: std::time::Duration::from_millis(flush_ms),
        flush_max_records: args
            .flush_max_records
            .or(file.flush_max_records)
            .unwrap_or(DEFAULT_FLUSH_MAX_RECORDS)
            .max(1),
        schemas_dir: args.schemas_dir.clone().or_else(|| file.schemas_dir.clone()),
        query: jhe_query::QuerySettings::from_env().map_err(anyhow::Error::msg)?,
    })
}

/// `jhe process` configuration.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    pub database_url: String,
    /// The admin listener (`/metrics`, `/livez`, `/readyz`, `/health`).
    pub admin_listen: SocketAddr,
    pub pipeline: PipelineConfig,
}

impl ProcessConfig {
    pub fn resolve(args: &ProcessArgs, file: &FileConfig) -> anyhow::Result<Self> {
        let data_dir =
            args.data_dir.clone().or_else(|| file.data_dir.clone()).unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        let pipeline = pipeline_config(&args.pipeline, file, &data_dir)?;
        anyhow::ensure!(
            pipeline.kafka_brokers.is_some(),
            "jhe process reads the Kafka topic: set JHE_KAFKA_BROKERS (or --kafka-brokers). Without Kafka, `jhe serve` \
             and `jhe dev` run the processor in-process on the embedded log."
        );
        let alias = match std::env::var("JHE_METRICS_LISTEN") {
            Ok(text) => Some(text.trim().parse().context("JHE_METRICS_LISTEN is not an address:port")?),
            Err(_) => None,
        };
        let admin_listen = admin_listen(args.admin_listen.or(alias), file)?;
        Ok(Self { database_url: database_url(&args.database, file), admin_listen, pipeline })
    }
}

impl ServerConfig {
    pub fn resolve(args: &ServerArgs, file: &FileConfig) -> anyhow::Result<Self> {
        let listen = match args.listen.or(file.listen) {
            Some(listen) => listen,
            None => DEFAULT_LISTEN.parse().context("default listen address")?,
        };
        let max = args.database_max_connections.or(file.database_max_connections).unwrap_or(16);
        anyhow::ensure!(max >= 1, "database_max_connections must be at least 1");
        let data_dir =
            args.data_dir.clone().or_else(|| file.data_dir.clone()).unwrap_or_else(|| DEFAULT_DATA_DIR.into());
        Ok(ServerConfig {
            database_url: database_url(&args.database, file),
            listen,
            pipeline: pipeline_config(&args.pipeline, file, &data_dir)?,
            data_dir,
            site_url: args.site_url.clone().or_else(|| file.site_url.clone()),
            admin_listen: admin_listen(args.admin_listen, file)?,
            database_max_connections: max,
            audit: args.audit.or(file.audit).unwrap_or(true),
            secret: args.secret.resolve()?,
        })
    }
}

/// The admin listener's address: the flag or environment, else the file, else 127.0.0.1:9464.
fn admin_listen(given: Option<SocketAddr>, file: &FileConfig) -> anyhow::Result<SocketAddr> {
    match given.or(file.admin_listen) {
        Some(listen) => Ok(listen),
        None => DEFAULT_ADMIN_LISTEN.parse().context("default admin address"),
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

/// Serves HTTP and runs the data-plane roles of this process until SIGINT/SIGTERM; then stops taking requests,
/// lets the processor publish what it holds, and exits.
pub async fn run_server(
    config: ServerConfig,
    pool: sqlx::PgPool,
    metrics: Option<PrometheusHandle>,
    always_process: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {} (set JHE_LISTEN to use another address)", config.listen))?;
    let admin = bind_admin(config.admin_listen).await?;
    if config.site_url.is_none() {
        tracing::warn!(
            listen = %config.listen,
            "JHE_SITE_URL is not set: links in account mail point at the listen address; set it to the public URL"
        );
    }
    // The embedded log is one process's: whoever takes uploads must also process them.
    let roles = Roles { ingest: true, processor: always_process || config.pipeline.kafka_brokers.is_none() };
    let stop = CancellationToken::new();
    let mut plane = crate::pipeline::start(&config.pipeline, pool.clone(), roles, stop.clone()).await?;
    if !config.audit {
        tracing::warn!("the audit trail is off (JHE_AUDIT=off): reads are not recorded");
    }
    let audit = if config.audit { AuditLog::start(pool.clone()) } else { AuditLog::disabled() };
    let state = AppState {
        pool,
        site_url: config.site_url.as_ref().map(|u| Arc::from(u.as_str().trim_end_matches('/'))),
        listen_url: None,
        ingest: plane.ingest.take(),
        query: plane.query.take(),
        metrics,
        audit,
        token_cache: crate::token_cache::TokenCache::from_env(),
        mailer: crate::mail::Mailer::from_env(Some(&config.data_dir))?,
        login_limits: crate::login_limits::LoginLimits::from_env(),
        federation: crate::Federation::from_env()?,
        server_secret: config.secret,
        bulk_uploads: crate::bulk_upload_slots_from_env(),
    };
    tracing::info!(listen = %config.listen, admin = %config.admin_listen, kafka = config.pipeline.kafka_brokers.is_some(), processor = roles.processor, "serving");
    let http_stop = stop.clone();
    let shutdown = async move {
        shutdown_signal().await;
        http_stop.cancel();
    };
    let admin_stop = stop.clone();
    let admin_state = state.clone();
    tokio::spawn(async move {
        if let Err(error) = crate::serve_admin(admin, admin_state, async move { admin_stop.cancelled().await }).await {
            tracing::error!(%error, "the admin listener stopped");
        }
    });
    let served = tokio::select! {
        served = crate::serve(listener, state, shutdown) => served.context("serving HTTP"),
        failed = first_failure(&mut plane.tasks) => failed,
    };
    stop.cancel();
    drain(&mut plane.tasks).await;
    served
}

/// The admin listener's socket (`JHE_ADMIN_LISTEN`).
async fn bind_admin(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address} (set JHE_ADMIN_LISTEN to use another address)"))
}

/// Runs the processor (and its compactor and janitor) until SIGINT/SIGTERM, with the admin listener (/metrics,
/// /livez, /readyz, /health) and nothing else.
pub async fn run_processor(
    config: ProcessConfig,
    pool: sqlx::PgPool,
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<()> {
    let listener = bind_admin(config.admin_listen).await?;
    let stop = CancellationToken::new();
    let mut plane =
        crate::pipeline::start(&config.pipeline, pool.clone(), Roles { ingest: false, processor: true }, stop.clone())
            .await?;
    let state = AppState { metrics, ..AppState::new(pool) };
    let http_stop = stop.clone();
    let shutdown = async move {
        shutdown_signal().await;
        http_stop.cancel();
    };
    tracing::info!(admin = %config.admin_listen, topic = %config.pipeline.topic, "processing");
    let served = tokio::select! {
        served = crate::serve_admin(listener, state, shutdown) => served.context("serving the admin listener"),
        failed = first_failure(&mut plane.tasks) => failed,
    };
    stop.cancel();
    drain(&mut plane.tasks).await;
    served
}

/// Resolves when a background task fails (or all have ended); a failed task stops the process, which restarts
/// from the published positions.
async fn first_failure(tasks: &mut JoinSet<anyhow::Result<()>>) -> anyhow::Result<()> {
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(anyhow::anyhow!("a background task panicked: {error}")),
        }
    }
    std::future::pending().await
}

async fn drain(tasks: &mut JoinSet<anyhow::Result<()>>) {
    let deadline = tokio::time::sleep(std::time::Duration::from_secs(30));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            () = &mut deadline => {
                tracing::warn!("background tasks did not stop within 30 s; exiting");
                tasks.abort_all();
                return;
            }
            joined = tasks.join_next() => match joined {
                None => return,
                Some(Ok(Err(error))) => tracing::error!(error = %format!("{error:#}"), "background task failed"),
                Some(_) => {}
            },
        }
    }
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
