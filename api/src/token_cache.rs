//! The bearer-token check cache: `Auth` asks Postgres once per token per TTL instead of on every request.
//!
//! Entries are keyed by sha256(token), so the cache holds no usable token. A valid token's entry lives
//! `min(ttl, time left until the token expires)`, so an expired token is refused exactly as without the cache. An
//! unknown token is remembered for `negative_ttl` to blunt floods of bad tokens. Revocation through this process
//! evicts at once (`clear`); another replica's revocation is seen within the TTL, which is capped at
//! `MAX_TTL` (the issue-6 bound of 5 s).
//!
//! `clear` bumps a generation counter: a lookup that started against the database before a revocation must not
//! store its (possibly stale) answer afterwards, so `insert` drops answers from an older generation.

use crate::smart_scopes::TokenScopes;
use jhe_catalog::Caller;
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The longest TTL accepted: a token revoked on another replica must stop working within 5 s.
pub const MAX_TTL: Duration = Duration::from_secs(5);
const DEFAULT_TTL: Duration = Duration::from_secs(2);
const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(1);
const DEFAULT_CAPACITY: usize = 100_000;

type Digest = [u8; 32];

/// A valid token's check: the caller and the token's SMART scopes, parsed once.
#[derive(Debug)]
pub(crate) struct Authenticated {
    pub(crate) caller: Caller,
    pub(crate) scopes: TokenScopes,
}

#[derive(Clone)]
struct Entry {
    /// `None`: the token is unknown, expired or its user inactive.
    caller: Option<Arc<Authenticated>>,
    valid_until: Instant,
}

/// A bounded, short-lived cache of token checks, shared by every clone (cheap to clone).
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    ttl: Duration,
    negative_ttl: Duration,
    capacity: usize,
    generation: AtomicU64,
    map: RwLock<HashMap<Digest, Entry>>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("ttl", &self.inner.ttl)
            .field("negative_ttl", &self.inner.negative_ttl)
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new(DEFAULT_TTL, DEFAULT_NEGATIVE_TTL, DEFAULT_CAPACITY)
    }
}

