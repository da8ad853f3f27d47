//! The query engine of jhe: DataFusion over the Parquet files the catalog lists, with consent applied inside
//! every plan.
//!
//! # Design
//!
//! * **One table, built per caller.** [`ObservationTable`] is a DataFusion `TableProvider` whose constructor takes
//!   an [`AccessScope`], and an `AccessScope` comes only from [`AccessScope::resolve`] — the caller's rights read
//!   from Postgres. No plan over the table can bypass consent: its scan is a filter with the scope's predicate
//!   right above the Parquet source, which DataFusion's physical optimizer pushes into the source (row-group and
//!   page pruning, late materialization) with the query's own filters (style.md §4).
//! * **Consent is a predicate, not a post-filter.** A practitioner's scope is the set of (patient, code) pairs they
//!   may see now (decisions.md); it becomes `patient_id IN (…) AND coding_system = … AND coding_code IN (…)`,
//!   grouped by patient list. Because it sits inside the plan, the total (`count(*)`) and every page use the same
//!   rows, and a revoked consent disappears from the next search. A patient's scope is `patient_id = <self>`.
//! * **Pruning, coarse to fine.** The scan asks the catalog (`parquet_files`, indexed by code and day) for the
//!   published files of the allowed codes and of the days the `effective_start` filters allow, then keeps the
//!   files whose patient id range holds a patient that is both wanted and allowed. The Parquet source then prunes
//!   row groups and pages by statistics (files are sorted by patient, effective time, id) and filters rows before
//!   decoding the other columns (`pushdown_filters`), so one patient's page reads a few pages of a few files.
//! * **Paging.** Every order ends with the unique id, so pages never overlap or skip. A page is the top
//!   `count + 1` rows (TopK; the extra row says whether a next page exists). `next` carries an opaque keyset
//!   [`Cursor`] — the sort keys of the page's last row — so a deep page costs what the first costs; `_page`
//!   (offset) still works. The total runs concurrently with the page, under the same predicate. Before a page in
//!   date or `_lastUpdated` order is planned, the catalog's rows per file and patient give it a frontier on its
//!   sort key (`frontier`), so the scan opens only the files the page's rows can come from.
//! * **Own runtime.** Plans are made on the caller's runtime (the scan's catalog lookups), then executed, and the
//!   rows decoded into [`jhe_schemas::ObservationRecord`]s, on the engine's runtime, with a memory limit
//!   ([`QuerySettings`]). The caller opens the object store and passes it in; catalog paths are its keys.
//! * **FHIR parameters** (jhe-compat §6.3/§6.4) are parsed here ([`fhir_params`]) into the typed
//!   [`SearchRequest`]; the API renders the results.
//!
//! Not yet: observation ids are not in the catalog, so a read by id with a wide scope scans the allowed files'
//! id columns (row-group and page statistics prune most of them).

mod access;
mod analytics;
mod engine;
mod error;
mod export;
pub mod fhir_params;
mod file_reader;
mod frontier;
mod prune;
mod runtime;
mod search;
mod table;

pub use access::AccessScope;
pub use analytics::{
    DEFAULT_LASTN_MAX, Granularity, LastNRequest, MAX_AGGREGATE_ROWS, MAX_LASTN_MAX, MAX_LASTN_ROWS,
    ObservationAggregate, Statistic, StatsRequest, parse_lastn, parse_stats, parse_study_summary,
};
pub use engine::{DEFAULT_EXPORT_ROWS_PER_FILE, DEFAULT_EXPORT_TTL, QueryEngine, QuerySettings};
pub use error::{QueryError, Result};
pub use export::{
    ExportContents, ExportControl, ExportFile, ExportFileBody, ExportFormat, ExportRequest, WrittenExport,
};
pub use search::{
    CodeMatch, Cursor, DEFAULT_COUNT, MAX_COUNT, ObservationFilters, SearchPage, SearchRequest, SortField, SortKey,
    SortOrder, TimeCondition,
};
pub use table::ObservationTable;
