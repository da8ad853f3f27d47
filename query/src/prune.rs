//! What the filters of a scan say about which files can match: the codes, the UTC days of `effective_start` and
//! the patients. Only plain shapes are understood (`=`, `IN`, comparisons with literals, AND, OR); anything else
//! just prunes less. The row filter always runs, so pruning may only ever keep too many files, never too few.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate};
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};
use datafusion::scalar::ScalarValue;
use jhe_schemas::table::{COL_CODING_CODE, COL_CODING_SYSTEM, COL_EFFECTIVE_START, COL_LAST_UPDATED, COL_PATIENT_ID};

/// File pruning hints; every `None` means "unconstrained".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PruningHints {
    pub(crate) patients: Option<BTreeSet<i64>>,
    pub(crate) codes: Option<BTreeSet<String>>,
    pub(crate) systems: Option<BTreeSet<String>>,
    pub(crate) from_day: Option<NaiveDate>,
    pub(crate) to_day: Option<NaiveDate>,
    /// The lowest and highest `effective_start` allowed, in microseconds (the days above, exactly).
    pub(crate) effective_start: (Option<i64>, Option<i64>),
    /// The lowest and highest `last_updated` allowed, in microseconds.
    pub(crate) last_updated: (Option<i64>, Option<i64>),
}

impl PruningHints {
    /// The hints of the conjunction of `filters`.
    pub(crate) fn from_filters(filters: &[Expr]) -> Self {
        let conjunction = filters.iter().cloned().reduce(Expr::and);
        let Some(all) = conjunction else {
            return Self::default();
        };
        let mut hints = PruningHints {
            patients: values(&all, COL_PATIENT_ID, &int64),
            codes: values(&all, COL_CODING_CODE, &text),
            systems: values(&all, COL_CODING_SYSTEM, &text),
            from_day: None,
            to_day: None,
            effective_start: time_range(&all, COL_EFFECTIVE_START),
            last_updated: time_range(&all, COL_LAST_UPDATED),
        };
        hints.from_day = hints.effective_start.0.and_then(day_of);
        hints.to_day = hints.effective_start.1.and_then(day_of);
        hints
    }

    /// Whether a file whose `effective_start` and `last_updated` lie within these bounds (inclusive, in
    /// microseconds) can hold a row the hints allow.
    pub(crate) fn overlaps(&self, effective_start: (i64, i64), last_updated: (i64, i64)) -> bool {
        let within = |(lowest, highest): (i64, i64), (from, to): (Option<i64>, Option<i64>)| {
            from.is_none_or(|from| highest >= from) && to.is_none_or(|to| lowest <= to)
        };
        within(effective_start, self.effective_start) && within(last_updated, self.last_updated)
    }
}

/// The (lowest, highest) values of the timestamp `column` that the conjuncts of `all` allow, in microseconds.
fn time_range(all: &Expr, column: &str) -> (Option<i64>, Option<i64>) {
    let mut lower: Option<i64> = None;
    let mut upper: Option<i64> = None;
    for conjunct in datafusion::logical_expr::utils::split_conjunction(all) {
        for (at_least, at_most) in time_bounds(conjunct, column) {
            if let Some(at) = at_least {
                lower = Some(lower.map_or(at, |known| known.max(at)));
            }
            if let Some(at) = at_most {
                upper = Some(upper.map_or(at, |known| known.min(at)));
            }
        }
    }
    (lower, upper)
}

fn day_of(micros: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp_micros(micros).map(|time| time.date_naive())
}

fn int64(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
        _ => None,
    }
}

fn text(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Utf8(Some(v)) | ScalarValue::Utf8View(Some(v)) | ScalarValue::LargeUtf8(Some(v)) => {
            Some(v.clone())
        }
        _ => None,
    }
}

/// Microseconds of a timestamp literal (any unit). Nanoseconds round down, which keeps a bound safe: the
/// table stores microseconds, and `<`/`>` bounds are used as inclusive ones.
fn micros(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMillisecond(Some(v), _) => v.checked_mul(1_000),
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1_000_000),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000)),
        _ => None,
    }
}

