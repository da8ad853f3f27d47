//! Authorization rules (jhe-compat §4 with the gaps of §13.2 closed). Handlers call these before acting.

use crate::error::{ApiError, ApiResult};
use jhe_catalog::Caller;
use jhe_schemas::{Permission, role_allows};
use sqlx::PgPool;

pub(crate) fn require_practitioner(caller: &Caller) -> ApiResult<()> {
    if caller.is_practitioner() {
        Ok(())
    } else {
        Err(ApiError::forbidden("This action is available to practitioners only."))
    }
}

pub(crate) fn require_superuser(caller: &Caller) -> ApiResult<()> {
    if caller.is_superuser { Ok(()) } else { Err(ApiError::permission_denied()) }
}

/// The caller must hold `permission` through their role in `organization_id` (or be a superuser).
pub(crate) fn require_permission(caller: &Caller, organization_id: i64, permission: Permission) -> ApiResult<()> {
    if role_allows(caller.role_in(organization_id), caller.is_superuser, permission) {
        Ok(())
    } else {
        Err(ApiError::permission_denied())
    }
}

/// The caller must be a practitioner with any role in `organization_id`, or a superuser; `denied` says why not.
pub(crate) fn require_member(caller: &Caller, organization_id: i64, denied: &str) -> ApiResult<()> {
    require_practitioner(caller)?;
    if caller.is_superuser || caller.role_in(organization_id).is_some() {
        Ok(())
    } else {
        Err(ApiError::forbidden(denied))
    }
}

/// The role the caller is shown as holding in an organization (`currentUserRole`).
pub(crate) fn current_user_role(caller: &Caller, organization_id: i64) -> Option<String> {
    match caller.role_in(organization_id) {
        Some(role) => Some(role.as_str().to_owned()),
        None if caller.is_superuser => Some("super_user".to_owned()),
        None => None,
    }
}

/// Whether the caller is a practitioner in at least one organization of the patient (superusers always are).
pub(crate) async fn practitioner_sees_patient(pool: &PgPool, caller: &Caller, patient_id: i64) -> ApiResult<bool> {
    if caller.is_superuser {
        return Ok(true);
    }
    let organizations = jhe_catalog::patient_organization_ids(pool, patient_id).await?;
    Ok(organizations.iter().any(|org| caller.role_in(*org).is_some()))
}
