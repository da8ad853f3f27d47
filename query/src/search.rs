//! A typed observation search: filters, sort order, page size and position, and the DataFusion expressions they
//! become. Parsing FHIR or REST parameters into these types happens elsewhere ([`crate::fhir_params`], the API).

use std::collections::BTreeSet;
use std::ops::Bound;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datafusion::logical_expr::{Expr, SortExpr, col, lit};
use datafusion::scalar::ScalarValue;
use jhe_schemas::table::{
    COL_CODING_CODE, COL_CODING_SYSTEM, COL_EFFECTIVE_START, COL_ID, COL_LAST_UPDATED, COL_PATIENT_ID, TIMEZONE,
};
use serde::{Deserialize, Serialize};

use crate::error::{QueryError, Result};

/// The default page size (`_count`), as in the reference.
pub const DEFAULT_COUNT: usize = 20;
/// The largest page size; larger requests are capped, as in the reference.
pub const MAX_COUNT: usize = 1000;

/// One alternative of a `code` filter: `system|code`, `code` in any system, or any code of `system`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodeMatch {
    pub system: Option<String>,
    pub code: Option<String>,
}

impl CodeMatch {
    /// The exact (system, code) pair, when both parts are given.
    pub fn pair(&self) -> Option<(String, String)> {
        Some((self.system.clone()?, self.code.clone()?))
    }

    pub(crate) fn expr(&self) -> Expr {
        let system = self.system.as_ref().map(|system| col(COL_CODING_SYSTEM).eq(lit(system.as_str())));
        let code = self.code.as_ref().map(|code| col(COL_CODING_CODE).eq(lit(code.as_str())));
        match (system, code) {
            (Some(system), Some(code)) => system.and(code),
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => lit(true),
        }
    }
}

/// A condition on one timestamp column (microseconds since the epoch, UTC): `lower ≤/< t ≤/< upper`, or its
/// negation (FHIR `ne`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeCondition {
    pub lower: Bound<i64>,
    pub upper: Bound<i64>,
    pub negated: bool,
}

impl TimeCondition {
    fn expr(&self, column: &str) -> Expr {
        let mut parts = Vec::with_capacity(2);
        match self.lower {
            Bound::Included(at) => parts.push(col(column).gt_eq(timestamp(at))),
            Bound::Excluded(at) => parts.push(col(column).gt(timestamp(at))),
            Bound::Unbounded => {}
        }
        match self.upper {
            Bound::Included(at) => parts.push(col(column).lt_eq(timestamp(at))),
            Bound::Excluded(at) => parts.push(col(column).lt(timestamp(at))),
            Bound::Unbounded => {}
        }
        let within = parts.into_iter().reduce(Expr::and).unwrap_or(lit(true));
        if self.negated { Expr::Not(Box::new(within)) } else { within }
    }
}

/// A timestamp literal of the table's type (`Timestamp(Microsecond, "UTC")`).
pub(crate) fn timestamp(micros: i64) -> Expr {
    lit(ScalarValue::TimestampMicrosecond(Some(micros), Some(Arc::from(TIMEZONE))))
}

/// What to look for. Repeated filters are ANDed; the alternatives inside one are ORed. Empty means "no
/// condition".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObservationFilters {
    /// Only these patients (`None`: any).
    pub patients: Option<BTreeSet<i64>>,
    /// Only patients carrying an identifier with each of these values (resolved against the control plane).
    pub patient_identifiers: Vec<String>,
    /// A study-scoped read (`patient._has:Group:member:_id`, REST `study_id`).
    pub study_id: Option<i64>,
    /// Only patients of this organization (`patient.organization`, REST `organization_id`).
    pub organization_id: Option<i64>,
    /// Each inner list is one `code` parameter (alternatives); all of them must hold.
    pub codes: Vec<Vec<CodeMatch>>,
    /// Only these observation ids (`None`: any).
    pub ids: Option<BTreeSet<i64>>,
    /// Conditions on the effective time (`date`): the start of a period, or the instant.
    pub effective: Vec<TimeCondition>,
    /// Conditions on `last_updated` (`_lastUpdated`).
    pub last_updated: Vec<TimeCondition>,
    /// A filter that can match nothing was given (another `_source`, a `status` other than `final`, …).
    pub match_nothing: bool,
}

