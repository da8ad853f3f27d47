//! Compaction's swap and the janitor's work list: the maintenance side of the file catalog.

use std::time::Duration;

use jhe_schemas::ErrorKind;
use sqlx::PgPool;
use uuid::Uuid;

use super::{CommitOutcome, FileState, NewParquetFile, ParquetFileRow, commit, current_transaction_id, database_kind};
use crate::Result;

/// Why [`replace_files`] did not commit. Nothing of the replacement is visible unless noted.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// An input is gone or no longer published (another compaction took it): discard the output.
    #[error("the inputs of the compaction changed: parquet file `{id}` is no longer published")]
    InputsChanged { id: Uuid },
    /// The output does not hold exactly the inputs' rows, or is not of their (system, code, day).
    #[error("the compaction output `{id}` does not match its inputs: {reason}")]
    OutputMismatch { id: Uuid, reason: String },
    /// A row with the output's id exists and is not a staged row for the same object.
    #[error("parquet file `{id}` already exists and is not staged for the same object")]
    OutputExists { id: Uuid },
    #[error("a compaction needs at least one input")]
    NoInputs,
    /// `COMMIT` was sent but its outcome could not be learned (see the module notes): keep the output object (it
    /// may be published now); if it was not, its staged row, if any, leads the janitor to it.
    #[error("the outcome of the compaction commit is unknown (transaction {transaction_id}): {source}")]
    CommitOutcomeUnknown { transaction_id: i64, source: sqlx::Error },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl ReplaceError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ReplaceError::InputsChanged { .. } | ReplaceError::OutputExists { .. } => ErrorKind::Conflict,
            ReplaceError::OutputMismatch { .. } | ReplaceError::NoInputs => ErrorKind::Internal,
            ReplaceError::CommitOutcomeUnknown { .. } => ErrorKind::Unavailable,
            ReplaceError::Database(source) => database_kind(source),
        }
    }
}

/// Groups of published files worth compacting: files of one (system, code, day) with `compaction_level <=
/// max_level`, smallest first, as many as fit in `max_total_bytes` together; a group is returned only if at least
/// `min_files` fit. Each group is ordered by size.
pub async fn compaction_candidates(
    pool: &PgPool,
    min_files: usize,
    max_level: i32,
    max_total_bytes: i64,
) -> Result<Vec<Vec<ParquetFileRow>>> {
    let min_files = i64::try_from(min_files.max(1)).unwrap_or(i64::MAX);
    let rows = sqlx::query_as!(
        ParquetFileRow,
        r#"WITH running AS (
             SELECT *, (sum(size_bytes) OVER (PARTITION BY coding_system, coding_code, day ORDER BY size_bytes, id))::int8
                 AS running_bytes
             FROM parquet_files
             WHERE state = 'published' AND compaction_level <= $1
         ), fitting AS (
             SELECT *, count(*) OVER (PARTITION BY coding_system, coding_code, day) AS group_files
             FROM running WHERE running_bytes <= $2::int8
         )
         SELECT id AS "id!", object_path AS "object_path!", state AS "state!: FileState",
             coding_system AS "coding_system!", coding_code AS "coding_code!", day AS "day!",
             row_count AS "row_count!", size_bytes AS "size_bytes!", min_patient_id AS "min_patient_id!",
             max_patient_id AS "max_patient_id!", min_effective_start AS "min_effective_start!",
             max_effective_start AS "max_effective_start!", max_effective_end,
             min_last_updated AS "min_last_updated!", max_last_updated AS "max_last_updated!",
             compaction_level AS "compaction_level!", created_at AS "created_at!", published_at, marked_at
         FROM fitting
         WHERE group_files >= $3
         ORDER BY coding_system, coding_code, day, size_bytes, id"#,
        max_level,
        max_total_bytes,
        min_files,
    )
    .fetch_all(pool)
    .await?;

    let mut groups: Vec<Vec<ParquetFileRow>> = Vec::new();
    for row in rows {
        match groups.last_mut() {
            Some(group)
                if group.first().is_some_and(|first| {
                    first.coding_system == row.coding_system
                        && first.coding_code == row.coding_code
                        && first.day == row.day
                }) =>
            {
                group.push(row)
            }
            _ => groups.push(vec![row]),
        }
    }
    Ok(groups)
}

