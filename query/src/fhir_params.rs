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
//! | `_page` | 1-based page number (by offset) |
//! | `_cursor` | where the page starts, from a `next` link |
//! | `_summary=count` | only the total |
//!
//! Dates: a date or partial date (`2025`, `2025-01`, `2025-01-02`) or a date-time to the minute stands for its
//! whole (UTC) range, as FHIR says; a date-time to the second or finer is an instant, compared exactly (the
//! reference's behaviour). Time zones default to UTC. Unknown parameters are ignored, as FHIR servers do by
//! default; a known parameter with a value that cannot be understood is a 400.

use std::collections::BTreeSet;
use std::ops::Bound;

use chrono::{DateTime, Datelike, Months, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use jhe_schemas::fhir::JHE_SOURCE_URI;

use crate::error::{QueryError, Result};
use crate::search::{
    CodeMatch, Cursor, DEFAULT_COUNT, MAX_COUNT, SearchRequest, SortField, SortKey, SortOrder, TimeCondition,
};

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
            "_page" => {
                request.page = value
                    .parse::<u32>()
                    .ok()
                    .filter(|page| *page >= 1)
                    .ok_or_else(|| invalid(format!("_page: `{value}` is not a page number (1, 2, …)")))?;
            }
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
        request.cursor = Some(Cursor::decode(text, &request.sort)?);
    }
    Ok(request)
}

/// `_count`: default 20, capped at 1000; invalid or 0 gives the default (as the reference).
fn count(value: &str) -> usize {
    match value.parse::<usize>() {
        Ok(0) | Err(_) => DEFAULT_COUNT,
        Ok(count) => count.min(MAX_COUNT),
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
    let (start, end) = fhir_time(&text).ok_or_else(|| {
        invalid(format!(
            "{name}: `{value}` is not a FHIR date (`[prefix]YYYY[-MM[-DD[Thh:mm[:ss[.f]][Z|±hh:mm]]]]`, prefixes eq, ne, lt, le, gt, ge, sa, eb, ap)"
        ))
    })?;
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
    let micros = |time: DateTime<Utc>| time.timestamp_micros();
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let date_parts: Vec<&str> = date.split('-').collect();
    let number = |text: &str, digits: usize| -> Option<u32> {
        (text.len() == digits && text.bytes().all(|b| b.is_ascii_digit())).then(|| text.parse().ok()).flatten()
    };
    let Some(time) = time else {
        let year = i32::try_from(number(date_parts.first()?, 4)?).ok()?;
        let (first, next) = match date_parts.len() {
            1 => {
                let first = NaiveDate::from_ymd_opt(year, 1, 1)?;
                (first, first.checked_add_months(Months::new(12))?)
            }
            2 => {
                let first = NaiveDate::from_ymd_opt(year, number(date_parts[1], 2)?, 1)?;
                (first, first.checked_add_months(Months::new(1))?)
            }
            3 => {
                let first = NaiveDate::from_ymd_opt(year, number(date_parts[1], 2)?, number(date_parts[2], 2)?)?;
                (first, first.succ_opt()?)
            }
            _ => return None,
        };
        let start = Utc.from_utc_datetime(&first.and_time(NaiveTime::MIN));
        let end = Utc.from_utc_datetime(&next.and_time(NaiveTime::MIN));
        return Some((micros(start), Some(micros(end))));
    };
    if date_parts.len() != 3 {
        return None;
    }
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    if date.year() < 1 {
        return None;
    }
    // split off the zone: `Z`, `±hh:mm`, or none (UTC)
    let (clock, offset_seconds) = if let Some(clock) = time.strip_suffix('Z').or_else(|| time.strip_suffix('z')) {
        (clock, 0)
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (clock, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = zone[1..].split_once(':')?;
        let seconds = i32::try_from(number(hours, 2)? * 3600 + number(minutes, 2)? * 60).ok()?;
        (clock, sign * seconds)
    } else {
        (time, 0)
    };
    let to_utc = |naive: NaiveDateTime| naive - chrono::Duration::seconds(i64::from(offset_seconds));
    match clock.split(':').count() {
        2 => {
            let naive = NaiveDateTime::new(date, NaiveTime::parse_from_str(clock, "%H:%M").ok()?);
            let start = Utc.from_utc_datetime(&to_utc(naive));
            Some((micros(start), Some(micros(start + chrono::Duration::minutes(1)))))
        }
        3 => {
            let naive = NaiveDateTime::new(date, NaiveTime::parse_from_str(clock, "%H:%M:%S%.f").ok()?);
            Some((micros(Utc.from_utc_datetime(&to_utc(naive))), None))
        }
        _ => None,
    }
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
            [("code:text", "heart")],
            [("_cursor", "not-a-cursor")],
        ] {
            assert!(
                matches!(parse(&pairs), Err(QueryError::InvalidParameter(_) | QueryError::InvalidCursor)),
                "{pairs:?}"
            );
        }
    }
}
