//! The Parquet file catalog (`parquet_files`) and the log positions the files cover (`log_positions`): the commit
//! point of the processor's exactly-once pipeline (style.md §3), compaction's atomic swap, the janitor's work list
//! and the query layer's file pruning.
//!
//! Life cycle of a file: [`stage_files`] (row written before the upload) → [`publish`] (visible to queries, in the
//! same transaction that moves the positions) → [`replace_files`] (compaction: the inputs are marked for deletion
//! in the transaction that publishes their replacement) → [`janitor_candidates`] / [`delete_file_rows`].
//!
//! # An unknown commit outcome
//!
//! A connection lost while `COMMIT` is in flight leaves the outcome unknown: the server may have committed. Both
//! [`publish`] and [`replace_files`] note their transaction id (`pg_current_xact_id()`) before committing and, when
//! `COMMIT` fails without an answer from the server, ask a fresh connection for `pg_xact_status` of that id (with a
//! short backoff while it is still `in progress`). A committed transaction is a success, an aborted one the
//! ordinary error; only when the status cannot be learned is the outcome surfaced as `CommitOutcomeUnknown`. The
//! caller must then treat its state as stale — the processor re-reads the positions ([`positions`]) and seeks to
//! them; a retried publish of the same range is rejected by the `from` check if the first one did commit, so nothing
//! is stored twice either way. An error the server itself returns for `COMMIT` means the transaction was rolled back
//! (the check quickwit's `is_transaction_certainly_aborted` makes).

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use jhe_schemas::ErrorKind;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef};
use sqlx::{Decode, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::Result;

mod maintenance;

pub use maintenance::*;

/// Where a file is in its life cycle (the `state` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileState {
    /// Catalogued before its upload; invisible to queries. Never published → an orphan the janitor deletes.
    Staged,
    /// Visible to queries.
    Published,
    /// Replaced by compaction; deleted once no query can still be reading it.
    MarkedForDeletion,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Staged => "staged",
            FileState::Published => "published",
            FileState::MarkedForDeletion => "marked_for_deletion",
        }
    }
}

impl fmt::Display for FileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `state` value the migration's CHECK constraint does not allow.
#[derive(Debug, thiserror::Error)]
#[error("unknown parquet file state `{0}`")]
pub struct UnknownFileState(String);

impl FromStr for FileState {
    type Err = UnknownFileState;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "staged" => Ok(FileState::Staged),
            "published" => Ok(FileState::Published),
            "marked_for_deletion" => Ok(FileState::MarkedForDeletion),
            other => Err(UnknownFileState(other.to_owned())),
        }
    }
}

// The column is TEXT with a CHECK constraint (not a Postgres enum), so the state decodes from text.
impl sqlx::Type<Postgres> for FileState {
    fn type_info() -> PgTypeInfo {
        <&str as sqlx::Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as sqlx::Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for FileState {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, Postgres>>::decode(value)?;
        Ok(text.parse()?)
    }
}

/// A file about to be catalogued: everything but the state and the timestamps the database sets.
#[derive(Debug, Clone, PartialEq)]
pub struct NewParquetFile {
    pub id: Uuid,
    pub object_path: String,
    pub coding_system: String,
    pub coding_code: String,
    /// The UTC day of `effective_start` of every row.
    pub day: NaiveDate,
    pub row_count: i64,
    pub size_bytes: i64,
    pub min_patient_id: i64,
    pub max_patient_id: i64,
    pub min_effective_start: DateTime<Utc>,
    pub max_effective_start: DateTime<Utc>,
    pub max_effective_end: Option<DateTime<Utc>>,
    pub min_last_updated: DateTime<Utc>,
    pub max_last_updated: DateTime<Utc>,
    /// 0 for files the processor writes; max(inputs) + 1 for compacted files.
    pub compaction_level: i32,
    /// (patient id, rows) of every patient with rows in the file, sorted by patient; empty when not known (the
    /// file is then counted by reading it).
    pub patient_rows: Vec<(i64, i64)>,
}

/// A catalogued file (every column of `parquet_files`).
#[derive(Debug, Clone, PartialEq)]
pub struct ParquetFileRow {
    pub id: Uuid,
    pub object_path: String,
    pub state: FileState,
    pub coding_system: String,
    pub coding_code: String,
    pub day: NaiveDate,
    pub row_count: i64,
    pub size_bytes: i64,
    pub min_patient_id: i64,
    pub max_patient_id: i64,
    pub min_effective_start: DateTime<Utc>,
    pub max_effective_start: DateTime<Utc>,
    pub max_effective_end: Option<DateTime<Utc>>,
    pub min_last_updated: DateTime<Utc>,
    pub max_last_updated: DateTime<Utc>,
    pub compaction_level: i32,
    pub created_at: DateTime<Utc>,
    pub published_at: Option<DateTime<Utc>>,
    pub marked_at: Option<DateTime<Utc>>,
}

/// How one partition's position moves with a publish: `from` is the next offset the catalog must hold now, `to`
/// the next offset after the batch (`from <= to`; equal for a partition that only needs its row to exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionDelta {
    pub partition: i32,
    pub from: i64,
    pub to: i64,
}

