//! The upload parser as it was before the borrowed, plan-driven one (the one built on
//! `serde_json::Value`), kept as the reference the new parser is compared with (tests) and measured against
//! (benches/benches/ingest_parse.rs). Only the types are adapted: the results are plain structs compared field by
//! field with the public accessors of `jhe_schemas::fhir::ObservationUpload`.
#![allow(dead_code, unreachable_pub, clippy::all)]

use std::borrow::Cow;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use jhe_schemas::Identifier;
use jhe_schemas::fhir::{
    Coding, FhirEffective, FhirError, MAX_BUNDLE_BYTES, MAX_BUNDLE_ENTRIES, MAX_IDENTIFIERS, MAX_OBSERVATION_BYTES,
};
use serde_json::Value;

const UPLOAD_CODING_SYSTEMS: &[&str] = jhe_schemas::fhir::UPLOAD_CODING_SYSTEMS;

fn invalid(path: impl Into<String>, rule: impl Into<String>) -> FhirError {
    FhirError::Invalid { path: path.into(), rule: rule.into() }
}

/// An uploaded Observation, every part public.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub status: String,
    pub subject_patient_id: i64,
    pub identifiers: Vec<Identifier>,
    pub effective: Option<FhirEffective>,
    pub attachment_content_type: Option<String>,
    pub device: Result<i64, FhirError>,
    pub coding: Result<Coding, FhirError>,
    /// The decoded data point and its `Value` (as the old parser built it).
    pub omh: Result<(String, Value), FhirError>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BundleUpload {
    pub bundle_type: String,
    pub entries: Vec<Result<Upload, FhirError>>,
}

/// The JSON type an element must have (cardinality folded in: repeating elements are arrays).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Bool,
    Int,
    Num,
    Obj,
    Arr,
    /// FHIR R5 `integer64`: a string in JSON; a plain integer is accepted too.
    Int64,
}

impl Kind {
    fn matches(self, value: &Value) -> bool {
        match self {
            Kind::Str => value.is_string(),
            Kind::Bool => value.is_boolean(),
            Kind::Int => value.is_i64() || value.is_u64(),
            Kind::Num => value.is_number(),
            Kind::Obj => value.is_object(),
            Kind::Arr => value.is_array(),
            Kind::Int64 => value.is_string() || value.is_i64() || value.is_u64(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Bool => "a boolean",
            Kind::Int => "an integer",
            Kind::Num => "a number",
            Kind::Obj => "an object",
            Kind::Arr => "an array",
            Kind::Int64 => "an integer64 (string)",
        }
    }
}

/// The element definitions of one FHIR type: name and JSON type.
type Definition = &'static [(&'static str, Kind)];

/// The canonical (camelCase) spelling of a key. The reference snake-cases request keys and camel-cases them again
/// before parsing, so `value_attachment` is accepted for `valueAttachment`; primitive-extension keys (`_status`)
/// keep their leading underscore.
fn canonical_key(key: &str) -> Cow<'_, str> {
    let body = key.trim_start_matches('_');
    if !body.contains('_') {
        return Cow::Borrowed(key);
    }
    let mut out = String::with_capacity(key.len());
    out.push_str(&key[..key.len() - body.len()]);
    for (index, part) in body.split('_').enumerate() {
        let mut chars = part.chars();
        match chars.next() {
            Some(first) if index > 0 => {
                out.extend(first.to_uppercase());
                out.push_str(chars.as_str());
            }
            _ => out.push_str(part),
        }
    }
    Cow::Owned(out)
}

/// Quotes a value for an error message, cut to a readable length.
fn quoted(value: &str) -> String {
    const MAX_CHARS: usize = 80;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}

/// One JSON object checked against a FHIR type definition.
#[derive(Debug)]
struct Element<'a> {
    path: String,
    fields: Vec<(Cow<'a, str>, &'a Value)>,
}

