//! FHIR search parameters of `GET /FHIR/R5/Observation` (jhe-compat §6.3, §6.4, §6.6) → [`SearchRequest`].
//!
//! | parameter | meaning |
//! |---|---|
//! | `patient`, `subject` | comma list (OR) of `123` or `Patient/123`; repeats AND |
//! | `patient._has:Group:member:_id` (also `_group`) | a study-scoped read |
//! | `patient.organization` | patients of that organization |
//! | `identifier`, `patient.identifier` | patients with an identifier of that value (`[system]\|value`; the system is ignored, as in the reference) |
//! | `code` | comma list of `system\|code`, `code` (any system) or `system\|` (any code of the system) |
//! | `date` | the effective time: `eq ne lt le gt ge sa eb ap` + a date or date-time; repeats AND |
//! | `_lastUpdated` | the same on the time the observation was stored |
//! | `_id` | comma list of ids (a value that is not an id matches nothing) |
//! | `status` | `final` (every jhe observation) or nothing matches |
//! | `_source` | `https://jupyterhealth.org/jhe`, or nothing matches (imported resources are elsewhere) |
//! | `_sort` | comma list of `date`, `_lastUpdated`, `_id`, each optionally `-`; unknown keys are ignored |
//! | `_count` | page size: default 20, capped at 1000; invalid or 0 gives 20 |
//! | `_page` | 1-based page number (by offset), at most [`MAX_PAGE_DEPTH`] rows deep (`_page` × `_count`) |
//! | `_cursor` | where the page starts, from a `next` link |
//! | `_summary=count` | only the total |
//!
//! Dates: a date or partial date (`2025`, `2025-01`, `2025-01-02`) or a date-time to the minute stands for its
//! whole (UTC) range, as FHIR says; a date-time to the second or finer is an instant, compared exactly (the
//! reference's behaviour). Time zones default to UTC. Years run from 0001 to 9999 (FHIR's four digits) and
//! offsets up to ±14:00, so no date arithmetic can leave the calendar. Unknown parameters are ignored, as FHIR
//! servers do by default; a known parameter with a value that cannot be understood is a 400.

use std::collections::BTreeSet;
use std::num::IntErrorKind;
use std::ops::{Bound, RangeInclusive};