impl ObservationFilters {
    /// Narrows `patients` to `ids` (an AND of two patient conditions).
    pub fn restrict_patients(&mut self, ids: impl IntoIterator<Item = i64>) {
        let ids: BTreeSet<i64> = ids.into_iter().collect();
        self.patients = Some(match self.patients.take() {
            Some(existing) => existing.intersection(&ids).copied().collect(),
            None => ids,
        });
    }

    /// The exact (system, code) pairs the `code` conditions allow, when every alternative of at least one of them
    /// names both parts (`None`: not known as pairs).
    pub(crate) fn code_pairs(&self) -> Option<BTreeSet<(String, String)>> {
        let mut pairs: Option<BTreeSet<(String, String)>> = None;
        for alternatives in &self.codes {
            let Some(these) = alternatives.iter().map(CodeMatch::pair).collect::<Option<BTreeSet<_>>>() else {
                continue;
            };
            pairs = Some(match pairs {
                Some(known) => known.intersection(&these).cloned().collect(),
                None => these,
            });
        }
        pairs
    }

    /// The filters as DataFusion predicates (to be ANDed). The caller's access predicate is not among them: the
    /// table adds it to every scan.
    pub(crate) fn exprs(&self) -> Vec<Expr> {
        if self.match_nothing {
            return vec![lit(false)];
        }
        let mut exprs = Vec::new();
        if let Some(patients) = &self.patients {
            exprs.push(in_list_i64(COL_PATIENT_ID, patients));
        }
        if let Some(ids) = &self.ids {
            exprs.push(in_list_i64(COL_ID, ids));
        }
        for alternatives in &self.codes {
            match alternatives.iter().map(CodeMatch::expr).reduce(Expr::or) {
                Some(expr) => exprs.push(expr),
                None => exprs.push(lit(false)),
            }
        }
        exprs.extend(self.effective.iter().map(|condition| condition.expr(COL_EFFECTIVE_START)));
        exprs.extend(self.last_updated.iter().map(|condition| condition.expr(COL_LAST_UPDATED)));
        exprs
    }
}

/// `column IN (values)`; `column = value` for one, `false` for none.
pub(crate) fn in_list_i64<'a>(column: &str, values: impl IntoIterator<Item = &'a i64>) -> Expr {
    let mut list: Vec<Expr> = values.into_iter().map(|value| lit(*value)).collect();
    match list.len() {
        0 => lit(false),
        1 => col(column).eq(list.remove(0)),
        _ => col(column).in_list(list, false),
    }
}

/// A sortable column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SortKey {
    /// The effective time (`date`): the instant, or the start of the period.
    Date,
    /// `_lastUpdated`
    LastUpdated,
    /// `_id`: the unique tie-breaker that ends every order.
    Id,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
            SortKey::Date => COL_EFFECTIVE_START,
            SortKey::LastUpdated => COL_LAST_UPDATED,
            SortKey::Id => COL_ID,
        }
    }

    fn name(self) -> &'static str {
        match self {
            SortKey::Date => "date",
            SortKey::LastUpdated => "_lastUpdated",
            SortKey::Id => "_id",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortField {
    pub key: SortKey,
    pub descending: bool,
}

/// A total order of search results: the requested keys, then the id (unique), so pages never overlap or skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortOrder {
    fields: Vec<SortField>,
}

impl Default for SortOrder {
    /// Newest `_lastUpdated` first (the reference's default), ties newest id first.
    fn default() -> Self {
        Self::new(vec![SortField { key: SortKey::LastUpdated, descending: true }])
    }
}