impl<'a> Element<'a> {
    /// Checks that `value` is an object whose elements are all defined, of the right JSON type and given once.
    /// JSON `null` counts as absent (the reference's parser treats it so).
    fn parse(value: &'a Value, path: String, definition: Definition) -> Result<Self, FhirError> {
        let Value::Object(map) = value else {
            return Err(invalid(path, "expected an object"));
        };
        let mut fields: Vec<(Cow<'a, str>, &'a Value)> = Vec::with_capacity(map.len());
        for (key, field) in map {
            let name = canonical_key(key);
            let child = || format!("{path}.{name}");
            if fields.iter().any(|(seen, _)| *seen == name) {
                return Err(invalid(child(), "given twice (camelCase and snake_case spellings)"));
            }
            if !field.is_null() {
                let expected = match name.strip_prefix('_') {
                    // A primitive extension (`_status`) is allowed beside any primitive element.
                    Some(primitive) => definition
                        .iter()
                        .find(|(element, kind)| *element == primitive && !matches!(kind, Kind::Obj | Kind::Arr))
                        .map(|_| Kind::Obj),
                    None => definition.iter().find(|(element, _)| *element == name).map(|(_, kind)| *kind),
                };
                match expected {
                    None => return Err(invalid(child(), "is not an element of this FHIR R5 type")),
                    Some(kind) if !kind.matches(field) => {
                        return Err(invalid(child(), format!("expected {}", kind.describe())));
                    }
                    Some(_) => {}
                }
            }
            fields.push((name, field));
        }
        Ok(Element { path, fields })
    }

    fn path(&self) -> &str {
        &self.path
    }

    fn child_path(&self, name: &str) -> String {
        format!("{}.{name}", self.path)
    }

    /// The element's value; `None` when absent or null. Its JSON type was checked by [`Element::parse`].
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.fields.iter().find(|(key, value)| key == name && !value.is_null()).map(|(_, value)| *value)
    }

    fn str(&self, name: &str) -> Option<&'a str> {
        self.get(name).and_then(Value::as_str)
    }

    fn array(&self, name: &str) -> &'a [Value] {
        self.get(name).and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default()
    }

    /// A complex child element, checked against its own definition.
    fn object(&self, name: &str, definition: Definition) -> Result<Option<Element<'a>>, FhirError> {
        self.get(name).map(|value| Element::parse(value, self.child_path(name), definition)).transpose()
    }

    /// Every item of a repeating complex element, checked against its definition.
    fn objects(&self, name: &str, definition: Definition) -> Result<Vec<Element<'a>>, FhirError> {
        let base = self.child_path(name);
        self.array(name)
            .iter()
            .enumerate()
            .map(|(index, item)| Element::parse(item, format!("{base}[{index}]"), definition))
            .collect()
    }

    /// At most one of the `choices` (a FHIR `[x]` choice element) may be present.
    fn at_most_one_of(&self, choices: &[&str]) -> Result<(), FhirError> {
        let mut present = self.fields.iter().filter(|(key, value)| !value.is_null() && choices.contains(&key.as_ref()));
        if let (Some(_), Some((second, _))) = (present.next(), present.next()) {
            return Err(invalid(self.child_path(second), format!("only one of {} may be given", choices.join(", "))));
        }
        Ok(())
    }
}

/// FHIR `Coding`.
const CODING: Definition = &[
    ("id", Kind::Str),
    ("extension", Kind::Arr),
    ("system", Kind::Str),
    ("version", Kind::Str),
    ("code", Kind::Str),
    ("display", Kind::Str),
    ("userSelected", Kind::Bool),
];
/// FHIR `CodeableConcept`.
const CODEABLE_CONCEPT: Definition =
    &[("id", Kind::Str), ("extension", Kind::Arr), ("coding", Kind::Arr), ("text", Kind::Str)];
