//! The file catalog and log positions against a real Postgres: publish is all-or-nothing and checks `from`,
//! compaction swaps atomically, the janitor respects its grace periods.
//! The server comes from `JHE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`); each test uses a
//! fresh database with a random name and drops it afterwards.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use jhe_catalog::{
    FileFilter, FileState, NewParquetFile, PartitionDelta, PublishError, ReplaceError, catalog_summary,
    compaction_candidates, connect, create_database_if_missing, delete_file_rows, janitor_candidates, migrate,
    parquet_file, positions, publish, published_files, published_patient_rows, replace_files, stage_files,
};
use sqlx::{Connection, PgConnection, PgPool};
use url::Url;
use uuid::Uuid;

const TOPIC: &str = "jhe.observations";
const HEART_RATE: (&str, &str) = ("https://w3id.org/openmhealth", "omh:heart-rate:2.0");
const STEPS: (&str, &str) = ("https://w3id.org/openmhealth", "omh:step-count:2.0");

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
        let name = format!("jhe_files_test_{:016x}", rand::random::<u64>());
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

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).single().expect("a valid time")
}

fn file(code: (&str, &str), day: u32, rows: i64, size: i64, patients: (i64, i64)) -> NewParquetFile {
    let id = Uuid::now_v7();
    NewParquetFile {
        id,
        object_path: format!("lake/observations/code={}/date=2026-03-{day:02}/{id}.parquet", code.1),
        coding_system: code.0.to_owned(),
        coding_code: code.1.to_owned(),
        day: NaiveDate::from_ymd_opt(2026, 3, day).expect("a valid day"),
        row_count: rows,
        size_bytes: size,
        min_patient_id: patients.0,
        max_patient_id: patients.1,
        min_effective_start: at(day, 1),
        max_effective_start: at(day, 20),
        max_effective_end: Some(at(day, 21)),
        min_last_updated: at(day, 22),
        max_last_updated: at(day, 23),
        compaction_level: 0,
        patient_rows: vec![(patients.0, rows)],
    }
}

fn delta(partition: i32, from: i64, to: i64) -> PartitionDelta {
    PartitionDelta { partition, from, to }
}

async fn state_of(pool: &PgPool, id: Uuid) -> Option<FileState> {
    parquet_file(pool, id).await.expect("read a file").map(|row| row.state)
}

#[tokio::test]
async fn publish_moves_positions_and_publishes_the_files() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let files = [file(HEART_RATE, 1, 10, 1000, (1, 5)), file(STEPS, 1, 4, 400, (2, 3))];
    stage_files(pool, &files).await.unwrap();
    assert_eq!(state_of(pool, files[0].id).await, Some(FileState::Staged));
    assert!(published_files(pool, &FileFilter::default()).await.unwrap().is_empty(), "staged files are invisible");

    let ids: Vec<Uuid> = files.iter().map(|f| f.id).collect();
    publish(pool, TOPIC, &[delta(1, 0, 5), delta(0, 0, 10)], &ids).await.unwrap();

    assert_eq!(positions(pool, TOPIC, &[0, 1, 2]).await.unwrap(), vec![Some(10), Some(5), None]);
    assert_eq!(positions(pool, "another.topic", &[0]).await.unwrap(), vec![None]);
    let published = published_files(pool, &FileFilter::default()).await.unwrap();
    assert_eq!(published.len(), 2);
    for row in &published {
        assert_eq!(row.state, FileState::Published);
        assert!(row.published_at.is_some());
        let staged = files.iter().find(|f| f.id == row.id).expect("a staged file");
        assert_eq!(row.object_path, staged.object_path);
        assert_eq!(row.row_count, staged.row_count);
        assert_eq!(row.max_effective_end, staged.max_effective_end);
    }

    // the next batch continues where this one ended; a batch of only rejected records moves positions too
    publish(pool, TOPIC, &[delta(0, 10, 12)], &[]).await.unwrap();
    assert_eq!(positions(pool, TOPIC, &[0, 1]).await.unwrap(), vec![Some(12), Some(5)]);

    let summary = catalog_summary(pool).await.unwrap();
    assert_eq!(summary.published.files, 2);
    assert_eq!(summary.published.rows, 14);
    assert_eq!(summary.published.bytes, 1400);
    assert_eq!(summary.staged.files, 0);
}

