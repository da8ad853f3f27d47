//! A FHIR search's parameters (jhe-compat §6.2–§6.4) parsed into catalog filters, without touching the database.
//!
//! Keys are matched separator-insensitively after a leading `_` (`_lastUpdated` = `_last_updated`,
//! `patient._has:Group:member:_id` = `patient._has:_group:member:_id`), as the reference's camel-case middleware
//! and its `_norm` make them. Values are taken as sent. Repeated parameters AND together; commas inside one value
//! OR together where FHIR allows it (`_id`, tokens, strings).
//!
//! Unknown parameters are ignored (FHIR's lenient handling, and the reference's), unless the request says
//! `Prefer: handling=strict`; a known parameter with a value it cannot use is a 400. Dates name years 0001 to 9999
//! and offsets up to ±14:00; a page may end at most [`MAX_PAGE_DEPTH`] rows deep (`_page` × `_count`).

use crate::error::ApiError;
use chrono::{DateTime, Days, Months, NaiveDate, NaiveTime, TimeDelta, Utc};
use jhe_catalog::{
    Comparator, DateBound, FhirFilter, FhirResourceKind, SortField, SortKey, TextField, TextMatch, TokenMatch,
};
use jhe_query::fhir_params::{MAX_PAGE_DEPTH, within_page_depth};
use jhe_schemas::fhir::JHE_SOURCE_URI;
use std::num::IntErrorKind;

pub(super) const DEFAULT_COUNT: u32 = 20;
pub(super) const MAX_COUNT: u32 = 1000;

/// Which page a search asks for (`_page`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PageWanted {
    Number(u32),
    /// `_page=last`, which Django REST framework's paginator also accepts.
    Last,
}

/// A parsed search: catalog filters plus what the API itself handles (targets to authorize, paging, summary).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct SearchRequest {
    /// Filters that apply to every caller.
    pub(super) filters: Vec<FhirFilter>,
    /// `patient=`, `patient._has:Group:member:_id=`, `patient.organization=`: checked against the caller first
    /// (403 when not theirs), and ignored for patient users, who only ever see their own records.
    pub(super) patients: Vec<i64>,
    pub(super) studies: Vec<i64>,
    pub(super) organizations: Vec<i64>,
    pub(super) sort: Vec<SortKey>,
    pub(super) count: u32,
    pub(super) page: PageWanted,
    pub(super) summary_count: bool,
}

fn bad(message: String) -> ApiError {
    ApiError::bad_request(message)
}

/// `_lastUpdated` → `_lastupdated`, `patient._has:_group:member:_id` → `patient.has:group:member:id`.
pub(super) fn normalize_key(key: &str) -> String {
    let (lead, rest) = match key.strip_prefix('_') {
        Some(rest) => ("_", rest),
        None => ("", key),
    };
    let mut out = String::with_capacity(key.len());
    out.push_str(lead);
    out.extend(rest.chars().filter(|c| *c != '_' && *c != '-').map(|c| c.to_ascii_lowercase()));
    out
}

