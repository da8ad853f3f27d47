//! The embedded log through the public API: durability, offsets, partitioning, consumers, recovery, all-or-nothing
//! groups (with injected fsync failures) and locking.

use jhe_eventlog::embedded::EmbeddedLog;
use jhe_eventlog::{
    Consumed, Consumer, ConsumerEvent, ConsumerSettings, EventLog, LogConfig, LogError, Offset, Partition,
    PositionStore, Record,
};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const TOPIC: &str = "jhe.observations";
/// Long enough for a loaded machine; a passing test never waits for it.
const PATIENCE: Duration = Duration::from_secs(60);

/// Positions kept in memory, as the processor keeps them in Postgres.
#[derive(Debug, Default)]
struct MemoryPositions(HashMap<Partition, Offset>);

impl PositionStore for MemoryPositions {
    fn positions(&self, _topic: &str, partitions: &[Partition]) -> Result<Vec<Option<Offset>>, String> {
        Ok(partitions.iter().map(|partition| self.0.get(partition).copied()).collect())
    }
}

fn positions(stored: &[(Partition, Offset)]) -> Arc<dyn PositionStore> {
    Arc::new(MemoryPositions(stored.iter().copied().collect()))
}

fn record(key: &str, value: &str) -> Record {
    Record { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), headers: Vec::new() }
}

async fn open(dir: &Path, partitions: i32) -> EventLog {
    let log = EventLog::open(&LogConfig::embedded(dir, partitions)).await.unwrap();
    log.ensure_topic(TOPIC).await.unwrap();
    log
}

fn consumer(log: &EventLog, stored: &[(Partition, Offset)], settings: ConsumerSettings) -> Consumer {
    log.consumer(TOPIC, "test", positions(stored), settings).unwrap()
}

async fn next_event(consumer: &mut Consumer) -> ConsumerEvent {
    tokio::time::timeout(PATIENCE, consumer.next()).await.expect("no consumer event in time").unwrap().unwrap()
}

async fn assigned(consumer: &mut Consumer) -> Vec<(Partition, Offset)> {
    match next_event(consumer).await {
        ConsumerEvent::Assigned(assigned) => assigned,
        other => panic!("expected an assignment first, got {other:?}"),
    }
}

