//! The six jhe-native resources (§6.5), rendered as the reference's config-driven engine does: keys in the order
//! of `core/fhir/fhir_config.json` with `resourceType` last (the engine sets it after rendering the mapping), empty
//! values (`""`, `[]`, `{}`, null) left out, timestamps in UTC with `Z`, `id` as a string and
//! `meta.source` = [`JHE_SOURCE_URI`].
//!
//! jhe adds one element: `device` (`Device/<data source id>`) on an Observation whose data source is known; it comes
//! after every element the reference emits, so documented DataFrame columns keep their positions.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::NaiveDate;
use serde::Serialize;

use super::time::{UtcSuffix, format_utc};
use super::{JHE_SOURCE_URI, JHE_USER_ID_SYSTEM, MODEL_CODE_SYSTEM};
use crate::{Identifier, ObservationRecord};

/// A Patient row (`core_patient` + its user's email and identifiers).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PatientRow {
    pub id: i64,
    pub last_updated_micros: i64,
    pub identifiers: Vec<Identifier>,
    pub name_family: String,
    pub name_given: String,
    pub birth_date: Option<NaiveDate>,
    pub telecom_phone: Option<String>,
    /// The patient's user's email, if the patient has a user.
    pub email: Option<String>,
}

/// A study, rendered as a Group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StudyRow {
    pub id: i64,
    pub last_updated_micros: i64,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrganizationRow {
    pub id: i64,
    pub last_updated_micros: i64,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PractitionerRow {
    pub id: i64,
    pub last_updated_micros: i64,
    pub name_family: String,
    pub name_given: String,
}

/// A data source, rendered as a Device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataSourceRow {
    pub id: i64,
    pub last_updated_micros: i64,
    pub name: Option<String>,
}

const fn is_empty(text: &&str) -> bool {
    text.is_empty()
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    last_updated: String,
    source: &'static str,
}

impl Meta {
    fn new(last_updated_micros: i64) -> Self {
        Meta { last_updated: format_utc(last_updated_micros, UtcSuffix::Z), source: JHE_SOURCE_URI }
    }
}

#[derive(Debug, Clone, Serialize)]
struct SystemValue<'a> {
    #[serde(skip_serializing_if = "is_empty")]
    system: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    value: &'a str,
}

fn identifier_elements(identifiers: &[Identifier]) -> Vec<SystemValue<'_>> {
    identifiers
        .iter()
        .filter(|identifier| !(identifier.system.is_empty() && identifier.value.is_empty()))
        .map(|identifier| SystemValue { system: &identifier.system, value: &identifier.value })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
struct CodingElement<'a> {
    #[serde(skip_serializing_if = "is_empty")]
    system: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    code: &'a str,
    #[serde(skip_serializing_if = "is_empty")]
    display: &'a str,
}

/// `{"coding": [...]}`
#[derive(Debug, Clone, Serialize)]
struct CodeableConcept<'a> {
    coding: [CodingElement<'a>; 1],
}

impl CodeableConcept<'static> {
    fn model(code: &'static str) -> Self {
        CodeableConcept { coding: [CodingElement { system: MODEL_CODE_SYSTEM, code, display: "" }] }
    }
}

#[derive(Debug, Clone, Serialize)]
struct HumanName<'a> {
    #[serde(skip_serializing_if = "is_empty")]
    family: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    given: Vec<&'a str>,
}

/// `[{"family", "given": [given]}]`, or nothing when both are empty.
fn names<'a>(family: &'a str, given: &'a str) -> Vec<HumanName<'a>> {
    if family.is_empty() && given.is_empty() {
        return Vec::new();
    }
    let given = if given.is_empty() { Vec::new() } else { vec![given] };
    vec![HumanName { family, given }]
}

#[derive(Debug, Clone, Serialize)]
struct Reference {
    reference: String,
}

#[derive(Debug, Clone, Serialize)]
struct Subject {
    reference: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    identifier: Option<JheUserIdentifier>,
}

/// The patient's jheUserId, as a string (FHIR `Identifier.value`).
#[derive(Debug, Clone, Serialize)]
struct JheUserIdentifier {
    system: &'static str,
    value: String,
}

#[derive(Debug, Clone, Serialize)]
struct Period {
    start: String,
    end: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Attachment {
    content_type: &'static str,
    data: String,
}

/// A FHIR Observation rendered from an [`ObservationRecord`] (§6.5).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservationResource<'a> {
    meta: Meta,
    id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    identifier: Vec<SystemValue<'a>>,
    status: &'static str,
    code: CodeableConcept<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effective_period: Option<Period>,
    subject: Subject,
    value_attachment: Attachment,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<Reference>,
    resource_type: &'static str,
}

