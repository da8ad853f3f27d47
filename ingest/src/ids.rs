//! Observation ids: 64-bit, unique across ingest replicas, without a database round trip per observation. Each
//! replica takes blocks of [`jhe_catalog::ID_BLOCK_SIZE`] ids from a Postgres sequence and hands them out in order.

use jhe_catalog::ID_BLOCK_SIZE;
use sqlx::PgPool;
use tokio::sync::Mutex;

/// Hands out observation ids.
#[derive(Debug)]
pub struct IdAllocator {
    pool: PgPool,
    /// `[next, end)` of the current block
    range: Mutex<(i64, i64)>,
}

impl IdAllocator {
    pub fn new(pool: PgPool) -> Self {
        Self { pool, range: Mutex::new((0, 0)) }
    }

    /// `count` consecutive ids; returns the first. A request larger than what is left of the block takes fresh
    /// blocks (the rest of the old one is skipped: ids are unique, not dense).
    pub async fn allocate(&self, count: usize) -> jhe_catalog::Result<i64> {
        let count = count as i64;
        let mut range = self.range.lock().await;
        if range.1 - range.0 < count {
            let blocks = (count + ID_BLOCK_SIZE - 1) / ID_BLOCK_SIZE;
            let mut start = jhe_catalog::next_observation_id_block(&self.pool).await?;
            // Several blocks for a very large request: they must be consecutive, so retry until they are.
            let mut end = start + ID_BLOCK_SIZE;
            while (end - start) / ID_BLOCK_SIZE < blocks {
                let next = jhe_catalog::next_observation_id_block(&self.pool).await?;
                if next == end {
                    end += ID_BLOCK_SIZE;
                } else {
                    start = next;
                    end = next + ID_BLOCK_SIZE;
                }
            }
            *range = (start.max(1), end);
        }
        let first = range.0;
        range.0 += count;
        Ok(first)
    }
}
