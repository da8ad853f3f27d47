//! `jhe`: wiring only. Each subcommand calls one entry point.

use anyhow::Context;
use clap::Parser;
use jhe_api::cli::{
    Cli, Command, FileConfig, ProcessConfig, ServerConfig, SigningKeyCommand, TokenCommand, database_url,
    prepare_database, run_processor, run_server,
};
use jhe_api::validate_cmd;
use tracing_subscriber::EnvFilter;

jhe_processor::use_jemalloc!();

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("JHE_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let file = FileConfig::load(cli.config.as_ref())?;
    match cli.command {
        Command::Dev(args) => {
            let config = ServerConfig::resolve(&args, &file)?;
            let pool = prepare_database(&config.database_url, true, config.database_max_connections).await?;
            if jhe_catalog::is_empty(&pool).await? {
                let site = site_for_seed(config.site_url.as_ref(), config.listen);
                let report = jhe_catalog::seed_demo(&pool, &site).await.context("seeding the demo data")?;
                eprintln!("seeded the demo data ({} rows)", report.total());
            }
            let site = site_for_seed(config.site_url.as_ref(), config.listen);
            eprintln!(
                "\njhe is running at {site}\n  health:   {site}/health\n  REST API: {site}/api/v1 (OpenAPI at {site}/api/schema/swagger-ui/)\n  uploads:  POST {site}/FHIR/R5/ (batch Bundles), {site}/FHIR/R5/Observation; files land in {}\n  metrics:  http://{}/metrics (the admin listener, JHE_ADMIN_LISTEN)\n  log in:   admin@example.com or manager_mary@example.com, password `{}`\n  token:    jhe token create --email manager_mary@example.com\n",
                config.data_dir.join("lake").display(),
                config.admin_listen,
                jhe_catalog::SEED_PASSWORD
            );
            run_server(config, pool, install_metrics(), true).await
        }
        Command::Serve(args) => {
            let config = ServerConfig::resolve(&args, &file)?;
            let pool = jhe_catalog::connect(&config.database_url, config.database_max_connections)
                .await
                .context("connecting to Postgres (set DATABASE_URL)")?;
            let pending = jhe_catalog::pending_migrations(&pool).await.context("reading the applied migrations")?;
            anyhow::ensure!(
                pending.is_empty(),
                "the database has {} migration(s) to apply ({pending:?}); run `jhe migrate` first",
                pending.len()
            );
            run_server(config, pool, install_metrics(), false).await
        }
        Command::Process(args) => {
            let config = ProcessConfig::resolve(&args, &file)?;
            let pool = jhe_catalog::connect(&config.database_url, 8)
                .await
                .context("connecting to Postgres (set DATABASE_URL)")?;
            let pending = jhe_catalog::pending_migrations(&pool).await.context("reading the applied migrations")?;
            anyhow::ensure!(pending.is_empty(), "the database has migrations to apply; run `jhe migrate` first");
            run_processor(config, pool, install_metrics()).await
        }
        Command::Migrate(args) => {
            prepare_database(&database_url(&args, &file), true, 2).await?;
            eprintln!("migrations applied");
            Ok(())
        }
        Command::Seed(args) => {
            let pool = prepare_database(&database_url(&args.database, &file), true, 2).await?;
            let site = args
                .site_url
                .as_ref()
                .map(|u| u.as_str().trim_end_matches('/').to_owned())
                .or_else(|| file.site_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_owned()))
                .unwrap_or_else(|| "http://127.0.0.1:8000".to_owned());
            let report = jhe_catalog::seed_demo(&pool, &site).await.context("seeding the demo data")?;
            eprintln!("seed done: {} new rows ({report:?})", report.total());
            Ok(())
        }
        Command::Validate(args) => std::process::exit(validate_cmd::run(&args)),
        Command::Token(TokenCommand::Create(args)) => {
            let pool = jhe_catalog::connect(&database_url(&args.database, &file), 2)
                .await
                .context("connecting to Postgres (set DATABASE_URL)")?;
            let lifetime = chrono::Duration::days(i64::from(args.days.max(1)));
            let token = jhe_catalog::create_token_for_email(&pool, &args.email, lifetime)
                .await
                .with_context(|| format!("creating a token for {}", args.email))?;
            println!("{}", token.token);
            Ok(())
        }
        Command::SigningKey(SigningKeyCommand::Rotate(args)) => {
            let secret = args.secret.resolve()?;
            let pool = jhe_catalog::connect(&database_url(&args.database, &file), 2)
                .await
                .context("connecting to Postgres (set DATABASE_URL)")?;
            let kid = jhe_api::rotate_signing_key(&pool, &secret).await.context("rotating the ID-token signing key")?;
            println!("{kid}");
            Ok(())
        }
    }
}

/// Histogram buckets of the latency-like metrics (seconds).
const SECONDS_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];
/// Buckets of `jhe_processor_file_bytes`.
const FILE_BYTES_BUCKETS: &[f64] = &[1e4, 1e5, 1e6, 4e6, 16e6, 64e6, 256e6, 1e9];

/// The process-wide Prometheus recorder (`GET /metrics`). Histograms are rendered as real Prometheus histograms:
/// the exporter's default rolling summaries drop samples that arrive out of order and keep every sample until the
/// next scrape or upkeep. Upkeep runs every 5 seconds so nothing piles up between scrapes.
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    let installed = PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(Matcher::Full("jhe_processor_file_bytes".to_owned()), FILE_BYTES_BUCKETS)
        })
        .and_then(PrometheusBuilder::install_recorder);
    match installed {
        Ok(handle) => {
            let upkeep = handle.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    upkeep.run_upkeep();
                }
            });
            Some(handle)
        }
        Err(error) => {
            tracing::warn!(%error, "metrics are disabled");
            None
        }
    }
}

fn site_for_seed(site_url: Option<&url::Url>, listen: std::net::SocketAddr) -> String {
    match site_url {
        Some(url) => url.as_str().trim_end_matches('/').to_owned(),
        None => format!("http://{listen}"),
    }
}