use chrono::{DateTime, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use jhe_schemas::fhir::JHE_SOURCE_URI;

use crate::error::{QueryError, Result};
use crate::search::{
    CodeMatch, Cursor, DEFAULT_COUNT, MAX_COUNT, SearchRequest, SortField, SortKey, SortOrder, TimeCondition,
};

/// The deepest an offset page may reach: page `n` of `count` rows needs `n × count ≤ MAX_PAGE_DEPTH`. To skip the
/// rows before a page, a search sorts every one of them; a `next` link's cursor starts where the previous page
/// ended instead, which costs the same at any depth.
pub const MAX_PAGE_DEPTH: u64 = 100_000;

/// Whether page `page` (1-based) of `count` rows ends within [`MAX_PAGE_DEPTH`] rows.
pub fn within_page_depth(page: u64, count: u64) -> bool {
    page.checked_mul(count).is_some_and(|rows| rows <= MAX_PAGE_DEPTH)
}

/// The years a date parameter may name: FHIR's four-digit years.
const YEARS: RangeInclusive<i32> = 1..=9999;
/// The largest time-zone offset a date-time may carry (±14:00, the widest in use).
const MAX_OFFSET_SECONDS: u32 = 14 * 3600;
/// The accepted forms of a date parameter, for error messages.
const DATE_FORMS: &str = "`[prefix]YYYY[-MM[-DD[Thh:mm[:ss[.f]][Z|±hh:mm]]]]` with a year from 0001 to 9999 and an \
                          offset up to ±14:00; prefixes eq, ne, lt, le, gt, ge, sa, eb, ap";

/// The query parameter that carries a paging cursor in `next` links.
pub const CURSOR_PARAM: &str = "_cursor";
/// The page-number parameter.
pub const PAGE_PARAM: &str = "_page";

fn invalid(message: String) -> QueryError {
    QueryError::InvalidParameter(message)
}

/// The canonical name of a parameter: both the FHIR spelling and the underscoreized one the reference's middleware
/// produces (`_last_updated`, `patient._has:_group:member:_id`) are accepted.
fn canonical(name: &str) -> &str {
    match name {
        "_last_updated" => "_lastUpdated",
        "patient._has:_group:member:_id" | "_has:Group:member:_id" | "_has:_group:member:_id" => {
            "patient._has:Group:member:_id"
        }
        other => other,
    }
}

/// Parses the parameters of an Observation search, evaluating relative dates (`ap`) against `now`.
pub fn parse_search(params: &[(String, String)], now: DateTime<Utc>) -> Result<SearchRequest> {
    let mut request = SearchRequest::default();
    let mut sort_fields: Vec<SortField> = Vec::new();
    let mut cursor_text: Option<&str> = None;
    let mut page_text: Option<&str> = None;
    let filters = &mut request.filters;
    for (raw_name, raw_value) in params {
        let value = raw_value.trim();
        match canonical(raw_name) {
            "patient" | "subject" => {
                let ids = id_list(raw_name, value, "Patient")?;
                filters.restrict_patients(ids);
            }
            "patient._has:Group:member:_id" => {
                let study = single_id(raw_name, value, "Group")?;
                if filters.study_id.is_some_and(|known| known != study) {
                    filters.match_nothing = true;
                }
                filters.study_id = Some(study);
            }
            "patient.organization" => {
                let organization = single_id(raw_name, value, "Organization")?;
                if filters.organization_id.is_some_and(|known| known != organization) {
                    filters.match_nothing = true;
                }
                filters.organization_id = Some(organization);
            }
            "identifier" | "patient.identifier" => {
                // `[system]|value`: only the value is matched, as in the reference
                let identifier = value.rsplit_once('|').map_or(value, |(_, value)| value);
                if identifier.is_empty() {
                    return Err(invalid(format!("{raw_name}: an identifier value is required")));
                }
                filters.patient_identifiers.push(identifier.to_owned());
            }
            "code" => filters.codes.push(codes(raw_name, value)?),
            "date" => filters.effective.push(time_condition(raw_name, value, now)?),
            "_lastUpdated" => filters.last_updated.push(time_condition(raw_name, value, now)?),
            "_id" => {
                // a value of the wrong shape matches nothing (the reference's behaviour)
                let ids: BTreeSet<i64> = value.split(',').filter_map(|id| id.trim().parse().ok()).collect();
                filters.ids = Some(match filters.ids.take() {
                    Some(known) => known.intersection(&ids).copied().collect(),
                    None => ids,
                });
            }
            "status" => {
                if !value.split(',').any(|status| status.trim() == "final") {
                    filters.match_nothing = true;
                }
            }
            "_source" => {
                if value.trim_end_matches('/') != JHE_SOURCE_URI {
                    filters.match_nothing = true;
                }
            }
            // only imported resources live below a FHIR source, and none of them are jhe observations
            "_source:below" => filters.match_nothing = true,
            "_sort" => sort_fields.extend(sort(value)),
            "_count" => request.count = count(value),
            "_page" => page_text = Some(value),
            "_cursor" => cursor_text = Some(value),
            "_summary" => {
                if value == "count" {
                    request.summary_count = true;
                }
            }
            other => {
                if let Some((base, modifier)) = other.split_once(':')
                    && matches!(base, "patient" | "subject" | "code" | "date" | "_lastUpdated" | "_id" | "status")
                {
                    return Err(invalid(format!("{raw_name}: the `:{modifier}` modifier is not supported")));
                }
                // unknown parameters are ignored, as FHIR servers do by default
            }
        }
    }
    request.sort = SortOrder::new(sort_fields);
    if let Some(text) = cursor_text {
        request.cursor = Some(cursor(text, &request.sort)?);
    }
    if let Some(text) = page_text {
        request.page = page_number(text, request.count, request.cursor.is_some())?;
    }
    Ok(request)
}

/// `_page`: a whole number from 1. Without a cursor the page is found by offset, so it may reach at most
/// [`MAX_PAGE_DEPTH`] rows deep; with one, the cursor says where the page starts and the number only labels it.
fn page_number(value: &str, count: usize, has_cursor: bool) -> Result<u32> {
    let digits = !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit());
    let positive = digits && value.bytes().any(|byte| byte != b'0');
    let page = value.parse::<u32>().ok().filter(|page| *page >= 1);
    let count = u64::try_from(count).unwrap_or(u64::MAX);
    match page {
        Some(page) if has_cursor || within_page_depth(u64::from(page), count) => Ok(page),
        // a number too large for a page number is deeper than any page may go
        _ if positive && !has_cursor => Err(invalid(format!(
            "_page: page {value} of {count} would end past row {MAX_PAGE_DEPTH}, the deepest a `_page` may reach; \
             follow the `next` link instead (its `_cursor` starts where the previous page ended, at the same cost at \
             any depth)"
        ))),
        _ => Err(invalid(format!("_page: `{value}` is not a page number (1 to {})", u32::MAX))),
    }
}

