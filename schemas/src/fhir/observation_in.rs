//! Parsing an uploaded Observation (§6.7).
//!
//! The reference checks, in order: (1) R5 shape, (2) `subject` is `Patient/<id>`, [patient exists, caller may
//! write for it], (4) `device` is `Device/<id>`, [it is a personal device], [(5) identifiers unused], (6) exactly one
//! coding, [code known, (7) consented], (8) `valueAttachment.data` is base64 JSON, [(9) OMH schema]. Bracketed steps
//! need a database or the schemas and belong to ingest. [`parse_observation`] fails on (1) and (2) and keeps the
//! outcome of (4), (6) and (8) in the [`ObservationUpload`], so ingest can ask for each at its turn and answer the
//! same status as the reference when a body has several faults.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::json::{
    ATTACHMENT, CODEABLE_CONCEPT, CODING, Definition, Element, IDENTIFIER, Kind, Node, NodeRef, PERIOD, Path, Plan,
    REFERENCE, check_json, quoted,
};
use super::{FhirError, UPLOAD_CODING_SYSTEMS};
use crate::Identifier;

/// Largest single Observation body accepted: OMH data points are a few KiB; this leaves room for large sleep or
/// activity series while bounding the memory one request can take.
pub const MAX_OBSERVATION_BYTES: usize = 2 * 1024 * 1024;
/// Most identifiers one Observation may carry (apps send one or two).
pub const MAX_IDENTIFIERS: usize = 100;

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

/// What [`parse_observation`] reads of an Observation: the elements it checks beyond their JSON type. The others
/// (`meta`, `note`, `category`, ...) are parsed and type-checked but not kept.
pub(super) const OBSERVATION_PLAN: Plan = Plan::Fields(&[
    ("resourceType", Plan::Tree),
    ("status", Plan::Tree),
    ("code", Plan::Tree),
    ("subject", Plan::Tree),
    ("device", Plan::Tree),
    ("identifier", Plan::Tree),
    ("effectiveDateTime", Plan::Tree),
    ("effectivePeriod", Plan::Tree),
    ("valueAttachment", Plan::Tree),
]);

/// The single coding of an uploaded Observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coding {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

/// `effective[x]` as the client sent it. jhe derives the stored effective time from the OMH body (§9.4); this is
/// kept only for callers that want to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FhirEffective {
    DateTime(String),
    Period { start: Option<String>, end: Option<String> },
}

/// The OMH data point carried in `valueAttachment.data`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OmhPayload {
    /// The decoded bytes exactly as uploaded: valid UTF-8 and one JSON document (as `serde_json` reads it); stored
    /// as `ObservationRecord::omh_json` once the OMH validator accepted it.
    pub json: String,
}

/// An uploaded OMH Observation that passed steps (1) and (2) of §6.7. The remaining syntactic checks are kept as
/// results; ask for them in §6.7 order: [`device_id`](Self::device_id), then [`coding`](Self::coding), then
/// [`omh`](Self::omh).
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationUpload {
    /// `status` as sent (stored by the reference, always rendered `final`).
    pub status: String,
    /// From `subject.reference` `Patient/<id>`.
    pub subject_patient_id: i64,
    /// `identifier[*]` (`system` may be empty). Uniqueness, also within one upload or batch, is ingest's check (409).
    pub identifiers: Vec<Identifier>,
    pub effective: Option<FhirEffective>,
    /// `valueAttachment.contentType` as sent (not checked, like the reference).
    pub attachment_content_type: Option<String>,
    device: Result<i64, FhirError>,
    coding: Result<Coding, FhirError>,
    omh: Result<OmhPayload, FhirError>,
}

impl ObservationUpload {
    /// Step (4): the data source from `device.reference` `Device/<id>` (required, as in the reference).
    pub fn device_id(&self) -> Result<i64, FhirError> {
        self.device.clone()
    }