/// FHIR `Identifier`.
const IDENTIFIER: Definition = &[
    ("id", Kind::Str),
    ("extension", Kind::Arr),
    ("use", Kind::Str),
    ("type", Kind::Obj),
    ("system", Kind::Str),
    ("value", Kind::Str),
    ("period", Kind::Obj),
    ("assigner", Kind::Obj),
];
/// FHIR `Reference`.
const REFERENCE: Definition = &[
    ("id", Kind::Str),
    ("extension", Kind::Arr),
    ("reference", Kind::Str),
    ("type", Kind::Str),
    ("identifier", Kind::Obj),
    ("display", Kind::Str),
];
/// FHIR `Period`.
const PERIOD: Definition = &[("id", Kind::Str), ("extension", Kind::Arr), ("start", Kind::Str), ("end", Kind::Str)];
/// FHIR R5 `Attachment`.
const ATTACHMENT: Definition = &[
    ("id", Kind::Str),
    ("extension", Kind::Arr),
    ("contentType", Kind::Str),
    ("language", Kind::Str),
    ("data", Kind::Str),
    ("url", Kind::Str),
    ("size", Kind::Int64),
    ("hash", Kind::Str),
    ("title", Kind::Str),
    ("creation", Kind::Str),
    ("height", Kind::Int),
    ("width", Kind::Int),
    ("frames", Kind::Int),
    ("duration", Kind::Num),
    ("pages", Kind::Int),
];

/// FHIR R5 `Observation` elements. Elements jhe does not store are still type-checked, as the reference's parser
/// does, so a misspelt element is a 400 rather than silently dropped.
const OBSERVATION: Definition = &[
    ("resourceType", Kind::Str),
    ("id", Kind::Str),
    ("meta", Kind::Obj),
    ("implicitRules", Kind::Str),
    ("language", Kind::Str),
    ("text", Kind::Obj),
    ("contained", Kind::Arr),
    ("extension", Kind::Arr),
    ("modifierExtension", Kind::Arr),
    ("identifier", Kind::Arr),
    ("instantiatesCanonical", Kind::Str),
    ("instantiatesReference", Kind::Obj),
    ("basedOn", Kind::Arr),
    ("triggeredBy", Kind::Arr),
    ("partOf", Kind::Arr),
    ("status", Kind::Str),
    ("category", Kind::Arr),
    ("code", Kind::Obj),
    ("subject", Kind::Obj),
    ("focus", Kind::Arr),
    ("encounter", Kind::Obj),
    ("effectiveDateTime", Kind::Str),
    ("effectivePeriod", Kind::Obj),
    ("effectiveTiming", Kind::Obj),
    ("effectiveInstant", Kind::Str),
    ("issued", Kind::Str),
    ("performer", Kind::Arr),
    ("valueQuantity", Kind::Obj),
    ("valueCodeableConcept", Kind::Obj),
    ("valueString", Kind::Str),
    ("valueBoolean", Kind::Bool),
    ("valueInteger", Kind::Int),
    ("valueRange", Kind::Obj),
    ("valueRatio", Kind::Obj),
    ("valueSampledData", Kind::Obj),
    ("valueTime", Kind::Str),
    ("valueDateTime", Kind::Str),
    ("valuePeriod", Kind::Obj),
    ("valueAttachment", Kind::Obj),
    ("valueReference", Kind::Obj),
    ("dataAbsentReason", Kind::Obj),
    ("interpretation", Kind::Arr),
    ("note", Kind::Arr),
    ("bodySite", Kind::Obj),
    ("bodyStructure", Kind::Obj),
    ("method", Kind::Obj),
    ("specimen", Kind::Obj),
    ("device", Kind::Obj),
    ("referenceRange", Kind::Arr),
    ("hasMember", Kind::Arr),
    ("derivedFrom", Kind::Arr),
    ("component", Kind::Arr),
];
const EFFECTIVE_CHOICES: &[&str] = &["effectiveDateTime", "effectivePeriod", "effectiveTiming", "effectiveInstant"];
const VALUE_CHOICES: &[&str] = &[
    "valueQuantity",
    "valueCodeableConcept",
    "valueString",
    "valueBoolean",
    "valueInteger",
    "valueRange",
    "valueRatio",
    "valueSampledData",
    "valueTime",
    "valueDateTime",
    "valuePeriod",
    "valueAttachment",
    "valueReference",
];

/// Parses a single-Observation upload (`POST /FHIR/R5/Observation`). Never panics; see the module docs for what is
/// checked here and what is deferred.
pub fn parse_observation(bytes: &[u8]) -> Result<Upload, FhirError> {
    const PATH: &str = "Observation";
    if bytes.len() > MAX_OBSERVATION_BYTES {
        return Err(FhirError::TooLarge { path: PATH, size: bytes.len(), limit: MAX_OBSERVATION_BYTES });
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|error| FhirError::Json { path: PATH, detail: error.to_string() })?;
    observation_from_value(&value, PATH)
}

