//! `bench-query`: read latency over a lake written by `bench-load` (issue 5), against a real `jhe serve` process.
//!
//! Scenarios (a manager of "Lifespan Lab", where `bench-load` puts its participants, so the consent filter is on):
//! * one patient's page of 1,000 observations (a random participant each time): p50/p99;
//! * all 10,000 first observations of one patient over HTTP at `_count=1000`, following `next` links: p50/p99;
//! * the same through the real `jupyterhealth-client` (`list_observations(patient_id=…, limit=10000)`), if the venv
//!   exists — there the client's own per-row work dominates;
//! * `_summary=count` for one code over everything stored: p50/p99.
//!
//! Run: `bench-load --patients 1000 --days 32` (≈ 100 M observations) prints `DATABASE_URL` and `JHE_DATA_DIR`; then
//! `cargo build --release -p jhe-api -p jhe-benches` and
//! `DATABASE_URL=… JHE_DATA_DIR=… $CARGO_TARGET_DIR/release/bench-query` (`--requests`, `--jhe`, `--port`).

use anyhow::{Context, bail, ensure};
use clap::Parser;
use rand::seq::IndexedRandom;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

const PRACTITIONER: &str = "manager_mary@example.com";
const HEART_RATE: &str = "https://w3id.org/openmhealth|omh:heart-rate:2.0";

