//! Domain types shared by every jhe stage: roles and permissions, organization types, user kinds, error kinds.
//!
//! This crate does no I/O. It also holds the observation model: Open mHealth / IEEE 1752 validation, the FHIR R5
//! mapping and the Arrow schema of the observation table.

mod access;
mod error_kind;
pub mod fhir;
mod observation;
pub mod omh;
pub mod table;
mod vocab;

pub use access::{Permission, Role, role_allows};
pub use error_kind::ErrorKind;
pub use observation::{EffectiveTime, Identifier, MeasuredValues, ObservationRecord, ValidatedDataPoint};
pub use vocab::{
    DataSourceType, InvitationStatus, ORGANIZATION_TYPES, SettingValueType, UserType, organization_type_label,
};
