//! The processor's main loop: consume → buffer → flush. A flush turns the buffered records into Parquet files
//! (one per code and UTC day), dead-letters the rejects, and publishes the files together with the offsets they
//! cover in one Postgres transaction (style.md §3). Nothing is acknowledged to the log before that commit, so a
//! crash at any point replays the records into a fresh flush; the published positions make the replay exact.
//!
//! # One flush in flight
//!
//! The loop keeps consuming while a flush runs: the next batch buffers (up to the flush limits, then reading
//! pauses) and is cut when the flush in flight is done, so flushes — and with them identifier claims and publish
//! commits — happen strictly one after another, in log order. Each batch starts where the previous one ended
//! (`next_from`); the publish transaction checks that start against the stored position, so a batch that follows
//! one that was fenced (another processor got there first) can never publish a gap or a repeat.
//!
//! Within a flush the CPU work is spread over [`ProcessorSettings::workers`] threads: records are checked in
//! chunks, and each file (code, day) is sorted and encoded on its own thread. Identifier claims (a database round
//! trip) run while the files are encoded; the rare batch with a duplicate identifier is encoded again without it.

use crate::parquet_file;
use crate::store::observation_object_path;
use crate::transform::{Checked, Checker, Reject};
use chrono::{NaiveDate, Utc};
use jhe_catalog::{
    ControlPlaneCache, IdentifierClaim, IdentifierClaimRef, NewParquetFile, PartitionDelta, PublishError,
};
use jhe_eventlog::message::{GATEWAY_ID_BASE, dead_letter};
use jhe_eventlog::{
    Consumed, Consumer, ConsumerEvent, ConsumerSettings, EventLog, LogError, Offset, Partition, PositionStore, Record,
};
use jhe_schemas::ObservationRecord;
use jhe_schemas::omh::Validators;
use jhe_schemas::table::ObservationBatchBuilder;
use object_store::ObjectStore;
use object_store::path::Path as ObjectPath;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

/// Processor settings; the defaults keep data queryable within about a second of its acknowledgement and the
/// processor's memory around a few hundred MB at full rate.
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
    /// Threads that check records and encode files during a flush (default: the available cores).
    pub workers: usize,
    pub consumer: ConsumerSettings,
}

/// Default of [`ProcessorSettings::flush_max_records`]: large enough that a flush's fixed costs (a few queries and
/// one file per code and day) are spread thin, small enough that two batches (one flushing, one buffering) stay
/// well under 512 MB at full rate. Measured side by side on a quiet machine (`bench-pipeline process`, 1 M
/// records): 25,000 peaked at 408–443 MiB and 104–125 k records per CPU-second, 50,000 at 510–517 MiB and 107 k.
pub const DEFAULT_FLUSH_MAX_RECORDS: usize = 25_000;
/// Default of [`ProcessorSettings::flush_max_bytes`].
pub const DEFAULT_FLUSH_MAX_BYTES: usize = 48 * 1024 * 1024;

