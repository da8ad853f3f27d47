//! Data sources (devices and apps that produce observations), the scope codes they support, and the code
//! vocabulary itself (`codeable_concepts`, read-only over REST).

use crate::{Error, Page, PageRequest, Result};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool};

/// A scope code (jhe-compat §5.1 CodeableConcept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct CodeableConcept {
    pub id: i64,
    pub coding_system: String,
    pub coding_code: String,
    pub text: String,
}

/// A data source with the scope codes it supports (jhe-compat §5.1 DataSource).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DataSource {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    #[sqlx(json)]
    pub supported_scopes: Vec<CodeableConcept>,
}

/// The data source columns, as a link row nests them (`depth=1`: the model's own columns, no relations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct DataSourceColumns {
    pub id: i64,
    pub name: String,
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    #[serde(serialize_with = "crate::wire::serialize_drf_datetime")]
    pub last_updated: chrono::DateTime<chrono::Utc>,
}

/// A `data_source_supported_scopes` row with both sides nested.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct DataSourceSupportedScope {
    pub id: i64,
    #[sqlx(json)]
    pub data_source: DataSourceColumns,
    #[sqlx(json)]
    pub scope_code: CodeableConcept,
}

/// `d` is `data_sources`; supported scopes are ordered by text, as the reference does.
pub(crate) const DATA_SOURCE_SELECT: &str = "SELECT d.id, d.name, d.type,
        COALESCE((SELECT jsonb_agg(jsonb_build_object('id', c.id, 'coding_system', c.coding_system,
                                                      'coding_code', c.coding_code, 'text', c.text)
                                   ORDER BY c.text, c.id)
                  FROM data_source_supported_scopes s JOIN codeable_concepts c ON c.id = s.scope_code_id
                  WHERE s.data_source_id = d.id), '[]'::jsonb) AS supported_scopes
    FROM data_sources d";

pub async fn list_data_sources(pool: &PgPool, page: PageRequest) -> Result<Page<DataSource>> {
    let count = sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM data_sources"#).fetch_one(pool).await?;
    let items = sqlx::query_as(AssertSqlSafe(format!("{DATA_SOURCE_SELECT} ORDER BY d.name, d.id LIMIT $1 OFFSET $2")))
        .bind(page.limit())
        .bind(page.offset())
        .fetch_all(pool)
        .await?;
    Ok(Page { count, items })
}

pub async fn get_data_source(pool: &PgPool, id: i64) -> Result<DataSource> {
    sqlx::query_as(AssertSqlSafe(format!("{DATA_SOURCE_SELECT} WHERE d.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(Error::NotFound { entity: "DataSource" })
}

/// `kind` must already be a valid `data_sources.type` code.
pub async fn create_data_source(pool: &PgPool, name: &str, kind: &str) -> Result<DataSource> {
    let id = sqlx::query_scalar!(
        r#"INSERT INTO data_sources (name, type) VALUES ($1, $2) RETURNING id AS "id!""#,
        name,
        kind
    )
    .fetch_one(pool)
    .await?;
    get_data_source(pool, id).await
}

pub async fn update_data_source(pool: &PgPool, id: i64, name: Option<&str>, kind: Option<&str>) -> Result<DataSource> {
    let updated = sqlx::query!(
        "UPDATE data_sources SET name = COALESCE($2, name), type = COALESCE($3, type), last_updated = now()
         WHERE id = $1",
        id,
        name,
        kind,
    )
    .execute(pool)
    .await?;
    if updated.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "DataSource" });
    }
    get_data_source(pool, id).await
}