fn is_column(expr: &Expr, name: &str) -> bool {
    matches!(expr, Expr::Column(column) if column.name == name)
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

/// The values `column` can take where `expr` holds, if `expr` restricts them.
fn values<T: Ord + Clone>(
    expr: &Expr,
    column: &str,
    convert: &dyn Fn(&ScalarValue) -> Option<T>,
) -> Option<BTreeSet<T>> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Eq, right }) => {
            let value = if is_column(left, column) {
                literal(right)
            } else if is_column(right, column) {
                literal(left)
            } else {
                None
            };
            value.and_then(convert).map(|value| BTreeSet::from([value]))
        }
        Expr::InList(list) if !list.negated && is_column(&list.expr, column) => {
            list.list.iter().map(|item| literal(item).and_then(convert)).collect::<Option<BTreeSet<T>>>()
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
            match (values(left, column, convert), values(right, column, convert)) {
                (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
                (Some(one), None) | (None, Some(one)) => Some(one),
                (None, None) => None,
            }
        }
        Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
            let mut union = values(left, column, convert)?;
            union.extend(values(right, column, convert)?);
            Some(union)
        }
        Expr::Literal(ScalarValue::Boolean(Some(false)), _) => Some(BTreeSet::new()),
        _ => None,
    }
}

/// (lowest, highest) value of the timestamp `column` a conjunct allows, in microseconds.
fn time_bounds(conjunct: &Expr, column: &str) -> Vec<(Option<i64>, Option<i64>)> {
    match conjunct {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (op, value) = if is_column(left, column) {
                (*op, literal(right))
            } else if is_column(right, column) {
                match op.swap() {
                    Some(swapped) => (swapped, literal(left)),
                    None => return Vec::new(),
                }
            } else {
                return Vec::new();
            };
            let Some(at) = value.and_then(micros) else {
                return Vec::new();
            };
            match op {
                Operator::Eq => vec![(Some(at), Some(at))],
                Operator::Gt | Operator::GtEq => vec![(Some(at), None)],
                Operator::Lt | Operator::LtEq => vec![(None, Some(at))],
                _ => Vec::new(),
            }
        }
        Expr::Between(between) if !between.negated && is_column(&between.expr, column) => {
            vec![(literal(&between.low).and_then(micros), literal(&between.high).and_then(micros))]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::timestamp;
    use datafusion::logical_expr::{col, lit};

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn understands_the_shapes_searches_produce() {
        let filters = vec![
            col(COL_PATIENT_ID).in_list(vec![lit(3_i64), lit(5_i64)], false),
            col(COL_CODING_SYSTEM)
                .eq(lit("s"))
                .and(col(COL_CODING_CODE).eq(lit("a")))
                .or(col(COL_CODING_CODE).eq(lit("b"))),
            col(COL_EFFECTIVE_START).gt_eq(timestamp(20_000 * DAY + 5)),
            timestamp(20_003 * DAY).gt(col(COL_EFFECTIVE_START)),
            col(COL_PATIENT_ID).eq(lit(5_i64)).or(col(COL_PATIENT_ID).eq(lit(3_i64))),
        ];
        let hints = PruningHints::from_filters(&filters);
        assert_eq!(hints.patients, Some(BTreeSet::from([3, 5])));
        assert_eq!(hints.codes, Some(BTreeSet::from(["a".to_owned(), "b".to_owned()])));
        assert_eq!(hints.systems, None, "`b` may be in any system");
        assert_eq!(hints.from_day, NaiveDate::from_ymd_opt(2024, 10, 4));
        assert_eq!(hints.to_day, NaiveDate::from_ymd_opt(2024, 10, 7));
        assert_eq!(hints.effective_start, (Some(20_000 * DAY + 5), Some(20_003 * DAY)));
        assert_eq!(hints.last_updated, (None, None));
    }

    #[test]
    fn files_outside_the_time_bounds_do_not_overlap() {
        let filters = vec![col(COL_LAST_UPDATED).gt_eq(timestamp(100)), col(COL_EFFECTIVE_START).lt(timestamp(50))];
        let hints = PruningHints::from_filters(&filters);
        assert_eq!(hints.last_updated, (Some(100), None));
        assert!(hints.overlaps((0, 10), (90, 100)), "touching the bound is enough");
        assert!(!hints.overlaps((0, 10), (90, 99)), "ends before the last_updated bound");
        assert!(!hints.overlaps((51, 60), (100, 200)), "starts after the effective_start bound");
        assert!(PruningHints::default().overlaps((0, 0), (0, 0)));
    }

    #[test]
    fn unknown_shapes_do_not_prune() {
        let filters = vec![
            col(COL_PATIENT_ID).gt(lit(3_i64)),
            Expr::Not(Box::new(col(COL_EFFECTIVE_START).gt(timestamp(0)))),
            col(COL_PATIENT_ID).eq(lit(1_i64)).or(col("value").gt(lit(2.0))),
        ];
        assert_eq!(PruningHints::from_filters(&filters), PruningHints::default());
        assert_eq!(PruningHints::from_filters(&[]), PruningHints::default());
        assert_eq!(PruningHints::from_filters(&[lit(false)]).patients, Some(BTreeSet::new()));
    }
}