/// Reads batches until `count` records arrived (failing on more in the last batch).
async fn records(consumer: &mut Consumer, count: usize) -> Vec<Consumed> {
    let mut received = Vec::new();
    while received.len() < count {
        match next_event(consumer).await {
            ConsumerEvent::Records(batch) => {
                assert!(!batch.is_empty(), "empty batches are never handed out");
                received.extend(batch);
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(received.len(), count, "more records than produced");
    received
}

/// Asserts that nothing more arrives for a while.
async fn assert_quiet(consumer: &mut Consumer) {
    let next = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
    assert!(next.is_err(), "unexpected event {next:?}");
}

/// Offsets per partition, in delivery order.
fn offsets_by_partition(records: &[Consumed]) -> BTreeMap<Partition, Vec<Offset>> {
    let mut offsets: BTreeMap<Partition, Vec<Offset>> = BTreeMap::new();
    for record in records {
        offsets.entry(record.partition).or_default().push(record.offset);
    }
    offsets
}

fn last_segment(dir: &Path, partition: Partition) -> PathBuf {
    let partition_dir = dir.join(TOPIC).join(partition.to_string());
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&partition_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_keeps_keys_values_headers_and_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 4).await;
    let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let sent = vec![
        Record {
            key: b"40001".to_vec(),
            value: br#"{"patient":40001}"#.to_vec(),
            headers: vec![("jhe-format".into(), b"observation/1".to_vec()), ("empty".into(), Vec::new())],
        },
        Record { key: Vec::new(), value: b"no key".to_vec(), headers: Vec::new() },
        Record { key: b"40002".to_vec(), value: Vec::new(), headers: vec![("a".into(), vec![0, 255])] },
    ];
    log.producer().unwrap().send(TOPIC, sent.clone()).await.unwrap();

    let mut consumer = consumer(&log, &[], ConsumerSettings::default());
    assert_eq!(assigned(&mut consumer).await, vec![(0, 0), (1, 0), (2, 0), (3, 0)]);
    let received = records(&mut consumer, sent.len()).await;
    for record in &sent {
        let consumed = received.iter().find(|consumed| consumed.value == record.value).unwrap();
        assert_eq!(consumed.key, (!record.key.is_empty()).then(|| record.key.clone()));
        assert_eq!(consumed.headers, record.headers);
        assert_eq!(consumed.offset, 0, "one record per partition here or a dense start at 0");
        assert!(consumed.timestamp_millis.unwrap() >= before);
    }
    let first = received.iter().find(|consumed| consumed.key.as_deref() == Some(b"40001")).unwrap();
    assert_eq!(first.header("jhe-format"), Some(&b"observation/1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_dense_and_a_key_keeps_its_partition_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 3).await;
    let producer = log.producer().unwrap();
    for round in 0..5 {
        let batch =
            (0..100).map(|index| record(&format!("patient-{}", index % 10), &format!("{round}:{index}"))).collect();
        producer.send(TOPIC, batch).await.unwrap();
    }

    let mut consumer = consumer(&log, &[], ConsumerSettings { max_batch_records: 64, ..ConsumerSettings::default() });
    assigned(&mut consumer).await;
    let received = records(&mut consumer, 500).await;
    for (partition, offsets) in offsets_by_partition(&received) {
        assert_eq!(offsets, (0..offsets.len() as Offset).collect::<Vec<_>>(), "partition {partition}");
    }
    let mut partition_of_key: HashMap<Vec<u8>, Partition> = HashMap::new();
    let mut values_of_key: HashMap<Vec<u8>, Vec<String>> = HashMap::new();
    for consumed in &received {
        let key = consumed.key.clone().unwrap();
        assert_eq!(*partition_of_key.entry(key.clone()).or_insert(consumed.partition), consumed.partition);
        values_of_key.entry(key).or_default().push(String::from_utf8(consumed.value.clone()).unwrap());
    }
    assert!(partition_of_key.values().collect::<HashSet<_>>().len() > 1, "keys spread over partitions");
    for (key, values) in values_of_key {
        let key = String::from_utf8(key).unwrap();
        let patient: usize = key.trim_start_matches("patient-").parse().unwrap();
        let expected: Vec<String> =
            (0..5).flat_map(|round| (patient..100).step_by(10).map(move |index| format!("{round}:{index}"))).collect();
        assert_eq!(values, expected, "order of {key}");
    }
    let watermarks = log.high_watermarks(TOPIC).await.unwrap();
    assert_eq!(watermarks.iter().map(|(_, offset)| offset).sum::<Offset>(), 500);
    assert_eq!(watermarks.iter().map(|(partition, _)| *partition).collect::<Vec<_>>(), vec![0, 1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_without_a_key_are_spread_round_robin() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 4).await;
    let producer = log.producer().unwrap();
    for index in 0..8 {
        producer.send(TOPIC, vec![record("", &index.to_string())]).await.unwrap();
    }
    let watermarks = log.high_watermarks(TOPIC).await.unwrap();
    assert_eq!(watermarks, vec![(0, 2), (1, 2), (2, 2), (3, 2)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_follow_new_appends_and_hand_over_partial_batches() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 2).await;
    let settings = ConsumerSettings {
        max_batch_records: 1000,
        max_batch_wait: Duration::from_millis(50),
        ..ConsumerSettings::default()
    };
    let mut consumer = consumer(&log, &[], settings);
    assert_eq!(assigned(&mut consumer).await, vec![(0, 0), (1, 0)]);
    assert_quiet(&mut consumer).await;

    let producer = log.producer().unwrap();
    producer.send(TOPIC, vec![record("a", "1"), record("a", "2"), record("a", "3")]).await.unwrap();
    let received = records(&mut consumer, 3).await;
    assert_eq!(received.iter().map(|consumed| consumed.offset).collect::<Vec<_>>(), vec![0, 1, 2]);
    producer.send(TOPIC, vec![record("a", "4")]).await.unwrap();
    assert_eq!(records(&mut consumer, 1).await[0].offset, 3);
    assert_quiet(&mut consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_from_the_stored_positions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 2).await;
    let producer = log.producer().unwrap();
    // crc32("d") % 2 == 0, crc32("a") % 2 == 1.
    producer.send(TOPIC, (0..10).map(|index| record("d", &index.to_string())).collect()).await.unwrap();
    producer.send(TOPIC, (0..10).map(|index| record("a", &index.to_string())).collect()).await.unwrap();
    let watermarks = log.high_watermarks(TOPIC).await.unwrap();
    assert_eq!(watermarks, vec![(0, 10), (1, 10)], "keys `d` and `a` use both partitions");

    let mut consumer = consumer(&log, &[(0, 7), (1, 10)], ConsumerSettings::default());
    assert_eq!(assigned(&mut consumer).await, vec![(0, 7), (1, 10)]);
    let received = records(&mut consumer, 3).await;
    assert_eq!(offsets_by_partition(&received), BTreeMap::from([(0, vec![7, 8, 9])]));
    assert_quiet(&mut consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_drops_buffered_records_and_restarts_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1).await;
    let producer = log.producer().unwrap();
    producer.send(TOPIC, (0..100).map(|index| record("k", &index.to_string())).collect()).await.unwrap();

    let settings = ConsumerSettings { max_batch_records: 10, buffered_batches: 2, ..ConsumerSettings::default() };
    let mut consumer = consumer(&log, &[], settings);
    assigned(&mut consumer).await;
    let first = records(&mut consumer, 10).await;
    assert_eq!(first.last().unwrap().offset, 9);
    // Let the reader fill its buffer with batches from before the seek.
    tokio::time::sleep(Duration::from_millis(100)).await;
    consumer.seek(0, 5).unwrap();
    let after = records(&mut consumer, 95).await;
    assert_eq!(after.iter().map(|consumed| consumed.offset).collect::<Vec<_>>(), (5..100).collect::<Vec<_>>());

    consumer.seek(0, 98).unwrap();
    assert_eq!(records(&mut consumer, 2).await.iter().map(|consumed| consumed.offset).collect::<Vec<_>>(), [98, 99]);
    assert!(matches!(consumer.seek(1, 0), Err(LogError::Config(_))));
    assert_quiet(&mut consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_keeps_records_offsets_and_the_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), 2).await;
        let producer = log.producer().unwrap();
        producer.send(TOPIC, (0..20).map(|index| record(&index.to_string(), "before")).collect()).await.unwrap();
    }
    // Configured with 5 partitions now: the topic keeps its 2.
    let log = open(dir.path(), 5).await;
    let before = log.high_watermarks(TOPIC).await.unwrap();
    assert_eq!(before.len(), 2);
    assert_eq!(before.iter().map(|(_, offset)| offset).sum::<Offset>(), 20);
    log.producer()
        .unwrap()
        .send(TOPIC, (0..20).map(|index| record(&index.to_string(), "after")).collect())
        .await
        .unwrap();

    let mut consumer = consumer(&log, &[], ConsumerSettings::default());
    assert_eq!(assigned(&mut consumer).await, vec![(0, 0), (1, 0)]);
    let received = records(&mut consumer, 40).await;
    for (partition, offsets) in offsets_by_partition(&received) {
        assert_eq!(offsets, (0..offsets.len() as Offset).collect::<Vec<_>>(), "partition {partition}");
        let values: Vec<_> = received
            .iter()
            .filter(|consumed| consumed.partition == partition)
            .map(|consumed| &consumed.value)
            .collect();
        let switch = values.iter().position(|value| value.as_slice() == b"after").unwrap();
        assert!(values[..switch].iter().all(|value| value.as_slice() == b"before"));
        assert!(values[switch..].iter().all(|value| value.as_slice() == b"after"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_tail_is_cut_off_on_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), 1).await;
        log.producer()
            .unwrap()
            .send(TOPIC, (0..10).map(|index| record("k", &index.to_string())).collect())
            .await
            .unwrap();
    }
    // A crash in the middle of an append: the next record's frame is only partly there.
    let segment = last_segment(dir.path(), 0);
    OpenOptions::new().append(true).open(&segment).unwrap().write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
    let log = open(dir.path(), 1).await;
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 10)]);
    log.producer().unwrap().send(TOPIC, vec![record("k", "10")]).await.unwrap();
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 11)]);
    drop(log);

    // Garbage where a length should be, after a cut through the last record.
    let length = std::fs::metadata(&segment).unwrap().len();
    let file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(length - 3).unwrap();
    drop(file);
    let log = open(dir.path(), 1).await;
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 10)], "the cut record is gone");
    log.producer().unwrap().send(TOPIC, vec![record("k", "new 10"), record("k", "new 11")]).await.unwrap();

    let mut consumer = consumer(&log, &[], ConsumerSettings::default());
    assigned(&mut consumer).await;
    let received = records(&mut consumer, 12).await;
    assert_eq!(received.iter().map(|consumed| consumed.offset).collect::<Vec<_>>(), (0..12).collect::<Vec<_>>());
    let values: Vec<String> =
        received.iter().map(|consumed| String::from_utf8(consumed.value.clone()).unwrap()).collect();
    let mut expected: Vec<String> = (0..10).map(|index| index.to_string()).collect();
    expected.extend(["new 10".to_owned(), "new 11".to_owned()]);
    assert_eq!(values, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_tail_is_detected_by_the_checksum() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), 1).await;
        let producer = log.producer().unwrap();
        producer.send(TOPIC, (0..5).map(|index| record("k", &format!("value {index}"))).collect()).await.unwrap();
        producer.send(TOPIC, (5..10).map(|index| record("k", &format!("value {index}"))).collect()).await.unwrap();
    }
    // The last byte of the last record (before the 36-byte trailer of its group): that whole group is dropped.
    let segment = last_segment(dir.path(), 0);
    let mut bytes = std::fs::read(&segment).unwrap();
    let last_record_byte = bytes.len() - 36 - 1;
    bytes[last_record_byte] ^= 0xff;
    std::fs::write(&segment, &bytes).unwrap();
    let log = open(dir.path(), 1).await;
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 5)]);
}

