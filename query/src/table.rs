//! The observation table: a DataFusion [`TableProvider`] over the Parquet files the catalog lists as published.
//!
//! A scan (1) turns its filters into pruning hints, (2) asks the catalog for the published files of the allowed
//! codes and days, (3) keeps the files whose patient id range holds a patient the caller may see (and the search
//! asks for), and (4) reads them with DataFusion's Parquet source under a filter with the access predicate, so no
//! plan over this table can see a row the [`AccessScope`] does not allow. Filter pushdown is `Inexact`: DataFusion
//! keeps every filter of the query above the scan, and its physical optimizer pushes those filters and the access
//! filter into the Parquet source (row-group, page and row pruning, late materialization), each once.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use chrono::Utc;
use datafusion::catalog::Session;
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, DFSchema, Result as DfResult, Statistics};
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExecBuilder;
use datafusion::scalar::ScalarValue;
use jhe_catalog::{FileFilter, ParquetFileRow};
use jhe_schemas::table::{
    COL_CODING_CODE, COL_CODING_SYSTEM, COL_EFFECTIVE_START, COL_LAST_UPDATED, COL_PATIENT_ID, TIMEZONE,
    observation_schema,
};
use object_store::ObjectMeta;
use object_store::path::Path;
use sqlx::PgPool;

use crate::access::AccessScope;
use crate::file_reader::PageIndexCachingReaderFactory;
use crate::prune::PruningHints;

/// Bytes read from the end of a file in the first request: the footer of a file with a few row groups and the
/// page index fits, so the metadata usually costs one request.
const METADATA_SIZE_HINT: usize = 64 * 1024;

/// The order a scan opens its files in. A plan with a sort and a limit (a search page) narrows a dynamic filter
/// on the sort key as it finds rows, and DataFusion skips a file whose catalog statistics (attached to every
/// file) cannot beat it without reading anything; that works best when the files likely to hold the page come
/// first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum FileOrder {
    /// Largest first (balances the partitions of a full scan).
    #[default]
    Size,
    /// Newest `last_updated` first (or oldest, with `descending: false`).
    LastUpdated { descending: bool },
    /// Latest `effective_start` first (or earliest, with `descending: false`).
    EffectiveStart { descending: bool },
}

/// The observations one caller may see. Cheap to build: one per search.
#[derive(Debug, Clone)]
pub struct ObservationTable {
    pool: PgPool,
    store_url: ObjectStoreUrl,
    scope: Arc<AccessScope>,
    schema: SchemaRef,
    file_order: FileOrder,
    /// The files a search already read from the catalog with its page's total ([`ObservationTable::with_files`]):
    /// the scan picks among them instead of asking the catalog again.
    known_files: Option<Arc<[ParquetFileRow]>>,
}

impl ObservationTable {
    /// The table of the files catalogued in `pool`, read from the object store registered under `store_url` in the
    /// session's runtime, restricted to `scope`.
    pub fn new(pool: PgPool, store_url: ObjectStoreUrl, scope: Arc<AccessScope>) -> Self {
        Self { pool, store_url, scope, schema: observation_schema(), file_order: FileOrder::Size, known_files: None }
    }

    /// The same table over `files` only: the published files that hold every row a search can return, as the
    /// catalog listed them in the statement that counted the search (one snapshot for the total and the page).
    pub(crate) fn with_files(&self, files: Arc<[ParquetFileRow]>) -> Self {
        Self { known_files: Some(files), ..self.clone() }
    }

    /// What the table's caller may see.
    pub(crate) fn scope(&self) -> &AccessScope {
        &self.scope
    }

    /// The same table, opening its files in `order`.
    pub(crate) fn with_file_order(&self, order: FileOrder) -> Self {
        Self { file_order: order, ..self.clone() }
    }

