//! Observation ids and identifier dedupe: the two things about observations that must be agreed on across ingest
//! replicas and processors, so they live in Postgres (the rows themselves live in Parquet).

use crate::Result;
use sqlx::PgPool;
use std::collections::HashMap;

/// Ids in one block (`observation_id_blocks` hands out block numbers; block `b` covers
/// `b * ID_BLOCK_SIZE .. (b + 1) * ID_BLOCK_SIZE`).
pub const ID_BLOCK_SIZE: i64 = 1 << 16;

/// Takes a fresh block of observation ids: `[start, start + ID_BLOCK_SIZE)`, never handed out before.
pub async fn next_observation_id_block(pool: &PgPool) -> Result<i64> {
    let block: i64 =
        sqlx::query_scalar!(r#"SELECT nextval('observation_id_blocks') AS "block!""#).fetch_one(pool).await?;
    Ok(block * ID_BLOCK_SIZE)
}

/// One identifier claim: `(system, value)` for `observation_id`. A missing system is stored as `''`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdentifierClaim {
    pub system: String,
    pub value: String,
    pub observation_id: i64,
}

/// Reserves every claim whose `(system, value)` is still free, in one statement. Returns, for each claim in
/// order, whether it now belongs to its observation (true also when it already did: replays are idempotent).
/// When two claims in `claims` name the same pair, the first one wins.
pub async fn reserve_identifiers(pool: &PgPool, claims: &[IdentifierClaim]) -> Result<Vec<bool>> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let systems: Vec<&str> = claims.iter().map(|c| c.system.as_str()).collect();
    let values: Vec<&str> = claims.iter().map(|c| c.value.as_str()).collect();
    let ids: Vec<i64> = claims.iter().map(|c| c.observation_id).collect();
    // Insert the free pairs (the first claim per pair wins: DISTINCT ON keeps the lowest ordinality), then read
    // the owner of every pair in the same statement.
    let owners = sqlx::query!(
        r#"
        WITH claim AS (
            SELECT system, value, observation_id, ord
            FROM unnest($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS c(system, value, observation_id, ord)
        ), first_claim AS (
            SELECT DISTINCT ON (system, value) system, value, observation_id FROM claim ORDER BY system, value, ord
        ), inserted AS (
            INSERT INTO observation_identifiers (system, value, observation_id)
            SELECT system, value, observation_id FROM first_claim
            ON CONFLICT (system, value) DO NOTHING
            RETURNING system, value, observation_id
        )
        SELECT claim.ord AS "ord!",
               COALESCE(inserted.observation_id, existing.observation_id) AS "owner"
        FROM claim
        LEFT JOIN inserted ON inserted.system = claim.system AND inserted.value = claim.value
        LEFT JOIN observation_identifiers existing
               ON existing.system = claim.system AND existing.value = claim.value
        ORDER BY claim.ord
        "#,
        &systems as &[&str],
        &values as &[&str],
        &ids,
    )
    .fetch_all(pool)
    .await?;
    Ok(owners.iter().zip(claims).map(|(row, claim)| row.owner == Some(claim.observation_id)).collect())
}

/// Releases claims of observations that were never acknowledged (the log write failed after the reservation).
pub async fn release_identifiers(pool: &PgPool, claims: &[IdentifierClaim]) -> Result<u64> {
    if claims.is_empty() {
        return Ok(0);
    }
    let systems: Vec<&str> = claims.iter().map(|c| c.system.as_str()).collect();
    let values: Vec<&str> = claims.iter().map(|c| c.value.as_str()).collect();
    let ids: Vec<i64> = claims.iter().map(|c| c.observation_id).collect();
    let done = sqlx::query!(
        r#"
        DELETE FROM observation_identifiers o
        USING unnest($1::text[], $2::text[], $3::int8[]) AS c(system, value, observation_id)
        WHERE o.system = c.system AND o.value = c.value AND o.observation_id = c.observation_id
        "#,
        &systems as &[&str],
        &values as &[&str],
        &ids,
    )
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The owners of the given `(system, value)` pairs that are taken (pairs not in the map are free).
pub async fn identifier_owners(pool: &PgPool, pairs: &[(String, String)]) -> Result<HashMap<(String, String), i64>> {
    if pairs.is_empty() {
        return Ok(HashMap::new());
    }
    let systems: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
    let values: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
    let rows = sqlx::query!(
        r#"
        SELECT o.system, o.value, o.observation_id
        FROM observation_identifiers o
        JOIN unnest($1::text[], $2::text[]) AS c(system, value) ON o.system = c.system AND o.value = c.value
        "#,
        &systems as &[&str],
        &values as &[&str],
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|r| ((r.system, r.value), r.observation_id)).collect())
}
