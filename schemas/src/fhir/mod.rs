//! FHIR R5: the Observation shapes jhe accepts, and the resources, Bundles and outcomes it renders.
//!
//! Wire contract: `jhe-compat.md` §6.5–§6.10 (rendering), §6.7–§6.8 (uploads), §9.4 (effective time), with the
//! product decisions of `decisions.md` (no 500s for bad input, `device` emitted when known).
//!
//! * Uploads: [`parse_observation`] (single `POST /FHIR/R5/Observation`) and [`parse_bundle`] (batch/transaction
//!   `POST /FHIR/R5/`). Parsing never panics and never touches a database: the checks that need one (patient
//!   exists, caller may write, device is a personal device, identifiers unused, code known and consented, OMH schema)
//!   belong to ingest, which interleaves them with the deferred syntactic checks of [`ObservationUpload`] in the
//!   order of §6.7.
//! * Effective time is derived from the OMH body by [`crate::omh::Validators::validate_data_point`] (§9.4), once,
//!   for every stage.
//! * Rendering: [`render`] builds the six mapped resources, [`bundle`] the searchset and batch-response Bundles,
//!   [`outcome`] the OperationOutcome and [`capability`] the CapabilityStatement. Renderers return small `Serialize`
//!   structs (no `serde_json::Value` on the hot read path) whose key order is the reference's.

mod bundle_in;
mod error;
mod json;
mod observation_in;
mod time;

pub mod bundle;
pub mod capability;
pub mod outcome;
pub mod render;

pub use bundle_in::{BundleUpload, MAX_BUNDLE_BYTES, MAX_BUNDLE_ENTRIES, parse_bundle};
pub use error::FhirError;
pub use observation_in::{
    Coding, FhirEffective, MAX_IDENTIFIERS, MAX_OBSERVATION_BYTES, ObservationUpload, OmhPayload, parse_observation,
};

/// Coding system of Open mHealth data points; an uploaded Observation with such a coding is an OMH observation.
pub const OMH_CODING_SYSTEM: &str = "https://w3id.org/openmhealth";
/// Coding system of IEEE 1752 data points (`ieee:sleep-stage-summary:1.0`, …).
pub const IEEE_CODING_SYSTEM: &str = "https://w3id.org/ieee1752";
/// The coding systems that make an uploaded Observation a jhe-native one. The reference routes only
/// [`OMH_CODING_SYSTEM`] here (IEEE-coded uploads went to its generic store, where they needed a FhirSource); jhe
/// validates both namespaces, so it accepts both.
pub const UPLOAD_CODING_SYSTEMS: &[&str] = &[OMH_CODING_SYSTEM, IEEE_CODING_SYSTEM];
/// `meta.source` of every jhe-native resource, and the `_source` value that selects them.
pub const JHE_SOURCE_URI: &str = "https://jupyterhealth.org/jhe";
/// System of `Observation.subject.identifier`, whose value is the patient's jheUserId.
pub const JHE_USER_ID_SYSTEM: &str = "https://jupyterhealth.org/fhir/identifier/jhe-user-id";
/// System of the `type` coding of Group (`study`), Organization (`organization`) and Device (`data-source`).
pub const MODEL_CODE_SYSTEM: &str = "https://jupyterhealth.org/fhir/CodeSystem/model";
/// Prefix of the canonical URI of an imported FHIR source: `<prefix>/<id>`.
pub const FHIR_SOURCE_URI_PREFIX: &str = "https://jupyterhealth.org/fhir/fhir-source";