    /// The published files that may hold rows matching `hints` that the scope allows.
    async fn files(&self, hints: &PruningHints) -> DfResult<Vec<ParquetFileRow>> {
        let code_allowed = |system: &str, code: &str| {
            hints.codes.as_ref().is_none_or(|codes| codes.contains(code))
                && hints.systems.as_ref().is_none_or(|systems| systems.contains(system))
        };
        let codes: Option<Vec<(String, String)>> = match self.scope.pairs() {
            Some(pairs) => Some(pairs.into_iter().filter(|(system, code)| code_allowed(system, code)).collect()),
            None => match (&hints.systems, &hints.codes) {
                (Some(systems), Some(codes)) => Some(
                    systems.iter().flat_map(|system| codes.iter().map(|code| (system.clone(), code.clone()))).collect(),
                ),
                _ => None,
            },
        };
        let empty_range = matches!((hints.from_day, hints.to_day), (Some(from), Some(to)) if from > to);
        if empty_range
            || codes.as_ref().is_some_and(Vec::is_empty)
            || hints.patients.as_ref().is_some_and(|patients| patients.is_empty())
        {
            return Ok(Vec::new());
        }
        let single_wanted = hints.patients.as_ref().filter(|patients| patients.len() == 1).and_then(|p| p.first());
        let filter = FileFilter {
            codes,
            from_day: hints.from_day,
            to_day: hints.to_day,
            patient_id: single_wanted.copied().or_else(|| self.scope.single_patient()),
        };
        let files = match &self.known_files {
            Some(known) => known.iter().filter(|file| filter.admits(file)).cloned().collect(),
            None => jhe_catalog::published_files(&self.pool, &filter)
                .await
                .map_err(|error| DataFusionError::External(Box::new(error)))?,
        };
        Ok(files
            .into_iter()
            .filter(|file| code_allowed(&file.coding_system, &file.coding_code))
            .filter(|file| self.scope.may_see(file, hints.patients.as_ref()))
            .filter(|file| {
                hints.overlaps(
                    (file.min_effective_start.timestamp_micros(), file.max_effective_start.timestamp_micros()),
                    (file.min_last_updated.timestamp_micros(), file.max_last_updated.timestamp_micros()),
                )
            })
            .collect())
    }
}

/// The catalog row as the Parquet source wants it: the key as stored (already encoded: `parse`, not `from`), the
/// size it was written with (no HEAD request), the file's Arrow schema (no decoding of the embedded one) and the
/// catalog's statistics of the file, so DataFusion can skip it before opening it (a patient outside its range, a
/// page's sort-key bound it cannot beat).
fn partitioned_file(file: &ParquetFileRow, schema: &SchemaRef) -> DfResult<PartitionedFile> {
    let location = Path::parse(&file.object_path).map_err(|error| DataFusionError::External(Box::new(error)))?;
    let meta = ObjectMeta {
        location,
        // files are immutable (a new id per file), so any fixed time keeps the metadata cache valid
        last_modified: file.published_at.unwrap_or(file.created_at).with_timezone(&Utc),
        size: u64::try_from(file.size_bytes).unwrap_or_default(),
        e_tag: None,
        version: None,
    };
    Ok(PartitionedFile::new_from_meta(meta)
        .with_arrow_schema(Arc::clone(schema))
        .with_statistics(Arc::new(file_statistics(file, schema))))
}

/// What the catalog knows of a file's columns. Everything is `Inexact`: it bounds the values (pruning uses it)
/// but never stands in for reading them (no answer is computed from it).
fn file_statistics(file: &ParquetFileRow, schema: &SchemaRef) -> Statistics {
    let time = |at: chrono::DateTime<Utc>| {
        Precision::Inexact(ScalarValue::TimestampMicrosecond(Some(at.timestamp_micros()), Some(Arc::from(TIMEZONE))))
    };
    let bounded = |min: Precision<ScalarValue>, max: Precision<ScalarValue>| ColumnStatistics {
        null_count: Precision::Inexact(0),
        min_value: min,
        max_value: max,
        ..ColumnStatistics::new_unknown()
    };
    let text = |value: &str| Precision::Inexact(ScalarValue::Utf8(Some(value.to_owned())));
    let column_statistics = schema
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            COL_PATIENT_ID => bounded(
                Precision::Inexact(ScalarValue::Int64(Some(file.min_patient_id))),
                Precision::Inexact(ScalarValue::Int64(Some(file.max_patient_id))),
            ),
            COL_EFFECTIVE_START => bounded(time(file.min_effective_start), time(file.max_effective_start)),
            COL_LAST_UPDATED => bounded(time(file.min_last_updated), time(file.max_last_updated)),
            COL_CODING_SYSTEM => bounded(text(&file.coding_system), text(&file.coding_system)),
            COL_CODING_CODE => bounded(text(&file.coding_code), text(&file.coding_code)),
            _ => ColumnStatistics::new_unknown(),
        })
        .collect();
    Statistics {
        num_rows: Precision::Inexact(usize::try_from(file.row_count).unwrap_or_default()),
        total_byte_size: Precision::Absent,
        column_statistics,
    }
}

