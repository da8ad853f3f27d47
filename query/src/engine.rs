//! The query engine: one DataFusion session over the observation lake, searches planned per caller and executed
//! on the engine's own runtime.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::{collect, execute_stream};
use datafusion::prelude::SessionConfig;
use futures::StreamExt;
use jhe_catalog::Caller;
use jhe_schemas::ObservationRecord;
use jhe_schemas::table::{COL_EFFECTIVE_START, COL_ID, COL_LAST_UPDATED, records_from_batch};
use object_store::ObjectStore;
use sqlx::PgPool;
use tokio::sync::mpsc;

use crate::access::AccessScope;
use crate::error::{QueryError, Result};
use crate::frontier::{FileSpan, frontier, rows_within};
use crate::runtime::QueryRuntime;
use crate::search::{
    Cursor, ObservationFilters, SearchPage, SearchRequest, SortKey, SortOrder, in_list_i64, timestamp,
};
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
    /// Observations per file of a bulk export (`JHE_EXPORT_ROWS_PER_FILE`); a larger export is split into parts.
    pub export_rows_per_file: u64,
    /// How long a finished export's files are kept (`JHE_EXPORT_TTL`); then they are deleted.
    pub export_ttl: Duration,
    /// How often the server looks for expired exports whose files are to be deleted.
    pub export_sweep_interval: Duration,
}

impl Default for QuerySettings {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            memory_limit_bytes: 1024 * 1024 * 1024,
            export_rows_per_file: DEFAULT_EXPORT_ROWS_PER_FILE,
            export_ttl: DEFAULT_EXPORT_TTL,
            export_sweep_interval: Duration::from_secs(60),
        }
    }
}

/// A day: long enough to download a study, short enough that files do not pile up.
pub const DEFAULT_EXPORT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// A million observations: about 0.6 GB of NDJSON or 30 MB of Parquet per file, sizes notebooks read in one go.
pub const DEFAULT_EXPORT_ROWS_PER_FILE: u64 = 1_000_000;

impl QuerySettings {
    /// The defaults, with `JHE_EXPORT_ROWS_PER_FILE` and `JHE_EXPORT_TTL` applied when set; a value that is not
    /// a positive integer (a positive duration) is an error naming the variable.
    pub fn from_env() -> std::result::Result<Self, String> {
        let mut settings = Self::default();
        if let Ok(text) = std::env::var("JHE_EXPORT_ROWS_PER_FILE") {
            settings.export_rows_per_file = text
                .trim()
                .parse()
                .ok()
                .filter(|rows| *rows > 0)
                .ok_or_else(|| format!("JHE_EXPORT_ROWS_PER_FILE: `{text}` is not a positive integer"))?;
        }
        if let Ok(text) = std::env::var("JHE_EXPORT_TTL") {
            settings.export_ttl = parse_duration(&text).ok_or_else(|| {
                format!("JHE_EXPORT_TTL: `{text}` is not a positive duration (seconds, or e.g. `90m`, `24h`, `7d`)")
            })?;
        }
        Ok(settings)
    }
}

