//! The janitor: deletes the objects no query can need any more, then their catalog rows (style.md §3 item 8).
//!
//! * `staged` files older than `staged_grace` were never published (the flush or compaction died between staging and
//!   publishing). The grace must exceed the longest flush; the catalog claims such a row before its object is
//!   deleted, so a publish that arrives even later fails rather than publishing a deleted object.
//! * `marked_for_deletion` files (replaced by compaction) older than `deletion_grace`: a query that listed them
//!   before the swap must have finished by then.
//!
//! Objects go first, rows second: a row whose object delete failed stays and is retried next round; an object that
//! is already gone counts as deleted.

use std::sync::Arc;
use std::time::Duration;

use jhe_catalog::{JANITOR_BATCH, delete_file_rows, janitor_candidates};
use jhe_schemas::ErrorKind;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sqlx::PgPool;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Grace periods and pace of the janitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JanitorSettings {
    /// How long a staged file may stay unpublished (default 1 h; must exceed the longest flush or compaction).
    pub staged_grace: Duration,
    /// How long a replaced file stays readable (default 15 min; must exceed the longest query).
    pub deletion_grace: Duration,
    /// Time between rounds.
    pub interval: Duration,
}

impl Default for JanitorSettings {
    fn default() -> Self {
        Self {
            staged_grace: Duration::from_secs(3600),
            deletion_grace: Duration::from_secs(15 * 60),
            interval: Duration::from_secs(60),
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JanitorReport {
    /// Objects deleted (including ones that were already gone).
    pub deleted_objects: usize,
    /// Of those, objects that were already gone.
    pub missing_objects: usize,
    /// Catalog rows deleted.
    pub deleted_rows: u64,
    /// Objects that could not be deleted this round (logged; their rows stay for the next round).
    pub failed: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum JanitorError {
    #[error("catalog: {0}")]
    Catalog(#[from] jhe_catalog::Error),
}

impl JanitorError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            JanitorError::Catalog(source) => source.kind(),
        }
    }
}

/// The garbage collector of the lake; see the module notes.
#[derive(Debug)]
pub struct Janitor {
    pool: PgPool,
    store: Arc<dyn ObjectStore>,
    settings: JanitorSettings,
}

impl Janitor {
    pub fn new(pool: PgPool, store: Arc<dyn ObjectStore>, settings: JanitorSettings) -> Self {
        Self { pool, store, settings }
    }

    /// Deletes everything past its grace, in batches of the catalog's size, until a batch comes back short or makes
    /// no progress.
    pub async fn run_once(&self) -> Result<JanitorReport, JanitorError> {
        let mut report = JanitorReport::default();
        loop {
            let candidates =
                janitor_candidates(&self.pool, self.settings.staged_grace, self.settings.deletion_grace).await?;
            let batch_len = candidates.len();
            let mut deleted: Vec<Uuid> = Vec::with_capacity(batch_len);
            for file in candidates {
                let path = match Path::parse(&file.object_path) {
                    Ok(path) => path,
                    Err(error) => {
                        report.failed += 1;
                        tracing::error!(file = %file.id, %error, "a catalogued object path is invalid");
                        continue;
                    }
                };
                match self.store.delete(&path).await {
                    Ok(()) => report.deleted_objects += 1,
                    Err(object_store::Error::NotFound { .. }) => {
                        report.deleted_objects += 1;
                        report.missing_objects += 1;
                    }
                    Err(error) => {
                        report.failed += 1;
                        tracing::warn!(file = %file.id, %error, "could not delete an object");
                        continue;
                    }
                }
                deleted.push(file.id);
            }
            let rows = delete_file_rows(&self.pool, &deleted).await?;
            report.deleted_rows += rows;
            // Each kind is capped at `JANITOR_BATCH`; fewer than that of both together means nothing is left.
            if batch_len < JANITOR_BATCH as usize || rows == 0 {
                break;
            }
        }
        Ok(report)
    }

    /// Runs a round every `settings.interval` until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(self.settings.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = ticks.tick() => {}
            }
            let round = tokio::select! {
                () = shutdown.cancelled() => break,
                round = self.run_once() => round,
            };
            match round {
                Ok(report) if report.deleted_rows > 0 || report.failed > 0 => {
                    tracing::info!(?report, "janitor round")
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "janitor round failed"),
            }
        }
    }
}
