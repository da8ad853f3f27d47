//! The object store backends against real services: the S3 server from `JHE_TEST_S3_ENDPOINT` (default
//! `http://127.0.0.1:5000`, moto in `scripts/services`) and a local directory run the same checks — a Parquet file
//! round-trips under the hive layout (with `:` in the code), and multipart uploads store exactly the bytes given.
//! Each S3 test creates its own bucket (object_store cannot create buckets: a plain `PUT /<bucket>` does it).

use std::sync::Arc;

use bytes::Bytes;
use chrono::NaiveDate;
use futures::TryStreamExt;
use jhe_processor::parquet_file::{MULTIPART_THRESHOLD, encode_parquet, read_parquet, upload, upload_multipart};
use jhe_processor::store::{StoreError, observation_object_path, open_store_with_env};
use jhe_schemas::table::{ObservationBatchBuilder, records_from_batch};
use jhe_schemas::{EffectiveTime, Identifier, MeasuredValues, ObservationRecord};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use rand::RngCore;
use uuid::Uuid;

const CODE: &str = "omh:heart-rate:2.0";
/// 2026-03-01T00:00:00Z in microseconds.
const DAY_START: i64 = 1_772_323_200_000_000;

fn endpoint() -> String {
    std::env::var("JHE_TEST_S3_ENDPOINT").unwrap_or_else(|_| "http://127.0.0.1:5000".to_owned())
}

