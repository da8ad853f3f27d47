//! The observation message: what ingest produces to the observation topic, and what a gateway may produce there
//! directly. Documented for gateway authors in `docs/pipeline.md`; this module is the definition.
//!
//! * **Key**: the patient id in decimal ASCII (`b"40001"`), so one patient's records stay in order in one partition.
//! * **Value**: one JSON object (UTF-8):
//!
//! ```json
//! {"id": 4398046511105, "patient": 40001, "device": 70001,
//!  "code": {"system": "https://w3id.org/openmhealth", "code": "omh:heart-rate:2.0"},
//!  "identifiers": [{"system": "https://example.org/uuid", "value": "6f2c…"}],
//!  "received_at_micros": 1764352496123456,
//!  "omh": {"header": {…}, "body": {…}}}
//! ```
//!   `id` is the observation id ingest assigned (omit it when producing directly: the processor then derives one
//!   from the record's partition and offset, see [`gateway_observation_id`]); `device` is the data source id
//!   (optional); `identifiers` defaults to none; `received_at_micros` (the observation's `lastUpdated`) defaults to
//!   the record's timestamp; `omh` is the Open mHealth data point, stored byte for byte as it appears here.
//! * **Header** [`HEADER_FORMAT`] = [`FORMAT_OBSERVATION_V1`] (optional for gateways; any other value is rejected).
//!
//! Dead-letter records carry the original key and value plus the [`dead_letter`] headers.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Header naming the value's format.
pub const HEADER_FORMAT: &str = "jhe-format";
/// The only format so far.
pub const FORMAT_OBSERVATION_V1: &str = "observation/1";

/// Ids derived for records without an `id` live at and above this bit, apart from the ids ingest hands out.
pub const GATEWAY_ID_BASE: i64 = 1 << 62;
const GATEWAY_PARTITION_SHIFT: u32 = 40;

/// The observation id of a record produced without one: unique per (partition, offset) of the observation topic and
/// the same every time the record is processed again (after a crash, before its file was published).
/// `None` when the partition or offset is out of the encodable range (2^22 partitions, 2^40 offsets).
pub fn gateway_observation_id(partition: i32, offset: i64) -> Option<i64> {
    if !(0..1 << 22).contains(&partition) || !(0..1 << GATEWAY_PARTITION_SHIFT).contains(&offset) {
        return None;
    }
    Some(GATEWAY_ID_BASE | (i64::from(partition) << GATEWAY_PARTITION_SHIFT) | offset)
}

/// The observation code (`Observation.code.coding[0]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCode<'a> {
    #[serde(borrow)]
    pub system: Cow<'a, str>,
    #[serde(borrow)]
    pub code: Cow<'a, str>,
}

/// An observation identifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageIdentifier<'a> {
    #[serde(borrow)]
    pub system: Cow<'a, str>,
    #[serde(borrow)]
    pub value: Cow<'a, str>,
}

/// One observation, borrowed from the message bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObservationMessage<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub patient: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<i64>,
    #[serde(borrow)]
    pub code: MessageCode<'a>,
    #[serde(default, borrow, skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<MessageIdentifier<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at_micros: Option<i64>,
    #[serde(borrow)]
    pub omh: &'a RawValue,
}

impl<'a> ObservationMessage<'a> {
    /// Decodes a message value.
    pub fn decode(value: &'a [u8]) -> Result<Self, String> {
        serde_json::from_slice(value).map_err(|error| format!("not an observation message: {error}"))
    }

    /// Encodes this message as a record value.
    pub fn encode(&self) -> Vec<u8> {
        // Serializing borrowed strings, integers and an already-valid RawValue cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The record key of this message.
    pub fn key(&self) -> Vec<u8> {
        patient_key(self.patient)
    }
}

/// The fields of a message other than the data point, for [`encode_observation`].
#[derive(Debug, Clone, Serialize)]
pub struct MessageHead<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    pub patient: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<i64>,
    pub code: MessageCode<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub identifiers: Vec<MessageIdentifier<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub received_at_micros: Option<i64>,
}

/// Encodes a message around `omh_json`, which the caller has already validated as JSON (ingest validated the data
/// point): the bytes are spliced in as they are, with no second parse.
pub fn encode_observation(head: &MessageHead<'_>, omh_json: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(omh_json.len() + 256);
    // Serializing integers and strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, head);
    out.pop(); // the closing brace
    out.extend_from_slice(b",\"omh\":");
    out.extend_from_slice(omh_json.as_bytes());
    out.push(b'}');
    out
}