impl TokenCache {
    /// A cache with these lifetimes (each capped at `MAX_TTL`; zero disables that kind of entry) and at most
    /// `capacity` entries.
    pub fn new(ttl: Duration, negative_ttl: Duration, capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                ttl: ttl.min(MAX_TTL),
                negative_ttl: negative_ttl.min(MAX_TTL),
                capacity: capacity.max(1),
                generation: AtomicU64::new(0),
                map: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// The cache configured by `JHE_TOKEN_CACHE_TTL_MS` (default 2000, at most 5000, 0 turns caching off) and
    /// `JHE_TOKEN_CACHE_NEGATIVE_TTL_MS` (default 1000, at most the TTL).
    pub fn from_env() -> Self {
        let ttl = millis_from_env("JHE_TOKEN_CACHE_TTL_MS", DEFAULT_TTL);
        let negative_ttl = millis_from_env("JHE_TOKEN_CACHE_NEGATIVE_TTL_MS", DEFAULT_NEGATIVE_TTL).min(ttl);
        Self::new(ttl, negative_ttl, DEFAULT_CAPACITY)
    }

    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The caller behind `token`, from the cache when a live entry exists, else from Postgres.
    pub async fn authenticate(&self, pool: &PgPool, token: &str) -> jhe_catalog::Result<Option<Caller>> {
        Ok(self.check(pool, token).await?.map(|found| found.caller.clone()))
    }

    /// The caller behind `token` with the token's scopes, from the cache when a live entry exists, else from
    /// Postgres.
    pub(crate) async fn check(&self, pool: &PgPool, token: &str) -> jhe_catalog::Result<Option<Arc<Authenticated>>> {
        let digest = jhe_catalog::token_sha256(token);
        if let Some(hit) = self.get(&digest) {
            return Ok(hit);
        }
        let generation = self.inner.generation.load(Ordering::Acquire);
        let answer = jhe_catalog::authenticate_digest(pool, &digest).await?;
        let now = Instant::now();
        let entry = match answer {
            Some(check) => {
                // never trust an entry past the token's own expiry
                let left = (check.expires_at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO);
                let scopes = TokenScopes::from_granted(&check.scope, check.client_credentials);
                let found = Arc::new(Authenticated { caller: check.caller, scopes });
                Entry { caller: Some(found), valid_until: now + self.inner.ttl.min(left) }
            }
            None => Entry { caller: None, valid_until: now + self.inner.negative_ttl },
        };
        let answer = entry.caller.clone();
        if entry.valid_until > now {
            self.insert(digest, entry, generation, now);
        }
        Ok(answer)
    }

    /// `Some(answer)` for a live entry.
    fn get(&self, digest: &Digest) -> Option<Option<Arc<Authenticated>>> {
        let map = self.inner.map.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = map.get(digest)?;
        (entry.valid_until > Instant::now()).then(|| entry.caller.clone())
    }

    fn insert(&self, digest: Digest, entry: Entry, generation: u64, now: Instant) {
        let mut map = self.inner.map.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        // a revocation ran while we asked the database: our answer may predate it
        if self.inner.generation.load(Ordering::Acquire) != generation {
            return;
        }
        if map.len() >= self.inner.capacity && !map.contains_key(&digest) {
            map.retain(|_, e| e.valid_until > now);
            if map.len() >= self.inner.capacity {
                if entry.caller.is_none() {
                    // a flood of bad tokens must not push out the good ones
                    return;
                }
                map.retain(|_, e| e.caller.is_some());
                if map.len() >= self.inner.capacity {
                    return;
                }
            }
        }
        map.insert(digest, entry);
    }

    /// Forgets every entry: called after this process revokes tokens (or changes who a caller is), so the next
    /// request asks the database.
    pub fn clear(&self) {
        let mut map = self.inner.map.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        map.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.map.read().map(|m| m.len()).unwrap_or(0)
    }
}

/// Middleware: after any request that may have changed tokens, users or memberships (every method but GET, HEAD
/// and OPTIONS, whatever its status), the cache is cleared, so this process never answers from a pre-change entry.
/// FHIR uploads are the exception: they are the frequent writes and change no caller.
pub async fn clear_after_writes(
    cache: TokenCache,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::Method;
    let path = request.uri().path();
    let changes_callers = !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        && path != "/FHIR/R5"
        && path != "/FHIR/R5/"
        && !path.starts_with("/FHIR/R5/Observation");
    let response = next.run(request).await;
    if changes_callers {
        cache.clear();
    }
    response
}

fn millis_from_env(name: &str, default: Duration) -> Duration {
    match std::env::var(name) {
        Err(_) => default,
        Ok(text) => match text.trim().parse::<u64>() {
            Ok(ms) if Duration::from_millis(ms) <= MAX_TTL => Duration::from_millis(ms),
            _ => {
                tracing::error!(variable = name, value = %text, max_ms = MAX_TTL.as_millis() as u64,
                    "not a number of milliseconds within the maximum; using the default");
                default
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(user_id: i64) -> Caller {
        Caller {
            user_id,
            email: format!("u{user_id}@example.org"),
            is_superuser: false,
            user_type: None,
            practitioner_id: None,
            patient_id: None,
            memberships: vec![],
            observation_codes: jhe_catalog::CodeLimit::default(),
        }
    }

    fn entry(user_id: Option<i64>, life: Duration) -> Entry {
        let found = |id| Arc::new(Authenticated { caller: caller(id), scopes: TokenScopes::default() });
        Entry { caller: user_id.map(found), valid_until: Instant::now() + life }
    }

    #[test]
    fn live_entries_hit_and_dead_ones_miss() {
        let cache = TokenCache::new(Duration::from_secs(2), Duration::from_secs(1), 10);
        cache.insert([1; 32], entry(Some(7), Duration::from_secs(2)), 0, Instant::now());
        cache.insert([2; 32], entry(None, Duration::from_secs(2)), 0, Instant::now());
        cache.insert([3; 32], entry(Some(8), Duration::ZERO), 0, Instant::now());
        assert_eq!(cache.get(&[1; 32]).flatten().map(|c| c.caller.user_id), Some(7));
        assert!(matches!(cache.get(&[2; 32]), Some(None)));
        assert!(cache.get(&[3; 32]).is_none());
        assert!(cache.get(&[4; 32]).is_none());
    }

    #[test]
    fn clear_evicts_and_refuses_answers_from_before_it() {
        let cache = TokenCache::default();
        cache.insert([1; 32], entry(Some(7), Duration::from_secs(2)), 0, Instant::now());
        cache.clear();
        assert!(cache.get(&[1; 32]).is_none());
        // a lookup that read generation 0 before the clear must not store its answer
        cache.insert([1; 32], entry(Some(7), Duration::from_secs(2)), 0, Instant::now());
        assert!(cache.get(&[1; 32]).is_none());
        cache.insert([1; 32], entry(Some(7), Duration::from_secs(2)), 1, Instant::now());
        assert!(cache.get(&[1; 32]).is_some());
    }

    #[test]
    fn bad_tokens_cannot_push_out_good_ones() {
        let cache = TokenCache::new(Duration::from_secs(2), Duration::from_secs(1), 4);
        for i in 0..2 {
            cache.insert([i; 32], entry(Some(i.into()), Duration::from_secs(2)), 0, Instant::now());
        }
        for i in 10..20 {
            cache.insert([i; 32], entry(None, Duration::from_secs(2)), 0, Instant::now());
        }
        assert_eq!(cache.len(), 4);
        cache.insert([99; 32], entry(Some(99), Duration::from_secs(2)), 0, Instant::now());
        assert!(cache.get(&[0; 32]).is_some() && cache.get(&[1; 32]).is_some() && cache.get(&[99; 32]).is_some());
        assert!(cache.len() <= 4);
    }

    #[test]
    fn ttl_is_capped_at_five_seconds() {
        let cache = TokenCache::new(Duration::from_secs(60), Duration::from_secs(60), 4);
        assert_eq!(cache.ttl(), MAX_TTL);
    }
}
