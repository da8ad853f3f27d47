//! The observation as every stage sees it once it has been validated: what the ingest API produces, the
//! processor turns into Arrow rows and the query layer turns back into FHIR. Timestamps are microseconds since
//! the Unix epoch in UTC; the original offsets stay in `omh_json`, which is kept exactly as uploaded.

use std::borrow::Cow;

/// `system|value` of an identifier.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

/// When an observation happened: an instant (`end` is `None`) or an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveTime {
    pub start_micros: i64,
    pub end_micros: Option<i64>,
}

/// The typed values extracted for the common data types, so queries need not parse the OMH JSON.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeasuredValues {
    /// The main value (heart rate, blood glucose, body temperature, step count, …) and its unit (borrowed, no
    /// allocation, when it is a unit the schemas name).
    pub value: Option<f64>,
    pub unit: Option<Cow<'static, str>>,
    /// Blood pressure, in `unit`.
    pub systolic: Option<f64>,
    pub diastolic: Option<f64>,
}

/// What validating an Open mHealth / IEEE 1752 data point yields.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedDataPoint {
    /// `https://w3id.org/openmhealth` or `https://w3id.org/ieee1752`
    pub coding_system: &'static str,
    /// `<namespace>:<name>:<version>`, e.g. `omh:heart-rate:2.0`: borrowed for the builtin types (no
    /// allocation), owned for an operator's extra types.
    pub coding_code: Cow<'static, str>,
    pub effective: EffectiveTime,
    pub values: MeasuredValues,
}

/// One stored observation: a validated data point with who and what it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservationRecord {
    /// Unique across ingest replicas (64-bit).
    pub id: i64,
    pub patient_id: i64,
    pub jhe_user_id: Option<i64>,
    pub data_source_id: Option<i64>,
    pub coding_system: String,
    pub coding_code: String,
    pub effective: EffectiveTime,
    pub last_updated_micros: i64,
    pub identifiers: Vec<Identifier>,
    /// The OMH data point exactly as uploaded (decoded from the FHIR attachment).
    pub omh_json: String,
    pub values: MeasuredValues,
}
