//! Analytics over the observation table: the latest observations per patient and code (FHIR `$lastn`) and
//! count/min/max/mean per patient and code, optionally per UTC day (FHIR `$stats`, the REST study summary).
//!
//! Every answer is one DataFusion plan over the caller's [`crate::ObservationTable`], so consent is applied
//! exactly as for a search (the access predicate sits inside the scan): a revoked code disappears from the next
//! aggregate as it does from the next search. The aggregation runs in DataFusion (a window for `$lastn`, a
//! grouped aggregate for the statistics); only the result rows reach Rust.
//!
//! Statistics are over the `value` column (the numeric quantity). Observations without one (blood pressure,
//! which has `systolic`/`diastolic`) are counted, and their min/max/mean are absent.

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use chrono::{DateTime, Utc};
use datafusion::functions_aggregate::count::count_all;
use datafusion::functions_aggregate::expr_fn::{avg, max, min};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, cast, col, lit};
use jhe_catalog::Caller;
use jhe_schemas::ObservationRecord;
use jhe_schemas::table::{
    COL_CODING_CODE, COL_CODING_SYSTEM, COL_EFFECTIVE_START, COL_ID, COL_PATIENT_ID, COL_VALUE, observation_schema,
    records_from_batch,
};

use crate::engine::{QueryEngine, scan};
use crate::error::{QueryError, Result};
use crate::fhir_params::parse_search;
use crate::search::ObservationFilters;

/// `$lastn` without `max` returns the latest observation of each patient and code (FHIR's default).
pub const DEFAULT_LASTN_MAX: usize = 1;
/// The largest `max` of `$lastn`.
pub const MAX_LASTN_MAX: usize = 1000;
/// The most observations one `$lastn` answer holds; a wider request is refused (narrow it by patient or code)
/// rather than silently cut.
pub const MAX_LASTN_ROWS: usize = 10_000;
/// The most groups one aggregate answer holds, for the same reason.
pub const MAX_AGGREGATE_ROWS: usize = 100_000;

const MICROS_PER_DAY: i64 = 86_400_000_000;
const ROW_NUMBER: &str = "jhe_row_number";
const DAY: &str = "jhe_day";
const COUNT: &str = "jhe_count";
const MIN: &str = "jhe_min";
const MAX: &str = "jhe_max";
const MEAN: &str = "jhe_mean";

/// How finely an aggregate is grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One group per patient and code over the whole range.
    All,
    /// One group per patient, code and UTC day of the effective time.
    Day,
}

impl Granularity {
    /// `day` (the only granularity besides the whole range); anything else is a 400.
    pub fn parse(value: &str) -> Result<Self> {
        match value.trim() {
            "" | "day" => Ok(Granularity::Day),
            other => Err(QueryError::InvalidParameter(format!("granularity: `{other}` is not supported; use `day`"))),
        }
    }
}

/// One statistic of `$stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Statistic {
    Count,
    Min,
    Max,
    Mean,
}

impl Statistic {
    pub const ALL: [Statistic; 4] = [Statistic::Count, Statistic::Min, Statistic::Max, Statistic::Mean];

    pub fn name(self) -> &'static str {
        match self {
            Statistic::Count => "count",
            Statistic::Min => "min",
            Statistic::Max => "max",
            Statistic::Mean => "mean",
        }
    }
}

/// One group of an aggregate.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationAggregate {
    pub patient_id: i64,
    pub coding_system: String,
    pub coding_code: String,
    /// The UTC day (its midnight, microseconds since the epoch) for [`Granularity::Day`].
    pub day_start_micros: Option<i64>,
    /// Observations in the group.
    pub count: u64,
    /// Over the observations that have a `value`; `None` when none has.
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
}

impl ObservationAggregate {
    /// The group's UTC day as `YYYY-MM-DD`.
    pub fn day(&self) -> Option<String> {
        self.day_start_micros
            .and_then(DateTime::<Utc>::from_timestamp_micros)
            .map(|day| day.format("%Y-%m-%d").to_string())
    }
}

/// A parsed `$lastn`: the search filters and how many observations per patient and code.
#[derive(Debug, Clone, PartialEq)]
pub struct LastNRequest {
    pub filters: ObservationFilters,
    pub max: usize,
}

/// A parsed `$stats`: the filters and the statistics asked for (sorted, unique).
#[derive(Debug, Clone, PartialEq)]
pub struct StatsRequest {
    pub filters: ObservationFilters,
    pub statistics: Vec<Statistic>,
}

