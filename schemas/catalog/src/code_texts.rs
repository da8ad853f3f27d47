//! The code table's texts (`code.coding[0].display` of every rendered Observation), remembered for a short TTL.
//!
//! Every search page, read, `$lastn` answer and NDJSON export part renders its observations with their codes'
//! texts. Asking Postgres every time cost a round trip (about 1.3 ms of a 24 ms page at 10 M observations) for a
//! table that changes only when an administrator edits a code. An answer — a code's text or its absence — is
//! reused for [`CODE_TEXT_TTL`], so an edited text shows within that time on every replica, as the upload path's
//! control-plane cache does.

use crate::{Result, code_details};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How long a looked-up text is reused.
pub const CODE_TEXT_TTL: Duration = Duration::from_secs(1);
/// Codes remembered at most (the code table holds a few dozen; this bounds a flood of unknown pairs).
const CAPACITY: usize = 10_000;

/// The texts of the codes one response renders (a handful: searched by comparison, no key is built).
#[derive(Debug, Default)]
pub struct CodeTexts {
    texts: Vec<((String, String), Option<String>)>,
}

impl CodeTexts {
    /// The text of (system, code), if the code table has one.
    pub fn get(&self, system: &str, code: &str) -> Option<&str> {
        self.texts.iter().find(|((s, c), _)| s == system && c == code).and_then(|(_, text)| text.as_deref())
    }
}

/// A looked-up text (or its absence) and when it was looked up.
type Remembered = (Option<String>, Instant);

/// Cheap to clone: clones share the remembered texts.
#[derive(Debug, Clone, Default)]
pub struct CodeTextCache {
    entries: Arc<RwLock<HashMap<(String, String), Remembered>>>,
}

impl CodeTextCache {
    /// The texts of `pairs` (sorted or not, repeats allowed): remembered ones while fresh, the rest from `pool`.
    pub async fn texts<'a>(
        &self,
        pool: &PgPool,
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<CodeTexts> {
        let now = Instant::now();
        // the distinct pairs first, borrowed: a page's thousand records carry a handful of codes
        let mut distinct: Vec<(&str, &str)> = Vec::new();
        for pair in pairs {
            if !distinct.contains(&pair) {
                distinct.push(pair);
            }
        }
        let mut texts = Vec::with_capacity(distinct.len());
        // positions in `texts` of the pairs to look up
        let mut missing = Vec::new();
        {
            let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (system, code) in distinct {
                let key = (system.to_owned(), code.to_owned());
                match entries.get(&key) {
                    Some((text, at)) if now.duration_since(*at) < CODE_TEXT_TTL => texts.push((key, text.clone())),
                    _ => {
                        missing.push(texts.len());
                        texts.push((key, None));
                    }
                }
            }
        }
        if missing.is_empty() {
            return Ok(CodeTexts { texts });
        }
        let keys: Vec<(String, String)> = missing.iter().map(|&at| texts[at].0.clone()).collect();
        for code in code_details(pool, &keys).await? {
            let slot = texts.iter_mut().find(|((s, c), _)| *s == code.coding_system && *c == code.coding_code);
            if let Some((_, text)) = slot {
                *text = Some(code.text);
            }
        }
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() + missing.len() > CAPACITY {
            entries.retain(|_, (_, at)| now.duration_since(*at) < CODE_TEXT_TTL);
        }
        if entries.len() + missing.len() <= CAPACITY {
            for &at in &missing {
                let (key, text) = &texts[at];
                entries.insert(key.clone(), (text.clone(), now));
            }
        }
        Ok(CodeTexts { texts })
    }
}
