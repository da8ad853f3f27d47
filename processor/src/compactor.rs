//! Compaction: merges the many small files the processor writes per (code, day) into one sorted file.
//!
//! Per candidate group (catalog: [`jhe_catalog::compaction_candidates`]): read the inputs, decode, sort and encode
//! them as one file (on a blocking thread), stage the output's catalog row, upload it to a fresh path, then swap in
//! one transaction ([`jhe_catalog::replace_files`]): the output is published and the inputs are marked for deletion
//! together, so a query sees either the inputs or the output and every row exactly once. A lost race (another
//! compaction took an input) discards the output. Anything left behind by a crash is a staged row and object the
//! janitor collects; the inputs are deleted by the janitor only after its deletion grace (no query still reads them).

use std::sync::Arc;
use std::time::Duration;

use jhe_catalog::{ParquetFileRow, ReplaceError, compaction_candidates, delete_file_rows, replace_files, stage_files};
use jhe_schemas::ErrorKind;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sqlx::PgPool;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::parquet_file::{ParquetError, decode_parquet, encode_parquet, upload};
use crate::store::observation_object_path;

/// When and what to compact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionSettings {
    /// Compact a (code, day) once it has at least this many small files.
    pub min_files: usize,
    /// Files above this level are left alone (each compaction raises the level by one).
    pub max_level: i32,
    /// The most input bytes (compressed) one compaction takes; bounds the output size and the memory used (the
    /// decoded rows of all inputs are held at once, several times their compressed size).
    pub target_bytes: i64,
    /// Time between compaction rounds.
    pub interval: Duration,
}

impl Default for CompactionSettings {
    fn default() -> Self {
        Self { min_files: 8, max_level: 2, target_bytes: 256 * 1024 * 1024, interval: Duration::from_secs(60) }
    }
}

/// What one compaction round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Candidate groups found.
    pub groups: usize,
    /// Groups replaced by one file.
    pub compacted: usize,
    /// Groups whose inputs changed meanwhile (another compactor won); their output was discarded.
    pub lost_races: usize,
    /// Groups that failed (logged); their inputs stay published and are retried next round.
    pub failed: usize,
    pub input_files: usize,
    pub input_bytes: i64,
    pub output_bytes: i64,
    pub rows: i64,
}

/// Why a compaction round could not run at all (failures of single groups are counted in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum CompactionError {
    #[error("catalog: {0}")]
    Catalog(#[from] jhe_catalog::Error),
}

impl CompactionError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CompactionError::Catalog(source) => source.kind(),
        }
    }
}

