//! The whole pipeline in one process on the embedded log and a local object store: uploads land in Parquet files
//! in the hive layout and in the catalog, exactly once; notebooks' readers (pyarrow, DuckDB) read them.

use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{ALL_ROLES, TestDatabase, TestServer, embedded_pipeline, seeded};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

async fn patient(server: &TestServer, email: &str) -> i64 {
    let user = server.id_of("users", "email", email).await;
    server.id_of("patients", "user_id::text", &user.to_string()).await
}

/// Waits until the catalog holds `rows` published rows (or fails after `timeout`).
pub async fn wait_for_published_rows(server: &TestServer, rows: i64, timeout: Duration) -> i64 {
    let started = Instant::now();
    loop {
        let published: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(row_count), 0)::int8 FROM parquet_files WHERE state = 'published'")
                .fetch_one(&server.db.pool)
                .await
                .unwrap();
        if published >= rows || started.elapsed() > timeout {
            return published;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every observation id in the published files under the lake directory.
fn published_ids(lake: &Path, paths: &[String]) -> Vec<i64> {
    let mut ids = Vec::new();
    for path in paths {
        let file = std::fs::File::open(lake.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).unwrap().build().unwrap();
        for batch in reader {
            let records = jhe_schemas::table::records_from_batch(&batch.unwrap()).unwrap();
            ids.extend(records.iter().map(|r| r.id));
        }
    }
    ids
}

#[tokio::test]
async fn uploads_land_in_parquet_and_the_catalog_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir.path()), ALL_ROLES).await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let token = server.token(seeded::PETER).await;

    let mut accepted = HashSet::new();
    let single = omh::observation(peter, carex, HEART_RATE, &omh::heart_rate("s-0", 0, 70.0), Some("s-0"));
    let answer = server.post("/FHIR/R5/Observation", &token, single).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    accepted.insert(answer.body["id"].as_str().unwrap().parse::<i64>().unwrap());
    for batch in 0..4 {
        let entries = (0..250)
            .map(|i| {
                let minute = batch * 250 + i;
                let uuid = format!("b-{minute}");
                omh::observation(peter, carex, HEART_RATE, &omh::heart_rate(&uuid, minute, 60.0), Some(&uuid))
            })
            .collect();
        let answer = server.post("/FHIR/R5/", &token, omh::bundle(entries)).await;
        assert_eq!(answer.status, 200);
        for entry in answer.body["entry"].as_array().unwrap() {
            assert_eq!(entry["response"]["status"], "201 Created", "{entry}");
            accepted.insert(entry["resource"]["id"].as_str().unwrap().parse::<i64>().unwrap());
        }
    }
    assert_eq!(accepted.len(), 1001);

    let published = wait_for_published_rows(&server, 1001, Duration::from_secs(30)).await;
    assert_eq!(published, 1001);
    let paths: Vec<String> =
        sqlx::query_scalar("SELECT object_path FROM parquet_files WHERE state = 'published' ORDER BY object_path")
            .fetch_all(&server.db.pool)
            .await
            .unwrap();
    // minutes 0..1000 after 2025-01-01T00:00-08:00 are 08:00Z on Jan 1 to 00:39Z on Jan 2 (UTC days)
    for path in &paths {
        assert!(path.starts_with("observations/code=omh:heart-rate:2.0/date=2025-01-0"), "hive layout: {path}");
    }
    let lake = dir.path().join("lake");
    let ids = published_ids(&lake, &paths);
    assert_eq!(ids.len(), 1001, "no row twice");
    assert_eq!(ids.iter().copied().collect::<HashSet<_>>(), accepted, "every accepted id, nothing else");

    // the positions moved to the end of the log
    let next: i64 = sqlx::query_scalar("SELECT COALESCE(SUM(next_offset), 0)::int8 FROM log_positions")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(next, 1001);
}

#[tokio::test]
async fn pyarrow_and_duckdb_read_the_hive_layout() {
    let Some(python) = jhe_tests::python() else {
        panic!("the test Python environment is missing: run scripts/setup --tests");
    };
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir.path()), ALL_ROLES).await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let token = server.token(seeded::PETER).await;
    let entries = (0..120)
        .map(|minute| omh::observation(peter, carex, HEART_RATE, &omh::heart_rate("p", minute, 72.0), None))
        .collect();
    assert_eq!(server.post("/FHIR/R5/", &token, omh::bundle(entries)).await.status, 200);
    assert_eq!(wait_for_published_rows(&server, 120, Duration::from_secs(30)).await, 120);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/read_lake.py");
    let output =
        std::process::Command::new(python).arg(&script).arg(dir.path().join("lake/observations")).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["pyarrow_rows"], 120);
    assert_eq!(report["duckdb_rows"], 120);
    assert_eq!(report["codes"], serde_json::json!(["omh:heart-rate:2.0"]));
    assert_eq!(report["dates"], serde_json::json!(["2025-01-01"]));
    assert_eq!(report["mean_value"], 72.0);
}
