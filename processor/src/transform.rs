//! Decode → validate → check against the control plane: turns consumed log records into observation records or
//! dead-letter reasons. Pure CPU work over one control-plane snapshot; runs on a blocking thread.

use jhe_catalog::ControlPlaneSnapshot;
use jhe_eventlog::Consumed;
use jhe_eventlog::message::{self, FORMAT_OBSERVATION_V1, HEADER_FORMAT, ObservationMessage, dead_letter};
use jhe_schemas::omh::{SchemaId, Validators};
use jhe_schemas::{Identifier, ObservationRecord};

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

/// Checks one record as ingest would, against the control plane as it is now (consent at processing time).
pub fn transform(
    consumed: &Consumed,
    snapshot: &ControlPlaneSnapshot,
    validators: &Validators,
    now_micros: i64,
) -> Transformed {
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
    let schema_id: SchemaId = code
        .parse()
        .map_err(|error| reject(dead_letter::REASON_INVALID_OMH, format!("code: {code}: no schema ({error})")))?;
    let omh_json = message.omh.get();
    let validated = validators
        .validate_data_point_as(omh_json.as_bytes(), &schema_id)
        .map_err(|error| reject(dead_letter::REASON_INVALID_OMH, format!("omh: {error}")))?;
    let last_updated_micros = message
        .received_at_micros
        .or(consumed.timestamp_millis.map(|millis| millis.saturating_mul(1000)))
        .unwrap_or(now_micros);
    Ok(ObservationRecord {
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
        omh_json: omh_json.to_owned(),
        values: validated.values,
    })
}