/// A `_cursor` for `sort`, whose time keys lie within the years a date may name (as every stored row's do).
fn cursor(text: &str, sort: &SortOrder) -> Result<Cursor> {
    let cursor = Cursor::decode(text, sort)?;
    let (lowest, highest) = micros_range();
    let in_range = sort.fields().iter().zip(cursor.keys()).all(|(field, key)| match field.key {
        SortKey::Date | SortKey::LastUpdated => (lowest..=highest).contains(key),
        SortKey::Id => true,
    });
    if in_range { Ok(cursor) } else { Err(QueryError::InvalidCursor) }
}

/// The first and last microsecond of [`YEARS`].
fn micros_range() -> (i64, i64) {
    let first = NaiveDate::from_ymd_opt(*YEARS.start(), 1, 1);
    let after = NaiveDate::from_ymd_opt(YEARS.end() + 1, 1, 1);
    let micros = |date: Option<NaiveDate>| date.map(|date| date.and_time(NaiveTime::MIN).and_utc().timestamp_micros());
    // both dates exist (years 1 and 10000 are well inside chrono's calendar)
    (micros(first).unwrap_or(i64::MIN), micros(after).map_or(i64::MAX, |after| after - 1))
}

/// `_count`: default 20, capped at 1000 (however many digits); invalid or 0 gives the default (as the reference).
fn count(value: &str) -> usize {
    match value.parse::<usize>() {
        Ok(0) => DEFAULT_COUNT,
        Ok(count) => count.min(MAX_COUNT),
        Err(error) if *error.kind() == IntErrorKind::PosOverflow => MAX_COUNT,
        Err(_) => DEFAULT_COUNT,
    }
}

fn sort(value: &str) -> Vec<SortField> {
    value
        .split(',')
        .filter_map(|key| {
            let key = key.trim();
            let (descending, name) = match key.strip_prefix('-') {
                Some(name) => (true, name),
                None => (false, key),
            };
            let key = match name {
                "date" => SortKey::Date,
                "_lastUpdated" | "_last_updated" => SortKey::LastUpdated,
                "_id" => SortKey::Id,
                // unknown keys are ignored (the reference's behaviour)
                _ => return None,
            };
            Some(SortField { key, descending })
        })
        .collect()
}

/// A reference id: `123` or `<Type>/123`.
fn reference_id(name: &str, value: &str, resource_type: &str) -> Result<i64> {
    let bare = value.strip_prefix(resource_type).and_then(|rest| rest.strip_prefix('/')).unwrap_or(value);
    bare.trim()
        .parse()
        .map_err(|_| invalid(format!("{name}: `{value}` is not a {resource_type} id (`123` or `{resource_type}/123`)")))
}

fn id_list(name: &str, value: &str, resource_type: &str) -> Result<BTreeSet<i64>> {
    if value.is_empty() {
        return Err(invalid(format!("{name}: a {resource_type} id is required")));
    }
    value.split(',').map(|item| reference_id(name, item.trim(), resource_type)).collect()
}

fn single_id(name: &str, value: &str, resource_type: &str) -> Result<i64> {
    if value.contains(',') {
        return Err(invalid(format!("{name}: one {resource_type} id only")));
    }
    reference_id(name, value, resource_type)
}

fn codes(name: &str, value: &str) -> Result<Vec<CodeMatch>> {
    value
        .split(',')
        .map(|item| {
            let item = item.trim();
            let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
            let code = match item.split_once('|') {
                Some((system, code)) => CodeMatch { system: non_empty(system), code: non_empty(code) },
                None => CodeMatch { system: None, code: non_empty(item) },
            };
            if code.system.is_none() && code.code.is_none() {
                return Err(invalid(format!("{name}: `{item}` names no code (`system|code` or `code`)")));
            }
            Ok(code)
        })
        .collect()
}