#[tokio::test]
async fn a_position_mismatch_rolls_everything_back() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    publish(pool, TOPIC, &[delta(0, 0, 10)], &[]).await.unwrap();

    let files = [file(HEART_RATE, 2, 3, 300, (1, 1))];
    stage_files(pool, &files).await.unwrap();
    // partition 1 alone would be fine (never processed, starts at 7); partition 0 is at 10, not 4
    let error = publish(pool, TOPIC, &[delta(1, 7, 9), delta(0, 4, 20)], &[files[0].id]).await.unwrap_err();
    assert!(matches!(error, PublishError::PositionMismatch { partition: 0, stored: 10, expected: 4 }), "{error:?}");
    assert_eq!(positions(pool, TOPIC, &[0, 1]).await.unwrap(), vec![Some(10), None], "positions unchanged");
    assert_eq!(state_of(pool, files[0].id).await, Some(FileState::Staged), "no file published");
    assert!(published_files(pool, &FileFilter::default()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_replayed_range_is_rejected() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let first = [file(HEART_RATE, 3, 5, 500, (1, 2))];
    stage_files(pool, &first).await.unwrap();
    publish(pool, TOPIC, &[delta(0, 0, 5)], &[first[0].id]).await.unwrap();

    // the same records processed again (e.g. after a rebalance) produce new files for the same range
    let replay = [file(HEART_RATE, 3, 5, 500, (1, 2))];
    stage_files(pool, &replay).await.unwrap();
    let error = publish(pool, TOPIC, &[delta(0, 0, 5)], &[replay[0].id]).await.unwrap_err();
    assert!(matches!(error, PublishError::PositionMismatch { partition: 0, stored: 5, expected: 0 }), "{error:?}");
    assert_eq!(state_of(pool, replay[0].id).await, Some(FileState::Staged));
    assert_eq!(published_files(pool, &FileFilter::default()).await.unwrap().len(), 1, "stored exactly once");
}

#[tokio::test]
async fn only_staged_files_can_be_published() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let staged = [file(STEPS, 4, 2, 200, (1, 1))];
    stage_files(pool, &staged).await.unwrap();

    let never_staged = Uuid::now_v7();
    let error = publish(pool, TOPIC, &[delta(0, 0, 3)], &[staged[0].id, never_staged]).await.unwrap_err();
    assert!(matches!(error, PublishError::FileNotStaged { id } if id == never_staged), "{error:?}");
    assert_eq!(positions(pool, TOPIC, &[0]).await.unwrap(), vec![None], "the position row was rolled back");
    assert_eq!(state_of(pool, staged[0].id).await, Some(FileState::Staged));

    publish(pool, TOPIC, &[delta(0, 0, 3)], &[staged[0].id]).await.unwrap();
    // an already published file cannot be published again (by a later batch)
    let error = publish(pool, TOPIC, &[delta(0, 3, 4)], &[staged[0].id]).await.unwrap_err();
    assert!(matches!(error, PublishError::FileNotStaged { id } if id == staged[0].id), "{error:?}");
    assert_eq!(positions(pool, TOPIC, &[0]).await.unwrap(), vec![Some(3)]);

    let error = publish(pool, TOPIC, &[delta(0, 5, 4)], &[]).await.unwrap_err();
    assert!(matches!(error, PublishError::InvalidDelta { partition: 0, .. }), "{error:?}");
    let error = publish(pool, TOPIC, &[delta(1, 0, 1), delta(1, 0, 1)], &[]).await.unwrap_err();
    assert!(matches!(error, PublishError::InvalidDelta { partition: 1, .. }), "{error:?}");
}