/// Parses the search parameters of a `kind` search (`None`: a type jhe knows only through the imported-record
/// store, which holds nothing, so the search is checked and then matches nothing).
pub(super) fn parse(
    kind: Option<FhirResourceKind>,
    params: &[(String, String)],
    strict: bool,
) -> Result<SearchRequest, ApiError> {
    let mut request = SearchRequest {
        filters: Vec::new(),
        patients: Vec::new(),
        studies: Vec::new(),
        organizations: Vec::new(),
        sort: Vec::new(),
        count: DEFAULT_COUNT,
        page: PageWanted::Number(1),
        summary_count: false,
    };
    let mut unknown = Vec::new();
    let mut page_text = None;
    for (key, value) in params {
        let normalized = normalize_key(key);
        let value = value.as_str();
        // the chained (location) parameters carry colons of their own
        match normalized.as_str() {
            "patient.has:group:member:id" => {
                request.studies.push(reference_id(key, value, "Group")?);
                continue;
            }
            "patient.organization" => {
                request.organizations.push(reference_id(key, value, "Organization")?);
                continue;
            }
            "patient.identifier" => {
                push_nonempty(&mut request.filters, patient_identifier(value));
                continue;
            }
            "_source:below" => {
                // imported records (below the FhirSource base) are kept by the reference's generic store, which jhe
                // does not have; any other prefix matches nothing there either
                request.filters.push(FhirFilter::Nothing);
                continue;
            }
            _ => {}
        }
        let (name, modifier) = match normalized.split_once(':') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (normalized.as_str(), None),
        };
        let no_modifier = || match modifier {
            None => Ok(()),
            Some(modifier) => Err(bad(format!("The modifier :{modifier} is not supported on {key}."))),
        };
        match name {
            "_id" => {
                no_modifier()?;
                // an id of the wrong shape matches nothing, as in the reference
                let ids: Vec<i64> = value.split(',').filter_map(|piece| piece.trim().parse().ok()).collect();
                request.filters.push(if ids.is_empty() { FhirFilter::Nothing } else { FhirFilter::Ids(ids) });
            }
            "_lastupdated" => {
                no_modifier()?;
                if !value.is_empty() {
                    request.filters.push(FhirFilter::LastUpdated(instant_bound(key, value)?));
                }
            }
            "_source" => {
                no_modifier()?;
                if value != JHE_SOURCE_URI {
                    request.filters.push(FhirFilter::Nothing);
                }
            }
            "_count" => {
                // invalid or 0 falls back to the default and large values (of any length) are capped, silently (§6.6)
                request.count = match value.trim().parse::<u32>() {
                    Ok(count) if count >= 1 => count.min(MAX_COUNT),
                    Err(error) if *error.kind() == IntErrorKind::PosOverflow => MAX_COUNT,
                    _ => DEFAULT_COUNT,
                };
            }
            "_page" => page_text = Some((key.as_str(), value)),
            "_sort" => request.sort = sort_keys(kind, value, strict)?,
            "_summary" => {
                request.summary_count = match value.trim().to_ascii_lowercase().as_str() {
                    "count" => true,
                    // the mapped resources are small: every summary form is the whole resource
                    "true" | "false" | "text" | "data" | "" => false,
                    _ => return Err(bad(format!("Invalid _summary value: '{value}'."))),
                }
            }
            "_format" => {
                let format = value.to_ascii_lowercase();
                if format.contains("xml") || format.contains("turtle") {
                    return Err(bad(format!("Unsupported _format '{value}': this server speaks JSON only.")));
                }
            }
            // accepted and ignored: presentation hints that do not change which resources match
            "_pretty" | "_elements" | "_total" => {}
            "patient" => {
                if modifier.is_some_and(|m| m != "patient") {
                    no_modifier()?;
                }
                request.patients.push(reference_id(key, value, "Patient")?);
            }
            // for a type of the imported-record store, its own parameters are not checked: nothing is stored there
            _ => {
                if let Some(kind) = kind
                    && !resource_param(kind, &mut request.filters, key, name, modifier, value)?
                {
                    unknown.push(key.clone());
                }
            }
        }
    }
    if let Some((key, value)) = page_text {
        request.page = page_wanted(key, value, request.count)?;
    }
    if kind.is_none() {
        request.filters.push(FhirFilter::Nothing);
    }
    if strict && !unknown.is_empty() {
        return Err(bad(format!("Unknown search parameter(s): {}.", unknown.join(", "))));
    }
    Ok(request)
}

/// The parse a search handler makes, for the fuzz target (`api/fuzz`): `None` for a refusal, else the page size
/// and the page number (`None`: `last`).
#[doc(hidden)]
pub fn parse_for_fuzzing(
    kind: Option<FhirResourceKind>,
    params: &[(String, String)],
    strict: bool,
) -> Option<(u32, Option<u32>)> {
    let request = parse(kind, params, strict).ok()?;
    let page = match request.page {
        PageWanted::Number(number) => Some(number),
        PageWanted::Last => None,
    };
    Some((request.count, page))
}

pub(super) fn invalid_page() -> ApiError {
    ApiError::new(jhe_schemas::ErrorKind::NotFound, "Invalid page.")
}

