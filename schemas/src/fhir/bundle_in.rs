//! Parsing an uploaded batch or transaction Bundle (§6.8).
//!
//! A Bundle that is not a Bundle (not JSON, unknown elements, no `type`, `entry` not an array, too many entries) is
//! refused whole, and so is one where an entry lacks `resource.valueAttachment.data` (the reference's pre-check).
//! Everything else is judged per entry, so one bad entry gets its own 400 in the batch-response while the others are
//! stored. Every entry yields exactly one result (the reference could emit two for an entry that was both the wrong
//! type and the wrong method).

use super::json::{Definition, Element, Kind, Node, NodeRef, Path, Plan, quoted};
use super::observation_in::{OBSERVATION_PLAN, observation_from_node};
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

/// What [`parse_bundle`] reads: each entry as soon as it is parsed (its resource as
/// [`parse_observation`](super::parse_observation) does, and its request); every other element only as far as its
/// JSON type.
const BUNDLE_PLAN: Plan = Plan::Fields(&[
    ("resourceType", Plan::Tree),
    ("type", Plan::Tree),
    ("entry", Plan::Entries(&ENTRY_PLAN, read_entry)),
]);
const ENTRY_PLAN: Plan = Plan::Fields(&[("resource", OBSERVATION_PLAN), ("request", Plan::Tree)]);

/// One entry as read while the Bundle is parsed: whether it passes the pre-check, and its result. Both depend on
/// the entry alone, so reading it early answers what reading it after the whole body would; if the body is
/// refused whole (bad JSON, a bad Bundle element, the pre-check), the results are dropped.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ReadEntry {
    has_data: bool,
    result: Result<ObservationUpload, FhirError>,
}

fn read_entry(entry: NodeRef<'_>, index: usize) -> ReadEntry {
    // The pre-check: every entry must carry attachment data, or nothing is stored.
    let resource = field(entry, "resource", "resource");
    let data =
        resource.and_then(|r| field(r, "valueAttachment", "value_attachment")).and_then(|a| field(a, "data", "data"));
    let has_data = data.is_some();
    // Beyond the limit the Bundle is refused whole: the entries need not be judged.
    if !has_data || index >= MAX_BUNDLE_ENTRIES {
        return ReadEntry { has_data, result: Err(FhirError::invalid("Bundle.entry", "not read")) };
    }
    let root = Path::Root("Bundle");
    let entries = Path::Key(&root, "entry");
    ReadEntry { has_data, result: parse_entry(entry, Path::Index(&entries, index)) }
}

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
    let mut doc = super::json::parse(bytes, BUNDLE_PLAN)
        .map_err(|error| FhirError::Json { path: PATH, detail: error.to_string() })?;
    let root = Path::Root(PATH);
    let bundle = Element::parse(doc.root(), root, BUNDLE)?;
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
    let entries = match bundle.get("entry").map(|entry| entry.node()) {
        Some(Node::Entries(entries)) => entries.as_slice(),
        _ => &[],
    };
    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(FhirError::invalid(
            bundle.child_path("entry"),
            format!("at most {MAX_BUNDLE_ENTRIES} entries are accepted, found {}", entries.len()),
        ));
    }
    if let Some(index) = entries.iter().position(|entry| !entry.has_data) {
        return Err(FhirError::BundleEntryWithoutData {
            path: format!("{PATH}.entry[{index}].resource.valueAttachment.data"),
        });
    }
    let bundle_type = bundle_type.to_owned();
    // The results move out of the parsed body (the checks above only borrowed it).
    let entries = match doc.take_entries() {
        Some(entries) => entries.into_iter().map(|entry| entry.result).collect(),
        None => Vec::new(),
    };
    Ok(BundleUpload { bundle_type, entries })
}

/// A non-null member of a JSON object, by its camelCase or else its snake_case key as sent (a `null` under the
/// camelCase key hides the other, as in the reference's lookup).
fn field<'n>(node: NodeRef<'n>, camel: &str, snake: &str) -> Option<NodeRef<'n>> {
    node.raw_get(camel).or_else(|| node.raw_get(snake)).filter(|node| !node.is_null())
}

fn parse_entry(entry: NodeRef<'_>, path: Path<'_>) -> Result<ObservationUpload, FhirError> {
    let entry = Element::parse(entry, path, ENTRY)?;
    let Some(resource) = entry.get("resource") else {
        return Err(FhirError::invalid(entry.child_path("resource"), "required"));
    };
    let resource_type = field(resource, "resourceType", "resource_type").and_then(|node| node.as_str());
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
    observation_from_node(resource, "Observation")
}
