//! Compaction and the janitor against a real Postgres and a local directory store: every row is stored exactly
//! once before and after a compaction, and replaced or orphaned objects are removed after their grace.
//! The server comes from `JHE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`); each test uses a
//! fresh database with a random name and drops it afterwards.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use jhe_catalog::{
    FileFilter, FileState, PartitionDelta, catalog_summary, connect, create_database_if_missing, migrate, parquet_file,
    publish, published_files, stage_files,
};
use jhe_processor::compactor::{CompactionSettings, Compactor};
use jhe_processor::janitor::{Janitor, JanitorSettings};
use jhe_processor::parquet_file::{encode_parquet, read_parquet, upload};
use jhe_processor::store::{observation_object_path, open_store};
use jhe_schemas::table::{ObservationBatchBuilder, records_from_batch};
use jhe_schemas::{EffectiveTime, Identifier, MeasuredValues, ObservationRecord};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use sqlx::{Connection, PgConnection, PgPool};
use url::Url;
use uuid::Uuid;

const TOPIC: &str = "jhe.observations";
const SYSTEM: &str = "https://w3id.org/openmhealth";
const HEART_RATE: &str = "omh:heart-rate:2.0";
const STEPS: &str = "omh:step-count:2.0";
/// 2026-03-01T00:00:00Z in microseconds.
const DAY_START: i64 = 1_772_323_200_000_000;

