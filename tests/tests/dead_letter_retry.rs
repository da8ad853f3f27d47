//! A flush that fails after producing its dead letters is retried without producing them again: on a real
//! Kafka-protocol broker (tansu, started by `scripts/services`), the publish commit of the first attempt is made to
//! fail (a trigger in the test database), the retry commits, and each rejected record is in the dead-letter topic
//! once and each good record in the lake once.

use jhe_api::pipeline::{PipelineConfig, Roles};
use jhe_eventlog::message::{FORMAT_OBSERVATION_V1, HEADER_FORMAT, dead_letter};
use jhe_eventlog::{Consumed, ConsumerEvent, ConsumerSettings, EventLog, Offset, Partition, PositionStore, Record};
use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{TestDatabase, TestServer, seeded};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROCESSOR_ONLY: Roles = Roles { ingest: false, processor: true };

fn brokers() -> String {
    std::env::var("JHE_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

fn unique(prefix: &str) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    format!("{prefix}-{}", Alphanumeric.sample_string(&mut rand::rng(), 8).to_lowercase())
}

/// One partition, so the records keep their order and come to the processor together.
fn kafka_pipeline(dir: &std::path::Path, topic: &str) -> PipelineConfig {
    PipelineConfig {
        kafka_brokers: Some(brokers()),
        kafka_properties: Vec::new(),
        object_store_url: None,
        data_dir: dir.to_path_buf(),
        topic: topic.to_owned(),
        partitions: 1,
        group: format!("{topic}-processor"),
        flush_interval: Duration::from_millis(100),
        flush_max_records: 100_000,
        schemas_dir: None,
        query: jhe_query::QuerySettings::default(),
    }
}

/// A message as a gateway would produce it straight to the topic.
fn gateway_message(patient: i64, device: i64, omh: &Value) -> Record {
    let message = json!({"patient": patient, "device": device,
        "code": {"system": omh::SYSTEM, "code": HEART_RATE}, "omh": omh});
    Record {
        key: b"one-partition".to_vec(),
        value: serde_json::to_vec(&message).unwrap(),
        headers: vec![(HEADER_FORMAT.to_owned(), FORMAT_OBSERVATION_V1.as_bytes().to_vec())],
    }
}

async fn positions_total(pool: &sqlx::PgPool, topic: &str) -> i64 {
    sqlx::query_scalar("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM log_positions WHERE topic = $1")
        .bind(topic)
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

/// The first publish that would move `topic`'s position to `to` fails (once: a sequence is not rolled back).
async fn fail_first_publish_reaching(pool: &sqlx::PgPool, topic: &str, to: i64) {
    let statements = [
        "CREATE SEQUENCE injected_publish_faults".to_owned(),
        format!(
            "CREATE FUNCTION fail_first_publish() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF NEW.topic = '{topic}' AND NEW.next_offset = {to}
                    AND nextval('injected_publish_faults') = 1 THEN
                     RAISE EXCEPTION 'injected publish failure';
                 END IF;
                 RETURN NEW;
             END $$"
        ),
        "CREATE TRIGGER fail_first_publish BEFORE UPDATE ON log_positions
         FOR EACH ROW EXECUTE FUNCTION fail_first_publish()"
            .to_owned(),
    ];
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement)).execute(pool).await.unwrap();
    }
}

#[derive(Debug)]
struct FromTheStart;

impl PositionStore for FromTheStart {
    fn positions(&self, _topic: &str, partitions: &[Partition]) -> Result<Vec<Option<Offset>>, String> {
        Ok(vec![None; partitions.len()])
    }
}

/// Every record of the one-partition `topic`: a marker is produced after them and they are read up to it.
async fn read_all(log: &EventLog, topic: &str) -> Vec<Consumed> {
    let marker = Record { key: b"end".to_vec(), value: b"end of the test's records".to_vec(), headers: Vec::new() };
    log.producer().unwrap().send(topic, vec![marker.clone()]).await.unwrap();
    let settings = ConsumerSettings { max_batch_wait: Duration::from_millis(100), ..ConsumerSettings::default() };
    let mut consumer = log.consumer(topic, &unique("reader"), Arc::new(FromTheStart), settings).unwrap();
    let mut records = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        match tokio::time::timeout(Duration::from_millis(500), consumer.next()).await {
            Ok(Some(Ok(ConsumerEvent::Records(batch)))) => records.extend(batch),
            Ok(Some(Ok(_))) | Err(_) => {}
            Ok(Some(Err(error))) => panic!("reading {topic}: {error}"),
            Ok(None) => break,
        }
        if let Some(end) = records.iter().position(|r| r.value == marker.value) {
            records.truncate(end);
            return records;
        }
    }
    panic!("the marker of {topic} was not read back ({} records)", records.len());
}