/// A FHIR date search value: its prefix (default `eq`) and the range its precision covers (`upper` is `None`
/// for an instant).
fn time_condition(name: &str, value: &str, now: DateTime<Utc>) -> Result<TimeCondition> {
    let (prefix, text) = match value.get(..2) {
        Some(prefix @ ("eq" | "ne" | "lt" | "le" | "gt" | "ge" | "sa" | "eb" | "ap")) => (prefix, &value[2..]),
        _ => ("eq", value),
    };
    // a `+` of an offset arrives as a space when the client did not encode it
    let text = text.trim().replace(' ', "+");
    let (start, end) =
        fhir_time(&text).ok_or_else(|| invalid(format!("{name}: `{value}` is not a FHIR date ({DATE_FORMS})")))?;
    use Bound::{Excluded, Included, Unbounded};
    let condition = |lower, upper| TimeCondition { lower, upper, negated: false };
    Ok(match (prefix, end) {
        // a range [start, end)
        ("eq", Some(end)) => condition(Included(start), Excluded(end)),
        ("ne", Some(end)) => TimeCondition { negated: true, ..condition(Included(start), Excluded(end)) },
        ("lt" | "eb", Some(_)) => condition(Unbounded, Excluded(start)),
        ("le", Some(end)) => condition(Unbounded, Excluded(end)),
        ("gt" | "sa", Some(end)) => condition(Included(end), Unbounded),
        ("ge", Some(_)) => condition(Included(start), Unbounded),
        // an instant
        ("eq", None) => condition(Included(start), Included(start)),
        ("ne", None) => TimeCondition { negated: true, ..condition(Included(start), Included(start)) },
        ("lt" | "eb", None) => condition(Unbounded, Excluded(start)),
        ("le", None) => condition(Unbounded, Included(start)),
        ("gt" | "sa", None) => condition(Excluded(start), Unbounded),
        ("ge", None) => condition(Included(start), Unbounded),
        // `ap`: within 10 % of the distance from now (FHIR's suggestion), around the value's range
        (_, end) => {
            let margin = (now.timestamp_micros().saturating_sub(start)).saturating_abs() / 10;
            let end = end.unwrap_or(start);
            condition(Included(start.saturating_sub(margin)), Included(end.saturating_add(margin)))
        }
    })
}

/// `(start, end)` in microseconds: the range of a date or date-time to the minute (`end` exclusive), or an instant
/// (`end` = `None`) for a date-time to the second or finer.
fn fhir_time(text: &str) -> Option<(i64, Option<i64>)> {
    let micros = |time: NaiveDateTime| time.and_utc().timestamp_micros();
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let date_parts: Vec<&str> = date.split('-').collect();
    let year = i32::try_from(digits(date_parts.first()?, 4)?).ok().filter(|year| YEARS.contains(year))?;
    let Some(time) = time else {
        let (first, next) = match date_parts.len() {
            1 => {
                let first = NaiveDate::from_ymd_opt(year, 1, 1)?;
                (first, first.checked_add_months(Months::new(12))?)
            }
            2 => {
                let first = NaiveDate::from_ymd_opt(year, digits(date_parts[1], 2)?, 1)?;
                (first, first.checked_add_months(Months::new(1))?)
            }
            3 => {
                let first = NaiveDate::from_ymd_opt(year, digits(date_parts[1], 2)?, digits(date_parts[2], 2)?)?;
                (first, first.succ_opt()?)
            }
            _ => return None,
        };
        return Some((micros(first.and_time(NaiveTime::MIN)), Some(micros(next.and_time(NaiveTime::MIN)))));
    };
    let [_, month, day] = date_parts.as_slice() else {
        return None;
    };
    let date = NaiveDate::from_ymd_opt(year, digits(month, 2)?, digits(day, 2)?)?;
    let (clock, offset) = clock_and_offset(time)?;
    match clock.split(':').count() {
        2 => {
            let local = NaiveDateTime::new(date, NaiveTime::parse_from_str(clock, "%H:%M").ok()?);
            let start = local.checked_sub_signed(offset)?;
            Some((micros(start), Some(micros(start.checked_add_signed(TimeDelta::minutes(1))?))))
        }
        3 => {
            let local = NaiveDateTime::new(date, NaiveTime::parse_from_str(clock, "%H:%M:%S%.f").ok()?);
            Some((micros(local.checked_sub_signed(offset)?), None))
        }
        _ => None,
    }
}

