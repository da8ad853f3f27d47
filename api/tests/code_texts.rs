//! The code texts cache (`jhe_catalog::CodeTextCache`) against a real, seeded Postgres.

use jhe_catalog::{CODE_TEXT_TTL as TTL, CodeTextCache};
use sqlx::PgPool;
use std::time::{Duration, Instant};

const SYSTEM: &str = "https://w3id.org/openmhealth";
const HEART_RATE: &str = "omh:heart-rate:2.0";

async fn set_text(pool: &PgPool, text: &str) {
    sqlx::query("UPDATE codeable_concepts SET text = $1 WHERE coding_system = $2 AND coding_code = $3")
        .bind(text)
        .bind(SYSTEM)
        .bind(HEART_RATE)
        .execute(pool)
        .await
        .expect("update the code text");
}

#[tokio::test]
async fn texts_are_reused_for_the_ttl_and_then_looked_up_again() {
    let db = jhe_tests::TestDatabase::create(true).await.expect("a seeded database");
    let cache = CodeTextCache::default();
    set_text(&db.pool, "Heart rate").await;
    let pairs = [(SYSTEM, HEART_RATE), (SYSTEM, "omh:no-such-code:1.0"), (SYSTEM, HEART_RATE)];
    let first_lookup = Instant::now();
    let texts = cache.texts(&db.pool, pairs).await.expect("texts");
    assert_eq!(texts.get(SYSTEM, HEART_RATE), Some("Heart rate"));
    assert_eq!(texts.get(SYSTEM, "omh:no-such-code:1.0"), None, "an unknown code has no text");

    // an edit is not seen while the answer is fresh (checked only if this machine got here within the TTL) ...
    set_text(&db.pool, "Pulse").await;
    let texts = cache.texts(&db.pool, [(SYSTEM, HEART_RATE)]).await.expect("texts");
    if first_lookup.elapsed() < TTL {
        assert_eq!(texts.get(SYSTEM, HEART_RATE), Some("Heart rate"));
    }
    // ... and is once the TTL has passed
    tokio::time::sleep(TTL + Duration::from_millis(50)).await;
    let texts = cache.texts(&db.pool, [(SYSTEM, HEART_RATE)]).await.expect("texts");
    assert_eq!(texts.get(SYSTEM, HEART_RATE), Some("Pulse"));
}
