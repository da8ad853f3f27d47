use crate::ErrorKind;

/// Why an uploaded Observation or Bundle was refused. Every message starts with the FHIR path it is about.
///
/// All of these are client errors (HTTP 400 in the reference, §6.7–§6.8); the conflicts (409), permission failures
/// (403) and OMH schema failures (422) of §6.7 need the database or the schemas and are raised by ingest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirError {
    #[error("{path}: the body is {size} bytes; at most {limit} bytes are accepted")]
    TooLarge { path: &'static str, size: usize, limit: usize },
    #[error("{path}: not valid JSON: {detail}")]
    Json { path: &'static str, detail: String },
    /// The element breaks a FHIR R5 structural rule (unknown element, wrong JSON type, missing required element,
    /// or a reference that is not `Patient/<id>` / `Device/<id>`).
    #[error("{path}: {rule}")]
    Invalid { path: String, rule: String },
    /// No coding of a jhe-native system: the reference would store it as a generic (imported) resource, which needs a
    /// FhirSource; jhe answers 400.
    #[error(
        "{path}: no coding with system https://w3id.org/openmhealth or https://w3id.org/ieee1752; \
         only Open mHealth / IEEE 1752 observations can be uploaded"
    )]
    NotOpenMhealth { path: String },
    #[error("{path}: exactly one Code must be provided, found {count} codings")]
    CodingCount { path: String, count: usize },
    #[error("{path}: valueAttachment.data must be Base 64 Encoded Binary JSON ({reason})")]
    Attachment { path: String, reason: String },
    /// The batch pre-check of §6.8: the whole Bundle is refused when one entry lacks attachment data.
    #[error("{path}: resource.valueAttachment.data must be not null")]
    BundleEntryWithoutData { path: String },
}

impl FhirError {
    /// The kind the API turns into a status: always a client error (400).
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }

    pub(super) fn invalid(path: impl Into<String>, rule: impl Into<String>) -> Self {
        FhirError::Invalid { path: path.into(), rule: rule.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_start_with_the_path() {
        let error = FhirError::invalid("Observation.subject.reference", "expected \"Patient/<id>\"");
        assert_eq!(error.to_string(), "Observation.subject.reference: expected \"Patient/<id>\"");
        assert_eq!(error.kind(), ErrorKind::InvalidInput);
        let error = FhirError::CodingCount { path: "Observation.code.coding".into(), count: 2 };
        assert!(error.to_string().starts_with("Observation.code.coding: exactly one Code"));
    }
}