/// Parses one Observation already read as JSON (`path` names it in errors).
fn observation_from_value(value: &Value, path: &str) -> Result<Upload, FhirError> {
    route_to_jhe(value, path)?;
    let resource = Element::parse(value, path.to_owned(), OBSERVATION)?;
    if let Some(resource_type) = resource.str("resourceType")
        && resource_type != "Observation"
    {
        return Err(invalid(
            resource.child_path("resourceType"),
            format!("expected \"Observation\", found {}", quoted(resource_type)),
        ));
    }
    resource.at_most_one_of(EFFECTIVE_CHOICES)?;
    resource.at_most_one_of(VALUE_CHOICES)?;

    let status = match resource.str("status") {
        Some(status) if is_code(status) => status.to_owned(),
        Some(status) => {
            return Err(invalid(resource.child_path("status"), format!("not a code: {}", quoted(status))));
        }
        None => return Err(invalid(resource.child_path("status"), "required")),
    };
    let Some(code) = resource.object("code", CODEABLE_CONCEPT)? else {
        return Err(invalid(resource.child_path("code"), "required"));
    };
    let codings = code.objects("coding", CODING)?;
    let identifiers = identifiers(&resource)?;
    let subject = resource.object("subject", REFERENCE)?;
    let device = resource.object("device", REFERENCE)?;
    let effective = effective(&resource)?;
    let attachment = resource.object("valueAttachment", ATTACHMENT)?;

    // Step (2).
    let subject_path = format!("{path}.subject.reference");
    let subject_reference = subject.as_ref().and_then(|subject| subject.str("reference"));
    let subject_patient_id = reference_id(subject_reference, "Patient", &subject_path)?;

    Ok(Upload {
        status,
        subject_patient_id,
        identifiers,
        effective,
        attachment_content_type: attachment.as_ref().and_then(|a| a.str("contentType")).map(str::to_owned),
        device: reference_id(
            device.as_ref().and_then(|d| d.str("reference")),
            "Device",
            &format!("{path}.device.reference"),
        ),
        coding: single_coding(&code, &codings),
        omh: decode_attachment(attachment.as_ref(), path),
    })
}

/// The reference stores an Observation as jhe-native only when one of its codings has the OMH system; anything
/// else went to its generic store. Checked leniently, before the shape, as the reference does.
fn route_to_jhe(value: &Value, path: &str) -> Result<(), FhirError> {
    if !value.is_object() {
        return Err(invalid(path, "expected an object"));
    }
    let codings = value.get("code").and_then(|code| code.get("coding")).and_then(Value::as_array);
    let jhe_native = codings.is_some_and(|codings| {
        codings.iter().any(|coding| {
            coding.get("system").and_then(Value::as_str).is_some_and(|system| UPLOAD_CODING_SYSTEMS.contains(&system))
        })
    });
    if jhe_native { Ok(()) } else { Err(FhirError::NotOpenMhealth { path: format!("{path}.code.coding") }) }
}

/// A FHIR `code`: non-empty, no leading, trailing or repeated whitespace.
fn is_code(text: &str) -> bool {
    !text.is_empty() && text.trim() == text && !text.contains("  ") && !text.contains(['\t', '\n', '\r'])
}

fn identifiers(resource: &Element<'_>) -> Result<Vec<Identifier>, FhirError> {
    let items = resource.objects("identifier", IDENTIFIER)?;
    if items.len() > MAX_IDENTIFIERS {
        return Err(invalid(
            resource.child_path("identifier"),
            format!("at most {MAX_IDENTIFIERS} identifiers are accepted, found {}", items.len()),
        ));
    }
    items
        .iter()
        .map(|item| match item.str("value") {
            Some(value) if !value.is_empty() => {
                Ok(Identifier { system: item.str("system").unwrap_or_default().to_owned(), value: value.to_owned() })
            }
            // An identifier without a value identifies nothing and could never be checked for duplicates.
            _ => Err(invalid(item.child_path("value"), "required")),
        })
        .collect()
}