/// Why one group was not compacted.
#[derive(Debug, thiserror::Error)]
enum GroupError {
    #[error("catalog: {0}")]
    Catalog(#[from] jhe_catalog::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("input `{id}` has an invalid object path: {source}")]
    InputPath { id: Uuid, source: object_store::path::Error },
    #[error("swap: {0}")]
    Replace(#[from] ReplaceError),
}

enum GroupOutcome {
    Compacted { output_bytes: i64, rows: i64 },
    LostRace,
}

/// The compaction stage; see the module notes.
#[derive(Debug)]
pub struct Compactor {
    pool: PgPool,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    settings: CompactionSettings,
}

impl Compactor {
    pub fn new(pool: PgPool, store: Arc<dyn ObjectStore>, prefix: Path, settings: CompactionSettings) -> Self {
        Self { pool, store, prefix, settings }
    }

    /// One round: compacts every candidate group, one at a time.
    pub async fn compact_once(&self) -> Result<CompactionReport, CompactionError> {
        let groups = compaction_candidates(
            &self.pool,
            self.settings.min_files,
            self.settings.max_level,
            self.settings.target_bytes,
        )
        .await?;
        let mut report = CompactionReport { groups: groups.len(), ..Default::default() };
        for group in groups {
            let input_bytes: i64 = group.iter().map(|file| file.size_bytes).sum();
            match self.compact_group(&group).await {
                Ok(GroupOutcome::Compacted { output_bytes, rows }) => {
                    report.compacted += 1;
                    report.input_files += group.len();
                    report.input_bytes += input_bytes;
                    report.output_bytes += output_bytes;
                    report.rows += rows;
                }
                Ok(GroupOutcome::LostRace) => report.lost_races += 1,
                Err(error) => {
                    report.failed += 1;
                    let first = &group[0];
                    tracing::error!(
                        coding_code = %first.coding_code,
                        day = %first.day,
                        files = group.len(),
                        error = %error,
                        "compaction of a group failed"
                    );
                }
            }
        }
        Ok(report)
    }

    async fn compact_group(&self, group: &[ParquetFileRow]) -> Result<GroupOutcome, GroupError> {
        let Some(first) = group.first() else {
            return Ok(GroupOutcome::LostRace);
        };
        let mut inputs = Vec::with_capacity(group.len());
        for file in group {
            let path =
                Path::parse(&file.object_path).map_err(|source| GroupError::InputPath { id: file.id, source })?;
            inputs.push(self.store.get(&path).await?.bytes().await?);
        }
        let encoded = tokio::task::spawn_blocking(move || {
            let mut batches = Vec::new();
            for input in inputs {
                batches.extend(decode_parquet(input)?);
            }
            encode_parquet(&batches)
        })
        .await
        .map_err(ParquetError::from)??;

        let id = Uuid::now_v7();
        let path = observation_object_path(&self.prefix, &first.coding_code, first.day, id);
        let level = group.iter().map(|file| file.compaction_level).max().unwrap_or(0).saturating_add(1);
        let output = encoded.catalog_entry(id, &path, level);
        let rows = output.row_count;
        // Staged before the upload: if this process dies before the swap, the janitor finds the object.
        stage_files(&self.pool, std::slice::from_ref(&output)).await?;
        let input_ids: Vec<Uuid> = group.iter().map(|file| file.id).collect();
        let swapped = match upload(self.store.as_ref(), &path, encoded.bytes).await {
            Ok(_) => replace_files(&self.pool, &input_ids, &output).await,
            Err(error) => {
                self.discard(id, &path).await;
                return Err(error.into());
            }
        };
        match swapped {
            Ok(()) => {
                tracing::info!(
                    coding_code = %first.coding_code,
                    day = %first.day,
                    inputs = group.len(),
                    rows,
                    output = %id,
                    level,
                    "compacted"
                );
                Ok(GroupOutcome::Compacted { output_bytes: output.size_bytes, rows })
            }
            Err(ReplaceError::InputsChanged { id: changed }) => {
                tracing::info!(output = %id, changed = %changed, "compaction inputs changed; discarding the output");
                self.discard(id, &path).await;
                Ok(GroupOutcome::LostRace)
            }
            // The swap may have committed: keep the object; if it did not, its staged row leads the janitor to it.
            // `OutputExists`: the row is no longer ours to remove (the janitor claimed it after its grace).
            Err(error @ (ReplaceError::CommitOutcomeUnknown { .. } | ReplaceError::OutputExists { .. })) => {
                Err(error.into())
            }
            Err(error) => {
                self.discard(id, &path).await;
                Err(error.into())
            }
        }
    }

    /// Best effort: removes an output that will not be published (the janitor retries what fails here, as the
    /// row stays staged).
    async fn discard(&self, id: Uuid, path: &Path) {
        match self.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                if let Err(error) = delete_file_rows(&self.pool, &[id]).await {
                    tracing::warn!(output = %id, %error, "could not delete a discarded compaction output's row");
                }
            }
            Err(error) => tracing::warn!(output = %id, %error, "could not delete a discarded compaction output"),
        }
    }

    /// Compacts every `settings.interval` until `shutdown` is cancelled. A round interrupted by shutdown leaves at
    /// most a staged output for the janitor; the swap itself is one transaction.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.settings.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let round = tokio::select! {
                () = shutdown.cancelled() => break,
                round = self.compact_once() => round,
            };
            match round {
                Ok(report) if report.groups > 0 => tracing::info!(?report, "compaction round"),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "compaction round failed"),
            }
        }
    }
}
