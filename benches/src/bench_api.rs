//! End-to-end benchmark of the Admin REST API: `GET /api/v1/patients?organization_id=…` latency with 10,000
//! patients in one organization, against a real `jhe serve` process over a real Postgres, and that process's
//! idle RSS, and the cost of the audit trail (the same read against a second server with `JHE_AUDIT=off`).
//!
//! Run: `cargo build --release -p jhe-api -p jhe-benches && $CARGO_TARGET_DIR/release/bench-api`
//! (`--patients`, `--requests`, `--jhe <path to the jhe binary>`).

use anyhow::{Context, bail};
use clap::Parser;
use jhe_tests::TestDatabase;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    /// Patients to add to the organization
    #[arg(long, default_value_t = 10_000)]
    patients: i64,
    /// Timed requests per scenario
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// The jhe binary [default: next to this benchmark's executable]
    #[arg(long)]
    jhe: Option<PathBuf>,
    /// Port for the jhe server
    #[arg(long, default_value_t = 18_090)]
    port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let jhe = match args.jhe.clone() {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("jhe"),
    };
    anyhow::ensure!(jhe.exists(), "{} not found; build it with `cargo build --release -p jhe-api`", jhe.display());

    let db = TestDatabase::create(true).await?;
    let organization: i64 =
        sqlx::query_scalar("SELECT id FROM organizations WHERE name = 'Lifespan Lab'").fetch_one(&db.pool).await?;
    load_patients(&db, organization, args.patients).await?;
    sqlx::query("ANALYZE").execute(&db.pool).await?;
    let token = jhe_catalog::create_token_for_email(&db.pool, "manager_mary@example.com", chrono::Duration::hours(2))
        .await?
        .token;

    let listen = format!("127.0.0.1:{}", args.port);
    let mut server = start_server(&jhe, &db.url, &listen, true)?;
    let pid = server.id().context("server pid")?;
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    wait_until_healthy(&http, &base).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_rss = rss_kib(pid)?;

    println!(
        "jhe REST benchmark: {} patients in organization {organization}, {} requests per scenario, 1 client, keep-alive",
        args.patients + 2,
        args.requests
    );
    println!("idle RSS of `jhe serve`: {:.1} MiB", idle_rss as f64 / 1024.0);
    // a deep page: the middle one of the organization's patients at 20 per page (page 250 with the default 10,000)
    let deep_page = ((args.patients + 2) / 40).max(1);
    let scenarios = [
        ("first page (20)".to_owned(), format!("{base}/api/v1/patients?organization_id={organization}")),
        (
            format!("page {deep_page} (20)"),
            format!("{base}/api/v1/patients?organization_id={organization}&page={deep_page}"),
        ),
        ("first page (100)".to_owned(), format!("{base}/api/v1/patients?organization_id={organization}&page_size=100")),
    ];
    for (name, url) in &scenarios {
        let stats = measure(&http, url, &token, args.requests).await?;
        println!(
            "{name:<18} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({:.0} req/s)",
            stats.p50_ms, stats.p99_ms, stats.max_ms, stats.per_second
        );
    }
    println!("RSS after the run: {:.1} MiB", rss_kib(pid)? as f64 / 1024.0);

    // The audit trail's cost: the same read against a second server with JHE_AUDIT=off, in alternating rounds so
    // both see the same machine load.
    let quiet_listen = format!("127.0.0.1:{}", args.port + 1);
    let mut quiet = start_server(&jhe, &db.url, &quiet_listen, false)?;
    let quiet_base = format!("http://{quiet_listen}");
    wait_until_healthy(&http, &quiet_base).await?;
    let path = format!("/api/v1/patients?organization_id={organization}");
    samples(&http, &format!("{quiet_base}{path}"), &token, 200).await?; // warm-up
    let (mut audited, mut unaudited) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        audited.extend(samples(&http, &format!("{base}{path}"), &token, args.requests / 10).await?);
        unaudited.extend(samples(&http, &format!("{quiet_base}{path}"), &token, args.requests / 10).await?);
    }
    let (on, off) = (Stats::of(audited, Duration::ZERO), Stats::of(unaudited, Duration::ZERO));
    println!(
        "audit trail on  p50 {:>7.2} ms  p99 {:>7.2} ms\naudit trail off p50 {:>7.2} ms  p99 {:>7.2} ms\n\
         cost of the audit trail: p50 {:+.3} ms, p99 {:+.3} ms",
        on.p50_ms,
        on.p99_ms,
        off.p50_ms,
        off.p99_ms,
        on.p50_ms - off.p50_ms,
        on.p99_ms - off.p99_ms
    );
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events").fetch_one(&db.pool).await?;
    println!("audit events recorded: {recorded}");
    quiet.kill().await.ok();
    server.kill().await.ok();
    Ok(())
}