/// A number of exactly `width` ASCII digits.
fn digits(text: &str, width: usize) -> Option<u32> {
    (text.len() == width && text.bytes().all(|byte| byte.is_ascii_digit())).then(|| text.parse().ok()).flatten()
}

/// The clock of a date-time and its offset from UTC: `Z`, `±hh:mm` (up to ±14:00), or none (UTC).
fn clock_and_offset(time: &str) -> Option<(&str, TimeDelta)> {
    if let Some(clock) = time.strip_suffix('Z').or_else(|| time.strip_suffix('z')) {
        return Some((clock, TimeDelta::zero()));
    }
    let Some(at) = time.rfind(['+', '-']) else {
        return Some((time, TimeDelta::zero()));
    };
    let (clock, zone) = time.split_at(at);
    let (hours, minutes) = zone.get(1..)?.split_once(':')?;
    let (hours, minutes) = (digits(hours, 2)?, digits(minutes, 2)?);
    let seconds = hours * 3600 + minutes * 60;
    if minutes > 59 || seconds > MAX_OFFSET_SECONDS {
        return None;
    }
    let offset = TimeDelta::seconds(i64::from(seconds));
    Some((clock, if zone.starts_with('-') { -offset } else { offset }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::ObservationFilters;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> Result<SearchRequest> {
        parse_search(&params(pairs), Utc::now())
    }

    fn at(text: &str) -> i64 {
        DateTime::parse_from_rfc3339(text).unwrap().timestamp_micros()
    }

    #[test]
    fn dates_cover_their_precision() {
        assert_eq!(fhir_time("2025-01-02"), Some((at("2025-01-02T00:00:00Z"), Some(at("2025-01-03T00:00:00Z")))));
        assert_eq!(fhir_time("2025-02"), Some((at("2025-02-01T00:00:00Z"), Some(at("2025-03-01T00:00:00Z")))));
        assert_eq!(fhir_time("2025"), Some((at("2025-01-01T00:00:00Z"), Some(at("2026-01-01T00:00:00Z")))));
        assert_eq!(
            fhir_time("2025-01-02T10:30+02:00"),
            Some((at("2025-01-02T08:30:00Z"), Some(at("2025-01-02T08:31:00Z"))))
        );
        assert_eq!(fhir_time("2025-01-02T10:30:15.5-08:00"), Some((at("2025-01-02T18:30:15.5Z"), None)));
        assert_eq!(fhir_time("2025-01-02T10:30:15"), Some((at("2025-01-02T10:30:15Z"), None)));
        for junk in
            ["", "25", "2025-1-2", "2025-01-02T", "2025-13-01", "2025-01-02T25:00", "tomorrow", "2025-01-02T10:00:00+2"]
        {
            assert_eq!(fhir_time(junk), None, "{junk}");
        }
    }

    #[test]
    fn prefixes_become_conditions() {
        let day = (at("2025-01-02T00:00:00Z"), at("2025-01-03T00:00:00Z"));
        let now = Utc::now();
        let check = |value: &str, lower: Bound<i64>, upper: Bound<i64>, negated: bool| {
            assert_eq!(time_condition("date", value, now).unwrap(), TimeCondition { lower, upper, negated }, "{value}");
        };
        use Bound::{Excluded, Included, Unbounded};
        check("2025-01-02", Included(day.0), Excluded(day.1), false);
        check("eq2025-01-02", Included(day.0), Excluded(day.1), false);
        check("ne2025-01-02", Included(day.0), Excluded(day.1), true);
        check("lt2025-01-02", Unbounded, Excluded(day.0), false);
        check("le2025-01-02", Unbounded, Excluded(day.1), false);
        check("gt2025-01-02", Included(day.1), Unbounded, false);
        check("ge2025-01-02", Included(day.0), Unbounded, false);
        check("sa2025-01-02", Included(day.1), Unbounded, false);
        check("eb2025-01-02", Unbounded, Excluded(day.0), false);
        let instant = at("2025-01-02T10:00:00Z");
        check("gt2025-01-02T10:00:00Z", Excluded(instant), Unbounded, false);
        check("le2025-01-02T10:00:00Z", Unbounded, Included(instant), false);
        check("2025-01-02T10:00:00Z", Included(instant), Included(instant), false);
        // an unencoded `+` arrives as a space
        check("ge2025-01-02T12:00:00 02:00", Included(instant), Unbounded, false);
        let approximately = time_condition("date", "ap2025-01-02", now).unwrap();
        assert!(matches!(approximately.lower, Included(lower) if lower < day.0));
        assert!(matches!(approximately.upper, Included(upper) if upper > day.1));
        assert!(matches!(time_condition("date", "xx2025", now), Err(QueryError::InvalidParameter(_))));
    }

    #[test]
    fn parameters_map_onto_the_request() {
        let request = parse(&[
            ("patient", "40001,Patient/40002"),
            ("subject", "Patient/40002"),
            ("patient._has:_group:member:_id", "30001"),
            ("patient.organization", "Organization/20001"),
            ("code", "https://w3id.org/openmhealth|omh:heart-rate:2.0,omh:step-count:2.0"),
            ("_last_updated", "ge2025-01-01"),
            ("_id", "7,x"),
            ("_count", "5000"),
            ("_page", "3"),
            ("_sort", "-date,bogus"),
            ("unknown", "ignored"),
        ])
        .unwrap();
        let filters = &request.filters;
        assert_eq!(filters.patients, Some(BTreeSet::from([40002])));
        assert_eq!(filters.study_id, Some(30001));
        assert_eq!(filters.organization_id, Some(20001));
        assert_eq!(filters.codes.len(), 1);
        assert_eq!(filters.codes[0][1], CodeMatch { system: None, code: Some("omh:step-count:2.0".into()) });
        assert_eq!(filters.last_updated.len(), 1);
        assert_eq!(filters.ids, Some(BTreeSet::from([7])));
        assert!(!filters.match_nothing);
        assert_eq!((request.count, request.page), (MAX_COUNT, 3));
        assert_eq!(request.sort.signature(), "-date,-_id");

        assert_eq!(parse(&[("_count", "0")]).unwrap().count, DEFAULT_COUNT);
        assert_eq!(parse(&[("_count", "abc")]).unwrap().count, DEFAULT_COUNT);
        assert!(parse(&[("_summary", "count")]).unwrap().summary_count);
        assert!(parse(&[("status", "final")]).unwrap().filters == ObservationFilters::default());
        assert!(parse(&[("status", "preliminary")]).unwrap().filters.match_nothing);
        assert!(parse(&[("_source", JHE_SOURCE_URI)]).unwrap().filters == ObservationFilters::default());
        assert!(parse(&[("_source", "https://jupyterhealth.org/fhir/fhir-source/1")]).unwrap().filters.match_nothing);
    }

    #[test]
    fn bad_values_are_refused() {
        for pairs in [
            [("patient", "Practitioner/1")],
            [("patient", "")],
            [("patient._has:Group:member:_id", "1,2")],
            [("patient.organization", "x")],
            [("code", "|")],
            [("date", "yesterday")],
            [("_lastUpdated", "ge2025-02-30")],
            [("_page", "0")],
            [("_page", "two")],
            [("_page", "-1")],
            [("_page", "99999999999999999999")],
            [("_page", "5001")],
            [("code:text", "heart")],
            [("_cursor", "not-a-cursor")],
            [("date", "+262142-12-31T23:59Z")],
            [("date", "ge-262143-01-01T00:00Z")],
            [("_lastUpdated", "gt+262142-12-31")],
            [("date", "\u{fffd}\u{fffd}2025")],
        ] {
            assert!(
                matches!(parse(&pairs), Err(QueryError::InvalidParameter(_) | QueryError::InvalidCursor)),
                "{pairs:?}"
            );
        }
    }

    fn hour_of(year: i32, month: u32, day: u32, hour: u32) -> i64 {
        NaiveDate::from_ymd_opt(year, month, day).unwrap().and_hms_opt(hour, 0, 0).unwrap().and_utc().timestamp_micros()
    }

    /// A cursor as the server encodes one (base64url of `{"s": order, "k": keys}`).
    fn cursor_text(order: &str, keys: &[i64]) -> String {
        use base64::Engine as _;
        let json = serde_json::json!({ "s": order, "k": keys }).to_string();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn refusal(pairs: &[(&str, &str)]) -> String {
        match parse(pairs) {
            Err(QueryError::InvalidParameter(message)) => message,
            other => panic!("{pairs:?}: {other:?}"),
        }
    }

    #[test]
    fn dates_outside_the_four_digit_years_are_refused() {
        // chrono's calendar reaches year 262142: its last minute plus one overflowed
        for junk in [
            "262142-12-31T23:59Z",
            "+262142-12-31T23:59Z",
            "-262143-01-01T00:00Z",
            "262142-12-31",
            "10000-01-01",
            "0000-06-01",
            "0000-01-01T00:00:00Z",
            "2025-01-02T10:00+14:01",
            "2025-01-02T10:00-15:00",
            "2025-01-02T10:00+02:60",
            "2025-1-02T10:00Z",
        ] {
            assert_eq!(fhir_time(junk), None, "{junk}");
        }
        // the extremes that remain are ordinary instants
        assert_eq!(fhir_time("9999-12-31T23:59-14:00").and_then(|(_, end)| end), Some(hour_of(10000, 1, 1, 14)));
        assert_eq!(fhir_time("0001-01-01T00:00:00+14:00"), Some((hour_of(0, 12, 31, 10), None)));
        assert_eq!(fhir_time("9999"), Some((at("9999-01-01T00:00:00Z"), Some(hour_of(10000, 1, 1, 0)))));
        let message = refusal(&[("date", "+262142-12-31T23:59Z")]);
        assert!(message.starts_with("date: ") && message.contains("a year from 0001 to 9999"), "{message}");
        let message = refusal(&[("_lastUpdated", "ap10000")]);
        assert!(message.starts_with("_lastUpdated: "), "{message}");
    }

    #[test]
    fn pages_stop_at_the_depth_limit() {
        assert_eq!(parse(&[("_page", "5000")]).unwrap().page, 5000, "5000 pages of the default 20");
        assert_eq!(parse(&[("_count", "1000"), ("_page", "100")]).unwrap().page, 100);
        for pairs in [
            vec![("_page", "5001")],
            vec![("_count", "1000"), ("_page", "101")],
            vec![("_page", "1000000000")],
            vec![("_page", "99999999999999999999")],
        ] {
            let message = refusal(&pairs);
            assert!(message.contains("past row 100000") && message.contains("`next` link"), "{message}");
        }
        for junk in ["0", "-1", "two", "", "1.5", "-99999999999999999999"] {
            let message = refusal(&[("_page", junk)]);
            assert!(message.contains("is not a page number (1 to 4294967295)"), "{junk}: {message}");
        }
        // with a cursor the number only labels the page
        let order = SortOrder::default();
        let text = cursor_text(&order.signature(), &[at("2025-01-02T00:00:00Z"), 7]);
        let request = parse(&[("_page", "4000000000"), ("_cursor", &text)]).unwrap();
        assert_eq!(request.page, 4_000_000_000);
        assert!(within_page_depth(1, MAX_PAGE_DEPTH) && !within_page_depth(u64::MAX, 2));
    }

    #[test]
    fn counts_of_any_size_are_capped() {
        assert_eq!(parse(&[("_count", "99999999999999999999")]).unwrap().count, MAX_COUNT);
        assert_eq!(parse(&[("_count", "-5")]).unwrap().count, DEFAULT_COUNT);
        assert_eq!(parse(&[("_count", "-99999999999999999999")]).unwrap().count, DEFAULT_COUNT);
    }

    #[test]
    fn cursors_with_times_outside_the_calendar_are_refused() {
        let order = SortOrder::default();
        for keys in [[i64::MAX, 1], [i64::MIN, 1], [hour_of(10000, 1, 1, 0), 1], [hour_of(0, 12, 31, 23), 1]] {
            let text = cursor_text(&order.signature(), &keys);
            assert!(matches!(parse(&[("_cursor", &text)]), Err(QueryError::InvalidCursor)), "{text}");
        }
        let text = cursor_text("_id", &[i64::MIN]);
        assert!(parse(&[("_sort", "_id"), ("_cursor", &text)]).is_ok(), "ids may be any number");
    }
}
