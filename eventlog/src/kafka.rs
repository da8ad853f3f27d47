//! The Kafka adapter: any Kafka-protocol broker (Apache Kafka, Redpanda, tansu) through rdkafka/librdkafka.
//!
//! * [`KafkaProducer`]: one idempotent `FutureProducer` (`acks=all`); [`KafkaProducer::send`] enqueues a whole
//!   batch and resolves when every record is acknowledged.
//! * [`KafkaConsumer`]: a `BaseConsumer` in a consumer group, polled on a dedicated thread whose rebalance callback
//!   starts every assigned partition at the caller's [`PositionStore`] position (see [`consumer`]).
//!
//! Client properties: the defaults below, then [`LogConfig::kafka_properties`] (which may override tuning such as
//! `linger.ms` or `compression.type` and add `security.protocol`, `sasl.*`, …), then the properties the semantics
//! depend on (idempotence, `acks=all`, manual offsets), which cannot be overridden.

mod consumer;

pub use consumer::KafkaConsumer;

use crate::{ConsumerSettings, HighWatermarks, LogConfig, LogError, PositionStore, Record};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long [`KafkaLog::open`] waits for the cluster's metadata.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout of metadata and watermark requests.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`KafkaLog::ensure_topic`] waits for a new topic to show up in the metadata with all its partitions.
const TOPIC_VISIBLE_TIMEOUT: Duration = Duration::from_secs(15);
/// Pause before retrying an enqueue when librdkafka's queue is full and this call has nothing in flight to wait for.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(5);

/// Defaults for every client; `kafka_properties` may override them.
const CLIENT_DEFAULTS: &[(&str, &str)] = &[("client.id", "jhe")];
/// Producer defaults; `kafka_properties` may override them.
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("linger.ms", "5"),
    ("compression.type", "zstd"),
    // up to a million records (and the default 1 GiB) queued in librdkafka; `send` waits when it is full
    ("queue.buffering.max.messages", "1000000"),
    // a record not acknowledged within 30 s fails its `send` (librdkafka's default is 300 s, too long for a request
    // that is waiting for the acknowledgement)
    ("message.timeout.ms", "30000"),
];
/// What the producer semantics depend on ("durable" = acknowledged by all in-sync replicas, no duplicates from
/// retries, per-key order kept); applied last.
const PRODUCER_FIXED: &[(&str, &str)] = &[("enable.idempotence", "true"), ("acks", "all")];
/// Consumer defaults; `kafka_properties` may override them.
const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    // the poll thread stops polling while the caller's buffer is full (backpressure); a flush may take a while
    ("max.poll.interval.ms", "300000"),
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "3000"),
    // Prefetch: by default librdkafka queues up to 100,000 records or 64 MiB ahead of the application, and one fetch
    // response may add up to 50 MiB of compressed batches on top (decompressed, several times that). The caller
    // buffers a whole flush anyway, so a small queue costs nothing: at 4 MiB per response and 10,000 records queued,
    // a processor still reads 100,000+ records/s from a local broker, and its memory stays bounded.
    ("queued.min.messages", "10000"),
    ("queued.max.messages.kbytes", "4096"),
    ("fetch.max.bytes", "4194304"),
    // Once a partition's queue reaches those limits, librdkafka (2.1+) waits this long before it fetches for the
    // partition again; at its default of 1 s a queue this small starved the processor for most of every second after
    // a flush (about 110 k records/s from a local broker against 700 k with 10 ms, measured with librdkafka 2.16 on
    // an end-to-end benchmark's topic).
    ("fetch.queue.backoff.ms", "10"),
];
/// What the consumer semantics depend on: positions come from the caller's store (offsets committed to Kafka are a
/// hint), and the rebalance callback assigns with the eager protocol (`range`).
const CONSUMER_FIXED: &[(&str, &str)] = &[
    ("enable.auto.commit", "false"),
    ("enable.auto.offset.store", "false"),
    ("auto.offset.reset", "earliest"),
    ("partition.assignment.strategy", "range"),
    ("enable.partition.eof", "false"),
];

