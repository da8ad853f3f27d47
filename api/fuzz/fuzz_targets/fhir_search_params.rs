//! Any query string through the search-parameter parsers the FHIR handlers call: the Observation search's
//! (`jhe_query::fhir_params::parse_search`, Parquet) and the other resources' (`jhe_api`, Postgres). Each answers a
//! search or a refusal and never panics; a search's page size is 1 to 1000, and a page found by offset ends within
//! `MAX_PAGE_DEPTH` rows.
//!
//! The input is split at `&` like a query string. A piece starting with a byte below 0x20 names one of the
//! parameters below (the rest of the piece is its percent-encoded value), so most pieces reach a parser's value
//! handling; any other piece is `name=value` as a client would send it.
#![no_main]

use chrono::{DateTime, Utc};
use jhe_catalog::FhirResourceKind;
use jhe_query::fhir_params::{MAX_PAGE_DEPTH, parse_search, within_page_depth};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "_count",
    "_page",
    "_cursor",
    "date",
    "code",
    "_sort",
    "_lastUpdated",
    "_last_updated",
    "birthdate",
    "patient",
    "subject",
    "_id",
    "_summary",
    "identifier",
    "patient._has:Group:member:_id",
    "patient.organization",
    "status",
    "_source",
    "name",
    "family:exact",
    "date:missing",
];

const KINDS: [Option<FhirResourceKind>; 6] = [
    None,
    Some(FhirResourceKind::Patient),
    Some(FhirResourceKind::Group),
    Some(FhirResourceKind::Organization),
    Some(FhirResourceKind::Practitioner),
    Some(FhirResourceKind::Device),
];

/// The pairs a handler would see for this query string (percent-decoded, `+` as a space, invalid UTF-8 replaced).
fn pairs(data: &[u8]) -> Vec<(String, String)> {
    data.split(|byte| *byte == b'&')
        .filter_map(|piece| match piece.split_first() {
            Some((&selector, value)) if selector < 0x20 => {
                let name = NAMES[usize::from(selector) % NAMES.len()];
                let value = url::form_urlencoded::parse(&[b"v=", value].concat())
                    .next()
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default();
                Some((name.to_owned(), value))
            }
            _ => url::form_urlencoded::parse(piece).next().map(|(name, value)| (name.into_owned(), value.into_owned())),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let params = pairs(data);
    let now = DateTime::<Utc>::from_timestamp(1_750_000_000, 0).expect("a valid instant");
    if let Ok(request) = parse_search(&params, now) {
        assert!((1..=1000).contains(&request.count), "page size {}", request.count);
        assert!(request.page >= 1);
        if request.cursor.is_none() {
            assert!(
                within_page_depth(u64::from(request.page), u64::try_from(request.count).unwrap_or(u64::MAX)),
                "page {} past {MAX_PAGE_DEPTH}",
                request.page
            );
        }
    }
    for kind in KINDS {
        for strict in [false, true] {
            if let Some((count, page)) = jhe_api::parse_fhir_search_for_fuzzing(kind, &params, strict) {
                assert!((1..=1000).contains(&count), "page size {count}");
                if let Some(page) = page {
                    assert!(
                        page >= 1 && within_page_depth(u64::from(page), u64::from(count)),
                        "page {page} of {count}"
                    );
                }
            }
        }
    }
});