/// `_page`: `last`, or a whole number from 1 (anything else is Django REST framework's 404 `Invalid page.`) whose
/// page ends within [`MAX_PAGE_DEPTH`] rows.
fn page_wanted(key: &str, value: &str, count: u32) -> Result<PageWanted, ApiError> {
    let text = value.trim();
    if text == "last" {
        return Ok(PageWanted::Last);
    }
    let page = match text.parse::<u32>() {
        Ok(page) if page >= 1 => page,
        // a number too large for a page number is deeper than any page may go
        Err(error) if *error.kind() == IntErrorKind::PosOverflow => u32::MAX,
        _ => return Err(invalid_page()),
    };
    check_page_depth(key, value, page, count)?;
    Ok(PageWanted::Number(page))
}

/// A 400 when page `page` of `count` rows ends past [`MAX_PAGE_DEPTH`] rows: skipping the rows before it would sort
/// every one of them.
pub(super) fn check_page_depth(key: &str, value: &str, page: u32, count: u32) -> Result<(), ApiError> {
    if within_page_depth(u64::from(page), u64::from(count)) {
        return Ok(());
    }
    Err(bad(format!(
        "Invalid {key} value: '{value}': page {page} of {count} would end past row {MAX_PAGE_DEPTH}, the deepest a \
         page may reach; narrow the search, or reverse its _sort to read from the other end."
    )))
}

fn push_nonempty(filters: &mut Vec<FhirFilter>, filter: Option<FhirFilter>) {
    if let Some(filter) = filter {
        filters.push(filter);
    }
}