    /// Step (6): the one coding.
    pub fn coding(&self) -> Result<&Coding, FhirError> {
        self.coding.as_ref().map_err(Clone::clone)
    }

    /// Step (8): the decoded OMH data point.
    pub fn omh(&self) -> Result<&OmhPayload, FhirError> {
        self.omh.as_ref().map_err(Clone::clone)
    }

    /// Step (8), taking the payload out.
    pub fn into_omh(self) -> Result<OmhPayload, FhirError> {
        self.omh
    }

    /// Steps (4), (6) and (8) by value, in that order, for callers that keep the parts (no copies).
    pub fn into_deferred(self) -> (Result<i64, FhirError>, Result<Coding, FhirError>, Result<OmhPayload, FhirError>) {
        (self.device, self.coding, self.omh)
    }

    /// The first deferred syntactic failure in §6.7 order, for callers that check nothing in between.
    pub fn first_error(&self) -> Option<&FhirError> {
        self.device.as_ref().err().or(self.coding.as_ref().err()).or(self.omh.as_ref().err())
    }
}

/// Parses a single-Observation upload (`POST /FHIR/R5/Observation`). Never panics; see the module docs for what is
/// checked here and what is deferred.
pub fn parse_observation(bytes: &[u8]) -> Result<ObservationUpload, FhirError> {
    const PATH: &str = "Observation";
    if bytes.len() > MAX_OBSERVATION_BYTES {
        return Err(FhirError::TooLarge { path: PATH, size: bytes.len(), limit: MAX_OBSERVATION_BYTES });
    }
    let doc = super::json::parse(bytes, OBSERVATION_PLAN)
        .map_err(|error| FhirError::Json { path: PATH, detail: error.to_string() })?;
    observation_from_node(doc.root(), PATH)
}

/// Parses one Observation read with [`OBSERVATION_PLAN`] (`path` names it in errors).
pub(super) fn observation_from_node(node: NodeRef<'_>, path: &str) -> Result<ObservationUpload, FhirError> {
    route_to_jhe(node, path)?;
    let resource = Element::parse(node, Path::Root(path), OBSERVATION)?;
    if let Some(resource_type) = resource.str("resourceType")
        && resource_type != "Observation"
    {
        return Err(FhirError::invalid(
            resource.child_path("resourceType"),
            format!("expected \"Observation\", found {}", quoted(resource_type)),
        ));
    }
    resource.at_most_one_of(EFFECTIVE_CHOICES)?;
    resource.at_most_one_of(VALUE_CHOICES)?;

    let status = match resource.str("status") {
        Some(status) if is_code(status) => status.to_owned(),
        Some(status) => {
            return Err(FhirError::invalid(resource.child_path("status"), format!("not a code: {}", quoted(status))));
        }
        None => return Err(FhirError::invalid(resource.child_path("status"), "required")),
    };
    let Some(code) = resource.object("code", CODEABLE_CONCEPT)? else {
        return Err(FhirError::invalid(resource.child_path("code"), "required"));
    };
    // Every coding is checked; only a single one is used (step 6, deferred).
    let codings = code.array("coding");
    let codings_path = Path::Key(code.path(), "coding");
    let mut first_coding = None;
    for (index, item) in codings.iter().enumerate() {
        let coding = Element::parse(item, Path::Index(&codings_path, index), CODING)?;
        first_coding.get_or_insert(coding);
    }
    let identifiers = identifiers(&resource)?;
    let subject = resource.object("subject", REFERENCE)?;
    let device = resource.object("device", REFERENCE)?;
    let effective = effective(&resource)?;
    let attachment = resource.object("valueAttachment", ATTACHMENT)?;

    // Step (2).
    let subject_reference = subject.as_ref().and_then(|subject| subject.str("reference"));
    let subject_patient_id = reference_id(subject_reference, "Patient", || format!("{path}.subject.reference"))?;

    let coding = match (codings.len(), first_coding) {
        (1, Some(coding)) => single_coding(&coding),
        (count, _) => Err(FhirError::CodingCount { path: code.child_path("coding"), count }),
    };
    Ok(ObservationUpload {
        status,
        subject_patient_id,
        identifiers,
        effective,
        attachment_content_type: attachment.as_ref().and_then(|a| a.str("contentType")).map(str::to_owned),
        device: reference_id(device.as_ref().and_then(|d| d.str("reference")), "Device", || {
            format!("{path}.device.reference")
        }),
        coding,
        omh: decode_attachment(attachment.as_ref(), path),
    })
}

