//! Identifier claims against a real Postgres: the processor's `claim_identifiers` grants exactly what
//! `reserve_identifiers` grants (first claim of a pair wins, a replay of the same id is accepted again), whether the
//! pair was claimed upstream by ingest, released after an ambiguous log failure, or never seen.
//! The server comes from `JHE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`); each test uses a
//! fresh database with a random name and drops it afterwards.

use jhe_catalog::{
    IdentifierClaim, IdentifierClaimRef, claim_identifiers, claim_identifiers_in_parts, connect,
    create_database_if_missing, identifier_owners, migrate, release_identifiers, reserve_identifiers,
};
use sqlx::{Connection, PgConnection, PgPool};
use url::Url;

/// Ids below this were assigned (and their identifiers claimed) by ingest; the processor's gateway ids are above.
const UPSTREAM_BELOW: i64 = 1 << 62;
const GATEWAY: i64 = 1 << 62;

fn database_url(name: &str) -> Url {
    let base =
        std::env::var("JHE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string());
    let mut url = Url::parse(&base).expect("JHE_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url
}

/// A fresh, migrated database, dropped with the value (also when the test panics).
struct TestDb {
    name: String,
    pool: PgPool,
}

impl TestDb {
    async fn create() -> Self {
        let name = format!("jhe_identifiers_test_{:016x}", rand::random::<u64>());
        let url = database_url(&name);
        assert!(create_database_if_missing(url.as_str()).await.expect("create the test database"));
        let pool = connect(url.as_str(), 4).await.expect("connect to the test database");
        migrate(&pool).await.expect("migrate the test database");
        TestDb { name, pool }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await: a short-lived runtime on its own thread removes the database.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(database_url("postgres").as_str())
                    .await
                    .expect("connect to the `postgres` database");
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                    .execute(&mut admin)
                    .await
                    .expect("drop the test database");
            });
        })
        .join();
    }
}

fn claim(system: &str, value: &str, observation_id: i64) -> IdentifierClaim {
    IdentifierClaim { system: system.to_owned(), value: value.to_owned(), observation_id }
}

fn refs(claims: &[IdentifierClaim]) -> Vec<IdentifierClaimRef<'_>> {
    claims
        .iter()
        .map(|c| IdentifierClaimRef { system: &c.system, value: &c.value, observation_id: c.observation_id })
        .collect()
}

/// Granted per claim, from the refused positions `claim_identifiers` returns.
async fn claim_all(pool: &PgPool, claims: &[IdentifierClaim]) -> Vec<bool> {
    let refused = claim_identifiers(pool, &refs(claims), UPSTREAM_BELOW).await.expect("claim");
    assert!(refused.windows(2).all(|w| w[0] < w[1]), "sorted and distinct: {refused:?}");
    (0..claims.len()).map(|position| !refused.contains(&position)).collect()
}

async fn owner(pool: &PgPool, system: &str, value: &str) -> Option<i64> {
    let pair = (system.to_owned(), value.to_owned());
    identifier_owners(pool, std::slice::from_ref(&pair)).await.expect("owners").get(&pair).copied()
}

async fn claimed_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM observation_identifiers").fetch_one(pool).await.expect("count")
}

#[tokio::test]
async fn the_first_claim_of_a_free_pair_wins_and_replays_are_granted_again() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let batch = vec![
        claim("urn:gw", "a", GATEWAY + 1),
        claim("urn:gw", "b", GATEWAY + 2),
        // the same pair again for another observation: the first claim wins
        claim("urn:gw", "a", GATEWAY + 3),
        // one observation naming a pair twice keeps it
        claim("urn:gw", "c", GATEWAY + 4),
        claim("urn:gw", "c", GATEWAY + 4),
        // a missing system is stored as ''
        claim("", "d", GATEWAY + 5),
    ];
    assert_eq!(claim_all(pool, &batch).await, vec![true, true, false, true, true, true]);
    assert_eq!(owner(pool, "urn:gw", "a").await, Some(GATEWAY + 1));
    assert_eq!(claimed_rows(pool).await, 4);

    // A replay (the processor restarted before publishing) is granted the same claims, and writes nothing new.
    assert_eq!(claim_all(pool, &batch).await, vec![true, true, false, true, true, true]);
    assert_eq!(claimed_rows(pool).await, 4);
    assert!(claim_identifiers(pool, &[], UPSTREAM_BELOW).await.unwrap().is_empty());
}

