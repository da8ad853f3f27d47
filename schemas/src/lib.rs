//! Domain types shared by every jhe stage: roles and permissions, organization types, user kinds, error kinds.
//!
//! This crate does no I/O. The observation model (Open mHealth validation, FHIR mapping, Arrow schema) joins it
//! in its own issue.

mod access;
mod error_kind;
mod vocab;

pub use access::{Permission, Role, role_allows};
pub use error_kind::ErrorKind;
pub use vocab::{
    DataSourceType, InvitationStatus, ORGANIZATION_TYPES, SettingValueType, UserType, organization_type_label,
};