/// Deletes a data source with its supported scopes and client links. A data source that a study still uses is
/// refused (409) rather than silently dropped from the study: the study's consent screen lists its data
/// sources, so removing one is a decision about the study, taken there first.
pub async fn delete_data_source(pool: &PgPool, id: i64) -> Result<()> {
    let mut tx = pool.begin().await?;
    // the row lock makes a concurrent link to a study wait until this delete has decided
    let locked = sqlx::query_scalar!("SELECT id FROM data_sources WHERE id = $1 FOR UPDATE", id)
        .fetch_optional(&mut *tx)
        .await?;
    if locked.is_none() {
        return Err(Error::NotFound { entity: "DataSource" });
    }
    let studies = sqlx::query!(
        "SELECT s.id, s.name FROM study_data_sources sd JOIN studies s ON s.id = sd.study_id
         WHERE sd.data_source_id = $1 ORDER BY s.id",
        id,
    )
    .fetch_all(&mut *tx)
    .await?;
    if !studies.is_empty() {
        let names: Vec<String> = studies.iter().map(|study| format!("{} ({})", study.name, study.id)).collect();
        return Err(Error::Conflict(format!(
            "data source {id} is used by the studies {}; remove it from them first \
             (DELETE /api/v1/studies/{{id}}/data_sources)",
            names.join(", ")
        )));
    }
    sqlx::query!("DELETE FROM data_sources WHERE id = $1", id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Every scope code, ordered by text.
pub async fn all_scope_codes(pool: &PgPool) -> Result<Vec<CodeableConcept>> {
    Ok(sqlx::query_as!(
        CodeableConcept,
        "SELECT c.id, c.coding_system, c.coding_code, c.text FROM codeable_concepts c ORDER BY c.text, c.id"
    )
    .fetch_all(pool)
    .await?)
}

const SUPPORTED_SCOPE_SELECT: &str = "SELECT s.id,
        jsonb_build_object('id', d.id, 'name', d.name, 'type', d.type, 'last_updated', d.last_updated) AS data_source,
        jsonb_build_object('id', c.id, 'coding_system', c.coding_system, 'coding_code', c.coding_code, 'text', c.text)
            AS scope_code
    FROM data_source_supported_scopes s
    JOIN data_sources d ON d.id = s.data_source_id
    JOIN codeable_concepts c ON c.id = s.scope_code_id";

/// The supported-scope rows of a data source, ordered by id.
pub async fn data_source_supported_scopes(pool: &PgPool, data_source_id: i64) -> Result<Vec<DataSourceSupportedScope>> {
    get_data_source(pool, data_source_id).await?;
    Ok(sqlx::query_as(AssertSqlSafe(format!("{SUPPORTED_SCOPE_SELECT} WHERE s.data_source_id = $1 ORDER BY s.id")))
        .bind(data_source_id)
        .fetch_all(pool)
        .await?)
}

/// Adds a scope code to what a data source supports.
pub async fn add_supported_scope(
    pool: &PgPool,
    data_source_id: i64,
    scope_code_id: i64,
) -> Result<DataSourceSupportedScope> {
    get_data_source(pool, data_source_id).await?;
    let code_exists = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM codeable_concepts WHERE id = $1) AS "exists!""#,
        scope_code_id
    )
    .fetch_one(pool)
    .await?;
    if !code_exists {
        return Err(Error::Invalid(format!("scopeCodeId: scope code {scope_code_id} does not exist")));
    }
    let id = sqlx::query_scalar!(
        r#"INSERT INTO data_source_supported_scopes (data_source_id, scope_code_id) VALUES ($1, $2)
         ON CONFLICT DO NOTHING RETURNING id AS "id!""#,
        data_source_id,
        scope_code_id,
    )
    .fetch_optional(pool)
    .await?;
    let Some(id) = id else {
        return Err(Error::Conflict(format!(
            "data source {data_source_id} already supports scope code {scope_code_id}"
        )));
    };
    Ok(sqlx::query_as(AssertSqlSafe(format!("{SUPPORTED_SCOPE_SELECT} WHERE s.id = $1")))
        .bind(id)
        .fetch_one(pool)
        .await?)
}

pub async fn remove_supported_scope(pool: &PgPool, data_source_id: i64, scope_code_id: i64) -> Result<()> {
    get_data_source(pool, data_source_id).await?;
    let removed = sqlx::query!(
        "DELETE FROM data_source_supported_scopes WHERE data_source_id = $1 AND scope_code_id = $2",
        data_source_id,
        scope_code_id,
    )
    .execute(pool)
    .await?;
    if removed.rows_affected() == 0 {
        return Err(Error::NotFound { entity: "DataSourceSupportedScope" });
    }
    Ok(())
}
