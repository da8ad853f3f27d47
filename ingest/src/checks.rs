//! The per-observation checks of `jhe-compat.md` §6.7, in the reference's order, against one control-plane
//! snapshot. Step 5 (identifiers) needs the database, so an entry that fails a later step remembers its
//! identifiers: it still answers 409 when one of them is taken.

use jhe_catalog::{Caller, ControlPlaneSnapshot};
use jhe_schemas::fhir::{FhirError, ObservationUpload};
use jhe_schemas::omh::{SchemaId, SchemaIdError, Validators};
use jhe_schemas::{ErrorKind, Identifier, ObservationRecord};

/// A refused observation: the HTTP status of the reference and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub diagnostics: String,
}

impl Rejection {
    fn new(status: u16, diagnostics: impl Into<String>) -> Self {
        Self { status, diagnostics: diagnostics.into() }
    }

    pub(crate) fn duplicate_identifier(system: &str, value: &str) -> Self {
        Self::new(409, format!("Identifier already exists: system={system} value={value}"))
    }

    pub(crate) fn internal() -> Self {
        Self::new(500, "internal error; the server log has the details")
    }

    /// The error kind of this status (for the api's single place that maps kinds to responses).
    pub fn kind(&self) -> ErrorKind {
        match self.status {
            400 => ErrorKind::InvalidInput,
            403 => ErrorKind::Forbidden,
            409 => ErrorKind::Conflict,
            422 => ErrorKind::Unprocessable,
            503 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

impl From<FhirError> for Rejection {
    fn from(error: FhirError) -> Self {
        Self::new(400, error.to_string())
    }
}

/// An observation that passed every check but the identifiers; its id is assigned at commit.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) record: ObservationRecord,
    pub(crate) code_text: Option<String>,
}

#[derive(Debug)]
pub(crate) enum Checked {
    /// Refused before step 5.
    Rejected(Rejection),
    /// Refused after step 5: 409 wins if an identifier is taken.
    FailedAfterIdentifiers {
        identifiers: Vec<(String, String)>,
        rejection: Rejection,
    },
    Ready(Box<Prepared>),
}

/// The schema ids of the codes one request uploads (a Bundle of wearable data has a handful of codes among
/// thousands of entries): each code is parsed once.
#[derive(Debug, Default)]
pub(crate) struct SchemaIds {
    parsed: Vec<(String, SchemaId)>,
}

impl SchemaIds {
    /// Codes beyond this many are parsed each time (the list is searched linearly).
    const MAX: usize = 32;

    fn with<R>(&mut self, code: &str, work: impl FnOnce(&SchemaId) -> R) -> Result<R, SchemaIdError> {
        if let Some((_, id)) = self.parsed.iter().find(|(known, _)| known == code) {
            return Ok(work(id));
        }
        let id: SchemaId = code.parse()?;
        let answer = work(&id);
        if self.parsed.len() < Self::MAX {
            self.parsed.push((code.to_owned(), id));
        }
        Ok(answer)
    }
}

/// An entry refused after step 5 keeps its identifiers (moved, not copied: this is the only place they go).
fn late(identifiers: Vec<Identifier>, rejection: Rejection) -> Checked {
    let identifiers = identifiers.into_iter().map(|identifier| (identifier.system, identifier.value)).collect();
    Checked::FailedAfterIdentifiers { identifiers, rejection }
}

/// Runs steps 1–4 and 6–9 of §6.7 for one parsed upload. The upload is taken apart, not copied: its identifiers,
/// coding and data point move into the record.
pub(crate) fn check(
    snapshot: &ControlPlaneSnapshot,
    validators: &Validators,
    schema_ids: &mut SchemaIds,
    caller: &Caller,
    upload: Result<ObservationUpload, FhirError>,
) -> Checked {
    // (1)–(2) parse, subject syntax
    let mut upload = match upload {
        Ok(upload) => upload,
        Err(error) => return Checked::Rejected(error.into()),
    };
    let patient_id = upload.subject_patient_id;
    let Some(patient) = snapshot.patient(patient_id) else {
        return Checked::Rejected(Rejection::new(400, format!("Patient id={patient_id} can not be found.")));
    };
    // (3) the caller may write for this patient
    if caller.is_practitioner() {
        let shares_organization = caller.is_superuser
            || caller.memberships.iter().any(|(organization, _)| patient.organization_ids.contains(organization));
        if !shares_organization {
            return Checked::Rejected(Rejection::new(403, "Current user doesn't have access to the Patient."));
        }
    } else {
        match caller.patient_id {
            None => return Checked::Rejected(Rejection::new(403, "Current user is not a Patient.")),
            Some(own) if own != patient_id => {
                return Checked::Rejected(Rejection::new(403, "The Subject Patient does not match the current user."));
            }
            Some(_) => {}
        }
    }
    let identifiers = std::mem::take(&mut upload.identifiers);
    let (device, coding, omh) = upload.into_deferred();
    // (4) a personal-device data source
    let device_id = match device {
        Ok(id) => id,
        Err(error) => return Checked::Rejected(error.into()),
    };
    if !matches!(snapshot.data_source_type(device_id), Some("personal_device" | "device")) {
        return Checked::Rejected(Rejection::new(400, format!("Device Data Source id={device_id} can not be found.")));
    }
    // (5) identifiers: checked by the caller against the database
    // (6) exactly one known code
    let coding = match coding {
        Ok(coding) => coding,
        Err(error) => return late(identifiers, error.into()),
    };
    let Some(code_id) = snapshot.code_id(&coding.system, &coding.code) else {
        let rejection = Rejection::new(400, format!("Code not found: system={} code={}", coding.system, coding.code));
        return late(identifiers, rejection);
    };
    // (7) consented for at least one study
    if !snapshot.is_consented(patient_id, code_id) {
        let rejection = Rejection::new(
            403,
            format!(
                "Observation data with coding_system={} coding_code={} has not been consented for any studies by \
                 this Patient.",
                coding.system, coding.code
            ),
        );
        return late(identifiers, rejection);
    }
    // (8) base64 JSON
    let omh = match omh {
        Ok(omh) => omh,
        Err(error) => return late(identifiers, error.into()),
    };
    // (9) OMH validation: the header against IEEE header 1.0, the body against the *code's* schema (the header's
    // schema_id is not cross-checked, as in the reference)
    let validated = match schema_ids.with(&coding.code, |id| validators.validate_data_point_as(omh.json.as_bytes(), id))
    {
        Ok(Ok(validated)) => validated,
        Ok(Err(error)) => return late(identifiers, Rejection::new(422, format!("omh_data: {error}"))),
        Err(error) => {
            let rejection = Rejection::new(422, format!("code {}: no schema for this code ({error})", coding.code));
            return late(identifiers, rejection);
        }
    };
    // stored without surrounding whitespace; the decoded buffer itself when there is none (the usual case)
    let omh_json = if omh.json.trim().len() == omh.json.len() { omh.json } else { omh.json.trim().to_owned() };
    let record = ObservationRecord {
        id: 0,
        patient_id,
        jhe_user_id: patient.user_id,
        data_source_id: Some(device_id),
        coding_system: coding.system,
        coding_code: coding.code,
        effective: validated.effective,
        last_updated_micros: now_micros(),
        identifiers,
        omh_json,
        values: validated.values,
    };
    Checked::Ready(Box::new(Prepared { record, code_text: snapshot.code_text(code_id).map(str::to_owned) }))
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}
