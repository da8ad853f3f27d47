//! Benchmarks of the observation pipeline:
//!
//! * `prefill`: a bench database (P patients of "Lifespan Lab", enrolled in "Lifespan Study on BP & HR" and consenting
//!   to heart rate and blood pressure; kept as `jhe_bench_…`) and a topic filled with N gateway-style messages
//!   (wearable data: heart rate every minute, blood pressure four times a day; one identifier each by default);
//! * `process`: the processor alone (this process runs nothing else) drains the pre-filled topic into Parquet:
//!   observations/s, observations per CPU-second (this process; Postgres and the broker are shown apart), peak RSS,
//!   files written. `--reset` forgets an earlier run over the same topic, so one prefill serves several runs;
//! * `e2e`: ingest, processor and a real HTTP listener in this process; K clients POST batch Bundles until N
//!   observations are acknowledged, then the run waits until all of them are published: upload rate, end-to-end
//!   rate, freshness (acknowledgement → catalog commit) p50/p99, peak RSS. The request bodies are made ahead of the
//!   clients by one generator thread through a bounded queue (`--queued-bundles`), so their memory stays small; its
//!   CPU time is reported apart. The clock starts once the queue is full and the processor has its partitions.
//!
//! Freshness comes from the `jhe_processor_freshness_seconds` histogram (rendered with fine buckets: the exporter's
//! default summaries lose samples, see [`install_metrics`]) and, for a local lake, exactly from the files.
//!
//! Build: `cargo build --release -p jhe-benches --bin bench-pipeline`, then for example
//! `bench-pipeline prefill --kafka 127.0.0.1:9092 --topic bench-1 --observations 1000000` followed by the `process`
//! command it prints, and `bench-pipeline e2e --kafka 127.0.0.1:9092 --observations 500000`.
//! `JHE_LOG=info` shows the processor's flushes, `BENCH_DUMP_METRICS=1` prints the Prometheus text at the end, and
//! `--kafka-property key=value` passes librdkafka settings.

use anyhow::{Context, bail, ensure};
use base64::Engine;
use chrono::{Duration as ChronoDuration, NaiveDateTime};
use clap::{Args, Parser, Subcommand};
use jhe_api::pipeline::{PipelineConfig, Roles};
use jhe_eventlog::message::{FORMAT_OBSERVATION_V1, HEADER_FORMAT};
use jhe_eventlog::{EventLog, LogConfig, Record};
use jhe_tests::TestDatabase;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sqlx::PgPool;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const OMH_SYSTEM: &str = "https://w3id.org/openmhealth";
const HEART_RATE: &str = "omh:heart-rate:2.0";
const BLOOD_PRESSURE: &str = "omh:blood-pressure:4.0";
const IDENTIFIER_SYSTEM: &str = "https://carex.example.com/reading-uuid";
const ORGANIZATION: &str = "Lifespan Lab";
const STUDY: &str = "Lifespan Study on BP & HR";
const DEVICE: &str = "CareX";
const PRACTITIONER: &str = "manager_mary@example.com";
/// Blood pressure readings per patient and day.
const BP_PER_DAY: u32 = 4;
/// Records per producer call in `prefill`.
const PRODUCE_BATCH: usize = 10_000;
/// Producer calls in flight in `prefill`.
const PRODUCE_IN_FLIGHT: usize = 4;

#[derive(Debug, Parser)]
#[command(name = "bench-pipeline", about = "benchmarks of the observation pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a bench database and fill a topic with gateway messages
    Prefill(PrefillArgs),
    /// Run only the processor over a pre-filled topic and measure it
    Process(ProcessArgs),
    /// Ingest over HTTP + processor in this process: upload rate, end-to-end rate, freshness
    E2e(E2eArgs),
}

#[derive(Debug, Clone, Args)]
struct LogArgs {
    /// Kafka bootstrap servers
    #[arg(long, required_unless_present = "embedded", conflicts_with = "embedded")]
    kafka: Option<String>,
    /// Use the embedded log in this directory (`e2e`: a temporary directory when no value is given)
    #[arg(long, num_args = 0..=1, value_name = "DIR")]
    embedded: Option<Option<PathBuf>>,
    /// Partitions of topics this run creates
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// A librdkafka property for every Kafka client, `key=value` (repeatable)
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
        .ok_or_else(|| format!("{text:?} is not key=value"))
}

impl LogArgs {
    fn describe(&self) -> String {
        match &self.kafka {
            Some(brokers) => format!("Kafka {brokers}"),
            None => "the embedded log".to_owned(),
        }
    }

    /// The command-line flags that select this log.
    fn flags(&self, data_dir: &Path) -> String {
        let mut flags = match (&self.kafka, &self.embedded) {
            (Some(brokers), _) => format!("--kafka {brokers} --partitions {}", self.partitions),
            (None, Some(None)) => format!("--embedded --partitions {}", self.partitions),
            (None, _) => format!("--embedded {} --partitions {}", data_dir.display(), self.partitions),
        };
        for (key, value) in &self.kafka_properties {
            let _ = write!(flags, " --kafka-property {key}={value}");
        }
        flags
    }

    fn embedded_dir(&self) -> Option<PathBuf> {
        self.embedded.clone().flatten()
    }
}

#[derive(Debug, Clone, Args)]
struct PrefillArgs {
    #[command(flatten)]
    log: LogArgs,
    /// The observation topic to fill (use a fresh name per run on Kafka)
    #[arg(long)]
    topic: String,
    /// Messages to produce
    #[arg(long)]
    observations: u64,
    /// Patients the readings are spread over
    #[arg(long, default_value_t = 1000)]
    patients: i64,
    /// An existing seeded jhe database to add the patients to [default: a fresh copy of the seeded template]
    #[arg(long)]
    database_url: Option<String>,
    /// Identifiers per message (0 or 1); each costs an identifier reservation in the processor
    #[arg(long, default_value_t = 1)]
    identifiers: u8,
}

#[derive(Debug, Clone, Args)]
struct ProcessArgs {
    #[command(flatten)]
    log: LogArgs,
    /// The database `prefill` printed
    #[arg(long)]
    database_url: String,
    #[arg(long)]
    topic: String,
    /// Records to wait for [default: every record in the topic]
    #[arg(long)]
    expect: Option<i64>,
    /// Object store [default: a fresh temporary directory]
    #[arg(long)]
    object_store_url: Option<String>,
    /// Forget earlier runs over this topic first: its log positions, every file entry and identifier claim
    #[arg(long)]
    reset: bool,
    #[command(flatten)]
    tuning: Tuning,
}

#[derive(Debug, Clone, Args)]
struct E2eArgs {
    #[command(flatten)]
    log: LogArgs,
    /// Concurrent HTTP clients
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Observations per batch Bundle
    #[arg(long, default_value_t = 1000)]
    bundle: usize,
    /// Observations to upload
    #[arg(long, default_value_t = 500_000)]
    observations: u64,
    #[arg(long, default_value_t = 1000)]
    patients: i64,
    /// The observation topic [default: a fresh name]
    #[arg(long)]
    topic: Option<String>,
    /// An existing seeded jhe database [default: a fresh copy of the seeded template, dropped afterwards]
    #[arg(long)]
    database_url: Option<String>,
    /// Object store [default: `lake` in the data directory]
    #[arg(long)]
    object_store_url: Option<String>,
    /// Bundle bodies prepared ahead of the clients (bounds memory)
    #[arg(long, default_value_t = 16)]
    queued_bundles: usize,
    #[command(flatten)]
    tuning: Tuning,
}