/// Renders a stored observation. `coding_display` is the code's text from the code table (`display` is left out
/// when it is `None` or empty). `valueAttachment.data` is the base64 of `omh_json` exactly as uploaded; `status` is
/// always `final`; `subject.identifier` (the jheUserId) only when the patient has a user.
pub fn observation<'a>(record: &'a ObservationRecord, coding_display: Option<&'a str>) -> ObservationResource<'a> {
    let effective = record.effective;
    let (effective_date_time, effective_period) = match effective.end_micros {
        None => (Some(format_utc(effective.start_micros, UtcSuffix::Z)), None),
        Some(end) => (
            None,
            Some(Period {
                start: format_utc(effective.start_micros, UtcSuffix::Z),
                end: format_utc(end, UtcSuffix::Z),
            }),
        ),
    };
    ObservationResource {
        meta: Meta::new(record.last_updated_micros),
        id: record.id.to_string(),
        identifier: identifier_elements(&record.identifiers),
        status: "final",
        code: CodeableConcept {
            coding: [CodingElement {
                system: &record.coding_system,
                code: &record.coding_code,
                display: coding_display.unwrap_or_default(),
            }],
        },
        effective_date_time,
        effective_period,
        subject: Subject {
            reference: format!("Patient/{}", record.patient_id),
            identifier: record
                .jhe_user_id
                .map(|user_id| JheUserIdentifier { system: JHE_USER_ID_SYSTEM, value: user_id.to_string() }),
        },
        value_attachment: Attachment { content_type: "application/json", data: BASE64.encode(&record.omh_json) },
        device: record.data_source_id.map(|id| Reference { reference: format!("Device/{id}") }),
        resource_type: "Observation",
    }
}

/// The short body the reference answers a *patient* caller with after a single create (§6.5): `meta.lastUpdated`
/// here is Python's `isoformat()` (`+00:00`), and there is no `display`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedObservationSummary<'a> {
    resource_type: &'static str,
    id: String,
    status: &'static str,
    meta: LastUpdatedOnly,
    subject: Reference,
    code: CodeableConcept<'a>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct LastUpdatedOnly {
    last_updated: String,
}

pub fn created_observation_summary(record: &ObservationRecord) -> CreatedObservationSummary<'_> {
    CreatedObservationSummary {
        resource_type: "Observation",
        id: record.id.to_string(),
        status: "final",
        meta: LastUpdatedOnly { last_updated: format_utc(record.last_updated_micros, UtcSuffix::Offset) },
        subject: Reference { reference: format!("Patient/{}", record.patient_id) },
        code: CodeableConcept {
            coding: [CodingElement { system: &record.coding_system, code: &record.coding_code, display: "" }],
        },
    }
}

#[derive(Debug, Clone, Serialize)]
struct Telecom<'a> {
    system: &'static str,
    value: &'a str,
    #[serde(rename = "use")]
    use_: &'static str,
}

/// A FHIR Patient (§6.5).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PatientResource<'a> {
    id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    identifier: Vec<SystemValue<'a>>,
    meta: Meta,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    name: Vec<HumanName<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    birth_date: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    telecom: Vec<Telecom<'a>>,
    resource_type: &'static str,
}

pub fn patient(row: &PatientRow) -> PatientResource<'_> {
    let telecom = [("phone", &row.telecom_phone, "mobile"), ("email", &row.email, "home")]
        .into_iter()
        .filter_map(|(system, value, use_)| {
            value.as_deref().filter(|value| !value.is_empty()).map(|value| Telecom { system, value, use_ })
        })
        .collect();
    PatientResource {
        id: row.id.to_string(),
        identifier: identifier_elements(&row.identifiers),
        meta: Meta::new(row.last_updated_micros),
        name: names(&row.name_family, &row.name_given),
        birth_date: row.birth_date.map(|date| date.format("%Y-%m-%d").to_string()),
        telecom,
        resource_type: "Patient",
    }
}

/// A FHIR Group: a study (§6.5).
#[derive(Debug, Clone, Serialize)]
pub struct GroupResource<'a> {
    id: String,
    membership: &'static str,
    meta: Meta,
    #[serde(skip_serializing_if = "is_empty")]
    name: &'a str,
    #[serde(rename = "type")]
    kind: CodeableConcept<'static>,
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
}

pub fn group(row: &StudyRow) -> GroupResource<'_> {
    GroupResource {
        id: row.id.to_string(),
        membership: "enumerated",
        meta: Meta::new(row.last_updated_micros),
        name: &row.name,
        kind: CodeableConcept::model("study"),
        resource_type: "Group",
    }
}

/// A FHIR Organization or Device: id, meta, name and a model `type` coding (§6.5).
#[derive(Debug, Clone, Serialize)]
pub struct NamedModelResource<'a> {
    id: String,
    meta: Meta,
    #[serde(skip_serializing_if = "is_empty")]
    name: &'a str,
    #[serde(rename = "type")]
    kind: CodeableConcept<'static>,
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
}

pub fn organization(row: &OrganizationRow) -> NamedModelResource<'_> {
    NamedModelResource {
        id: row.id.to_string(),
        meta: Meta::new(row.last_updated_micros),
        name: &row.name,
        kind: CodeableConcept::model("organization"),
        resource_type: "Organization",
    }
}

pub fn device(row: &DataSourceRow) -> NamedModelResource<'_> {
    NamedModelResource {
        id: row.id.to_string(),
        meta: Meta::new(row.last_updated_micros),
        name: row.name.as_deref().unwrap_or_default(),
        kind: CodeableConcept::model("data-source"),
        resource_type: "Device",
    }
}

/// A FHIR Practitioner (§6.5).
#[derive(Debug, Clone, Serialize)]
pub struct PractitionerResource<'a> {
    id: String,
    meta: Meta,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    name: Vec<HumanName<'a>>,
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
}

pub fn practitioner(row: &PractitionerRow) -> PractitionerResource<'_> {
    PractitionerResource {
        id: row.id.to_string(),
        meta: Meta::new(row.last_updated_micros),
        name: names(&row.name_family, &row.name_given),
        resource_type: "Practitioner",
    }
}