/// Why [`publish`] did not commit. Nothing of the publish is visible unless noted.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The stored position is not where the batch starts: another writer moved it (stored > expected: the range
    /// is already published) or records were skipped (stored < expected). Drop the batch and seek to `stored`.
    #[error("partition {partition}: the stored next offset is {stored}, the batch starts at {expected}")]
    PositionMismatch { partition: i32, stored: i64, expected: i64 },
    /// A file of the batch is not in state `staged` (never staged, already published or being deleted).
    #[error("parquet file `{id}` is not staged")]
    FileNotStaged { id: Uuid },
    /// A delta that cannot be applied: a partition listed twice, `from > to` or a negative offset.
    #[error("partition {partition}: invalid offset delta ({reason})")]
    InvalidDelta { partition: i32, reason: &'static str },
    /// `COMMIT` was sent but its outcome could not be learned (see the module notes): re-read the positions before
    /// doing anything else.
    #[error("the outcome of the publish commit is unknown (transaction {transaction_id}): {source}")]
    CommitOutcomeUnknown { transaction_id: i64, source: sqlx::Error },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl PublishError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            PublishError::PositionMismatch { .. } | PublishError::FileNotStaged { .. } => ErrorKind::Conflict,
            PublishError::InvalidDelta { .. } => ErrorKind::Internal,
            PublishError::CommitOutcomeUnknown { .. } => ErrorKind::Unavailable,
            PublishError::Database(source) => database_kind(source),
        }
    }
}