fn database_url(name: &str) -> Url {
    let base =
        std::env::var("JHE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string());
    let mut url = Url::parse(&base).expect("JHE_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url
}

/// A fresh, migrated database and a local lake in a temporary directory; both removed with the value.
struct Fixture {
    name: String,
    pool: PgPool,
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn create() -> Self {
        let name = format!("jhe_compactor_test_{:016x}", rand::random::<u64>());
        let url = database_url(&name);
        assert!(create_database_if_missing(url.as_str()).await.expect("create the test database"));
        let pool = connect(url.as_str(), 4).await.expect("connect to the test database");
        migrate(&pool).await.expect("migrate the test database");
        let dir = tempfile::tempdir().expect("a temporary directory");
        // no URL: the lake goes to `<data dir>/lake`
        let (store, prefix) = open_store(None, dir.path()).expect("open the local store");
        assert!(dir.path().join("lake").is_dir());
        Fixture { name, pool, store, prefix, _dir: dir }
    }

    /// Encodes `records` as one file, stages, uploads and publishes it (moving partition 0 by `records.len()`).
    async fn publish_file(&self, records: &[ObservationRecord], next_offset: &mut i64) -> Uuid {
        let id = self.upload_staged(records).await;
        let from = *next_offset;
        *next_offset += records.len() as i64;
        publish(&self.pool, TOPIC, &[PartitionDelta { partition: 0, from, to: *next_offset }], &[id])
            .await
            .expect("publish");
        id
    }

    async fn upload_staged(&self, records: &[ObservationRecord]) -> Uuid {
        let mut builder = ObservationBatchBuilder::with_capacity(records.len());
        for record in records {
            builder.append(record).expect("append");
        }
        let encoded = encode_parquet(&[builder.finish().expect("a batch")]).expect("encode");
        let id = Uuid::now_v7();
        let path = observation_object_path(&self.prefix, &encoded.stats.coding_code, encoded.stats.day, id);
        let entry = encoded.catalog_entry(id, &path, 0);
        stage_files(&self.pool, &[entry]).await.expect("stage");
        upload(self.store.as_ref(), &path, encoded.bytes).await.expect("upload");
        id
    }

    async fn object_exists(&self, id: Uuid) -> bool {
        let row = parquet_file(&self.pool, id).await.expect("read the catalog").expect("a catalogued file");
        match self.store.head(&Path::parse(&row.object_path).expect("a valid path")).await {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(error) => panic!("head {}: {error}", row.object_path),
        }
    }

    /// Every published row, read back from the lake.
    async fn published_records(&self) -> Vec<ObservationRecord> {
        let mut records = Vec::new();
        for file in published_files(&self.pool, &FileFilter::default()).await.expect("list files") {
            let path = Path::parse(&file.object_path).expect("a valid path");
            let batches = read_parquet(self.store.as_ref(), &path).await.expect("read a file");
            let file_records: Vec<ObservationRecord> =
                batches.iter().flat_map(|batch| records_from_batch(batch).expect("decode")).collect();
            assert_eq!(file_records.len() as i64, file.row_count, "catalog row count of {}", file.id);
            records.extend(file_records);
        }
        records
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let name = self.name.clone();
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

fn record(id: i64, code: &str) -> ObservationRecord {
    let patient_id = 1 + id % 7;
    let start_micros = DAY_START + (id * 7_919 % 86_000) * 1_000_000;
    ObservationRecord {
        id,
        patient_id,
        jhe_user_id: Some(patient_id + 1000),
        data_source_id: Some(3),
        coding_system: SYSTEM.into(),
        coding_code: code.into(),
        effective: EffectiveTime { start_micros, end_micros: Some(start_micros + 60_000_000) },
        last_updated_micros: DAY_START + 86_400_000_000 + id,
        identifiers: vec![Identifier { system: "urn:test".into(), value: format!("obs-{id}") }],
        omh_json: format!(r#"{{"heart_rate":{{"value":{},"unit":"beats/min"}}}}"#, 60 + id % 40),
        values: MeasuredValues {
            value: Some((60 + id % 40) as f64),
            unit: Some("beats/min".into()),
            ..Default::default()
        },
    }
}

fn settings() -> CompactionSettings {
    CompactionSettings { min_files: 8, max_level: 2, target_bytes: 256 * 1024 * 1024, interval: Duration::from_secs(1) }
}

fn sort_key(record: &ObservationRecord) -> (i64, i64, i64) {
    (record.patient_id, record.effective.start_micros, record.id)
}

#[tokio::test]
async fn compaction_keeps_every_row_exactly_once_and_the_janitor_removes_the_inputs() {
    let fixture = Fixture::create().await;
    let pool = &fixture.pool;
    let mut next_offset = 0;
    let mut expected = Vec::new();
    let mut inputs = Vec::new();
    for file in 0..10 {
        let records: Vec<ObservationRecord> = (0..25).map(|row| record(file * 100 + row, HEART_RATE)).collect();
        inputs.push(fixture.publish_file(&records, &mut next_offset).await);
        expected.extend(records);
    }
    // too few step-count files to compact
    let steps: Vec<ObservationRecord> = (5000..5010).map(|id| record(id, STEPS)).collect();
    let steps_file = fixture.publish_file(&steps, &mut next_offset).await;
    // an upload whose publish never happened
    let orphan = fixture.upload_staged(&[record(9000, HEART_RATE)]).await;

    let compactor = Compactor::new(pool.clone(), Arc::clone(&fixture.store), fixture.prefix.clone(), settings());
    let report = compactor.compact_once().await.expect("a compaction round");
    assert_eq!((report.groups, report.compacted, report.failed, report.lost_races), (1, 1, 0, 0), "{report:?}");
    assert_eq!(report.input_files, 10);
    assert_eq!(report.rows, 250);

    let published = published_files(pool, &FileFilter::default()).await.unwrap();
    assert_eq!(published.len(), 2, "the compacted file and the step-count file");
    let output = published.iter().find(|file| file.coding_code == HEART_RATE).expect("the compacted file");
    assert_eq!(output.compaction_level, 1);
    assert_eq!(output.row_count, 250);
    assert!(output.object_path.contains("/code=omh:heart-rate:2.0/date=2026-03-01/"), "{}", output.object_path);
    assert!(published.iter().any(|file| file.id == steps_file));
    for input in &inputs {
        assert_eq!(parquet_file(pool, *input).await.unwrap().unwrap().state, FileState::MarkedForDeletion);
        assert!(fixture.object_exists(*input).await, "inputs stay readable until the deletion grace");
    }

    // every row exactly once, and the compacted file is sorted
    let output_records = {
        let path = Path::parse(&output.object_path).unwrap();
        let batches = read_parquet(fixture.store.as_ref(), &path).await.unwrap();
        batches.iter().flat_map(|batch| records_from_batch(batch).unwrap()).collect::<Vec<_>>()
    };
    let keys: Vec<_> = output_records.iter().map(sort_key).collect();
    let mut sorted_keys = keys.clone();
    sorted_keys.sort_unstable();
    assert_eq!(keys, sorted_keys, "rows are sorted by (patient_id, effective_start, id)");
    let stored = fixture.published_records().await;
    assert_eq!(stored.len(), expected.len() + steps.len());
    let stored_ids: BTreeSet<i64> = stored.iter().map(|r| r.id).collect();
    assert_eq!(stored_ids.len(), stored.len(), "no row twice");
    let mut expected_all = expected.clone();
    expected_all.extend(steps.clone());
    expected_all.sort_by_key(|r| r.id);
    let mut stored_sorted = stored;
    stored_sorted.sort_by_key(|r| r.id);
    assert_eq!(stored_sorted, expected_all, "every row unchanged");

    // nothing left to compact
    let again = compactor.compact_once().await.unwrap();
    assert_eq!((again.groups, again.compacted), (0, 0), "{again:?}");

    // within the grace periods the janitor leaves everything alone
    let janitor = Janitor::new(pool.clone(), Arc::clone(&fixture.store), JanitorSettings::default());
    let report = janitor.run_once().await.unwrap();
    assert_eq!(report.deleted_rows, 0, "{report:?}");
    assert!(fixture.object_exists(orphan).await);

    let janitor = Janitor::new(
        pool.clone(),
        Arc::clone(&fixture.store),
        JanitorSettings {
            staged_grace: Duration::ZERO,
            deletion_grace: Duration::ZERO,
            interval: Duration::from_secs(1),
        },
    );
    let report = janitor.run_once().await.unwrap();
    assert_eq!((report.deleted_objects, report.missing_objects, report.failed), (11, 0, 0), "{report:?}");
    assert_eq!(report.deleted_rows, 11);
    for gone in inputs.iter().chain([&orphan]) {
        assert_eq!(parquet_file(pool, *gone).await.unwrap(), None);
    }
    let summary = catalog_summary(pool).await.unwrap();
    assert_eq!((summary.published.files, summary.staged.files, summary.marked_for_deletion.files), (2, 0, 0));
    assert_eq!(summary.published.rows, 260);
    let listed: Vec<_> = {
        use futures::TryStreamExt;
        fixture.store.list(None).try_collect().await.unwrap()
    };
    assert_eq!(listed.len(), 2, "only the published objects remain: {listed:?}");
    assert_eq!(fixture.published_records().await.len(), 260);

    // a second round finds nothing; a deleted object that is gone already is fine
    assert_eq!(janitor.run_once().await.unwrap(), Default::default());
}

#[tokio::test]
async fn concurrent_compactors_store_every_row_once() {
    let fixture = Fixture::create().await;
    let pool = &fixture.pool;
    let mut next_offset = 0;
    for file in 0..8 {
        let records: Vec<ObservationRecord> = (0..10).map(|row| record(file * 100 + row, HEART_RATE)).collect();
        fixture.publish_file(&records, &mut next_offset).await;
    }
    let compactor = |_| Compactor::new(pool.clone(), Arc::clone(&fixture.store), fixture.prefix.clone(), settings());
    let (first, second) = (compactor(1), compactor(2));
    let (first, second) = tokio::join!(first.compact_once(), second.compact_once());
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.compacted + second.compacted, 1, "{first:?} {second:?}");
    assert_eq!(first.failed + second.failed, 0, "{first:?} {second:?}");

    let published = published_files(pool, &FileFilter::default()).await.unwrap();
    assert_eq!(published.len(), 1);
    let stored = fixture.published_records().await;
    let ids: BTreeSet<i64> = stored.iter().map(|r| r.id).collect();
    assert_eq!((stored.len(), ids.len()), (80, 80));
    let summary = catalog_summary(pool).await.unwrap();
    assert_eq!(summary.staged.files, 0, "a losing compactor removes its output");
    assert_eq!(summary.marked_for_deletion.files, 8);
}