/// The reference stores an Observation as jhe-native only when one of its codings has the OMH system; anything
/// else went to its generic store. Checked leniently (keys as sent, other elements unchecked), before the shape, as
/// the reference does.
fn route_to_jhe(node: NodeRef<'_>, path: &str) -> Result<(), FhirError> {
    if !matches!(node.node(), Node::Obj(_)) {
        return Err(FhirError::invalid(path, "expected an object"));
    }
    let codings = node.raw_get("code").and_then(|code| code.raw_get("coding")).and_then(|codings| codings.as_array());
    let jhe_native = codings.is_some_and(|codings| {
        codings.iter().any(|coding| {
            let system = coding.raw_get("system").and_then(|system| system.as_str());
            system.is_some_and(|system| UPLOAD_CODING_SYSTEMS.contains(&system))
        })
    });
    if jhe_native { Ok(()) } else { Err(FhirError::NotOpenMhealth { path: format!("{path}.code.coding") }) }
}

/// A FHIR `code`: non-empty, no leading, trailing or repeated whitespace.
fn is_code(text: &str) -> bool {
    let bytes = text.as_bytes();
    !text.is_empty()
        && text.trim().len() == text.len()
        && !bytes.windows(2).any(|pair| pair == b"  ")
        && !bytes.iter().any(|b| matches!(b, b'\t' | b'\n' | b'\r'))
}

/// `identifier[*]`: every item is checked first, then their number, then that each has a value.
fn identifiers(resource: &Element<'_, '_>) -> Result<Vec<Identifier>, FhirError> {
    let items = resource.array("identifier");
    let base = Path::Key(resource.path(), "identifier");
    let mut identifiers = Vec::with_capacity(items.len().min(MAX_IDENTIFIERS));
    let mut missing_value = None;
    for (index, item) in items.iter().enumerate() {
        let item = Element::parse(item, Path::Index(&base, index), IDENTIFIER)?;
        if missing_value.is_some() || identifiers.len() == MAX_IDENTIFIERS {
            continue;
        }
        match item.str("value") {
            Some(value) if !value.is_empty() => identifiers.push(Identifier {
                system: item.str("system").unwrap_or_default().to_owned(),
                value: value.to_owned(),
            }),
            // An identifier without a value identifies nothing and could never be checked for duplicates.
            _ => missing_value = Some(FhirError::invalid(item.child_path("value"), "required")),
        }
    }
    if items.len() > MAX_IDENTIFIERS {
        return Err(FhirError::invalid(
            resource.child_path("identifier"),
            format!("at most {MAX_IDENTIFIERS} identifiers are accepted, found {}", items.len()),
        ));
    }
    match missing_value {
        Some(error) => Err(error),
        None => Ok(identifiers),
    }
}

fn effective(resource: &Element<'_, '_>) -> Result<Option<FhirEffective>, FhirError> {
    if let Some(date_time) = resource.str("effectiveDateTime") {
        return Ok(Some(FhirEffective::DateTime(date_time.to_owned())));
    }
    Ok(resource.object("effectivePeriod", PERIOD)?.map(|period| FhirEffective::Period {
        start: period.str("start").map(str::to_owned),
        end: period.str("end").map(str::to_owned),
    }))
}

