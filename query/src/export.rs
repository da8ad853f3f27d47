//! FHIR Bulk Data export (`Group/{study}/$export`): every observation of a study the caller may see, written to
//! the lake's object store as one NDJSON file (one FHIR Observation per line, rendered as searches render them)
//! or one Parquet file (the observation table's rows), under `exports/{job}/`.
//!
//! The read is one plan over the caller's [`crate::ObservationTable`] with the study filter, so the export holds
//! exactly the rows a study-scoped search would page through: consent is applied inside the scan.
//!
//! Not yet: the rows are collected before the file is written (the engine's memory limit bounds an export), and
//! one file per resource type is written, not split into parts.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use arrow::array::RecordBatch;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use datafusion::error::DataFusionError;
use datafusion::parquet::arrow::ArrowWriter;
use jhe_catalog::Caller;
use jhe_schemas::table::{observation_schema, records_from_batch};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

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
    /// The file name within the job (`Observation.ndjson`).
    pub name: String,
    /// Resources (rows) in the file.
    pub count: u64,
}

/// What one export reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub study_id: i64,
    /// Only observations stored or updated after this instant (`_since`).
    pub since: Option<DateTime<Utc>>,
    pub format: ExportFormat,
}

fn store_error(error: object_store::Error) -> QueryError {
    QueryError::DataFusion(DataFusionError::ObjectStore(Box::new(error)))
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

impl QueryEngine {
    /// Writes the observations of `request.study_id` that `caller` may see to `exports/{job}/` and returns the
    /// files written (one, possibly with no rows).
    pub async fn export_study(&self, caller: &Caller, request: &ExportRequest, job: &str) -> Result<Vec<ExportFile>> {
        if !is_safe_segment(job) {
            return Err(QueryError::InvalidParameter(format!("`{job}` is not an export job id")));
        }
        let mut filters = ObservationFilters { study_id: Some(request.study_id), ..ObservationFilters::default() };
        if let Some(since) = request.since {
            filters.last_updated.push(TimeCondition {
                lower: Bound::Excluded(since.timestamp_micros()),
                upper: Bound::Unbounded,
                negated: false,
            });
        }
        let batches = match self.table(caller, &filters).await? {
            Some((table, filters)) => {
                // the search's default order (patient, time, id) keeps files reproducible
                let plan = scan(table, &filters)?.sort(SortOrder::default().sort_exprs())?.build()?;
                self.execute(plan, Ok).await?
            }
            None => Vec::new(),
        };
        let count: u64 = batches.iter().map(|batch| batch.num_rows() as u64).sum();
        let body = match request.format {
            ExportFormat::Ndjson => self.ndjson(&batches).await?,
            ExportFormat::Parquet => parquet(&batches)?,
        };
        let name = format!("Observation.{}", request.format.extension());
        self.store()?.put(&file_key(job, &name), PutPayload::from(body)).await.map_err(store_error)?;
        tracing::info!(user = caller.user_id, job, study = request.study_id, count, "export written");
        Ok(vec![ExportFile { resource_type: "Observation".to_owned(), name, count }])
    }

    /// The bytes of an export file; `None` when the store has no such file.
    pub async fn export_file(&self, job: &str, name: &str) -> Result<Option<Bytes>> {
        if !is_safe_segment(job) || !is_safe_segment(name) {
            return Ok(None);
        }
        match self.store()?.get(&file_key(job, name)).await {
            Ok(found) => Ok(Some(found.bytes().await.map_err(store_error)?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(store_error(error)),
        }
    }

    /// Each row as a FHIR Observation on its own line, with the code table's display, as a search renders it.
    async fn ndjson(&self, batches: &[RecordBatch]) -> Result<Bytes> {
        let mut records = Vec::new();
        for batch in batches {
            records.extend(records_from_batch(batch)?);
        }
        let pairs: BTreeSet<(String, String)> =
            records.iter().map(|record| (record.coding_system.clone(), record.coding_code.clone())).collect();
        let pairs: Vec<(String, String)> = pairs.into_iter().collect();
        let texts: HashMap<(String, String), String> = jhe_catalog::code_details(self.pool(), &pairs)
            .await?
            .into_iter()
            .map(|code| ((code.coding_system, code.coding_code), code.text))
            .collect();
        let mut body = Vec::new();
        for record in &records {
            let key = (record.coding_system.clone(), record.coding_code.clone());
            let resource = jhe_schemas::fhir::render::observation(record, texts.get(&key).map(String::as_str));
            serde_json::to_writer(&mut body, &resource).map_err(|error| DataFusionError::External(Box::new(error)))?;
            body.push(b'\n');
        }
        Ok(Bytes::from(body))
    }
}

/// The rows as one Parquet file with the observation table's schema.
fn parquet(batches: &[RecordBatch]) -> Result<Bytes> {
    let schema = batches.first().map_or_else(observation_schema, RecordBatch::schema);
    let write = || -> std::result::Result<Vec<u8>, datafusion::parquet::errors::ParquetError> {
        let mut writer = ArrowWriter::try_new(Vec::new(), Arc::clone(&schema), None)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.into_inner()
    };
    Ok(Bytes::from(write().map_err(|error| DataFusionError::External(Box::new(error)))?))
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
}
