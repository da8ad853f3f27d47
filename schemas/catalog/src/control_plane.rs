//! A read-only, in-memory copy of the parts of the control plane that every observation is checked against
//! (patients, their organizations, personal-device data sources, codes, consents), for ingest and the processor.
//!
//! Freshness: every change to the source tables bumps `control_plane_version` and sends `NOTIFY
//! jhe_control_plane` (migration 0002). [`ControlPlaneCache::follow`] listens and reloads within
//! [`RELOAD_DEBOUNCE`] of a notification, and polls the version every [`POLL_INTERVAL`] as well, in case a
//! notification was lost while the listener reconnected. A revoked consent therefore stops uploads within about
//! half a second.

use crate::Result;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// How long after a notification the cache reloads (changes arriving together share one reload).
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(50);
/// How often the version is polled in addition to the notifications.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// A patient as uploads need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientEntry {
    pub user_id: Option<i64>,
    pub organization_ids: Vec<i64>,
}

/// One consistent copy of the control plane.
#[derive(Debug, Default)]
pub struct ControlPlaneSnapshot {
    /// `control_plane_version.version` this snapshot was loaded at.
    pub version: i64,
    pub loaded_at: Option<Instant>,
    patients: HashMap<i64, PatientEntry>,
    /// data source id → type (`personal_device`, `medical_device`, `patient_app`)
    data_sources: HashMap<i64, String>,
    /// coding system → code → codeable concept id (nested so lookups borrow)
    codes: HashMap<String, HashMap<String, i64>>,
    /// codeable concept id → text (the `display` of rendered codings)
    code_texts: HashMap<i64, String>,
    /// (patient id, codeable concept id) with `consented = true` in at least one study
    consented: HashSet<(i64, i64)>,
}

impl ControlPlaneSnapshot {
    pub fn patient(&self, patient_id: i64) -> Option<&PatientEntry> {
        self.patients.get(&patient_id)
    }

    pub fn data_source_type(&self, data_source_id: i64) -> Option<&str> {
        self.data_sources.get(&data_source_id).map(String::as_str)
    }

    /// The codeable concept id of a code, if it is a known scope code.
    pub fn code_id(&self, system: &str, code: &str) -> Option<i64> {
        self.codes.get(system)?.get(code).copied()
    }

    /// The text of a code (rendered as `display`).
    pub fn code_text(&self, code_id: i64) -> Option<&str> {
        self.code_texts.get(&code_id).map(String::as_str)
    }

    /// Whether the patient consents to sharing this code with at least one study (the upload gate, §8.2).
    pub fn is_consented(&self, patient_id: i64, code_id: i64) -> bool {
        self.consented.contains(&(patient_id, code_id))
    }

    pub fn patient_count(&self) -> usize {
        self.patients.len()
    }

    /// Reads a fresh snapshot in one repeatable-read transaction.
    pub async fn load(pool: &PgPool) -> Result<Self> {
        let mut tx = pool.begin().await?;
        sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        let version: i64 = sqlx::query_scalar!("SELECT version FROM control_plane_version").fetch_one(&mut *tx).await?;
        let rows = sqlx::query!(
            r#"
            SELECT p.id, p.user_id, COALESCE(array_agg(po.organization_id ORDER BY po.organization_id)
                   FILTER (WHERE po.organization_id IS NOT NULL), '{}') AS "organization_ids!"
            FROM patients p LEFT JOIN patient_organizations po ON po.patient_id = p.id
            GROUP BY p.id
            "#
        )
        .fetch_all(&mut *tx)
        .await?;
        let patients = rows
            .into_iter()
            .map(|r| (r.id, PatientEntry { user_id: r.user_id, organization_ids: r.organization_ids }))
            .collect();
        let data_sources =
            sqlx::query!("SELECT id, type AS kind FROM data_sources").fetch_all(&mut *tx).await?.into_iter();
        let data_sources = data_sources.map(|r| (r.id, r.kind)).collect();
        let mut codes: HashMap<String, HashMap<String, i64>> = HashMap::new();
        let mut code_texts = HashMap::new();
        for row in sqlx::query!("SELECT id, coding_system, coding_code, text FROM codeable_concepts")
            .fetch_all(&mut *tx)
            .await?
        {
            codes.entry(row.coding_system).or_default().insert(row.coding_code, row.id);
            code_texts.insert(row.id, row.text);
        }
        let consented = sqlx::query!(
            r#"
            SELECT DISTINCT sp.patient_id, c.scope_code_id
            FROM study_patient_scope_consents c JOIN study_patients sp ON sp.id = c.study_patient_id
            WHERE c.consented
            "#
        )
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|r| (r.patient_id, r.scope_code_id))
        .collect();
        tx.commit().await?;
        Ok(Self { version, loaded_at: Some(Instant::now()), patients, data_sources, codes, code_texts, consented })
    }
}