/// Compaction's swap, in one transaction: locks `inputs`, requires every one of them to be published, publishes
/// `output` (inserted, or flipped from staged if the compactor staged it before the upload) and marks the inputs
/// for deletion. A query therefore sees either the inputs or the output, never both. The output must be of the
/// inputs' (system, code, day) and hold exactly their rows.
pub async fn replace_files(pool: &PgPool, inputs: &[Uuid], output: &NewParquetFile) -> Result<(), ReplaceError> {
    let mut inputs = inputs.to_vec();
    inputs.sort_unstable();
    inputs.dedup();
    if inputs.is_empty() {
        return Err(ReplaceError::NoInputs);
    }

    let mut tx = pool.begin().await?;
    let transaction_id = current_transaction_id(&mut tx).await?;

    let locked = sqlx::query!(
        r#"SELECT id, state AS "state: FileState", coding_system, coding_code, day, row_count
         FROM parquet_files WHERE id = ANY($1)
         ORDER BY id
         FOR UPDATE"#,
        &inputs,
    )
    .fetch_all(&mut *tx)
    .await?;
    let changed =
        inputs.iter().copied().find(|id| !locked.iter().any(|row| row.id == *id && row.state == FileState::Published));
    if let Some(id) = changed {
        tx.rollback().await?;
        return Err(ReplaceError::InputsChanged { id });
    }
    let mismatch = if let Some(row) = locked.iter().find(|row| {
        row.coding_system != output.coding_system || row.coding_code != output.coding_code || row.day != output.day
    }) {
        Some(format!("input `{}` is of another code or day", row.id))
    } else {
        let input_rows: i64 = locked.iter().map(|row| row.row_count).sum();
        (input_rows != output.row_count)
            .then(|| format!("the inputs hold {input_rows} rows, the output {}", output.row_count))
    };
    if let Some(reason) = mismatch {
        tx.rollback().await?;
        return Err(ReplaceError::OutputMismatch { id: output.id, reason });
    }

    let inserted = sqlx::query!(
        "INSERT INTO parquet_files (id, object_path, state, coding_system, coding_code, day, row_count, size_bytes,
             min_patient_id, max_patient_id, min_effective_start, max_effective_start, max_effective_end,
             min_last_updated, max_last_updated, compaction_level, published_at)
         VALUES ($1, $2, 'published', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, now())
         ON CONFLICT (id) DO UPDATE SET state = 'published', published_at = now(), size_bytes = EXCLUDED.size_bytes
             WHERE parquet_files.state = 'staged' AND parquet_files.object_path = EXCLUDED.object_path",
        output.id,
        output.object_path,
        output.coding_system,
        output.coding_code,
        output.day,
        output.row_count,
        output.size_bytes,
        output.min_patient_id,
        output.max_patient_id,
        output.min_effective_start,
        output.max_effective_start,
        output.max_effective_end,
        output.min_last_updated,
        output.max_last_updated,
        output.compaction_level,
    )
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() != 1 {
        tx.rollback().await?;
        return Err(ReplaceError::OutputExists { id: output.id });
    }

    sqlx::query!(
        "UPDATE parquet_files SET state = 'marked_for_deletion', marked_at = now() WHERE id = ANY($1)",
        &inputs,
    )
    .execute(&mut *tx)
    .await?;

    match commit(pool, tx, transaction_id).await {
        CommitOutcome::Committed => Ok(()),
        CommitOutcome::Failed(source) => Err(ReplaceError::Database(source)),
        CommitOutcome::Unknown(source) => Err(ReplaceError::CommitOutcomeUnknown { transaction_id, source }),
    }
}

/// Most rows of each kind [`janitor_candidates`] returns per call; the janitor calls again while it makes progress.
pub const JANITOR_BATCH: i64 = 1000;

