//! FHIR Bulk Data export (`Group/{study}/$export`): every observation of a study the caller may see, written to
//! the lake's object store under `exports/{job}/` as NDJSON (one FHIR Observation per line, rendered as searches
//! render them) or Parquet (the observation table's rows), in parts of at most
//! [`crate::QuerySettings::export_rows_per_file`] observations (`Observation.1.ndjson`, `Observation.2.ndjson`, …).
//!
//! The read is one plan over the caller's [`crate::ObservationTable`] with the study filter, so the export holds
//! exactly the rows a study-scoped search would page through: consent is applied inside the scan. The plan's
//! batches are streamed into multipart uploads as they come ([`QueryEngine::execute_stream`]), so an export's
//! memory does not grow with its size; only the sort by (patient, time, id) buffers, and it spills to disk.
//!
//! An export that fails or is stopped ([`ExportControl::stop`]) leaves no file behind: the parts already written
//! are deleted.
//!
//! A finished export also says what its files hold ([`ExportContents`]: the patients of each code), so that the
//! rights it needs can be checked again whenever its files are asked for, without reading them.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::error::DataFusionError;
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use jhe_catalog::Caller;
use jhe_schemas::table::{COL_CODING_CODE, COL_CODING_SYSTEM, COL_PATIENT_ID, observation_schema, records_from_batch};
use object_store::buffered::BufWriter;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::access::AccessScope;
use crate::engine::{QueryEngine, scan};
use crate::error::{QueryError, Result};
use crate::search::{ObservationFilters, SortOrder, TimeCondition};

/// Where export files are written in the object store.
const EXPORT_PREFIX: &str = "exports";

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// `application/fhir+ndjson`: one FHIR resource per line.
    Ndjson,
    /// `application/vnd.apache.parquet`: the observation table's columns.
    Parquet,
}

impl ExportFormat {
    /// The `_outputFormat` values FHIR Bulk Data and notebooks use; `None` for any other.
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "" | "application/fhir+ndjson" | "application/ndjson" | "ndjson" => Some(Self::Ndjson),
            "application/vnd.apache.parquet" | "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    /// The name stored with a job.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Parquet => "parquet",
        }
    }

    /// The inverse of [`ExportFormat::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ndjson" => Some(Self::Ndjson),
            "parquet" => Some(Self::Parquet),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/fhir+ndjson",
            Self::Parquet => "application/vnd.apache.parquet",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Parquet => "parquet",
        }
    }
}

/// One written file of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    /// The FHIR resource type of its rows.
    pub resource_type: String,
    /// The file name within the job (`Observation.1.ndjson`).
    pub name: String,
    /// Resources (rows) in the file.
    pub count: u64,
}

/// What an export's files hold: coding system → code → the patients with rows of that code.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct ExportContents(BTreeMap<String, BTreeMap<String, BTreeSet<i64>>>);

impl ExportContents {
    /// Adds the (patient, code) pairs of a batch of the observation table.
    fn add(&mut self, batch: &RecordBatch) -> Result<()> {
        let column = |name: &str, data_type: &DataType| {
            let found = batch.column_by_name(name).ok_or_else(|| {
                QueryError::DataFusion(DataFusionError::Internal(format!("an export batch without column {name}")))
            })?;
            arrow::compute::cast(found, data_type).map_err(|error| QueryError::DataFusion(error.into()))
        };
        let patients = column(COL_PATIENT_ID, &DataType::Int64)?;
        let systems = column(COL_CODING_SYSTEM, &DataType::Utf8)?;
        let codes = column(COL_CODING_CODE, &DataType::Utf8)?;
        let (patients, systems, codes) =
            (patients.as_primitive::<Int64Type>(), systems.as_string::<i32>(), codes.as_string::<i32>());
        for row in 0..batch.num_rows() {
            self.insert(systems.value(row), codes.value(row), patients.value(row));
        }
        Ok(())
    }

    fn insert(&mut self, system: &str, code: &str, patient: i64) {
        // looked up by reference first: a batch repeats a few codes many times
        if !self.0.contains_key(system) {
            self.0.insert(system.to_owned(), BTreeMap::new());
        }
        let Some(by_code) = self.0.get_mut(system) else { return };
        if !by_code.contains_key(code) {
            by_code.insert(code.to_owned(), BTreeSet::new());
        }
        if let Some(patients) = by_code.get_mut(code) {
            patients.insert(patient);
        }
    }