#[tokio::test]
async fn claims_ingest_made_are_verified_without_a_write() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    // Ingest claimed these for the ids it assigned.
    let upstream = vec![claim("urn:app", "x", 10), claim("urn:app", "y", 11)];
    assert_eq!(reserve_identifiers(pool, &upstream).await.unwrap(), vec![true, true]);
    let reserved_at: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT reserved_at FROM observation_identifiers ORDER BY value")
            .fetch_all(pool)
            .await
            .unwrap();

    let batch = vec![
        claim("urn:app", "x", 10),
        // the log holds a second record with "y": an upload answered 503 whose client retried (id 11 won)
        claim("urn:app", "y", 12),
        claim("urn:app", "y", 11),
        // a gateway record naming a pair ingest gave to an upload
        claim("urn:app", "x", GATEWAY + 1),
    ];
    assert_eq!(claim_all(pool, &batch).await, vec![true, false, true, false]);
    let after: Vec<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT reserved_at FROM observation_identifiers ORDER BY value")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(after, reserved_at, "verified claims are not written again");
}

#[tokio::test]
async fn a_pair_ingest_released_goes_to_the_first_record_that_claims_it() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    // Ingest reserved "z" for 20, the log write was ambiguous (503) and ingest released it; the client retried as
    // 21, and that reservation was released too. Both records reached the log.
    let first = vec![claim("urn:app", "z", 20)];
    reserve_identifiers(pool, &first).await.unwrap();
    release_identifiers(pool, &first).await.unwrap();
    assert_eq!(owner(pool, "urn:app", "z").await, None);

    assert_eq!(claim_all(pool, &[claim("urn:app", "z", 20), claim("urn:app", "z", 21)]).await, vec![true, false]);
    assert_eq!(owner(pool, "urn:app", "z").await, Some(20));
    // in a later batch, and replayed: still 20's
    assert_eq!(claim_all(pool, &[claim("urn:app", "z", 21)]).await, vec![false]);
    assert_eq!(claim_all(pool, &[claim("urn:app", "z", 20)]).await, vec![true]);

    // an upstream claim after a gateway claim of the same free pair, in one batch: the gateway record was first
    assert_eq!(
        claim_all(pool, &[claim("urn:app", "w", GATEWAY + 7), claim("urn:app", "w", 30)]).await,
        vec![true, false]
    );
}

/// A deterministic mix of batches: `claim_identifiers` and `reserve_identifiers` (each on its own system, so
/// they do not see each other) grant the same claims.
#[tokio::test]
async fn claim_identifiers_grants_what_reserve_identifiers_grants() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let mut seed: u64 = 0x5eed;
    let mut next = move |bound: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % bound
    };
    for round in 0..20 {
        // ingest's reservations before the batch, some released again (ambiguous failures)
        let upstream: Vec<(String, i64)> = (0..5).map(|_| (format!("v{}", next(40)), 1 + next(30) as i64)).collect();
        for system in ["urn:a", "urn:b", "urn:c"] {
            let claims: Vec<IdentifierClaim> = upstream.iter().map(|(value, id)| claim(system, value, *id)).collect();
            reserve_identifiers(pool, &claims).await.unwrap();
        }
        if round % 3 == 0 {
            let released: Vec<(String, i64)> = upstream.iter().take(2).cloned().collect();
            for system in ["urn:a", "urn:b", "urn:c"] {
                let claims: Vec<IdentifierClaim> =
                    released.iter().map(|(value, id)| claim(system, value, *id)).collect();
                release_identifiers(pool, &claims).await.unwrap();
            }
        }
        // the batch: upstream ids and gateway ids over a small space of values, so pairs collide often
        let batch: Vec<(String, i64)> = (0..30)
            .map(|_| {
                let value = format!("v{}", next(40));
                let id = if next(2) == 0 { 1 + next(30) as i64 } else { GATEWAY + next(30) as i64 };
                (value, id)
            })
            .collect();
        let with = |system: &str| -> Vec<IdentifierClaim> {
            batch.iter().map(|(value, id)| claim(system, value, *id)).collect()
        };
        let reserved = reserve_identifiers(pool, &with("urn:a")).await.unwrap();
        let claimed = claim_all(pool, &with("urn:b")).await;
        assert_eq!(claimed, reserved, "round {round}: {batch:?}");
        // and split over statements: each pair is still decided by one of them, so the outcome is the same
        let in_parts = with("urn:c");
        let refused = claim_identifiers_in_parts(pool, &refs(&in_parts), UPSTREAM_BELOW, 1 + round % 4).await.unwrap();
        assert!(refused.windows(2).all(|w| w[0] < w[1]), "sorted and distinct: {refused:?}");
        let granted: Vec<bool> = (0..in_parts.len()).map(|position| !refused.contains(&position)).collect();
        assert_eq!(granted, reserved, "round {round}, {} parts: {batch:?}", 1 + round % 4);
    }
    let owners = |system: &'static str| async move {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT value, observation_id FROM observation_identifiers WHERE system = $1 ORDER BY value",
        )
        .bind(system)
        .fetch_all(pool)
        .await
        .unwrap();
        rows
    };
    assert_eq!(owners("urn:a").await, owners("urn:b").await, "the same owners in the end");
    assert_eq!(owners("urn:a").await, owners("urn:c").await, "the same owners in the end, in parts");
}