/// The shared, self-refreshing cache. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ControlPlaneCache {
    current: Arc<RwLock<Arc<ControlPlaneSnapshot>>>,
    pool: PgPool,
}

impl ControlPlaneCache {
    /// Loads the first snapshot.
    pub async fn load(pool: PgPool) -> Result<Self> {
        let snapshot = ControlPlaneSnapshot::load(&pool).await?;
        Ok(Self { current: Arc::new(RwLock::new(Arc::new(snapshot))), pool })
    }

    /// The current snapshot (hold it for one request or one batch, so all checks see the same state).
    pub fn snapshot(&self) -> Arc<ControlPlaneSnapshot> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reloads now (tests and callers that just changed the control plane themselves).
    pub async fn refresh(&self) -> Result<Arc<ControlPlaneSnapshot>> {
        let snapshot = Arc::new(ControlPlaneSnapshot::load(&self.pool).await?);
        self.install(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    fn install(&self, snapshot: Arc<ControlPlaneSnapshot>) {
        let mut guard = match self.current.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Never go back in time (a slow reload finishing after a faster, newer one).
        if snapshot.version >= guard.version {
            *guard = snapshot;
        }
    }

    /// Waits until the cache has caught up with every control-plane change committed before this call.
    pub async fn catch_up(&self) -> Result<()> {
        let version: i64 =
            sqlx::query_scalar!("SELECT version FROM control_plane_version").fetch_one(&self.pool).await?;
        if self.snapshot().version < version {
            self.refresh().await?;
        }
        Ok(())
    }

    /// Keeps the cache fresh until `stop` fires: LISTEN for change notifications and poll the version. Errors are
    /// logged and retried; the last good snapshot stays in use meanwhile.
    pub async fn follow(self, stop: CancellationToken) {
        let mut listener: Option<PgListener> = None;
        let mut last_poll = Instant::now();
        loop {
            if listener.is_none() {
                match PgListener::connect_with(&self.pool).await {
                    Ok(mut new_listener) => match new_listener.listen("jhe_control_plane").await {
                        Ok(()) => listener = Some(new_listener),
                        Err(error) => tracing::warn!(%error, "control-plane cache: LISTEN failed; polling"),
                    },
                    Err(error) => tracing::warn!(%error, "control-plane cache: cannot listen; polling"),
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(listener) => listener.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                outcome = notified => Some(outcome),
                () = tokio::time::sleep(POLL_INTERVAL.saturating_sub(last_poll.elapsed())) => None,
            };
            match outcome {
                Some(Ok(())) => {
                    tokio::time::sleep(RELOAD_DEBOUNCE).await;
                    if let Err(error) = self.refresh().await {
                        tracing::warn!(%error, "control-plane cache: reload failed");
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "control-plane cache: listener lost; reconnecting");
                    listener = None;
                }
                None => {
                    last_poll = Instant::now();
                    if let Err(error) = self.catch_up().await {
                        tracing::warn!(%error, "control-plane cache: version poll failed");
                    }
                }
            }
        }
    }
}