/// Processor settings (defaults = `jhe process`'s).
#[derive(Debug, Clone, Args)]
struct Tuning {
    #[arg(long, default_value_t = 1000)]
    flush_interval_ms: u64,
    #[arg(long, default_value_t = jhe_processor::DEFAULT_FLUSH_MAX_RECORDS)]
    flush_max_records: usize,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 1800)]
    timeout_s: u64,
}

impl Tuning {
    fn flags(&self) -> String {
        format!("--flush-interval-ms {} --flush-max-records {}", self.flush_interval_ms, self.flush_max_records)
    }
}

// as `jhe` does, so the pipeline measured here allocates as it does there
jhe_processor::use_jemalloc!();

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Prefill(args) => prefill(args).await,
            Command::Process(args) => process(args).await,
            Command::E2e(args) => e2e(args).await,
        }
    })
}

/// Logs to stderr at `JHE_LOG` (default `warn`).
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("JHE_LOG").unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(EnvFilter::new(filter)).try_init();
}

/// When the processor's consumer first held partitions (it joined the group).
static ASSIGNED_AT: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Sets [`ASSIGNED_AT`] once the processor reports partitions (`jhe_processor_assigned_partitions`), polling the
/// metrics every 10 ms until then (a join takes seconds; the mark is that precise). (Not a tracing layer that watches for the processor's log line: per-layer
/// filters beside `JHE_LOG`'s sometimes kept the line from it, and the run then waited for a join it had missed.)
fn watch_assignment(metrics: &PrometheusHandle) {
    let metrics = metrics.clone();
    tokio::spawn(async move {
        while ASSIGNED_AT.get().is_none() {
            if metric_value(&metrics.render(), "jhe_processor_assigned_partitions").is_some_and(|held| held > 0.0) {
                let _ = ASSIGNED_AT.set(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
}

// ---------------------------------------------------------------------------------------------------------------
// The bench database

/// The ids the generated data refers to.
#[derive(Debug, Clone)]
struct BenchPeople {
    patients: Vec<i64>,
    device: i64,
}

/// A fresh seeded database that is dropped at the end of this process (`e2e`), or the one `url` names.
async fn bench_database(url: Option<&str>) -> anyhow::Result<(String, PgPool, Option<TestDatabase>)> {
    match url {
        Some(url) => {
            let pool = jhe_catalog::connect(url, 8).await.context("connecting to --database-url")?;
            Ok((url.to_owned(), pool, None))
        }
        None => {
            let db = TestDatabase::create(true).await.context("creating the bench database")?;
            Ok((db.url.clone(), db.pool.clone(), Some(db)))
        }
    }
}

/// A fresh seeded database that outlives this process (`prefill`): a test database renamed `jhe_bench_…`, so that
/// clean-ups of stale `jhe_test_…` databases leave it alone.
async fn kept_database() -> anyhow::Result<(String, PgPool)> {
    let db = TestDatabase::create(true).await.context("creating the bench database")?;
    db.pool.close().await;
    let kept = db.name.replacen("jhe_test_", "jhe_bench_", 1);
    let admin_url = db.url.replacen(&format!("/{}", db.name), "/postgres", 1);
    let admin = jhe_catalog::connect(&admin_url, 1).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{}\" RENAME TO \"{kept}\"", db.name)))
        .execute(&admin)
        .await
        .context("renaming the bench database")?;
    admin.close().await;
    let url = db.url.replacen(&format!("/{}", db.name), &format!("/{kept}"), 1);
    drop(db); // its drop finds nothing left to remove
    let pool = jhe_catalog::connect(&url, 8).await?;
    Ok((url, pool))
}

/// Adds `count` patients to the seeded organization, enrolled in the BP & HR study and consenting to both codes.
async fn add_patients(pool: &PgPool, count: i64) -> anyhow::Result<BenchPeople> {
    let started = Instant::now();
    let organization: i64 = sqlx::query_scalar("SELECT id FROM organizations WHERE name = $1")
        .bind(ORGANIZATION)
        .fetch_one(pool)
        .await
        .with_context(|| format!("the seeded organization {ORGANIZATION:?}"))?;
    let study: i64 = sqlx::query_scalar("SELECT id FROM studies WHERE name = $1")
        .bind(STUDY)
        .fetch_one(pool)
        .await
        .with_context(|| format!("the seeded study {STUDY:?}"))?;
    let device: i64 = sqlx::query_scalar("SELECT id FROM data_sources WHERE name = $1")
        .bind(DEVICE)
        .fetch_one(pool)
        .await
        .with_context(|| format!("the seeded data source {DEVICE:?}"))?;
    let tag = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let pattern = format!("bench-{tag}-%@example.com");
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO users (email, user_type, first_name, last_name)
         SELECT 'bench-' || $2 || '-' || g || '@example.com', 'patient', 'Bench', 'Patient ' || g
         FROM generate_series(1, $1::int8) g",
    )
    .bind(count)
    .bind(&tag)
    .execute(&mut *tx)
    .await?;
    let patients: Vec<i64> = sqlx::query_scalar(
        "INSERT INTO patients (user_id, name_family, name_given, birth_date)
         SELECT id, 'Patient', 'Bench', DATE '1950-01-01' + (id % 20000)::int FROM users WHERE email LIKE $1
         ORDER BY id RETURNING id",
    )
    .bind(&pattern)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO patient_organizations (patient_id, organization_id) SELECT id, $2 FROM unnest($1::int8[]) id",
    )
    .bind(&patients)
    .bind(organization)
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO study_patients (study_id, patient_id) SELECT $2, id FROM unnest($1::int8[]) id")
        .bind(&patients)
        .bind(study)
        .execute(&mut *tx)
        .await?;
    let consents = sqlx::query(
        "INSERT INTO study_patient_scope_consents (study_patient_id, scope_code_id, consented)
         SELECT sp.id, c.id, true
         FROM study_patients sp CROSS JOIN codeable_concepts c
         WHERE sp.study_id = $2 AND sp.patient_id = ANY($1::int8[]) AND c.coding_code IN ($3, $4)",
    )
    .bind(&patients)
    .bind(study)
    .bind(HEART_RATE)
    .bind(BLOOD_PRESSURE)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    ensure!(patients.len() as i64 == count, "created {} patients, wanted {count}", patients.len());
    ensure!(consents == 2 * count as u64, "created {consents} consents, wanted {}", 2 * count);
    eprintln!(
        "added {count} patients to {ORGANIZATION:?} (study {STUDY:?}, consenting to {HEART_RATE} and {BLOOD_PRESSURE}) \
         in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(BenchPeople { patients, device })
}

// ---------------------------------------------------------------------------------------------------------------
// Wearable data

/// One reading.
#[derive(Debug)]
struct Reading {
    patient: i64,
    code: &'static str,
    uuid: Uuid,
    /// The Open mHealth data point (header + body), compact JSON.
    omh: String,
}

/// Readings of every patient's wearable, minute by minute: a heart rate every minute and a blood pressure
/// [`BP_PER_DAY`] times a day (at a different time of day for each patient). Deterministic but for `run`, which
/// keeps the uuids of different runs apart.
#[derive(Debug)]
struct Wearables {
    patients: Vec<i64>,
    run: u64,
    start: NaiveDateTime,
    minute: u32,
    next_patient: usize,
    blood_pressure_due: bool,
    produced: u64,
}

impl Wearables {
    fn new(patients: Vec<i64>) -> Self {
        let start =
            chrono::NaiveDate::from_ymd_opt(2025, 3, 1).and_then(|d| d.and_hms_opt(0, 0, 0)).unwrap_or_default();
        let run = Uuid::new_v4().as_u64_pair().0;
        Self { patients, run, start, minute: 0, next_patient: 0, blood_pressure_due: false, produced: 0 }
    }

    fn noise(&self, salt: u64) -> u64 {
        splitmix64(self.run ^ self.produced.wrapping_mul(0x9e37_79b9) ^ salt)
    }
}

impl Iterator for Wearables {
    type Item = Reading;

    fn next(&mut self) -> Option<Reading> {
        if self.patients.is_empty() {
            return None;
        }
        let index = self.next_patient;
        let patient = self.patients[index];
        let at = self.start + ChronoDuration::minutes(i64::from(self.minute));
        let effective = at.format("%Y-%m-%dT%H:%M:%S-08:00").to_string();
        let created = (at + ChronoDuration::seconds(2)).format("%Y-%m-%dT%H:%M:%S-08:00").to_string();
        let uuid = Uuid::from_u64_pair(self.run, self.produced);
        let noise = self.noise(patient as u64);
        let (code, omh) = if self.blood_pressure_due {
            self.blood_pressure_due = false;
            self.advance();
            let systolic = 105 + noise % 40;
            let diastolic = 65 + (noise >> 8) % 25;
            let omh = format!(
                r#"{{"header":{{"uuid":"{uuid}","schema_id":{{"namespace":"omh","name":"blood-pressure","version":"4.0"}},"source_creation_date_time":"{created}","modality":"sensed"}},"body":{{"systolic_blood_pressure":{{"value":{systolic},"unit":"mmHg"}},"diastolic_blood_pressure":{{"value":{diastolic},"unit":"mmHg"}},"effective_time_frame":{{"date_time":"{effective}"}}}}}}"#
            );
            (BLOOD_PRESSURE, omh)
        } else {
            // a different time of day for each patient's cuff readings
            let slot = (self.minute + index as u32 * 37) % (24 * 60 / BP_PER_DAY);
            if slot == 0 {
                self.blood_pressure_due = true;
            } else {
                self.advance();
            }
            let bpm = 55 + noise % 50;
            let omh = format!(
                r#"{{"header":{{"uuid":"{uuid}","schema_id":{{"namespace":"omh","name":"heart-rate","version":"2.0"}},"source_creation_date_time":"{created}","modality":"sensed"}},"body":{{"heart_rate":{{"value":{bpm},"unit":"beats/min"}},"effective_time_frame":{{"date_time":"{effective}"}}}}}}"#
            );
            (HEART_RATE, omh)
        };
        self.produced += 1;
        Some(Reading { patient, code, uuid, omh })
    }
}

impl Wearables {
    fn advance(&mut self) {
        self.next_patient += 1;
        if self.next_patient == self.patients.len() {
            self.next_patient = 0;
            self.minute += 1;
        }
    }
}

fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The observation message a gateway produces (no `id`: the processor derives it from partition and offset).
fn gateway_record(reading: &Reading, device: i64, identifiers: u8) -> Record {
    let mut value = String::with_capacity(reading.omh.len() + 256);
    let _ = write!(
        value,
        r#"{{"patient":{},"device":{device},"code":{{"system":"{OMH_SYSTEM}","code":"{}"}},"#,
        reading.patient, reading.code
    );
    if identifiers > 0 {
        let _ = write!(value, r#""identifiers":[{{"system":"{IDENTIFIER_SYSTEM}","value":"{}"}}],"#, reading.uuid);
    }
    let _ = write!(value, r#""omh":{}}}"#, reading.omh);
    Record {
        key: reading.patient.to_string().into_bytes(),
        value: value.into_bytes(),
        headers: vec![(HEADER_FORMAT.to_owned(), FORMAT_OBSERVATION_V1.as_bytes().to_vec())],
    }
}

/// A FHIR batch Bundle of Observations carrying `readings` (base64 OMH, one identifier each).
fn bundle_body(readings: &[Reading], device: i64) -> Vec<u8> {
    let mut body = String::with_capacity(readings.len() * 900 + 64);
    body.push_str(r#"{"resourceType":"Bundle","type":"batch","entry":["#);
    for (i, reading) in readings.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let data = base64::engine::general_purpose::STANDARD.encode(reading.omh.as_bytes());
        let _ = write!(
            body,
            r#"{{"resource":{{"resourceType":"Observation","status":"final","code":{{"coding":[{{"system":"{OMH_SYSTEM}","code":"{code}"}}]}},"subject":{{"reference":"Patient/{patient}"}},"device":{{"reference":"Device/{device}"}},"identifier":[{{"system":"{IDENTIFIER_SYSTEM}","value":"{uuid}"}}],"valueAttachment":{{"contentType":"application/json","data":"{data}"}}}},"request":{{"method":"POST","url":"Observation"}}}}"#,
            code = reading.code,
            patient = reading.patient,
            uuid = reading.uuid,
        );
    }
    body.push_str("]}");
    body.into_bytes()
}

// ---------------------------------------------------------------------------------------------------------------
// prefill

async fn prefill(args: PrefillArgs) -> anyhow::Result<()> {
    ensure!(args.observations > 0, "--observations must be positive");
    ensure!(args.patients > 0, "--patients must be positive");
    ensure!(args.identifiers <= 1, "--identifiers is 0 or 1");
    let data_dir = match (&args.log.kafka, args.log.embedded_dir()) {
        (Some(_), _) => std::env::temp_dir(),
        (None, Some(dir)) => dir,
        (None, None) => bail!("prefill --embedded needs a directory (process reads it afterwards)"),
    };
    // `process` runs against this database later: keep it.
    let (url, pool) = match args.database_url.as_deref() {
        Some(url) => (url.to_owned(), jhe_catalog::connect(url, 8).await.context("connecting to --database-url")?),
        None => kept_database().await?,
    };
    let people = add_patients(&pool, args.patients).await?;

    let log = EventLog::open(&log_config(&args.log, &data_dir)).await.context("opening the log")?;
    log.ensure_topic(&args.topic).await?;
    let before: i64 = log.high_watermarks(&args.topic).await?.iter().map(|(_, high)| high).sum();
    let producer = log.producer()?;
    eprintln!(
        "producing {} messages for {} patients to {} topic {:?} in batches of {PRODUCE_BATCH}",
        args.observations,
        args.patients,
        args.log.describe(),
        args.topic
    );
    let mut readings = Wearables::new(people.patients.clone());
    let started = Instant::now();
    let mut last_report = Instant::now();
    let produced = Arc::new(AtomicU64::new(0));
    let mut in_flight: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut generated: u64 = 0;
    let mut codes = [0u64; 2];
    while generated < args.observations {
        let take = (args.observations - generated).min(PRODUCE_BATCH as u64) as usize;
        let batch: Vec<Record> = readings
            .by_ref()
            .take(take)
            .map(|reading| {
                codes[usize::from(reading.code == BLOOD_PRESSURE)] += 1;
                gateway_record(&reading, people.device, args.identifiers)
            })
            .collect();
        generated += batch.len() as u64;
        while in_flight.len() >= PRODUCE_IN_FLIGHT {
            if let Some(joined) = in_flight.join_next().await {
                joined??;
            }
        }
        let producer = producer.clone();
        let topic = args.topic.clone();
        let counter = Arc::clone(&produced);
        in_flight.spawn(async move {
            let count = batch.len() as u64;
            producer.send(&topic, batch).await.context("producing")?;
            counter.fetch_add(count, Ordering::Relaxed);
            Ok(())
        });
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let done = produced.load(Ordering::Relaxed);
            eprintln!(
                "  produced {done:>10} / {}  ({:.0} msg/s)",
                args.observations,
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    while let Some(joined) = in_flight.join_next().await {
        joined??;
    }
    producer.flush(Duration::from_secs(30)).await?;
    let took = started.elapsed();
    // The high watermarks may trail the acknowledgements for a moment.
    let mut after = 0;
    for _ in 0..5 {
        after = log.high_watermarks(&args.topic).await?.iter().map(|(_, high)| high).sum();
        if after - before >= args.observations as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if after - before != args.observations as i64 {
        eprintln!(
            "note: the high watermarks grew by {}, not by the {} records produced and acknowledged (tansu reports \
             the base offset of the last batch of a partition as its high watermark)",
            after - before,
            args.observations
        );
    }
    let expect = before + args.observations as i64;
    let minutes = args.observations / args.patients as u64;
    println!();
    println!(
        "prefill: {} observations in topic {:?} ({})",
        fmt_int(args.observations),
        args.topic,
        args.log.describe()
    );
    println!(
        "  {} heart rate, {} blood pressure; {} patients, ~{minutes} minutes of wearable data each",
        fmt_int(codes[0]),
        fmt_int(codes[1]),
        args.patients
    );
    println!(
        "  produced in {:.1} s ({:.0} msg/s); the topic holds {} records",
        took.as_secs_f64(),
        args.observations as f64 / took.as_secs_f64(),
        fmt_int(expect as u64)
    );
    println!("  database: {url}");
    println!();
    println!("reproduce:");
    println!(
        "  bench-pipeline prefill {} --topic {} --observations {} --patients {} --identifiers {}",
        args.log.flags(&data_dir),
        args.topic,
        args.observations,
        args.patients,
        args.identifiers
    );
    println!("next:");
    println!(
        "  bench-pipeline process --database-url '{url}' {} --topic {} --expect {expect}",
        args.log.flags(&data_dir),
        args.topic
    );
    Ok(())
}

fn log_config(log: &LogArgs, data_dir: &Path) -> LogConfig {
    LogConfig {
        brokers: log.kafka.clone(),
        embedded_dir: data_dir.join("log"),
        partitions: log.partitions,
        kafka_properties: log.kafka_properties.clone(),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// process

async fn process(args: ProcessArgs) -> anyhow::Result<()> {
    let metrics = install_metrics()?;
    watch_assignment(&metrics);
    let scratch = tempfile::tempdir()?;
    let data_dir = match (&args.log.kafka, args.log.embedded_dir()) {
        (Some(_), _) => scratch.path().to_path_buf(),
        (None, Some(dir)) => dir,
        (None, None) => bail!("process --embedded needs the directory prefill filled"),
    };
    let object_store_url = match &args.object_store_url {
        Some(url) => url.clone(),
        None => format!("file://{}", scratch.path().join("lake").display()),
    };
    let pool = jhe_catalog::connect(&args.database_url, 8).await.context("connecting to --database-url")?;
    let config = PipelineConfig {
        kafka_brokers: args.log.kafka.clone(),
        kafka_properties: args.log.kafka_properties.clone(),
        object_store_url: Some(object_store_url.clone()),
        data_dir: data_dir.clone(),
        topic: args.topic.clone(),
        partitions: args.log.partitions,
        group: format!("{}-bench-{}", args.topic, &Uuid::new_v4().simple().to_string()[..8]),
        flush_interval: Duration::from_millis(args.tuning.flush_interval_ms),
        flush_max_records: args.tuning.flush_max_records,
        schemas_dir: None,
        query: jhe_query::QuerySettings::default(),
    };
    let dead_letter_topic = format!("{}.dlq", args.topic);
    let log = EventLog::open(&config.log_config()).await.context("opening the log")?;
    let in_topic: i64 = log.high_watermarks(&args.topic).await?.iter().map(|(_, high)| high).sum();
    log.ensure_topic(&dead_letter_topic).await?;
    let dead_before: i64 = log.high_watermarks(&dead_letter_topic).await?.iter().map(|(_, high)| high).sum();
    // The embedded log admits one opener: the pipeline's.
    drop(log);
    let expect = args.expect.unwrap_or(in_topic);
    ensure!(expect > 0, "nothing to process: topic {:?} is empty", args.topic);

    if args.reset {
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM log_positions WHERE topic = $1").bind(&args.topic).execute(&mut *tx).await?;
        // TRUNCATE, not DELETE: a million dead index entries would slow the next run's claims down
        sqlx::query("TRUNCATE parquet_files, parquet_file_patient_rows, observation_identifiers")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        eprintln!("reset: positions of {:?}, file entries and identifier claims deleted", args.topic);
    }
    let already = positions_total(&pool, &args.topic).await?;
    ensure!(
        already == 0,
        "topic {:?} was already processed up to {already} in this database; pass --reset to measure again",
        args.topic
    );
    let rows_before = published_rows(&pool).await?;

    eprintln!(
        "processing {} of {} records of {:?} from {} (processor only; object store {object_store_url})",
        fmt_int(expect as u64),
        fmt_int(in_topic as u64),
        args.topic,
        args.log.describe()
    );
    let mut rss = RssSampler::default();
    let side = SideCpu::start(&pool, args.log.kafka.is_some()).await;
    let load_before = load_average();
    let cpu_before = process_cpu_seconds()?;
    let started = Instant::now();
    let stop = CancellationToken::new();
    let roles = Roles { ingest: false, processor: true };
    let mut plane = jhe_api::pipeline::start(&config, pool.clone(), roles, stop.clone()).await?;
    let timeout = Duration::from_secs(args.tuning.timeout_s);
    let mut first_publish: Option<(Duration, i64)> = None;
    let mut last_report = (Instant::now(), 0i64);
    let done = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss.sample();
        let positions = positions_total(&pool, &args.topic).await?;
        if positions > 0 && first_publish.is_none() {
            first_publish = Some((started.elapsed(), positions));
        }
        if positions >= expect {
            break positions;
        }
        if let Some(joined) = plane.tasks.try_join_next() {
            bail!("the pipeline stopped early: {:?}", joined.map_err(anyhow::Error::from).and_then(|r| r));
        }
        ensure!(started.elapsed() < timeout, "timed out after {timeout:?} at {positions} of {expect} records");
        if last_report.0.elapsed() >= Duration::from_secs(1) {
            let rate = (positions - last_report.1) as f64 / last_report.0.elapsed().as_secs_f64();
            eprintln!(
                "  t={:>6.1}s  processed {:>10} / {expect}  ({rate:>8.0}/s)  RSS {:>6.1} MiB",
                started.elapsed().as_secs_f64(),
                positions,
                rss.last_mib()
            );
            last_report = (Instant::now(), positions);
        }
    };
    let wall = started.elapsed();
    let cpu = process_cpu_seconds()? - cpu_before;
    let (postgres_cpu, broker_cpu) = side.since(&pool).await;
    let rendered = metrics.render();
    if std::env::var_os("BENCH_DUMP_METRICS").is_some() {
        eprintln!("{rendered}");
    }
    stop.cancel();
    let stopping = Instant::now();
    while let Some(joined) = tokio::time::timeout(Duration::from_secs(60), plane.tasks.join_next()).await? {
        joined??;
    }
    let stop_took = stopping.elapsed();

    let rows = published_rows(&pool).await? - rows_before;
    let files = file_stats(&pool).await?;
    let log = EventLog::open(&config.log_config()).await.context("opening the log again")?;
    let dead: i64 =
        log.high_watermarks(&dead_letter_topic).await?.iter().map(|(_, high)| high).sum::<i64>() - dead_before;
    let (first_at, first_rows) = first_publish.unwrap_or((wall, 0));
    let joined = ASSIGNED_AT.get().map_or(Duration::ZERO, |at| at.saturating_duration_since(started));
    let after_join = done as f64 / (wall - joined).as_secs_f64().max(1e-3);
    let peak = peak_rss_mib()?;

    println!();
    println!(
        "processor benchmark: {} records of topic {:?} on {}, {} partitions, one processor (flush every {} ms / {} records)",
        fmt_int(done as u64),
        args.topic,
        args.log.describe(),
        args.log.partitions,
        args.tuning.flush_interval_ms,
        fmt_int(args.tuning.flush_max_records as u64)
    );
    let mut table = Table::default();
    table.row("wall time (start → positions reach N)", format!("{:.2} s", wall.as_secs_f64()));
    table.row("consumer joined (partitions assigned)", format!("after {:.2} s", joined.as_secs_f64()));
    table.row(
        "first publish",
        format!("after {:.2} s ({} records)", first_at.as_secs_f64(), fmt_int(first_rows as u64)),
    );
    table.row("throughput (wall)", format!("{} obs/s", fmt_int((done as f64 / wall.as_secs_f64()) as u64)));
    table.row("throughput from the join", format!("{} obs/s", fmt_int(after_join as u64)));
    table.row("process CPU (user+sys)", format!("{:.2} s = {:.2} cores on average", cpu, cpu / wall.as_secs_f64()));
    table.row("throughput per core", format!("{} obs per CPU-second", fmt_int((done as f64 / cpu) as u64)));
    table.row("other processes' CPU", side_cpu_line(postgres_cpu, broker_cpu, wall.as_secs_f64()));
    table.row(
        "per core, all of them",
        format!(
            "{} obs per CPU-second (processor + Postgres + broker)",
            fmt_int((done as f64 / (cpu + postgres_cpu + broker_cpu.unwrap_or(0.0))) as u64)
        ),
    );
    table.row(
        "peak RSS",
        format!("{peak:.1} MiB (VmHWM); sampled VmRSS max {:.1} MiB, mean {:.1} MiB", rss.max_mib(), rss.mean_mib()),
    );
    table.row(
        "files written (processor)",
        format!(
            "{} files, {}, {} rows",
            files.level0_files,
            fmt_bytes(files.level0_bytes),
            fmt_int(files.level0_rows as u64)
        ),
    );
    table.row("compaction outputs", format!("{} files, {}", files.compacted_files, fmt_bytes(files.compacted_bytes)));
    table.row("rows published", format!("{} (N − rejects = {})", fmt_int(rows as u64), fmt_int((done - dead) as u64)));
    table.row("dead-lettered", fmt_int(dead as u64));
    table.row("flushes", histogram_line(&rendered, "jhe_processor_flush_seconds"));
    table.row("publish commit", histogram_line(&rendered, "jhe_processor_commit_seconds"));
    table.row("shutdown", format!("{:.2} s", stop_took.as_secs_f64()));
    table.row("machine load (1 min) before / after", format!("{load_before} / {}", load_average()));
    table.print();
    println!();
    println!("reproduce:");
    println!("  bench-pipeline prefill {} --topic <fresh topic> --observations {expect}", args.log.flags(&data_dir));
    println!(
        "  bench-pipeline process --database-url '{}' {} --topic {} --expect {expect} {}{}",
        args.database_url,
        args.log.flags(&data_dir),
        args.topic,
        args.tuning.flags(),
        if args.reset { " --reset" } else { "" }
    );
    ensure!(dead == 0, "{dead} records were dead-lettered; the prefilled data should all be valid");
    ensure!(rows == done, "published {rows} rows for {done} records");
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------------
// e2e

async fn e2e(args: E2eArgs) -> anyhow::Result<()> {
    ensure!(args.clients > 0 && args.bundle > 0 && args.observations > 0, "clients, bundle and observations > 0");
    let metrics = install_metrics()?;
    watch_assignment(&metrics);
    let scratch = tempfile::tempdir()?;
    let data_dir = match (&args.log.kafka, args.log.embedded_dir()) {
        (None, Some(dir)) => dir,
        _ => scratch.path().to_path_buf(),
    };
    let topic =
        args.topic.clone().unwrap_or_else(|| format!("jhe-bench-e2e-{}", &Uuid::new_v4().simple().to_string()[..8]));
    let (url, pool, db) = bench_database(args.database_url.as_deref()).await?;
    let people = add_patients(&pool, args.patients).await?;
    let token = jhe_catalog::create_token_for_email(&pool, PRACTITIONER, chrono::Duration::hours(6)).await?.token;
    let config = PipelineConfig {
        kafka_brokers: args.log.kafka.clone(),
        kafka_properties: args.log.kafka_properties.clone(),
        object_store_url: args.object_store_url.clone(),
        data_dir: data_dir.clone(),
        topic: topic.clone(),
        partitions: args.log.partitions,
        group: format!("{topic}-processor"),
        flush_interval: Duration::from_millis(args.tuning.flush_interval_ms),
        flush_max_records: args.tuning.flush_max_records,
        schemas_dir: None,
        query: jhe_query::QuerySettings::default(),
    };
    let rows_before = published_rows(&pool).await?;

    let stop = CancellationToken::new();
    let roles = Roles { ingest: true, processor: true };
    let mut plane = jhe_api::pipeline::start(&config, pool.clone(), roles, stop.clone()).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let mut state = jhe_api::AppState::new(pool.clone());
    state.ingest = plane.ingest.take();
    state.metrics = Some(metrics.clone());
    let (server_stop, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(jhe_api::serve(listener, state, async {
        let _ = server_stopped.await;
    }));

    // Bundle bodies are made by one thread ahead of the clients, through a bounded queue (not all up front: 500k
    // observations are ~0.5 GB of request bodies, which would dwarf the RSS being measured).
    let bundles = args.observations.div_ceil(args.bundle as u64);
    let (bodies, queue) = tokio::sync::mpsc::channel::<(u64, Vec<u8>)>(args.queued_bundles.max(1));
    let generator = {
        let people = people.clone();
        let (total, per_bundle) = (args.observations, args.bundle as u64);
        std::thread::Builder::new().name("bundle-generator".into()).spawn(move || -> anyhow::Result<f64> {
            let mut readings = Wearables::new(people.patients);
            let mut left = total;
            while left > 0 {
                let take = left.min(per_bundle);
                let batch: Vec<Reading> = readings.by_ref().take(take as usize).collect();
                left -= take;
                if bodies.blocking_send((take, bundle_body(&batch, people.device))).is_err() {
                    break;
                }
            }
            thread_cpu_seconds()
        })?
    };
    // Let the queue fill and the processor's consumer join its group before the clock starts.
    let waiting = Instant::now();
    while queue.len() < queue.max_capacity().min(bundles as usize) || ASSIGNED_AT.get().is_none() {
        ensure!(waiting.elapsed() < Duration::from_secs(120), "the processor's consumer did not join within 2 min");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("processor assigned its partitions after {:.2} s", waiting.elapsed().as_secs_f64());

    let queue = Arc::new(tokio::sync::Mutex::new(queue));
    let acknowledged = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let http = reqwest::Client::builder().pool_max_idle_per_host(args.clients).build()?;
    eprintln!(
        "e2e: {} clients POST {} Bundles of {} observations to {base}/FHIR/R5/ ({}, topic {topic:?}, {} partitions)",
        args.clients,
        bundles,
        args.bundle,
        args.log.describe(),
        args.log.partitions
    );
    let mut rss = RssSampler::default();
    let side = SideCpu::start(&pool, args.log.kafka.is_some()).await;
    let load_before = load_average();
    let cpu_before = process_cpu_seconds()?;
    let started = Instant::now();
    let mut clients: JoinSet<anyhow::Result<Vec<Duration>>> = JoinSet::new();
    for _ in 0..args.clients {
        let (queue, http, token, url) = (Arc::clone(&queue), http.clone(), token.clone(), format!("{base}/FHIR/R5/"));
        let (acknowledged, refused) = (Arc::clone(&acknowledged), Arc::clone(&refused));
        clients.spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let next = queue.lock().await.recv().await;
                let Some((count, body)) = next else { return Ok(latencies) };
                let sent = Instant::now();
                let response = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/fhir+json")
                    .body(body)
                    .send()
                    .await?;
                let status = response.status();
                let bytes = response.bytes().await?;
                latencies.push(sent.elapsed());
                ensure!(status.is_success(), "POST /FHIR/R5/: {status}: {}", String::from_utf8_lossy(&bytes));
                let answer: BatchResponse = serde_json::from_slice(&bytes).context("the batch-response")?;
                let created = answer.entry.iter().filter(|e| e.response.status.starts_with("201")).count() as u64;
                if created < count
                    && let Some(failed) = answer.entry.iter().find(|e| !e.response.status.starts_with("201"))
                    && refused.fetch_add(count - created, Ordering::Relaxed) == 0
                {
                    eprintln!("  first refused entry: {}", failed.response.status);
                }
                acknowledged.fetch_add(created, Ordering::Relaxed);
            }
        });
    }

    let timeout = Duration::from_secs(args.tuning.timeout_s);
    let mut uploaded: Option<Duration> = None;
    let mut latencies: Vec<Duration> = Vec::new();
    let mut last_report = (Instant::now(), 0u64, 0i64);
    let (published, queryable) = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss.sample();
        while let Some(joined) = clients.try_join_next() {
            latencies.extend(joined??);
        }
        let acked = acknowledged.load(Ordering::Relaxed);
        if uploaded.is_none() && clients.is_empty() {
            uploaded = Some(started.elapsed());
            eprintln!(
                "  uploads done: {acked} acknowledged in {:.2} s; waiting for the processor",
                started.elapsed().as_secs_f64()
            );
        }
        let published = published_rows(&pool).await? - rows_before;
        if uploaded.is_some() && published >= acked as i64 {
            break (published, started.elapsed());
        }
        if let Some(joined) = plane.tasks.try_join_next() {
            bail!("the pipeline stopped early: {:?}", joined.map_err(anyhow::Error::from).and_then(|r| r));
        }
        ensure!(
            started.elapsed() < timeout,
            "timed out after {timeout:?}: {acked} acknowledged, {published} published"
        );
        if last_report.0.elapsed() >= Duration::from_secs(1) {
            let seconds = last_report.0.elapsed().as_secs_f64();
            eprintln!(
                "  t={:>6.1}s  acknowledged {:>9} ({:>7.0}/s)  published {:>9} ({:>7.0}/s)  RSS {:>6.1} MiB",
                started.elapsed().as_secs_f64(),
                acked,
                (acked - last_report.1) as f64 / seconds,
                published,
                (published - last_report.2) as f64 / seconds,
                rss.last_mib()
            );
            last_report = (Instant::now(), acked, published);
        }
    };
    let cpu = process_cpu_seconds()? - cpu_before;
    let (postgres_cpu, broker_cpu) = side.since(&pool).await;
    let upload_time = uploaded.unwrap_or(queryable);
    let generator_cpu = generator.join().map_err(|_| anyhow::anyhow!("the bundle generator panicked"))??;
    let rendered = metrics.render();
    if std::env::var_os("BENCH_DUMP_METRICS").is_some() {
        eprintln!("{rendered}");
    }
    let acked = acknowledged.load(Ordering::Relaxed);
    let refused = refused.load(Ordering::Relaxed);
    let peak = peak_rss_mib()?;
    stop.cancel();
    while let Some(joined) = tokio::time::timeout(Duration::from_secs(60), plane.tasks.join_next()).await? {
        joined??;
    }
    let _ = server_stop.send(());
    let _ = server.await;
    let files = file_stats(&pool).await?;
    latencies.sort();
    let latency = |q: f64| {
        latencies
            .get(((latencies.len().max(1) - 1) as f64 * q).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let freshness = Histogram::parse(&rendered, "jhe_processor_freshness_seconds");
    let exact = match &args.object_store_url {
        None => Some(exact_freshness(&pool, &data_dir.join("lake")).await?),
        Some(_) => None,
    };

    println!();
    println!(
        "end-to-end benchmark: {} observations, {} clients × Bundles of {}, {} patients, {} ({} partitions), \
         ingest + processor + HTTP in one process",
        fmt_int(args.observations),
        args.clients,
        args.bundle,
        args.patients,
        args.log.describe(),
        args.log.partitions
    );
    let mut table = Table::default();
    table.row(
        "upload rate (acknowledged)",
        format!(
            "{} obs/s ({} in {:.2} s; {} refused)",
            fmt_int((acked as f64 / upload_time.as_secs_f64()) as u64),
            fmt_int(acked),
            upload_time.as_secs_f64(),
            refused
        ),
    );
    table.row("request latency (one Bundle)", format!("p50 {:.0} ms, p99 {:.0} ms", latency(0.5), latency(0.99)));
    table.row(
        "end-to-end rate (all queryable)",
        format!(
            "{} obs/s ({} published after {:.2} s)",
            fmt_int((published as f64 / queryable.as_secs_f64()) as u64),
            fmt_int(published as u64),
            queryable.as_secs_f64()
        ),
    );
    table.row(
        "freshness (ack → catalog commit)",
        match &freshness {
            Some(h) => format!(
                "p50 {:.2} s, p99 {:.2} s, max ≤ {:.1} s (jhe_processor_freshness_seconds, {:.0} samples)",
                h.quantile(0.5),
                h.quantile(0.99),
                h.max_bound(),
                h.count
            ),
            None => "not recorded".to_owned(),
        },
    );
    if let Some(exact) = &exact {
        table.row(
            "  exact, from the files",
            format!(
                "p50 {:.2} s, p99 {:.2} s, max {:.2} s (published_at − last_updated of {} rows)",
                sorted_quantile(exact, 0.5),
                sorted_quantile(exact, 0.99),
                sorted_quantile(exact, 1.0),
                fmt_int(exact.len() as u64)
            ),
        );
    }
    table.row(
        "process CPU (user+sys)",
        format!(
            "{:.2} s = {:.2} cores on average (of it, the bundle generator thread {:.2} s)",
            cpu,
            cpu / queryable.as_secs_f64(),
            generator_cpu
        ),
    );
    table.row(
        "obs per CPU-second",
        format!(
            "{} (all), {} (without the generator thread)",
            fmt_int((published as f64 / cpu) as u64),
            fmt_int((published as f64 / (cpu - generator_cpu).max(1e-3)) as u64)
        ),
    );
    table.row("other processes' CPU", side_cpu_line(postgres_cpu, broker_cpu, queryable.as_secs_f64()));
    table.row(
        "peak RSS (whole process)",
        format!("{peak:.1} MiB (VmHWM); sampled VmRSS max {:.1} MiB, mean {:.1} MiB", rss.max_mib(), rss.mean_mib()),
    );
    table.row("files written (processor)", format!("{} files, {}", files.level0_files, fmt_bytes(files.level0_bytes)));
    table.row("ingest commit (per request)", histogram_line(&rendered, "jhe_ingest_commit_seconds"));
    // the stages of a request: parse + checks (on the blocking pool), identifier claims, log write
    table.row("  parse + checks", histogram_line(&rendered, "jhe_ingest_check_seconds"));
    table.row("  identifier claims", histogram_line(&rendered, "jhe_ingest_claims_seconds"));
    table.row("  log write", histogram_line(&rendered, "jhe_ingest_log_write_seconds"));
    table.row("processor flushes", histogram_line(&rendered, "jhe_processor_flush_seconds"));
    table.row("machine load (1 min) before / after", format!("{load_before} / {}", load_average()));
    table.print();
    println!();
    println!("reproduce:");
    println!(
        "  bench-pipeline e2e {} --clients {} --bundle {} --observations {} --patients {} {}",
        args.log.flags(&data_dir),
        args.clients,
        args.bundle,
        args.observations,
        args.patients,
        args.tuning.flags()
    );
    if db.is_none() {
        println!("  (database {url})");
    }
    ensure!(refused == 0, "{refused} observations were refused");
    ensure!(published == acked as i64, "published {published} rows for {acked} acknowledged observations");
    Ok(())
}

#[derive(Debug, serde::Deserialize)]
struct BatchResponse {
    entry: Vec<BatchEntry>,
}

#[derive(Debug, serde::Deserialize)]
struct BatchEntry {
    response: BatchEntryResponse,
}

#[derive(Debug, serde::Deserialize)]
struct BatchEntryResponse {
    status: String,
}

// ---------------------------------------------------------------------------------------------------------------
// Measurements

async fn positions_total(pool: &PgPool, topic: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM log_positions WHERE topic = $1")
        .bind(topic)
        .fetch_one(pool)
        .await?)
}

async fn published_rows(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT COALESCE(SUM(row_count), 0)::int8 FROM parquet_files WHERE state = 'published'")
        .fetch_one(pool)
        .await?)
}

#[derive(Debug, Default)]
struct FileStats {
    level0_files: i64,
    level0_bytes: i64,
    level0_rows: i64,
    compacted_files: i64,
    compacted_bytes: i64,
}

async fn file_stats(pool: &PgPool) -> anyhow::Result<FileStats> {
    let (level0_files, level0_bytes, level0_rows, compacted_files, compacted_bytes): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE compaction_level = 0),
                    COALESCE(SUM(size_bytes) FILTER (WHERE compaction_level = 0), 0)::int8,
                    COALESCE(SUM(row_count) FILTER (WHERE compaction_level = 0), 0)::int8,
                    count(*) FILTER (WHERE compaction_level > 0),
                    COALESCE(SUM(size_bytes) FILTER (WHERE compaction_level > 0), 0)::int8
             FROM parquet_files WHERE state <> 'staged'",
        )
        .fetch_one(pool)
        .await?;
    Ok(FileStats { level0_files, level0_bytes, level0_rows, compacted_files, compacted_bytes })
}

/// A Prometheus recorder whose histograms render as Prometheus histograms with fine buckets (quantiles are
/// interpolated within a bucket). Not the exporter's default summaries: metrics-exporter-prometheus 0.17.2 drops the
/// samples of a summary that are older than the first sample it drains (`RollingSummary::add` ignores a sample whose
/// timestamp precedes its newest bucket, and the sample queue is drained newest block first), so with many samples
/// between two renders its quantiles describe only the last few of them.
fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    Ok(PrometheusBuilder::new().set_buckets(&histogram_buckets())?.install_recorder()?)
}

/// 1 ms … 5 min: 10 ms steps to 1 s, 100 ms steps to 10 s, then coarser.
fn histogram_buckets() -> Vec<f64> {
    let mut buckets = vec![0.001, 0.002, 0.005];
    buckets.extend((1..=100).map(|i| f64::from(i) * 0.01));
    buckets.extend((11..=100).map(|i| f64::from(i) * 0.1));
    buckets.extend([12.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0]);
    buckets
}

/// The value of one series (`name{labels}` exactly as rendered) of a Prometheus text exposition.
fn metric_value(rendered: &str, series: &str) -> Option<f64> {
    rendered
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.rsplit_once(' ').filter(|(name, _)| *name == series))
        .and_then(|(_, value)| value.parse().ok())
}

/// An unlabelled histogram of a Prometheus text exposition.
#[derive(Debug, Default)]
struct Histogram {
    /// (upper bound, cumulative count), ascending; the last is `+Inf`.
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    fn parse(rendered: &str, name: &str) -> Option<Self> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut buckets: Vec<(f64, f64)> = rendered
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| {
                let (le, value) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
                Some((le, value.trim().parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = metric_value(rendered, &format!("{name}_count"))?;
        let sum = metric_value(rendered, &format!("{name}_sum")).unwrap_or(0.0);
        (count > 0.0).then_some(Self { buckets, sum, count })
    }

    /// The `q` quantile, interpolated linearly within its bucket.
    fn quantile(&self, q: f64) -> f64 {
        let rank = q * self.count;
        let mut previous = (0.0, 0.0);
        for &(le, cumulative) in &self.buckets {
            if cumulative >= rank {
                if le.is_infinite() {
                    return previous.0;
                }
                let within = cumulative - previous.1;
                let fraction = if within > 0.0 { (rank - previous.1) / within } else { 1.0 };
                return previous.0 + (le - previous.0) * fraction;
            }
            previous = (le, cumulative);
        }
        previous.0
    }

    /// The upper bound of the highest non-empty bucket.
    fn max_bound(&self) -> f64 {
        self.buckets.iter().find(|(_, cumulative)| *cumulative >= self.count).map_or(f64::NAN, |(le, _)| *le)
    }
}

/// `count, total, mean, p50, p99, max bucket` of an unlabelled histogram of seconds.
fn histogram_line(rendered: &str, name: &str) -> String {
    let Some(histogram) = Histogram::parse(rendered, name) else { return "none recorded".to_owned() };
    format!(
        "{:.0}, total {:.2} s, mean {:.0} ms, p50 {:.0} ms, p99 {:.0} ms, max ≤ {:.0} ms",
        histogram.count,
        histogram.sum,
        histogram.sum / histogram.count * 1000.0,
        histogram.quantile(0.5) * 1000.0,
        histogram.quantile(0.99) * 1000.0,
        histogram.max_bound() * 1000.0
    )
}

/// Exact freshness of every row this database published (level-0 files in a local lake): `published_at` of its
/// file − its `last_updated`, in seconds, sorted.
async fn exact_freshness(pool: &PgPool, lake: &Path) -> anyhow::Result<Vec<f64>> {
    use arrow::array::{Array, TimestampMicrosecondArray};
    use parquet::arrow::ProjectionMask;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let files: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
        "SELECT object_path, published_at FROM parquet_files
         WHERE compaction_level = 0 AND published_at IS NOT NULL",
    )
    .fetch_all(pool)
    .await?;
    let mut seconds = Vec::new();
    for (path, published) in files {
        let file = std::fs::File::open(lake.join(&path)).with_context(|| format!("opening {path}"))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file)?;
        let index = builder.schema().index_of(jhe_schemas::table::COL_LAST_UPDATED)?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
        for batch in builder.with_projection(mask).build()? {
            let batch = batch?;
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .context("last_updated is not a microsecond timestamp")?;
            let published = published.timestamp_micros();
            seconds.extend(column.iter().flatten().map(|micros| (published - micros) as f64 / 1e6));
        }
    }
    seconds.sort_by(f64::total_cmp);
    Ok(seconds)
}

fn sorted_quantile(sorted: &[f64], q: f64) -> f64 {
    sorted.get(((sorted.len().max(1) - 1) as f64 * q).round() as usize).copied().unwrap_or(f64::NAN)
}

/// Clock ticks per second of `/proc/*/stat` times.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a `/proc/…/stat` file, in seconds.
fn stat_cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // the command name (field 2) may contain spaces: count fields after its closing parenthesis
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).context("malformed stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields 14 (utime) and 15 (stime) of stat(5) are 11 and 12 after the name
    let ticks: f64 = fields
        .get(11)
        .zip(fields.get(12))
        .and_then(|(u, s)| Some(u.parse::<f64>().ok()? + s.parse::<f64>().ok()?))
        .context("malformed stat")?;
    Ok(ticks / clock_ticks())
}

fn process_cpu_seconds() -> anyhow::Result<f64> {
    stat_cpu_seconds("/proc/self/stat")
}

/// CPU time of the other processes doing this run's work on this machine: the Postgres backends serving this
/// database and the broker (a local process named `tansu`, if any).
#[derive(Debug)]
struct SideCpu {
    backends: std::collections::HashMap<u32, f64>,
    broker: Vec<(u32, f64)>,
}

impl SideCpu {
    async fn start(pool: &PgPool, kafka: bool) -> Self {
        let backends = backend_pids(pool).await.into_iter().filter_map(|pid| Some((pid, pid_cpu(pid)?))).collect();
        let brokers = if kafka { pids_named("tansu") } else { Vec::new() };
        let broker = brokers.into_iter().filter_map(|pid| Some((pid, pid_cpu(pid)?))).collect();
        Self { backends, broker }
    }

    /// (Postgres backends of this database, broker) CPU seconds since `start`. Backends that connected since
    /// count whole; backends that disconnected meanwhile are missed.
    async fn since(&self, pool: &PgPool) -> (f64, Option<f64>) {
        let postgres = backend_pids(pool)
            .await
            .into_iter()
            .filter_map(|pid| Some(pid_cpu(pid)? - self.backends.get(&pid).copied().unwrap_or(0.0)))
            .sum();
        let broker = (!self.broker.is_empty())
            .then(|| self.broker.iter().filter_map(|(pid, before)| Some(pid_cpu(*pid)? - before)).sum());
        (postgres, broker)
    }
}

async fn backend_pids(pool: &PgPool) -> Vec<u32> {
    sqlx::query_scalar::<_, i32>("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        .fetch_all(pool)
        .await
        .unwrap_or_default()
        .into_iter()
        .filter_map(|pid| u32::try_from(pid).ok())
        .collect()
}

fn pid_cpu(pid: u32) -> Option<f64> {
    stat_cpu_seconds(&format!("/proc/{pid}/stat")).ok()
}

fn pids_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == name))
        .collect()
}

