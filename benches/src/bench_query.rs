//! `bench-query`: read latency over a lake written by `bench-load`, against a real `jhe serve` process.
//!
//! Scenarios (a manager of "Lifespan Lab", where `bench-load` puts its participants, so the consent filter is on):
//! * one patient's page of 1,000 observations (a random participant each time): p50/p99 to the response's last
//!   byte, and with the client's parse of it into a JSON tree;
//! * all 10,000 first observations of one patient over HTTP at `_count=1000`, following `next` links: p50/p99
//!   (each page read to its last byte and parsed for its `next` link and its entries, as a walking client must);
//! * the same through the real `jupyterhealth-client` (`list_observations(patient_id=…, limit=10000)`), if the venv
//!   exists — there the client's own per-row work dominates;
//! * `_summary=count` for one code over everything stored: p50/p99;
//! * the study-wide daily aggregate (`GET /api/v1/studies/{id}/observation_summary`: per patient, code and UTC day,
//!   count, mean, min and max) beside the same query in DuckDB over the same published files and the same consent
//!   set (`--duckdb-threads`, default the engine's thread count), both warm; DuckDB's time is its query alone.
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
    /// Threads DuckDB may use [default: the cores, as the engine]
    #[arg(long)]
    duckdb_threads: Option<usize>,
    /// Only run the study aggregate (and DuckDB)
    #[arg(long)]
    aggregate_only: bool,
    /// Skip the jupyterhealth-client scenario (its own per-row work takes most of a run)
    #[arg(long)]
    skip_client: bool,
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

    if !args.aggregate_only {
        latency_scenarios(&http, &base, &token, &args, &patients, &consenting_to_all).await?;
    }
    study_aggregate(&http, &base, &token, &args, &pool).await?;
    server.kill().await.ok();
    Ok(())
}

