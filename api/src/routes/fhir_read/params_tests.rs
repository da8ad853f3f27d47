use super::*;
use chrono::TimeZone;
use jhe_schemas::fhir::FHIR_SOURCE_URI_PREFIX;

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn parse_ok(kind: FhirResourceKind, list: &[(&str, &str)]) -> SearchRequest {
    parse(Some(kind), &pairs(list), false).unwrap_or_else(|e| panic!("{list:?}: {e:?}"))
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

#[test]
fn keys_match_whatever_their_separators() {
    assert_eq!(normalize_key("_lastUpdated"), "_lastupdated");
    assert_eq!(normalize_key("_last_updated"), "_lastupdated");
    assert_eq!(normalize_key("patient._has:Group:member:_id"), "patient.has:group:member:id");
    assert_eq!(normalize_key("patient._has:_group:member:_id"), "patient.has:group:member:id");
    let request = parse_ok(FhirResourceKind::Patient, &[("patient._has:_group:member:_id", "30001")]);
    assert_eq!(request.studies, vec![30001]);
    let request = parse_ok(FhirResourceKind::Patient, &[("patient._has:Group:member:_id", "Group/30002")]);
    assert_eq!(request.studies, vec![30002]);
}

#[test]
fn location_parameters_are_targets() {
    let request = parse_ok(
        FhirResourceKind::Group,
        &[("patient", "Patient/40001"), ("patient.organization", "20003"), ("patient", "40002")],
    );
    assert_eq!(request.patients, vec![40001, 40002]);
    assert_eq!(request.organizations, vec![20003]);
    assert!(request.filters.is_empty());
    for bad_value in ["abc", "Group/40001", "40001x", ""] {
        let error = parse(Some(FhirResourceKind::Patient), &pairs(&[("patient", bad_value)]), false).unwrap_err();
        assert!(format!("{error:?}").contains("(expected a Patient id)"), "{bad_value}: {error:?}");
    }
}

#[test]
fn paging_follows_the_reference() {
    let request = parse_ok(FhirResourceKind::Organization, &[]);
    assert_eq!((request.count, request.page, request.summary_count), (20, PageWanted::Number(1), false));
    assert_eq!(parse_ok(FhirResourceKind::Organization, &[("_count", "5000")]).count, 1000);
    assert_eq!(parse_ok(FhirResourceKind::Organization, &[("_count", "0")]).count, 20);
    assert_eq!(parse_ok(FhirResourceKind::Organization, &[("_count", "x")]).count, 20);
    assert_eq!(parse_ok(FhirResourceKind::Organization, &[("_page", "3")]).page, PageWanted::Number(3));
    assert_eq!(parse_ok(FhirResourceKind::Organization, &[("_page", "last")]).page, PageWanted::Last);
    for page in ["0", "-1", "two", "-99999999999999999999"] {
        let error = parse(Some(FhirResourceKind::Group), &pairs(&[("_page", page)]), false).unwrap_err();
        assert!(format!("{error:?}").contains("Invalid page."), "{page}: {error:?}");
    }
    assert!(parse_ok(FhirResourceKind::Device, &[("_summary", "count")]).summary_count);
    assert!(parse(Some(FhirResourceKind::Device), &pairs(&[("_summary", "bogus")]), false).is_err());
}

#[test]
fn ids_of_the_wrong_shape_match_nothing() {
    assert_eq!(
        parse_ok(FhirResourceKind::Patient, &[("_id", "40001,x,40002")]).filters,
        vec![FhirFilter::Ids(vec![40001, 40002])]
    );
    assert_eq!(
        parse_ok(FhirResourceKind::Patient, &[("_id", "0b5d6b55-07a5-4e53-9a8e-2c5b4c1e7b14")]).filters,
        vec![FhirFilter::Nothing]
    );
}

#[test]
fn sources_other_than_jhe_match_nothing() {
    assert!(parse_ok(FhirResourceKind::Patient, &[("_source", JHE_SOURCE_URI)]).filters.is_empty());
    let imported = format!("{FHIR_SOURCE_URI_PREFIX}/90001");
    assert_eq!(parse_ok(FhirResourceKind::Patient, &[("_source", &imported)]).filters, vec![FhirFilter::Nothing]);
    let below = format!("{FHIR_SOURCE_URI_PREFIX}/");
    assert_eq!(parse_ok(FhirResourceKind::Patient, &[("_source:below", &below)]).filters, vec![FhirFilter::Nothing]);
}

#[test]
fn strings_tokens_and_constants() {
    let request = parse_ok(
        FhirResourceKind::Patient,
        &[("name", "pe,pa"), ("family:exact", "Pearson"), ("given:contains", "et")],
    );
    assert_eq!(
        request.filters,
        vec![
            FhirFilter::Text {
                field: TextField::Name,
                any_of: vec![TextMatch::StartsWith("pe".into()), TextMatch::StartsWith("pa".into())]
            },
            FhirFilter::Text { field: TextField::Family, any_of: vec![TextMatch::Exact("Pearson".into())] },
            FhirFilter::Text { field: TextField::Given, any_of: vec![TextMatch::Contains("et".into())] },
        ]
    );
    assert!(parse(Some(FhirResourceKind::Patient), &pairs(&[("name:fuzzy", "x")]), false).is_err());
    assert_eq!(
        parse_ok(FhirResourceKind::Patient, &[("identifier", "urn:oid:1.2.3.4|E1234,abc123")]).filters,
        vec![FhirFilter::PatientIdentifier(vec![
            TokenMatch { system: Some("urn:oid:1.2.3.4".into()), value: Some("E1234".into()) },
            TokenMatch { system: None, value: Some("abc123".into()) },
        ])]
    );
    assert_eq!(
        parse_ok(FhirResourceKind::Practitioner, &[("identifier", "sys|fhir-111")]).filters,
        vec![FhirFilter::PractitionerIdentifier(vec!["fhir-111".into()])]
    );
    assert!(
        parse_ok(FhirResourceKind::Device, &[("type", "https://jupyterhealth.org/fhir/CodeSystem/model|data-source")])
            .filters
            .is_empty()
    );
    assert_eq!(parse_ok(FhirResourceKind::Device, &[("type", "phone")]).filters, vec![FhirFilter::Nothing]);
}

#[test]
fn unknown_parameters_are_ignored_unless_strict() {
    let list = pairs(&[("code", "x"), ("family", "p")]);
    assert!(parse(Some(FhirResourceKind::Group), &list, false).unwrap().filters.is_empty());
    let error = parse(Some(FhirResourceKind::Group), &list, true).unwrap_err();
    assert!(format!("{error:?}").contains("Unknown search parameter(s): code, family."), "{error:?}");
    // an imported-only type: its own parameters are not checked, and nothing matches
    let request = parse(None, &pairs(&[("clinical-status", "active"), ("patient", "40001")]), true).unwrap();
    assert_eq!(request.filters, vec![FhirFilter::Nothing]);
    assert_eq!(request.patients, vec![40001]);
}

#[test]
fn sort_keys_by_type() {
    let request = parse_ok(FhirResourceKind::Patient, &[("_sort", "-birthdate,_lastUpdated,date")]);
    assert_eq!(
        request.sort,
        vec![
            SortKey { field: SortField::BirthDate, descending: true },
            SortKey { field: SortField::LastUpdated, descending: false }
        ]
    );
    assert!(parse(Some(FhirResourceKind::Group), &pairs(&[("_sort", "birthdate")]), true).is_err());
    assert_eq!(
        parse_ok(FhirResourceKind::Group, &[("_sort", "-_id")]).sort,
        vec![SortKey { field: SortField::Id, descending: true }]
    );
}

#[test]
fn last_updated_values_denote_ranges() {
    let bound = |raw: &str| instant_bound("_lastUpdated", raw).unwrap();
    let day = bound("2025-01-02");
    assert_eq!(
        (day.comparator, day.start, day.end),
        (Comparator::Eq, utc(2025, 1, 2, 0, 0, 0), utc(2025, 1, 3, 0, 0, 0))
    );
    let month = bound("ge2024-02");
    assert_eq!(
        (month.comparator, month.start, month.end),
        (Comparator::Ge, utc(2024, 2, 1, 0, 0, 0), utc(2024, 3, 1, 0, 0, 0))
    );
    assert_eq!(bound("lt2024").end, utc(2025, 1, 1, 0, 0, 0));
    let instant = bound("gt2025-01-02T10:20:30+02:00");
    assert_eq!((instant.start, instant.end), (utc(2025, 1, 2, 8, 20, 30), utc(2025, 1, 2, 8, 20, 31)));
    // an unencoded `+` arrives as a space
    assert_eq!(bound("le2025-01-02T10:20:30 02:00").start, utc(2025, 1, 2, 8, 20, 30));
    assert_eq!(bound("2025-01-02T10:20Z").end, utc(2025, 1, 2, 10, 21, 0));
    let fraction = bound("2025-01-02T10:20:30.5Z");
    assert_eq!(fraction.end - fraction.start, TimeDelta::milliseconds(100));
    assert_eq!(bound("sa2025-01-02T10:20:30").comparator, Comparator::Gt);
    for invalid in ["yesterday", "2025-13-01", "2025-1-1", "ap2025", "2025-01-02T25:00Z", "2025-01-02T10:20:30+2", "ge"]
    {
        assert!(instant_bound("_lastUpdated", invalid).is_err(), "{invalid}");
    }
}

#[test]
fn birthdates_compare_by_day() {
    let bound = date_bound("birthdate", "le1986-04-12T08:00:00Z").unwrap();
    assert_eq!(
        (bound.comparator, bound.start, bound.end),
        (Comparator::Le, NaiveDate::from_ymd_opt(1986, 4, 12).unwrap(), NaiveDate::from_ymd_opt(1986, 4, 13).unwrap())
    );
    assert!(date_bound("birthdate", "1986-02-30").is_err());
}

#[test]
fn pages_end_within_the_depth_limit() {
    let page = |list: &[(&str, &str)]| parse(Some(FhirResourceKind::Patient), &pairs(list), false).map(|r| r.page);
    assert_eq!(page(&[("_page", "5000")]).unwrap(), PageWanted::Number(5000), "5000 pages of the default 20");
    assert_eq!(page(&[("_page", "100"), ("_count", "1000")]).unwrap(), PageWanted::Number(100));
    for list in [
        vec![("_page", "5001")],
        vec![("_count", "1000"), ("_page", "101")],
        vec![("_page", "1000000000")],
        vec![("_page", "4294967296")],
        vec![("_page", "99999999999999999999")],
        vec![("_count", "99999999999999999999"), ("_page", "200")],
    ] {
        let error = page(&list).unwrap_err();
        let text = format!("{error:?}");
        assert!(text.contains("InvalidInput") && text.contains("past row 100000"), "{list:?}: {text}");
    }
    assert!(check_page_depth("_page", "last", 100, 1000).is_ok());
    assert!(check_page_depth("_page", "last", 101, 1000).is_err());
}

#[test]
fn counts_of_any_length_are_capped() {
    assert_eq!(parse_ok(FhirResourceKind::Patient, &[("_count", "99999999999999999999")]).count, MAX_COUNT);
    assert_eq!(parse_ok(FhirResourceKind::Patient, &[("_count", "-5")]).count, DEFAULT_COUNT);
    assert_eq!(parse_ok(FhirResourceKind::Patient, &[("_count", "-99999999999999999999")]).count, DEFAULT_COUNT);
}

#[test]
fn dates_name_four_digit_years() {
    // `gt+262142-12-31` arrives with the `+` decoded to a space
    for raw in [
        "gt 262142-12-31",
        "gt+262142-12-31",
        "+262142-12-31T23:59Z",
        "262142-12-31T23:59Z",
        "ge-262143-01-01",
        "0000",
        "0000-01-01T00:00Z",
        "10000-01-01",
        "2025-01-02T10:00+15:00",
        "2025-01-02T10:00+02:60",
        "\u{fffd}\u{fffd}2025",
    ] {
        let error = instant_bound("_lastUpdated", raw).unwrap_err();
        let text = format!("{error:?}");
        assert!(text.contains("InvalidInput"), "{raw}: {text}");
        assert!(text.contains("a year from 0001 to 9999") || text.contains("Invalid _lastUpdated"), "{raw}: {text}");
        // a birthdate counts as its date: only the date part is checked
        let bad_date = !raw.contains("T10:00");
        assert_eq!(date_bound("birthdate", raw).is_err(), bad_date, "{raw}");
    }
    let message = format!("{:?}", instant_bound("_lastUpdated", "262142-12-31T23:59Z").unwrap_err());
    assert!(message.contains("Invalid _lastUpdated value: '262142-12-31T23:59Z'. Expected [prefix]YYYY"), "{message}");
    let message = format!("{:?}", date_bound("birthdate", "10000").unwrap_err());
    assert!(message.contains("with a year from 0001 to 9999"), "{message}");
    // the extremes that remain are ordinary instants
    let last = instant_bound("_lastUpdated", "9999-12-31T23:59:59.999999999-14:00").unwrap();
    assert_eq!(last.end, utc(10000, 1, 1, 14, 0, 0));
    assert_eq!(instant_bound("_lastUpdated", "9999").unwrap().end, utc(10000, 1, 1, 0, 0, 0));
    assert_eq!(instant_bound("_lastUpdated", "0001-01-01T00:00+14:00").unwrap().start, utc(0, 12, 31, 10, 0, 0));
    assert_eq!(date_bound("birthdate", "9999-12").unwrap().end, NaiveDate::from_ymd_opt(10000, 1, 1).unwrap());
}