impl SortOrder {
    /// The order of `fields` (later repeats of a key are dropped), ending at the id: keys after an `_id` are
    /// dropped, and an order without one gets it in the direction of its last field. No fields gives the default
    /// order.
    pub fn new(fields: Vec<SortField>) -> Self {
        let mut unique: Vec<SortField> = Vec::with_capacity(fields.len() + 1);
        for field in fields {
            if !unique.iter().any(|known| known.key == field.key) {
                unique.push(field);
            }
        }
        let Some(last) = unique.last().copied() else {
            return Self::default();
        };
        match unique.iter().position(|field| field.key == SortKey::Id) {
            // the id is unique: keys after it never decide anything
            Some(id) => unique.truncate(id + 1),
            None => unique.push(SortField { key: SortKey::Id, descending: last.descending }),
        }
        Self { fields: unique }
    }

    pub fn fields(&self) -> &[SortField] {
        &self.fields
    }

    /// The canonical text of the order (`-_lastUpdated,-_id`), which a cursor must match.
    pub fn signature(&self) -> String {
        self.fields
            .iter()
            .map(|field| format!("{}{}", if field.descending { "-" } else { "" }, field.key.name()))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The order in which a scan for this order should open its files (its first key decides).
    pub(crate) fn file_order(&self) -> crate::table::FileOrder {
        use crate::table::FileOrder;
        match self.fields.first() {
            Some(SortField { key: SortKey::LastUpdated, descending }) => {
                FileOrder::LastUpdated { descending: *descending }
            }
            Some(SortField { key: SortKey::Date, descending }) => FileOrder::EffectiveStart { descending: *descending },
            Some(SortField { key: SortKey::Id, .. }) | None => FileOrder::Size,
        }
    }

    pub(crate) fn sort_exprs(&self) -> Vec<SortExpr> {
        // every sort column is non-null, so where nulls go does not matter
        self.fields.iter().map(|field| col(field.key.column()).sort(!field.descending, false)).collect()
    }

    /// The sort-key values of a row, in the order's order.
    pub(crate) fn keys_of(&self, record: &jhe_schemas::ObservationRecord) -> Vec<i64> {
        self.fields
            .iter()
            .map(|field| match field.key {
                SortKey::Date => record.effective.start_micros,
                SortKey::LastUpdated => record.last_updated_micros,
                SortKey::Id => record.id,
            })
            .collect()
    }

    /// Rows strictly after the row whose keys are `keys`: `(k1 > v1) OR (k1 = v1 AND (k2 > v2 OR …))`, with `<`
    /// for descending keys, plus `k1 >= v1` on its own so the scan can prune by the first key.
    pub(crate) fn after(&self, keys: &[i64]) -> Result<Vec<Expr>> {
        if keys.len() != self.fields.len() {
            return Err(QueryError::InvalidCursor);
        }
        let value = |field: &SortField, at: i64| match field.key {
            SortKey::Id => lit(at),
            SortKey::Date | SortKey::LastUpdated => timestamp(at),
        };
        let beyond = |field: &SortField, at: i64| {
            let column = col(field.key.column());
            if field.descending { column.lt(value(field, at)) } else { column.gt(value(field, at)) }
        };
        let mut expr: Option<Expr> = None;
        for (field, at) in self.fields.iter().zip(keys).rev() {
            expr = Some(match expr {
                None => beyond(field, *at),
                Some(rest) => beyond(field, *at).or(col(field.key.column()).eq(value(field, *at)).and(rest)),
            });
        }
        let (Some(first), Some(first_key), Some(expr)) = (self.fields.first(), keys.first(), expr) else {
            return Err(QueryError::InvalidCursor);
        };
        let column = col(first.key.column());
        let not_before = if first.descending {
            column.lt_eq(value(first, *first_key))
        } else {
            column.gt_eq(value(first, *first_key))
        };
        Ok(vec![not_before, expr])
    }
}

/// Where a page starts after the previous one: the sort keys of its last row. Opaque to clients (base64url of
/// a small JSON document); a cursor only works with the sort order it was made for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    #[serde(rename = "s")]
    sort: String,
    #[serde(rename = "k")]
    keys: Vec<i64>,
}

