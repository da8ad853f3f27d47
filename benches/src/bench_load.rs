//! `bench-load`: writes realistic wearable data straight into Parquet + the file catalog, for query benchmarks
//! at tens to hundreds of millions of stored observations.
//!
//! Per participant and day: a CGM reading every 5 minutes (`omh:blood-glucose:4.0`, 288), heart rate every minute
//! (`omh:heart-rate:2.0`, 1,440) and steps per minute (`omh:step-count:3.0`, 1,440): 3,168 observations. Every data
//! point is a complete OMH document (header + body) that goes through the same validator as ingestion, which also
//! derives the stored effective time and values, so rows look exactly like the processor's. Files are what the
//! compactor leaves behind: one per code, UTC day and range of patients (`--patients-per-file`), sorted by patient,
//! time and id, encoded by the processor's own writer and published through the catalog.
//!
//! The participants are new patients of "Lifespan Lab", enrolled in a new study of that lab that requests the three
//! codes; every tenth participant has not consented to steps, so consent filters have something to hide. Observation
//! ids come from the catalog's id blocks (unique beside anything ingest assigns). The loader bypasses the identifier
//! claims of ingestion (each row carries its header uuid as identifier, unclaimed), so use a database of its own.
//!
//! `bench-load --patients 1000 --days 32` writes ≈ 101 M observations into a new kept database `jhe_bench_…` and a
//! lake under `--data-dir` (default `./bench-lake`), then prints the `DATABASE_URL` / `JHE_DATA_DIR` to serve them with
//! (`jhe serve`). `--database-url` adds to an existing migrated and seeded database instead;
//! `--object-store-url s3://bucket/prefix` writes to S3 (with the usual `AWS_*` variables).

use anyhow::{Context, ensure};
use chrono::{DateTime, Datelike, Duration as ChronoDuration, NaiveDate, SecondsFormat, Utc};
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use jhe_processor::parquet_file::{encode_parquet, upload};
use jhe_processor::store::{observation_object_path, open_store};
use jhe_schemas::omh::Validators;
use jhe_schemas::table::ObservationBatchBuilder;
use jhe_schemas::{Identifier, ObservationRecord};
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sqlx::PgPool;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::task::JoinSet;
use uuid::Uuid;

const OMH_SYSTEM: &str = "https://w3id.org/openmhealth";
const ORGANIZATION: &str = "Lifespan Lab";
const IDENTIFIER_SYSTEM: &str = "https://bench.example.org/reading-uuid";
/// Catalog "topic" of the loader's publishes (it moves no log positions; the name only shows in logs).
const LOAD_TOPIC: &str = "bench-load";

#[derive(Debug, Parser)]
#[command(name = "bench-load", about = "write realistic wearable observations straight into Parquet + catalog")]
struct Cli {
    /// Participants to add (each gets `--days` days of data)
    #[arg(long, default_value_t = 100)]
    patients: i64,
    /// Days of data per participant
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// First UTC day of data
    #[arg(long, default_value = "2026-01-01")]
    start: NaiveDate,
    /// Participants per Parquet file (per code and day)
    #[arg(long, default_value_t = 250)]
    patients_per_file: usize,
    /// A migrated, seeded database to add to (default: a new kept `jhe_bench_…` database)
    #[arg(long, env = "BENCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Object store (`file:///dir` or `s3://bucket/prefix`); default: `<data dir>/lake`
    #[arg(long)]
    object_store_url: Option<String>,
    /// Data directory of the local lake (as `JHE_DATA_DIR` of `jhe serve`)
    #[arg(long, default_value = "bench-lake")]
    data_dir: PathBuf,
    /// Files encoded at once (default: the number of cores)
    #[arg(long)]
    jobs: Option<usize>,
}

/// One data type the loader writes.
#[derive(Debug, Clone, Copy)]
struct Series {
    code: &'static str,
    /// Minutes between readings.
    every_minutes: u32,
    data_source: &'static str,
}