/// The kind of a database error on the commit path: a lost or exhausted connection is `unavailable` (retry after
/// backoff), anything else `internal`.
fn database_kind(source: &sqlx::Error) -> ErrorKind {
    match source {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

/// Catalogues `files` in state `staged`, in one statement. Call before uploading them.
pub async fn stage_files(pool: &PgPool, files: &[NewParquetFile]) -> Result<()> {
    if files.is_empty() {
        return Ok(());
    }
    let columns = FileColumns::new(files);
    let mut tx = pool.begin().await?;
    sqlx::query!(
        "INSERT INTO parquet_files (id, object_path, state, coding_system, coding_code, day, row_count, size_bytes,
             min_patient_id, max_patient_id, min_effective_start, max_effective_start, max_effective_end,
             min_last_updated, max_last_updated, compaction_level, patient_rows_known)
         SELECT id, object_path, 'staged', coding_system, coding_code, day, row_count, size_bytes, min_patient_id,
             max_patient_id, min_effective_start, max_effective_start, max_effective_end, min_last_updated,
             max_last_updated, compaction_level, patient_rows_known
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::date[], $6::int8[], $7::int8[], $8::int8[],
             $9::int8[], $10::timestamptz[], $11::timestamptz[], $12::timestamptz[], $13::timestamptz[],
             $14::timestamptz[], $15::int4[], $16::bool[])
             AS f(id, object_path, coding_system, coding_code, day, row_count, size_bytes, min_patient_id,
                  max_patient_id, min_effective_start, max_effective_start, max_effective_end, min_last_updated,
                  max_last_updated, compaction_level, patient_rows_known)",
        &columns.id,
        &columns.object_path,
        &columns.coding_system,
        &columns.coding_code,
        &columns.day,
        &columns.row_count,
        &columns.size_bytes,
        &columns.min_patient_id,
        &columns.max_patient_id,
        &columns.min_effective_start,
        &columns.max_effective_start,
        &columns.max_effective_end as &[Option<DateTime<Utc>>],
        &columns.min_last_updated,
        &columns.max_last_updated,
        &columns.compaction_level,
        &columns.patient_rows_known,
    )
    .execute(&mut *tx)
    .await?;
    let (mut file_ids, mut patients, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    for file in files {
        for (patient, count) in &file.patient_rows {
            file_ids.push(file.id);
            patients.push(*patient);
            rows.push(*count);
        }
    }
    if !file_ids.is_empty() {
        sqlx::query!(
            "INSERT INTO parquet_file_patient_rows (file_id, patient_id, row_count)
             SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::int8[])",
            &file_ids,
            &patients,
            &rows,
        )
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Published rows per (system, code, patient), summed from the files' patient rows, for the files of `codes`
/// (all when `None`) and the rows of `patients` (all when `None`). `None` when a published file of those codes
/// was catalogued without patient rows: the caller must count by reading.
pub async fn published_patient_rows(
    pool: &PgPool,
    codes: Option<&[(String, String)]>,
    patients: Option<&[i64]>,
) -> Result<Option<Vec<PatientRows>>> {
    let (systems, codes): (Option<Vec<String>>, Option<Vec<String>>) = match codes {
        Some(pairs) => {
            let (systems, codes) = pairs.iter().cloned().unzip();
            (Some(systems), Some(codes))
        }
        None => (None, None),
    };
    let mut tx = pool.begin().await?;
    // one snapshot for both reads, so a publish in between cannot make the sum disagree with the check
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let unknown = sqlx::query_scalar!(
        r#"SELECT EXISTS (
             SELECT 1 FROM parquet_files
             WHERE state = 'published' AND NOT patient_rows_known
               AND ($1::text[] IS NULL OR (coding_system, coding_code) IN
                       (SELECT c.system, c.code FROM UNNEST($1::text[], $2::text[]) AS c(system, code)))
           ) AS "unknown!""#,
        systems.as_deref() as Option<&[String]>,
        codes.as_deref() as Option<&[String]>,
    )
    .fetch_one(&mut *tx)
    .await?;
    if unknown {
        return Ok(None);
    }
    let rows = sqlx::query_as!(
        PatientRows,
        r#"SELECT f.coding_system, f.coding_code, r.patient_id, sum(r.row_count)::int8 AS "rows!"
           FROM parquet_file_patient_rows r JOIN parquet_files f ON f.id = r.file_id
           WHERE f.state = 'published'
             AND ($1::text[] IS NULL OR (f.coding_system, f.coding_code) IN
                     (SELECT c.system, c.code FROM UNNEST($1::text[], $2::text[]) AS c(system, code)))
             AND ($3::int8[] IS NULL OR r.patient_id = ANY($3))
           GROUP BY f.coding_system, f.coding_code, r.patient_id"#,
        systems.as_deref() as Option<&[String]>,
        codes.as_deref() as Option<&[String]>,
        patients as Option<&[i64]>,
    )
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(rows))
}