#[tokio::test]
async fn published_files_are_pruned_by_code_day_and_patient() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let files = [
        file(HEART_RATE, 1, 1, 100, (1, 10)),
        file(HEART_RATE, 2, 1, 100, (20, 30)),
        file(HEART_RATE, 3, 1, 100, (5, 25)),
        file(STEPS, 2, 1, 100, (1, 100)),
    ];
    stage_files(pool, &files).await.unwrap();
    let ids: Vec<Uuid> = files.iter().map(|f| f.id).collect();
    publish(pool, TOPIC, &[delta(0, 0, 4)], &ids).await.unwrap();

    let files = &files;
    let matching = |filter: FileFilter| async move {
        let rows = published_files(pool, &filter).await.unwrap();
        let position =
            |row: &jhe_catalog::ParquetFileRow| files.iter().position(|f| f.id == row.id).expect("a known file");
        let mut found: Vec<usize> = rows.iter().map(position).collect();
        found.sort_unstable();
        // the same filter in Rust, over every published file, picks the same files
        let every = published_files(pool, &FileFilter::default()).await.unwrap();
        let mut admitted: Vec<usize> = every.iter().filter(|row| filter.admits(row)).map(position).collect();
        admitted.sort_unstable();
        assert_eq!(admitted, found, "FileFilter::admits agrees with published_files for {filter:?}");
        found
    };
    let codes = |pairs: &[(&str, &str)]| Some(pairs.iter().map(|(s, c)| (s.to_string(), c.to_string())).collect());
    let day = |d: u32| NaiveDate::from_ymd_opt(2026, 3, d);

    assert_eq!(matching(FileFilter::default()).await, vec![0, 1, 2, 3]);
    assert_eq!(matching(FileFilter { codes: codes(&[HEART_RATE]), ..Default::default() }).await, vec![0, 1, 2]);
    assert_eq!(
        matching(FileFilter { codes: codes(&[HEART_RATE, STEPS]), ..Default::default() }).await,
        vec![0, 1, 2, 3]
    );
    assert_eq!(matching(FileFilter { codes: codes(&[]), ..Default::default() }).await, Vec::<usize>::new());
    assert_eq!(
        matching(FileFilter { codes: codes(&[("other", HEART_RATE.1)]), ..Default::default() }).await,
        Vec::<usize>::new(),
        "system and code must match together"
    );
    assert_eq!(matching(FileFilter { from_day: day(2), to_day: day(2), ..Default::default() }).await, vec![1, 3]);
    assert_eq!(matching(FileFilter { from_day: day(2), ..Default::default() }).await, vec![1, 2, 3]);
    assert_eq!(matching(FileFilter { patient_id: Some(22), ..Default::default() }).await, vec![1, 2, 3]);
    assert_eq!(
        matching(FileFilter { codes: codes(&[HEART_RATE]), to_day: day(2), patient_id: Some(7), ..Default::default() })
            .await,
        vec![0]
    );
}

#[tokio::test]
async fn patient_rows_sum_over_the_published_files() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let with_rows = |mut entry: NewParquetFile, rows: &[(i64, i64)]| {
        entry.patient_rows = rows.to_vec();
        entry.row_count = rows.iter().map(|(_, count)| count).sum();
        entry
    };
    let day1 = with_rows(file(HEART_RATE, 1, 0, 100, (1, 3)), &[(1, 5), (2, 7), (3, 1)]);
    let day2 = with_rows(file(HEART_RATE, 2, 0, 100, (1, 2)), &[(1, 4), (2, 2)]);
    let steps = with_rows(file(STEPS, 1, 0, 100, (2, 2)), &[(2, 9)]);
    let staged_only = with_rows(file(HEART_RATE, 3, 0, 100, (1, 1)), &[(1, 100)]);
    stage_files(pool, &[day1.clone(), day2.clone(), steps.clone(), staged_only]).await.unwrap();
    publish(pool, TOPIC, &[delta(0, 0, 3)], &[day1.id, day2.id, steps.id]).await.unwrap();

    let pair = |(system, code): (&str, &str)| (system.to_owned(), code.to_owned());
    let sums = |rows: Vec<jhe_catalog::PatientRows>| {
        let mut sums: Vec<(String, i64, i64)> =
            rows.into_iter().map(|row| (row.coding_code, row.patient_id, row.rows)).collect();
        sums.sort();
        sums
    };
    let hr = HEART_RATE.1.to_owned();
    let all = published_patient_rows(pool, None, None).await.unwrap().expect("every file's rows are known");
    assert_eq!(
        sums(all),
        vec![(hr.clone(), 1, 9), (hr.clone(), 2, 9), (hr.clone(), 3, 1), (STEPS.1.to_owned(), 2, 9)],
        "summed over the published files only"
    );
    let one = published_patient_rows(pool, Some(&[pair(HEART_RATE)]), Some(&[2])).await.unwrap().unwrap();
    assert_eq!(sums(one), vec![(hr.clone(), 2, 9)]);

    // a published file catalogued without patient rows makes the sum unknown for its code only
    let unknown = file(STEPS, 2, 3, 100, (1, 1));
    let unknown = NewParquetFile { patient_rows: Vec::new(), ..unknown };
    stage_files(pool, std::slice::from_ref(&unknown)).await.unwrap();
    publish(pool, TOPIC, &[delta(0, 3, 4)], &[unknown.id]).await.unwrap();
    assert_eq!(published_patient_rows(pool, Some(&[pair(STEPS)]), None).await.unwrap(), None);
    assert!(published_patient_rows(pool, Some(&[pair(HEART_RATE)]), None).await.unwrap().is_some());
    assert_eq!(published_patient_rows(pool, None, None).await.unwrap(), None);
}

