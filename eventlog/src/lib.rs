//! The observation log between ingest and the processor.
//!
//! Two implementations with the same semantics — partitions, offsets, keys, headers, durable acknowledgement:
//! * [`kafka`]: Apache Kafka / Redpanda (or any Kafka-protocol broker) through rdkafka; the path to scale.
//! * [`embedded`]: a durable segment log in a local directory, for `jhe dev` and small single-process deployments.
//!
//! Callers see one [`EventLog`] (chosen by [`LogConfig::brokers`]), which hands out [`Producer`]s and
//! [`Consumer`]s. Positions are owned by the caller: a consumer asks a [`PositionStore`] where to start whenever it
//! is assigned partitions (the processor keeps them in Postgres next to the files they cover, so a restart or a
//! rebalance resumes exactly where the last published file ended). Offsets committed back to Kafka are only a hint
//! for lag dashboards.
//!
//! The wire format of a message is [`message`] (documented there and in `docs/pipeline.md`).

pub mod embedded;
pub mod kafka;
pub mod message;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A partition number (Kafka's `i32`).
pub type Partition = i32;
/// An offset within a partition: the position of one record. "Next offset" means the offset of the first record
/// not yet consumed.
pub type Offset = i64;

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log could not be reached or refused the operation (broker down, timeout, I/O error).
    #[error("event log unavailable: {0}")]
    Unavailable(String),
    /// A record could not be made durable (the caller must not acknowledge it).
    #[error("event log write failed: {0}")]
    Write(String),
    /// The configuration is unusable (bad broker list, unknown topic, …).
    #[error("event log configuration: {0}")]
    Config(String),
    /// The consumer stopped (shutdown or a fatal error of its poll loop).
    #[error("event log consumer stopped: {0}")]
    Closed(String),
}

/// How to reach the log. Defaults suit `jhe dev`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Kafka bootstrap servers (`host:port,…`); `None` selects the embedded log.
    pub brokers: Option<String>,
    /// Directory of the embedded log (`$JHE_DATA_DIR/log`).
    pub embedded_dir: PathBuf,
    /// Number of partitions of topics this process creates (Kafka: when missing; embedded: always).
    pub partitions: i32,
    /// Extra librdkafka properties (`security.protocol`, `sasl.*`, …), applied to every client.
    pub kafka_properties: Vec<(String, String)>,
}

impl LogConfig {
    /// The embedded log under `dir` with `partitions` partitions.
    pub fn embedded(dir: impl Into<PathBuf>, partitions: i32) -> Self {
        Self { brokers: None, embedded_dir: dir.into(), partitions, kafka_properties: Vec::new() }
    }
}

/// One record to append. The key decides the partition (ingest uses the patient id, so one patient's records stay
/// in order in one partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// One record read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumed {
    pub partition: Partition,
    pub offset: Offset,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Append time (embedded) or the Kafka message timestamp, milliseconds since the epoch.
    pub timestamp_millis: Option<i64>,
}

impl Consumed {
    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_slice())
    }
}

/// What a consumer reports, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumerEvent {
    /// These partitions are now this consumer's, starting at the given next offsets (from the [`PositionStore`]).
    Assigned(Vec<(Partition, Offset)>),
    /// These partitions were taken away (a rebalance). Work on them that is not yet committed must be dropped; the
    /// new owner starts from the stored positions.
    Revoked(Vec<Partition>),
    /// Records, in offset order per partition.
    Records(Vec<Consumed>),
}

/// Where consumers start: the caller's stored positions. Called from the consumer's poll thread while a
/// rebalance is in progress, so it may block (the processor reads Postgres with `Handle::block_on`), but must not
/// take long (well under `max.poll.interval.ms`).
pub trait PositionStore: Send + Sync + 'static {
    /// The next offset to read for each of `partitions` of `topic`, in the same order; `None` = from the beginning.
    fn positions(&self, topic: &str, partitions: &[Partition]) -> Result<Vec<Option<Offset>>, String>;
}

/// The high watermark (next offset to be written) of each partition of a topic, for lag metrics.
pub type HighWatermarks = Vec<(Partition, Offset)>;

/// The log, Kafka or embedded.
#[derive(Debug, Clone)]
pub enum EventLog {
    Embedded(embedded::EmbeddedLog),
    Kafka(kafka::KafkaLog),
}

impl EventLog {
    /// Opens the log described by `config` (creating the embedded directory, or checking that the brokers answer).
    pub async fn open(config: &LogConfig) -> Result<Self, LogError> {
        match &config.brokers {
            Some(_) => Ok(Self::Kafka(kafka::KafkaLog::open(config).await?)),
            None => Ok(Self::Embedded(embedded::EmbeddedLog::open(config)?)),
        }
    }