const SERIES: [Series; 3] = [
    Series { code: "omh:blood-glucose:4.0", every_minutes: 5, data_source: "Dexcom" },
    Series { code: "omh:heart-rate:2.0", every_minutes: 1, data_source: "Oura" },
    Series { code: "omh:step-count:3.0", every_minutes: 1, data_source: "Oura" },
];
/// Every n-th participant has not consented to this code.
const STEPS_CODE: &str = "omh:step-count:3.0";
const NOT_CONSENTING_EVERY: usize = 10;

#[derive(Debug, Clone, Copy)]
struct Participant {
    patient_id: i64,
    user_id: i64,
}

/// One file to write: a code, a day and a range of participants.
#[derive(Debug, Clone)]
struct FileJob {
    series: Series,
    data_source_id: i64,
    day: NaiveDate,
    participants: Arc<[Participant]>,
}

impl FileJob {
    fn rows(&self) -> usize {
        self.participants.len() * (24 * 60 / self.series.every_minutes) as usize
    }
}

// as `jhe` does, so files are encoded here as the processor encodes them
jhe_processor::use_jemalloc!();

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ensure!(cli.patients > 0 && cli.days > 0, "--patients and --days must be positive");
    ensure!(cli.patients_per_file > 0, "--patients-per-file must be positive");
    let jobs = cli.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, usize::from)).max(1);

    let (url, pool) = match &cli.database_url {
        Some(url) => (url.clone(), jhe_catalog::connect(url, 8).await.context("connecting to --database-url")?),
        None => jhe_tests::TestDatabase::create(true).await.context("creating the bench database")?.keep().await?,
    };
    std::fs::create_dir_all(&cli.data_dir)
        .with_context(|| format!("creating the data directory {}", cli.data_dir.display()))?;
    let data_dir = cli.data_dir.canonicalize()?;
    let (store, prefix) = open_store(cli.object_store_url.as_deref(), &data_dir).context("opening the object store")?;

    let participants = add_participants(&pool, cli.patients).await?;
    let data_sources = data_source_ids(&pool).await?;
    let mut file_jobs = Vec::new();
    for day in 0..cli.days {
        let day = cli.start + ChronoDuration::days(day);
        for (series, data_source_id) in SERIES.iter().zip(&data_sources) {
            for chunk in participants.chunks(cli.patients_per_file) {
                file_jobs.push(FileJob {
                    series: *series,
                    data_source_id: *data_source_id,
                    day,
                    participants: chunk.into(),
                });
            }
        }
    }
    let total_rows: usize = file_jobs.iter().map(FileJob::rows).sum();
    eprintln!(
        "writing {total_rows} observations ({} participants × {} days × 3,168) in {} files, {jobs} at a time",
        cli.patients,
        cli.days,
        file_jobs.len()
    );

    let progress = progress_bar(total_rows as u64);
    let started = Instant::now();
    let bytes_written = Arc::new(AtomicU64::new(0));
    let validators = Arc::new(Validators::builtin());
    let mut running = JoinSet::new();
    let mut pending = file_jobs.into_iter();
    let mut files = 0usize;
    loop {
        while running.len() < jobs {
            let Some(job) = pending.next() else { break };
            running.spawn(write_file(
                job,
                pool.clone(),
                Arc::clone(&store),
                prefix.clone(),
                Arc::clone(&validators),
                Arc::clone(&bytes_written),
            ));
        }
        let Some(done) = running.join_next().await else { break };
        let rows = done.context("a file task panicked")??;
        files += 1;
        progress.inc(rows as u64);
    }
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let bytes = bytes_written.load(Ordering::Relaxed);
    eprintln!(
        "wrote {total_rows} observations in {files} files ({:.2} GiB, {:.1} bytes/observation) in {seconds:.0} s: \
         {:.0} observations/s",
        bytes as f64 / (1u64 << 30) as f64,
        bytes as f64 / total_rows as f64,
        total_rows as f64 / seconds
    );
    let stored: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(row_count), 0)::int8 FROM parquet_files WHERE state = 'published'")
            .fetch_one(&pool)
            .await?;
    println!("DATABASE_URL={url}");
    match &cli.object_store_url {
        Some(object_store_url) => println!("JHE_OBJECT_STORE_URL={object_store_url}"),
        None => println!("JHE_DATA_DIR={}", data_dir.display()),
    }
    eprintln!("the catalog now holds {stored} published observations");
    Ok(())
}