/// The embedded log of `log`, for failure injection.
fn embedded(log: &EventLog) -> &EmbeddedLog {
    match log {
        EventLog::Embedded(log) => log,
        EventLog::Kafka(_) => panic!("not the embedded log"),
    }
}

/// `count` records in each of two partitions (of 2: crc32("d") % 2 == 0, crc32("a") % 2 == 1), valued
/// `<label> <index>`: one send spanning both.
fn spanning(label: &str, count: usize) -> Vec<Record> {
    ["d", "a"].iter().flat_map(|key| (0..count).map(move |index| record(key, &format!("{label} {index}")))).collect()
}

/// The labels of the records' values, each with how many records carry it, per partition.
fn labels(received: &[Consumed]) -> BTreeMap<(Partition, String), usize> {
    let mut labels = BTreeMap::new();
    for consumed in received {
        let value = String::from_utf8(consumed.value.clone()).unwrap();
        let label = value.split(' ').next().unwrap().to_owned();
        *labels.entry((consumed.partition, label)).or_default() += 1;
    }
    labels
}

/// Reads the whole topic from the start (exactly `count` records) and checks that offsets are dense.
async fn read_all(log: &EventLog, count: usize) -> Vec<Consumed> {
    let mut consumer = consumer(log, &[], ConsumerSettings::default());
    assigned(&mut consumer).await;
    let received = records(&mut consumer, count).await;
    assert_quiet(&mut consumer).await;
    for (partition, offsets) in offsets_by_partition(&received) {
        assert_eq!(offsets, (0..offsets.len() as Offset).collect::<Vec<_>>(), "partition {partition}");
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_fsync_failed_in_one_partition_is_not_delivered_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), 2).await;
        let producer = log.producer().unwrap();
        producer.send(TOPIC, spanning("before", 5)).await.unwrap();
        // Partition 0's fsync succeeds, partition 1's reports failure although its records reached the disk.
        embedded(&log).inject_io_failures(TOPIC, 1, 1).unwrap();
        let failed = producer.send(TOPIC, spanning("failed", 5)).await;
        assert!(matches!(failed, Err(LogError::Write(_))), "{failed:?}");
        // After a failed fsync the writer refuses appends until a restart; they are not stored either.
        let refused = producer.send(TOPIC, spanning("refused", 5)).await;
        assert!(matches!(refused, Err(LogError::Write(_))), "{refused:?}");
        assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 5), (1, 5)]);
        let received = read_all(&log, 10).await;
        assert_eq!(labels(&received), BTreeMap::from([((0, "before".into()), 5), ((1, "before".into()), 5)]));
    }

    let log = open(dir.path(), 2).await;
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 5), (1, 5)]);
    log.producer().unwrap().send(TOPIC, spanning("restarted", 5)).await.unwrap();
    let received = read_all(&log, 20).await;
    assert_eq!(
        labels(&received),
        BTreeMap::from([
            ((0, "before".into()), 5),
            ((0, "restarted".into()), 5),
            ((1, "before".into()), 5),
            ((1, "restarted".into()), 5),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_group_is_dropped_on_restart_where_it_could_not_be_taken_back() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path(), 2).await;
        let producer = log.producer().unwrap();
        producer.send(TOPIC, spanning("before", 3)).await.unwrap();
        let lengths_before =
            [0, 1].map(|partition| std::fs::metadata(last_segment(dir.path(), partition)).unwrap().len());
        // Every fsync and truncation of partition 1 fails: the group's records and trailer stay in its segment.
        embedded(&log).inject_io_failures(TOPIC, 1, usize::MAX).unwrap();
        let failed = producer.send(TOPIC, spanning("failed", 3)).await;
        assert!(matches!(failed, Err(LogError::Write(_))), "{failed:?}");
        let lengths_after =
            [0, 1].map(|partition| std::fs::metadata(last_segment(dir.path(), partition)).unwrap().len());
        assert_eq!(lengths_after[0], lengths_before[0], "partition 0 took the group back");
        assert!(lengths_after[1] > lengths_before[1], "partition 1 still holds the group");
    }

    let log = open(dir.path(), 2).await;
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 3), (1, 3)]);
    let received = read_all(&log, 6).await;
    assert_eq!(labels(&received), BTreeMap::from([((0, "before".into()), 3), ((1, "before".into()), 3)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_fsyncs_of_a_group_delivers_none_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let partition_0_before = {
        let log = open(dir.path(), 2).await;
        let producer = log.producer().unwrap();
        producer.send(TOPIC, spanning("before", 4)).await.unwrap();
        let length = std::fs::metadata(last_segment(dir.path(), 0)).unwrap().len();
        producer.send(TOPIC, spanning("crashed", 4)).await.unwrap();
        length
    };
    // The crash came after partition 1's fsync and before partition 0's: only partition 1 kept the group.
    OpenOptions::new().write(true).open(last_segment(dir.path(), 0)).unwrap().set_len(partition_0_before).unwrap();

    {
        let log = open(dir.path(), 2).await;
        assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 4), (1, 4)]);
        let received = read_all(&log, 8).await;
        assert_eq!(labels(&received), BTreeMap::from([((0, "before".into()), 4), ((1, "before".into()), 4)]));
        log.producer().unwrap().send(TOPIC, spanning("after", 4)).await.unwrap();
    }
    let log = open(dir.path(), 2).await;
    let received = read_all(&log, 16).await;
    assert_eq!(
        labels(&received),
        BTreeMap::from([
            ((0, "after".into()), 4),
            ((0, "before".into()), 4),
            ((1, "after".into()), 4),
            ((1, "before".into()), 4),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sends_are_delivered_whole_when_acknowledged_and_not_at_all_when_failed() {
    const TASKS: usize = 8;
    const SENDS: usize = 20;
    const BEFORE_FAILURE: usize = 5;
    const RECORDS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let (acknowledged, failed) = {
        let log = open(dir.path(), 4).await;
        let paused = Arc::new(tokio::sync::Barrier::new(TASKS + 1));
        let resumed = Arc::new(tokio::sync::Barrier::new(TASKS + 1));
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..TASKS {
            let producer = log.producer().unwrap();
            let (paused, resumed) = (Arc::clone(&paused), Arc::clone(&resumed));
            tasks.spawn(async move {
                let mut outcomes = Vec::new();
                for send in 0..SENDS {
                    if send == BEFORE_FAILURE {
                        paused.wait().await;
                        resumed.wait().await;
                    }
                    let batch = (0..RECORDS)
                        .map(|index| {
                            record(&format!("patient-{task}-{}", index % 7), &format!("{task}:{send} {index}"))
                        })
                        .collect();
                    outcomes.push((format!("{task}:{send}"), producer.send(TOPIC, batch).await.is_ok()));
                }
                outcomes
            });
        }
        paused.wait().await;
        embedded(&log).inject_io_failures(TOPIC, 2, 1).unwrap();
        resumed.wait().await;
        let mut outcomes = Vec::new();
        while let Some(result) = tasks.join_next().await {
            outcomes.extend(result.unwrap());
        }
        let (acknowledged, failed): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(|(_, ok)| *ok);
        let names = |outcomes: Vec<(String, bool)>| outcomes.into_iter().map(|(name, _)| name).collect::<HashSet<_>>();
        (names(acknowledged), names(failed))
    };
    assert!(acknowledged.len() >= TASKS * BEFORE_FAILURE, "{acknowledged:?}");
    assert!(!failed.is_empty(), "the injected failure failed a send");

    let log = open(dir.path(), 4).await;
    let received = read_all(&log, acknowledged.len() * RECORDS).await;
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for consumed in &received {
        let value = String::from_utf8(consumed.value.clone()).unwrap();
        *delivered.entry(value.split(' ').next().unwrap().to_owned()).or_default() += 1;
    }
    assert_eq!(delivered.keys().cloned().collect::<HashSet<_>>(), acknowledged, "no record of a failed send");
    assert!(delivered.values().all(|&count| count == RECORDS), "acknowledged sends are whole: {delivered:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_producers_are_all_acknowledged_and_consumed_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 4).await;
    let mut consumer = consumer(&log, &[], ConsumerSettings { max_batch_records: 500, ..ConsumerSettings::default() });
    assigned(&mut consumer).await;

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8 {
        let producer = log.producer().unwrap();
        tasks.spawn(async move {
            for chunk in 0..20 {
                let batch = (0..50)
                    .map(|index| {
                        let number = chunk * 50 + index;
                        record(&format!("patient-{task}-{}", number % 7), &format!("{task}:{number}"))
                    })
                    .collect();
                producer.send(TOPIC, batch).await.unwrap();
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }

    let received = records(&mut consumer, 8000).await;
    let values: HashSet<Vec<u8>> = received.iter().map(|consumed| consumed.value.clone()).collect();
    assert_eq!(values.len(), 8000, "every record exactly once");
    for (partition, offsets) in offsets_by_partition(&received) {
        assert_eq!(offsets, (0..offsets.len() as Offset).collect::<Vec<_>>(), "partition {partition}");
    }
    assert_quiet(&mut consumer).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_process_may_open_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1).await;
    let consumer = consumer(&log, &[], ConsumerSettings::default());
    let second = EventLog::open(&LogConfig::embedded(dir.path(), 1)).await;
    let Err(LogError::Config(message)) = second else { panic!("a second open must fail, got {second:?}") };
    assert!(message.contains("in use by another process"), "{message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");

    // The consumer keeps the log open; dropping everything releases it.
    drop(log);
    assert!(EventLog::open(&LogConfig::embedded(dir.path(), 1)).await.is_err());
    drop(consumer);
    EventLog::open(&LogConfig::embedded(dir.path(), 1)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_topics_and_bad_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 1).await;
    let producer = log.producer().unwrap();
    assert!(matches!(producer.send("missing", vec![record("k", "v")]).await, Err(LogError::Config(_))));
    assert!(matches!(log.high_watermarks("missing").await, Err(LogError::Config(_))));
    assert!(matches!(
        log.consumer("missing", "g", positions(&[]), ConsumerSettings::default()),
        Err(LogError::Config(_))
    ));
    for name in ["", "..", "a/b", "a b"] {
        assert!(matches!(log.ensure_topic(name).await, Err(LogError::Config(_))), "{name:?}");
    }
    assert!(EventLog::open(&LogConfig::embedded(dir.path().join("other"), 0)).await.is_err());
    producer.send(TOPIC, Vec::new()).await.unwrap();
}

/// Append throughput with ~500-byte records in batches of 1000 from concurrent senders. Prints a figure; run with
/// `cargo nextest run -p jhe-eventlog --run-ignored only append_throughput --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn append_throughput() {
    const SENDERS: usize = 8;
    const BATCHES_PER_SENDER: usize = 50;
    const BATCH: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), 8).await;
    let value = vec![b'x'; 480];
    let started = std::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let producer = log.producer().unwrap();
        let value = value.clone();
        tasks.spawn(async move {
            for round in 0..BATCHES_PER_SENDER {
                let batch = (0..BATCH)
                    .map(|index| Record {
                        key: (40_000 + (sender * BATCH + index + round) % 5000).to_string().into_bytes(),
                        value: value.clone(),
                        headers: vec![("jhe-format".into(), b"observation/1".to_vec())],
                    })
                    .collect();
                producer.send(TOPIC, batch).await.unwrap();
            }
        });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap();
    }
    let elapsed = started.elapsed();
    let total = SENDERS * BATCHES_PER_SENDER * BATCH;
    let watermarks = log.high_watermarks(TOPIC).await.unwrap();
    assert_eq!(watermarks.iter().map(|(_, offset)| *offset as usize).sum::<usize>(), total);
    println!(
        "appended {total} records of ~500 bytes in {:.2} s: {:.0} records/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );

    let started = std::time::Instant::now();
    let mut consumer = consumer(&log, &[], ConsumerSettings::default());
    assigned(&mut consumer).await;
    records(&mut consumer, total).await;
    let elapsed = started.elapsed();
    println!(
        "consumed {total} records in {:.2} s: {:.0} records/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
}