fn header(record: &Consumed, name: &str) -> String {
    String::from_utf8_lossy(record.header(name).unwrap_or_default()).into_owned()
}

/// Every observation id in the published files of the local lake under `dir`.
async fn published_ids(pool: &sqlx::PgPool, dir: &std::path::Path) -> Vec<i64> {
    let paths: Vec<String> = sqlx::query_scalar("SELECT object_path FROM parquet_files WHERE state = 'published'")
        .fetch_all(pool)
        .await
        .unwrap();
    let mut ids = Vec::new();
    for path in paths {
        let file = std::fs::File::open(dir.join("lake").join(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        for batch in ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap() {
            ids.extend(jhe_schemas::table::records_from_batch(&batch.unwrap()).unwrap().iter().map(|r| r.id));
        }
    }
    ids
}

#[tokio::test]
async fn a_retried_flush_produces_each_dead_letter_once_and_stores_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let topic = unique("jhe-dlq-retry");
    let config = kafka_pipeline(dir.path(), &topic);
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_with(db).await.unwrap();
    let pool = server.db.pool.clone();
    let peter = server.patient_id(seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;

    let log = EventLog::open(&config.log_config()).await.unwrap();
    log.ensure_topic(&topic).await.unwrap();
    let hr = |minute| omh::heart_rate(&format!("r-{minute}"), minute, 60.0);
    let records = vec![
        gateway_message(peter, carex, &hr(0)),
        gateway_message(999_999, carex, &hr(1)),
        gateway_message(peter, carex, &hr(2)),
        gateway_message(peter, 999_999, &hr(3)),
        Record { key: b"one-partition".to_vec(), value: b"not json".to_vec(), headers: Vec::new() },
        gateway_message(peter, carex, &hr(5)),
    ];
    let total = records.len() as i64;
    let rejected: BTreeSet<i64> = BTreeSet::from([1, 3, 4]);
    log.producer().unwrap().send(&topic, records).await.unwrap();
    fail_first_publish_reaching(&pool, &topic, total).await;

    let stop = tokio_util::sync::CancellationToken::new();
    let mut processor = jhe_api::pipeline::start(&config, pool.clone(), PROCESSOR_ONLY, stop.clone()).await.unwrap();
    assert_eq!(wait_for_positions(&pool, &topic, total, Duration::from_secs(60)).await, total);
    let attempts: i64 =
        sqlx::query_scalar("SELECT last_value FROM injected_publish_faults").fetch_one(&pool).await.unwrap();
    assert!(attempts >= 2, "the first publish failed and a retry committed ({attempts} attempts)");

    // the dead letters were produced before the publish, so the topic holds all of them now
    let dead = read_all(&log, &format!("{topic}.dlq")).await;
    let offsets: Vec<i64> = dead.iter().map(|r| header(r, dead_letter::SOURCE_OFFSET).parse().unwrap()).collect();
    assert_eq!(offsets.len(), rejected.len(), "each rejected record once: {offsets:?}");
    assert_eq!(offsets.iter().copied().collect::<BTreeSet<_>>(), rejected);
    for record in &dead {
        assert_eq!(header(record, dead_letter::SOURCE_TOPIC), topic);
        assert_eq!(header(record, dead_letter::SOURCE_PARTITION), "0");
    }

    let ids = published_ids(&pool, dir.path()).await;
    let good = (total - rejected.len() as i64) as usize;
    assert_eq!(ids.len(), good, "each good record once: {ids:?}");
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), good);
    stop.cancel();
    while let Some(joined) = processor.tasks.join_next().await {
        joined.unwrap().unwrap();
    }
}
