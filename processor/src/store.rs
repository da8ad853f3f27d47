//! Where Parquet files live: a local directory (the default, under the data dir) or an S3 bucket, behind
//! `object_store`, and the layout of observation objects in it.
//!
//! # S3 settings
//!
//! `s3://bucket/prefix` is configured like `AmazonS3Builder::from_env()` does it: every `AWS_*` variable that
//! object_store 0.13 knows (lower-cased and parsed as an `AmazonS3ConfigKey`) is applied. The ones that matter:
//!
//! | variable | meaning |
//! |---|---|
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | static credentials (else the instance / container / web-identity chain) |
//! | `AWS_REGION` (or `AWS_DEFAULT_REGION`) | the region; `us-east-1` when unset |
//! | `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`; `AWS_ENDPOINT_URL_S3` wins over both) | a non-AWS endpoint such as MinIO or moto, e.g. `http://127.0.0.1:5000` |
//! | `AWS_ALLOW_HTTP` | `true` to allow a plain-HTTP endpoint |
//! | `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` | `true` for `bucket.host` URLs (path style is the default) |
//!
//! The URL's host is the bucket (it overrides `AWS_BUCKET`), its path the key prefix. These are the usual `AWS_*`
//! names (style.md §6); reading them here is the one exception to "no env reads below `main`", kept because the
//! credential chain of object_store reads them anyway.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use jhe_schemas::ErrorKind;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use url::Url;
use uuid::Uuid;

/// The directory under the data dir that holds the lake when no object store URL is configured.
pub const LOCAL_LAKE_DIR: &str = "lake";

/// Attempts per S3 request (after the first), and the longest a request may keep retrying: bounded so a flush
/// fails (and is retried from the committed positions) rather than hanging; style.md §10 forbids unbounded retries.
const S3_MAX_RETRIES: usize = 5;
const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(60);

/// The object store block of the processor's (and query layer's) configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectStoreConfig {
    /// `None`: a local directory `<data dir>/lake`; `file:///absolute/dir`; or `s3://bucket/prefix`.
    pub url: Option<String>,
}

impl ObjectStoreConfig {
    /// Opens the store; see [`open_store`].
    pub fn open(&self, data_dir: &FsPath) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
        open_store(self.url.as_deref(), data_dir)
    }
}

/// Why an object store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store url `{url}` is not supported: use `file:///absolute/dir` or `s3://bucket/prefix`")]
    UnsupportedUrl { url: String },
    #[error("object store url `{url}` is invalid: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot create the object store directory `{}`: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
}

impl StoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StoreError::UnsupportedUrl { .. } | StoreError::InvalidUrl { .. } => ErrorKind::InvalidInput,
            StoreError::CreateDir { .. } | StoreError::ObjectStore(_) => ErrorKind::Internal,
        }
    }
}

/// Opens the object store named by `url`, configuring S3 from the process environment; see [`open_store_with_env`].
pub fn open_store(url: Option<&str>, data_dir: &FsPath) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
    open_store_with_env(url, data_dir, std::env::vars())
}

/// Opens the object store named by `url` and returns it with the key prefix every object goes under:
/// * `None` → a local directory `<data_dir>/lake` (created), prefix empty;
/// * `file:///absolute/dir` → a local directory (created), prefix empty;
/// * `s3://bucket/prefix` → S3 configured from the `AWS_*` variables in `env` (module notes; other variables are
///   ignored, exactly as `AmazonS3Builder::from_env` does), bounded retries, prefix `prefix`.
///
/// Local stores write through a temporary file and a rename, so a put is atomic as on S3. Tests pass `env`
/// explicitly so they stay hermetic.
pub fn open_store_with_env(
    url: Option<&str>,
    data_dir: &FsPath,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
    let Some(url) = url else {
        return open_local(&data_dir.join(LOCAL_LAKE_DIR));
    };
    let invalid = |reason: String| StoreError::InvalidUrl { url: url.to_owned(), reason };
    let parsed = Url::parse(url).map_err(|error| invalid(error.to_string()))?;
    match parsed.scheme() {
        "file" => {
            if parsed.host_str().is_some_and(|host| !host.is_empty() && host != "localhost") {
                return Err(invalid("a file url names no host: use `file:///absolute/dir`".into()));
            }
            let dir = parsed.to_file_path().map_err(|()| invalid("it is not an absolute local path".into()))?;
            open_local(&dir)
        }
        "s3" => {
            if parsed.host_str().is_none_or(str::is_empty) {
                return Err(invalid("it names no bucket: use `s3://bucket/prefix`".into()));
            }
            if parsed.query().is_some() || parsed.fragment().is_some() {
                return Err(invalid("a query or fragment is not allowed".into()));
            }
            let prefix = Path::from_url_path(parsed.path()).map_err(|error| invalid(error.to_string()))?;
            let retry = RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(5),
                    base: 2.0,
                },
                max_retries: S3_MAX_RETRIES,
                retry_timeout: S3_RETRY_TIMEOUT,
            };
            let mut builder = AmazonS3Builder::new();
            for (key, value) in env {
                if !key.starts_with("AWS_") {
                    continue;
                }
                if let Ok(config_key) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                    builder = builder.with_config(config_key, value);
                }
            }
            // the URL's bucket overrides `AWS_BUCKET`
            let store = builder.with_url(url).with_retry(retry).build()?;
            Ok((Arc::new(store), prefix))
        }
        _ => Err(StoreError::UnsupportedUrl { url: url.to_owned() }),
    }
}

fn open_local(dir: &FsPath) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
    // automatic cleanup removes directories the janitor leaves empty
    let store = LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
    Ok((Arc::new(store), Path::default()))
}

/// The key of an observation file: `<prefix>/observations/code=<coding_code>/date=<YYYY-MM-DD>/<id>.parquet`
/// (hive-style partitions; the system is not in the path because codes are unique across namespaces). Characters
/// object_store reserves are percent-encoded by its path rules; `:` and `=` are kept as they are.
pub fn observation_object_path(prefix: &Path, coding_code: &str, day: NaiveDate, id: Uuid) -> Path {
    prefix
        .clone()
        .join("observations")
        .join(format!("code={coding_code}"))
        .join(format!("date={}", day.format("%Y-%m-%d")))
        .join(format!("{id}.parquet"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observation_paths_follow_the_hive_layout() {
        let id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
        let day = NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        let path = observation_object_path(&Path::from("tenant/lake"), "omh:heart-rate:2.0", day, id);
        assert_eq!(
            path.as_ref(),
            "tenant/lake/observations/code=omh:heart-rate:2.0/date=2026-03-01/01900000-0000-7000-8000-000000000001.parquet"
        );
        let at_root = observation_object_path(&Path::default(), "a/b%c", day, id);
        assert_eq!(
            at_root.as_ref(),
            "observations/code=a%2Fb%25c/date=2026-03-01/01900000-0000-7000-8000-000000000001.parquet"
        );
    }

    #[test]
    fn urls_other_than_file_and_s3_are_refused() {
        let dir = std::env::temp_dir();
        for url in ["gs://bucket/x", "http://example.com/x", "not a url"] {
            let error = open_store(Some(url), &dir).expect_err("refused");
            assert_eq!(error.kind(), ErrorKind::InvalidInput, "{url}: {error}");
        }
        let error = open_store(Some("file://host/dir"), &dir).expect_err("refused");
        assert!(matches!(error, StoreError::InvalidUrl { .. }), "{error}");
    }
}