#[derive(Debug, Parser)]
#[command(name = "bench-query", about = "read latency over a bench-load lake")]
struct Args {
    /// The database bench-load wrote
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// The data directory bench-load wrote (unless JHE_OBJECT_STORE_URL is set)
    #[arg(long, env = "JHE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Timed requests per scenario
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// The jhe binary [default: next to this benchmark's executable]
    #[arg(long)]
    jhe: Option<PathBuf>,
    /// Port for the jhe server
    #[arg(long, default_value_t = 18_095)]
    port: u16,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let jhe = match args.jhe.clone() {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("jhe"),
    };
    ensure!(jhe.exists(), "{} not found; build it with `cargo build --release -p jhe-api`", jhe.display());
    let pool = jhe_catalog::connect(&args.database_url, 4).await.context("connecting to DATABASE_URL")?;
    let (stored, files): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(row_count), 0)::int8, count(*) FROM parquet_files WHERE state = 'published'",
    )
    .fetch_one(&pool)
    .await?;
    ensure!(stored > 0, "the catalog holds no observations: run bench-load first");
    // participants bench-load made (its e-mail pattern), with at least 10,000 visible observations from 4 days on (6 for those not consenting to steps)
    let patients: Vec<i64> = sqlx::query_scalar(
        "SELECT p.id FROM patients p JOIN users u ON u.id = p.user_id WHERE u.email LIKE 'load-%' ORDER BY p.id",
    )
    .fetch_all(&pool)
    .await?;
    ensure!(patients.len() >= 2, "no bench-load participants in this database");
    // bench-load leaves every tenth participant (from the first) without consent to steps: fewer visible rows
    let consenting_to_all: Vec<i64> =
        patients.iter().enumerate().filter(|(index, _)| index % 10 != 0).map(|(_, id)| *id).collect();
    let token = jhe_catalog::create_token_for_email(&pool, PRACTITIONER, chrono::Duration::hours(4)).await?.token;

    let listen = format!("127.0.0.1:{}", args.port);
    let mut command = tokio::process::Command::new(&jhe);
    command
        .arg("serve")
        .env("DATABASE_URL", &args.database_url)
        .env("JHE_LISTEN", &listen)
        .env("JHE_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = &args.data_dir {
        command.env("JHE_DATA_DIR", dir);
    }
    let mut server = command.spawn().with_context(|| format!("starting {}", jhe.display()))?;
    let base = format!("http://{listen}");
    let http = reqwest::Client::new();
    wait_until_healthy(&http, &base).await?;

    println!(
        "jhe query benchmark: {stored} observations in {files} files, {} participants; {} requests per scenario, \
         1 client, keep-alive, as {PRACTITIONER}",
        patients.len(),
        args.requests
    );
    let mut rng = rand::rng();

    let mut page = Vec::with_capacity(args.requests);
    for round in 0..args.requests + 10 {
        let patient = patients.choose(&mut rng).context("a patient")?;
        let url = format!("{base}/FHIR/R5/Observation?patient={patient}&_count=1000");
        let started = Instant::now();
        let bundle = get(&http, &url, &token).await?;
        let elapsed = started.elapsed();
        ensure!(entries(&bundle) == 1000, "{url}: {} entries", entries(&bundle));
        if round >= 10 {
            page.push(elapsed);
        }
    }
    report("one patient, page of 1,000", page);

    let mut walks = Vec::new();
    for round in 0..(args.requests / 10).max(5) + 2 {
        let patient = consenting_to_all.choose(&mut rng).context("a patient")?;
        let mut url = format!("{base}/FHIR/R5/Observation?patient={patient}&_count=1000");
        let started = Instant::now();
        let mut seen = 0;
        while seen < 10_000 {
            let bundle = get(&http, &url, &token).await?;
            seen += entries(&bundle);
            match next_link(&bundle) {
                Some(next) => url = next,
                None => break,
            }
        }
        let elapsed = started.elapsed();
        ensure!(seen >= 10_000, "patient {patient}: only {seen} observations");
        if round >= 2 {
            walks.push(elapsed);
        }
    }
    report("one patient, 10,000 at _count=1000", walks);

    if let Some(python) = jhe_tests::python() {
        let patient = consenting_to_all[0];
        let script = r#"
import os, sys, time
from jupyterhealth_client import JupyterHealthClient
client = JupyterHealthClient(url=os.environ["JHE_URL"], token=os.environ["JHE_TOKEN"])
patient = int(sys.argv[1])
times = []
for _ in range(5):
    started = time.perf_counter()
    df = client.list_observations_df(patient_id=patient, limit=10000)
    times.append(time.perf_counter() - started)
    assert len(df) == 10000, len(df)
rows = list(client.list_observations(patient_id=patient, limit=10000))
started = time.perf_counter()
rows = list(client.list_observations(patient_id=patient, limit=10000))
print(f"{min(times):.3f} {sorted(times)[2]:.3f} {time.perf_counter() - started:.3f}")
"#;
        let output = tokio::process::Command::new(&python)
            .args(["-c", script, &patient.to_string()])
            .env("JHE_URL", &base)
            .env("JHE_TOKEN", &token)
            .output()
            .await?;
        if output.status.success() {
            let text = String::from_utf8_lossy(&output.stdout);
            let figures: Vec<&str> = text.split_whitespace().collect();
            if let [best, median, records] = figures.as_slice() {
                println!(
                    "{:<40} best {best} s, median {median} s (DataFrame); list_observations alone {records} s",
                    "jupyterhealth-client, 10,000 rows"
                );
            }
        } else {
            println!("jupyterhealth-client run failed: {}", String::from_utf8_lossy(&output.stderr));
        }
    }

    let mut counts = Vec::with_capacity(args.requests);
    let mut total = None;
    for round in 0..args.requests.min(50) + 3 {
        let url = format!("{base}/FHIR/R5/Observation?code={}&_summary=count", urlencode(HEART_RATE));
        let started = Instant::now();
        let bundle = get(&http, &url, &token).await?;
        let elapsed = started.elapsed();
        total = bundle["total"].as_i64();
        if round >= 3 {
            counts.push(elapsed);
        }
    }
    report(&format!("_summary=count, heart rate ({} rows)", total.unwrap_or(-1)), counts);
    server.kill().await.ok();
    Ok(())
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn entries(bundle: &Value) -> usize {
    bundle["entry"].as_array().map_or(0, Vec::len)
}

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"].as_array()?.iter().find(|link| link["relation"] == "next")?["url"].as_str().map(str::to_owned)
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    println!("{name:<40} p50 {:>8.2} ms  p99 {:>8.2} ms  ({} samples)", at(0.5), at(0.99), samples.len());
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let response = http.get(url).bearer_auth(token).send().await?;
    let status = response.status();
    let body: Value = response.json().await.with_context(|| format!("{url}: not JSON"))?;
    ensure!(status.is_success(), "{url}: {status} {body}");
    Ok(body)
}

async fn wait_until_healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for _ in 0..300 {
        if let Ok(response) = http.get(format!("{base}/health")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("jhe did not become healthy at {base}")
}
