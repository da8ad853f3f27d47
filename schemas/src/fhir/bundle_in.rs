//! Parsing an uploaded batch or transaction Bundle (§6.8).
//!
//! A Bundle that is not a Bundle (not JSON, unknown elements, no `type`, `entry` not an array, too many entries) is
//! refused whole, and so is one where an entry lacks `resource.valueAttachment.data` (the reference's pre-check).
//! Everything else is judged per entry, so one bad entry gets its own 400 in the batch-response while the others are
//! stored. Every entry yields exactly one result (the reference could emit two for an entry that was both the wrong
//! type and the wrong method).

use serde_json::Value;

use super::json::{Definition, Element, Kind, quoted};
use super::observation_in::observation_from_value;
use super::{FhirError, ObservationUpload};

/// Largest Bundle body accepted (about 10,000 typical OMH observations).
pub const MAX_BUNDLE_BYTES: usize = 32 * 1024 * 1024;
/// Most entries one Bundle may carry.
pub const MAX_BUNDLE_ENTRIES: usize = 10_000;

/// FHIR R5 `Bundle`.
const BUNDLE: Definition = &[
    ("resourceType", Kind::Str),
    ("id", Kind::Str),
    ("meta", Kind::Obj),
    ("implicitRules", Kind::Str),
    ("language", Kind::Str),
    ("identifier", Kind::Obj),
    ("type", Kind::Str),
    ("timestamp", Kind::Str),
    ("total", Kind::Int),
    ("link", Kind::Arr),
    ("entry", Kind::Arr),
    ("signature", Kind::Obj),
    ("issues", Kind::Obj),
];
/// FHIR R5 `Bundle.entry`.
const ENTRY: Definition = &[
    ("id", Kind::Str),
    ("extension", Kind::Arr),
    ("modifierExtension", Kind::Arr),
    ("link", Kind::Arr),
    ("fullUrl", Kind::Str),
    ("resource", Kind::Obj),
    ("search", Kind::Obj),
    ("request", Kind::Obj),
    ("response", Kind::Obj),
];
/// FHIR R5 `Bundle.entry.request`.
const REQUEST: Definition = &[
    ("id", Kind::Str),
    ("extension", Kind::Arr),
    ("modifierExtension", Kind::Arr),
    ("method", Kind::Str),
    ("url", Kind::Str),
    ("ifNoneMatch", Kind::Str),
    ("ifModifiedSince", Kind::Str),
    ("ifMatch", Kind::Str),
    ("ifNoneExist", Kind::Str),
];

/// An uploaded Bundle: its `type` (`batch` or `transaction` in practice; not checked, like the reference) and one
/// result per entry, in order. Entries are processed independently (no transaction semantics).
#[derive(Debug, Clone, PartialEq)]
pub struct BundleUpload {
    pub bundle_type: String,
    pub entries: Vec<Result<ObservationUpload, FhirError>>,
}

/// Parses a batch/transaction Bundle of Observation creates. Never panics.
pub fn parse_bundle(bytes: &[u8]) -> Result<BundleUpload, FhirError> {
    const PATH: &str = "Bundle";
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(FhirError::TooLarge { path: PATH, size: bytes.len(), limit: MAX_BUNDLE_BYTES });
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|error| FhirError::Json { path: PATH, detail: error.to_string() })?;
    let bundle = Element::parse(&value, PATH.to_owned(), BUNDLE)?;
    if let Some(resource_type) = bundle.str("resourceType")
        && resource_type != "Bundle"
    {
        return Err(FhirError::invalid(
            bundle.child_path("resourceType"),
            format!("expected \"Bundle\", found {}", quoted(resource_type)),
        ));
    }
    let Some(bundle_type) = bundle.str("type") else {
        return Err(FhirError::invalid(bundle.child_path("type"), "required"));
    };
    let entries = bundle.array("entry");
    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(FhirError::invalid(
            bundle.child_path("entry"),
            format!("at most {MAX_BUNDLE_ENTRIES} entries are accepted, found {}", entries.len()),
        ));
    }
    // The pre-check: every entry must carry attachment data, or nothing is stored.
    for (index, entry) in entries.iter().enumerate() {
        let resource = field(entry, "resource");
        let data = resource.and_then(|r| field(r, "valueAttachment")).and_then(|a| field(a, "data"));
        if data.is_none() {
            return Err(FhirError::BundleEntryWithoutData {
                path: format!("{PATH}.entry[{index}].resource.valueAttachment.data"),
            });
        }
    }
    Ok(BundleUpload {
        bundle_type: bundle_type.to_owned(),
        entries: entries.iter().enumerate().map(|(index, entry)| parse_entry(entry, index)).collect(),
    })
}

/// A non-null member of a JSON object, by its camelCase or snake_case name.
fn field<'a>(value: &'a Value, camel: &str) -> Option<&'a Value> {
    let snake: String = camel
        .chars()
        .flat_map(|c| if c.is_ascii_uppercase() { vec!['_', c.to_ascii_lowercase()] } else { vec![c] })
        .collect();
    value.get(camel).or_else(|| value.get(&snake)).filter(|value| !value.is_null())
}

fn parse_entry(entry: &Value, index: usize) -> Result<ObservationUpload, FhirError> {
    let entry = Element::parse(entry, format!("Bundle.entry[{index}]"), ENTRY)?;
    let Some(resource) = entry.get("resource") else {
        return Err(FhirError::invalid(entry.child_path("resource"), "required"));
    };
    let resource_type = field(resource, "resourceType").and_then(Value::as_str);
    if resource_type != Some("Observation") {
        return Err(FhirError::invalid(
            format!("{}.resource.resourceType", entry.path()),
            "Only Observation resourceType supported.",
        ));
    }
    let Some(request) = entry.object("request", REQUEST)? else {
        return Err(FhirError::invalid(entry.child_path("request"), "required"));
    };
    if request.str("method") != Some("POST") {
        return Err(FhirError::invalid(request.child_path("method"), "Only POST/Create method supported."));
    }
    if request.str("url").is_none() {
        return Err(FhirError::invalid(request.child_path("url"), "required"));
    }
    observation_from_value(resource, "Observation")
}