/// The admin client (topics, metadata, watermarks) must not create a topic by asking for its metadata.
const ADMIN_FIXED: &[(&str, &str)] = &[("allow.auto.create.topics", "false")];

/// A Kafka cluster: creates topics, hands out producers and consumers, reads watermarks.
#[derive(Clone)]
pub struct KafkaLog {
    inner: Arc<Inner>,
}

struct Inner {
    brokers: String,
    partitions: i32,
    properties: Vec<(String, String)>,
    /// Admin requests, metadata and watermarks.
    admin: AdminClient<DefaultClientContext>,
    /// The process's producer, created on first use.
    producer: Mutex<Option<KafkaProducer>>,
}

impl fmt::Debug for KafkaLog {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KafkaLog")
            .field("brokers", &self.inner.brokers)
            .field("partitions", &self.inner.partitions)
            .finish_non_exhaustive()
    }
}

impl KafkaLog {
    /// Connects to `config.brokers` and checks that the cluster answers (its metadata within 10 s).
    pub async fn open(config: &LogConfig) -> Result<Self, LogError> {
        let log = Self::connect_lazy(config)?;
        let brokers = log.inner.brokers.clone();
        let metadata_log = log.clone();
        let metadata =
            tokio::task::spawn_blocking(move || metadata_log.inner.admin.inner().fetch_metadata(None, OPEN_TIMEOUT))
                .await
                .map_err(|error| LogError::Unavailable(format!("Kafka metadata task failed: {error}")))?
                .map_err(|error| LogError::Unavailable(format!("Kafka brokers {brokers} do not answer: {error}")))?;
        if metadata.brokers().is_empty() {
            return Err(LogError::Unavailable(format!("Kafka brokers {brokers} report no brokers")));
        }
        tracing::info!(brokers = %brokers, cluster_brokers = metadata.brokers().len(), "connected to Kafka");
        Ok(log)
    }

