//! The processor's main loop: consume → buffer → flush. A flush turns the buffered records into Parquet files
//! (one per code and UTC day), dead-letters the rejects, and publishes the files together with the offsets they
//! cover in one Postgres transaction (style.md §3). Nothing is acknowledged to the log before that commit, so a
//! crash at any point replays the records into a fresh flush; the published positions make the replay exact.

use crate::parquet_file;
use crate::store::observation_object_path;
use crate::transform::{Reject, transform};
use arrow::record_batch::RecordBatch;
use chrono::{NaiveDate, Utc};
use jhe_catalog::{ControlPlaneCache, IdentifierClaim, NewParquetFile, PartitionDelta, PublishError};
use jhe_eventlog::message::dead_letter;
use jhe_eventlog::{
    Consumed, Consumer, ConsumerEvent, ConsumerSettings, EventLog, LogError, Offset, Partition, PositionStore,
    Producer, Record,
};
use jhe_schemas::ObservationRecord;
use jhe_schemas::omh::Validators;
use jhe_schemas::table::ObservationBatchBuilder;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

/// Processor settings; the defaults keep data queryable within about a second of its acknowledgement.
#[derive(Debug, Clone)]
pub struct ProcessorSettings {
    pub topic: String,
    pub dead_letter_topic: String,
    pub group: String,
    /// A flush starts when this many records are buffered…
    pub flush_max_records: usize,
    /// …or this many bytes of message values…
    pub flush_max_bytes: usize,
    /// …or the oldest buffered record has waited this long.
    pub flush_interval: Duration,
    /// Files uploaded at the same time.
    pub upload_concurrency: usize,
    pub consumer: ConsumerSettings,
}

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self {
            topic: "jhe.observations".to_owned(),
            dead_letter_topic: "jhe.observations.dlq".to_owned(),
            group: "jhe-processor".to_owned(),
            flush_max_records: 500_000,
            flush_max_bytes: 64 * 1024 * 1024,
            flush_interval: Duration::from_secs(1),
            upload_concurrency: 4,
            consumer: ConsumerSettings::default(),
        }
    }
}

/// Errors that stop the processor (it restarts from the published positions).
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("catalog: {0}")]
    Catalog(#[from] jhe_catalog::Error),
    #[error("building a file: {0}")]
    Build(String),
}

/// What the processor needs.
#[derive(Debug, Clone)]
pub struct Processor {
    pub pool: PgPool,
    pub log: EventLog,
    pub store: Arc<dyn ObjectStore>,
    pub prefix: ObjectPath,
    pub cache: ControlPlaneCache,
    pub validators: Validators,
    pub settings: ProcessorSettings,
}

/// Positions come from the catalog (`log_positions`), read on the consumer's poll thread during a rebalance.
#[derive(Debug)]
struct CatalogPositions {
    pool: PgPool,
    runtime: Handle,
}

impl PositionStore for CatalogPositions {
    fn positions(&self, topic: &str, partitions: &[Partition]) -> Result<Vec<Option<Offset>>, String> {
        self.runtime
            .block_on(jhe_catalog::positions(&self.pool, topic, partitions))
            .map_err(|error| format!("reading log positions: {error}"))
    }
}

/// Records buffered since the last flush.
#[derive(Debug, Default)]
struct Buffer {
    records: Vec<Consumed>,
    bytes: usize,
    first_at: Option<Instant>,
}

impl Buffer {
    fn push(&mut self, record: Consumed) {
        self.bytes += record.value.len();
        self.first_at.get_or_insert_with(Instant::now);
        self.records.push(record);
    }

    fn drop_partitions(&mut self, partitions: &[Partition]) {
        self.records.retain(|r| !partitions.contains(&r.partition));
        self.bytes = self.records.iter().map(|r| r.value.len()).sum();
        if self.records.is_empty() {
            self.first_at = None;
        }
    }
}