/// A resource-specific parameter (§6.4); `false` when `name` is not one of `kind`'s.
fn resource_param(
    kind: FhirResourceKind,
    filters: &mut Vec<FhirFilter>,
    key: &str,
    name: &str,
    modifier: Option<&str>,
    value: &str,
) -> Result<bool, ApiError> {
    use FhirResourceKind as K;
    let text_field = match (kind, name) {
        (K::Patient | K::Practitioner | K::Organization, "name") => Some(TextField::Name),
        (K::Patient, "family") => Some(TextField::Family),
        (K::Patient, "given") => Some(TextField::Given),
        _ => None,
    };
    if let Some(field) = text_field {
        let matches: Vec<TextMatch> = value
            .split(',')
            .map(str::trim)
            .filter(|piece| !piece.is_empty())
            .map(|piece| match modifier {
                None => Ok(TextMatch::StartsWith(piece.to_owned())),
                Some("exact") => Ok(TextMatch::Exact(piece.to_owned())),
                Some("contains") => Ok(TextMatch::Contains(piece.to_owned())),
                Some(other) => Err(bad(format!("The modifier :{other} is not supported on {key}."))),
            })
            .collect::<Result<_, _>>()?;
        if !matches.is_empty() {
            filters.push(FhirFilter::Text { field, any_of: matches });
        }
        return Ok(true);
    }
    let no_modifier = || match modifier {
        None => Ok(()),
        Some(modifier) => Err(bad(format!("The modifier :{modifier} is not supported on {key}."))),
    };
    match (kind, name) {
        (K::Patient, "birthdate") => {
            no_modifier()?;
            if !value.is_empty() {
                filters.push(FhirFilter::BirthDate(date_bound(key, value)?));
            }
        }
        (K::Practitioner, "identifier") => {
            no_modifier()?;
            // a token on the practitioner's own identifier: the system part is not stored, so only the value counts
            let values: Vec<String> = value
                .split(',')
                .map(|piece| piece.split_once('|').map_or(piece, |(_, code)| code).trim().to_owned())
                .filter(|code| !code.is_empty())
                .collect();
            if !values.is_empty() {
                filters.push(FhirFilter::PractitionerIdentifier(values));
            }
        }
        (_, "identifier") => {
            no_modifier()?;
            push_nonempty(filters, patient_identifier(value));
        }
        (K::Device, "type") => {
            no_modifier()?;
            // every data source renders `type` as the constant `data-source`: a search for it is a no-op, any
            // other code matches nothing
            let wanted = value.split(',').map(|piece| piece.split_once('|').map_or(piece, |(_, code)| code).trim());
            if !value.is_empty() && !wanted.clone().any(|code| code == "data-source") {
                filters.push(FhirFilter::Nothing);
            }
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// `identifier=[system|]value` over patients' external identifiers (comma = OR). `system|` matches any value in
/// that system; a bare value any system.
fn patient_identifier(value: &str) -> Option<FhirFilter> {
    let tokens: Vec<TokenMatch> = value
        .split(',')
        .map(str::trim)
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let nonempty = |text: &str| (!text.is_empty()).then(|| text.to_owned());
            match piece.split_once('|') {
                Some((system, code)) => TokenMatch { system: nonempty(system), value: nonempty(code) },
                None => TokenMatch { system: None, value: Some(piece.to_owned()) },
            }
        })
        .collect();
    (!tokens.is_empty()).then_some(FhirFilter::PatientIdentifier(tokens))
}

/// An id given bare (`40001`), as a reference (`Patient/40001`) or as an absolute reference.
fn reference_id(key: &str, value: &str, type_name: &str) -> Result<i64, ApiError> {
    let text = value.trim();
    let id = match text.rsplit_once('/') {
        Some((prefix, id)) if prefix == type_name || prefix.ends_with(&format!("/{type_name}")) => id,
        Some(_) => "",
        None => text,
    };
    let article = if type_name.starts_with(['A', 'E', 'I', 'O', 'U']) { "an" } else { "a" };
    id.parse::<i64>().map_err(|_| bad(format!("Invalid {key} value: '{value}' (expected {article} {type_name} id).")))
}

fn sort_keys(kind: Option<FhirResourceKind>, value: &str, strict: bool) -> Result<Vec<SortKey>, ApiError> {
    use FhirResourceKind as K;
    let mut keys = Vec::new();
    for piece in value.split(',').map(str::trim).filter(|piece| !piece.is_empty()) {
        let (descending, name) = match piece.strip_prefix('-') {
            Some(name) => (true, name),
            None => (false, piece),
        };
        let field = match (kind, normalize_key(name).trim_start_matches('_')) {
            (_, "lastupdated") => Some(SortField::LastUpdated),
            (_, "id") => Some(SortField::Id),
            (Some(_), "name") => Some(SortField::Name),
            (Some(K::Patient | K::Practitioner), "family") => Some(SortField::Family),
            (Some(K::Patient | K::Practitioner), "given") => Some(SortField::Given),
            (Some(K::Patient), "birthdate") => Some(SortField::BirthDate),
            _ => None,
        };
        match field {
            Some(field) => keys.push(SortKey { field, descending }),
            // FHIR lets a server ignore sort keys it does not support (the reference does)
            None if strict => return Err(bad(format!("Unsupported _sort key: '{piece}'."))),
            None => {}
        }
    }
    Ok(keys)
}

/// A date prefix (`ge2025-01-01`); `eq` when there is none.
fn comparator(key: &str, raw: &str) -> Result<(Comparator, String), ApiError> {
    let prefix = raw.get(..2).filter(|p| p.chars().all(|c| c.is_ascii_lowercase()));
    let comparator = match prefix {
        None => return Ok((Comparator::Eq, raw.to_owned())),
        Some("eq") => Comparator::Eq,
        Some("ne") => Comparator::Ne,
        Some("gt" | "sa") => Comparator::Gt,
        Some("lt" | "eb") => Comparator::Lt,
        Some("ge") => Comparator::Ge,
        Some("le") => Comparator::Le,
        // `ap` (approximately) is a FHIR prefix without a precise meaning; jhe does not guess one
        Some("ap") => return Err(bad(format!("Invalid {key} value: '{raw}' (the prefix 'ap' is not supported)."))),
        Some(_) => return Err(bad(format!("Invalid {key} value: '{raw}'."))),
    };
    Ok((comparator, raw[2..].to_owned()))
}

/// The accepted forms of `_lastUpdated` and `birthdate`, for error messages.
const INSTANT_FORMS: &str = "[prefix]YYYY[-MM[-DD[Thh:mm[:ss[.fff]][Z|±hh:mm]]]] with a year from 0001 to 9999 and an \
                             offset up to ±14:00";
const DATE_FORMS: &str = "[prefix]YYYY[-MM[-DD]] with a year from 0001 to 9999";

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` (years 0001 to 9999, FHIR's four digits): the first day and the day after the
/// last.
fn date_range(text: &str) -> Option<(NaiveDate, NaiveDate)> {
    let parts: Vec<&str> = text.split('-').collect();
    let number = |part: &str, width: usize| {
        (part.len() == width && part.bytes().all(|b| b.is_ascii_digit())).then(|| part.parse::<u32>().ok()).flatten()
    };
    let year = i32::try_from(number(parts.first()?, 4)?).ok().filter(|year| *year >= 1)?;
    match parts.as_slice() {
        [_] => {
            let start = NaiveDate::from_ymd_opt(year, 1, 1)?;
            Some((start, start.checked_add_months(Months::new(12))?))
        }
        [_, month] => {
            let start = NaiveDate::from_ymd_opt(year, number(month, 2)?, 1)?;
            Some((start, start.checked_add_months(Months::new(1))?))
        }
        [_, month, day] => {
            let start = NaiveDate::from_ymd_opt(year, number(month, 2)?, number(day, 2)?)?;
            Some((start, start.checked_add_days(Days::new(1))?))
        }
        _ => None,
    }
}

/// `hh:mm[:ss[.fff…]]` and an offset (`Z`, `±hh:mm`; none = UTC): the instant range at the precision given.
fn instant_range(date: NaiveDate, time_and_zone: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let (time, offset_seconds) = if let Some(time) = time_and_zone.strip_suffix('Z') {
        (time, 0)
    } else if let Some(at) = time_and_zone.rfind(['+', '-', ' ']) {
        // a `+` that arrived unencoded in a query string reads as a space
        let (time, zone) = time_and_zone.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (hours, minutes) = zone[1..].split_once(':')?;
        let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
        if hours.unsigned_abs() > 14 || minutes.unsigned_abs() > 59 || zone.len() != 6 {
            return None;
        }
        (time, sign * (hours * 3600 + minutes * 60))
    } else {
        (time_and_zone, 0)
    };
    let (clock, fraction) = match time.split_once('.') {
        Some((clock, fraction)) => (clock, Some(fraction)),
        None => (time, None),
    };
    let fields: Vec<&str> = clock.split(':').collect();
    if fields.iter().any(|field| field.len() != 2 || !field.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let field = |index: usize| fields.get(index).map_or(Some(0), |text| text.parse::<u32>().ok());
    let (hour, minute, second) = (field(0)?, field(1)?, field(2)?);
    let (nanos, precision) = match (fields.len(), fraction) {
        (2, None) => (0, TimeDelta::minutes(1)),
        (3, None) => (0, TimeDelta::seconds(1)),
        (3, Some(digits)) if (1..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) => {
            let nanos: u32 = format!("{digits:0<9}").parse().ok()?;
            let exponent = 9 - u32::try_from(digits.len()).ok()?;
            (nanos, TimeDelta::nanoseconds(10_i64.pow(exponent)))
        }
        _ => return None,
    };
    let local = date.and_time(NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?);
    let start = local.checked_sub_signed(TimeDelta::seconds(i64::from(offset_seconds)))?.and_utc();
    Some((start, start.checked_add_signed(precision)?))
}

/// `_lastUpdated`: a date (that whole UTC day, month or year) or a date-time (the instant at its precision).
fn instant_bound(key: &str, raw: &str) -> Result<DateBound<DateTime<Utc>>, ApiError> {
    let invalid = || bad(format!("Invalid {key} value: '{raw}'. Expected {INSTANT_FORMS}."));
    let (comparator, value) = comparator(key, raw.trim())?;
    let (start, end) = match value.split_once('T') {
        Some((date, time)) => {
            let (day, _) = date_range(date).filter(|_| date.len() == 10).ok_or_else(invalid)?;
            instant_range(day, time).ok_or_else(invalid)?
        }
        None => {
            let (first, after) = date_range(&value).ok_or_else(invalid)?;
            (first.and_time(NaiveTime::MIN).and_utc(), after.and_time(NaiveTime::MIN).and_utc())
        }
    };
    Ok(DateBound { comparator, start, end })
}

/// Patient `birthdate`: compared at day precision; a date-time counts as its date, as in the reference.
fn date_bound(key: &str, raw: &str) -> Result<DateBound<NaiveDate>, ApiError> {
    let (comparator, value) = comparator(key, raw.trim())?;
    let date = value.split_once('T').map_or(value.as_str(), |(date, _)| date);
    let (start, end) =
        date_range(date).ok_or_else(|| bad(format!("Invalid {key} value: '{raw}'. Expected {DATE_FORMS}.")))?;
    Ok(DateBound { comparator, start, end })
}

#[cfg(test)]
#[path = "params_tests.rs"]
mod tests;
