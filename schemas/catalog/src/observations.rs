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
///
/// This is on every upload's path, so a clean request (every pair free: the normal case) costs one statement that
/// inserts and sends nothing back. Only pairs that were already taken come back, and only their owners are read
/// again, in a second statement that sees every committed claim (a concurrent upload's included).
pub async fn reserve_identifiers(pool: &PgPool, claims: &[IdentifierClaim]) -> Result<Vec<bool>> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    // distinct pairs, each with the id of its first claim, and the pair of every claim
    let mut pair_of_claim: Vec<usize> = Vec::with_capacity(claims.len());
    let mut firsts: Vec<&IdentifierClaim> = Vec::with_capacity(claims.len());
    {
        let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(claims.len());
        for claim in claims {
            let pair = *seen.entry((claim.system.as_str(), claim.value.as_str())).or_insert_with(|| {
                firsts.push(claim);
                firsts.len() - 1
            });
            pair_of_claim.push(pair);
        }
    }
    // Insert in one global order (bytewise by pair): two requests racing for overlapping pairs then wait on each
    // other in the same order and cannot deadlock.
    let mut order: Vec<usize> = (0..firsts.len()).collect();
    order.sort_unstable_by(|&a, &b| (&firsts[a].system, &firsts[a].value).cmp(&(&firsts[b].system, &firsts[b].value)));
    let systems: Vec<&str> = order.iter().map(|&pair| firsts[pair].system.as_str()).collect();
    let values: Vec<&str> = order.iter().map(|&pair| firsts[pair].value.as_str()).collect();
    let ids: Vec<i64> = order.iter().map(|&pair| firsts[pair].observation_id).collect();
    // Back come the ordinals (in `order`) of the pairs that were not inserted, and only when fewer were inserted
    // than tried. MATERIALIZED keeps `claim` to one evaluation (the insert and the check read the same rows).
    let taken: Vec<i64> = sqlx::query_scalar!(
        r#"
        WITH claim AS MATERIALIZED (
            SELECT system, value, observation_id, ord
            FROM unnest($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS c(system, value, observation_id, ord)
        ), inserted AS (
            INSERT INTO observation_identifiers (system, value, observation_id)
            SELECT system, value, observation_id FROM claim
            ON CONFLICT (system, value) DO NOTHING
            RETURNING system, value
        )
        SELECT claim.ord AS "ord!" FROM claim
        WHERE (SELECT count(*) FROM inserted) < (SELECT count(*) FROM claim)
          AND NOT EXISTS (
              SELECT 1 FROM inserted WHERE inserted.system = claim.system AND inserted.value = claim.value
          )
        "#,
        &systems as &[&str],
        &values as &[&str],
        &ids,
    )
    .fetch_all(pool)
    .await?;

    // The owner of every pair: its first claim's id, unless it was taken already.
    let mut owner: Vec<Option<i64>> = firsts.iter().map(|claim| Some(claim.observation_id)).collect();
    if !taken.is_empty() {
        let mut uncertain = Vec::with_capacity(taken.len());
        for ord in taken {
            let pair = usize::try_from(ord - 1)
                .ok()
                .and_then(|position| order.get(position).copied())
                .ok_or_else(|| sqlx::Error::Protocol(format!("identifier claim ordinal {ord} out of range")))?;
            uncertain.push(pair);
        }
        // A fresh statement sees every committed claim. A pair whose owner was released meanwhile reads as free
        // and is not granted: the upload is refused as a duplicate, as it would have been a moment earlier.
        let pairs: Vec<(String, String)> =
            uncertain.iter().map(|&pair| (firsts[pair].system.clone(), firsts[pair].value.clone())).collect();
        let owners = identifier_owners(pool, &pairs).await?;
        for (&pair, key) in uncertain.iter().zip(&pairs) {
            owner[pair] = owners.get(key).copied();
        }
    }
    Ok(claims.iter().zip(&pair_of_claim).map(|(claim, &pair)| owner[pair] == Some(claim.observation_id)).collect())
}

/// One identifier claim borrowed from the record that carries it (see [`claim_identifiers`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentifierClaimRef<'a> {
    pub system: &'a str,
    pub value: &'a str,
    pub observation_id: i64,
}