/// Parses `$lastn` parameters: the search filters (`patient`, `patient._has:Group:member:_id`, `code`, `date`,
/// …) and `max` (1 by default, at most [`MAX_LASTN_MAX`]).
pub fn parse_lastn(params: &[(String, String)], now: DateTime<Utc>) -> Result<LastNRequest> {
    let mut max = DEFAULT_LASTN_MAX;
    for (name, value) in params {
        if name == "max" {
            max = value.trim().parse::<usize>().ok().filter(|max| (1..=MAX_LASTN_MAX).contains(max)).ok_or_else(
                || QueryError::InvalidParameter(format!("max: `{value}` is not a number from 1 to {MAX_LASTN_MAX}")),
            )?;
        }
    }
    Ok(LastNRequest { filters: filters_of(params, now)?, max })
}

/// Parses `$stats` parameters: `code` (required), `patient` or a study (`patient._has:Group:member:_id`, one of
/// them required), `date` and/or `period=start/end` (a date or date-time each; either may be empty), and
/// `statistic` (comma list of `count`, `min`, `max`, `mean`; all by default).
pub fn parse_stats(params: &[(String, String)], now: DateTime<Utc>) -> Result<StatsRequest> {
    let mut statistics = Vec::new();
    let mut search_params: Vec<(String, String)> = Vec::with_capacity(params.len());
    for (name, value) in params {
        match name.as_str() {
            "statistic" => {
                for statistic in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let known =
                        Statistic::ALL.into_iter().find(|known| known.name() == statistic).ok_or_else(|| {
                            QueryError::InvalidParameter(format!(
                                "statistic: `{statistic}` is not one of count, min, max, mean"
                            ))
                        })?;
                    statistics.push(known);
                }
            }
            "period" => {
                let (start, end) = value
                    .split_once('/')
                    .ok_or_else(|| QueryError::InvalidParameter(format!("period: `{value}` is not `start/end`")))?;
                if !start.trim().is_empty() {
                    search_params.push(("date".to_owned(), format!("ge{}", start.trim())));
                }
                if !end.trim().is_empty() {
                    search_params.push(("date".to_owned(), format!("le{}", end.trim())));
                }
            }
            _ => search_params.push((name.clone(), value.clone())),
        }
    }
    let filters = filters_of(&search_params, now)?;
    if filters.codes.is_empty() {
        return Err(QueryError::InvalidParameter("code: required for $stats".to_owned()));
    }
    if filters.patients.is_none() && filters.study_id.is_none() && filters.patient_identifiers.is_empty() {
        return Err(QueryError::InvalidParameter(
            "patient: required for $stats (or a study: patient._has:Group:member:_id)".to_owned(),
        ));
    }
    if statistics.is_empty() {
        statistics.extend(Statistic::ALL);
    }
    statistics.sort_unstable();
    statistics.dedup();
    Ok(StatsRequest { filters, statistics })
}

/// Parses the REST study summary (`code`, `start`, `end`, `granularity`) into filters for `study_id`: `code` as in
/// FHIR (`system|code` or `code`, comma list), `start`/`end` a date or date-time each, both inclusive (a date
/// stands for its whole day).
pub fn parse_study_summary(
    study_id: i64,
    params: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<(ObservationFilters, Granularity)> {
    let mut granularity = Granularity::Day;
    let mut search_params: Vec<(String, String)> = Vec::new();
    for (name, value) in params {
        match name.as_str() {
            "code" => search_params.push(("code".to_owned(), value.clone())),
            "start" => search_params.push(("date".to_owned(), format!("ge{}", value.trim()))),
            "end" => search_params.push(("date".to_owned(), format!("le{}", value.trim()))),
            "granularity" => granularity = Granularity::parse(value)?,
            // other parameters are ignored, as on the other REST reads
            _ => {}
        }
    }
    let mut filters = filters_of(&search_params, now)?;
    filters.study_id = Some(study_id);
    Ok((filters, granularity))
}

/// The search filters of `params`; paging and sorting parameters mean nothing here.
fn filters_of(params: &[(String, String)], now: DateTime<Utc>) -> Result<ObservationFilters> {
    let params: Vec<(String, String)> = params
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "_count" | "_page" | "_cursor" | "_sort" | "_summary"))
        .cloned()
        .collect();
    Ok(parse_search(&params, now)?.filters)
}

