//! Tests of the embedded log that need its internals (a small segment size, the segment files).

use super::segment::{self, SEGMENT_HEADER_LEN};
use super::*;
use crate::{Consumed, Consumer, ConsumerEvent, ConsumerSettings, EventLog, LogConfig, Record};
use std::time::Duration;

const TOPIC: &str = "t";
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug)]
struct FromTheStart;

impl PositionStore for FromTheStart {
    fn positions(&self, _topic: &str, partitions: &[Partition]) -> Result<Vec<Option<Offset>>, String> {
        Ok(vec![None; partitions.len()])
    }
}

fn open_small(dir: &Path, segment_bytes: u64) -> EventLog {
    open_partitions(dir, 1, segment_bytes)
}

fn open_partitions(dir: &Path, partitions: i32, segment_bytes: u64) -> EventLog {
    let log = EmbeddedLog::open_with_segment_bytes(&LogConfig::embedded(dir, partitions), segment_bytes).unwrap();
    log.ensure_topic(TOPIC).unwrap();
    EventLog::Embedded(log)
}

fn batch(from: usize, count: usize) -> Vec<Record> {
    keyed_batch(b"k", from, count)
}

fn keyed_batch(key: &[u8], from: usize, count: usize) -> Vec<Record> {
    (from..from + count)
        .map(|index| Record { key: key.to_vec(), value: vec![index as u8; 100], headers: vec![] })
        .collect()
}

fn segments(dir: &Path) -> Vec<Offset> {
    partition_segments(dir, 0)
}

fn partition_segments(dir: &Path, partition: Partition) -> Vec<Offset> {
    segment::list_segments(&dir.join(TOPIC).join(partition.to_string())).unwrap()
}