    /// Whether `scope` shows every (patient, code) pair the files hold: a consent revoked or a patient gone from
    /// the scope since the export ran makes this `false`.
    pub fn is_within(&self, scope: &AccessScope) -> bool {
        self.0.iter().all(|(system, codes)| {
            codes.iter().all(|(code, patients)| patients.iter().all(|patient| scope.allows(system, code, *patient)))
        })
    }

    /// As stored with the job: `{system: {code: [patient ids]}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let codes = |codes: &BTreeMap<String, BTreeSet<i64>>| {
            codes
                .iter()
                .map(|(code, patients)| (code.clone(), serde_json::Value::from_iter(patients.iter().copied())))
                .collect::<serde_json::Map<_, _>>()
        };
        serde_json::Value::Object(
            self.0.iter().map(|(system, by_code)| (system.clone(), codes(by_code).into())).collect(),
        )
    }

    /// The inverse of [`ExportContents::to_json`]; `None` for anything else.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        serde::Deserialize::deserialize(value).ok()
    }

    /// How many (patient, code) pairs the files hold.
    pub fn pairs(&self) -> usize {
        self.0.values().flat_map(BTreeMap::values).map(BTreeSet::len).sum()
    }
}

/// What a finished export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrittenExport {
    /// At least one file, possibly with no rows.
    pub files: Vec<ExportFile>,
    pub contents: ExportContents,
}

/// What one export reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub study_id: i64,
    /// Only observations stored or updated after this instant (`_since`).
    pub since: Option<DateTime<Utc>>,
    pub format: ExportFormat,
}

/// How a running export is watched and stopped: the observations written so far, and a stop signal after which
/// the export deletes what it wrote and returns `None`.
#[derive(Debug, Clone, Default)]
pub struct ExportControl {
    written: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl ExportControl {
    /// Observations written to the export's files so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Stops the export at its next batch.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn is_stopped(&self) -> bool {
        self.stop.is_cancelled()
    }
}

/// An export file being downloaded: its size, and its bytes as they are read from the store.
pub struct ExportFileBody {
    pub size: u64,
    pub stream: BoxStream<'static, Result<Bytes>>,
}

impl std::fmt::Debug for ExportFileBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportFileBody").field("size", &self.size).finish_non_exhaustive()
    }
}

fn store_error(error: object_store::Error) -> QueryError {
    QueryError::DataFusion(DataFusionError::ObjectStore(Box::new(error)))
}

fn external(error: impl std::error::Error + Send + Sync + 'static) -> QueryError {
    QueryError::DataFusion(DataFusionError::External(Box::new(error)))
}

fn file_key(job: &str, name: &str) -> Path {
    Path::from_iter([EXPORT_PREFIX, job, name])
}

/// A job id or file name from a URL is only used as one path segment of ours.
fn is_safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 128
        && segment.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !segment.starts_with('.')
}

/// The file being written.
enum PartWriter {
    Ndjson(Box<BufWriter>),
    Parquet(Box<AsyncArrowWriter<BufWriter>>),
}

/// One part of an export while it is written.
struct Part {
    name: String,
    rows: u64,
    writer: PartWriter,
}

impl Part {
    fn open(store: &Arc<dyn ObjectStore>, job: &str, format: ExportFormat, index: usize) -> Result<Self> {
        let name = format!("Observation.{index}.{}", format.extension());
        let upload = BufWriter::new(Arc::clone(store), file_key(job, &name));
        let writer = match format {
            ExportFormat::Ndjson => PartWriter::Ndjson(Box::new(upload)),
            ExportFormat::Parquet => {
                let properties =
                    WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
                let writer =
                    AsyncArrowWriter::try_new(upload, observation_schema(), Some(properties)).map_err(external)?;
                PartWriter::Parquet(Box::new(writer))
            }
        };
        Ok(Part { name, rows: 0, writer })
    }