impl Processor {
    /// Runs until `shutdown` fires (then flushes what is buffered and returns) or a fatal error.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ProcessorError> {
        self.log.ensure_topic(&self.settings.topic).await?;
        self.log.ensure_topic(&self.settings.dead_letter_topic).await?;
        let producer = self.log.producer()?;
        let positions: Arc<dyn PositionStore> =
            Arc::new(CatalogPositions { pool: self.pool.clone(), runtime: Handle::current() });
        let mut consumer =
            self.log.consumer(&self.settings.topic, &self.settings.group, positions, self.settings.consumer.clone())?;
        let lag = tokio::spawn(report_lag(self.clone(), shutdown.child_token()));
        let result = self.consume(&mut consumer, &producer, &shutdown).await;
        lag.abort();
        result
    }

    async fn consume(
        &self,
        consumer: &mut Consumer,
        producer: &Producer,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        // partition → next offset the published positions say we are at (the `from` of the next delta)
        let mut assigned: BTreeMap<Partition, Offset> = BTreeMap::new();
        let mut buffer = Buffer::default();
        loop {
            let deadline = buffer.first_at.map(|first| first + self.settings.flush_interval);
            let event = tokio::select! {
                () = shutdown.cancelled() => {
                    self.flush_with_retries(&mut buffer, &mut assigned, consumer, producer, shutdown).await?;
                    tracing::info!("processor stopped");
                    return Ok(());
                }
                () = sleep_until(deadline) => None,
                event = consumer.next() => Some(event),
            };
            match event {
                None => {}
                Some(None) => return Err(LogError::Closed("the consumer stopped".into()).into()),
                Some(Some(Err(error))) => return Err(error.into()),
                Some(Some(Ok(ConsumerEvent::Assigned(partitions)))) => {
                    tracing::info!(?partitions, "partitions assigned");
                    for (partition, next) in partitions {
                        assigned.insert(partition, next);
                    }
                }
                Some(Some(Ok(ConsumerEvent::Revoked(partitions)))) => {
                    tracing::info!(?partitions, "partitions revoked; their buffered records are dropped");
                    buffer.drop_partitions(&partitions);
                    for partition in partitions {
                        assigned.remove(&partition);
                    }
                }
                Some(Some(Ok(ConsumerEvent::Records(records)))) => {
                    for record in records {
                        // Records of a partition we no longer hold, or from before its position, are stale.
                        match assigned.get(&record.partition) {
                            Some(next) if record.offset >= *next => buffer.push(record),
                            _ => continue,
                        }
                        // A flush never holds more than its limit, even when the log hands over more at once.
                        if buffer.records.len() >= self.settings.flush_max_records {
                            let flushed = self
                                .flush_with_retries(&mut buffer, &mut assigned, consumer, producer, shutdown)
                                .await?;
                            if flushed == Flushed::Reseeked {
                                // The consumer starts again at the published positions; the rest of this batch
                                // would leave gaps or repeat records.
                                break;
                            }
                        }
                    }
                }
            }
            let due = buffer.first_at.is_some_and(|first| first.elapsed() >= self.settings.flush_interval);
            if due
                || buffer.records.len() >= self.settings.flush_max_records
                || buffer.bytes >= self.settings.flush_max_bytes
            {
                self.flush_with_retries(&mut buffer, &mut assigned, consumer, producer, shutdown).await?;
            }
        }
    }

    /// Flushes, retrying transient failures (object store, database, log) with backoff; positions do not move
    /// until a flush commits, so retrying is always safe.
    async fn flush_with_retries(
        &self,
        buffer: &mut Buffer,
        assigned: &mut BTreeMap<Partition, Offset>,
        consumer: &Consumer,
        producer: &Producer,
        shutdown: &CancellationToken,
    ) -> Result<Flushed, ProcessorError> {
        if buffer.records.is_empty() {
            return Ok(Flushed::Published);
        }
        let records = std::mem::take(&mut buffer.records);
        *buffer = Buffer::default();
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let span = tracing::info_span!("flush", records = records.len(), attempt);
            match self.flush(&records, assigned, producer).instrument(span).await {
                Ok(positions) => {
                    for (partition, next) in &positions {
                        assigned.insert(*partition, *next);
                    }
                    consumer.processed(&positions);
                    return Ok(Flushed::Published);
                }
                Err(FlushError::Fenced { partition, stored }) => {
                    // Another processor published this range (a rebalance we saw late): restart the partition at
                    // the stored position and drop our copy of the batch.
                    tracing::warn!(partition, stored, "position moved under us; seeking to the published position");
                    metrics::counter!("jhe_processor_fenced_batches_total").increment(1);
                    let partitions: Vec<Partition> = assigned.keys().copied().collect();
                    let stored_positions =
                        jhe_catalog::positions(&self.pool, &self.settings.topic, &partitions).await?;
                    for (partition, stored) in partitions.iter().zip(stored_positions) {
                        let next = stored.unwrap_or(0);
                        assigned.insert(*partition, next);
                        consumer.seek(*partition, next)?;
                    }
                    return Ok(Flushed::Reseeked);
                }
                Err(FlushError::Transient(reason)) => {
                    metrics::counter!("jhe_processor_flush_retries_total").increment(1);
                    tracing::warn!(%reason, attempt, retry_in = ?backoff, "flush failed; retrying (positions unchanged)");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {
                            tracing::warn!("shutdown during flush retries; the batch will be replayed on restart");
                            return Ok(Flushed::Abandoned);
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(FlushError::Fatal(error)) => return Err(error),
            }
        }
    }

    /// One attempt: transform, dedupe, write files, dead-letter, publish. Returns the new positions.
    async fn flush(
        &self,
        records: &[Consumed],
        assigned: &BTreeMap<Partition, Offset>,
        producer: &Producer,
    ) -> Result<Vec<(Partition, Offset)>, FlushError> {
        let started = Instant::now();
        // The delta: from the published position to just past the last record, per partition.
        let mut deltas: BTreeMap<Partition, PartitionDelta> = BTreeMap::new();
        for record in records {
            let from = assigned.get(&record.partition).copied().unwrap_or(record.offset);
            let delta = deltas.entry(record.partition).or_insert(PartitionDelta {
                partition: record.partition,
                from,
                to: from,
            });
            delta.to = delta.to.max(record.offset + 1);
        }

        // Transform on a blocking thread.
        let snapshot = self.cache.snapshot();
        let validators = self.validators.clone();
        let batch: Arc<Vec<Consumed>> = Arc::new(records.to_vec());
        let batch_for_work = Arc::clone(&batch);
        let outcomes = tokio::task::spawn_blocking(move || {
            let now = Utc::now().timestamp_micros();
            batch_for_work.iter().map(|r| transform(r, &snapshot, &validators, now)).collect::<Vec<_>>()
        })
        .await
        .map_err(|error| FlushError::Fatal(ProcessorError::Build(format!("transform worker: {error}"))))?;

        // Dedupe by identifier: keep a record only if its id owns every identifier it carries.
        let mut kept: Vec<ObservationRecord> = Vec::with_capacity(outcomes.len());
        let mut rejects: Vec<(usize, Reject)> = Vec::new();
        let mut claims = Vec::new();
        let mut claim_owner = Vec::new();
        for (index, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(record) => {
                    for identifier in &record.identifiers {
                        claims.push(IdentifierClaim {
                            system: identifier.system.clone(),
                            value: identifier.value.clone(),
                            observation_id: record.id,
                        });
                        claim_owner.push(kept.len());
                    }
                    kept.push(record);
                }
                Err(reject) => rejects.push((index, reject)),
            }
        }
        let owned = jhe_catalog::reserve_identifiers(&self.pool, &claims).await.map_err(transient)?;
        let mut duplicate: HashMap<usize, String> = HashMap::new();
        for ((claim, owner), owned) in claims.iter().zip(&claim_owner).zip(&owned) {
            if !owned {
                duplicate.entry(*owner).or_insert_with(|| {
                    format!("identifier {}|{} belongs to another observation", claim.system, claim.value)
                });
            }
        }
        // Map kept records back to their input index for dead-letter headers.
        let kept_index: Vec<usize> = {
            let mut rejected = rejects.iter().map(|(i, _)| *i).peekable();
            let mut indices = Vec::with_capacity(kept.len());
            for index in 0..batch.len() {
                if rejected.peek() == Some(&index) {
                    rejected.next();
                } else {
                    indices.push(index);
                }
            }
            indices
        };
        let mut stored: Vec<ObservationRecord> = Vec::with_capacity(kept.len());
        for (position, record) in kept.into_iter().enumerate() {
            match duplicate.remove(&position) {
                Some(reason) => rejects.push((
                    kept_index[position],
                    Reject { code: dead_letter::REASON_DUPLICATE_IDENTIFIER, reason, observation_id: Some(record.id) },
                )),
                None => stored.push(record),
            }
        }
        rejects.sort_by_key(|(index, _)| *index);

        let stored_last_updated: Vec<i64> = stored.iter().map(|r| r.last_updated_micros).collect();
        // Files: one per (code, UTC day), built and encoded on a blocking thread.
        let files = {
            let prefix = self.prefix.clone();
            tokio::task::spawn_blocking(move || build_files(stored, &prefix))
                .await
                .map_err(|error| FlushError::Fatal(ProcessorError::Build(format!("file worker: {error}"))))?
                .map_err(|error| FlushError::Fatal(ProcessorError::Build(error)))?
        };
        let new_files: Vec<NewParquetFile> = files.iter().map(|f| f.catalog.clone()).collect();
        jhe_catalog::stage_files(&self.pool, &new_files).await.map_err(transient)?;
        self.upload_all(&files).await?;

        // Dead letters must be durable before the positions move past them.
        if !rejects.is_empty() {
            let dead: Vec<Record> =
                rejects.iter().map(|(index, reject)| self.dead_letter(&batch[*index], reject)).collect();
            producer.send(&self.settings.dead_letter_topic, dead).await.map_err(|e| transient(e.to_string()))?;
            for (_, reject) in &rejects {
                metrics::counter!("jhe_processor_rejects_total", "reason" => reject.code).increment(1);
            }
        }

        let deltas: Vec<PartitionDelta> = deltas.into_values().collect();
        let file_ids: Vec<Uuid> = new_files.iter().map(|f| f.id).collect();
        let commit_started = Instant::now();
        match jhe_catalog::publish(&self.pool, &self.settings.topic, &deltas, &file_ids).await {
            Ok(()) => {}
            Err(PublishError::PositionMismatch { partition, stored, .. }) => {
                return Err(FlushError::Fenced { partition, stored });
            }
            Err(PublishError::CommitOutcomeUnknown { .. }) => {
                // Re-read the positions: if they moved to our `to`, the commit happened.
                let partitions: Vec<Partition> = deltas.iter().map(|d| d.partition).collect();
                let now =
                    jhe_catalog::positions(&self.pool, &self.settings.topic, &partitions).await.map_err(transient)?;
                let committed = deltas.iter().zip(now).all(|(delta, stored)| stored == Some(delta.to));
                if !committed {
                    return Err(FlushError::Transient(
                        "the publish commit outcome was unknown and it did not happen".into(),
                    ));
                }
            }
            Err(other) => return Err(FlushError::Transient(other.to_string())),
        }
        metrics::histogram!("jhe_processor_commit_seconds").record(commit_started.elapsed().as_secs_f64());

        // Released claims of rejected records (best effort): an identifier of data that was never stored must not
        // block a corrected re-upload.
        let release: Vec<IdentifierClaim> = rejects
            .iter()
            .filter_map(|(index, reject)| reject.observation_id.map(|id| (*index, id)))
            .flat_map(|(index, id)| released_claims(&batch[index], id))
            .collect();
        if !release.is_empty()
            && let Err(error) = jhe_catalog::release_identifiers(&self.pool, &release).await
        {
            tracing::warn!(%error, "could not release identifier claims of dead-lettered records");
        }

        let rows: i64 = new_files.iter().map(|f| f.row_count).sum();
        metrics::counter!("jhe_processor_records_total", "outcome" => "stored").increment(rows as u64);
        metrics::counter!("jhe_processor_records_total", "outcome" => "dead_lettered").increment(rejects.len() as u64);
        metrics::counter!("jhe_processor_files_total").increment(new_files.len() as u64);
        for file in &new_files {
            metrics::histogram!("jhe_processor_file_bytes").record(file.size_bytes as f64);
        }
        // Freshness: from the upload's acknowledgement (its lastUpdated) to this commit, per observation.
        let now = Utc::now().timestamp_micros();
        let freshness = metrics::histogram!("jhe_processor_freshness_seconds");
        for last_updated in stored_last_updated {
            freshness.record((now - last_updated).max(0) as f64 / 1e6);
        }
        metrics::histogram!("jhe_processor_flush_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(
            records = batch.len(),
            stored = rows,
            dead_lettered = rejects.len(),
            files = new_files.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "flush published"
        );
        Ok(deltas.iter().map(|d| (d.partition, d.to)).collect())
    }

    async fn upload_all(&self, files: &[BuiltFile]) -> Result<(), FlushError> {
        let semaphore = Arc::new(tokio::sync::Semaphore::new(self.settings.upload_concurrency.max(1)));
        let mut uploads = tokio::task::JoinSet::new();
        for file in files {
            let store = Arc::clone(&self.store);
            let path = ObjectPath::from(file.catalog.object_path.as_str());
            let bytes = file.bytes.clone();
            let permit = Arc::clone(&semaphore);
            uploads.spawn(async move {
                let _permit = permit.acquire_owned().await;
                parquet_file::upload(store.as_ref(), &path, bytes).await.map_err(|e| e.to_string())
            });
        }
        while let Some(joined) = uploads.join_next().await {
            match joined {
                Ok(Ok(_)) => {}
                Ok(Err(reason)) => return Err(FlushError::Transient(format!("upload failed: {reason}"))),
                Err(error) => return Err(FlushError::Transient(format!("upload task failed: {error}"))),
            }
        }
        Ok(())
    }

    fn dead_letter(&self, consumed: &Consumed, reject: &Reject) -> Record {
        let mut headers = consumed.headers.clone();
        headers.push((dead_letter::REASON.to_owned(), reject.reason.clone().into_bytes()));
        headers.push((dead_letter::REASON_CODE.to_owned(), reject.code.as_bytes().to_vec()));
        headers.push((dead_letter::SOURCE_TOPIC.to_owned(), self.settings.topic.clone().into_bytes()));
        headers.push((dead_letter::SOURCE_PARTITION.to_owned(), consumed.partition.to_string().into_bytes()));
        headers.push((dead_letter::SOURCE_OFFSET.to_owned(), consumed.offset.to_string().into_bytes()));
        Record { key: consumed.key.clone().unwrap_or_default(), value: consumed.value.clone(), headers }
    }
}

