//! The Kafka adapter against a real Kafka-protocol broker: tansu from `scripts/services` on 127.0.0.1:9092, or
//! `JHE_TEST_KAFKA_BROKERS`. Every test uses its own topic and group.

use jhe_eventlog::kafka::KafkaLog;
use jhe_eventlog::{
    Consumed, Consumer, ConsumerEvent, ConsumerSettings, EventLog, LogConfig, LogError, Offset, Partition,
    PositionStore, Record,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const WAIT: Duration = Duration::from_secs(60);

fn brokers() -> String {
    std::env::var("JHE_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A name no other test (or earlier run against the same broker) uses.
fn unique(name: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    format!("jhe-test-{name}-{}-{nanos}", std::process::id())
}

fn config(brokers: &str, partitions: i32, properties: &[(&str, &str)]) -> LogConfig {
    LogConfig {
        brokers: Some(brokers.to_owned()),
        embedded_dir: std::env::temp_dir().join("jhe-unused-embedded-log"),
        partitions,
        kafka_properties: properties.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect(),
    }
}

async fn open_with_topic(name: &str, partitions: i32) -> (EventLog, String) {
    let log = EventLog::open(&config(&brokers(), partitions, &[])).await.expect("the test broker answers");
    let topic = unique(name);
    log.ensure_topic(&topic).await.unwrap();
    // creating it again is fine
    log.ensure_topic(&topic).await.unwrap();
    (log, topic)
}

fn record(index: usize) -> Record {
    Record {
        key: format!("patient-{}", index % 17).into_bytes(),
        value: format!(
            r#"{{"n":{index},"omh":{{"body":{{"heart_rate":{{"value":{},"unit":"beats/min"}}}}}}}}"#,
            60 + index % 40
        )
        .into_bytes(),
        headers: vec![
            ("jhe-format".to_owned(), b"observation/1".to_vec()),
            ("seq".to_owned(), index.to_string().into_bytes()),
        ],
    }
}

fn seq(consumed: &Consumed) -> usize {
    std::str::from_utf8(consumed.header("seq").unwrap()).unwrap().parse().unwrap()
}

/// Positions in memory, as the processor keeps them in Postgres.
#[derive(Default)]
struct MemoryStore {
    positions: Mutex<HashMap<Partition, Offset>>,
    calls: AtomicUsize,
}

impl MemoryStore {
    fn set(&self, partition: Partition, next_offset: Offset) {
        self.positions.lock().unwrap().insert(partition, next_offset);
    }
}

impl PositionStore for MemoryStore {
    fn positions(&self, _topic: &str, partitions: &[Partition]) -> Result<Vec<Option<Offset>>, String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let positions = self.positions.lock().unwrap();
        Ok(partitions.iter().map(|partition| positions.get(partition).copied()).collect())
    }
}

struct FailingStore;

impl PositionStore for FailingStore {
    fn positions(&self, _topic: &str, _partitions: &[Partition]) -> Result<Vec<Option<Offset>>, String> {
        Err("database is down".to_owned())
    }
}

async fn next_event(consumer: &mut Consumer) -> ConsumerEvent {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("an event within 60 s")
        .expect("the consumer is open")
        .expect("no consumer error")
}

/// Reads until `count` records arrived; returns them and every non-record event.
async fn read_records(consumer: &mut Consumer, count: usize) -> (Vec<Consumed>, Vec<ConsumerEvent>) {
    let mut records = Vec::new();
    let mut events = Vec::new();
    while records.len() < count {
        match next_event(consumer).await {
            ConsumerEvent::Records(batch) => records.extend(batch),
            event => events.push(event),
        }
    }
    (records, events)
}

/// The offsets `group` committed to Kafka for `topic`.
fn committed_offsets(topic: &str, group: &str, partitions: i32) -> BTreeMap<Partition, Offset> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let consumer: BaseConsumer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers()).set("group.id", group).create().unwrap();
    let mut query = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        query.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(query, Duration::from_secs(10)).unwrap();
    committed
        .elements()
        .iter()
        .filter_map(|element| match element.offset() {
            rdkafka::Offset::Offset(offset) => Some((element.partition(), offset)),
            _ => None,
        })
        .collect()
}