impl Default for ProcessorSettings {
    fn default() -> Self {
        Self {
            topic: "jhe.observations".to_owned(),
            dead_letter_topic: "jhe.observations.dlq".to_owned(),
            group: "jhe-processor".to_owned(),
            flush_max_records: DEFAULT_FLUSH_MAX_RECORDS,
            flush_max_bytes: DEFAULT_FLUSH_MAX_BYTES,
            flush_interval: Duration::from_secs(1),
            upload_concurrency: 4,
            workers: std::thread::available_parallelism().map_or(2, usize::from),
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

/// Records buffered since the last cut.
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

    /// At a flush limit: no more records are read until a flush takes some.
    fn is_full(&self, settings: &ProcessorSettings) -> bool {
        self.records.len() >= settings.flush_max_records || self.bytes >= settings.flush_max_bytes
    }

    fn is_due(&self, settings: &ProcessorSettings) -> bool {
        self.is_full(settings) || self.first_at.is_some_and(|first| first.elapsed() >= settings.flush_interval)
    }

    /// Takes the oldest records, at most the flush limits (at least one record). A consumer batch may push the
    /// buffer past the limits; the rest waits for the next flush (and is due at once: it keeps `first_at`).
    fn cut(&mut self, settings: &ProcessorSettings) -> Vec<Consumed> {
        let (mut count, mut bytes) = (0, 0);
        for record in &self.records {
            if count > 0
                && (count >= settings.flush_max_records || bytes + record.value.len() > settings.flush_max_bytes)
            {
                break;
            }
            count += 1;
            bytes += record.value.len();
        }
        let rest = self.records.split_off(count);
        let taken = std::mem::replace(&mut self.records, rest);
        self.bytes -= bytes;
        if self.records.is_empty() {
            self.first_at = None;
        }
        taken
    }
}

/// Records cut from the buffer, with the position range each partition moves by when they are published.
#[derive(Debug)]
struct Batch {
    records: Arc<Vec<Consumed>>,
    deltas: Vec<PartitionDelta>,
}

impl Batch {
    /// The batch of `records`: each partition moves from `next_from` (where the previous batch ended) to just past
    /// its last record, and `next_from` moves with it.
    fn cut(records: Vec<Consumed>, next_from: &mut BTreeMap<Partition, Offset>) -> Self {
        let mut deltas: BTreeMap<Partition, PartitionDelta> = BTreeMap::new();
        for record in &records {
            let from = next_from.get(&record.partition).copied().unwrap_or(record.offset);
            let delta = deltas.entry(record.partition).or_insert(PartitionDelta {
                partition: record.partition,
                from,
                to: from,
            });
            delta.to = delta.to.max(record.offset + 1);
        }
        for delta in deltas.values() {
            next_from.insert(delta.partition, delta.to);
        }
        Self { records: Arc::new(records), deltas: deltas.into_values().collect() }
    }
}

/// The records of a batch (by position in it) whose dead letters the log acknowledged in an earlier attempt, with
/// the reason they were given.
///
/// Dead letters are produced before the publish commit (a crash between the two must not lose them), so an attempt
/// that fails after producing them would produce them again on its retry. The retry instead keeps these records
/// rejected for the same reason — a control-plane change between attempts cannot turn a dead-lettered record into a
/// stored one — and produces only the dead letters not yet acknowledged. What this cannot cover is a restart (a
/// crash, a fenced batch, a shutdown during retries) between producing and committing: the batch is replayed and its
/// dead letters may appear again, with the same `jhe-source-topic`, `jhe-source-partition` and `jhe-source-offset`
/// headers, which identify a dead letter for consumers that need each once.
type DeadLettered = BTreeMap<usize, Reject>;

/// How a flush (with its retries) ended.
#[derive(Debug)]
enum Flushed {
    /// Published; the new positions.
    Published(Vec<(Partition, Offset)>),
    /// A position moved under us (another processor published first): the batch was dropped.
    Fenced {
        partition: Partition,
        stored: Offset,
    },
    /// Shutdown while retrying; nothing was published.
    Abandoned,
    Fatal(ProcessorError),
}

impl Processor {
    /// Runs until `shutdown` fires (then flushes what is buffered and returns) or a fatal error.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ProcessorError> {
        self.log.ensure_topic(&self.settings.topic).await?;
        self.log.ensure_topic(&self.settings.dead_letter_topic).await?;
        let positions: Arc<dyn PositionStore> =
            Arc::new(CatalogPositions { pool: self.pool.clone(), runtime: Handle::current() });
        let mut consumer =
            self.log.consumer(&self.settings.topic, &self.settings.group, positions, self.settings.consumer.clone())?;
        let lag = tokio::spawn(report_lag(self.clone(), shutdown.child_token()));
        let result = Arc::new(self).consume(&mut consumer, &shutdown).await;
        lag.abort();
        result
    }

    async fn consume(
        self: &Arc<Self>,
        consumer: &mut Consumer,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        let settings = &self.settings;
        // partition → the offset the next batch starts from: the assigned position, then the end of the last batch
        // handed to a flush
        let mut next_from: BTreeMap<Partition, Offset> = BTreeMap::new();
        let mut buffer = Buffer::default();
        let mut in_flight: Option<JoinHandle<Flushed>> = None;
        loop {
            // A batch is cut when it is due and no flush is in flight; meanwhile reading stops at the limits.
            if in_flight.is_none() && !shutdown.is_cancelled() && buffer.is_due(settings) {
                let batch = Batch::cut(buffer.cut(settings), &mut next_from);
                in_flight = Some(tokio::spawn(Arc::clone(self).flush_with_retries(batch, shutdown.clone())));
            }
            let deadline = match in_flight {
                None => buffer.first_at.map(|first| first + settings.flush_interval),
                Some(_) => None,
            };
            let readable = !buffer.is_full(settings);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    return self.shut_down(in_flight, buffer, next_from, consumer, shutdown).await;
                }
                joined = join_flush(&mut in_flight) => {
                    in_flight = None;
                    match flush_outcome(joined) {
                        Flushed::Published(positions) => consumer.processed(&positions),
                        Flushed::Fenced { partition, stored } => {
                            self.reseek(partition, stored, &mut next_from, consumer).await?;
                            // every buffered record lies past positions that are no longer ours to assume
                            buffer = Buffer::default();
                        }
                        // only on shutdown: nothing behind an unpublished batch can be published either
                        Flushed::Abandoned => {
                            tracing::info!("processor stopped; the unpublished records will be replayed");
                            return Ok(());
                        }
                        Flushed::Fatal(error) => return Err(error),
                    }
                }
                () = sleep_until(deadline) => {}
                event = consumer.next(), if readable => match event {
                    None => return Err(LogError::Closed("the consumer stopped".into()).into()),
                    Some(Err(error)) => return Err(error.into()),
                    Some(Ok(ConsumerEvent::Assigned(partitions))) => {
                        tracing::info!(?partitions, "partitions assigned");
                        for (partition, next) in partitions {
                            next_from.insert(partition, next);
                        }
                        metrics::gauge!("jhe_processor_assigned_partitions").set(next_from.len() as f64);
                    }
                    Some(Ok(ConsumerEvent::Revoked(partitions))) => {
                        // A flush in flight may still publish them: the position check decides, as for any writer.
                        tracing::info!(?partitions, "partitions revoked; their buffered records are dropped");
                        buffer.drop_partitions(&partitions);
                        for partition in partitions {
                            next_from.remove(&partition);
                        }
                        metrics::gauge!("jhe_processor_assigned_partitions").set(next_from.len() as f64);
                    }
                    Some(Ok(ConsumerEvent::Records(records))) => {
                        for record in records {
                            // Records of a partition we no longer hold, or from before its position, are stale.
                            if next_from.get(&record.partition).is_some_and(|next| record.offset >= *next) {
                                buffer.push(record);
                            }
                        }
                    }
                },
            }
        }
    }

    /// Shutdown: waits for the flush in flight, then flushes what is buffered (unless a flush was fenced or
    /// abandoned: then the records are replayed by whoever processes the partitions next).
    async fn shut_down(
        self: &Arc<Self>,
        in_flight: Option<JoinHandle<Flushed>>,
        mut buffer: Buffer,
        mut next_from: BTreeMap<Partition, Offset>,
        consumer: &Consumer,
        shutdown: &CancellationToken,
    ) -> Result<(), ProcessorError> {
        if let Some(handle) = in_flight {
            match flush_outcome(handle.await) {
                Flushed::Published(positions) => consumer.processed(&positions),
                Flushed::Fenced { .. } | Flushed::Abandoned => buffer = Buffer::default(),
                Flushed::Fatal(error) => return Err(error),
            }
        }
        while !buffer.records.is_empty() {
            let batch = Batch::cut(buffer.cut(&self.settings), &mut next_from);
            match Arc::clone(self).flush_with_retries(batch, shutdown.clone()).await {
                Flushed::Published(positions) => consumer.processed(&positions),
                Flushed::Fenced { .. } | Flushed::Abandoned => break,
                Flushed::Fatal(error) => return Err(error),
            }
        }
        tracing::info!("processor stopped");
        Ok(())
    }

    /// After a fenced batch: every assigned partition restarts at its published position.
    async fn reseek(
        &self,
        partition: Partition,
        stored: Offset,
        next_from: &mut BTreeMap<Partition, Offset>,
        consumer: &Consumer,
    ) -> Result<(), ProcessorError> {
        // Another processor published this range (a rebalance we saw late): restart at the stored positions.
        tracing::warn!(partition, stored, "position moved under us; seeking to the published positions");
        metrics::counter!("jhe_processor_fenced_batches_total").increment(1);
        let partitions: Vec<Partition> = next_from.keys().copied().collect();
        let stored_positions = jhe_catalog::positions(&self.pool, &self.settings.topic, &partitions).await?;
        for (partition, stored) in partitions.iter().zip(stored_positions) {
            let next = stored.unwrap_or(0);
            next_from.insert(*partition, next);
            consumer.seek(*partition, next)?;
        }
        Ok(())
    }

    /// Flushes `batch`, retrying transient failures (object store, database, log) with backoff; positions do not
    /// move until a flush commits, so retrying is always safe. The attempts share the batch's [`DeadLettered`]
    /// records, so a retry does not produce their dead letters again.
    async fn flush_with_retries(self: Arc<Self>, batch: Batch, shutdown: CancellationToken) -> Flushed {
        let mut backoff = Duration::from_millis(200);
        let mut attempt = 0u32;
        let mut dead_lettered = DeadLettered::new();
        loop {
            attempt += 1;
            let span = tracing::info_span!("flush", records = batch.records.len(), attempt);
            let flushed = self.flush(&batch, &mut dead_lettered).instrument(span).await;
            match flushed {
                Ok(positions) => return Flushed::Published(positions),
                Err(FlushError::Fenced { partition, stored }) => return Flushed::Fenced { partition, stored },
                Err(FlushError::Transient(reason)) => {
                    metrics::counter!("jhe_processor_flush_retries_total").increment(1);
                    tracing::warn!(%reason, attempt, retry_in = ?backoff, "flush failed; retrying (positions unchanged)");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {
                            tracing::warn!("shutdown during flush retries; the batch will be replayed on restart");
                            return Flushed::Abandoned;
                        }
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(FlushError::Fatal(error)) => return Flushed::Fatal(error),
            }
        }
    }

    /// One attempt: transform, dedupe, write files, dead-letter, publish. Returns the new positions. Records an
    /// earlier attempt dead-lettered (`dead_lettered`) stay rejected and are not produced again.
    async fn flush(
        &self,
        batch: &Batch,
        dead_lettered: &mut DeadLettered,
    ) -> Result<Vec<(Partition, Offset)>, FlushError> {
        let started = Instant::now();
        let records = &batch.records;

        // Check every record against the control plane as it is now, on the worker threads.
        let outcomes = {
            let snapshot = self.cache.snapshot();
            let validators = self.validators.clone();
            let records = Arc::clone(records);
            let workers = self.settings.workers;
            tokio::task::spawn_blocking(move || {
                let now = Utc::now().timestamp_micros();
                let chunks: Vec<&[Consumed]> = records.chunks(TRANSFORM_CHUNK).collect();
                parallel_map(&chunks, workers, |chunk| {
                    let mut checker = Checker::new(&snapshot, &validators, now);
                    chunk.iter().map(|record| checker.check(record)).collect::<Vec<_>>()
                })
            })
            .await
            .map_err(|error| FlushError::Fatal(ProcessorError::Build(format!("transform worker: {error}"))))?
        };
        let transformed_at = started.elapsed();

        let mut kept = Kept::with_capacity(records.len());
        let mut rejects: Vec<(usize, Reject)> = Vec::new();
        for (index, outcome) in outcomes.into_iter().flatten().enumerate() {
            if let Some(reject) = dead_lettered.get(&index) {
                rejects.push((index, reject.clone()));
                continue;
            }
            match outcome {
                Ok(checked) => kept.push(index, checked),
                Err(reject) => rejects.push((index, reject)),
            }
        }
        let kept = Arc::new(kept);

        // Claim identifiers while the files are encoded: a record keeps its data only if its id owns every
        // identifier it carries. The claims are made in log order, batch after batch (one flush in flight).
        let (refused, files, claims_done_at, encoded_at) = {
            let mut claims: Vec<IdentifierClaimRef<'_>> = Vec::new();
            let mut claim_owner: Vec<usize> = Vec::new();
            for (position, record) in kept.records.iter().enumerate() {
                for identifier in &record.identifiers {
                    claims.push(IdentifierClaimRef {
                        system: &identifier.system,
                        value: &identifier.value,
                        observation_id: record.id,
                    });
                    claim_owner.push(position);
                }
            }
            // each side's own end, for the log line (they overlap)
            let claiming = async {
                // a large batch is checked in several statements at once (the check is the flush's longest step)
                let parts = (claims.len() / CLAIMS_PER_STATEMENT).clamp(1, self.settings.workers.max(1));
                let refused =
                    jhe_catalog::claim_identifiers_in_parts(&self.pool, &claims, GATEWAY_ID_BASE, parts).await;
                (refused, started.elapsed())
            };
            let building = async {
                let files = self.build_files(Arc::clone(records), Arc::clone(&kept), None).await;
                (files, started.elapsed())
            };
            let ((refused, claims_done_at), (files, encoded_at)) = tokio::join!(claiming, building);
            let refused = refused.map_err(transient)?;
            // kept position → the first identifier it may not have
            let mut duplicate: BTreeMap<usize, String> = BTreeMap::new();
            for claim_position in refused {
                let claim = &claims[claim_position];
                duplicate.entry(claim_owner[claim_position]).or_insert_with(|| {
                    format!("identifier {}|{} belongs to another observation", claim.system, claim.value)
                });
            }
            (duplicate, files, claims_done_at, encoded_at)
        };
        let files = if refused.is_empty() {
            files?
        } else {
            // Rare: the files hold a record that must not be stored. Encode them again without it.
            drop(files);
            let stored: Vec<usize> =
                (0..kept.records.len()).filter(|position| !refused.contains_key(position)).collect();
            self.build_files(Arc::clone(records), Arc::clone(&kept), Some(stored)).await?
        };
        for (position, reason) in &refused {
            let record = &kept.records[*position];
            rejects.push((
                kept.index[*position],
                Reject {
                    code: dead_letter::REASON_DUPLICATE_IDENTIFIER,
                    reason: reason.clone(),
                    observation_id: Some(record.id),
                },
            ));
        }
        rejects.sort_by_key(|(index, _)| *index);
        let built_at = started.elapsed();

        // Stage, then upload the files and produce the dead letters (both must be durable before the positions move
        // past them). Both run to the end even when one fails, so dead letters the log acknowledged are known to
        // be produced and a retry skips them.
        let new_files: Vec<NewParquetFile> = files.iter().map(|f| f.catalog.clone()).collect();
        jhe_catalog::stage_files(&self.pool, &new_files).await.map_err(transient)?;
        let fresh: Vec<&(usize, Reject)> =
            rejects.iter().filter(|(index, _)| !dead_lettered.contains_key(index)).collect();
        let (uploaded, produced) = tokio::join!(self.upload_all(&files), self.produce_dead_letters(records, &fresh));
        produced?;
        dead_lettered.extend(fresh.into_iter().cloned());
        uploaded?;
        drop(files);
        let uploaded_at = started.elapsed();

        let file_ids: Vec<Uuid> = new_files.iter().map(|f| f.id).collect();
        let commit_started = Instant::now();
        match jhe_catalog::publish(&self.pool, &self.settings.topic, &batch.deltas, &file_ids).await {
            Ok(()) => {}
            Err(PublishError::PositionMismatch { partition, stored, .. }) => {
                return Err(FlushError::Fenced { partition, stored });
            }
            Err(PublishError::CommitOutcomeUnknown { .. }) => {
                // Re-read the positions: if they moved to our `to`, the commit happened.
                let partitions: Vec<Partition> = batch.deltas.iter().map(|d| d.partition).collect();
                let now =
                    jhe_catalog::positions(&self.pool, &self.settings.topic, &partitions).await.map_err(transient)?;
                let committed = batch.deltas.iter().zip(now).all(|(delta, stored)| stored == Some(delta.to));
                if !committed {
                    return Err(FlushError::Transient(
                        "the publish commit outcome was unknown and it did not happen".into(),
                    ));
                }
            }
            Err(other) => return Err(FlushError::Transient(other.to_string())),
        }
        let commit_seconds = commit_started.elapsed().as_secs_f64();
        metrics::histogram!("jhe_processor_commit_seconds").record(commit_seconds);

        // Freshness: from the upload's acknowledgement (its lastUpdated) to this commit, per observation (records
        // of one upload share their lastUpdated: each run of equal values is recorded at once).
        let now = Utc::now().timestamp_micros();
        let freshness = metrics::histogram!("jhe_processor_freshness_seconds");
        let mut run: Option<(i64, usize)> = None;
        let stored_updates = kept
            .records
            .iter()
            .enumerate()
            .filter(|(position, _)| !refused.contains_key(position))
            .map(|(_, record)| record.last_updated_micros);
        for last_updated in stored_updates.map(Some).chain([None]) {
            match (run, last_updated) {
                (Some((value, count)), Some(next)) if value == next => run = Some((value, count + 1)),
                (previous, next) => {
                    if let Some((value, count)) = previous {
                        freshness.record_many((now - value).max(0) as f64 / 1e6, count);
                    }
                    run = next.map(|value| (value, 1));
                }
            }
        }
        drop(kept);

        // Release the claims of rejected records (best effort): an identifier of data that was never stored must
        // not block a corrected re-upload.
        let release: Vec<IdentifierClaim> = rejects
            .iter()
            .filter_map(|(index, reject)| reject.observation_id.map(|id| (*index, id)))
            .flat_map(|(index, id)| released_claims(&records[index], id))
            .collect();
        if !release.is_empty()
            && let Err(error) = jhe_catalog::release_identifiers(&self.pool, &release).await
        {
            tracing::warn!(%error, "could not release identifier claims of dead-lettered records");
        }

        let rows: i64 = new_files.iter().map(|f| f.row_count).sum();
        metrics::counter!("jhe_processor_records_total", "outcome" => "stored").increment(rows as u64);
        metrics::counter!("jhe_processor_records_total", "outcome" => "dead_lettered").increment(rejects.len() as u64);
        for (_, reject) in &rejects {
            metrics::counter!("jhe_processor_rejects_total", "reason" => reject.code).increment(1);
        }
        metrics::counter!("jhe_processor_files_total").increment(new_files.len() as u64);
        for file in &new_files {
            metrics::histogram!("jhe_processor_file_bytes").record(file.size_bytes as f64);
        }
        metrics::histogram!("jhe_processor_flush_seconds").record(started.elapsed().as_secs_f64());
        let ms = |elapsed: Duration| elapsed.as_millis() as u64;
        tracing::info!(
            records = records.len(),
            stored = rows,
            dead_lettered = rejects.len(),
            files = new_files.len(),
            transform_ms = ms(transformed_at),
            claims_ms = ms(claims_done_at),
            encode_ms = ms(encoded_at),
            build_ms = ms(built_at),
            upload_ms = ms(uploaded_at),
            commit_ms = (commit_seconds * 1000.0) as u64,
            took_ms = ms(started.elapsed()),
            "flush published"
        );
        Ok(batch.deltas.iter().map(|d| (d.partition, d.to)).collect())
    }

    /// Files of the `kept` records (only those at `only`, if given): one per (code, UTC day), sorted and encoded on
    /// the worker threads. Data points are copied straight from the consumed `records`.
    async fn build_files(
        &self,
        records: Arc<Vec<Consumed>>,
        kept: Arc<Kept>,
        only: Option<Vec<usize>>,
    ) -> Result<Vec<BuiltFile>, FlushError> {
        let prefix = self.prefix.clone();
        let workers = self.settings.workers;
        tokio::task::spawn_blocking(move || build_files(&records, &kept, only, &prefix, workers))
            .await
            .map_err(|error| FlushError::Fatal(ProcessorError::Build(format!("file worker: {error}"))))?
            .map_err(|error| FlushError::Fatal(ProcessorError::Build(error)))
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

    /// Produces the dead letters of `rejects` (positions in `records`) and waits for the log's acknowledgement.
    async fn produce_dead_letters(&self, records: &[Consumed], rejects: &[&(usize, Reject)]) -> Result<(), FlushError> {
        if rejects.is_empty() {
            return Ok(());
        }
        // The log's producer, made on first use: most batches have nothing to dead-letter, and an idle producer
        // still costs a polling thread.
        let producer = self.log.producer().map_err(|error| FlushError::Fatal(error.into()))?;
        let dead: Vec<Record> =
            rejects.iter().map(|(index, reject)| self.dead_letter(&records[*index], reject)).collect();
        producer.send(&self.settings.dead_letter_topic, dead).await.map_err(transient)
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

/// Identifier claims per statement, at least, when a flush's claims are split over several (one per worker at most).
const CLAIMS_PER_STATEMENT: usize = 5_000;

/// Records checked per task on the worker threads (small enough to balance, large enough to be cheap to hand out).
const TRANSFORM_CHUNK: usize = 1024;

/// The flush in flight's result, or never (no flush in flight).
async fn join_flush(in_flight: &mut Option<JoinHandle<Flushed>>) -> Result<Flushed, tokio::task::JoinError> {
    match in_flight.as_mut() {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

fn flush_outcome(joined: Result<Flushed, tokio::task::JoinError>) -> Flushed {
    joined.unwrap_or_else(|error| Flushed::Fatal(ProcessorError::Build(format!("flush task: {error}"))))
}

/// Runs `work` on every item on up to `threads` threads (this one included) and returns the results in the order
/// of `items`. Items are handed out one at a time, so uneven items still spread evenly.
fn parallel_map<T: Sync, R: Send>(items: &[T], threads: usize, work: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(work).collect();
    }
    let next = AtomicUsize::new(0);
    let run = || {
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            let Some(item) = items.get(index) else { return done };
            done.push((index, work(item)));
        }
    };
    let mut results: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads).map(|_| scope.spawn(run)).collect();
        let mut place = |done: Vec<(usize, R)>| {
            for (index, result) in done {
                results[index] = Some(result);
            }
        };
        place(run());
        for helper in helpers {
            match helper.join() {
                Ok(done) => place(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    // every index below `items.len()` was taken by exactly one thread
    results.into_iter().flatten().collect()
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

/// The records of a batch that passed every check.
#[derive(Debug, Default)]
struct Kept {
    /// Without their data points (`omh_json` is empty)…
    records: Vec<ObservationRecord>,
    /// …which lie at these ranges of the consumed values…
    omh: Vec<Range<usize>>,
    /// …of the consumed records at these positions of the batch.
    index: Vec<usize>,
}

impl Kept {
    fn with_capacity(records: usize) -> Self {
        Self {
            records: Vec::with_capacity(records),
            omh: Vec::with_capacity(records),
            index: Vec::with_capacity(records),
        }
    }

    fn push(&mut self, index: usize, checked: Checked) {
        self.records.push(checked.record);
        self.omh.push(checked.omh);
        self.index.push(index);
    }

    /// The data point of kept record `position`, from `records`, the batch the checker read it from.
    fn omh_json<'a>(&self, records: &'a [Consumed], position: usize) -> Result<&'a str, String> {
        let bytes = records
            .get(self.index[position])
            .and_then(|consumed| consumed.value.get(self.omh[position].clone()))
            .ok_or_else(|| {
                format!("the data point of observation {} is not in its record", self.records[position].id)
            })?;
        // SAFETY: `Checked::omh` is where the checker found the data point, a `&str` borrowed from this record's
        // value (see `transform::check`), pushed together with the record's position in the batch (`push`); the
        // batch is immutable behind its `Arc`. So these bytes are that `&str`'s: valid UTF-8. (Validating 0.5 KB per
        // row again costs more than copying it.)
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    }
}

/// (coding system, coding code, UTC day number of the effective start): what one file holds.
type GroupKey<'a> = (&'a str, &'a str, i64);

/// Groups the kept records (those at `only`, if given) by (code, UTC day of effective start) and encodes each group
/// as one Parquet file sorted by (patient, effective start, id), the groups in parallel on `workers` threads.
fn build_files(
    records: &[Consumed],
    kept: &Kept,
    only: Option<Vec<usize>>,
    prefix: &ObjectPath,
    workers: usize,
) -> Result<Vec<BuiltFile>, String> {
    // A batch holds a handful of (code, day) groups, and records come in runs of one: a scan that starts at the
    // last group used beats hashing every record.
    let mut groups: Vec<(GroupKey<'_>, Vec<usize>)> = Vec::new();
    let mut last = 0;
    let mut add = |position: usize| {
        let record = &kept.records[position];
        let key: GroupKey<'_> =
            (&record.coding_system, &record.coding_code, record.effective.start_micros.div_euclid(MICROS_PER_DAY));
        if groups.get(last).is_none_or(|(group, _)| *group != key) {
            last = match groups.iter().position(|(group, _)| *group == key) {
                Some(found) => found,
                None => {
                    groups.push((key, Vec::new()));
                    groups.len() - 1
                }
            };
        }
        groups[last].1.push(position);
    };
    match only {
        Some(positions) => positions.into_iter().for_each(&mut add),
        None => (0..kept.records.len()).for_each(&mut add),
    }
    // largest first, so the big files start early and the small ones fill in
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    let built = parallel_map(&groups, workers, |((_, coding_code, day_number), positions)| {
        build_file(records, kept, positions, coding_code, *day_number, prefix)
    });
    built.into_iter().collect()
}

/// One file: the kept records at `positions` (one code and UTC day), sorted.
fn build_file(
    records: &[Consumed],
    kept: &Kept,
    positions: &[usize],
    coding_code: &str,
    day_number: i64,
    prefix: &ObjectPath,
) -> Result<BuiltFile, String> {
    let day = i32::try_from(day_number)
        .ok()
        .and_then(|days| NaiveDate::from_num_days_from_ce_opt(days.checked_add(719_163)?))
        .ok_or_else(|| format!("effective day {day_number} is out of range"))?;
    let mut order = positions.to_vec();
    order.sort_unstable_by_key(|&position| {
        let record = &kept.records[position];
        (record.patient_id, record.effective.start_micros, record.id)
    });
    let rows = order
        .iter()
        .map(|&position| Ok((&kept.records[position], kept.omh_json(records, position)?)))
        .collect::<Result<Vec<(&ObservationRecord, &str)>, String>>()?;
    let mut builder = ObservationBatchBuilder::for_rows(rows.iter().copied());
    for (record, omh_json) in rows {
        builder.append_with_omh_json(record, omh_json).map_err(|e| e.to_string())?;
    }
    let batch = builder.finish().map_err(|e| e.to_string())?;
    drop(builder);
    let encoded = parquet_file::encode_sorted_parquet(&batch).map_err(|e| e.to_string())?;
    drop(batch);
    let id = Uuid::now_v7();
    let path = observation_object_path(prefix, coding_code, day, id);
    let catalog = encoded.catalog_entry(id, &path, 0);
    debug_assert_eq!(catalog.day, day);
    Ok(BuiltFile { catalog, bytes: encoded.bytes })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn consumed(partition: Partition, offset: Offset, bytes: usize) -> Consumed {
        Consumed { partition, offset, key: None, value: vec![b'x'; bytes], headers: Vec::new(), timestamp_millis: None }
    }

    fn settings(max_records: usize, max_bytes: usize) -> ProcessorSettings {
        ProcessorSettings { flush_max_records: max_records, flush_max_bytes: max_bytes, ..ProcessorSettings::default() }
    }

    #[test]
    fn a_cut_takes_the_oldest_records_up_to_the_limits() {
        let settings = settings(3, 1000);
        let mut buffer = Buffer::default();
        for offset in 0..5 {
            buffer.push(consumed(0, offset, 10));
        }
        assert!(buffer.is_full(&settings) && buffer.is_due(&settings));
        let taken: Vec<Offset> = buffer.cut(&settings).iter().map(|r| r.offset).collect();
        assert_eq!(taken, vec![0, 1, 2]);
        assert_eq!((buffer.records.len(), buffer.bytes), (2, 20));
        assert!(buffer.first_at.is_some(), "the rest is still waiting");

        // by bytes: never less than one record, even one over the limit
        let settings = super::tests::settings(100, 25);
        let mut buffer = Buffer::default();
        buffer.push(consumed(0, 0, 40));
        buffer.push(consumed(0, 1, 10));
        assert_eq!(buffer.cut(&settings).len(), 1);
        assert_eq!(buffer.cut(&settings).len(), 1);
        assert!(buffer.records.is_empty() && buffer.first_at.is_none() && buffer.bytes == 0);
    }

    #[test]
    fn consecutive_batches_continue_where_the_previous_one_ended() {
        let mut next_from: BTreeMap<Partition, Offset> = BTreeMap::from([(0, 10), (1, 0)]);
        let first = Batch::cut(vec![consumed(0, 10, 1), consumed(1, 0, 1), consumed(0, 12, 1)], &mut next_from);
        assert_eq!(
            first.deltas,
            vec![PartitionDelta { partition: 0, from: 10, to: 13 }, PartitionDelta { partition: 1, from: 0, to: 1 }]
        );
        let second = Batch::cut(vec![consumed(0, 13, 1)], &mut next_from);
        assert_eq!(second.deltas, vec![PartitionDelta { partition: 0, from: 13, to: 14 }]);
        assert_eq!(next_from, BTreeMap::from([(0, 14), (1, 1)]));
    }

    #[test]
    fn parallel_map_keeps_the_order() {
        let items: Vec<u64> = (0..1000).collect();
        for threads in [0, 1, 2, 7] {
            let squares = parallel_map(&items, threads, |x| x * x);
            assert_eq!(squares, items.iter().map(|x| x * x).collect::<Vec<_>>());
        }
        assert!(parallel_map(&Vec::<u64>::new(), 4, |x| *x).is_empty());
    }
}