/// `<Type>/<id>` (optionally `/_history/<version>`) with a non-negative 64-bit id. `path` is built only for an
/// error.
fn reference_id(reference: Option<&str>, resource_type: &str, path: impl FnOnce() -> String) -> Result<i64, FhirError> {
    let Some(reference) = reference else {
        return Err(FhirError::invalid(path(), format!("required; expected \"{resource_type}/<id>\"")));
    };
    let id = reference.strip_prefix(resource_type).and_then(|rest| rest.strip_prefix('/')).map(|rest| {
        // a plain `<id>`, the usual case, has no slash to look further for
        let versioned = if rest.contains('/') { rest.split_once("/_history/") } else { None };
        match versioned {
            Some((id, version)) if !version.is_empty() && !version.contains('/') => id,
            _ => rest,
        }
    });
    id.filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|id| id.parse::<i64>().ok())
        .ok_or_else(|| {
            FhirError::invalid(path(), format!("expected \"{resource_type}/<id>\", found {}", quoted(reference)))
        })
}

fn single_coding(coding: &Element<'_, '_>) -> Result<Coding, FhirError> {
    let required = |name: &str| {
        coding
            .str(name)
            .filter(|text| !text.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| FhirError::invalid(coding.child_path(name), "required"))
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

/// Step (8): base64 (whitespace ignored) of UTF-8 JSON. The data is decoded straight into the buffer that becomes
/// the payload; only data with whitespace in it (line-wrapped base64) is compacted into a copy first.
fn decode_attachment(attachment: Option<&Element<'_, '_>>, path: &str) -> Result<OmhPayload, FhirError> {
    let fail = |reason: String| FhirError::Attachment { path: format!("{path}.valueAttachment.data"), reason };
    let data = attachment.and_then(|attachment| attachment.str("data")).ok_or_else(|| fail("missing".to_owned()))?;
    // Whitespace is never a base64 symbol: decode as is, and only when that fails because of whitespace, again
    // without it (whitespace is ignored, and error offsets count only the other characters).
    let bytes = match BASE64.decode(data) {
        Ok(bytes) => bytes,
        Err(error) if !data.bytes().any(|b| b.is_ascii_whitespace()) => {
            return Err(fail(format!("not base64: {error}")));
        }
        Err(_) => {
            let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            BASE64.decode(&compact).map_err(|error| fail(format!("not base64: {error}")))?
        }
    };
    // The reference only accepts ASCII JSON; jhe accepts any UTF-8 JSON (a superset) and keeps it byte for byte.
    let json = String::from_utf8(bytes).map_err(|_| fail("the decoded bytes are not UTF-8".to_owned()))?;
    check_json(&json).map_err(|error| fail(format!("the decoded bytes are not JSON: {error}")))?;
    Ok(OmhPayload { json })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        let id = |text: &str| reference_id(Some(text), "Patient", || "P".to_owned()).ok();
        assert_eq!(id("Patient/40001"), Some(40001));
        assert_eq!(id("Patient/040001"), Some(40001));
        assert_eq!(id("Patient/40001/_history/2"), Some(40001));
        for bad in
            ["Patient/", "Patient/+1", "Patient/1 ", "Patient/1/x", "Patient/1/_history/", "patient/1", "Patient1"]
        {
            assert_eq!(id(bad), None, "{bad}");
        }
        assert_eq!(id(&format!("Patient/{}", i64::MAX)), Some(i64::MAX));
        assert_eq!(id("Patient/9223372036854775808"), None);
        assert_eq!(
            reference_id(None, "Device", || "Observation.device.reference".to_owned()).unwrap_err().to_string(),
            "Observation.device.reference: required; expected \"Device/<id>\""
        );
    }

    #[test]
    fn codes() {
        assert!(is_code("final") && is_code("entered-in-error") && is_code("a b"));
        assert!(!is_code("") && !is_code(" final") && !is_code("a  b") && !is_code("a\tb"));
    }
}
