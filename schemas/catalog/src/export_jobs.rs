//! FHIR Bulk Data export jobs (`export_jobs`): created at kick-off, updated by the task that writes the files,
//! read by the status and file routes. Updates that end a job only apply to a running one, so a cancel that
//! arrives first wins over the task's late completion. A completed job's files are served until it expires or is
//! withdrawn (its caller lost the rights it was made under); then its files are deleted and its row says why.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::Result;

/// A job still writing its files.
pub const EXPORT_RUNNING: &str = "running";
/// Files written; `output` lists them.
pub const EXPORT_COMPLETED: &str = "completed";
/// Stopped by a server failure; `error` says why.
pub const EXPORT_FAILED: &str = "failed";
/// Cancelled by its user (the status then answers 404, as FHIR Bulk Data asks).
pub const EXPORT_CANCELLED: &str = "cancelled";
/// Past `expires_at`: its files are deleted.
pub const EXPORT_EXPIRED: &str = "expired";
/// Its user lost the rights it was made under (membership, role, a patient's consent): its files are deleted and
/// `error` says why.
pub const EXPORT_WITHDRAWN: &str = "withdrawn";

/// One export job.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ExportJob {
    pub id: String,
    pub user_id: i64,
    pub study_id: i64,
    pub request: String,
    /// `ndjson` or `parquet`.
    pub output_format: String,
    pub since: Option<DateTime<Utc>>,
    /// One of the `EXPORT_*` constants.
    pub status: String,
    pub instance: String,
    pub transaction_time: DateTime<Utc>,
    pub progress: Option<String>,
    /// `[{"type", "name", "count"}]` once completed.
    pub output: serde_json::Value,
    pub error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What the files hold, `{system: {code: [patient ids]}}`, recorded on completion.
    pub contents: serde_json::Value,
    /// When a completed job's files expire.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a kick-off records.
#[derive(Debug, Clone)]
pub struct NewExportJob<'a> {
    pub user_id: i64,
    pub study_id: i64,
    pub request: &'a str,
    pub output_format: &'a str,
    pub since: Option<DateTime<Utc>>,
    /// The process that will run the job.
    pub instance: &'a str,
}

const COLUMNS: &str = "id, user_id, study_id, request, output_format, since, status, instance, transaction_time, \
                       progress, output, error, finished_at, contents, expires_at";

/// Records a running job with a new random id.
pub async fn create_export_job(pool: &PgPool, job: &NewExportJob<'_>) -> Result<ExportJob> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let row = sqlx::query_as::<_, ExportJob>(sqlx::AssertSqlSafe(format!(
        "INSERT INTO export_jobs (id, user_id, study_id, request, output_format, since, status, instance,
                                  transaction_time)
         VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, now())
         RETURNING {COLUMNS}"
    )))
    .bind(&id)
    .bind(job.user_id)
    .bind(job.study_id)
    .bind(job.request)
    .bind(job.output_format)
    .bind(job.since)
    .bind(job.instance)
    .fetch_one(pool)
    .await?;
    Ok(row)
}

/// The job with this id, whoever owns it (the caller checks the owner).
pub async fn export_job(pool: &PgPool, id: &str) -> Result<Option<ExportJob>> {
    let row =
        sqlx::query_as::<_, ExportJob>(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM export_jobs WHERE id = $1")))
            .bind(id)
            .fetch_optional(pool)
            .await?;
    Ok(row)
}

/// How a running job ended.
#[derive(Debug, Clone)]
pub struct ExportOutcome<'a> {
    /// [`EXPORT_COMPLETED`] or [`EXPORT_FAILED`].
    pub status: &'a str,
    /// `[{"type", "name", "count"}]`: the files written.
    pub output: &'a serde_json::Value,
    /// What the files hold (see [`ExportJob::contents`]).
    pub contents: &'a serde_json::Value,
    pub error: Option<&'a str>,
    /// How long the files are kept from now.
    pub keep_for: std::time::Duration,
}

