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
    let log = EmbeddedLog::open_with_segment_bytes(&LogConfig::embedded(dir, 1), segment_bytes).unwrap();
    log.ensure_topic(TOPIC).unwrap();
    EventLog::Embedded(log)
}

fn batch(from: usize, count: usize) -> Vec<Record> {
    (from..from + count)
        .map(|index| Record { key: b"k".to_vec(), value: vec![index as u8; 100], headers: vec![] })
        .collect()
}

fn segments(dir: &Path) -> Vec<Offset> {
    segment::list_segments(&dir.join(TOPIC).join("0")).unwrap()
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
    // Damage a sealed segment: recovery does not look at it (a reader would report it).
    let sealed = segment::segment_path(&dir.path().join(TOPIC).join("0"), 10);
    let mut bytes = std::fs::read(&sealed).unwrap();
    bytes[SEGMENT_HEADER_LEN as usize + 20] ^= 0xff;
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
