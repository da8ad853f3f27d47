//! The query engine: one DataFusion session over the observation lake, searches planned per caller and executed
//! on the engine's own runtime.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
use datafusion::datasource::provider_as_source;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::functions_aggregate::count::count_all;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, col};
use datafusion::physical_plan::collect;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::prelude::SessionConfig;
use jhe_catalog::Caller;
use jhe_schemas::ObservationRecord;
use jhe_schemas::table::{COL_EFFECTIVE_START, COL_ID, records_from_batch};
use object_store::ObjectStore;
use sqlx::PgPool;

use crate::access::AccessScope;
use crate::error::{QueryError, Result};
use crate::runtime::QueryRuntime;
use crate::search::{Cursor, ObservationFilters, SearchPage, SearchRequest, SortOrder, in_list_i64, timestamp};
use crate::table::ObservationTable;

/// The name of the observation table in plans.
const TABLE_NAME: &str = "observations";
/// Where the lake's object store is registered in the engine's runtime environment.
const LAKE_URL: &str = "jhe-lake://observations";

/// How much of the machine the engine may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuerySettings {
    /// Threads of the engine's runtime, and the partitions a scan is split into.
    pub threads: usize,
    /// The most memory all running queries may hold (sorts, aggregates); beyond it a query fails with
    /// `unavailable` rather than the process running out of memory.
    pub memory_limit_bytes: usize,
}

impl Default for QuerySettings {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            memory_limit_bytes: 1024 * 1024 * 1024,
        }
    }
}