#[tokio::test]
async fn compaction_candidates_take_the_smallest_files_of_a_group() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let mut files = vec![
        file(HEART_RATE, 1, 1, 30, (1, 1)),
        file(HEART_RATE, 1, 1, 10, (1, 1)),
        file(HEART_RATE, 1, 1, 20, (1, 1)),
        file(HEART_RATE, 2, 1, 10, (1, 1)),
        file(STEPS, 1, 1, 10, (1, 1)),
        file(STEPS, 1, 1, 10, (1, 1)),
    ];
    files[5].compaction_level = 3;
    stage_files(pool, &files).await.unwrap();
    let ids: Vec<Uuid> = files.iter().map(|f| f.id).collect();
    // still staged: nothing to compact
    assert!(compaction_candidates(pool, 2, 2, 1000).await.unwrap().is_empty());
    publish(pool, TOPIC, &[delta(0, 0, 6)], &ids).await.unwrap();

    let groups = compaction_candidates(pool, 2, 2, 35).await.unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    let group: Vec<Uuid> = groups[0].iter().map(|row| row.id).collect();
    assert_eq!(group, vec![files[1].id, files[2].id], "the smallest that fit in 35 bytes");

    let groups = compaction_candidates(pool, 2, 2, 1000).await.unwrap();
    assert_eq!(groups.len(), 1, "the step-count file of level 3 is above max_level: {groups:?}");
    assert_eq!(groups[0].len(), 3);
    assert_eq!(compaction_candidates(pool, 1, 3, 1000).await.unwrap().len(), 3);
    assert!(compaction_candidates(pool, 4, 2, 1000).await.unwrap().is_empty());
}

#[tokio::test]
async fn replace_files_swaps_inputs_for_output_atomically() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let inputs = [file(HEART_RATE, 5, 3, 100, (1, 4)), file(HEART_RATE, 5, 2, 100, (3, 9))];
    stage_files(pool, &inputs).await.unwrap();
    let input_ids: Vec<Uuid> = inputs.iter().map(|f| f.id).collect();
    publish(pool, TOPIC, &[delta(0, 0, 5)], &input_ids).await.unwrap();

    let mut output = file(HEART_RATE, 5, 5, 150, (1, 9));
    output.compaction_level = 1;

    let mut wrong = output.clone();
    wrong.row_count = 4;
    let error = replace_files(pool, &input_ids, &wrong).await.unwrap_err();
    assert!(matches!(error, ReplaceError::OutputMismatch { .. }), "{error:?}");

    // the compactor stages its output before the upload; the swap publishes it
    stage_files(pool, std::slice::from_ref(&output)).await.unwrap();
    replace_files(pool, &input_ids, &output).await.unwrap();
    let published = published_files(pool, &FileFilter::default()).await.unwrap();
    assert_eq!(published.len(), 1);
    assert_eq!(published[0].id, output.id);
    assert_eq!(published[0].compaction_level, 1);
    for id in &input_ids {
        let row = parquet_file(pool, *id).await.unwrap().expect("the input row stays until the janitor");
        assert_eq!(row.state, FileState::MarkedForDeletion);
        assert!(row.marked_at.is_some());
    }

    // a second compaction of the same inputs lost the race: nothing changes
    let second = file(HEART_RATE, 5, 5, 150, (1, 9));
    let error = replace_files(pool, &input_ids, &second).await.unwrap_err();
    assert!(matches!(error, ReplaceError::InputsChanged { .. }), "{error:?}");
    assert_eq!(parquet_file(pool, second.id).await.unwrap(), None);

    // an output that was never staged is inserted as published
    let third = file(HEART_RATE, 5, 5, 150, (1, 9));
    replace_files(pool, &[output.id], &third).await.unwrap();
    assert_eq!(state_of(pool, third.id).await, Some(FileState::Published));
    assert_eq!(state_of(pool, output.id).await, Some(FileState::MarkedForDeletion));

    let error = replace_files(pool, &[], &third).await.unwrap_err();
    assert!(matches!(error, ReplaceError::NoInputs), "{error:?}");
}