fn settings(max_batch_records: usize) -> ConsumerSettings {
    ConsumerSettings { max_batch_records, max_batch_wait: Duration::from_millis(50), buffered_batches: 2 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_keys_headers_and_per_key_order() {
    let (log, topic) = open_with_topic("round-trip", 3).await;
    let sent: Vec<Record> = (0..300).map(record).collect();
    let producer = log.producer().unwrap();
    producer.send(&topic, sent[..100].to_vec()).await.unwrap();
    producer.send(&topic, sent[100..].to_vec()).await.unwrap();

    let store = Arc::new(MemoryStore::default());
    let mut consumer = log.consumer(&topic, &unique("group"), Arc::<MemoryStore>::clone(&store), settings(64)).unwrap();
    assert_eq!(next_event(&mut consumer).await, ConsumerEvent::Assigned(vec![(0, 0), (1, 0), (2, 0)]));
    let (records, events) = read_records(&mut consumer, 300).await;
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(records.len(), 300);
    assert!(store.calls.load(Ordering::SeqCst) >= 1);

    let mut next_offset: BTreeMap<Partition, Offset> = BTreeMap::new();
    let mut partition_of_key: HashMap<Vec<u8>, Partition> = HashMap::new();
    let mut last_seq_of_key: HashMap<Vec<u8>, usize> = HashMap::new();
    for consumed in &records {
        let index = seq(consumed);
        let original = &sent[index];
        assert_eq!(consumed.key.as_deref(), Some(original.key.as_slice()));
        assert_eq!(consumed.value, original.value);
        assert_eq!(consumed.headers, original.headers);
        assert!(consumed.timestamp_millis.unwrap() > 1_700_000_000_000);
        // offsets are contiguous per partition, from 0
        let expected = next_offset.entry(consumed.partition).or_insert(0);
        assert_eq!(consumed.offset, *expected);
        *expected += 1;
        // one key, one partition, in send order
        assert_eq!(*partition_of_key.entry(original.key.clone()).or_insert(consumed.partition), consumed.partition);
        if let Some(previous) = last_seq_of_key.insert(original.key.clone(), index) {
            assert!(previous < index);
        }
    }
    let distinct: BTreeSet<usize> = records.iter().map(seq).collect();
    assert_eq!(distinct.len(), 300);
    producer.flush(Duration::from_secs(10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_consumer_resumes_exactly_at_the_stored_positions() {
    let (log, topic) = open_with_topic("resume", 3).await;
    let producer = log.producer().unwrap();
    producer.send(&topic, (0..90).map(record).collect()).await.unwrap();
    let group = unique("group");
    let store = Arc::new(MemoryStore::default());

    // the first consumer processes a part and stores where each partition goes on
    let mut first = log.consumer(&topic, &group, Arc::<MemoryStore>::clone(&store), settings(7)).unwrap();
    assert!(matches!(next_event(&mut first).await, ConsumerEvent::Assigned(_)));
    let (processed, _) = read_records(&mut first, 30).await;
    for consumed in &processed {
        store.set(consumed.partition, consumed.offset + 1);
    }
    first.processed(&store.positions.lock().unwrap().iter().map(|(p, o)| (*p, *o)).collect::<Vec<_>>());
    drop(first);

    let stored = store.positions.lock().unwrap().clone();
    // the consumer committed them to Kafka too (a hint for lag dashboards) before it left the group
    assert_eq!(committed_offsets(&topic, &group, 3), stored.iter().map(|(p, o)| (*p, *o)).collect());
    let mut second = log.consumer(&topic, &group, Arc::<MemoryStore>::clone(&store), settings(7)).unwrap();
    let expected: Vec<(Partition, Offset)> =
        (0..3).map(|partition| (partition, stored.get(&partition).copied().unwrap_or(0))).collect();
    assert_eq!(next_event(&mut second).await, ConsumerEvent::Assigned(expected.clone()));
    let (rest, events) = read_records(&mut second, 90 - processed.len()).await;
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(rest.len(), 90 - processed.len());

    for (partition, start) in expected {
        let first_offset = rest.iter().find(|consumed| consumed.partition == partition).map(|consumed| consumed.offset);
        if let Some(first_offset) = first_offset {
            assert_eq!(first_offset, start, "partition {partition}");
        }
    }
    let all: BTreeSet<usize> = processed.iter().chain(&rest).map(seq).collect();
    assert_eq!(all, (0..90).collect::<BTreeSet<_>>(), "every record exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_split_the_partitions_and_read_everything_once() {
    let (log, topic) = open_with_topic("split", 4).await;
    let group = unique("group");
    let store = Arc::new(MemoryStore::default());
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<(usize, ConsumerEvent)>();
    let mut tasks = Vec::new();
    for member in 0..2 {
        let mut consumer = log.consumer(&topic, &group, Arc::<MemoryStore>::clone(&store), settings(50)).unwrap();
        let sender = sender.clone();
        let store = Arc::<MemoryStore>::clone(&store);
        tasks.push(tokio::spawn(async move {
            while let Some(event) = consumer.next().await {
                let event = event.expect("no consumer error");
                if let ConsumerEvent::Records(records) = &event {
                    for consumed in records {
                        store.set(consumed.partition, consumed.offset + 1);
                    }
                }
                if sender.send((member, event)).is_err() {
                    break;
                }
            }
        }));
    }

    // wait until the group settled: both members own partitions, together all four, none twice
    let mut assigned: [BTreeSet<Partition>; 2] = Default::default();
    let deadline = Instant::now() + WAIT;
    loop {
        let (member, event) = tokio::time::timeout_at(deadline.into(), receiver.recv()).await.unwrap().unwrap();
        match event {
            ConsumerEvent::Assigned(partitions) => assigned[member].extend(partitions.iter().map(|(p, _)| *p)),
            ConsumerEvent::Revoked(partitions) => {
                for partition in partitions {
                    assigned[member].remove(&partition);
                }
            }
            ConsumerEvent::Records(records) => panic!("no records yet, got {}", records.len()),
        }
        let union: BTreeSet<Partition> = assigned[0].union(&assigned[1]).copied().collect();
        if !assigned[0].is_empty()
            && !assigned[1].is_empty()
            && union.len() == 4
            && assigned[0].is_disjoint(&assigned[1])
        {
            break;
        }
    }

    let producer = log.producer().unwrap();
    producer.send(&topic, (0..400).map(record).collect()).await.unwrap();
    let mut seen: BTreeSet<(Partition, Offset)> = BTreeSet::new();
    let mut seqs: BTreeSet<usize> = BTreeSet::new();
    let mut per_member = [0usize; 2];
    while seqs.len() < 400 {
        let (member, event) = tokio::time::timeout_at(deadline.into(), receiver.recv()).await.unwrap().unwrap();
        match event {
            ConsumerEvent::Records(records) => {
                for consumed in records {
                    assert!(assigned[member].contains(&consumed.partition), "member {member} read a foreign partition");
                    assert!(seen.insert((consumed.partition, consumed.offset)), "duplicate {consumed:?}");
                    assert!(seqs.insert(seq(&consumed)));
                    per_member[member] += 1;
                }
            }
            other => panic!("no rebalance expected after the group settled: member {member}: {other:?}"),
        }
    }
    assert_eq!(per_member[0] + per_member[1], 400);
    assert!(per_member[0] > 0 && per_member[1] > 0, "{per_member:?}");
    drop(receiver);
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_drops_buffered_records_and_reads_from_the_new_position() {
    let (log, topic) = open_with_topic("seek", 1).await;
    log.producer().unwrap().send(&topic, (0..60).map(record).collect()).await.unwrap();
    let mut consumer = log.consumer(&topic, &unique("group"), Arc::new(MemoryStore::default()), settings(5)).unwrap();
    assert_eq!(next_event(&mut consumer).await, ConsumerEvent::Assigned(vec![(0, 0)]));
    let ConsumerEvent::Records(first) = next_event(&mut consumer).await else { panic!("records expected") };
    assert_eq!(first.first().unwrap().offset, 0);
    // let the poll thread fill the buffer (2 batches) and block on it: those records are stale after the seek
    tokio::time::sleep(Duration::from_millis(500)).await;

    // backwards
    consumer.seek(0, 2).unwrap();
    let (records, _) = read_records(&mut consumer, 20).await;
    let offsets: Vec<Offset> = records.iter().map(|consumed| consumed.offset).collect();
    assert_eq!(offsets[..20], (2..22).collect::<Vec<_>>()[..]);

    // forwards, past what is buffered
    tokio::time::sleep(Duration::from_millis(300)).await;
    consumer.seek(0, 50).unwrap();
    let (records, _) = read_records(&mut consumer, 10).await;
    let offsets: Vec<Offset> = records.iter().map(|consumed| consumed.offset).collect();
    assert_eq!(offsets, (50..60).collect::<Vec<_>>());

    // a seek of a partition this consumer does not own is ignored
    consumer.seek(7, 0).unwrap();
    consumer.processed(&[(0, 60)]);
}

/// tansu 0.6 reports a partition's high watermark as the base offset of its last record batch + 1 (a batch of 100
/// records at offsets 0..99 gives 1, not 100), so this test sends one record per batch; a real Kafka counts records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_watermarks_count_what_was_written() {
    let (log, topic) = open_with_topic("watermarks", 3).await;
    assert_eq!(log.high_watermarks(&topic).await.unwrap(), vec![(0, 0), (1, 0), (2, 0)]);
    let producer = log.producer().unwrap();
    for index in 0..15 {
        producer.send(&topic, vec![record(index)]).await.unwrap();
    }
    let mut consumer = log.consumer(&topic, &unique("group"), Arc::new(MemoryStore::default()), settings(100)).unwrap();
    let (records, _) = read_records(&mut consumer, 15).await;
    let mut expected: BTreeMap<Partition, Offset> = (0..3).map(|partition| (partition, 0)).collect();
    for consumed in &records {
        expected.insert(consumed.partition, consumed.offset + 1);
    }
    assert_eq!(log.high_watermarks(&topic).await.unwrap(), expected.into_iter().collect::<Vec<_>>());
    let missing = log.high_watermarks(&unique("missing")).await;
    assert!(matches!(missing, Err(LogError::Config(_))), "{missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_position_store_stops_the_consumer_instead_of_guessing() {
    let (log, topic) = open_with_topic("failing-store", 2).await;
    log.producer().unwrap().send(&topic, (0..10).map(record).collect()).await.unwrap();
    let mut consumer = log.consumer(&topic, &unique("group"), Arc::new(FailingStore), settings(10)).unwrap();
    let event = tokio::time::timeout(WAIT, consumer.next()).await.unwrap();
    match event {
        Some(Err(LogError::Closed(message))) => assert!(message.contains("database is down"), "{message}"),
        other => panic!("expected the consumer to fail, got {other:?}"),
    }
    assert!(tokio::time::timeout(WAIT, consumer.next()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_fails_clearly_when_no_broker_answers() {
    let started = Instant::now();
    let error = EventLog::open(&config("127.0.0.1:1", 1, &[])).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    match error {
        LogError::Unavailable(message) => assert!(message.contains("127.0.0.1:1"), "{message}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_fails_clearly_when_no_broker_answers() {
    let log = KafkaLog::connect_lazy(&config("127.0.0.1:1", 1, &[("message.timeout.ms", "2000")])).unwrap();
    let producer = log.producer().unwrap();
    let started = Instant::now();
    let error = producer.send("jhe-test-unreachable", (0..10).map(record).collect()).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(30));
    match error {
        LogError::Write(message) => assert!(message.contains("jhe-test-unreachable"), "{message}"),
        other => panic!("expected Write, got {other:?}"),
    }
}

/// Measures `send` throughput (informational; `JHE_TEST_KAFKA_RECORDS` records, 20k by default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_throughput() {
    let count: usize =
        std::env::var("JHE_TEST_KAFKA_RECORDS").ok().and_then(|value| value.parse().ok()).unwrap_or(20_000);
    let (log, topic) = open_with_topic("throughput", 6).await;
    let producer = log.producer().unwrap();
    let records: Vec<Record> = (0..count).map(record).collect();
    let bytes: usize = records.iter().map(|record| record.key.len() + record.value.len()).sum();
    // connection, producer id and topic metadata are set up by the first send
    producer.send(&topic, vec![record(0)]).await.unwrap();

    let started = Instant::now();
    producer.send(&topic, records.clone()).await.unwrap();
    let one_call = started.elapsed();

    // ingest's shape: many concurrent sends of small batches
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for chunk in records.chunks(500) {
        let producer = producer.clone();
        let topic = topic.clone();
        let chunk = chunk.to_vec();
        sends.spawn(async move { producer.send(&topic, chunk).await });
    }
    while let Some(result) = sends.join_next().await {
        result.unwrap().unwrap();
    }
    let concurrent = started.elapsed();

    println!(
        "produce throughput ({count} records, {} B avg): one send {:.0} records/s, concurrent sends of 500 {:.0} records/s",
        bytes / count,
        count as f64 / one_call.as_secs_f64(),
        count as f64 / concurrent.as_secs_f64()
    );
}