/// Runs observation reads. Cloning is cheap (one shared engine).
#[derive(Clone)]
pub struct QueryEngine {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    state: SessionState,
    store_url: ObjectStoreUrl,
    runtime: QueryRuntime,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("store_url", &self.inner.store_url.as_str())
            .field("runtime", &self.inner.runtime)
            .finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// An engine over the files catalogued in `pool` and stored in `store` (object paths in the catalog are keys
    /// of `store`, prefix included, so the engine needs no prefix of its own). The caller opens the store.
    pub fn new(pool: PgPool, store: Arc<dyn ObjectStore>, settings: &QuerySettings) -> Result<Self> {
        let store_url = ObjectStoreUrl::parse(LAKE_URL)?;
        let runtime_env = RuntimeEnvBuilder::new().with_memory_limit(settings.memory_limit_bytes, 1.0).build_arc()?;
        runtime_env.register_object_store(store_url.as_ref(), store);
        let mut config = SessionConfig::new().with_target_partitions(settings.threads.max(1));
        let parquet = &mut config.options_mut().execution.parquet;
        // late materialization: filter columns are decoded first, the rest only for matching rows
        parquet.pushdown_filters = true;
        parquet.reorder_filters = true;
        parquet.enable_page_index = true;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime_env)
            .with_default_features()
            .build();
        let runtime = QueryRuntime::new(settings.threads).map_err(|error| {
            QueryError::DataFusion(datafusion::error::DataFusionError::Execution(format!(
                "cannot start the query runtime: {error}"
            )))
        })?;
        Ok(Self { inner: Arc::new(Inner { pool, state, store_url, runtime }) })
    }

    /// The control-plane pool the engine reads the catalog and consent from.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The lake's object store, as registered in the engine (exports are written next to the data).
    pub(crate) fn store(&self) -> Result<Arc<dyn ObjectStore>> {
        Ok(self.inner.state.runtime_env().object_store(&self.inner.store_url)?)
    }

    /// One page of the observations `caller` may see that match `request`, with the exact total.
    pub async fn search(&self, caller: &Caller, request: &SearchRequest) -> Result<SearchPage> {
        let started = Instant::now();
        let table = self.table(caller, &request.filters).await?;
        let Some((table, filters)) = table else {
            return Ok(SearchPage { total: 0, records: Vec::new(), next: None });
        };
        let total = self.count(Arc::clone(&table), &filters);
        if request.summary_count {
            let total = total.await?;
            tracing::debug!(
                user = caller.user_id,
                total,
                elapsed_ms = started.elapsed().as_millis(),
                "observation count"
            );
            return Ok(SearchPage { total, records: Vec::new(), next: None });
        }
        let mut page_filters = filters.clone();
        let skip = match &request.cursor {
            Some(cursor) => {
                page_filters.extend(request.sort.after(cursor.keys())?);
                0
            }
            None => (request.page.max(1) as usize - 1).saturating_mul(request.count),
        };
        // one row more than the page tells whether another page follows
        let rows = self.rows(table, &page_filters, &request.sort, skip, request.count.saturating_add(1));
        let (total, mut records) = tokio::try_join!(total, rows)?;
        if request.cursor.is_none() && request.page > 1 && records.is_empty() {
            return Err(QueryError::InvalidPage);
        }
        let next = if records.len() > request.count {
            records.truncate(request.count);
            records.last().map(|last| Cursor::after(&request.sort, last))
        } else {
            None
        };
        tracing::debug!(
            user = caller.user_id,
            total,
            rows = records.len(),
            elapsed_ms = started.elapsed().as_millis(),
            "observation search"
        );
        Ok(SearchPage { total, records, next })
    }

    /// The observation with this id, if `caller` may see it.
    pub async fn observation(&self, caller: &Caller, id: i64) -> Result<Option<ObservationRecord>> {
        let filters = ObservationFilters { ids: Some(BTreeSet::from([id])), ..ObservationFilters::default() };
        let Some((table, filters)) = self.table(caller, &filters).await? else {
            return Ok(None);
        };
        let plan = scan(table, &filters)?.limit(0, Some(1))?.build()?;
        let mut records = self.records(plan).await?;
        Ok(records.pop())
    }

    /// The caller's table and the search's predicates; `None` when nothing can match.
    pub(crate) async fn table(
        &self,
        caller: &Caller,
        filters: &ObservationFilters,
    ) -> Result<Option<(Arc<ObservationTable>, Vec<Expr>)>> {
        let mut filters = filters.clone();
        if caller.is_practitioner() {
            for value in std::mem::take(&mut filters.patient_identifiers) {
                let patients = jhe_catalog::patient_ids_by_identifier_value(&self.inner.pool, &value).await?;
                filters.restrict_patients(patients);
            }
        } else {
            // jhe-compat §4.3: a patient's patient, study and organization filters are ignored
            filters.patients = None;
            filters.patient_identifiers.clear();
            filters.study_id = None;
            filters.organization_id = None;
        }
        if filters.match_nothing || filters.patients.as_ref().is_some_and(BTreeSet::is_empty) {
            return Ok(None);
        }
        let scope = AccessScope::resolve(&self.inner.pool, caller, &filters).await?;
        if scope.is_empty() {
            return Ok(None);
        }
        let table = ObservationTable::new(self.inner.pool.clone(), self.inner.store_url.clone(), Arc::new(scope));
        Ok(Some((Arc::new(table), filters.exprs())))
    }

    async fn count(&self, table: Arc<ObservationTable>, filters: &[Expr]) -> Result<u64> {
        let plan = scan(table, filters)?.aggregate(Vec::<Expr>::new(), vec![count_all()])?.build()?;
        self.execute(plan, |batches| {
            let count = batches
                .iter()
                .find(|batch| batch.num_rows() > 0)
                .and_then(|batch| batch.column(0).as_primitive_opt::<Int64Type>().filter(|c| c.is_valid(0)))
                .map_or(0, |column| column.value(0));
            Ok(u64::try_from(count).unwrap_or_default())
        })
        .await
    }

    /// The rows of one page, in two passes: the page's ids (and effective starts) from the narrow columns, then
    /// whole rows for just those ids. One pass would decode the bulky `omh_json` of every row the filters keep —
    /// all of a patient's rows for a page of the default order — only for the sort to drop all but a page.
    async fn rows(
        &self,
        table: Arc<ObservationTable>,
        filters: &[Expr],
        sort: &SortOrder,
        skip: usize,
        fetch: usize,
    ) -> Result<Vec<ObservationRecord>> {
        let table = Arc::new(table.with_file_order(sort.file_order()));
        let keys_plan = scan(Arc::clone(&table), filters)?
            .sort(sort.sort_exprs())?
            .limit(skip, Some(fetch))?
            .project(vec![col(COL_ID), col(COL_EFFECTIVE_START)])?
            .build()?;
        let keys = self.execute(keys_plan, page_keys).await?;
        let (Some(earliest), Some(latest)) =
            (keys.iter().map(|(_, start)| *start).min(), keys.iter().map(|(_, start)| *start).max())
        else {
            return Ok(Vec::new());
        };
        // The effective-start bounds are implied by the ids; they let the catalog and the page index skip the
        // files and pages that cannot hold them.
        let mut row_filters = filters.to_vec();
        row_filters.push(in_list_i64(COL_ID, keys.iter().map(|(id, _)| id)));
        row_filters.push(col(COL_EFFECTIVE_START).gt_eq(timestamp(earliest)));
        row_filters.push(col(COL_EFFECTIVE_START).lt_eq(timestamp(latest)));
        let table = Arc::new(table.with_file_order(crate::table::FileOrder::Size));
        let plan = scan(table, &row_filters)?.build()?;
        let records = self.records(plan).await?;
        // back into the page's order; ids are unique, so each position is taken once
        let position: HashMap<i64, usize> = keys.iter().enumerate().map(|(at, (id, _))| (*id, at)).collect();
        let mut slots: Vec<Option<ObservationRecord>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
        for record in records {
            if let Some(slot) = position.get(&record.id).and_then(|at| slots.get_mut(*at)) {
                *slot = Some(record);
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// Every row `plan` yields, decoded.
    async fn records(&self, plan: LogicalPlan) -> Result<Vec<ObservationRecord>> {
        self.execute(plan, |batches| {
            let mut records = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
            for batch in &batches {
                records.extend(records_from_batch(batch)?);
            }
            Ok(records)
        })
        .await
    }

    /// Plans `plan` here (the scan asks the catalog), then runs it and `finish` on the engine's runtime.
    pub(crate) async fn execute<T: Send + 'static>(
        &self,
        plan: LogicalPlan,
        finish: impl FnOnce(Vec<RecordBatch>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let physical = self.inner.state.create_physical_plan(&plan).await?;
        let context = self.inner.state.task_ctx();
        self.inner
            .runtime
            .spawn(async move {
                let batches = collect(Arc::clone(&physical), context).await?;
                if tracing::enabled!(tracing::Level::TRACE) {
                    let plan = DisplayableExecutionPlan::with_metrics(physical.as_ref()).indent(true).to_string();
                    tracing::trace!(%plan, "executed");
                }
                finish(batches)
            })
            .await?
    }
}

pub(crate) fn scan(table: Arc<ObservationTable>, filters: &[Expr]) -> Result<LogicalPlanBuilder> {
    let builder = LogicalPlanBuilder::scan(TABLE_NAME, provider_as_source(table), None)?;
    Ok(match conjunction(filters.to_vec()) {
        Some(predicate) => builder.filter(predicate)?,
        None => builder,
    })
}

/// The (id, effective start) pairs of a key plan's rows, in order.
fn page_keys(batches: Vec<RecordBatch>) -> Result<Vec<(i64, i64)>> {
    let mut keys = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in &batches {
        let (Some(ids), Some(starts)) = (
            batch.column(0).as_primitive_opt::<Int64Type>(),
            batch.column(1).as_primitive_opt::<TimestampMicrosecondType>(),
        ) else {
            return Err(QueryError::DataFusion(datafusion::error::DataFusionError::Internal(
                "page keys of an unexpected type".to_owned(),
            )));
        };
        keys.extend(ids.values().iter().copied().zip(starts.values().iter().copied()));
    }
    Ok(keys)
}