async fn read(consumer: &mut Consumer, count: usize) -> Vec<Consumed> {
    let mut received = Vec::new();
    while received.len() < count {
        let event = tokio::time::timeout(PATIENCE, consumer.next()).await.unwrap().unwrap().unwrap();
        match event {
            ConsumerEvent::Records(records) => received.extend(records),
            ConsumerEvent::Assigned(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    received
}

/// Waits until the writer thread has applied retention.
async fn wait_for_segments(dir: &Path, expected: &[Offset]) {
    let deadline = Instant::now() + PATIENCE;
    while segments(dir) != expected {
        assert!(Instant::now() < deadline, "segments {:?}, expected {expected:?}", segments(dir));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_and_retention_deletes_only_processed_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path(), 1024);
    let producer = log.producer().unwrap();
    // Each send is one group of ~1.4 KB: every group after the first starts a new segment.
    for round in 0..10 {
        producer.send(TOPIC, batch(round * 10, 10)).await.unwrap();
    }
    assert_eq!(segments(dir.path()), (0..10).map(|round| round * 10).collect::<Vec<_>>());

    let mut consumer = log.consumer(TOPIC, "g", Arc::new(FromTheStart), ConsumerSettings::default()).unwrap();
    let received = read(&mut consumer, 100).await;
    assert_eq!(received.iter().map(|record| record.offset).collect::<Vec<_>>(), (0..100).collect::<Vec<_>>());

    consumer.processed(&[(0, 35)]);
    wait_for_segments(dir.path(), &[30, 40, 50, 60, 70, 80, 90]).await;
    consumer.processed(&[(0, 1000), (7, 1)]);
    wait_for_segments(dir.path(), &[90]).await;

    // A position before the oldest retained record continues at the oldest, like auto.offset.reset=earliest.
    let mut late = log.consumer(TOPIC, "g", Arc::new(FromTheStart), ConsumerSettings::default()).unwrap();
    let received = read(&mut late, 10).await;
    assert_eq!(received.first().map(|record| record.offset), Some(90));
    drop((late, consumer, producer, log));

    let log = open_small(dir.path(), 1024);
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 100)]);
    log.producer().unwrap().send(TOPIC, batch(100, 1)).await.unwrap();
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 101)]);
    assert_eq!(segments(dir.path()), vec![90, 100]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_read_across_segments_from_any_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_small(dir.path(), 1024);
    let producer = log.producer().unwrap();
    for round in 0..5 {
        producer.send(TOPIC, batch(round * 10, 10)).await.unwrap();
    }
    let mut consumer = log
        .consumer(TOPIC, "g", Arc::new(FromTheStart), ConsumerSettings { max_batch_records: 7, ..Default::default() })
        .unwrap();
    read(&mut consumer, 7).await;
    for start in [0, 9, 10, 11, 29, 49] {
        consumer.seek(0, start).unwrap();
        let received = read(&mut consumer, 50 - start as usize).await;
        assert_eq!(received.first().map(|record| record.offset), Some(start));
        assert_eq!(received.last().map(|record| record.offset), Some(49));
        assert!(received.iter().all(|record| record.value == vec![record.offset as u8; 100]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_reads_only_the_last_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_small(dir.path(), 1024);
        let producer = log.producer().unwrap();
        for round in 0..3 {
            producer.send(TOPIC, batch(round * 10, 10)).await.unwrap();
        }
    }
    // Damage the first record of a sealed segment (after the copy of the previous segment's last trailer):
    // recovery does not look at it (a reader would report it).
    let sealed = segment::segment_path(&dir.path().join(TOPIC).join("0"), 10);
    let mut bytes = std::fs::read(&sealed).unwrap();
    let header = SEGMENT_HEADER_LEN as usize;
    let trailer_frame = 8 + u32::from_le_bytes(bytes[header..header + 4].try_into().unwrap()) as usize;
    bytes[header + trailer_frame + 20] ^= 0xff;
    std::fs::write(&sealed, &bytes).unwrap();

    let log = open_small(dir.path(), 1024);
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 30)]);
    let mut consumer = log.consumer(TOPIC, "g", Arc::new(FromTheStart), ConsumerSettings::default()).unwrap();
    let mut received = 0;
    let error = loop {
        match tokio::time::timeout(PATIENCE, consumer.next()).await.unwrap().unwrap() {
            Ok(ConsumerEvent::Records(records)) => received += records.len(),
            Ok(_) => {}
            Err(error) => break error,
        }
    };
    assert_eq!(received, 10, "the first segment is intact");
    assert!(error.to_string().contains("corrupt at offset 10"), "{error}");
    assert!(consumer.next().await.is_none(), "the consumer stops after an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_segment_header_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_small(dir.path(), 1024);
        log.producer().unwrap().send(TOPIC, batch(0, 10)).await.unwrap();
    }
    // A crash while a new segment was being created.
    std::fs::write(segment::segment_path(&dir.path().join(TOPIC).join("0"), 10), b"JHE").unwrap();
    let log = open_small(dir.path(), 1024);
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 10)]);
    log.producer().unwrap().send(TOPIC, batch(10, 1)).await.unwrap();
    let mut consumer = log.consumer(TOPIC, "g", Arc::new(FromTheStart), ConsumerSettings::default()).unwrap();
    let received = read(&mut consumer, 11).await;
    assert_eq!(received.iter().map(|record| record.offset).collect::<Vec<_>>(), (0..11).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_survives_when_the_next_one_rolled_a_segment_and_crashed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open_partitions(dir.path(), 2, 1024);
        let producer = log.producer().unwrap();
        // crc32("d") % 2 == 0, crc32("a") % 2 == 1: one group in both partitions, ~1.4 KB each.
        let mut both = keyed_batch(b"d", 0, 10);
        both.extend(keyed_batch(b"a", 0, 10));
        producer.send(TOPIC, both).await.unwrap();
        // The next group fills partition 0's new segment, which starts with a copy of the first group's trailer.
        producer.send(TOPIC, keyed_batch(b"d", 10, 5)).await.unwrap();
        assert_eq!(partition_segments(dir.path(), 0), vec![0, 10]);
    }
    // A crash before the second group was durable: its trailer is torn off.
    let active = segment::segment_path(&dir.path().join(TOPIC).join("0"), 10);
    let length = std::fs::metadata(&active).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&active).unwrap().set_len(length - 3).unwrap();

    // Partition 0's last segment still holds the first group's trailer, so that group stays committed in both.
    let log = open_partitions(dir.path(), 2, 1024);
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 10), (1, 10)]);
    let mut consumer = log.consumer(TOPIC, "g", Arc::new(FromTheStart), ConsumerSettings::default()).unwrap();
    let received = read(&mut consumer, 20).await;
    for partition in [0, 1] {
        let values: Vec<_> =
            received.iter().filter(|record| record.partition == partition).map(|record| record.value[0]).collect();
        assert_eq!(values, (0..10).collect::<Vec<u8>>(), "partition {partition}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_of_the_first_format_opens_and_continues_in_a_new_segment() {
    let dir = tempfile::tempdir().unwrap();
    let partition_dir = dir.path().join(TOPIC).join("0");
    std::fs::create_dir_all(&partition_dir).unwrap();
    std::fs::write(dir.path().join(TOPIC).join(META_FILE), r#"{"version":"1","partitions":1}"#).unwrap();
    let mut bytes = segment::SEGMENT_MAGIC_V1.to_vec();
    bytes.extend_from_slice(&0i64.to_le_bytes());
    for (offset, record) in (0..).zip(batch(0, 5)) {
        segment::encode_record(&mut bytes, offset, 1, &record);
    }
    let header_and_records = bytes.clone();
    // A torn sixth record: cut off, as before.
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2]);
    std::fs::write(segment::segment_path(&partition_dir, 0), &bytes).unwrap();

    {
        let log = open_small(dir.path(), 1 << 20);
        assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 5)]);
        assert_eq!(segments(dir.path()), vec![0, 5], "the old segment is sealed as it is");
        log.producer().unwrap().send(TOPIC, batch(5, 3)).await.unwrap();
    }
    assert_eq!(std::fs::read(segment::segment_path(&partition_dir, 0)).unwrap(), header_and_records);
    let log = open_small(dir.path(), 1 << 20);
    assert_eq!(log.high_watermarks(TOPIC).await.unwrap(), vec![(0, 8)]);
    let mut consumer = log.consumer(TOPIC, "g", Arc::new(FromTheStart), ConsumerSettings::default()).unwrap();
    let received = read(&mut consumer, 8).await;
    assert_eq!(received.iter().map(|record| record.offset).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
    assert!(received.iter().all(|record| record.value == vec![record.offset as u8; 100]));
}

#[test]
fn topic_meta_is_versioned() {
    let json = serde_json::to_string(&TopicMeta::V1 { partitions: 8 }).unwrap();
    assert_eq!(json, r#"{"version":"1","partitions":8}"#);
    assert!(serde_json::from_str::<TopicMeta>(r#"{"version":"2","partitions":8}"#).is_err());
}

#[test]
fn topic_names_follow_kafka() {
    for name in ["jhe.observations", "jhe.observations.dlq", "a-b_C.9"] {
        assert!(validate_topic_name(name).is_ok(), "{name}");
    }
    for name in ["", ".", "..", "a/b", "a\\b", "ä", &"x".repeat(250)] {
        assert!(validate_topic_name(name).is_err(), "{name}");
    }
}