#[tokio::test]
async fn reserve_grants_free_pairs_once_and_replays_again() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    assert!(reserve_identifiers(pool, &[]).await.unwrap().is_empty());
    // taken before the request
    reserve_identifiers(pool, &[claim("urn:app", "taken", 1)]).await.unwrap();
    let request = vec![
        claim("urn:app", "b", 3),
        claim("urn:app", "a", 2),
        // a later entry of the same request naming the same pair loses
        claim("urn:app", "a", 4),
        claim("urn:app", "taken", 5),
        // one observation naming a pair twice keeps it
        claim("", "c", 6),
        claim("", "c", 6),
    ];
    assert_eq!(reserve_identifiers(pool, &request).await.unwrap(), vec![true, true, false, false, true, true]);
    assert_eq!(owner(pool, "urn:app", "a").await, Some(2));
    assert_eq!(owner(pool, "urn:app", "taken").await, Some(1));
    assert_eq!(claimed_rows(pool).await, 4);
    // a replay of the request (same ids) is granted what it was granted, and writes nothing
    assert_eq!(reserve_identifiers(pool, &request).await.unwrap(), vec![true, true, false, false, true, true]);
    assert_eq!(claimed_rows(pool).await, 4);
}

/// Uploads racing for overlapping identifiers, listed in different orders: none fails (no deadlock between the
/// inserts), and every pair is granted to exactly one of them.
#[tokio::test]
async fn concurrent_reservations_of_overlapping_pairs_grant_each_pair_once() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let uploads: Vec<Vec<IdentifierClaim>> = (0..8i64)
        .map(|upload| {
            let mut values: Vec<i64> = (0..200).collect();
            // a different order per upload: reversed, or rotated
            if upload % 2 == 0 {
                values.reverse();
            }
            values.rotate_left((upload * 37) as usize % 200);
            values.iter().map(|v| claim("urn:race", &format!("v{v}"), upload * 1000 + v)).collect()
        })
        .collect();
    let handles: Vec<_> = uploads
        .iter()
        .cloned()
        .map(|claims| {
            let pool = pool.clone();
            tokio::spawn(async move { reserve_identifiers(&pool, &claims).await })
        })
        .collect();
    let mut granted_per_pair = vec![0; 200];
    for (upload, handle) in handles.into_iter().enumerate() {
        let granted = handle.await.expect("task").expect("reserve without a deadlock");
        for (claim, granted) in uploads[upload].iter().zip(granted) {
            if granted {
                let value: usize = claim.value[1..].parse().unwrap();
                granted_per_pair[value] += 1;
                assert_eq!(owner(pool, "urn:race", &claim.value).await, Some(claim.observation_id));
            }
        }
    }
    assert!(granted_per_pair.iter().all(|&count| count == 1), "{granted_per_pair:?}");
    assert_eq!(claimed_rows(pool).await, 200);
}

/// Pairs are compared byte for byte: case, Unicode normalization and trailing spaces make different identifiers,
/// and the same bytes are the same identifier, in ingest's claims and the processor's alike.
#[tokio::test]
async fn identifiers_are_compared_byte_for_byte() {
    let db = TestDb::create().await;
    let system = "https://example.org/ids";
    // "é" precomposed and decomposed, a case variant, a trailing space: four distinct pairs
    let values = ["caf\u{e9}", "cafe\u{301}", "CAF\u{c9}", "caf\u{e9} "];
    let claims: Vec<IdentifierClaim> =
        values.iter().enumerate().map(|(i, value)| claim(system, value, 100 + i as i64)).collect();
    assert_eq!(reserve_identifiers(&db.pool, &claims).await.expect("reserve"), vec![true; 4]);
    // the same bytes under another id are taken, by either path
    let again: Vec<IdentifierClaim> = values.iter().map(|value| claim(system, value, 200)).collect();
    assert_eq!(reserve_identifiers(&db.pool, &again).await.expect("reserve again"), vec![false; 4]);
    let gateway: Vec<IdentifierClaim> = values.iter().map(|value| claim(system, value, GATEWAY + 7)).collect();
    assert_eq!(claim_all(&db.pool, &gateway).await, vec![false; 4]);
    for (i, value) in values.iter().enumerate() {
        assert_eq!(owner(&db.pool, system, value).await, Some(100 + i as i64), "{value:?}");
    }
    assert_eq!(claimed_rows(&db.pool).await, 4);
}