impl QueryEngine {
    /// The latest `max` observations (by effective time, then id) of each patient and code that `caller` may see
    /// among those matching `filters`, ordered by patient, code, newest first.
    pub async fn last_n(
        &self,
        caller: &Caller,
        filters: &ObservationFilters,
        max: usize,
    ) -> Result<Vec<ObservationRecord>> {
        let Some((table, filters)) = self.table(caller, filters).await? else {
            return Ok(Vec::new());
        };
        let newest_first = || vec![col(COL_EFFECTIVE_START).sort(false, false), col(COL_ID).sort(false, false)];
        let rank = row_number().partition_by(group_columns()).order_by(newest_first()).build()?.alias(ROW_NUMBER);
        let columns: Vec<Expr> = observation_schema().fields().iter().map(|field| col(field.name())).collect();
        let mut order: Vec<_> = group_columns().into_iter().map(|column| column.sort(true, false)).collect();
        order.extend(newest_first());
        let plan = scan(table, &filters)?
            .window(vec![rank])?
            .filter(col(ROW_NUMBER).lt_eq(lit(max as u64)))?
            .project(columns)?
            .sort(order)?
            .limit(0, Some(MAX_LASTN_ROWS + 1))?
            .build()?;
        let records = self
            .execute(plan, |batches| {
                let mut records = Vec::new();
                for batch in &batches {
                    records.extend(records_from_batch(batch)?);
                }
                Ok(records)
            })
            .await?;
        if records.len() > MAX_LASTN_ROWS {
            return Err(too_many("observations", MAX_LASTN_ROWS));
        }
        tracing::debug!(user = caller.user_id, rows = records.len(), max, "observation lastn");
        Ok(records)
    }

    /// Count, min, max and mean of `value` per patient and code (and UTC day, for [`Granularity::Day`]) over the
    /// observations `caller` may see that match `filters`, ordered by patient, code and day.
    pub async fn aggregate(
        &self,
        caller: &Caller,
        filters: &ObservationFilters,
        granularity: Granularity,
    ) -> Result<Vec<ObservationAggregate>> {
        let Some((table, filters)) = self.table(caller, filters).await? else {
            return Ok(Vec::new());
        };
        let mut groups = group_columns();
        if granularity == Granularity::Day {
            // the UTC midnight before the effective start, floor division so days before 1970 work too (the
            // engine is built without DataFusion's datetime functions; this is what date_trunc('day') computes
            // for a UTC timestamp)
            let micros = cast(col(COL_EFFECTIVE_START), DataType::Int64);
            let day = micros.clone() - ((micros % lit(MICROS_PER_DAY)) + lit(MICROS_PER_DAY)) % lit(MICROS_PER_DAY);
            groups.push(day.alias(DAY));
        }
        let aggregates = vec![
            count_all().alias(COUNT),
            min(col(COL_VALUE)).alias(MIN),
            max(col(COL_VALUE)).alias(MAX),
            avg(col(COL_VALUE)).alias(MEAN),
        ];
        let mut order = vec![
            col(COL_PATIENT_ID).sort(true, false),
            col(COL_CODING_SYSTEM).sort(true, false),
            col(COL_CODING_CODE).sort(true, false),
        ];
        if granularity == Granularity::Day {
            order.push(col(DAY).sort(true, false));
        }
        let plan = scan(table, &filters)?
            .aggregate(groups, aggregates)?
            .sort(order)?
            .limit(0, Some(MAX_AGGREGATE_ROWS + 1))?
            .build()?;
        let rows = self
            .execute(plan, move |batches| {
                let mut rows = Vec::new();
                for batch in &batches {
                    decode_aggregates(batch, granularity, &mut rows)?;
                }
                Ok(rows)
            })
            .await?;
        if rows.len() > MAX_AGGREGATE_ROWS {
            return Err(too_many("groups", MAX_AGGREGATE_ROWS));
        }
        tracing::debug!(user = caller.user_id, rows = rows.len(), ?granularity, "observation aggregate");
        Ok(rows)
    }
}

fn group_columns() -> Vec<Expr> {
    vec![col(COL_PATIENT_ID), col(COL_CODING_SYSTEM), col(COL_CODING_CODE)]
}

fn too_many(what: &str, limit: usize) -> QueryError {
    QueryError::InvalidParameter(format!(
        "the answer would hold more than {limit} {what}; narrow the request by patient, code or date"
    ))
}

fn column(batch: &RecordBatch, name: &str, data_type: &DataType) -> Result<ArrayRef> {
    let found = batch.column_by_name(name).ok_or_else(|| missing(name))?;
    arrow::compute::cast(found, data_type).map_err(|error| QueryError::DataFusion(error.into()))
}

fn missing(name: &str) -> QueryError {
    QueryError::DataFusion(datafusion::error::DataFusionError::Internal(format!("aggregate without column {name}")))
}