/// The rows each published file holds of the `visible` (system, code, patient) triples, with the whole catalog
/// row of the file: a page's exact total (their sum), its frontier (`jhe_query`) and the files its scan reads,
/// from one statement and so one snapshot. `None` when a published file of those codes was catalogued without its
/// patient rows: its rows cannot be counted, only read.
pub async fn published_file_rows(pool: &PgPool, visible: &[(String, String, i64)]) -> Result<Option<Vec<FileRows>>> {
    let mut systems = Vec::with_capacity(visible.len());
    let mut codes = Vec::with_capacity(visible.len());
    let mut patients = Vec::with_capacity(visible.len());
    for (system, code, patient) in visible {
        systems.push(system.clone());
        codes.push(code.clone());
        patients.push(*patient);
    }
    // One row per file with visible rows, each carrying the flag; a single row of NULLs beside the flag when no
    // file has any.
    let rows = sqlx::query!(
        r#"WITH visible AS (
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS v(system, code, patient_id)
           ),
           counted AS (
               SELECT r.file_id, sum(r.row_count)::int8 AS row_count
               FROM visible v
               JOIN parquet_file_patient_rows r ON r.patient_id = v.patient_id
               JOIN parquet_files f ON f.id = r.file_id AND f.coding_system = v.system AND f.coding_code = v.code
               WHERE f.state = 'published'
               GROUP BY r.file_id
           ),
           uncounted AS (
               SELECT EXISTS (
                   SELECT 1 FROM parquet_files f
                   WHERE f.state = 'published' AND NOT f.patient_rows_known
                     AND (f.coding_system, f.coding_code) IN (SELECT system, code FROM visible)
               ) AS unknown
           )
           SELECT u.unknown AS "unknown!", c.row_count AS "rows?", f.id AS "id?", f.object_path AS "object_path?",
                  f.state AS "state?: FileState", f.coding_system AS "coding_system?",
                  f.coding_code AS "coding_code?", f.day AS "day?", f.row_count AS "row_count?",
                  f.size_bytes AS "size_bytes?", f.min_patient_id AS "min_patient_id?",
                  f.max_patient_id AS "max_patient_id?", f.min_effective_start AS "min_effective_start?",
                  f.max_effective_start AS "max_effective_start?", f.max_effective_end,
                  f.min_last_updated AS "min_last_updated?", f.max_last_updated AS "max_last_updated?",
                  f.compaction_level AS "compaction_level?", f.created_at AS "created_at?", f.published_at,
                  f.marked_at
           FROM uncounted u
           LEFT JOIN counted c ON true
           LEFT JOIN parquet_files f ON f.id = c.file_id"#,
        &systems,
        &codes,
        &patients,
    )
    .fetch_all(pool)
    .await?;
    if rows.iter().any(|row| row.unknown) {
        return Ok(None);
    }
    Ok(Some(
        rows.into_iter()
            .filter_map(|row| {
                Some(FileRows {
                    rows: row.rows?,
                    file: ParquetFileRow {
                        id: row.id?,
                        object_path: row.object_path?,
                        state: row.state?,
                        coding_system: row.coding_system?,
                        coding_code: row.coding_code?,
                        day: row.day?,
                        row_count: row.row_count?,
                        size_bytes: row.size_bytes?,
                        min_patient_id: row.min_patient_id?,
                        max_patient_id: row.max_patient_id?,
                        min_effective_start: row.min_effective_start?,
                        max_effective_start: row.max_effective_start?,
                        max_effective_end: row.max_effective_end,
                        min_last_updated: row.min_last_updated?,
                        max_last_updated: row.max_last_updated?,
                        compaction_level: row.compaction_level?,
                        created_at: row.created_at?,
                        published_at: row.published_at,
                        marked_at: row.marked_at,
                    },
                })
            })
            .collect(),
    ))
}

/// One published file and its rows of some (system, code, patient) triples ([`published_file_rows`]).
#[derive(Debug, Clone, PartialEq)]
pub struct FileRows {
    pub file: ParquetFileRow,
    pub rows: i64,
}

/// Published rows of one patient and code ([`published_patient_rows`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientRows {
    pub coding_system: String,
    pub coding_code: String,
    pub patient_id: i64,
    pub rows: i64,
}

/// [`NewParquetFile`]s as one array per column, for `UNNEST`.
struct FileColumns {
    id: Vec<Uuid>,
    object_path: Vec<String>,
    coding_system: Vec<String>,
    coding_code: Vec<String>,
    day: Vec<NaiveDate>,
    row_count: Vec<i64>,
    size_bytes: Vec<i64>,
    min_patient_id: Vec<i64>,
    max_patient_id: Vec<i64>,
    min_effective_start: Vec<DateTime<Utc>>,
    max_effective_start: Vec<DateTime<Utc>>,
    max_effective_end: Vec<Option<DateTime<Utc>>>,
    min_last_updated: Vec<DateTime<Utc>>,
    max_last_updated: Vec<DateTime<Utc>>,
    compaction_level: Vec<i32>,
    patient_rows_known: Vec<bool>,
}