fn effective(resource: &Element<'_>) -> Result<Option<FhirEffective>, FhirError> {
    if let Some(date_time) = resource.str("effectiveDateTime") {
        return Ok(Some(FhirEffective::DateTime(date_time.to_owned())));
    }
    Ok(resource.object("effectivePeriod", PERIOD)?.map(|period| FhirEffective::Period {
        start: period.str("start").map(str::to_owned),
        end: period.str("end").map(str::to_owned),
    }))
}

/// `<Type>/<id>` (optionally `/_history/<version>`) with a non-negative 64-bit id.
fn reference_id(reference: Option<&str>, resource_type: &str, path: &str) -> Result<i64, FhirError> {
    let expected = format!("expected \"{resource_type}/<id>\"");
    let Some(reference) = reference else {
        return Err(invalid(path, format!("required; {expected}")));
    };
    let id = reference.strip_prefix(resource_type).and_then(|rest| rest.strip_prefix('/')).map(|rest| {
        match rest.split_once("/_history/") {
            Some((id, version)) if !version.is_empty() && !version.contains('/') => id,
            _ => rest,
        }
    });
    id.filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse::<i64>().ok())
        .ok_or_else(|| invalid(path, format!("{expected}, found {}", quoted(reference))))
}

fn single_coding(code: &Element<'_>, codings: &[Element<'_>]) -> Result<Coding, FhirError> {
    let [coding] = codings else {
        return Err(FhirError::CodingCount { path: code.child_path("coding"), count: codings.len() });
    };
    let required = |name: &str| {
        coding
            .str(name)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| invalid(coding.child_path(name), "required"))
    };
    Ok(Coding {
        system: required("system")?,
        code: required("code")?,
        display: coding.str("display").map(str::to_owned),
    })
}

/// Base64 as Python decodes it without validation: whitespace ignored, padding required, stray low bits tolerated.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(true),
);

fn decode_attachment(attachment: Option<&Element<'_>>, path: &str) -> Result<(String, Value), FhirError> {
    let data_path = format!("{path}.valueAttachment.data");
    let fail = |reason: &str| FhirError::Attachment { path: data_path.clone(), reason: reason.to_owned() };
    let data = attachment.and_then(|attachment| attachment.str("data")).ok_or_else(|| fail("missing"))?;
    let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let bytes = BASE64.decode(&compact).map_err(|error| fail(&format!("not base64: {error}")))?;
    // The reference only accepts ASCII JSON; jhe accepts any UTF-8 JSON (a superset) and keeps it byte for byte.
    let json = String::from_utf8(bytes).map_err(|_| fail("the decoded bytes are not UTF-8"))?;
    let value =
        serde_json::from_str(&json).map_err(|error| fail(&format!("the decoded bytes are not JSON: {error}")))?;
    Ok((json, value))
}

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
        return Err(invalid(
            bundle.child_path("resourceType"),
            format!("expected \"Bundle\", found {}", quoted(resource_type)),
        ));
    }
    let Some(bundle_type) = bundle.str("type") else {
        return Err(invalid(bundle.child_path("type"), "required"));
    };
    let entries = bundle.array("entry");
    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(invalid(
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

fn parse_entry(entry: &Value, index: usize) -> Result<Upload, FhirError> {
    let entry = Element::parse(entry, format!("Bundle.entry[{index}]"), ENTRY)?;
    let Some(resource) = entry.get("resource") else {
        return Err(invalid(entry.child_path("resource"), "required"));
    };
    let resource_type = field(resource, "resourceType").and_then(Value::as_str);
    if resource_type != Some("Observation") {
        return Err(invalid(
            format!("{}.resource.resourceType", entry.path()),
            "Only Observation resourceType supported.",
        ));
    }
    let Some(request) = entry.object("request", REQUEST)? else {
        return Err(invalid(entry.child_path("request"), "required"));
    };
    if request.str("method") != Some("POST") {
        return Err(invalid(request.child_path("method"), "Only POST/Create method supported."));
    }
    if request.str("url").is_none() {
        return Err(invalid(request.child_path("url"), "required"));
    }
    observation_from_value(resource, "Observation")
}
