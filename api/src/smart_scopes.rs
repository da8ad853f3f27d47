//! SMART App Launch v2 scope parsing (issue 6): `patient/Observation.rs`, `user/*.cruds`,
//! `system/Patient.r?identifier=…`, and the v1 forms `.read`, `.write`, `.*`. Parsing only: enforcement is not
//! wired yet, so nothing outside the tests calls this module.
#![allow(dead_code)] // why: the parser lands before enforcement; remove when the Auth extractor uses it

use std::fmt;

/// Whose data a resource scope covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Context {
    Patient,
    User,
    System,
}

/// One SMART v2 permission letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

/// The `cruds` letters a scope grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Permissions {
    pub(crate) create: bool,
    pub(crate) read: bool,
    pub(crate) update: bool,
    pub(crate) delete: bool,
    pub(crate) search: bool,
}

impl Permissions {
    pub(crate) fn allows(&self, permission: Permission) -> bool {
        match permission {
            Permission::Create => self.create,
            Permission::Read => self.read,
            Permission::Update => self.update,
            Permission::Delete => self.delete,
            Permission::Search => self.search,
        }
    }
}

/// `<context>/<resource type or *>.<permissions>[?<query>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResourceScope {
    pub(crate) context: Context,
    /// `None` for `*`.
    pub(crate) resource_type: Option<String>,
    pub(crate) permissions: Permissions,
    /// v2 finer-grained constraints (`?category=vital-signs`), decoded; every one must hold.
    pub(crate) constraints: Vec<(String, String)>,
}

