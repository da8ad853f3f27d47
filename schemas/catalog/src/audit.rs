//! The audit trail (`audit_events`): appended in batches, read back by operators.

use crate::Result;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

/// One audited request.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub user_id: Option<i64>,
    /// `read`, `search`, `export` or `analytics`.
    pub action: String,
    pub resource_type: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: i16,
    pub row_count: Option<i64>,
    pub duration_us: i64,
    pub request_id: Option<String>,
}

/// Appends `events` in one statement.
pub async fn insert_audit_events(pool: &PgPool, events: &[AuditEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&AuditEvent) -> String| events.iter().map(f).collect::<Vec<_>>();
    let at: Vec<DateTime<Utc>> = events.iter().map(|e| e.at).collect();
    let user_id: Vec<Option<i64>> = events.iter().map(|e| e.user_id).collect();
    let status: Vec<i16> = events.iter().map(|e| e.status).collect();
    let row_count: Vec<Option<i64>> = events.iter().map(|e| e.row_count).collect();
    let duration_us: Vec<i64> = events.iter().map(|e| e.duration_us).collect();
    let request_id: Vec<Option<String>> = events.iter().map(|e| e.request_id.clone()).collect();
    sqlx::query(
        "INSERT INTO audit_events
             (at, user_id, action, resource_type, method, path, query, status, row_count, duration_us, request_id)
         SELECT * FROM unnest($1::timestamptz[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
                              $7::text[], $8::int2[], $9::int8[], $10::int8[], $11::text[])",
    )
    .bind(&at)
    .bind(&user_id)
    .bind(column(|e| e.action.clone()))
    .bind(column(|e| e.resource_type.clone()))
    .bind(column(|e| e.method.clone()))
    .bind(column(|e| e.path.clone()))
    .bind(column(|e| e.query.clone()))
    .bind(&status)
    .bind(&row_count)
    .bind(&duration_us)
    .bind(&request_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Which audit events to list (newest first).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub user_id: Option<i64>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// Events matching `filter`, newest first, `offset`/`limit` paged, with the total count.
pub async fn audit_events(
    pool: &PgPool,
    filter: &AuditFilter,
    offset: i64,
    limit: i64,
) -> Result<(i64, Vec<(i64, AuditEvent)>)> {
    const WHERE: &str = "($1::int8 IS NULL OR user_id = $1) AND ($2::text IS NULL OR action = $2)
         AND ($3::text IS NULL OR resource_type = $3) AND ($4::timestamptz IS NULL OR at >= $4)
         AND ($5::timestamptz IS NULL OR at < $5)";
    let total: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM audit_events WHERE {WHERE}")))
            .bind(filter.user_id)
            .bind(&filter.action)
            .bind(&filter.resource_type)
            .bind(filter.since)
            .bind(filter.until)
            .fetch_one(pool)
            .await?;
    #[derive(sqlx::FromRow)]
    struct Row {
        id: i64,
        #[sqlx(flatten)]
        event: AuditEvent,
    }
    let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT id, at, user_id, action, resource_type, method, path, query, status, row_count, duration_us,
                request_id
         FROM audit_events WHERE {WHERE} ORDER BY at DESC, id DESC OFFSET $6 LIMIT $7"
    )))
    .bind(filter.user_id)
    .bind(&filter.action)
    .bind(&filter.resource_type)
    .bind(filter.since)
    .bind(filter.until)
    .bind(offset)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok((total, rows.into_iter().map(|row| (row.id, row.event)).collect()))
}