fn decode_aggregates(
    batch: &RecordBatch,
    granularity: Granularity,
    rows: &mut Vec<ObservationAggregate>,
) -> Result<()> {
    let patients = column(batch, COL_PATIENT_ID, &DataType::Int64)?;
    let patients = patients.as_primitive::<Int64Type>();
    let systems = column(batch, COL_CODING_SYSTEM, &DataType::Utf8)?;
    let systems = systems.as_string::<i32>();
    let codes = column(batch, COL_CODING_CODE, &DataType::Utf8)?;
    let codes = codes.as_string::<i32>();
    let counts = column(batch, COUNT, &DataType::Int64)?;
    let counts = counts.as_primitive::<Int64Type>();
    let floats = |name: &str| column(batch, name, &DataType::Float64);
    let (mins, maxs, means) = (floats(MIN)?, floats(MAX)?, floats(MEAN)?);
    let (mins, maxs, means) =
        (mins.as_primitive::<Float64Type>(), maxs.as_primitive::<Float64Type>(), means.as_primitive::<Float64Type>());
    let days = match granularity {
        Granularity::Day => Some(column(batch, DAY, &DataType::Int64)?),
        Granularity::All => None,
    };
    let days = days.as_ref().map(|days| days.as_primitive::<Int64Type>());
    let optional = |array: &arrow::array::Float64Array, row: usize| array.is_valid(row).then(|| array.value(row));
    for row in 0..batch.num_rows() {
        rows.push(ObservationAggregate {
            patient_id: patients.value(row),
            coding_system: systems.value(row).to_owned(),
            coding_code: codes.value(row).to_owned(),
            day_start_micros: days.map(|days| days.value(row)),
            count: u64::try_from(counts.value(row)).unwrap_or_default(),
            min: optional(mins, row),
            max: optional(maxs, row),
            mean: optional(means, row),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn lastn_max_defaults_to_one_and_is_bounded() {
        let now = Utc::now();
        assert_eq!(parse_lastn(&params(&[("patient", "1")]), now).unwrap().max, 1);
        assert_eq!(parse_lastn(&params(&[("max", "3")]), now).unwrap().max, 3);
        for bad in ["0", "x", "-1", "1001"] {
            assert!(
                matches!(parse_lastn(&params(&[("max", bad)]), now), Err(QueryError::InvalidParameter(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn stats_need_code_and_patient_and_known_statistics() {
        let now = Utc::now();
        let ok =
            parse_stats(&params(&[("patient", "1"), ("code", "s|c"), ("statistic", "mean,count,mean")]), now).unwrap();
        assert_eq!(ok.statistics, vec![Statistic::Count, Statistic::Mean]);
        assert_eq!(parse_stats(&params(&[("patient", "1"), ("code", "c")]), now).unwrap().statistics.len(), 4);
        let study = parse_stats(&params(&[("patient._has:Group:member:_id", "7"), ("code", "c")]), now).unwrap();
        assert_eq!(study.filters.study_id, Some(7));
        for bad in [
            params(&[("patient", "1")]),
            params(&[("code", "c")]),
            params(&[("patient", "1"), ("code", "c"), ("statistic", "median")]),
            params(&[("patient", "1"), ("code", "c"), ("period", "2025-01-01")]),
            params(&[("patient", "1"), ("code", "c"), ("period", "yesterday/")]),
        ] {
            assert!(matches!(parse_stats(&bad, now), Err(QueryError::InvalidParameter(_))), "{bad:?}");
        }
        let period =
            parse_stats(&params(&[("patient", "1"), ("code", "c"), ("period", "2025-01-01/2025-01-31")]), now).unwrap();
        assert_eq!(period.filters.effective.len(), 2);
    }

    #[test]
    fn study_summary_is_per_day_and_scoped_to_the_study() {
        let now = Utc::now();
        let (filters, granularity) =
            parse_study_summary(5, &params(&[("code", "c"), ("start", "2025-01-01"), ("end", "2025-01-02")]), now)
                .unwrap();
        assert_eq!((filters.study_id, granularity, filters.effective.len()), (Some(5), Granularity::Day, 2));
        assert!(parse_study_summary(5, &params(&[("granularity", "hour")]), now).is_err());
        assert!(parse_study_summary(5, &params(&[("start", "soon")]), now).is_err());
    }

    #[test]
    fn days_are_formatted_in_utc() {
        let aggregate = ObservationAggregate {
            patient_id: 1,
            coding_system: "s".into(),
            coding_code: "c".into(),
            day_start_micros: Some(1_735_689_600_000_000),
            count: 1,
            min: None,
            max: None,
            mean: None,
        };
        assert_eq!(aggregate.day().as_deref(), Some("2025-01-01"));
    }
}