    /// Creates `topic` with the configured number of partitions if it does not exist.
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), LogError> {
        match self {
            Self::Embedded(log) => log.ensure_topic(topic),
            Self::Kafka(log) => log.ensure_topic(topic).await,
        }
    }

    /// A producer (cheap to clone; share one per process).
    pub fn producer(&self) -> Result<Producer, LogError> {
        match self {
            Self::Embedded(log) => Ok(Producer::Embedded(log.producer())),
            Self::Kafka(log) => Ok(Producer::Kafka(log.producer()?)),
        }
    }

    /// A consumer of `topic` in consumer group `group` (embedded: the only consumer, assigned every partition).
    /// `positions` is asked where to start on every assignment.
    pub fn consumer(
        &self,
        topic: &str,
        group: &str,
        positions: Arc<dyn PositionStore>,
        settings: ConsumerSettings,
    ) -> Result<Consumer, LogError> {
        match self {
            Self::Embedded(log) => Ok(Consumer::Embedded(log.consumer(topic, positions, settings)?)),
            Self::Kafka(log) => Ok(Consumer::Kafka(log.consumer(topic, group, positions, settings)?)),
        }
    }

    /// High watermarks of `topic` (for lag = high watermark − stored position).
    pub async fn high_watermarks(&self, topic: &str) -> Result<HighWatermarks, LogError> {
        match self {
            Self::Embedded(log) => log.high_watermarks(topic),
            Self::Kafka(log) => log.high_watermarks(topic).await,
        }
    }

    /// Whether this is the embedded log.
    pub fn is_embedded(&self) -> bool {
        matches!(self, Self::Embedded(_))
    }
}

/// Consumer tuning; defaults suit the processor.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// Most records in one [`ConsumerEvent::Records`].
    pub max_batch_records: usize,
    /// How long to wait for more records before handing over a partial batch.
    pub max_batch_wait: Duration,
    /// Batches buffered between the poll thread and the caller (backpressure: a full buffer pauses polling).
    pub buffered_batches: usize,
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self { max_batch_records: 10_000, max_batch_wait: Duration::from_millis(200), buffered_batches: 2 }
    }
}

/// Appends records; cheap to clone.
#[derive(Debug, Clone)]
pub enum Producer {
    Embedded(embedded::EmbeddedProducer),
    Kafka(kafka::KafkaProducer),
}

impl Producer {
    /// Appends `records` to `topic` and resolves once **every** record is durable (embedded: written and fsynced;
    /// Kafka: acknowledged by all in-sync replicas, idempotent producer). Records with the same key keep their
    /// order. On error, Kafka may have stored some of the records (the caller did not acknowledge any of them); the
    /// embedded log stores none of them, also across partitions and a restart (unless the disk refused even to take
    /// them back, which the error then says).
    pub async fn send(&self, topic: &str, records: Vec<Record>) -> Result<(), LogError> {
        match self {
            Self::Embedded(producer) => producer.send(topic, records).await,
            Self::Kafka(producer) => producer.send(topic, records).await,
        }
    }

    /// Waits until everything sent so far is delivered (shutdown).
    pub async fn flush(&self, timeout: Duration) -> Result<(), LogError> {
        match self {
            Self::Embedded(_) => Ok(()),
            Self::Kafka(producer) => producer.flush(timeout).await,
        }
    }
}

/// Reads a topic. Not `Clone`: one consumer per pipeline.
#[derive(Debug)]
pub enum Consumer {
    Embedded(embedded::EmbeddedConsumer),
    Kafka(kafka::KafkaConsumer),
}

impl Consumer {
    /// The next event; `None` once the consumer is closed.
    pub async fn next(&mut self) -> Option<Result<ConsumerEvent, LogError>> {
        match self {
            Self::Embedded(consumer) => consumer.next().await,
            Self::Kafka(consumer) => consumer.next().await,
        }
    }

    /// Restarts reading `partition` at `next_offset` (after a batch was rejected at commit time). Records of that
    /// partition already buffered are discarded.
    pub fn seek(&self, partition: Partition, next_offset: Offset) -> Result<(), LogError> {
        match self {
            Self::Embedded(consumer) => consumer.seek(partition, next_offset),
            Self::Kafka(consumer) => consumer.seek(partition, next_offset),
        }
    }

    /// Tells the log that everything before `next_offset` is durably processed: Kafka gets an asynchronous offset
    /// commit (for lag dashboards only); the embedded log may delete segments wholly before it.
    pub fn processed(&self, positions: &[(Partition, Offset)]) {
        match self {
            Self::Embedded(consumer) => consumer.processed(positions),
            Self::Kafka(consumer) => consumer.processed(positions),
        }
    }
}