impl ResourceScope {
    /// Whether the scope grants `permission` on `resource_type`, ignoring `constraints` (the caller checks those
    /// against the resource).
    pub(crate) fn allows(&self, resource_type: &str, permission: Permission) -> bool {
        self.resource_type.as_deref().is_none_or(|own| own == resource_type) && self.permissions.allows(permission)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scope {
    Resource(ResourceScope),
    /// `openid`, `fhirUser`, `launch/patient`, `offline_access`, … kept verbatim.
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ScopeError {
    #[error("`{0}`: unknown context (expected patient, user or system)")]
    Context(String),
    #[error("`{0}`: not a FHIR resource type or `*`")]
    ResourceType(String),
    #[error("`{0}`: permissions must be `read`, `write`, `*` or the letters c, r, u, d, s once each in that order")]
    Permissions(String),
    #[error("`{0}`: malformed query constraint")]
    Constraint(String),
}

/// Parses one scope token. Tokens without a `/` and a `.` (and `launch/…`) are not resource scopes.
pub(crate) fn parse_scope(token: &str) -> Result<Scope, ScopeError> {
    let Some((context, rest)) = token.split_once('/') else {
        return Ok(Scope::Other(token.to_owned()));
    };
    let context = match context {
        "patient" => Context::Patient,
        "user" => Context::User,
        "system" => Context::System,
        "launch" => return Ok(Scope::Other(token.to_owned())),
        _ => return Err(ScopeError::Context(token.to_owned())),
    };
    let (body, query) = match rest.split_once('?') {
        Some((body, query)) => (body, Some(query)),
        None => (rest, None),
    };
    let Some((resource, permission_text)) = body.split_once('.') else {
        return Err(ScopeError::Permissions(token.to_owned()));
    };
    let resource_type = match resource {
        "*" => None,
        name if is_resource_type(name) => Some(name.to_owned()),
        _ => return Err(ScopeError::ResourceType(token.to_owned())),
    };
    let permissions = parse_permissions(permission_text).ok_or_else(|| ScopeError::Permissions(token.to_owned()))?;
    let constraints = match query {
        None => Vec::new(),
        Some("") => return Err(ScopeError::Constraint(token.to_owned())),
        Some(query) => {
            let pairs: Vec<(String, String)> =
                url::form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
            if pairs.iter().any(|(k, _)| k.is_empty()) {
                return Err(ScopeError::Constraint(token.to_owned()));
            }
            pairs
        }
    };
    Ok(Scope::Resource(ResourceScope { context, resource_type, permissions, constraints }))
}

/// Parses a space-separated `scope` parameter: the scopes that parse, and an error for each that does not.
pub(crate) fn parse_scopes(scope: &str) -> (Vec<Scope>, Vec<ScopeError>) {
    let mut scopes = Vec::new();
    let mut errors = Vec::new();
    for token in scope.split_ascii_whitespace() {
        match parse_scope(token) {
            Ok(parsed) => {
                if !scopes.contains(&parsed) {
                    scopes.push(parsed);
                }
            }
            Err(error) => errors.push(error),
        }
    }
    (scopes, errors)
}

fn is_resource_type(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

fn parse_permissions(text: &str) -> Option<Permissions> {
    let all = Permissions { create: true, read: true, update: true, delete: true, search: true };
    match text {
        // v1 forms, mapped as SMART v2 §"Scopes for requesting FHIR resources" says
        "read" => return Some(Permissions { read: true, search: true, ..Permissions::default() }),
        "write" => return Some(Permissions { create: true, update: true, delete: true, ..Permissions::default() }),
        "*" => return Some(all),
        "" => return None,
        _ => {}
    }
    let mut permissions = Permissions::default();
    let mut last = 0;
    for letter in text.chars() {
        let rank = "cruds".find(letter)? + 1;
        if rank <= last {
            return None; // out of order or repeated
        }
        last = rank;
        match letter {
            'c' => permissions.create = true,
            'r' => permissions.read = true,
            'u' => permissions.update = true,
            'd' => permissions.delete = true,
            _ => permissions.search = true,
        }
    }
    Some(permissions)
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(token: &str) -> ResourceScope {
        match parse_scope(token) {
            Ok(Scope::Resource(scope)) => scope,
            other => panic!("{token}: {other:?}"),
        }
    }

    #[test]
    fn v2_letters() {
        let scope = resource("patient/Observation.rs");
        assert_eq!(scope.context, Context::Patient);
        assert_eq!(scope.resource_type.as_deref(), Some("Observation"));
        assert!(scope.allows("Observation", Permission::Read) && scope.allows("Observation", Permission::Search));
        assert!(!scope.allows("Observation", Permission::Create) && !scope.allows("Patient", Permission::Read));
        let all = resource("user/*.cruds");
        assert_eq!(all.context, Context::User);
        assert!(all.resource_type.is_none() && all.allows("Patient", Permission::Delete));
        assert_eq!(resource("system/Patient.c").permissions, Permissions { create: true, ..Permissions::default() });
    }

    #[test]
    fn v1_forms_map_to_v2() {
        assert_eq!(resource("patient/Observation.read").permissions, resource("patient/Observation.rs").permissions);
        assert_eq!(resource("user/Patient.write").permissions, resource("user/Patient.cud").permissions);
        assert_eq!(resource("user/*.*").permissions, resource("user/*.cruds").permissions);
    }

    #[test]
    fn constraints_are_decoded() {
        let scope = resource("patient/Observation.rs?category=http%3A%2F%2Fterminology.hl7.org%7Cvital-signs");
        assert_eq!(scope.constraints, [("category".to_owned(), "http://terminology.hl7.org|vital-signs".to_owned())]);
        assert!(matches!(parse_scope("patient/Observation.rs?"), Err(ScopeError::Constraint(_))));
        assert!(matches!(parse_scope("patient/Observation.rs?=x"), Err(ScopeError::Constraint(_))));
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in ["patient/Observation.sr", "patient/Observation.rr", "patient/Observation.x", "patient/Observation."]
        {
            assert!(matches!(parse_scope(bad), Err(ScopeError::Permissions(_))), "{bad}");
        }
        assert!(matches!(parse_scope("patient/Observation"), Err(ScopeError::Permissions(_))));
        assert!(matches!(parse_scope("group/Observation.rs"), Err(ScopeError::Context(_))));
        assert!(matches!(parse_scope("patient/observation.rs"), Err(ScopeError::ResourceType(_))));
        assert!(matches!(parse_scope("patient/Obs-ervation.rs"), Err(ScopeError::ResourceType(_))));
    }

    #[test]
    fn other_scopes_pass_through_and_lists_dedupe() {
        let (scopes, errors) =
            parse_scopes("openid fhirUser launch/patient offline_access patient/*.rs patient/*.rs bad/x.r");
        assert_eq!(errors.len(), 1);
        assert_eq!(scopes.len(), 5);
        assert_eq!(scopes[2], Scope::Other("launch/patient".to_owned()));
        assert_eq!(Context::System.to_string(), "system");
    }
}