fn start_server(
    jhe: &std::path::Path,
    database_url: &str,
    listen: &str,
    audit: bool,
) -> anyhow::Result<tokio::process::Child> {
    tokio::process::Command::new(jhe)
        .arg("serve")
        .env("DATABASE_URL", database_url)
        .env("JHE_LISTEN", listen)
        .env("JHE_DATA_DIR", std::env::temp_dir().join(format!("jhe-bench-var-{listen}")))
        .env("JHE_LOG", "warn")
        .env("JHE_AUDIT", if audit { "on" } else { "off" })
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", jhe.display()))
}

async fn load_patients(db: &TestDatabase, organization: i64, count: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO users (email, user_type) SELECT 'bench' || g || '@example.com', 'patient' FROM generate_series(1, $1) g",
    )
    .bind(count)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO patients (user_id, name_family, name_given, birth_date)
         SELECT id, 'Family' || id, 'Given' || id, DATE '1970-01-01' + (id % 10000)::int
         FROM users WHERE email LIKE 'bench%@example.com' ORDER BY id",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO patient_organizations (patient_id, organization_id)
         SELECT p.id, $1 FROM patients p JOIN users u ON u.id = p.user_id WHERE u.email LIKE 'bench%@example.com'",
    )
    .bind(organization)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO patient_identifiers (patient_id, system, value)
         SELECT p.id, 'urn:bench', 'B-' || p.id FROM patients p JOIN users u ON u.id = p.user_id
         WHERE u.email LIKE 'bench%@example.com'",
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    eprintln!("loaded {count} patients in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

async fn wait_until_healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..100 {
        if let Ok(response) = http.get(format!("{base}/health")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("jhe did not become healthy at {base}")
}

struct Stats {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    per_second: f64,
}

impl Stats {
    fn of(mut samples: Vec<Duration>, total: Duration) -> Self {
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
        Stats {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
            per_second: samples.len() as f64 / total.as_secs_f64().max(f64::MIN_POSITIVE),
        }
    }
}

async fn samples(http: &reqwest::Client, url: &str, token: &str, requests: usize) -> anyhow::Result<Vec<Duration>> {
    let mut samples = Vec::with_capacity(requests);
    for _ in 0..requests {
        let one = Instant::now();
        fetch(http, url, token).await?;
        samples.push(one.elapsed());
    }
    Ok(samples)
}

async fn measure(http: &reqwest::Client, url: &str, token: &str, requests: usize) -> anyhow::Result<Stats> {
    for _ in 0..requests.min(200) {
        fetch(http, url, token).await?;
    }
    let started = Instant::now();
    let samples = samples(http, url, token, requests).await?;
    Ok(Stats::of(samples, started.elapsed()))
}

async fn fetch(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<()> {
    let response = http.get(url).bearer_auth(token).send().await?;
    anyhow::ensure!(response.status().is_success(), "{url}: {}", response.status());
    let body: serde_json::Value = response.json().await?;
    anyhow::ensure!(body["results"].as_array().is_some_and(|r| !r.is_empty()), "{url}: empty page");
    Ok(())
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS not found")
}
