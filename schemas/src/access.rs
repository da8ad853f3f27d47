use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A practitioner's role in one organization. Reads are scoped by membership, never by role; writes are gated
/// by role (jhe-compat §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Member,
    Manager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Manager => "manager",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "member" => Ok(Role::Member),
            "manager" => Ok(Role::Manager),
            other => Err(format!("`{other}` is not a role; expected one of manager, member, viewer")),
        }
    }
}

/// The write permissions of jhe-compat §4.2 (`ROLE_PERMISSIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    PatientManageForOrganization,
    StudyManageForOrganization,
    OrganizationManageForPractitioners,
    OrganizationCreateTopLevel,
    ClientManage,
    DataSourceManage,
}

impl Permission {
    /// The name the reference exports to its web UI (`common/server-settings.js`).
    pub fn name(self) -> &'static str {
        match self {
            Permission::PatientManageForOrganization => "patient.manage_for_organization",
            Permission::StudyManageForOrganization => "study.manage_for_organization",
            Permission::OrganizationManageForPractitioners => "organization.manage_for_practitioners",
            Permission::OrganizationCreateTopLevel => "organization.create_top_level",
            Permission::ClientManage => "client.manage",
            Permission::DataSourceManage => "data_source.manage",
        }
    }
}

/// Whether a caller with `role` in the relevant organization (or a superuser) holds `permission`.
pub fn role_allows(role: Option<Role>, is_superuser: bool, permission: Permission) -> bool {
    if is_superuser {
        return true;
    }
    match permission {
        Permission::PatientManageForOrganization | Permission::StudyManageForOrganization => {
            matches!(role, Some(Role::Member | Role::Manager))
        }
        Permission::OrganizationManageForPractitioners => matches!(role, Some(Role::Manager)),
        Permission::OrganizationCreateTopLevel | Permission::ClientManage | Permission::DataSourceManage => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table_matches_reference() {
        use Permission::*;
        let table = [
            (PatientManageForOrganization, [false, true, true, true]),
            (StudyManageForOrganization, [false, true, true, true]),
            (OrganizationManageForPractitioners, [false, false, true, true]),
            (OrganizationCreateTopLevel, [false, false, false, true]),
            (ClientManage, [false, false, false, true]),
            (DataSourceManage, [false, false, false, true]),
        ];
        for (permission, expected) in table {
            let got = [
                role_allows(Some(Role::Viewer), false, permission),
                role_allows(Some(Role::Member), false, permission),
                role_allows(Some(Role::Manager), false, permission),
                role_allows(None, true, permission),
            ];
            assert_eq!(got, expected, "{}", permission.name());
            assert!(!role_allows(None, false, permission));
        }
    }

    #[test]
    fn role_parses_and_names_itself() {
        for role in [Role::Viewer, Role::Member, Role::Manager] {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("owner".parse::<Role>().unwrap_err().contains("manager, member, viewer"));
    }
}