/// Files whose objects may be deleted, at most [`JANITOR_BATCH`] of each kind:
/// * `staged` rows created more than `staged_older_than` ago (their upload or publish never finished). They are
///   claimed first — moved to `marked_for_deletion` in this statement — so a publish arriving even later fails
///   with [`PublishError::FileNotStaged`] instead of publishing a file whose object is being deleted;
/// * `marked_for_deletion` rows marked more than `marked_older_than` ago (no query can still be reading them).
///
/// Every returned row is in state `marked_for_deletion`; delete the objects, then [`delete_file_rows`].
pub async fn janitor_candidates(
    pool: &PgPool,
    staged_older_than: Duration,
    marked_older_than: Duration,
) -> Result<Vec<ParquetFileRow>> {
    let rows = sqlx::query_as!(
        ParquetFileRow,
        r#"WITH claimed AS (
             UPDATE parquet_files SET state = 'marked_for_deletion', marked_at = now()
             WHERE state = 'staged' AND id IN (
                 SELECT id FROM parquet_files
                 WHERE state = 'staged' AND created_at <= now() - make_interval(secs => $1)
                 ORDER BY created_at, id
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED)
             RETURNING *
         ), marked AS (
             SELECT * FROM parquet_files
             WHERE state = 'marked_for_deletion' AND marked_at <= now() - make_interval(secs => $2)
             ORDER BY marked_at, id
             LIMIT $3
         ), candidates AS (
             SELECT * FROM claimed UNION ALL SELECT * FROM marked
         )
         SELECT id AS "id!", object_path AS "object_path!", state AS "state!: FileState",
             coding_system AS "coding_system!", coding_code AS "coding_code!", day AS "day!",
             row_count AS "row_count!", size_bytes AS "size_bytes!", min_patient_id AS "min_patient_id!",
             max_patient_id AS "max_patient_id!", min_effective_start AS "min_effective_start!",
             max_effective_start AS "max_effective_start!", max_effective_end,
             min_last_updated AS "min_last_updated!", max_last_updated AS "max_last_updated!",
             compaction_level AS "compaction_level!", created_at AS "created_at!", published_at, marked_at
         FROM candidates
         ORDER BY created_at, id"#,
        staged_older_than.as_secs_f64(),
        marked_older_than.as_secs_f64(),
        JANITOR_BATCH,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// Deletes the rows of `ids` that are staged or marked for deletion (published rows are never deleted here);
/// returns how many were deleted. Call after their objects are gone.
pub async fn delete_file_rows(pool: &PgPool, ids: &[Uuid]) -> Result<u64> {
    if ids.is_empty() {
        return Ok(0);
    }
    let deleted = sqlx::query!(
        "DELETE FROM parquet_files WHERE id = ANY($1) AND state IN ('staged', 'marked_for_deletion')",
        ids,
    )
    .execute(pool)
    .await?;
    Ok(deleted.rows_affected())
}

/// Files, rows and bytes in one state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSummary {
    pub files: i64,
    pub rows: i64,
    pub bytes: i64,
}

/// The file catalog per state, for metrics and the CLI.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CatalogSummary {
    pub staged: StateSummary,
    pub published: StateSummary,
    pub marked_for_deletion: StateSummary,
}

pub async fn catalog_summary(pool: &PgPool) -> Result<CatalogSummary> {
    let rows = sqlx::query!(
        r#"SELECT state AS "state: FileState", count(*) AS "files!",
             COALESCE(sum(row_count), 0)::int8 AS "rows!", COALESCE(sum(size_bytes), 0)::int8 AS "bytes!"
         FROM parquet_files GROUP BY state"#
    )
    .fetch_all(pool)
    .await?;
    let mut summary = CatalogSummary::default();
    for row in rows {
        let state = StateSummary { files: row.files, rows: row.rows, bytes: row.bytes };
        match row.state {
            FileState::Staged => summary.staged = state,
            FileState::Published => summary.published = state,
            FileState::MarkedForDeletion => summary.marked_for_deletion = state,
        }
    }
    Ok(summary)
}