    /// Like [`open`](Self::open) but without contacting the brokers: they are first contacted when a client is
    /// used, and errors surface there (a producer's `send` fails after `message.timeout.ms`).
    pub fn connect_lazy(config: &LogConfig) -> Result<Self, LogError> {
        let brokers = config
            .brokers
            .clone()
            .filter(|brokers| !brokers.trim().is_empty())
            .ok_or_else(|| LogError::Config("no Kafka brokers configured".into()))?;
        if config.partitions < 1 {
            return Err(LogError::Config(format!("partitions must be at least 1, not {}", config.partitions)));
        }
        let properties = config.kafka_properties.clone();
        let admin = client_config(&brokers, &[], &properties, ADMIN_FIXED)
            .create::<AdminClient<DefaultClientContext>>()
            .map_err(|error| LogError::Config(format!("Kafka admin client: {error}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                brokers,
                partitions: config.partitions,
                properties,
                admin,
                producer: Mutex::new(None),
            }),
        })
    }

    /// Creates `topic` with the configured number of partitions and the cluster's default replication factor
    /// (`default.replication.factor`) unless it exists; waits until the metadata shows it.
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), LogError> {
        let new_topic = NewTopic::new(topic, self.inner.partitions, TopicReplication::Fixed(-1));
        let options =
            AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT)).request_timeout(Some(REQUEST_TIMEOUT));
        let results = self
            .inner
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|error| LogError::Unavailable(format!("cannot create Kafka topic {topic}: {error}")))?;
        for result in results {
            match result {
                Ok(_) => tracing::info!(topic, partitions = self.inner.partitions, "created Kafka topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => {
                    return Err(LogError::Config(format!("cannot create Kafka topic {name}: {code}")));
                }
            }
        }
        self.wait_until_visible(topic).await
    }

    async fn wait_until_visible(&self, topic: &str) -> Result<(), LogError> {
        let deadline = Instant::now() + TOPIC_VISIBLE_TIMEOUT;
        loop {
            match self.partitions_of(topic).await {
                Ok(partitions) if !partitions.is_empty() => return Ok(()),
                Ok(_) | Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
                Ok(_) => return Err(LogError::Unavailable(format!("Kafka topic {topic} has no partitions"))),
                Err(error) => return Err(error),
            }
        }
    }

    /// The producer of this log (created once, shared by every caller).
    pub fn producer(&self) -> Result<KafkaProducer, LogError> {
        let mut shared = self.inner.producer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(producer) = shared.as_ref() {
            return Ok(producer.clone());
        }
        let producer = KafkaProducer::new(
            client_config(&self.inner.brokers, PRODUCER_DEFAULTS, &self.inner.properties, PRODUCER_FIXED),
            &self.inner.brokers,
        )?;
        *shared = Some(producer.clone());
        Ok(producer)
    }

    /// A consumer of `topic` in consumer group `group`; its poll thread starts at once.
    pub fn consumer(
        &self,
        topic: &str,
        group: &str,
        positions: Arc<dyn PositionStore>,
        settings: ConsumerSettings,
    ) -> Result<KafkaConsumer, LogError> {
        if group.is_empty() {
            return Err(LogError::Config("a Kafka consumer needs a group".into()));
        }
        let mut config = client_config(&self.inner.brokers, CONSUMER_DEFAULTS, &self.inner.properties, CONSUMER_FIXED);
        config.set("group.id", group);
        KafkaConsumer::start(config, topic, positions, settings)
    }

    /// The high watermark of every partition of `topic`, by partition.
    pub async fn high_watermarks(&self, topic: &str) -> Result<HighWatermarks, LogError> {
        let partitions = self.partitions_of(topic).await?;
        if partitions.is_empty() {
            return Err(LogError::Config(format!("Kafka topic {topic} does not exist")));
        }
        let log = self.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            partitions
                .into_iter()
                .map(|partition| {
                    let (_low, high) =
                        log.inner.admin.inner().fetch_watermarks(&topic, partition, REQUEST_TIMEOUT).map_err(
                            |error| LogError::Unavailable(format!("watermarks of {topic}[{partition}]: {error}")),
                        )?;
                    Ok((partition, high))
                })
                .collect::<Result<HighWatermarks, LogError>>()
        })
        .await
        .map_err(|error| LogError::Unavailable(format!("Kafka watermark task failed: {error}")))?
    }

    /// The partitions of `topic`, sorted; empty when the topic does not exist (yet).
    async fn partitions_of(&self, topic: &str) -> Result<Vec<i32>, LogError> {
        let log = self.clone();
        let topic = topic.to_owned();
        tokio::task::spawn_blocking(move || {
            let metadata = log
                .inner
                .admin
                .inner()
                .fetch_metadata(Some(&topic), REQUEST_TIMEOUT)
                .map_err(|error| LogError::Unavailable(format!("metadata of Kafka topic {topic}: {error}")))?;
            let mut partitions: Vec<i32> = metadata
                .topics()
                .iter()
                .filter(|entry| entry.name() == topic && entry.error().is_none())
                .flat_map(|entry| entry.partitions().iter().map(|partition| partition.id()))
                .collect();
            partitions.sort_unstable();
            Ok(partitions)
        })
        .await
        .map_err(|error| LogError::Unavailable(format!("Kafka metadata task failed: {error}")))?
    }
}

/// A client configuration: `bootstrap.servers`, then `defaults`, the user's `properties`, and `fixed`.
fn client_config(
    brokers: &str,
    defaults: &[(&str, &str)],
    properties: &[(String, String)],
    fixed: &[(&str, &str)],
) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in CLIENT_DEFAULTS.iter().chain(defaults) {
        config.set(*key, *value);
    }
    for (key, value) in properties {
        config.set(key, value);
    }
    for (key, value) in fixed {
        config.set(*key, *value);
    }
    config
}

/// An idempotent producer; cheap to clone (clones share one librdkafka producer).
///
/// After a failed `send` the producer is replaced by a fresh one built from the same configuration: an idempotent
/// producer whose broker lost its producer state (a restart without durable storage, `UNKNOWN_PRODUCER_ID`, an
/// out-of-order sequence) can stay stuck or fatally failed, and uploads must recover without a process restart.
/// Nothing acknowledged is affected: a failed send was answered as a failure.
#[derive(Clone)]
pub struct KafkaProducer {
    /// (generation, producer): the generation tells concurrent failed sends apart, so one failure replaces the
    /// producer once.
    producer: Arc<std::sync::RwLock<(u64, FutureProducer)>>,
    config: Arc<ClientConfig>,
    brokers: Arc<str>,
}