/// The processor's claims: the same outcome as [`reserve_identifiers`] — the first claim of a free pair wins, and a
/// claim is granted when its pair belongs to its observation (a replay, or the claim ingest made for the id it
/// assigned) — at a fraction of the cost for large batches. Returns the positions in `claims` of the claims **not**
/// granted, in order (normally none).
///
/// * Each distinct pair goes to the database once (its first claim); later claims of the pair in `claims` are
///   granted exactly when the pair ends up with their id.
/// * Pairs whose first claim has an id below `claimed_upstream_below` (ingest claims the pairs of the ids it assigns
///   before the record reaches the log) are verified by reading the owner: no write when it is that id.
/// * The others, and upstream pairs that are missing (ingest released them after an ambiguous log failure), are
///   inserted where free. Only when some insert met a taken pair (a replay, a duplicate) are those pairs sent back;
///   their owners are then read again, after the insert, so a claim committed meanwhile by a concurrent writer —
///   another processor replaying the same records — is seen.
///
/// A clean batch of any size is answered with no rows.
pub async fn claim_identifiers(
    pool: &PgPool,
    claims: &[IdentifierClaimRef<'_>],
    claimed_upstream_below: i64,
) -> Result<Vec<usize>> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    // distinct pairs in order of first appearance, and the pair of every claim
    let mut pair_of_claim: Vec<usize> = Vec::with_capacity(claims.len());
    let mut firsts: Vec<IdentifierClaimRef<'_>> = Vec::with_capacity(claims.len());
    {
        let mut seen: HashMap<(&str, &str), usize> = HashMap::with_capacity(claims.len());
        for claim in claims {
            let pair = *seen.entry((claim.system, claim.value)).or_insert_with(|| {
                firsts.push(*claim);
                firsts.len() - 1
            });
            pair_of_claim.push(pair);
        }
    }
    let systems: Vec<&str> = firsts.iter().map(|c| c.system).collect();
    let values: Vec<&str> = firsts.iter().map(|c| c.value).collect();
    let ids: Vec<i64> = firsts.iter().map(|c| c.observation_id).collect();

    let mut tx = pool.begin().await?;
    // The planner cannot know the sizes of the CTEs below; its estimates would switch on JIT compilation (hundreds
    // of ms for one batch) and spill sorts to disk.
    sqlx::query("SELECT set_config('jit', 'off', true), set_config('work_mem', '32MB', true)")
        .execute(&mut *tx)
        .await?;
    // `known`: upstream pairs and their owners (an index probe each, no write); `inserted`: the other pairs, where
    // free. Back come known pairs owned by another id (with that owner) and — only if fewer pairs were inserted
    // than tried — the pairs that were not (owner unknown here: taken before this statement's snapshot or during
    // it). MATERIALIZED keeps every CTE to one evaluation.
    let rows: Vec<(i64, Option<i64>)> = sqlx::query_as(
        r#"
        WITH claim AS MATERIALIZED (
            SELECT system, value, observation_id, ord
            FROM unnest($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS c(system, value, observation_id, ord)
        ), known AS MATERIALIZED (
            SELECT claim.ord, claim.observation_id, existing.observation_id AS owner
            FROM claim
            JOIN observation_identifiers existing
              ON existing.system = claim.system AND existing.value = claim.value
            WHERE claim.observation_id < $4
        ), inserted AS (
            INSERT INTO observation_identifiers (system, value, observation_id)
            SELECT system, value, observation_id FROM claim
            WHERE claim.ord NOT IN (SELECT ord FROM known)
            ON CONFLICT (system, value) DO NOTHING
            RETURNING system, value
        )
        SELECT ord, owner FROM known WHERE owner <> observation_id
        UNION ALL
        SELECT claim.ord, NULL::int8 FROM claim
        WHERE (SELECT count(*) FROM inserted) < (SELECT count(*) FROM claim) - (SELECT count(*) FROM known)
          AND claim.ord NOT IN (SELECT ord FROM known)
          AND NOT EXISTS (
              SELECT 1 FROM inserted WHERE inserted.system = claim.system AND inserted.value = claim.value
          )
        "#,
    )
    .bind(&systems)
    .bind(&values)
    .bind(&ids)
    .bind(claimed_upstream_below)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    // The owner of every pair: its first claim's id unless the database said otherwise.
    let mut owner: Vec<Option<i64>> = ids.iter().copied().map(Some).collect();
    let mut uncertain: Vec<usize> = Vec::new();
    for (ord, known_owner) in rows {
        let pair = usize::try_from(ord - 1)
            .ok()
            .filter(|&pair| pair < firsts.len())
            .ok_or_else(|| sqlx::Error::Protocol(format!("identifier claim ordinal {ord} out of range")))?;
        match known_owner {
            Some(known) => owner[pair] = Some(known),
            None => uncertain.push(pair),
        }
    }
    if !uncertain.is_empty() {
        // A fresh statement sees every committed claim, ours included.
        let pairs: Vec<(String, String)> =
            uncertain.iter().map(|&pair| (firsts[pair].system.to_owned(), firsts[pair].value.to_owned())).collect();
        let owners = identifier_owners(pool, &pairs).await?;
        for (&pair, key) in uncertain.iter().zip(&pairs) {
            owner[pair] = owners.get(key).copied();
        }
    }
    Ok(claims
        .iter()
        .zip(&pair_of_claim)
        .enumerate()
        .filter(|(_, (claim, pair))| owner[**pair] != Some(claim.observation_id))
        .map(|(position, _)| position)
        .collect())
}

/// [`claim_identifiers`] as `parts` statements at once, each on its own connection. Every pair goes to one part (by
/// a hash of the pair) with all of its claims, in their order, so each pair is decided by one statement exactly as in
/// [`claim_identifiers`] and the outcome is the same; a large batch is checked in a fraction of the time while the
/// server has idle cores. Returns the positions in `claims` of the claims not granted, in order.
pub async fn claim_identifiers_in_parts(
    pool: &PgPool,
    claims: &[IdentifierClaimRef<'_>],
    claimed_upstream_below: i64,
    parts: usize,
) -> Result<Vec<usize>> {
    if parts <= 1 {
        return claim_identifiers(pool, claims, claimed_upstream_below).await;
    }
    // per part: its claims, and the position in `claims` of each
    let mut split: Vec<(Vec<IdentifierClaimRef<'_>>, Vec<usize>)> =
        (0..parts).map(|_| (Vec::new(), Vec::new())).collect();
    let by_pair = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default();
    for (position, claim) in claims.iter().enumerate() {
        let part = (std::hash::BuildHasher::hash_one(&by_pair, (claim.system, claim.value)) % parts as u64) as usize;
        split[part].0.push(*claim);
        split[part].1.push(position);
    }
    let answers = futures::future::try_join_all(
        split.iter().map(|(part, _)| claim_identifiers(pool, part, claimed_upstream_below)),
    )
    .await?;
    let mut refused: Vec<usize> = answers
        .into_iter()
        .zip(&split)
        .flat_map(|(refused, (_, positions))| refused.into_iter().map(|in_part| positions[in_part]))
        .collect();
    refused.sort_unstable();
    Ok(refused)
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