#[tokio::test]
async fn janitor_candidates_respect_the_grace_periods() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let orphan = file(STEPS, 6, 1, 10, (1, 1));
    let input = file(STEPS, 6, 1, 10, (1, 1));
    stage_files(pool, &[orphan.clone(), input.clone()]).await.unwrap();
    publish(pool, TOPIC, &[delta(0, 0, 1)], &[input.id]).await.unwrap();
    let output = file(STEPS, 6, 1, 10, (1, 1));
    replace_files(pool, &[input.id], &output).await.unwrap();

    let hour = Duration::from_secs(3600);
    let candidates = |staged: Duration, marked: Duration| async move {
        let mut ids: Vec<Uuid> = janitor_candidates(pool, staged, marked).await.unwrap().iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids
    };
    assert!(candidates(hour, hour).await.is_empty(), "both are within their grace");
    assert_eq!(candidates(hour, Duration::ZERO).await, vec![input.id]);
    assert_eq!(candidates(Duration::ZERO, hour).await, vec![orphan.id]);
    // the orphan was claimed: a publish that arrives after its grace fails instead of publishing a deleted object
    assert_eq!(state_of(pool, orphan.id).await, Some(FileState::MarkedForDeletion));
    let error = publish(pool, TOPIC, &[delta(0, 1, 2)], &[orphan.id]).await.unwrap_err();
    assert!(matches!(error, PublishError::FileNotStaged { id } if id == orphan.id), "{error:?}");
    let mut both = vec![orphan.id, input.id];
    both.sort_unstable();
    assert_eq!(candidates(hour, Duration::ZERO).await, both);

    // published rows are never deleted by the janitor's statement
    assert_eq!(delete_file_rows(pool, &[orphan.id, input.id, output.id]).await.unwrap(), 2);
    assert_eq!(parquet_file(pool, orphan.id).await.unwrap(), None);
    assert_eq!(parquet_file(pool, input.id).await.unwrap(), None);
    assert_eq!(state_of(pool, output.id).await, Some(FileState::Published));
    assert!(candidates(Duration::ZERO, Duration::ZERO).await.is_empty());
}

#[tokio::test]
async fn concurrent_publishes_of_one_range_commit_exactly_once() {
    let db = TestDb::create().await;
    let pool = &db.pool;
    let files: Vec<NewParquetFile> = (0..8).map(|_| file(HEART_RATE, 7, 1, 10, (1, 1))).collect();
    stage_files(pool, &files).await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    for staged in &files {
        let pool = pool.clone();
        let id = staged.id;
        // every writer claims partitions 0 and 1 (in different orders: the lock order must not deadlock)
        let deltas =
            if id.as_u128() % 2 == 0 { [delta(0, 0, 10), delta(1, 0, 3)] } else { [delta(1, 0, 3), delta(0, 0, 10)] };
        tasks.spawn(async move { publish(&pool, TOPIC, &deltas, &[id]).await });
    }
    let mut committed = 0;
    while let Some(outcome) = tasks.join_next().await {
        match outcome.expect("the task ran") {
            Ok(()) => committed += 1,
            Err(PublishError::PositionMismatch { stored, expected: 0, .. }) => assert!(stored > 0),
            Err(other) => panic!("unexpected publish error: {other:?}"),
        }
    }
    assert_eq!(committed, 1);
    assert_eq!(positions(pool, TOPIC, &[0, 1]).await.unwrap(), vec![Some(10), Some(3)]);
    assert_eq!(published_files(pool, &FileFilter::default()).await.unwrap().len(), 1);
}
