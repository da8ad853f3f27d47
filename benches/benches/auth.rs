//! What authentication adds to a request: the bearer-token check of the `Auth` extractor (api/src/token_cache.rs).
//! Goal: ≤ 0.1 ms p99 per check. `hit` is a token checked within the cache TTL (sha256 + a map read +
//! a clone of the caller); `miss` is the Postgres query every check paid before the cache (TTL 0 turns it off).
//!
//! `cargo bench -p jhe-benches --bench auth` (needs Postgres, `JHE_TEST_DATABASE_URL` or the tests' default server).
//! Criterion reports the mean; a per-check p50/p99 over single timed calls is printed at the end.

use criterion::Criterion;
use jhe_api::token_cache::TokenCache;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Single calls timed for the percentiles.
const HIT_SAMPLES: usize = 200_000;
const MISS_SAMPLES: usize = 2_000;

fn percentiles(mut nanos: Vec<u64>) -> (f64, f64, f64) {
    nanos.sort_unstable();
    let at = |q: f64| nanos[((nanos.len() as f64 * q) as usize).min(nanos.len() - 1)] as f64 / 1000.0;
    (at(0.50), at(0.99), at(0.999))
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let database = runtime.block_on(jhe_tests::TestDatabase::create(true)).expect("a seeded test database");
    let pool = database.pool.clone();
    let token = runtime
        .block_on(jhe_catalog::create_token_for_email(&pool, jhe_tests::seeded::MARY, chrono::Duration::hours(1)))
        .expect("a token")
        .token;

    // the longest allowed TTL, so entries do not lapse during a measurement; the hit path is the same for any TTL
    let cached = TokenCache::new(Duration::from_secs(5), Duration::from_secs(1), 100_000);
    let uncached = TokenCache::new(Duration::ZERO, Duration::ZERO, 1);
    let check = |cache: &TokenCache| {
        let caller = runtime.block_on(cache.authenticate(&pool, black_box(&token))).expect("token check");
        assert!(caller.is_some(), "the token is valid");
        black_box(caller);
    };
    check(&cached);

    let mut criterion = Criterion::default().configure_from_args();
    criterion.bench_function("auth/hit", |b| b.iter(|| check(&cached)));
    criterion.bench_function("auth/miss-postgres", |b| b.iter(|| check(&uncached)));
    criterion.final_summary();

    let time = |cache: &TokenCache, samples: usize| {
        let mut nanos = Vec::with_capacity(samples);
        for _ in 0..samples {
            let started = Instant::now();
            check(cache);
            nanos.push(started.elapsed().as_nanos() as u64);
        }
        percentiles(nanos)
    };
    check(&cached); // the entry may have lapsed during criterion's runs
    let (hit50, hit99, hit999) = time(&cached, HIT_SAMPLES);
    let (miss50, miss99, miss999) = time(&uncached, MISS_SAMPLES);
    println!("token check, µs per call     p50      p99    p99.9");
    println!("  cache hit ({HIT_SAMPLES:>7} calls) {hit50:>8.2} {hit99:>8.2} {hit999:>8.2}   goal p99 ≤ 100");
    println!("  Postgres  ({MISS_SAMPLES:>7} calls) {miss50:>8.2} {miss99:>8.2} {miss999:>8.2}");
}