/// The per-request scenarios: a page, 10,000 rows, the Python client, `_summary=count`.
async fn latency_scenarios(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    args: &Args,
    patients: &[i64],
    consenting_to_all: &[i64],
) -> anyhow::Result<()> {
    let (http, token) = (http.clone(), token.to_owned());
    let mut rng = rand::rng();
    // A page is timed to the last byte of its response; the client's parse of the ~1 MB Bundle into a JSON tree
    // (3–5 ms here, the client's own work) is shown beside it.
    let (mut page, mut page_parsed) = (Vec::with_capacity(args.requests), Vec::with_capacity(args.requests));
    for round in 0..args.requests + 10 {
        let patient = patients.choose(&mut rng).context("a patient")?;
        let url = format!("{base}/FHIR/R5/Observation?patient={patient}&_count=1000");
        let started = Instant::now();
        let body = get_body(&http, &url, &token).await?;
        let received = started.elapsed();
        let bundle: Value = serde_json::from_slice(&body).with_context(|| format!("{url}: not JSON"))?;
        let parsed = started.elapsed();
        ensure!(entries(&bundle) == 1000, "{url}: {} entries", entries(&bundle));
        if round >= 10 {
            page.push(received);
            page_parsed.push(parsed);
        }
    }
    report("one patient, page of 1,000", page);
    report("  … with the client's JSON parse", page_parsed);

    let mut walks = Vec::new();
    for round in 0..(args.requests / 10).max(5) + 2 {
        let patient = consenting_to_all.choose(&mut rng).context("a patient")?;
        let mut url = format!("{base}/FHIR/R5/Observation?patient={patient}&_count=1000");
        let started = Instant::now();
        let mut seen = 0;
        while seen < 10_000 {
            // what a walking client must read: the next link and the entries (counted, not built into a tree)
            let body = get_body(&http, &url, &token).await?;
            let page: PageLinks = serde_json::from_slice(&body).with_context(|| format!("{url}: not a Bundle"))?;
            seen += page.entry.len();
            match page.link.into_iter().find(|link| link.relation == "next") {
                Some(next) => url = next.url,
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

    if let Some(python) = jhe_tests::python().filter(|_| !args.skip_client) {
        let patient = consenting_to_all.first().copied().context("a participant")?;
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
            .env("JHE_URL", base)
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
    Ok(())
}

/// Per patient, code and UTC day: count, mean, min, max; the same consent set as the API (the pairs a study-scoped
/// read may see); `{files}` and `{allowed}` are replaced by the script.
const DUCKDB_AGGREGATE: &str = r#"
import json, sys, time, duckdb
files, allowed, threads, runs = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
db = duckdb.connect()
db.execute(f"SET threads = {threads}")
db.execute("SET TimeZone = 'UTC'")
db.execute("SET enable_progress_bar = false")
db.execute(f"CREATE TABLE allowed AS SELECT * FROM read_csv('{allowed}', header = true, "
           "columns = {'patient_id': 'BIGINT', 'coding_system': 'VARCHAR', 'coding_code': 'VARCHAR'})")
query = """
SELECT o.patient_id, o.coding_system, o.coding_code, date_trunc('day', o.effective_start) AS day,
       count(*) AS count, avg(o.value) AS mean, min(o.value) AS min, max(o.value) AS max
FROM read_parquet($files) o SEMI JOIN allowed a
  ON o.patient_id = a.patient_id AND o.coding_system = a.coding_system AND o.coding_code = a.coding_code
GROUP BY ALL ORDER BY 1, 2, 3, 4
"""
times = []
for run in range(runs + 2):
    started = time.perf_counter()
    rows = db.execute(query, {"files": files}).fetchall()
    elapsed = time.perf_counter() - started
    if run >= 2:
        times.append(elapsed)
times.sort()
print(json.dumps({"groups": len(rows), "rows": sum(r[4] for r in rows), "p50": times[len(times) // 2], "min": times[0]}))
"#;

/// The study-wide daily aggregate through the API, then DuckDB's time for the same answer over the same files.
async fn study_aggregate(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    args: &Args,
    pool: &sqlx::PgPool,
) -> anyhow::Result<()> {
    let study: i64 =
        sqlx::query_scalar("SELECT id FROM studies WHERE name LIKE 'Wearables bench study %' ORDER BY id DESC LIMIT 1")
            .fetch_optional(pool)
            .await?
            .context("no bench-load study in this database")?;
    let runs = (args.requests / 20).clamp(3, 20);
    let url = format!("{base}/api/v1/studies/{study}/observation_summary");
    let mut times = Vec::with_capacity(runs);
    let mut answer = (0_usize, 0_u64);
    for round in 0..runs + 2 {
        let started = Instant::now();
        let body = get(http, &url, token).await?;
        let elapsed = started.elapsed();
        let results = body["results"].as_array().context("observation_summary: no results")?;
        answer = (results.len(), results.iter().filter_map(|row| row["count"].as_u64()).sum());
        if round >= 2 {
            times.push(elapsed);
        }
    }
    times.sort();
    let jhe_p50 = times[times.len() / 2].as_secs_f64();
    println!(
        "{:<40} p50 {:>8.2} ms  min {:>8.2} ms  ({} groups, {} observations, {} samples)",
        format!("study {study} daily aggregate (HTTP)"),
        jhe_p50 * 1000.0,
        times[0].as_secs_f64() * 1000.0,
        answer.0,
        answer.1,
        times.len()
    );

    let Some(python) = jhe_tests::python() else {
        println!("DuckDB comparison skipped: no Python venv (JHE_PYTHON)");
        return Ok(());
    };
    let Some(data_dir) = args.data_dir.as_ref().filter(|_| std::env::var_os("JHE_OBJECT_STORE_URL").is_none()) else {
        println!("DuckDB comparison skipped: it reads a local lake (JHE_DATA_DIR) only");
        return Ok(());
    };
    let lake = std::fs::canonicalize(data_dir.join(jhe_processor::store::LOCAL_LAKE_DIR))?;
    // the same consent set as the API's study-scoped read
    let pairs = jhe_catalog::consented_pairs(
        pool,
        &jhe_catalog::ConsentQuery {
            organizations: None,
            patients: None,
            study_id: Some(study),
            organization_id: None,
            codes: None,
        },
    )
    .await?;
    let files: Vec<String> =
        sqlx::query_scalar("SELECT object_path FROM parquet_files WHERE state = 'published'").fetch_all(pool).await?;
    let files: Vec<String> = files.iter().map(|path| lake.join(path).to_string_lossy().into_owned()).collect();
    let scratch = tempfile::tempdir()?;
    let files_path = scratch.path().join("files.json");
    std::fs::write(&files_path, serde_json::to_vec(&files)?)?;
    let allowed_path = scratch.path().join("allowed.csv");
    let mut allowed = String::from("patient_id,coding_system,coding_code\n");
    for pair in &pairs {
        allowed.push_str(&format!("{},{},{}\n", pair.patient_id, pair.coding_system, pair.coding_code));
    }
    std::fs::write(&allowed_path, allowed)?;
    let threads = args.duckdb_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from));
    let output = tokio::process::Command::new(&python)
        .arg("-c")
        .arg(DUCKDB_AGGREGATE)
        .arg(&files_path)
        .arg(&allowed_path)
        .arg(threads.to_string())
        .arg(runs.to_string())
        .output()
        .await?;
    ensure!(output.status.success(), "DuckDB run failed: {}", String::from_utf8_lossy(&output.stderr));
    // the figures are the script's last line
    let stdout = String::from_utf8_lossy(&output.stdout);
    let figures: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).with_context(|| format!("DuckDB: {stdout}"))?;
    let duck_p50 = figures["p50"].as_f64().context("DuckDB p50")?;
    println!(
        "{:<40} p50 {:>8.2} ms  min {:>8.2} ms  ({} groups, {} observations, {threads} threads); jhe/DuckDB {:.2}x",
        "same aggregate in DuckDB (query only)",
        duck_p50 * 1000.0,
        figures["min"].as_f64().unwrap_or_default() * 1000.0,
        figures["groups"],
        figures["rows"],
        jhe_p50 / duck_p50
    );
    ensure!(
        figures["groups"].as_u64() == Some(answer.0 as u64) && figures["rows"].as_u64() == Some(answer.1),
        "jhe and DuckDB disagree: jhe {answer:?}, DuckDB {figures}"
    );
    Ok(())
}

fn urlencode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn entries(bundle: &Value) -> usize {
    bundle["entry"].as_array().map_or(0, Vec::len)
}

/// A searchset Bundle as a walking client reads it.
#[derive(serde::Deserialize)]
struct PageLinks {
    #[serde(default)]
    link: Vec<BundleLink>,
    #[serde(default)]
    entry: Vec<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct BundleLink {
    relation: String,
    url: String,
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
    println!("{name:<40} p50 {:>8.2} ms  p99 {:>8.2} ms  ({} samples)", at(0.5), at(0.99), samples.len());
}

async fn get(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<Value> {
    let body = get_body(http, url, token).await?;
    serde_json::from_slice(&body).with_context(|| format!("{url}: not JSON"))
}

/// The body of a successful GET, read to its last byte.
async fn get_body(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<bytes::Bytes> {
    let response = http.get(url).bearer_auth(token).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    ensure!(status.is_success(), "{url}: {status} {}", String::from_utf8_lossy(&body));
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