impl FileColumns {
    fn new(files: &[NewParquetFile]) -> Self {
        Self {
            id: files.iter().map(|f| f.id).collect(),
            object_path: files.iter().map(|f| f.object_path.clone()).collect(),
            coding_system: files.iter().map(|f| f.coding_system.clone()).collect(),
            coding_code: files.iter().map(|f| f.coding_code.clone()).collect(),
            day: files.iter().map(|f| f.day).collect(),
            row_count: files.iter().map(|f| f.row_count).collect(),
            size_bytes: files.iter().map(|f| f.size_bytes).collect(),
            min_patient_id: files.iter().map(|f| f.min_patient_id).collect(),
            max_patient_id: files.iter().map(|f| f.max_patient_id).collect(),
            min_effective_start: files.iter().map(|f| f.min_effective_start).collect(),
            max_effective_start: files.iter().map(|f| f.max_effective_start).collect(),
            max_effective_end: files.iter().map(|f| f.max_effective_end).collect(),
            min_last_updated: files.iter().map(|f| f.min_last_updated).collect(),
            max_last_updated: files.iter().map(|f| f.max_last_updated).collect(),
            compaction_level: files.iter().map(|f| f.compaction_level).collect(),
            patient_rows_known: files.iter().map(|f| !f.patient_rows.is_empty()).collect(),
        }
    }
}

/// The commit point of a processor batch, in one transaction: checks that every partition's stored next offset is
/// `delta.from` (a missing row counts as `from`: the partition was never processed), moves it to `delta.to`, and
/// flips `file_ids` from staged to published. Either all of it happens or none. `file_ids` may be empty (a batch
/// whose records were all rejected still moves the positions).
pub async fn publish(
    pool: &PgPool,
    topic: &str,
    deltas: &[PartitionDelta],
    file_ids: &[Uuid],
) -> Result<(), PublishError> {
    let mut deltas = deltas.to_vec();
    // One lock order for every writer (by partition), so concurrent publishes cannot deadlock.
    deltas.sort_by_key(|delta| delta.partition);
    for (index, delta) in deltas.iter().enumerate() {
        let reason = if index > 0 && deltas[index - 1].partition == delta.partition {
            Some("the partition is listed twice")
        } else if delta.from < 0 {
            Some("`from` is negative")
        } else if delta.from > delta.to {
            Some("`from` is past `to`")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(PublishError::InvalidDelta { partition: delta.partition, reason });
        }
    }
    let mut file_ids = file_ids.to_vec();
    file_ids.sort_unstable();
    file_ids.dedup();

    let partitions: Vec<i32> = deltas.iter().map(|delta| delta.partition).collect();
    let froms: Vec<i64> = deltas.iter().map(|delta| delta.from).collect();
    let tos: Vec<i64> = deltas.iter().map(|delta| delta.to).collect();

    let mut tx = pool.begin().await?;
    let transaction_id = current_transaction_id(&mut tx).await?;

    if !deltas.is_empty() {
        sqlx::query!(
            "INSERT INTO log_positions (topic, partition, next_offset)
             SELECT $1, d.partition, d.next_offset FROM UNNEST($2::int4[], $3::int8[]) AS d(partition, next_offset)
             ORDER BY d.partition
             ON CONFLICT (topic, partition) DO NOTHING",
            topic,
            &partitions,
            &froms,
        )
        .execute(&mut *tx)
        .await?;

        // The lock sits above the sort in the plan, so rows are locked in partition order.
        let stored = sqlx::query!(
            "SELECT partition, next_offset FROM log_positions
             WHERE topic = $1 AND partition = ANY($2)
             ORDER BY partition
             FOR UPDATE",
            topic,
            &partitions,
        )
        .fetch_all(&mut *tx)
        .await?;
        for delta in &deltas {
            let stored_offset = stored.iter().find(|row| row.partition == delta.partition).map(|row| row.next_offset);
            // The row was inserted or already existed above, and rows are never deleted: `None` cannot happen.
            let Some(stored_offset) = stored_offset else {
                return Err(PublishError::Database(sqlx::Error::RowNotFound));
            };
            if stored_offset != delta.from {
                tx.rollback().await?;
                return Err(PublishError::PositionMismatch {
                    partition: delta.partition,
                    stored: stored_offset,
                    expected: delta.from,
                });
            }
        }

        sqlx::query!(
            "UPDATE log_positions AS l SET next_offset = d.next_offset, updated_at = now()
             FROM UNNEST($2::int4[], $3::int8[]) AS d(partition, next_offset)
             WHERE l.topic = $1 AND l.partition = d.partition AND l.next_offset <> d.next_offset",
            topic,
            &partitions,
            &tos,
        )
        .execute(&mut *tx)
        .await?;
    }

    if !file_ids.is_empty() {
        let published: Vec<Uuid> = sqlx::query_scalar!(
            "UPDATE parquet_files SET state = 'published', published_at = now()
             WHERE id = ANY($1) AND state = 'staged'
             RETURNING id",
            &file_ids,
        )
        .fetch_all(&mut *tx)
        .await?;
        if published.len() != file_ids.len() {
            let published: HashSet<Uuid> = published.into_iter().collect();
            let missing = file_ids.iter().copied().find(|id| !published.contains(id));
            tx.rollback().await?;
            return Err(match missing {
                Some(id) => PublishError::FileNotStaged { id },
                // cannot happen (fewer rows than distinct ids means one is missing); kept total without a panic
                None => PublishError::Database(sqlx::Error::RowNotFound),
            });
        }
    }

    match commit(pool, tx, transaction_id).await {
        CommitOutcome::Committed => Ok(()),
        CommitOutcome::Failed(source) => Err(PublishError::Database(source)),
        CommitOutcome::Unknown(source) => Err(PublishError::CommitOutcomeUnknown { transaction_id, source }),
    }
}

