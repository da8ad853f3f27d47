//! The code table's texts (`code.coding[0].display` of every rendered Observation), remembered for a short TTL.
//!
//! Every search page renders its observations with their codes' texts. Asking Postgres on every page cost a round
//! trip (about 1.3 ms of a 24 ms page at 10 M observations) for a table that changes only when an administrator
//! edits a code. An answer — a code's text or its absence — is reused for [`TTL`], so an edited text shows within
//! that time on every replica, as the upload path's control-plane cache does.

use jhe_catalog::code_details;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long a looked-up text is reused.
pub(crate) const TTL: Duration = Duration::from_secs(1);
/// Codes remembered at most (the code table holds a few dozen; this bounds a flood of unknown pairs).
const CAPACITY: usize = 10_000;

/// (system, code) → the code's text, or `None` when the pair is not in the code table.
type TextMap = HashMap<(String, String), Option<String>>;

/// The texts of the codes one response renders (a handful: searched by comparison, no key is built).
#[derive(Debug, Default)]
pub(crate) struct CodeTexts {
    texts: Vec<((String, String), Option<String>)>,
}

impl CodeTexts {
    /// The text of (system, code), if the code table has one.
    pub(crate) fn get(&self, system: &str, code: &str) -> Option<&str> {
        self.texts.iter().find(|((s, c), _)| s == system && c == code).and_then(|(_, text)| text.as_deref())
    }
}

/// A looked-up text (or its absence) and when it was looked up.
type Remembered = (Option<String>, Instant);

#[derive(Debug, Clone, Default)]
pub(crate) struct CodeTextCache {
    entries: Arc<RwLock<HashMap<(String, String), Remembered>>>,
}

impl CodeTextCache {
    /// The texts of `pairs` (sorted or not, repeats allowed): remembered ones while fresh, the rest from `pool`.
    pub(crate) async fn texts<'a>(
        &self,
        pool: &PgPool,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<CodeTexts, jhe_catalog::Error> {
        let now = Instant::now();
        // the distinct pairs first, borrowed: a page's thousand records carry a handful of codes
        let mut distinct: Vec<(&str, &str)> = Vec::new();
        for pair in pairs {
            if !distinct.contains(&pair) {
                distinct.push(pair);
            }
        }
        let mut found = TextMap::new();
        let mut missing: Vec<(String, String)> = Vec::new();
        {
            let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (system, code) in distinct {
                let key = (system.to_owned(), code.to_owned());
                match entries.get(&key) {
                    Some((text, at)) if now.duration_since(*at) < TTL => {
                        found.insert(key, text.clone());
                    }
                    _ => missing.push(key),
                }
            }
        }
        if missing.is_empty() {
            return Ok(CodeTexts { texts: found.into_iter().collect() });
        }
        let mut looked_up: TextMap = missing.into_iter().map(|key| (key, None)).collect();
        let keys: Vec<(String, String)> = looked_up.keys().cloned().collect();
        for code in code_details(pool, &keys).await? {
            looked_up.insert((code.coding_system, code.coding_code), Some(code.text));
        }
        {
            let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
            if entries.len() + looked_up.len() > CAPACITY {
                entries.retain(|_, (_, at)| now.duration_since(*at) < TTL);
            }
            if entries.len() + looked_up.len() <= CAPACITY {
                entries.extend(looked_up.iter().map(|(key, text)| (key.clone(), (text.clone(), now))));
            }
        }
        found.extend(looked_up);
        Ok(CodeTexts { texts: found.into_iter().collect() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