/// The record key for a patient id.
pub fn patient_key(patient_id: i64) -> Vec<u8> {
    patient_id.to_string().into_bytes()
}

/// Headers of dead-letter records.
pub mod dead_letter {
    /// Why the record was rejected, for people (`body.heart_rate.unit: expected "beats/min"`).
    pub const REASON: &str = "jhe-reason";
    /// The rejection class, for machines: one of the `REASON_*` constants.
    pub const REASON_CODE: &str = "jhe-reason-code";
    pub const SOURCE_TOPIC: &str = "jhe-source-topic";
    pub const SOURCE_PARTITION: &str = "jhe-source-partition";
    pub const SOURCE_OFFSET: &str = "jhe-source-offset";

    /// The value is not an observation message (bad JSON, missing fields, unknown format header).
    pub const REASON_INVALID_MESSAGE: &str = "invalid_message";
    /// The OMH data point fails validation.
    pub const REASON_INVALID_OMH: &str = "invalid_omh";
    /// The patient does not exist (any more).
    pub const REASON_UNKNOWN_PATIENT: &str = "unknown_patient";
    /// The device is not a personal-device data source.
    pub const REASON_UNKNOWN_DEVICE: &str = "unknown_device";
    /// The code is not a known scope code.
    pub const REASON_UNKNOWN_CODE: &str = "unknown_code";
    /// The patient does not (any longer) consent to sharing this code with any study.
    pub const REASON_NOT_CONSENTED: &str = "not_consented";
    /// An identifier already belongs to another observation.
    pub const REASON_DUPLICATE_IDENTIFIER: &str = "duplicate_identifier";

    /// Every reason code.
    pub const ALL_REASONS: &[&str] = &[
        REASON_INVALID_MESSAGE,
        REASON_INVALID_OMH,
        REASON_UNKNOWN_PATIENT,
        REASON_UNKNOWN_DEVICE,
        REASON_UNKNOWN_CODE,
        REASON_NOT_CONSENTED,
        REASON_DUPLICATE_IDENTIFIER,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_keeps_the_omh_bytes() {
        let omh = RawValue::from_string(r#"{"header": {"a": 1},  "body":{}}"#.to_owned()).unwrap();
        let message = ObservationMessage {
            id: Some(7),
            patient: 40001,
            device: Some(70001),
            code: MessageCode { system: "https://w3id.org/openmhealth".into(), code: "omh:heart-rate:2.0".into() },
            identifiers: vec![MessageIdentifier { system: "s".into(), value: "v".into() }],
            received_at_micros: Some(1),
            omh: &omh,
        };
        let bytes = message.encode();
        let decoded = ObservationMessage::decode(&bytes).unwrap();
        assert_eq!(decoded.omh.get(), r#"{"header": {"a": 1},  "body":{}}"#);
        assert_eq!(decoded.patient, 40001);
        assert_eq!(decoded.key(), b"40001");
    }

    #[test]
    fn spliced_encoding_decodes() {
        let head = MessageHead {
            id: Some(1),
            patient: 2,
            device: None,
            code: MessageCode { system: "s".into(), code: "c".into() },
            identifiers: vec![],
            received_at_micros: Some(3),
        };
        let bytes = encode_observation(&head, r#" {"header":{}} "#);
        let decoded = ObservationMessage::decode(&bytes).unwrap();
        assert_eq!(decoded.omh.get(), r#"{"header":{}}"#.trim());
        assert_eq!((decoded.id, decoded.patient, decoded.received_at_micros), (Some(1), 2, Some(3)));
    }

    #[test]
    fn gateway_ids_are_distinct_and_above_ingest_ids() {
        let a = gateway_observation_id(0, 0).unwrap();
        let b = gateway_observation_id(1, 0).unwrap();
        let c = gateway_observation_id(0, 1).unwrap();
        assert!(a >= GATEWAY_ID_BASE && a != b && a != c && b != c);
        assert_eq!(gateway_observation_id(-1, 0), None);
        assert_eq!(gateway_observation_id(0, 1 << 40), None);
    }

    #[test]
    fn rejects_unknown_fields_and_missing_omh() {
        assert!(ObservationMessage::decode(br#"{"patient":1,"code":{"system":"s","code":"c"}}"#).is_err());
        assert!(
            ObservationMessage::decode(br#"{"patient":1,"code":{"system":"s","code":"c"},"omh":{},"x":1}"#).is_err()
        );
    }
}