/// The stored next offset of each of `partitions` of `topic`, in the order given; `None` for a partition never
/// published.
pub async fn positions(pool: &PgPool, topic: &str, partitions: &[i32]) -> Result<Vec<Option<i64>>> {
    let rows = sqlx::query!(
        "SELECT partition, next_offset FROM log_positions WHERE topic = $1 AND partition = ANY($2)",
        topic,
        partitions,
    )
    .fetch_all(pool)
    .await?;
    Ok(partitions
        .iter()
        .map(|partition| rows.iter().find(|row| row.partition == *partition).map(|row| row.next_offset))
        .collect())
}

/// What a query needs; every `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FileFilter {
    /// (coding system, coding code) pairs; an empty list matches no file.
    pub codes: Option<Vec<(String, String)>>,
    /// First UTC day (inclusive).
    pub from_day: Option<NaiveDate>,
    /// Last UTC day (inclusive).
    pub to_day: Option<NaiveDate>,
    /// Files that may hold rows of this patient (`min_patient_id <= p <= max_patient_id`).
    pub patient_id: Option<i64>,
}

impl FileFilter {
    /// Whether `file` passes the filter: [`published_files`]'s conditions (but its state), for a list of files
    /// already read from the catalog.
    pub fn admits(&self, file: &ParquetFileRow) -> bool {
        self.codes.as_ref().is_none_or(|codes| {
            codes.iter().any(|(system, code)| *system == file.coding_system && *code == file.coding_code)
        }) && self.from_day.is_none_or(|from| file.day >= from)
            && self.to_day.is_none_or(|to| file.day <= to)
            && self.patient_id.is_none_or(|patient| (file.min_patient_id..=file.max_patient_id).contains(&patient))
    }
}