impl fmt::Debug for KafkaProducer {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_struct("KafkaProducer").field("brokers", &self.brokers).finish_non_exhaustive()
    }
}

impl KafkaProducer {
    fn new(config: ClientConfig, brokers: &str) -> Result<Self, LogError> {
        let producer =
            config.create::<FutureProducer>().map_err(|error| LogError::Config(format!("Kafka producer: {error}")))?;
        Ok(Self {
            producer: Arc::new(std::sync::RwLock::new((0, producer))),
            config: Arc::new(config),
            brokers: Arc::from(brokers),
        })
    }

    /// The current librdkafka producer and its generation.
    fn current(&self) -> (u64, FutureProducer) {
        match self.producer.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the producer of `generation` (if nobody did yet) after a failed send.
    fn replace(&self, generation: u64, error: &LogError) {
        let mut guard = match self.producer.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.0 != generation {
            return;
        }
        match self.config.create::<FutureProducer>() {
            Ok(fresh) => {
                tracing::warn!(%error, brokers = %self.brokers, "Kafka send failed; using a fresh producer from now on");
                *guard = (generation + 1, fresh);
            }
            Err(create_error) => tracing::error!(%create_error, "cannot create a fresh Kafka producer"),
        }
    }

    /// Enqueues every record and resolves once all of them are acknowledged (`acks=all`); the first failure ends
    /// the call with [`LogError::Write`] (records enqueued before it may still be written).
    pub async fn send(&self, topic: &str, records: Vec<Record>) -> Result<(), LogError> {
        let (generation, producer) = self.current();
        let result = Self::send_with(&producer, topic, &records).await;
        if let Err(error) = &result {
            self.replace(generation, error);
        }
        result
    }

    async fn send_with(producer: &FutureProducer, topic: &str, records: &[Record]) -> Result<(), LogError> {
        let mut in_flight: VecDeque<DeliveryFuture> = VecDeque::with_capacity(records.len());
        for record in records {
            let mut future_record = future_record(topic, record);
            loop {
                match producer.send_result(future_record) {
                    Ok(delivery) => {
                        in_flight.push_back(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                        // librdkafka's queue is full: wait for our oldest record (or, with none in flight, for
                        // other callers' records) before trying again
                        future_record = returned;
                        match in_flight.pop_front() {
                            Some(delivery) => delivered(topic, delivery).await?,
                            None => tokio::time::sleep(QUEUE_FULL_BACKOFF).await,
                        }
                    }
                    Err((error, _)) => {
                        return Err(LogError::Write(format!(
                            "cannot enqueue a record for Kafka topic {topic}: {error}"
                        )));
                    }
                }
            }
        }
        for delivery in in_flight {
            delivered(topic, delivery).await?;
        }
        Ok(())
    }

    /// Waits until every record enqueued so far is delivered, at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> Result<(), LogError> {
        let (_, producer) = self.current();
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .map_err(|error| LogError::Write(format!("Kafka flush task failed: {error}")))?
            .map_err(|error| LogError::Write(format!("Kafka producer flush: {error}")))
    }
}

fn future_record<'a>(topic: &'a str, record: &'a Record) -> FutureRecord<'a, [u8], [u8]> {
    let mut future_record = FutureRecord::to(topic).key(record.key.as_slice()).payload(record.value.as_slice());
    if !record.headers.is_empty() {
        let headers = record
            .headers
            .iter()
            .fold(OwnedHeaders::new_with_capacity(record.headers.len()), |headers, (key, value)| {
                headers.insert(Header { key, value: Some(value.as_slice()) })
            });
        future_record = future_record.headers(headers);
    }
    future_record
}

async fn delivered(topic: &str, delivery: DeliveryFuture) -> Result<(), LogError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((error, _))) => Err(LogError::Write(format!("Kafka topic {topic}: record not delivered: {error}"))),
        Err(_canceled) => Err(LogError::Write(format!("Kafka topic {topic}: the producer closed before delivery"))),
    }
}
