//! Crash consistency: `jhe serve` on the embedded log (ingest and processor in one process) is killed with SIGKILL
//! again and again while the processor writes files; every acknowledged observation ends up in the catalog exactly
//! once.

use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{TestDatabase, seeded};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rand::Rng;
use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

const BUNDLES: u32 = 16;
const PER_BUNDLE: u32 = 500;
const KILLS: usize = 10;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// How the server's processor flushes while the test runs it.
#[derive(Clone, Copy)]
enum Flushes {
    /// Many small flushes, so that kills land in the middle of writing and publishing.
    Small,
    /// None while the uploads go in (a minute's interval, no record limit reached): the whole backlog is left to
    /// the runs that get killed, however fast the machine processes it.
    Held,
}

fn start(db_url: &str, data_dir: &Path, port: u16, flushes: Flushes) -> tokio::process::Child {
    let (interval_ms, max_records) = match flushes {
        Flushes::Small => ("20", "250"),
        Flushes::Held => ("60000", "1000000"),
    };
    tokio::process::Command::new(env!("CARGO_BIN_EXE_jhe"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir", data_dir.to_str().unwrap()])
        .env("DATABASE_URL", db_url)
        .env_remove("JHE_KAFKA_BROKERS")
        .env_remove("JHE_CONFIG")
        .env("JHE_LOG", "warn")
        .env("JHE_LOG_PARTITIONS", "3")
        .env("JHE_FLUSH_INTERVAL_MS", interval_ms)
        .env("JHE_FLUSH_MAX_RECORDS", max_records)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the jhe binary starts")
}

async fn wait_healthy(http: &reqwest::Client, port: u16) {
    for _ in 0..300 {
        if let Ok(response) = http.get(format!("http://127.0.0.1:{port}/health")).send().await
            && response.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("jhe serve did not become healthy on port {port}");
}

async fn published_rows(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(SUM(row_count), 0)::int8 FROM parquet_files WHERE state = 'published'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn sigkill_during_processing_never_loses_or_duplicates() {
    let db = TestDatabase::create(true).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let token =
        jhe_catalog::create_token_for_email(&db.pool, seeded::PETER, chrono::Duration::days(1)).await.unwrap().token;
    let peter: i64 =
        sqlx::query_scalar("SELECT p.id FROM patients p JOIN users u ON u.id = p.user_id WHERE u.email = $1")
            .bind(seeded::PETER)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let carex: i64 =
        sqlx::query_scalar("SELECT id FROM data_sources WHERE name = 'CareX'").fetch_one(&db.pool).await.unwrap();

    // Upload everything; each answer means the observations are durable in the log.
    let port = free_port();
    let mut server = start(&db.url, dir.path(), port, Flushes::Held);
    wait_healthy(&http, port).await;
    let mut accepted: HashSet<i64> = HashSet::new();
    for bundle in 0..BUNDLES {
        let entries = (0..PER_BUNDLE)
            .map(|i| {
                let minute = bundle * PER_BUNDLE + i;
                let uuid = format!("k-{minute}");
                omh::observation(peter, carex, HEART_RATE, &omh::heart_rate(&uuid, minute, 70.0), Some(&uuid))
            })
            .collect();
        let response = http
            .post(format!("http://127.0.0.1:{port}/FHIR/R5/"))
            .bearer_auth(&token)
            .json(&omh::bundle(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        for entry in body["entry"].as_array().unwrap() {
            assert_eq!(entry["response"]["status"], "201 Created", "{entry}");
            accepted.insert(entry["resource"]["id"].as_str().unwrap().parse().unwrap());
        }
    }
    let total = i64::from(BUNDLES * PER_BUNDLE);
    assert_eq!(accepted.len() as i64, total);
    server.start_kill().unwrap(); // SIGKILL
    server.wait().await.unwrap();

    // Kill it again and again while it catches up.
    let mut killed_mid_way = 0;
    for _ in 0..KILLS {
        let port = free_port();
        let mut server = start(&db.url, dir.path(), port, Flushes::Small);
        wait_healthy(&http, port).await;
        let pause = rand::rng().random_range(30..250);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        server.start_kill().unwrap();
        server.wait().await.unwrap();
        let published = published_rows(&db.pool).await;
        if published < total {
            killed_mid_way += 1;
        }
    }
    assert!(killed_mid_way >= 3, "only {killed_mid_way} kills happened before the work was done; make it longer");

    // A last run finishes the work.
    let port = free_port();
    let mut server = start(&db.url, dir.path(), port, Flushes::Small);
    wait_healthy(&http, port).await;
    let started = Instant::now();
    while published_rows(&db.pool).await < total && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.start_kill().unwrap();
    server.wait().await.unwrap();

    assert_eq!(published_rows(&db.pool).await, total);
    let paths: Vec<String> = sqlx::query_scalar("SELECT object_path FROM parquet_files WHERE state = 'published'")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for path in &paths {
        let file = std::fs::File::open(dir.path().join("lake").join(path)).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap() {
            for record in jhe_schemas::table::records_from_batch(&batch.unwrap()).unwrap() {
                assert!(seen.insert(record.id), "observation {} stored twice", record.id);
            }
        }
    }
    assert_eq!(seen, accepted, "exactly the acknowledged observations");
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM log_positions")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(next, total);
}

/// The same with Kafka: a pre-filled topic (records as gateways produce them) and `jhe process` killed with SIGKILL
/// again and again. Each run joins a fresh consumer group, so a restart does not wait for the dead member's session
/// to expire — positions live in Postgres, not in the group.
#[tokio::test]
async fn sigkill_of_jhe_process_on_kafka_never_loses_or_duplicates() {
    use jhe_eventlog::{EventLog, LogConfig, Record};
    let brokers = std::env::var("JHE_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned());
    let db = TestDatabase::create(true).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let topic = format!("jhe-kill-{}", rand::rng().random_range(0..u64::MAX));
    let peter: i64 =
        sqlx::query_scalar("SELECT p.id FROM patients p JOIN users u ON u.id = p.user_id WHERE u.email = $1")
            .bind(seeded::PETER)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let carex: i64 =
        sqlx::query_scalar("SELECT id FROM data_sources WHERE name = 'CareX'").fetch_one(&db.pool).await.unwrap();
    let config = LogConfig {
        brokers: Some(brokers.clone()),
        embedded_dir: dir.path().join("unused"),
        partitions: 3,
        kafka_properties: Vec::new(),
    };
    let log = EventLog::open(&config).await.unwrap();
    log.ensure_topic(&topic).await.unwrap();
    let total: i64 = 8_000;
    let records: Vec<Record> = (0..total)
        .map(|i| {
            let uuid = format!("g-{i}");
            let point = omh::heart_rate(&uuid, u32::try_from(i).unwrap(), 70.0);
            let value = serde_json::json!({"patient": peter, "device": carex,
                "code": {"system": omh::SYSTEM, "code": HEART_RATE},
                "identifiers": [{"system": "https://example.org/kill", "value": uuid}], "omh": point});
            // several keys, so all partitions have work
            Record {
                key: format!("{peter}-{}", i % 7).into_bytes(),
                value: value.to_string().into_bytes(),
                headers: vec![],
            }
        })
        .collect();
    log.producer().unwrap().send(&topic, records).await.unwrap();

    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let run = |group: String| {
        let log_file = std::fs::File::create(logs.join(format!("{group}.log"))).unwrap();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_jhe"))
            .args(["process", "--data-dir", dir.path().to_str().unwrap()])
            .env("DATABASE_URL", &db.url)
            .env("JHE_KAFKA_BROKERS", &brokers)
            .env("JHE_TOPIC", &topic)
            .env("JHE_PROCESSOR_GROUP", group)
            .env("JHE_METRICS_LISTEN", format!("127.0.0.1:{}", free_port()))
            .env("JHE_LOG", "info,sqlx=warn")
            .env("JHE_FLUSH_INTERVAL_MS", "20")
            .env("JHE_FLUSH_MAX_RECORDS", "250")
            .env_remove("JHE_CONFIG")
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .expect("jhe process starts")
    };
    let mut killed_mid_way = 0;
    for attempt in 0..KILLS {
        let mut processor = run(format!("{topic}-group-{attempt}"));
        // wait for this run to publish something (or a little while), then kill it
        let before = published_rows(&db.pool).await;
        let started = Instant::now();
        while published_rows(&db.pool).await == before && started.elapsed() < Duration::from_secs(20) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::rng().random_range(0..150))).await;
        processor.start_kill().unwrap();
        processor.wait().await.unwrap();
        if published_rows(&db.pool).await < total {
            killed_mid_way += 1;
        }
    }
    if killed_mid_way < 3 {
        let first = std::fs::read_to_string(logs.join(format!("{topic}-group-0.log"))).unwrap_or_default();
        panic!("only {killed_mid_way} kills happened before the work was done; the first run logged:\n{first}");
    }

    let mut processor = run(format!("{topic}-group-last"));
    let started = Instant::now();
    while published_rows(&db.pool).await < total && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    processor.start_kill().unwrap();
    processor.wait().await.unwrap();
    assert_eq!(published_rows(&db.pool).await, total);
    let paths: Vec<String> = sqlx::query_scalar("SELECT object_path FROM parquet_files WHERE state = 'published'")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for path in &paths {
        let file = std::fs::File::open(dir.path().join("lake").join(path)).unwrap();
        for batch in ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap() {
            for record in jhe_schemas::table::records_from_batch(&batch.unwrap()).unwrap() {
                assert!(seen.insert(record.id), "observation {} stored twice", record.id);
            }
        }
    }
    assert_eq!(seen.len() as i64, total);
}