/// The claims a dead-lettered record may hold (only rows owned by its id are deleted).
fn released_claims(consumed: &Consumed, observation_id: i64) -> Vec<IdentifierClaim> {
    match jhe_eventlog::message::ObservationMessage::decode(&consumed.value) {
        Ok(message) => message
            .identifiers
            .iter()
            .map(|i| IdentifierClaim { system: i.system.to_string(), value: i.value.to_string(), observation_id })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// How a flush ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flushed {
    Published,
    /// Positions moved under us; the consumer was sent back to the published positions.
    Reseeked,
    /// Shutdown while retrying; nothing was published.
    Abandoned,
}

#[derive(Debug)]
enum FlushError {
    /// Retry the same records (object store, database or log trouble).
    Transient(String),
    /// The published position of `partition` is not where this batch starts.
    Fenced {
        partition: Partition,
        stored: Offset,
    },
    Fatal(ProcessorError),
}

fn transient(error: impl std::fmt::Display) -> FlushError {
    FlushError::Transient(error.to_string())
}

/// A file ready to upload.
#[derive(Debug)]
struct BuiltFile {
    catalog: NewParquetFile,
    bytes: bytes::Bytes,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Groups records by (code, UTC day of effective start) and encodes each group as one sorted Parquet file.
fn build_files(records: Vec<ObservationRecord>, prefix: &ObjectPath) -> Result<Vec<BuiltFile>, String> {
    let mut groups: BTreeMap<(String, String, i64), Vec<ObservationRecord>> = BTreeMap::new();
    for record in records {
        let day = record.effective.start_micros.div_euclid(MICROS_PER_DAY);
        groups.entry((record.coding_system.clone(), record.coding_code.clone(), day)).or_default().push(record);
    }
    let mut files = Vec::with_capacity(groups.len());
    for ((coding_system, coding_code, day_number), group) in groups {
        let day = NaiveDate::from_num_days_from_ce_opt(719_163 + day_number as i32)
            .ok_or_else(|| format!("effective day {day_number} is out of range"))?;
        let mut builder = ObservationBatchBuilder::with_capacity(group.len());
        for record in &group {
            builder.append(record).map_err(|e| e.to_string())?;
        }
        let batch: RecordBatch = builder.finish().map_err(|e| e.to_string())?;
        let encoded = parquet_file::encode_parquet(&[batch]).map_err(|e| e.to_string())?;
        let id = Uuid::now_v7();
        let path = observation_object_path(prefix, &coding_code, day, id);
        let catalog = encoded.catalog_entry(id, &path, 0);
        debug_assert_eq!((catalog.coding_system.as_str(), catalog.day), (coding_system.as_str(), day));
        files.push(BuiltFile { catalog, bytes: encoded.bytes });
    }
    Ok(files)
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Exports consumer lag (high watermark − published position) per partition every few seconds.
async fn report_lag(processor: Processor, shutdown: CancellationToken) {
    let mut interval = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = interval.tick() => {}
        }
        let Ok(watermarks) = processor.log.high_watermarks(&processor.settings.topic).await else { continue };
        let partitions: Vec<Partition> = watermarks.iter().map(|(p, _)| *p).collect();
        let Ok(stored) = jhe_catalog::positions(&processor.pool, &processor.settings.topic, &partitions).await else {
            continue;
        };
        for ((partition, high), stored) in watermarks.iter().zip(stored) {
            let lag = (high - stored.unwrap_or(0)).max(0);
            metrics::gauge!("jhe_processor_consumer_lag", "partition" => partition.to_string()).set(lag as f64);
        }
    }
}