/// The environment an S3 deployment would set, passed explicitly (the test process's own stays untouched).
fn s3_env() -> Vec<(String, String)> {
    [
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ENDPOINT_URL", endpoint()),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
        ("UNRELATED_VARIABLE", "ignored".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// A fresh bucket on the S3 server; its name.
async fn create_bucket() -> String {
    let bucket = format!("jhe-test-{:016x}", rand::random::<u64>());
    let response = reqwest::Client::new()
        .put(format!("{}/{bucket}", endpoint()))
        .send()
        .await
        .unwrap_or_else(|error| panic!("the S3 server at {} does not answer: {error}", endpoint()));
    assert!(response.status().is_success(), "creating bucket {bucket}: {}", response.status());
    bucket
}

async fn open_s3(prefix: &str) -> (Arc<dyn ObjectStore>, Path) {
    let bucket = create_bucket().await;
    let data_dir = std::env::temp_dir();
    let (store, store_prefix) =
        open_store_with_env(Some(&format!("s3://{bucket}/{prefix}")), &data_dir, s3_env()).expect("open S3");
    assert_eq!(store_prefix.as_ref(), prefix);
    (store, store_prefix)
}

fn records() -> Vec<ObservationRecord> {
    (0..500)
        .map(|id| {
            let start_micros = DAY_START + (id * 7_919 % 86_000) * 1_000_000;
            ObservationRecord {
                id,
                patient_id: 1 + id % 13,
                jhe_user_id: None,
                data_source_id: Some(2),
                coding_system: "https://w3id.org/openmhealth".into(),
                coding_code: CODE.into(),
                effective: EffectiveTime { start_micros, end_micros: None },
                last_updated_micros: DAY_START + 86_400_000_000,
                identifiers: vec![Identifier { system: "urn:test".into(), value: format!("obs-{id}") }],
                omh_json: format!(r#"{{"heart_rate":{{"value":{},"unit":"beats/min"}}}}"#, 50 + id % 50),
                values: MeasuredValues {
                    value: Some((50 + id % 50) as f64),
                    unit: Some("beats/min".into()),
                    ..Default::default()
                },
            }
        })
        .collect()
}

/// Upload + list + read back of one observation file; the same on every backend.
async fn parquet_round_trip(store: &dyn ObjectStore, prefix: &Path) {
    let records = records();
    let mut builder = ObservationBatchBuilder::with_capacity(records.len());
    for record in &records {
        builder.append(record).unwrap();
    }
    let encoded = encode_parquet(&[builder.finish().unwrap()]).unwrap();
    let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
    assert_eq!(encoded.stats.day, day);
    let id = Uuid::now_v7();
    let path = observation_object_path(prefix, CODE, day, id);
    let expected_size = encoded.bytes.len() as u64;

    let size = upload(store, &path, encoded.bytes).await.expect("upload");
    assert_eq!(size, expected_size);
    assert_eq!(store.head(&path).await.expect("head").size, size);

    let listed: Vec<_> = store.list(Some(prefix)).try_collect().await.expect("list");
    let locations: Vec<String> = listed.iter().map(|meta| meta.location.to_string()).collect();
    let expected_location = if prefix.as_ref().is_empty() {
        format!("observations/code={CODE}/date=2026-03-01/{id}.parquet")
    } else {
        format!("{prefix}/observations/code={CODE}/date=2026-03-01/{id}.parquet")
    };
    assert_eq!(locations, vec![expected_location], "the key keeps `:` and `=` as they are");

    let batches = read_parquet(store, &path).await.expect("read back");
    let mut read: Vec<ObservationRecord> =
        batches.iter().flat_map(|batch| records_from_batch(batch).unwrap()).collect();
    read.sort_by_key(|record| record.id);
    assert_eq!(read, records);
}

/// `len` bytes: one random MiB repeated, each copy stamped with its index (so misordered parts are caught), cheap
/// to build in a debug build.
fn test_payload(len: usize) -> Bytes {
    const BLOCK: usize = 1024 * 1024;
    let mut block = vec![0u8; BLOCK];
    rand::rng().fill_bytes(&mut block);
    let mut bytes = Vec::with_capacity(len + BLOCK);
    for index in 0..len.div_ceil(BLOCK) {
        let start = bytes.len();
        bytes.extend_from_slice(&block);
        bytes[start..start + 8].copy_from_slice(&(index as u64).to_le_bytes());
    }
    bytes.truncate(len);
    Bytes::from(bytes)
}

/// A multipart upload in small parts, and one through `upload` past the multipart threshold.
async fn multipart_round_trip(store: &dyn ObjectStore, prefix: &Path) {
    let payload = test_payload(12 * 1024 * 1024 + 123);
    let path = prefix.clone().join("multipart").join("parts.bin");
    upload_multipart(store, &path, payload.clone(), 5 * 1024 * 1024).await.expect("multipart upload");
    let stored = store.get(&path).await.expect("get").bytes().await.expect("read");
    assert!(stored == payload, "multipart content differs ({} vs {} bytes)", stored.len(), payload.len());

    let large = test_payload(MULTIPART_THRESHOLD + 4096);
    let path = prefix.clone().join("multipart").join("large.bin");
    assert_eq!(upload(store, &path, large.clone()).await.expect("upload"), large.len() as u64);
    let stored = store.get(&path).await.expect("get").bytes().await.expect("read");
    assert!(stored == large, "large upload content differs");

    store.delete(&path).await.expect("delete");
    assert!(matches!(store.head(&path).await, Err(object_store::Error::NotFound { .. })));
}

#[tokio::test]
async fn s3_round_trips_a_parquet_file() {
    let (store, prefix) = open_s3("tenant-a/lake").await;
    parquet_round_trip(store.as_ref(), &prefix).await;
}

#[tokio::test]
async fn s3_multipart_uploads_store_every_byte() {
    let (store, prefix) = open_s3("lake").await;
    multipart_round_trip(store.as_ref(), &prefix).await;
}

#[tokio::test]
async fn s3_at_the_bucket_root() {
    let bucket = create_bucket().await;
    let (store, prefix) =
        open_store_with_env(Some(&format!("s3://{bucket}")), &std::env::temp_dir(), s3_env()).expect("open S3");
    assert_eq!(prefix.as_ref(), "");
    parquet_round_trip(store.as_ref(), &prefix).await;
}

#[tokio::test]
async fn a_missing_bucket_fails_promptly() {
    let bucket = format!("jhe-test-missing-{:016x}", rand::random::<u64>());
    let (store, prefix) =
        open_store_with_env(Some(&format!("s3://{bucket}/x")), &std::env::temp_dir(), s3_env()).expect("open S3");
    let path = prefix.clone().join("a.bin");
    let error = upload(store.as_ref(), &path, Bytes::from_static(b"x")).await.expect_err("no such bucket");
    assert!(!error.to_string().is_empty());
}

#[tokio::test]
async fn local_directories_behave_like_s3() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("some").join("lake");
    let url = format!("file://{}", lake.display());
    let (store, prefix) = open_store_with_env(Some(&url), dir.path(), Vec::new()).expect("open a local store");
    assert!(lake.is_dir(), "the directory is created");
    parquet_round_trip(store.as_ref(), &prefix).await;
    multipart_round_trip(store.as_ref(), &prefix).await;

    let error = open_store_with_env(Some("gs://bucket/x"), dir.path(), Vec::new()).expect_err("refused");
    assert!(matches!(error, StoreError::UnsupportedUrl { .. }), "{error}");
}