/// The published files that may hold rows matching `filter`, ordered by (system, code, day, id); see
/// [`FileFilter::admits`] for the same conditions in Rust.
pub async fn published_files(pool: &PgPool, filter: &FileFilter) -> Result<Vec<ParquetFileRow>> {
    let (systems, codes): (Option<Vec<String>>, Option<Vec<String>>) = match &filter.codes {
        Some(pairs) => {
            let (systems, codes) = pairs.iter().cloned().unzip();
            (Some(systems), Some(codes))
        }
        None => (None, None),
    };
    let rows = sqlx::query_as!(
        ParquetFileRow,
        r#"SELECT id, object_path, state AS "state: FileState", coding_system, coding_code, day, row_count,
             size_bytes, min_patient_id, max_patient_id, min_effective_start, max_effective_start, max_effective_end,
             min_last_updated, max_last_updated, compaction_level, created_at, published_at, marked_at
         FROM parquet_files
         WHERE state = 'published'
           AND ($1::text[] IS NULL OR (coding_system, coding_code) IN
                   (SELECT c.system, c.code FROM UNNEST($1::text[], $2::text[]) AS c(system, code)))
           AND ($3::date IS NULL OR day >= $3)
           AND ($4::date IS NULL OR day <= $4)
           AND ($5::int8 IS NULL OR (min_patient_id <= $5 AND max_patient_id >= $5))
         ORDER BY coding_system, coding_code, day, id"#,
        systems.as_deref() as Option<&[String]>,
        codes.as_deref() as Option<&[String]>,
        filter.from_day,
        filter.to_day,
        filter.patient_id,
    )
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

/// One file by id, in any state.
pub async fn parquet_file(pool: &PgPool, id: Uuid) -> Result<Option<ParquetFileRow>> {
    let row = sqlx::query_as!(
        ParquetFileRow,
        r#"SELECT id, object_path, state AS "state: FileState", coding_system, coding_code, day, row_count,
             size_bytes, min_patient_id, max_patient_id, min_effective_start, max_effective_start, max_effective_end,
             min_last_updated, max_last_updated, compaction_level, created_at, published_at, marked_at
         FROM parquet_files WHERE id = $1"#,
        id,
    )
    .fetch_optional(pool)
    .await?;
    Ok(row)
}

async fn current_transaction_id(tx: &mut Transaction<'static, Postgres>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"SELECT pg_current_xact_id()::text::int8 AS "id!""#).fetch_one(&mut **tx).await
}

enum CommitOutcome {
    Committed,
    /// The server answered `COMMIT` with an error, or says the transaction aborted: nothing was applied.
    Failed(sqlx::Error),
    Unknown(sqlx::Error),
}

/// How often, and after which first delay (doubling), a lost `COMMIT` is looked up while it is `in progress`.
const COMMIT_STATUS_ATTEMPTS: u32 = 5;
const COMMIT_STATUS_FIRST_DELAY: Duration = Duration::from_millis(100);

/// Commits `tx`, resolving a lost `COMMIT` through `pg_xact_status` (see the module notes).
async fn commit(pool: &PgPool, tx: Transaction<'static, Postgres>, transaction_id: i64) -> CommitOutcome {
    let source = match tx.commit().await {
        Ok(()) => return CommitOutcome::Committed,
        // The server answered: a failed COMMIT rolls the transaction back.
        Err(source @ sqlx::Error::Database(_)) => return CommitOutcome::Failed(source),
        Err(source) => source,
    };
    tracing::warn!(transaction_id, error = %source, "commit outcome unknown; asking the server");
    let mut delay = COMMIT_STATUS_FIRST_DELAY;
    for _ in 0..COMMIT_STATUS_ATTEMPTS {
        let status =
            sqlx::query_scalar!("SELECT pg_xact_status($1::int8::text::xid8)", transaction_id).fetch_one(pool).await;
        match status.as_ref().map(|status| status.as_deref()) {
            Ok(Some("committed")) => return CommitOutcome::Committed,
            Ok(Some("aborted")) => return CommitOutcome::Failed(source),
            // `in progress` (the server has not noticed the lost connection yet), or no answer: try again
            Ok(_) | Err(_) => {}
        }
        tokio::time::sleep(delay).await;
        delay = delay.saturating_mul(2);
    }
    CommitOutcome::Unknown(source)
}
