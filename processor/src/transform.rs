//! Decode → validate → check against the control plane: turns consumed log records into observation records or
//! dead-letter reasons. Pure CPU work over one control-plane snapshot; runs on a blocking thread.
//!
//! [`Checker`] checks many records in a row: it remembers the parsed schema id of the last code (records come in
//! runs of one code) and leaves the data point where it is, in the record's value ([`Checked::omh`]), for the
//! file builder to copy straight from there.

use jhe_catalog::ControlPlaneSnapshot;
use jhe_eventlog::Consumed;
use jhe_eventlog::message::{self, FORMAT_OBSERVATION_V1, HEADER_FORMAT, ObservationMessage, dead_letter};
use jhe_schemas::omh::{SchemaId, Validators};
use jhe_schemas::{Identifier, ObservationRecord};
use std::ops::Range;

/// Why a record goes to the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// One of [`dead_letter`]'s `REASON_*` codes.
    pub code: &'static str,
    pub reason: String,
    /// The observation id, when the message had one (its identifier claims are released).
    pub observation_id: Option<i64>,
}

impl Reject {
    fn new(code: &'static str, reason: impl Into<String>, observation_id: Option<i64>) -> Self {
        Self { code, reason: reason.into(), observation_id }
    }
}

/// The outcome for one consumed record.
pub type Transformed = Result<ObservationRecord, Reject>;

/// A record that passed every check, with its data point left in the consumed value.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// Everything but `omh_json`, which is empty.
    pub record: ObservationRecord,
    /// Where the OMH data point (`omh_json`) lies in the consumed record's value.
    pub omh: Range<usize>,
}

/// Checks records one after another against one control-plane snapshot.
#[derive(Debug)]
pub struct Checker<'a> {
    snapshot: &'a ControlPlaneSnapshot,
    validators: &'a Validators,
    now_micros: i64,
    /// The last code and its parsed schema id (parsing allocates three strings).
    schema: Option<(String, SchemaId)>,
}

impl<'a> Checker<'a> {
    pub fn new(snapshot: &'a ControlPlaneSnapshot, validators: &'a Validators, now_micros: i64) -> Self {
        Self { snapshot, validators, now_micros, schema: None }
    }

    /// Checks one record as ingest would, against the control plane as it is now (consent at processing time).
    pub fn check(&mut self, consumed: &Consumed) -> Result<Checked, Reject> {
        check(consumed, self.snapshot, self.validators, self.now_micros, &mut self.schema)
    }
}

/// Checks one record as ingest would, against the control plane as it is now (consent at processing time).
pub fn transform(
    consumed: &Consumed,
    snapshot: &ControlPlaneSnapshot,
    validators: &Validators,
    now_micros: i64,
) -> Transformed {
    let Checked { mut record, omh } = check(consumed, snapshot, validators, now_micros, &mut None)?;
    // `omh` lies within the value (see `check`), and the value is UTF-8 there: it was parsed as JSON text
    record.omh_json = String::from_utf8_lossy(consumed.value.get(omh).unwrap_or_default()).into_owned();
    Ok(record)
}

fn check(
    consumed: &Consumed,
    snapshot: &ControlPlaneSnapshot,
    validators: &Validators,
    now_micros: i64,
    schema: &mut Option<(String, SchemaId)>,
) -> Result<Checked, Reject> {
    if let Some(format) = consumed.header(HEADER_FORMAT)
        && format != FORMAT_OBSERVATION_V1.as_bytes()
    {
        let shown = String::from_utf8_lossy(format);
        return Err(Reject::new(
            dead_letter::REASON_INVALID_MESSAGE,
            format!("header {HEADER_FORMAT}: unknown format {shown:?}; expected {FORMAT_OBSERVATION_V1:?}"),
            None,
        ));
    }
    let message = ObservationMessage::decode(&consumed.value)
        .map_err(|reason| Reject::new(dead_letter::REASON_INVALID_MESSAGE, reason, None))?;
    let id = match message.id {
        Some(id) if id > 0 => id,
        Some(id) => {
            return Err(Reject::new(
                dead_letter::REASON_INVALID_MESSAGE,
                format!("id: {id} is not a positive integer"),
                None,
            ));
        }
        None => message::gateway_observation_id(consumed.partition, consumed.offset).ok_or_else(|| {
            Reject::new(dead_letter::REASON_INVALID_MESSAGE, "id: missing, and the offset is out of range", None)
        })?,
    };
    let reject = |code: &'static str, reason: String| Reject::new(code, reason, Some(id));

    let Some(patient) = snapshot.patient(message.patient) else {
        return Err(reject(
            dead_letter::REASON_UNKNOWN_PATIENT,
            format!("patient: {} does not exist", message.patient),
        ));
    };
    if let Some(device) = message.device
        && !matches!(snapshot.data_source_type(device), Some("personal_device" | "device"))
    {
        return Err(reject(
            dead_letter::REASON_UNKNOWN_DEVICE,
            format!("device: data source {device} does not exist or is not a personal device"),
        ));
    }
    let (system, code) = (message.code.system.as_ref(), message.code.code.as_ref());
    let Some(code_id) = snapshot.code_id(system, code) else {
        return Err(reject(dead_letter::REASON_UNKNOWN_CODE, format!("code: {system}|{code} is not a known code")));
    };
    if !snapshot.is_consented(message.patient, code_id) {
        return Err(reject(
            dead_letter::REASON_NOT_CONSENTED,
            format!("patient {} does not consent to sharing {code} with any study", message.patient),
        ));
    }
    let schema_id: &SchemaId = match schema {
        Some((known, schema_id)) if known == code => schema_id,
        _ => {
            let parsed: SchemaId = code.parse().map_err(|error| {
                reject(dead_letter::REASON_INVALID_OMH, format!("code: {code}: no schema ({error})"))
            })?;
            &schema.insert((code.to_owned(), parsed)).1
        }
    };
    let omh_json = message.omh.get();
    let validated = validators
        .validate_data_point_as(omh_json.as_bytes(), schema_id)
        .map_err(|error| reject(dead_letter::REASON_INVALID_OMH, format!("omh: {error}")))?;
    // The data point is a slice of the value (the message borrows it), so its place there is kept instead of a copy.
    // Were it ever copied, the range would fall outside the value (no other allocation overlaps it) and be refused.
    let start = (omh_json.as_ptr() as usize).wrapping_sub(consumed.value.as_ptr() as usize);
    let omh = start..start.wrapping_add(omh_json.len());
    if omh.start > omh.end || consumed.value.get(omh.clone()).is_none() {
        return Err(reject(
            dead_letter::REASON_INVALID_MESSAGE,
            "omh: the data point is not part of the message".into(),
        ));
    }
    let last_updated_micros = message
        .received_at_micros
        .or(consumed.timestamp_millis.map(|millis| millis.saturating_mul(1000)))
        .unwrap_or(now_micros);
    let record = ObservationRecord {
        id,
        patient_id: message.patient,
        jhe_user_id: patient.user_id,
        data_source_id: message.device,
        coding_system: system.to_owned(),
        coding_code: code.to_owned(),
        effective: validated.effective,
        last_updated_micros,
        identifiers: message
            .identifiers
            .iter()
            .map(|i| Identifier { system: i.system.to_string(), value: i.value.to_string() })
            .collect(),
        omh_json: String::new(),
        values: validated.values,
    };
    Ok(Checked { record, omh })
}