    /// Completes the upload; the file exists from here on.
    async fn finish(self) -> Result<ExportFile> {
        match self.writer {
            PartWriter::Ndjson(mut upload) => upload.shutdown().await.map_err(external)?,
            PartWriter::Parquet(writer) => {
                writer.close().await.map_err(external)?;
            }
        }
        Ok(ExportFile { resource_type: "Observation".to_owned(), name: self.name, count: self.rows })
    }

    /// Drops an unfinished part without making a file of it.
    async fn abandon(self) {
        match self.writer {
            PartWriter::Ndjson(mut upload) => {
                if let Err(error) = upload.abort().await {
                    tracing::warn!(%error, file = self.name, "cannot abort an export upload");
                }
            }
            // the Parquet writer cannot abort its upload: completing it lets the clean-up delete the file
            PartWriter::Parquet(writer) => {
                if let Err(error) = writer.close().await {
                    tracing::warn!(%error, file = self.name, "cannot close an abandoned export file");
                }
            }
        }
    }
}

impl QueryEngine {
    /// Writes the observations of `request.study_id` that `caller` may see to `exports/{job}/` and returns the
    /// files written and what they hold. `None` when `control` stopped it; the files written so far are deleted
    /// then, and on an error.
    pub async fn export_study(
        &self,
        caller: &Caller,
        request: &ExportRequest,
        job: &str,
        control: &ExportControl,
    ) -> Result<Option<WrittenExport>> {
        if !is_safe_segment(job) {
            return Err(QueryError::InvalidParameter(format!("`{job}` is not an export job id")));
        }
        let mut written = WrittenExport::default();
        let mut part = None;
        let outcome = self.write_parts(caller, request, job, control, &mut written, &mut part).await;
        match outcome {
            Ok(true) => {
                tracing::info!(
                    user = caller.user_id,
                    job,
                    study = request.study_id,
                    written = control.written(),
                    files = written.files.len(),
                    pairs = written.contents.pairs(),
                    "export written"
                );
                Ok(Some(written))
            }
            Ok(false) | Err(_) => {
                if let Some(part) = part.take() {
                    part.abandon().await;
                }
                if let Err(error) = self.delete_export_files(job).await {
                    tracing::warn!(%error, job, "cannot delete the files of an export that did not finish");
                }
                outcome.map(|_| None)
            }
        }
    }

    /// The export's loop: `Ok(false)` when stopped. `part` is the file being written, so the caller can abandon
    /// it on the way out.
    async fn write_parts(
        &self,
        caller: &Caller,
        request: &ExportRequest,
        job: &str,
        control: &ExportControl,
        written: &mut WrittenExport,
        part: &mut Option<Part>,
    ) -> Result<bool> {
        let WrittenExport { files, contents } = written;
        let mut filters = ObservationFilters { study_id: Some(request.study_id), ..ObservationFilters::default() };
        if let Some(since) = request.since {
            filters.last_updated.push(TimeCondition {
                lower: Bound::Excluded(since.timestamp_micros()),
                upper: Bound::Unbounded,
                negated: false,
            });
        }
        let store = self.store()?;
        let rows_per_file = self.export_rows_per_file();
        let mut batches = match self.table(caller, &filters).await? {
            Some((table, filters)) => {
                // the search's default order (patient, time, id) keeps files reproducible
                let plan = scan(table, &filters)?.sort(SortOrder::default().sort_exprs())?.build()?;
                Some(self.execute_stream(plan).await?)
            }
            None => None,
        };
        loop {
            let next = match batches.as_mut() {
                Some(receiver) => tokio::select! {
                    () = control.stop.cancelled() => return Ok(false),
                    next = receiver.recv() => next,
                },
                None => None,
            };
            let Some(batch) = next else { break };
            let batch = batch?;
            contents.add(&batch)?;
            let mut offset = 0;
            while offset < batch.num_rows() {
                if control.is_stopped() {
                    return Ok(false);
                }
                let current = match part {
                    Some(current) => current,
                    None => part.insert(Part::open(&store, job, request.format, files.len() + 1)?),
                };
                let room = usize::try_from(rows_per_file - current.rows).unwrap_or(usize::MAX);
                let rows = room.min(batch.num_rows() - offset);
                let slice = batch.slice(offset, rows);
                match &mut current.writer {
                    PartWriter::Ndjson(upload) => upload.put(self.ndjson(&slice).await?).await.map_err(store_error)?,
                    PartWriter::Parquet(writer) => writer.write(&slice).await.map_err(external)?,
                }
                current.rows += rows as u64;
                control.written.fetch_add(rows as u64, Ordering::Relaxed);
                offset += rows;
                if current.rows >= rows_per_file
                    && let Some(full) = part.take()
                {
                    files.push(full.finish().await?);
                }
            }
        }
        if let Some(last) = part.take() {
            files.push(last.finish().await?);
        }
        if files.is_empty() {
            // an export with no rows still answers with a file, as notebooks expect one per type
            files.push(Part::open(&store, job, request.format, 1)?.finish().await?);
        }
        Ok(true)
    }