/// Ends a running job with `outcome`; `false` when the job was not running any more.
pub async fn finish_export_job(pool: &PgPool, id: &str, outcome: &ExportOutcome<'_>) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE export_jobs SET status = $2, output = $3, contents = $4, error = $5, finished_at = now(),
                                expires_at = now() + make_interval(secs => $6)
         WHERE id = $1 AND status = 'running'",
    )
    .bind(id)
    .bind(outcome.status)
    .bind(outcome.output)
    .bind(outcome.contents)
    .bind(outcome.error)
    .bind(outcome.keep_for.as_secs_f64())
    .execute(pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Cancels a job whatever its state (a finished job's files are no longer served). Returns the status the job had
/// when it was cancelled, read in the same statement: `None` when it was already cancelled or is unknown. A caller
/// must act on this status, not on one read before: a job read as running may have finished since, and then
/// nobody but the caller deletes its files.
pub async fn cancel_export_job(pool: &PgPool, id: &str) -> Result<Option<String>> {
    let previous: Option<String> = sqlx::query_scalar(
        "UPDATE export_jobs j SET status = 'cancelled', finished_at = coalesce(j.finished_at, now())
         FROM (SELECT id, status FROM export_jobs WHERE id = $1 FOR UPDATE) previous
         WHERE j.id = previous.id AND previous.status <> 'cancelled'
         RETURNING previous.status",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(previous)
}

/// Ends a job that is not over yet (running, completed or failed) as `status` ([`EXPORT_EXPIRED`] or
/// [`EXPORT_WITHDRAWN`]) with `reason` as its error; a running job's task finds out at its next heartbeat. Returns
/// the status the job had, read in the same statement (see [`cancel_export_job`]); `None` when it had already ended
/// otherwise.
pub async fn withdraw_export_job(pool: &PgPool, id: &str, status: &str, reason: &str) -> Result<Option<String>> {
    let previous: Option<String> = sqlx::query_scalar(
        "UPDATE export_jobs j SET status = $2, error = $3, finished_at = coalesce(j.finished_at, now())
         FROM (SELECT id, status FROM export_jobs WHERE id = $1 FOR UPDATE) previous
         WHERE j.id = previous.id AND previous.status IN ('running', 'completed', 'failed')
         RETURNING previous.status",
    )
    .bind(id)
    .bind(status)
    .bind(reason)
    .fetch_optional(pool)
    .await?;
    Ok(previous)
}

/// Marks expired the completed jobs whose `expires_at` has passed; returns how many.
pub async fn expire_export_jobs(pool: &PgPool) -> Result<u64> {
    let done =
        sqlx::query("UPDATE export_jobs SET status = 'expired' WHERE status = 'completed' AND expires_at <= now()")
            .execute(pool)
            .await?;
    Ok(done.rows_affected())
}

/// Up to `limit` expired or withdrawn jobs whose files are not known to be deleted yet.
pub async fn export_jobs_with_files_left(pool: &PgPool, limit: i64) -> Result<Vec<String>> {
    let ids = sqlx::query_scalar(
        "SELECT id FROM export_jobs
         WHERE status IN ('expired', 'withdrawn') AND files_deleted_at IS NULL
         ORDER BY id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(ids)
}

/// Records that the files of an expired or withdrawn job were deleted.
pub async fn export_files_deleted(pool: &PgPool, id: &str) -> Result<()> {
    sqlx::query("UPDATE export_jobs SET files_deleted_at = now() WHERE id = $1 AND files_deleted_at IS NULL")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// A running job's sign of life, with its progress text; returns whether the job is still running (`false`:
/// cancelled, or failed as stale by another process, and the task should stop).
pub async fn export_heartbeat(pool: &PgPool, id: &str, progress: &str) -> Result<bool> {
    let still_running =
        sqlx::query("UPDATE export_jobs SET heartbeat_at = now(), progress = $2 WHERE id = $1 AND status = 'running'")
            .bind(id)
            .bind(progress)
            .execute(pool)
            .await?;
    Ok(still_running.rows_affected() > 0)
}

/// Marks failed the running jobs (all, or the one `id`) whose heartbeat is older than `stale_after`: their
/// process is gone. Returns how many. Safe with several replicas: a live job's heartbeat is never that old.
pub async fn fail_stale_export_jobs(pool: &PgPool, stale_after: std::time::Duration, id: Option<&str>) -> Result<u64> {
    let done = sqlx::query(
        "UPDATE export_jobs
         SET status = 'failed', error = 'the server stopped while the export was running; start it again',
             finished_at = now()
         WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => $1)
           AND ($2::text IS NULL OR id = $2)",
    )
    .bind(stale_after.as_secs_f64())
    .bind(id)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