fn side_cpu_line(postgres: f64, broker: Option<f64>, seconds: f64) -> String {
    let broker = match broker {
        Some(broker) => format!("broker (tansu) {broker:.2} s = {:.2} cores", broker / seconds),
        None => "no local broker process (embedded log, or not found)".to_owned(),
    };
    format!("Postgres backends of this database {postgres:.2} s = {:.2} cores; {broker}", postgres / seconds)
}

fn thread_cpu_seconds() -> anyhow::Result<f64> {
    stat_cpu_seconds("/proc/thread-self/stat")
}

fn status_kib(field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{field} not found in /proc/self/status"))
}

/// The 1-minute load average (other work on the machine skews wall times).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

fn peak_rss_mib() -> anyhow::Result<f64> {
    Ok(status_kib("VmHWM:")? as f64 / 1024.0)
}

#[derive(Debug, Default)]
struct RssSampler {
    samples: u64,
    total_kib: u64,
    max_kib: u64,
    last_kib: u64,
}

impl RssSampler {
    fn sample(&mut self) {
        if let Ok(kib) = status_kib("VmRSS:") {
            self.samples += 1;
            self.total_kib += kib;
            self.max_kib = self.max_kib.max(kib);
            self.last_kib = kib;
        }
    }

    fn last_mib(&self) -> f64 {
        self.last_kib as f64 / 1024.0
    }

    fn max_mib(&self) -> f64 {
        self.max_kib as f64 / 1024.0
    }

    fn mean_mib(&self) -> f64 {
        self.total_kib as f64 / self.samples.max(1) as f64 / 1024.0
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Output

#[derive(Debug, Default)]
struct Table {
    rows: Vec<(String, String)>,
}

impl Table {
    fn row(&mut self, name: &str, value: impl Into<String>) {
        self.rows.push((name.to_owned(), value.into()));
    }

    fn print(&self) {
        let width = self.rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, value) in &self.rows {
            println!("  {name:<width$}  {value}");
        }
    }
}

/// 1234567 → "1,234,567".
fn fmt_int(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

fn fmt_bytes(bytes: i64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