    /// Deletes every file of an export job (a cancelled or failed one).
    pub async fn delete_export_files(&self, job: &str) -> Result<()> {
        if !is_safe_segment(job) {
            return Ok(());
        }
        let store = self.store()?;
        let prefix = Path::from_iter([EXPORT_PREFIX, job]);
        let found: Vec<Path> =
            store.list(Some(&prefix)).map_ok(|meta| meta.location).try_collect().await.map_err(store_error)?;
        for location in found {
            match store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(store_error(error)),
            }
        }
        Ok(())
    }

    /// An export file as a stream of bytes; `None` when the store has no such file.
    pub async fn export_file(&self, job: &str, name: &str) -> Result<Option<ExportFileBody>> {
        if !is_safe_segment(job) || !is_safe_segment(name) {
            return Ok(None);
        }
        match self.store()?.get(&file_key(job, name)).await {
            Ok(found) => Ok(Some(ExportFileBody {
                size: found.meta.size,
                stream: found.into_stream().map_err(store_error).boxed(),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(store_error(error)),
        }
    }

    /// Each row as a FHIR Observation on its own line, with the code table's display, as a search renders it.
    async fn ndjson(&self, batch: &RecordBatch) -> Result<Bytes> {
        let records = records_from_batch(batch)?;
        let texts = self.code_texts(&records).await?;
        let mut body = Vec::with_capacity(records.len() * 640);
        for record in &records {
            let text = texts.get(&record.coding_system, &record.coding_code);
            let resource = jhe_schemas::fhir::render::observation(record, text);
            serde_json::to_writer(&mut body, &resource).map_err(external)?;
            body.push(b'\n');
        }
        Ok(Bytes::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_formats_and_segments() {
        assert_eq!(ExportFormat::parse(""), Some(ExportFormat::Ndjson));
        assert_eq!(ExportFormat::parse("application/fhir+ndjson"), Some(ExportFormat::Ndjson));
        assert_eq!(ExportFormat::parse("ndjson"), Some(ExportFormat::Ndjson));
        assert_eq!(ExportFormat::parse("parquet"), Some(ExportFormat::Parquet));
        assert_eq!(ExportFormat::parse("text/csv"), None);
        for format in [ExportFormat::Ndjson, ExportFormat::Parquet] {
            assert_eq!(ExportFormat::from_name(format.name()), Some(format));
        }
        assert!(is_safe_segment("0f3a9c.ndjson"));
        assert!(!is_safe_segment(".."));
        assert!(!is_safe_segment("a/b"));
        assert!(!is_safe_segment(""));
    }

    #[test]
    fn contents_are_stored_as_system_code_patients() {
        let mut contents = ExportContents::default();
        for (system, code, patient) in [("s", "a", 3), ("s", "a", 1), ("s", "a", 3), ("s", "b", 2), ("t", "a", 1)] {
            contents.insert(system, code, patient);
        }
        assert_eq!(contents.pairs(), 4);
        let json = contents.to_json();
        assert_eq!(json, serde_json::json!({"s": {"a": [1, 3], "b": [2]}, "t": {"a": [1]}}));
        assert_eq!(ExportContents::from_json(&json), Some(contents));
        assert_eq!(ExportContents::from_json(&serde_json::json!([])), None);
        assert_eq!(ExportContents::from_json(&serde_json::json!({"s": {"a": ["x"]}})), None);
    }
}