/// A positive duration: whole seconds (`86400`), or numbers with units `s`, `m`, `h`, `d` (`24h`, `1h30m`).
fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return (seconds > 0).then(|| Duration::from_secs(seconds));
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 60 * 60,
            'd' => 24 * 60 * 60,
            _ => return None,
        };
        let value: u64 = number.parse().ok()?;
        total = total.checked_add(value.checked_mul(unit)?)?;
        number.clear();
    }
    (number.is_empty() && total > 0).then(|| Duration::from_secs(total))
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
    export_rows_per_file: u64,
    export_ttl: Duration,
    export_sweep_interval: Duration,
    code_texts: jhe_catalog::CodeTextCache,
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
        // The table deals whole files into size-balanced groups itself. Splitting a file into byte ranges as well
        // opens it once per range — the footer, page index and pruning predicate again — which is most of what a
        // search page's few files cost.
        config.options_mut().optimizer.repartition_file_scans = false;
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
        let export_rows_per_file = settings.export_rows_per_file.max(1);
        let code_texts = jhe_catalog::CodeTextCache::default();
        let inner = Inner {
            pool,
            state,
            store_url,
            runtime,
            export_rows_per_file,
            export_ttl: settings.export_ttl,
            export_sweep_interval: settings.export_sweep_interval,
            code_texts,
        };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// The control-plane pool the engine reads the catalog and consent from.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The code table's texts of the codes among `records`, for rendering them (remembered for a second).
    pub async fn code_texts(&self, records: &[ObservationRecord]) -> Result<jhe_catalog::CodeTexts> {
        let pairs = records.iter().map(|record| (record.coding_system.as_str(), record.coding_code.as_str()));
        Ok(self.inner.code_texts.texts(&self.inner.pool, pairs).await?)
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
        // A page the catalog can count gets its total and its frontier from one catalog lookup.
        let counted_files =
            if request.summary_count { None } else { self.counted_files(table.scope(), &request.filters).await? };
        let count_table = Arc::clone(&table);
        let total = async {
            match &counted_files {
                Some(files) => Ok(u64::try_from(files.iter().map(|file| file.rows).sum::<i64>()).unwrap_or_default()),
                None => self.total(count_table, &filters, &request.filters).await,
            }
        };
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
        let fetch = request.count.saturating_add(1);
        let needed = skip.saturating_add(fetch);
        let mut passes = Passes::Two;
        if let Some(frontier) = counted_files.as_deref().and_then(|files| page_frontier(files, request, needed)) {
            page_filters.push(frontier.bound);
            if frontier.rows_within <= needed.saturating_mul(SINGLE_PASS_ROWS_PER_PAGE_ROW) {
                passes = Passes::One;
            }
        }
        // the files the catalog counted hold every row the page can return: the scan needs no second lookup
        let table = match &counted_files {
            Some(files) => Arc::new(table.with_files(files.iter().map(|counted| counted.file.clone()).collect())),
            None => table,
        };
        let rows = self.rows(table, &page_filters, &request.sort, skip, fetch, passes);
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
                filters.restrict_patients(self.visible_patients(caller, patients).await?);
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

    /// The patients among `patients` that share an organization with the caller (superusers: all). An identifier
    /// search resolves to these only, so an identifier of a patient elsewhere matches nothing, like an unknown
    /// one, instead of answering 403 with the patient's id.
    async fn visible_patients(&self, caller: &Caller, patients: Vec<i64>) -> Result<Vec<i64>> {
        if caller.is_superuser || patients.is_empty() {
            return Ok(patients);
        }
        let organizations = caller.organization_ids();
        let memberships = jhe_catalog::organizations_of_patients(&self.inner.pool, &patients).await?;
        Ok(patients
            .into_iter()
            .filter(|patient| crate::access::shares_organization(&memberships, *patient, &organizations))
            .collect())
    }

    /// The exact number of rows a search matches: from the catalog's rows per file and patient when it can
    /// ([`QueryEngine::catalog_total`]), else by counting a scan.
    async fn total(&self, table: Arc<ObservationTable>, exprs: &[Expr], filters: &ObservationFilters) -> Result<u64> {
        if let Some(total) = self.catalog_total(table.scope(), filters).await? {
            return Ok(total);
        }
        self.count(table, exprs).await
    }

    /// The rows of a search that filters by nothing but patients, studies, organizations and exact (system, code)
    /// pairs — the rows of the (code, patient) pairs the scope allows and the search asks for — summed from the
    /// catalog without reading a file. `None` for any other search (dates, ids, identifiers, a code without its
    /// system), or when a file of those codes was catalogued without its patient rows.
    async fn catalog_total(&self, scope: &AccessScope, filters: &ObservationFilters) -> Result<Option<u64>> {
        let Some(CountedSearch { codes, patients }) = counted_codes_and_patients(scope, filters) else {
            return Ok(None);
        };
        if codes.as_ref().is_some_and(Vec::is_empty) || patients.is_empty() {
            return Ok(Some(0));
        }
        let Some(rows) =
            jhe_catalog::published_patient_rows(&self.inner.pool, codes.as_deref(), Some(&patients)).await?
        else {
            return Ok(None);
        };
        // the rows are of the wanted codes and patients already; the scope decides which pairs of them are visible
        let total: i64 = rows
            .iter()
            .filter(|row| scope.allows(&row.coding_system, &row.coding_code, row.patient_id))
            .map(|row| row.rows)
            .sum();
        Ok(Some(u64::try_from(total).unwrap_or_default()))
    }

    /// The rows each file holds for a search the catalog can count ([`visible_triples`], at most
    /// [`MAX_COUNTED_TRIPLES`] of them), with the files' key bounds: the search's exact total and its pages'
    /// frontier. `None` for any other search, and when a file of its codes was catalogued without patient rows.
    async fn counted_files(
        &self,
        scope: &AccessScope,
        filters: &ObservationFilters,
    ) -> Result<Option<Vec<jhe_catalog::FileRows>>> {
        let Some(visible) = visible_triples(scope, filters, MAX_COUNTED_TRIPLES) else {
            return Ok(None);
        };
        if visible.is_empty() {
            return Ok(None);
        }
        Ok(jhe_catalog::published_file_rows(&self.inner.pool, &visible).await?)
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

    /// The rows of one page. In two passes: the page's ids (and effective starts) from the narrow columns, then
    /// whole rows for just those ids — one pass would decode the bulky `omh_json` of every row the filters keep,
    /// all of a patient's rows for a page of the default order, only for the sort to drop all but a page. In one,
    /// when a frontier among the filters bounds the rows the scan keeps to a few times the page
    /// ([`Passes::One`]): then the second plan, its planning and its second opening of the files cost more than
    /// the rows the sort drops.
    async fn rows(
        &self,
        table: Arc<ObservationTable>,
        filters: &[Expr],
        sort: &SortOrder,
        skip: usize,
        fetch: usize,
        passes: Passes,
    ) -> Result<Vec<ObservationRecord>> {
        let table = Arc::new(table.with_file_order(sort.file_order()));
        if passes == Passes::One {
            let plan = scan(table, filters)?.sort(sort.sort_exprs())?.limit(skip, Some(fetch))?.build()?;
            return self.records(plan).await;
        }
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

impl QueryEngine {
    /// Runs `plan` on the engine's runtime and hands its batches over as they come, at most
    /// [`STREAM_BUFFER`] ahead of the consumer: a consumer slower than the scan (an export writing to object
    /// storage) holds the scan back instead of the batches piling up in memory. Dropping the receiver stops the
    /// plan.
    pub(crate) async fn execute_stream(&self, plan: LogicalPlan) -> Result<mpsc::Receiver<Result<RecordBatch>>> {
        let physical = self.inner.state.create_physical_plan(&plan).await?;
        let context = self.inner.state.task_ctx();
        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        self.inner.runtime.spawn(async move {
            let mut stream = match execute_stream(physical, context) {
                Ok(stream) => stream,
                Err(error) => {
                    let _ = sender.send(Err(error.into())).await;
                    return;
                }
            };
            while let Some(batch) = stream.next().await {
                let failed = batch.is_err();
                if sender.send(batch.map_err(QueryError::from)).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(receiver)
    }

    /// Observations per export file.
    pub(crate) fn export_rows_per_file(&self) -> u64 {
        self.inner.export_rows_per_file
    }

    /// How long a finished export's files are kept.
    pub fn export_ttl(&self) -> Duration {
        self.inner.export_ttl
    }

    /// How often expired exports are looked for.
    pub fn export_sweep_interval(&self) -> Duration {
        self.inner.export_sweep_interval
    }
}

/// How a page's rows are read ([`QueryEngine::rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passes {
    One,
    Two,
}

/// A page's frontier ([`crate::frontier`]) as a filter, and how many rows the files it leaves hold at most.
struct PageFrontier {
    bound: Expr,
    rows_within: usize,
}

/// A page is read in one pass when the files its frontier leaves hold at most this many rows per row it needs.
const SINGLE_PASS_ROWS_PER_PAGE_ROW: usize = 8;

/// The most (code, patient) pairs a page counts file by file ([`QueryEngine::counted_files`]): beyond it the
/// lookup costs more than the files it could spare (a study-wide page leaves the pruning to the scan's own top-k
/// filter, and its total to [`QueryEngine::catalog_total`]).
const MAX_COUNTED_TRIPLES: usize = 1024;

/// The frontier of a page needing `needed` rows in `date` or `_lastUpdated` order ([`crate::frontier`]) over
/// `files` (each with the rows it holds for the search), as a filter on the order's first key; `None` in `_id`
/// order or when the files cannot tell.
fn page_frontier(files: &[jhe_catalog::FileRows], request: &SearchRequest, needed: usize) -> Option<PageFrontier> {
    let first = request.sort.fields().first().copied()?;
    let column = match first.key {
        SortKey::Date => COL_EFFECTIVE_START,
        SortKey::LastUpdated => COL_LAST_UPDATED,
        SortKey::Id => return None,
    };
    let spans: Vec<FileSpan> = files
        .iter()
        .map(|file| {
            let (lowest, highest) = match first.key {
                SortKey::Date => (file.file.min_effective_start, file.file.max_effective_start),
                SortKey::LastUpdated | SortKey::Id => (file.file.min_last_updated, file.file.max_last_updated),
            };
            FileSpan {
                lowest: lowest.timestamp_micros(),
                highest: highest.timestamp_micros(),
                rows: u64::try_from(file.rows).unwrap_or_default(),
            }
        })
        .collect();
    let after = request.cursor.as_ref().and_then(|cursor| cursor.keys().first().copied());
    let at = frontier(&spans, first.descending, after, u64::try_from(needed).unwrap_or(u64::MAX))?;
    Some(PageFrontier {
        bound: if first.descending { col(column).gt_eq(timestamp(at)) } else { col(column).lt_eq(timestamp(at)) },
        rows_within: usize::try_from(rows_within(&spans, first.descending, at, after)).unwrap_or(usize::MAX),
    })
}

/// Whether every row a search matches is a row of a visible (code, patient) pair it asks for — it filters by
/// nothing but patients, studies, organizations and exact (system, code) pairs — so the catalog's rows per file
/// and patient count it exactly.
fn counted_by_catalog(filters: &ObservationFilters) -> bool {
    filters.ids.is_none()
        && filters.effective.is_empty()
        && filters.last_updated.is_empty()
        && filters.patient_identifiers.is_empty()
        && !filters.match_nothing
        && filters.codes.iter().all(|alternatives| alternatives.iter().all(|code| code.pair().is_some()))
}

/// The (system, code, patient) triples whose rows a search counted by the catalog ([`counted_by_catalog`]) returns;
/// `None` for another search, for a patient's own read without exact codes (it may see every code), and when
/// there are more than `limit`.
fn visible_triples(
    scope: &AccessScope,
    filters: &ObservationFilters,
    limit: usize,
) -> Option<Vec<(String, String, i64)>> {
    let CountedSearch { codes, patients } = counted_codes_and_patients(scope, filters)?;
    let codes = codes?;
    let mut triples = Vec::new();
    for (system, code) in &codes {
        for patient in &patients {
            if scope.allows(system, code, *patient) {
                if triples.len() == limit {
                    return None;
                }
                triples.push((system.clone(), code.clone(), *patient));
            }
        }
    }
    Some(triples)
}

/// What a search the catalog can count ([`counted_by_catalog`]) may return rows of.
struct CountedSearch {
    /// The (system, code) pairs both wanted and allowed; `None`: every code (a patient's own read without exact
    /// codes).
    codes: Option<Vec<(String, String)>>,
    /// The patients both wanted and allowed.
    patients: Vec<i64>,
}

fn counted_codes_and_patients(scope: &AccessScope, filters: &ObservationFilters) -> Option<CountedSearch> {
    if !counted_by_catalog(filters) {
        return None;
    }
    let codes = match (scope.pairs(), filters.code_pairs()) {
        (Some(allowed), Some(wanted)) => Some(allowed.into_iter().filter(|pair| wanted.contains(pair)).collect()),
        (Some(allowed), None) => Some(allowed),
        (None, Some(wanted)) => Some(wanted.into_iter().collect()),
        (None, None) => None,
    };
    // a patient's own read ignores the patient, study and organization filters (jhe-compat §4.3)
    let wanted_patients = filters.patients.as_ref().filter(|_| !scope.is_own_data());
    let patients =
        scope.patients().into_iter().filter(|p| wanted_patients.is_none_or(|wanted| wanted.contains(p))).collect();
    Some(CountedSearch { codes, patients })
}

/// Batches a streamed plan may run ahead of its consumer.
const STREAM_BUFFER: usize = 2;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_seconds_or_numbers_with_units() {
        assert_eq!(parse_duration("86400"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration(" 24h "), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("45s"), Some(Duration::from_secs(45)));
        for invalid in ["", "0", "0h", "h", "24x", "-5", "1.5h", "24h5", "99999999999999999999d"] {
            assert_eq!(parse_duration(invalid), None, "{invalid}");
        }
    }
}