/// Longer cursors are not ours.
const MAX_CURSOR_CHARS: usize = 512;

impl Cursor {
    pub(crate) fn after(sort: &SortOrder, record: &jhe_schemas::ObservationRecord) -> Self {
        Cursor { sort: sort.signature(), keys: sort.keys_of(record) }
    }

    pub fn encode(&self) -> String {
        // serializing two plain fields cannot fail
        let json = serde_json::to_vec(self).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Decodes a cursor for `sort`; anything else is [`QueryError::InvalidCursor`].
    pub fn decode(text: &str, sort: &SortOrder) -> Result<Self> {
        if text.len() > MAX_CURSOR_CHARS {
            return Err(QueryError::InvalidCursor);
        }
        let bytes = URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| QueryError::InvalidCursor)?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| QueryError::InvalidCursor)?;
        if cursor.sort != sort.signature() || cursor.keys.len() != sort.fields().len() {
            return Err(QueryError::InvalidCursor);
        }
        Ok(cursor)
    }

    pub(crate) fn keys(&self) -> &[i64] {
        &self.keys
    }
}

/// One search: what, in which order, and which page.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub filters: ObservationFilters,
    pub sort: SortOrder,
    /// Rows per page, `1..=MAX_COUNT`.
    pub count: usize,
    /// The 1-based number of the page. Without a cursor the page is found by offset; with one, the cursor says
    /// where it starts and the number only labels it.
    pub page: u32,
    pub cursor: Option<Cursor>,
    /// Only the total is wanted (`_summary=count`).
    pub summary_count: bool,
}

impl Default for SearchRequest {
    fn default() -> Self {
        Self {
            filters: ObservationFilters::default(),
            sort: SortOrder::default(),
            count: DEFAULT_COUNT,
            page: 1,
            cursor: None,
            summary_count: false,
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    /// Every matching row the caller may see, over all pages.
    pub total: u64,
    pub records: Vec<jhe_schemas::ObservationRecord>,
    /// Where the next page starts, when there is one.
    pub next: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_end_with_a_unique_id() {
        assert_eq!(SortOrder::default().signature(), "-_lastUpdated,-_id");
        let order = SortOrder::new(vec![
            SortField { key: SortKey::Date, descending: false },
            SortField { key: SortKey::Date, descending: true },
        ]);
        assert_eq!(order.signature(), "date,_id");
        let order = SortOrder::new(vec![
            SortField { key: SortKey::Id, descending: true },
            SortField { key: SortKey::Date, descending: false },
        ]);
        assert_eq!(order.signature(), "-_id");
        assert_eq!(SortOrder::new(Vec::new()), SortOrder::default());
    }

    #[test]
    fn cursors_round_trip_and_belong_to_one_order() {
        let order = SortOrder::default();
        let cursor = Cursor { sort: order.signature(), keys: vec![1_700_000_000_000_000, 42] };
        let text = cursor.encode();
        assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{text}");
        assert_eq!(Cursor::decode(&text, &order).unwrap(), cursor);
        let other = SortOrder::new(vec![SortField { key: SortKey::Date, descending: false }]);
        assert!(matches!(Cursor::decode(&text, &other), Err(QueryError::InvalidCursor)));
        for junk in ["", "!!", "e30", &"A".repeat(600)] {
            assert!(matches!(Cursor::decode(junk, &order), Err(QueryError::InvalidCursor)), "{junk}");
        }
    }

    #[test]
    fn code_pairs_intersect_the_exact_conditions() {
        let exact = |code: &str| CodeMatch { system: Some("s".into()), code: Some(code.into()) };
        let filters = ObservationFilters {
            codes: vec![
                vec![exact("a"), exact("b")],
                vec![CodeMatch { system: None, code: Some("b".into()) }],
                vec![exact("b"), exact("c")],
            ],
            ..Default::default()
        };
        assert_eq!(filters.code_pairs(), Some(BTreeSet::from([("s".to_owned(), "b".to_owned())])));
        assert_eq!(ObservationFilters::default().code_pairs(), None);
    }
}