/// The sort key of `file` under `order`, larger first.
fn file_rank(file: &ParquetFileRow, order: FileOrder) -> i64 {
    match order {
        FileOrder::Size => file.size_bytes,
        FileOrder::LastUpdated { descending: true } => file.max_last_updated.timestamp_micros(),
        FileOrder::LastUpdated { descending: false } => -file.min_last_updated.timestamp_micros(),
        FileOrder::EffectiveStart { descending: true } => file.max_effective_start.timestamp_micros(),
        FileOrder::EffectiveStart { descending: false } => -file.min_effective_start.timestamp_micros(),
    }
}

/// Splits files into at most `partitions` groups of similar size, each opening its files in `order`: files
/// are dealt in that order, each to the group with the fewest bytes so far.
fn file_groups(mut files: Vec<(i64, PartitionedFile)>, partitions: usize) -> Vec<FileGroup> {
    files.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
    let count = partitions.clamp(1, files.len().max(1));
    let mut groups: Vec<(u64, Vec<PartitionedFile>)> = (0..count).map(|_| (0, Vec::new())).collect();
    for (_, file) in files {
        if let Some(lightest) = groups.iter_mut().min_by_key(|(bytes, _)| *bytes) {
            lightest.0 += file.object_meta.size;
            lightest.1.push(file);
        }
    }
    groups.into_iter().filter(|(_, files)| !files.is_empty()).map(|(_, files)| FileGroup::new(files)).collect()
}

#[async_trait]
impl TableProvider for ObservationTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(&self, filters: &[&Expr]) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let wanted: Vec<usize> = projection.cloned().unwrap_or_else(|| (0..self.schema.fields().len()).collect());
        let hints = PruningHints::from_filters(filters);
        let files = self.files(&hints).await?;
        tracing::debug!(files = files.len(), ?hints, "observation scan");
        if files.is_empty() || self.scope.is_empty() {
            return Ok(Arc::new(EmptyExec::new(Arc::new(self.schema.project(&wanted)?))));
        }

        // The scan reads what was asked for, then the columns of the access predicate.
        let mut columns = wanted.clone();
        for name in [COL_PATIENT_ID, COL_CODING_SYSTEM, COL_CODING_CODE] {
            let index = self.schema.index_of(name)?;
            if !columns.contains(&index) {
                columns.push(index);
            }
        }

        let store = state.runtime_env().object_store(&self.store_url)?;
        let metadata_cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        let source = ParquetSource::new(Arc::clone(&self.schema))
            .with_table_parquet_options(state.table_options().parquet.clone())
            .with_pushdown_filters(true)
            .with_reorder_filters(true)
            .with_enable_page_index(true)
            // jhe writes no bloom filters (the catalog, statistics and page index prune patients, codes and
            // days): looking for them cost every opened file a pass over its row groups for nothing
            .with_bloom_filter_on_read(false)
            .with_metadata_size_hint(METADATA_SIZE_HINT)
            .with_parquet_file_reader_factory(Arc::new(PageIndexCachingReaderFactory::new(
                CachedParquetFileReaderFactory::new(store, metadata_cache),
            )));
        let files = files
            .iter()
            .map(|file| Ok((file_rank(file, self.file_order), partitioned_file(file, &self.schema)?)))
            .collect::<DfResult<Vec<_>>>()?;
        let partitions = state.config_options().execution.target_partitions;
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_projection_indices(Some(columns))?
            .with_file_groups(file_groups(files, partitions))
            .build();
        let scan: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);

        // The filter DataFusion's physical optimizer pushes into the Parquet source (row-group, page and row
        // pruning), as it does with the search's own filters; should it not, the filter still runs here.
        let scan_schema = DFSchema::try_from(scan.schema())?;
        let access = state.create_physical_expr(self.scope.predicate(), &scan_schema)?;
        let filtered = FilterExecBuilder::new(access, scan)
            .apply_projection(Some((0..wanted.len()).collect()))?
            .with_fetch(limit)
            .build()?;
        Ok(Arc::new(filtered))
    }
}