fn progress_bar(total: u64) -> ProgressBar {
    if std::io::stderr().is_terminal() {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {human_pos}/{human_len} observations · {per_sec} · {elapsed_precise} (eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        // Not a terminal (CI, a log file): a line every 5 % instead of redrawing.
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        let step = (total / 20).max(1);
        let reported = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let watched = bar.clone();
        std::thread::spawn(move || {
            while !watched.is_finished() {
                std::thread::sleep(std::time::Duration::from_millis(500));
                let position = watched.position();
                if position / step > reported.load(Ordering::Relaxed) {
                    reported.store(position / step, Ordering::Relaxed);
                    eprintln!(
                        "{position}/{total} observations ({:.0} %), {:.0}/s",
                        position as f64 * 100.0 / total as f64,
                        position as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        });
        bar
    }
}

/// Adds `count` patients to the lab, enrolled in a new study requesting the three codes and consenting to them (but
/// every tenth one not to steps).
async fn add_participants(pool: &PgPool, count: i64) -> anyhow::Result<Vec<Participant>> {
    let organization: i64 = sqlx::query_scalar("SELECT id FROM organizations WHERE name = $1")
        .bind(ORGANIZATION)
        .fetch_one(pool)
        .await
        .with_context(|| format!("the seeded organization {ORGANIZATION:?} (is the database seeded?)"))?;
    let codes: Vec<&str> = SERIES.iter().map(|series| series.code).collect();
    let code_ids: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM codeable_concepts WHERE coding_system = $1 AND coding_code = ANY($2) ORDER BY id",
    )
    .bind(OMH_SYSTEM)
    .bind(&codes)
    .fetch_all(pool)
    .await?;
    ensure!(code_ids.len() == codes.len(), "the database lacks some of the codes {codes:?}");
    let tag = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut tx = pool.begin().await?;
    let study: i64 =
        sqlx::query_scalar("INSERT INTO studies (name, description, organization_id) VALUES ($1, $2, $3) RETURNING id")
            .bind(format!("Wearables bench study {tag}"))
            .bind("CGM every 5 minutes, heart rate and steps every minute (bench-load)")
            .bind(organization)
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query("INSERT INTO study_scope_requests (study_id, scope_code_id) SELECT $1, unnest($2::int8[])")
        .bind(study)
        .bind(&code_ids)
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "WITH new_users AS (
             INSERT INTO users (email, user_type, first_name, last_name)
             SELECT 'load-' || $2 || '-' || g || '@example.com', 'patient', 'Load', 'Participant ' || g
             FROM generate_series(1, $1::int8) g
             RETURNING id)
         INSERT INTO patients (user_id, name_family, name_given, birth_date)
         SELECT id, 'Participant', 'Load', DATE '1950-01-01' + (id % 20000)::int FROM new_users ORDER BY id
         RETURNING id, user_id",
    )
    .bind(count)
    .bind(&tag)
    .fetch_all(&mut *tx)
    .await?;
    let mut participants: Vec<Participant> =
        rows.into_iter().map(|(patient_id, user_id)| Participant { patient_id, user_id }).collect();
    participants.sort_by_key(|participant| participant.patient_id);
    let patient_ids: Vec<i64> = participants.iter().map(|participant| participant.patient_id).collect();
    sqlx::query("INSERT INTO patient_organizations (patient_id, organization_id) SELECT unnest($1::int8[]), $2")
        .bind(&patient_ids)
        .bind(organization)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO study_patients (study_id, patient_id) SELECT $2, unnest($1::int8[])")
        .bind(&patient_ids)
        .bind(study)
        .execute(&mut *tx)
        .await?;
    let not_consenting: Vec<i64> = patient_ids.iter().copied().step_by(NOT_CONSENTING_EVERY).collect();
    sqlx::query(
        "INSERT INTO study_patient_scope_consents (study_patient_id, scope_code_id, consented)
         SELECT sp.id, c.id, NOT (c.coding_code = $3 AND sp.patient_id = ANY($4::int8[]))
         FROM study_patients sp CROSS JOIN codeable_concepts c
         WHERE sp.study_id = $1 AND c.id = ANY($2::int8[])",
    )
    .bind(study)
    .bind(&code_ids)
    .bind(STEPS_CODE)
    .bind(&not_consenting)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    ensure!(participants.len() as i64 == count, "created {} patients, wanted {count}", participants.len());
    eprintln!(
        "added {count} participants (patients {}–{}) to {ORGANIZATION:?}, study {study}; {} of them do not consent \
         to {STEPS_CODE}",
        patient_ids[0],
        patient_ids[patient_ids.len() - 1],
        not_consenting.len()
    );
    Ok(participants)
}

/// The seeded data source of each series, in [`SERIES`] order.
async fn data_source_ids(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(SERIES.len());
    for series in SERIES {
        let id: i64 = sqlx::query_scalar("SELECT id FROM data_sources WHERE name = $1 ORDER BY id LIMIT 1")
            .bind(series.data_source)
            .fetch_one(pool)
            .await
            .with_context(|| format!("the seeded data source {:?}", series.data_source))?;
        ids.push(id);
    }
    Ok(ids)
}

/// Generates, encodes, stores and publishes one file; returns its row count.
async fn write_file(
    job: FileJob,
    pool: PgPool,
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    validators: Arc<Validators>,
    bytes_written: Arc<AtomicU64>,
) -> anyhow::Result<usize> {
    let rows = job.rows();
    let mut ids = Vec::with_capacity(rows);
    while ids.len() < rows {
        let first = jhe_catalog::next_observation_id_block(&pool).await?;
        let block = jhe_catalog::ID_BLOCK_SIZE.min((rows - ids.len()) as i64);
        ids.extend(first..first + block);
    }
    let encoded = tokio::task::spawn_blocking(move || {
        let batch = generate(&job, &ids, &validators)?;
        encode_parquet(&[batch]).context("encoding the file")
    })
    .await
    .context("the encoder panicked")??;
    let id = Uuid::now_v7();
    let path = observation_object_path(&prefix, &encoded.stats.coding_code, encoded.stats.day, id);
    let entry = encoded.catalog_entry(id, &path, 1);
    let size = upload(store.as_ref(), &path, encoded.bytes.clone()).await.context("storing the file")?;
    bytes_written.fetch_add(size, Ordering::Relaxed);
    jhe_catalog::stage_files(&pool, std::slice::from_ref(&entry)).await?;
    jhe_catalog::publish(&pool, LOAD_TOPIC, &[], &[id]).await.context("publishing the file")?;
    Ok(rows)
}

/// The rows of one file as an Arrow batch, in (patient, time, id) order.
fn generate(job: &FileJob, ids: &[i64], validators: &Validators) -> anyhow::Result<arrow::record_batch::RecordBatch> {
    let mut builder = ObservationBatchBuilder::with_capacity(job.rows());
    let midnight = job.day.and_hms_opt(0, 0, 0).context("midnight")?.and_utc();
    let readings = 24 * 60 / job.series.every_minutes;
    let mut ids = ids.iter().copied();
    let mut json = String::with_capacity(512);
    for participant in job.participants.iter() {
        let seed = (participant.patient_id as u64) << 20 ^ job.day.num_days_from_ce() as u64;
        let mut rng = SmallRng::seed_from_u64(seed ^ job.series.every_minutes as u64);
        let mut level = match job.series.code {
            "omh:blood-glucose:4.0" => rng.random_range(90.0..130.0),
            _ => rng.random_range(55.0..75.0),
        };
        for reading in 0..readings {
            let start = midnight + ChronoDuration::minutes(i64::from(reading * job.series.every_minutes));
            let uuid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
            json.clear();
            data_point(&mut json, job.series, start, uuid, reading, &mut level, &mut rng);
            let validated = validators.validate_data_point(json.as_bytes()).map_err(|error| {
                anyhow::anyhow!("generated an invalid {} data point: {error}\n{json}", job.series.code)
            })?;
            let id = ids.next().context("ran out of observation ids")?;
            let record = ObservationRecord {
                id,
                patient_id: participant.patient_id,
                jhe_user_id: Some(participant.user_id),
                data_source_id: Some(job.data_source_id),
                coding_system: validated.coding_system.to_owned(),
                coding_code: validated.coding_code.into_owned(),
                effective: validated.effective,
                // uploaded a few minutes after the reading
                last_updated_micros: validated.effective.start_micros + 4 * 60 * 1_000_000 + reading as i64 % 60,
                identifiers: vec![Identifier { system: IDENTIFIER_SYSTEM.to_owned(), value: uuid.to_string() }],
                omh_json: json.clone(),
                values: validated.values,
            };
            builder.append(&record)?;
        }
    }
    Ok(builder.finish()?)
}

/// Writes one OMH data point (header + body) of `series` at `start` into `out`.
fn data_point(
    out: &mut String,
    series: Series,
    start: DateTime<Utc>,
    uuid: Uuid,
    reading: u32,
    level: &mut f64,
    rng: &mut SmallRng,
) {
    let (namespace_name, version) = match series.code {
        "omh:blood-glucose:4.0" => ("blood-glucose", "4.0"),
        "omh:heart-rate:2.0" => ("heart-rate", "2.0"),
        _ => ("step-count", "3.0"),
    };
    let at = start.to_rfc3339_opts(SecondsFormat::Secs, true);
    let created = (start + ChronoDuration::seconds(30)).to_rfc3339_opts(SecondsFormat::Secs, true);
    let _ = write!(
        out,
        r#"{{"header":{{"uuid":"{uuid}","schema_id":{{"namespace":"omh","name":"{namespace_name}","version":"{version}"}},"source_creation_date_time":"{created}","modality":"sensed"}},"body":{{"#
    );
    let hour = f64::from(reading * series.every_minutes) / 60.0;
    let daily = (std::f64::consts::TAU * (hour - 15.0) / 24.0).cos();
    match namespace_name {
        "blood-glucose" => {
            // a random walk around a daily rhythm, with meals
            *level = (*level + rng.random_range(-3.0..3.0) + 4.0 * daily * 0.1).clamp(60.0, 250.0);
            let meal = [7.5, 12.5, 19.0].iter().any(|meal| (0.0..1.5).contains(&(hour - meal)));
            let value = (*level + if meal { 35.0 } else { 0.0 }).round();
            let _ = write!(
                out,
                r#""blood_glucose":{{"value":{value},"unit":"mg/dL"}},"effective_time_frame":{{"date_time":"{at}"}}"#
            );
        }
        "heart-rate" => {
            *level = (*level + rng.random_range(-2.0..2.0)).clamp(50.0, 80.0);
            let active = (8.0..21.0).contains(&hour);
            let value = (*level + if active { 12.0 + 8.0 * daily } else { 0.0 }).round();
            let _ = write!(
                out,
                r#""heart_rate":{{"value":{value},"unit":"beats/min"}},"effective_time_frame":{{"date_time":"{at}"}}"#
            );
        }
        _ => {
            let active = (7.0..22.0).contains(&hour);
            let steps = if active && rng.random_bool(0.4) { rng.random_range(10..140) } else { 0 };
            let end = (start + ChronoDuration::minutes(i64::from(series.every_minutes)))
                .to_rfc3339_opts(SecondsFormat::Secs, true);
            let _ = write!(
                out,
                r#""step_count":{{"value":{steps},"unit":"steps"}},"effective_time_frame":{{"time_interval":{{"start_date_time":"{at}","end_date_time":"{end}"}}}}"#
            );
        }
    }
    out.push_str("}}");
}
