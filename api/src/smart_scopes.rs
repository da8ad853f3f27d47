//! SMART App Launch v2 scopes: `patient/Observation.rs`, `user/*.cruds`, `user/Observation.rs?code=<system>|<code>`,
//! and the v1 forms `.read`, `.write`, `.*`: parsing, what may be issued and narrowed at the token endpoint, and the
//! enforcement the `Auth` extractor applies to every REST and FHIR request (docs/identity.md, "SMART scopes").
//!
//! * A token issued without any SMART resource scope keeps its user's full rights (the reference's behaviour).
//! * Otherwise every request needs, for each (resource type, interaction) its route maps to ([`route_scope`]), a
//!   scope granting it: `user/` always, `system/` on client-credentials tokens, `patient/` only for a caller with
//!   a patient record, and then the request runs as that patient alone (a practitioner identity is dropped).
//! * v2 constraints: only `code` on an Observation scope granting reads and searches alone (the FHIR `code` search
//!   parameter's forms) can be enforced, and is: the request's caller carries the codes its granting scopes allow
//!   ([`Decision`]), and the query engine's access scope keeps only those, on every route that reads observations.
//!   Any other constraint does not parse ([`ScopeError::Unsupported`]), so it is `invalid_scope` wherever a scope is
//!   issued, and a stored one grants nothing.

use axum::http::Method;
use jhe_catalog::{AllowedCode, Caller, CodeLimit};
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
    /// The codes a v2 `code` constraint (`?code=<system>|<code>,…`) limits the scope to; `None`: unconstrained.
    pub(crate) codes: Option<Vec<AllowedCode>>,
}

impl ResourceScope {
    /// Whether the scope grants `permission` on `resource_type`, ignoring `codes` (the query engine applies them).
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
    #[error("`{token}`: {reason}")]
    Unsupported { token: String, reason: String },
}

/// The one constraint parameter the server can enforce (as a filter in the query engine).
const CODE: &str = "code";

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
    let codes = match query {
        None => None,
        Some(query) => Some(constraint_codes(token, resource_type.as_deref(), &permissions, query)?),
    };
    Ok(Scope::Resource(ResourceScope { context, resource_type, permissions, codes }))
}

/// The codes of a scope's constraint `query`. Only what the query engine enforces is accepted: one `code`
/// parameter (a comma list of alternatives, read as the FHIR `code` search parameter is) on an Observation scope
/// that grants reads and searches alone. Anything else would be a promise the server cannot keep.
fn constraint_codes(
    token: &str,
    resource_type: Option<&str>,
    permissions: &Permissions,
    query: &str,
) -> Result<Vec<AllowedCode>, ScopeError> {
    let unsupported = |reason: String| ScopeError::Unsupported { token: token.to_owned(), reason };
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    if pairs.is_empty() || pairs.iter().any(|(name, _)| name.is_empty()) {
        return Err(ScopeError::Constraint(token.to_owned()));
    }
    if let Some((name, _)) = pairs.iter().find(|(name, _)| name != CODE) {
        return Err(unsupported(format!(
            "the constraint `{name}` cannot be enforced (only `code` on Observation scopes)"
        )));
    }
    if resource_type != Some("Observation") {
        return Err(unsupported("a `code` constraint can be enforced on Observation scopes only".to_owned()));
    }
    if permissions.create || permissions.update || permissions.delete {
        return Err(unsupported("a `code` constraint can be enforced on reads and searches only (`.rs`)".to_owned()));
    }
    let [(_, value)] = pairs.as_slice() else {
        return Err(unsupported("one `code` constraint per scope (a comma list for alternatives)".to_owned()));
    };
    let parsed = jhe_query::fhir_params::parse_search(&[(CODE.to_owned(), value.clone())], chrono::Utc::now())
        .map_err(|error| unsupported(error.to_string()))?;
    let alternatives = parsed.filters.codes.into_iter().next().unwrap_or_default();
    if alternatives.is_empty() {
        return Err(ScopeError::Constraint(token.to_owned()));
    }
    Ok(alternatives.into_iter().map(|code| AllowedCode { system: code.system, code: code.code }).collect())
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

impl Permission {
    fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }

    fn interaction(self) -> &'static str {
        match self {
            Permission::Create => "create",
            Permission::Read => "read",
            Permission::Update => "update",
            Permission::Delete => "delete",
            Permission::Search => "search",
        }
    }
}

impl Permissions {
    /// Every letter of `self` is in `other`.
    fn within(&self, other: &Permissions) -> bool {
        [Permission::Create, Permission::Read, Permission::Update, Permission::Delete, Permission::Search]
            .into_iter()
            .all(|p| !self.allows(p) || other.allows(p))
    }
}

impl ResourceScope {
    /// Whether `self` grants at least everything `narrower` grants.
    fn covers(&self, narrower: &ResourceScope) -> bool {
        let codes_covered = match (&self.codes, &narrower.codes) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(own), Some(narrower)) => narrower.iter().all(|code| own.iter().any(|allowed| allowed.covers(code))),
        };
        self.context == narrower.context
            && (self.resource_type.is_none() || self.resource_type == narrower.resource_type)
            && narrower.permissions.within(&self.permissions)
            && codes_covered
    }

    /// Whether the scope grants `need`. A code constraint limits what observations are read, so a constrained
    /// scope grants nothing but observation reads and searches (a stored one on anything else grants nothing).
    fn grants(&self, need: &Need) -> bool {
        let type_matches = match &need.resource_type {
            Some(resource_type) => self.allows(resource_type, need.permission),
            None => self.resource_type.is_none() && self.permissions.allows(need.permission),
        };
        type_matches && (self.codes.is_none() || need.reads_observations())
    }
}

/// The SMART resource scopes of a `scope` request parameter, as sent (deduplicated, in order); an error message
/// (for RFC 6749 `invalid_scope`) when one is malformed, or is a `system/` scope where only users sign in.
pub(crate) fn requested_resource_scopes(requested: &str, allow_system: bool) -> Result<Vec<String>, String> {
    let mut granted: Vec<String> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for token in requested.split_ascii_whitespace() {
        match parse_scope(token) {
            Ok(Scope::Resource(scope)) => {
                if scope.context == Context::System && !allow_system {
                    errors.push(format!("`{token}`: system/ scopes are for client-credentials (backend) clients"));
                } else if !granted.iter().any(|g| g == token) {
                    granted.push(token.to_owned());
                }
            }
            Ok(Scope::Other(_)) => {}
            Err(error) => errors.push(error.to_string()),
        }
    }
    if errors.is_empty() { Ok(granted) } else { Err(errors.join("; ")) }
}

/// The scope of tokens refreshed from a grant of `granted` when the refresh request asks for `requested` (RFC 6749
/// §6): the same without a request; else every requested scope must have been granted (a resource scope may be
/// narrower than a granted one), and a grant limited by resource scopes cannot lose them all (that would give the
/// token its user's full rights). A grant without resource scopes (full rights) may be narrowed to any.
pub(crate) fn narrowed_scope(granted: &str, requested: Option<&str>) -> Result<String, String> {
    let Some(requested) = requested.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(granted.to_owned());
    };
    let granted_tokens: Vec<&str> = granted.split_ascii_whitespace().collect();
    let mut granted_resources: Vec<ResourceScope> = Vec::new();
    // a granted scope that no longer parses (a constraint the server cannot enforce) still limits the grant
    let mut limited = false;
    for token in &granted_tokens {
        match parse_scope(token) {
            Ok(Scope::Resource(scope)) => {
                granted_resources.push(scope);
                limited = true;
            }
            Ok(Scope::Other(_)) => {}
            Err(_) => limited = true,
        }
    }
    let mut kept: Vec<&str> = Vec::new();
    let mut resources = 0;
    for token in requested.split_ascii_whitespace() {
        match parse_scope(token).map_err(|e| e.to_string())? {
            Scope::Resource(scope) => {
                let allowed = if !limited {
                    scope.context != Context::System
                } else {
                    granted_resources.iter().any(|g| g.covers(&scope))
                };
                if !allowed {
                    return Err(format!("`{token}` is not within the granted scope `{granted}`"));
                }
                resources += 1;
            }
            Scope::Other(_) if !granted_tokens.contains(&token) => {
                return Err(format!("`{token}` is not within the granted scope `{granted}`"));
            }
            Scope::Other(_) => {}
        }
        if !kept.contains(&token) {
            kept.push(token);
        }
    }
    if limited && resources == 0 {
        return Err(format!(
            "the granted scope `{granted}` limits the token to SMART resource scopes; a refresh must keep at least one"
        ));
    }
    Ok(kept.join(" "))
}

/// What a token's scope lets it do, parsed once per token check (and cached with it).
#[derive(Debug, Clone, Default)]
pub(crate) struct TokenScopes {
    resources: Vec<ResourceScope>,
    /// limited by SMART scopes at all (a token issued without any keeps its user's full rights)
    restricted: bool,
    client_credentials: bool,
}

/// One (resource type, interaction) a route needs; `resource_type` `None`: only a `*` scope grants it (endpoints
/// with no FHIR counterpart, such as OAuth clients, API keys and settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Need {
    pub(crate) resource_type: Option<String>,
    pub(crate) permission: Permission,
}

impl Need {
    /// A read or search of Observations: what a code constraint limits.
    fn reads_observations(&self) -> bool {
        self.resource_type.as_deref() == Some("Observation")
            && matches!(self.permission, Permission::Read | Permission::Search)
    }
}

/// What a route asks of a token's scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteScope {
    /// the caller's own identity (profile, own organizations) or a public endpoint: any valid token
    Identity,
    /// every one is needed
    Needs(Vec<Need>),
    /// not mapped here: refused to a token limited by SMART scopes (fail closed)
    Unmapped,
}

/// How a request may proceed, and which observation codes it may read at most (the code constraints of the
/// scopes that granted it; nothing for a scoped token on a route that reads no observations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed(CodeLimit),
    /// granted only by `patient/` scopes: the request runs as the caller's patient record alone
    AsPatient(CodeLimit),
    Refused(String),
}

impl TokenScopes {
    /// The scopes of a token issued with `scope`.
    pub(crate) fn from_granted(scope: &str, client_credentials: bool) -> Self {
        let (scopes, errors) = parse_scopes(scope);
        let resources: Vec<ResourceScope> = scopes
            .into_iter()
            .filter_map(|scope| match scope {
                Scope::Resource(resource) => Some(resource),
                Scope::Other(_) => None,
            })
            .collect();
        // a stored scope that does not parse (edited in SQL) limits the token rather than freeing it
        let restricted = !resources.is_empty() || !errors.is_empty();
        TokenScopes { resources, restricted, client_credentials }
    }

    /// Whether a request of `caller` to a route asking `route` is within the scopes, and the observation codes it
    /// may read.
    pub(crate) fn decide(&self, caller: &Caller, route: &RouteScope) -> Decision {
        if !self.restricted {
            return Decision::Allowed(CodeLimit::default());
        }
        let needs = match route {
            RouteScope::Identity => return Decision::Allowed(no_codes()),
            RouteScope::Unmapped => {
                return Decision::Refused("the token's SMART scopes do not cover this endpoint".to_owned());
            }
            RouteScope::Needs(needs) => needs,
        };
        let mut as_patient = false;
        let mut codes = CodeLimit::default();
        let mut reads_observations = false;
        for need in needs {
            let mut granted = self.granting(need, false);
            if granted.is_empty() && caller.patient_id.is_some() {
                granted = self.granting(need, true);
                as_patient |= !granted.is_empty();
            }
            if granted.is_empty() {
                return Decision::Refused(self.refusal(need));
            }
            if need.reads_observations() {
                reads_observations = true;
                // an unconstrained granting scope leaves this interaction unlimited
                if granted.iter().all(|scope| scope.codes.is_some()) {
                    codes.and(granted.iter().filter_map(|scope| scope.codes.clone()).flatten().collect());
                }
            }
        }
        if !reads_observations {
            codes = no_codes();
        }
        if as_patient { Decision::AsPatient(codes) } else { Decision::Allowed(codes) }
    }

    /// The scopes that grant `need`: the `patient/` ones, or those acting for the user (`user/`, and `system/` on
    /// client-credentials tokens).
    fn granting(&self, need: &Need, patient: bool) -> Vec<&ResourceScope> {
        let applies = |context: Context| match context {
            Context::User => !patient,
            Context::System => !patient && self.client_credentials,
            Context::Patient => patient,
        };
        self.resources.iter().filter(|scope| scope.grants(need) && applies(scope.context)).collect()
    }

    /// Names the missing scope in its `user/` form, which grants it to every kind of token.
    fn refusal(&self, need: &Need) -> String {
        let context = "user";
        let letter = need.permission.letter();
        let interaction = need.permission.interaction();
        match &need.resource_type {
            Some(resource_type) => format!(
                "the token's scopes do not allow {interaction} on {resource_type} (needs {context}/{resource_type}.{letter})"
            ),
            None => {
                format!("the token's scopes do not allow {interaction} on this endpoint (needs {context}/*.{letter})")
            }
        }
    }
}

/// What a scoped token reads of observations on a route that does not read them: none, so that no engine read
/// can be reached through a scope that grants something else.
fn no_codes() -> CodeLimit {
    let mut codes = CodeLimit::default();
    codes.and(Vec::new());
    codes
}

/// The caller reduced to its patient record: what a `patient/` scope covers.
pub(crate) fn as_patient(caller: &mut Caller) {
    caller.is_superuser = false;
    caller.practitioner_id = None;
    caller.memberships.clear();
    caller.user_type = Some("patient".to_owned());
}

fn need(resource_type: Option<&str>, permission: Permission) -> Need {
    Need { resource_type: resource_type.map(str::to_owned), permission }
}

fn needs(list: &[(Option<&str>, Permission)]) -> RouteScope {
    RouteScope::Needs(list.iter().map(|(t, p)| need(*t, *p)).collect())
}

/// The interaction of a REST method: GET on a collection is a search, on one item a read; POST creates, PATCH and
/// PUT update, DELETE deletes.
fn rest_interaction(method: &Method, collection: bool) -> Option<Permission> {
    match *method {
        Method::GET | Method::HEAD if collection => Some(Permission::Search),
        Method::GET | Method::HEAD => Some(Permission::Read),
        Method::POST => Some(Permission::Create),
        Method::PATCH | Method::PUT => Some(Permission::Update),
        Method::DELETE => Some(Permission::Delete),
        _ => None,
    }
}

/// A resource's REST collection and item routes.
fn crud(method: &Method, resource_type: Option<&str>, collection: bool) -> RouteScope {
    match rest_interaction(method, collection) {
        Some(permission) => needs(&[(resource_type, permission)]),
        None => RouteScope::Unmapped,
    }
}

/// A sub-resource that is read with its parent (`read_as`) and changed as an update of it (`parent`).
fn sub_resource(method: &Method, parent: Option<&str>, read_as: &[(Option<&str>, Permission)]) -> RouteScope {
    match *method {
        Method::GET | Method::HEAD => needs(read_as),
        Method::POST | Method::PATCH | Method::PUT | Method::DELETE => needs(&[(parent, Permission::Update)]),
        _ => RouteScope::Unmapped,
    }
}

/// What a request needs of a token's SMART scopes: `route` is the matched route (`/api/v1/patients/{id}`), `path`
/// the request's path (for the resource type of `/FHIR/R5/{resource_type}` routes).
pub(crate) fn route_scope(method: &Method, route: &str, path: &str) -> RouteScope {
    if let Some(rest) = route.strip_prefix("/api/v1") {
        rest_scope(method, rest.trim_end_matches('/'))
    } else if let Some(rest) = route.strip_prefix("/FHIR/R5") {
        fhir_scope(method, rest.trim_end_matches('/'), path)
    } else {
        RouteScope::Unmapped
    }
}

fn fhir_scope(method: &Method, route: &str, path: &str) -> RouteScope {
    use Permission::{Create, Read, Search};
    const OBSERVATION: Option<&str> = Some("Observation");
    let get = matches!(*method, Method::GET | Method::HEAD);
    let post = *method == Method::POST;
    // `$export` hands out Observations of a study: what reading the study and searching and reading them needs
    let export = [(Some("Group"), Read), (OBSERVATION, Search), (OBSERVATION, Read)];
    let resource_type = path.strip_prefix("/FHIR/R5/").and_then(|rest| rest.split('/').next()).unwrap_or_default();
    match route {
        "/metadata" | "/.well-known/smart-configuration" => RouteScope::Identity,
        // uploads: a single Observation, a batch Bundle (whose entries can only create Observations) or NDJSON
        "" | "/Observation" | "/Observation/$bulk-upload" if post => needs(&[(OBSERVATION, Create)]),
        "/Observation" if get => needs(&[(OBSERVATION, Search)]),
        "/Observation/_search" if post => needs(&[(OBSERVATION, Search)]),
        "/Observation/$lastn" | "/Observation/$stats" if get => needs(&[(OBSERVATION, Search)]),
        "/Observation/{id}" if get => needs(&[(OBSERVATION, Read)]),
        "/{resource_type}" if get => needs(&[(Some(resource_type), Search)]),
        "/{resource_type}/_search" if get || post => needs(&[(Some(resource_type), Search)]),
        "/{resource_type}/{id}" if get => needs(&[(Some(resource_type), Read)]),
        "/Group/{study}/$export" if get || post => needs(&export),
        "/$export-status/{job}" | "/$export-file/{job}/{name}" => needs(&export),
        _ => RouteScope::Unmapped,
    }
}

fn rest_scope(method: &Method, route: &str) -> RouteScope {
    use Permission::{Read, Search, Update};
    let get = matches!(*method, Method::GET | Method::HEAD);
    match route {
        // who the caller is, and a public endpoint (invitation redemption takes no token)
        "/users/profile" | "/users/organizations" | "/patients/me" => RouteScope::Identity,
        "/invitation/{id}" if *method == Method::POST => RouteScope::Identity,
        // accounts, OAuth clients, API keys, invitations and settings have no FHIR type: only `*` scopes reach them
        "/users" | "/practitioner_clients" | "/clients" | "/jhe_settings" | "/invitation" => crud(method, None, true),
        "/users/search_by_email" if get => needs(&[(None, Search)]),
        "/users/{id}" | "/practitioner_clients/{id}" | "/clients/{id}" | "/jhe_settings/{id}" | "/invitation/{id}" => {
            crud(method, None, false)
        }
        "/clients/{id}/data_sources" => sub_resource(method, None, &[(None, Read)]),
        "/organizations" | "/organizations/types" => crud(method, Some("Organization"), true),
        "/organizations/{id}" => crud(method, Some("Organization"), false),
        "/organizations/{id}/tree" if get => needs(&[(Some("Organization"), Read)]),
        "/organizations/{id}/users" if get => needs(&[(Some("Organization"), Read), (Some("Practitioner"), Search)]),
        "/organizations/{id}/user" | "/organizations/{id}/remove_user" if !get => {
            needs(&[(Some("Organization"), Update)])
        }
        "/organizations/{id}/studies" if get => needs(&[(Some("Group"), Search)]),
        "/practitioners" => crud(method, Some("Practitioner"), true),
        "/practitioners/{id}" => crud(method, Some("Practitioner"), false),
        "/patients" => crud(method, Some("Patient"), true),
        "/patients/global_lookup" if get => needs(&[(Some("Patient"), Search)]),
        "/patients/{id}" => crud(method, Some("Patient"), false),
        "/patients/{id}/global_add_organization" if !get => needs(&[(Some("Patient"), Update)]),
        "/patients/organization_requests" if get => needs(&[(Some("Patient"), Search)]),
        "/patients/organization_requests" | "/patients/organization_requests/{id}" => {
            needs(&[(Some("Patient"), Update)])
        }
        // joining an organization is the patient's own decision: never through a token limited by SMART scopes
        "/patients/me/organization_requests"
        | "/patients/me/organization_requests/{id}/accept"
        | "/patients/me/organization_requests/{id}/decline" => RouteScope::Unmapped,
        "/patients/{id}/consents" => crud(method, Some("Consent"), true),
        "/patients/{id}/consolidated_clients" if get => needs(&[(Some("Consent"), Search)]),
        "/studies" => crud(method, Some("Group"), true),
        "/studies/{id}" => crud(method, Some("Group"), false),
        "/studies/{id}/patients" => {
            sub_resource(method, Some("Group"), &[(Some("Group"), Read), (Some("Patient"), Search)])
        }
        "/studies/{id}/scope_requests" | "/studies/{id}/clients" | "/studies/{id}/data_sources" => {
            sub_resource(method, Some("Group"), &[(Some("Group"), Read)])
        }
        "/studies/{id}/observation_summary" if get => needs(&[(Some("Group"), Read), (Some("Observation"), Search)]),
        "/data_sources" | "/data_sources/all_scopes" => crud(method, Some("Device"), true),
        "/data_sources/{id}" => crud(method, Some("Device"), false),
        "/data_sources/{id}/supported_scopes" => sub_resource(method, Some("Device"), &[(Some("Device"), Read)]),
        "/observations" if get => needs(&[(Some("Observation"), Search)]),
        "/observations/{id}" if get => needs(&[(Some("Observation"), Read)]),
        "/audit_events" if get => needs(&[(Some("AuditEvent"), Search)]),
        _ => RouteScope::Unmapped,
    }
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

    fn allowed(system: Option<&str>, code: Option<&str>) -> AllowedCode {
        AllowedCode { system: system.map(str::to_owned), code: code.map(str::to_owned) }
    }

    #[test]
    fn code_constraints_are_read_as_the_fhir_code_parameter() {
        let scope =
            resource("patient/Observation.rs?code=https%3A%2F%2Fw3id.org%2Fopenmhealth%7Comh%3Aheart-rate%3A2.0");
        assert_eq!(scope.codes, Some(vec![allowed(Some("https://w3id.org/openmhealth"), Some("omh:heart-rate:2.0"))]));
        let forms = resource("user/Observation.read?code=s|a,b,t|");
        assert_eq!(
            forms.codes,
            Some(vec![allowed(Some("s"), Some("a")), allowed(None, Some("b")), allowed(Some("t"), None)])
        );
        assert_eq!(resource("user/Observation.rs").codes, None);
        for malformed in ["patient/Observation.rs?", "patient/Observation.rs?=x"] {
            assert!(matches!(parse_scope(malformed), Err(ScopeError::Constraint(_))), "{malformed}");
        }
        assert!(parse_scope("user/Observation.rs?code=").is_err());
        assert!(parse_scope("user/Observation.rs?code=|").is_err());
    }

    #[test]
    fn constraints_the_server_cannot_enforce_are_refused() {
        let reason = |token: &str| match parse_scope(token) {
            Err(ScopeError::Unsupported { token: named, reason }) => {
                assert_eq!(named, token);
                reason
            }
            other => panic!("{token}: {other:?}"),
        };
        assert!(reason("user/Observation.rs?category=vital-signs").contains("`category`"));
        assert!(reason("user/Observation.rs?foo=bar").contains("`foo`"));
        assert!(reason("user/Observation.rs?code=a&foo=bar").contains("`foo`"));
        assert!(reason("user/Observation.rs?code=a&code=b").contains("one `code` constraint"));
        assert!(reason("user/Patient.rs?code=a").contains("Observation scopes only"));
        assert!(reason("user/*.rs?code=a").contains("Observation scopes only"));
        assert!(reason("system/Patient.r?identifier=x").contains("`identifier`"));
        for writes in ["user/Observation.crs?code=a", "patient/Observation.c?code=a", "user/Observation.*?code=a"] {
            assert!(reason(writes).contains("reads and searches only"), "{writes}");
        }
        // the message names the scope
        let error = parse_scope("user/Observation.rs?category=vital-signs").unwrap_err().to_string();
        assert!(error.starts_with("`user/Observation.rs?category=vital-signs`: "), "{error}");
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

    fn caller(practitioner: bool, patient: bool) -> Caller {
        Caller {
            user_id: 1,
            email: "someone@example.org".into(),
            is_superuser: false,
            user_type: Some(if practitioner { "practitioner" } else { "patient" }.into()),
            practitioner_id: practitioner.then_some(10),
            patient_id: patient.then_some(20),
            memberships: vec![],
            observation_codes: CodeLimit::default(),
        }
    }

    fn route(method: Method, path: &str) -> RouteScope {
        let template = if path.starts_with("/FHIR/R5/Patient") { "/FHIR/R5/{resource_type}" } else { path };
        route_scope(&method, template, path)
    }

    #[test]
    fn tokens_without_resource_scopes_keep_full_rights() {
        let scopes = TokenScopes::from_granted("openid email", false);
        let delete = route(Method::DELETE, "/api/v1/studies/{id}");
        assert_eq!(scopes.decide(&caller(true, false), &delete), Decision::Allowed(CodeLimit::default()));
        // a stored scope that does not parse limits instead, also one with a constraint that cannot be enforced
        for stored in ["user/observation.rs", "user/*.cruds?category=x"] {
            let broken = TokenScopes::from_granted(stored, false);
            assert!(matches!(broken.decide(&caller(true, false), &delete), Decision::Refused(_)), "{stored}");
        }
    }

    #[test]
    fn user_scopes_grant_their_letters_on_their_types() {
        let scopes = TokenScopes::from_granted("openid user/Observation.rs", false);
        let practitioner = caller(true, false);
        let search = route(Method::GET, "/FHIR/R5/Observation");
        assert_eq!(scopes.decide(&practitioner, &search), Decision::Allowed(CodeLimit::default()));
        let rest = scopes.decide(&practitioner, &route(Method::GET, "/api/v1/observations"));
        assert_eq!(rest, Decision::Allowed(CodeLimit::default()));
        let Decision::Refused(message) = scopes.decide(&practitioner, &route(Method::GET, "/FHIR/R5/Patient")) else {
            panic!("Patient search is outside user/Observation.rs");
        };
        assert_eq!(message, "the token's scopes do not allow search on Patient (needs user/Patient.s)");
        let upload = route(Method::POST, "/FHIR/R5/");
        assert!(matches!(scopes.decide(&practitioner, &upload), Decision::Refused(m) if m.contains("Observation.c")));
        // a route that reads no observations: a scoped token reads none through it
        let profile = scopes.decide(&practitioner, &route(Method::GET, "/api/v1/users/profile"));
        assert_eq!(profile, Decision::Allowed(no_codes()));
        let keys = route(Method::POST, "/api/v1/practitioner_clients");
        assert!(matches!(scopes.decide(&practitioner, &keys), Decision::Refused(m) if m.contains("user/*.c")));
        let everything = TokenScopes::from_granted("user/*.read", false);
        assert!(matches!(
            everything.decide(&practitioner, &route(Method::GET, "/api/v1/jhe_settings")),
            Decision::Allowed(_)
        ));
        assert!(matches!(everything.decide(&practitioner, &keys), Decision::Refused(_)));
    }

    #[test]
    fn patient_scopes_need_a_patient_and_system_scopes_a_client_credentials_token() {
        let scopes = TokenScopes::from_granted("patient/Observation.rs", false);
        let search = route(Method::GET, "/FHIR/R5/Observation");
        assert_eq!(scopes.decide(&caller(false, true), &search), Decision::AsPatient(CodeLimit::default()));
        assert!(matches!(scopes.decide(&caller(true, false), &search), Decision::Refused(_)));
        let mut both = caller(true, true);
        assert_eq!(scopes.decide(&both, &search), Decision::AsPatient(CodeLimit::default()));
        as_patient(&mut both);
        assert!(!both.is_practitioner() && both.is_patient());

        let system = "system/Observation.rs";
        let search_ok = |client_credentials| {
            TokenScopes::from_granted(system, client_credentials).decide(&caller(true, false), &search)
        };
        assert_eq!(search_ok(true), Decision::Allowed(CodeLimit::default()));
        assert!(matches!(search_ok(false), Decision::Refused(_)));
    }

    /// The codes a decision lets the request read.
    fn codes_of(decision: Decision) -> CodeLimit {
        match decision {
            Decision::Allowed(codes) | Decision::AsPatient(codes) => codes,
            Decision::Refused(message) => panic!("refused: {message}"),
        }
    }

    #[test]
    fn constrained_scopes_limit_every_observation_read_to_their_codes() {
        let scopes = TokenScopes::from_granted("user/Observation.rs?code=s%7Ca", false);
        let practitioner = caller(true, false);
        for (method, path) in [
            (Method::GET, "/FHIR/R5/Observation"),
            (Method::GET, "/FHIR/R5/Observation/{id}"),
            (Method::GET, "/FHIR/R5/Observation/$lastn"),
            (Method::GET, "/FHIR/R5/Observation/$stats"),
            (Method::GET, "/api/v1/observations"),
            (Method::GET, "/api/v1/observations/{id}"),
        ] {
            let codes = codes_of(scopes.decide(&practitioner, &route(method.clone(), path)));
            assert!(codes.is_limited() && codes.allows("s", "a"), "{method} {path}");
            assert!(!codes.allows("s", "b") && !codes.allows("t", "a"), "{method} {path}");
        }
        // a constrained scope grants no write, and nothing of another type
        let upload = route(Method::POST, "/FHIR/R5/Observation");
        assert!(matches!(scopes.decide(&practitioner, &upload), Decision::Refused(_)));
        let export = route(Method::GET, "/FHIR/R5/Group/{study}/$export");
        assert!(matches!(scopes.decide(&practitioner, &export), Decision::Refused(m) if m.contains("Group.r")));

        // every interaction a route needs limits it: search of a and read of b leave nothing for an export
        let split =
            TokenScopes::from_granted("user/Group.r user/Observation.s?code=s|a user/Observation.r?code=s|b", false);
        let codes = codes_of(split.decide(&practitioner, &export));
        assert!(codes.is_limited() && !codes.allows("s", "a") && !codes.allows("s", "b"));
        // the scopes granting one interaction add up; an unconstrained one among them lifts the limit
        let two = TokenScopes::from_granted("user/Observation.rs?code=s|a user/Observation.rs?code=b", false);
        let codes = codes_of(two.decide(&practitioner, &route(Method::GET, "/FHIR/R5/Observation")));
        assert!(codes.allows("s", "a") && codes.allows("t", "b") && !codes.allows("s", "c"));
        let open = TokenScopes::from_granted("user/Observation.rs?code=s|a user/Observation.s", false);
        let codes = codes_of(open.decide(&practitioner, &route(Method::GET, "/FHIR/R5/Observation")));
        assert!(!codes.is_limited());
        let codes = codes_of(open.decide(&practitioner, &route(Method::GET, "/FHIR/R5/Observation/{id}")));
        assert!(codes.is_limited() && !codes.allows("s", "b"));

        // patient/ scopes: the request runs as the patient, limited the same way
        let patient = TokenScopes::from_granted("patient/Observation.rs?code=s|a", false);
        let Decision::AsPatient(codes) =
            patient.decide(&caller(false, true), &route(Method::GET, "/FHIR/R5/Observation"))
        else {
            panic!("a patient/ scope runs as the patient");
        };
        assert!(codes.allows("s", "a") && !codes.allows("s", "b"));
    }

    #[test]
    fn requested_scopes_are_checked_and_refreshes_only_narrow() {
        assert_eq!(
            requested_resource_scopes("openid user/Observation.rs launch/patient user/Observation.rs", false),
            Ok(vec!["user/Observation.rs".to_owned()])
        );
        assert!(requested_resource_scopes("user/Observation.x", false).is_err());
        assert!(requested_resource_scopes("system/*.rs", false).is_err());
        assert!(requested_resource_scopes("system/*.rs", true).is_ok());

        let granted = "openid user/Observation.rs";
        assert_eq!(narrowed_scope(granted, None).as_deref(), Ok(granted));
        assert_eq!(narrowed_scope(granted, Some("user/Observation.r")).as_deref(), Ok("user/Observation.r"));
        assert_eq!(
            narrowed_scope(granted, Some("openid user/Observation.read")).as_deref(),
            Ok("openid user/Observation.read")
        );
        for wider in [
            "user/Observation.rsc",
            "user/*.rs",
            "user/Patient.r",
            "openid email user/Observation.r",
            "openid",
            "patient/Observation.r",
        ] {
            assert!(narrowed_scope(granted, Some(wider)).is_err(), "{wider}");
        }
        // full rights may be narrowed to any user scope, never to system/
        assert_eq!(
            narrowed_scope("openid email", Some("openid user/Patient.r")).as_deref(),
            Ok("openid user/Patient.r")
        );
        assert!(narrowed_scope("openid email", Some("system/Patient.r")).is_err());
        let constrained = "user/Observation.rs?code=a,s|b";
        for narrower in ["user/Observation.s?code=a", "user/Observation.r?code=s|a,s|b", "user/Observation.s?code=s|b"]
        {
            assert!(narrowed_scope(constrained, Some(narrower)).is_ok(), "{narrower}");
        }
        for wider in [
            "user/Observation.s",
            "user/Observation.s?code=b",
            "user/Observation.s?code=s|",
            "user/Observation.s?code=c",
        ] {
            assert!(narrowed_scope(constrained, Some(wider)).is_err(), "{wider}");
        }
        // a refresh cannot add a constraint the server cannot enforce
        let error = narrowed_scope("user/Observation.rs", Some("user/Observation.rs?foo=bar")).unwrap_err();
        assert!(error.contains("`foo`"), "{error}");
        // a stored grant whose constraint no longer parses is still a limited grant: it cannot become full rights
        assert!(narrowed_scope("openid user/Observation.rs?category=x", Some("openid user/*.cruds")).is_err());
    }

    /// Every route that takes a bearer token is mapped (a new route must be added to `route_scope`).
    #[test]
    fn every_authenticated_route_is_mapped() {
        let routes: &[(&str, &[Method])] = &[
            ("/FHIR/R5/Observation", &[Method::GET, Method::POST]),
            ("/FHIR/R5/Observation/", &[Method::GET, Method::POST]),
            ("/FHIR/R5/", &[Method::POST]),
            ("/FHIR/R5", &[Method::POST]),
            ("/FHIR/R5/Observation/$bulk-upload", &[Method::POST]),
            ("/FHIR/R5/Observation/_search", &[Method::POST]),
            ("/FHIR/R5/Observation/{id}", &[Method::GET]),
            ("/FHIR/R5/Observation/$lastn", &[Method::GET]),
            ("/FHIR/R5/Observation/$stats", &[Method::GET]),
            ("/FHIR/R5/Group/{study}/$export", &[Method::GET, Method::POST]),
            ("/FHIR/R5/$export-status/{job}", &[Method::GET, Method::DELETE]),
            ("/FHIR/R5/$export-file/{job}/{name}", &[Method::GET]),
            ("/FHIR/R5/{resource_type}", &[Method::GET]),
            ("/FHIR/R5/{resource_type}/", &[Method::GET]),
            ("/FHIR/R5/{resource_type}/_search", &[Method::GET, Method::POST]),
            ("/FHIR/R5/{resource_type}/{id}", &[Method::GET]),
            ("/FHIR/R5/{resource_type}/{id}/", &[Method::GET]),
            ("/api/v1/data_sources", &[Method::GET, Method::POST]),
            ("/api/v1/data_sources/all_scopes", &[Method::GET]),
            ("/api/v1/data_sources/{id}", &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE]),
            ("/api/v1/data_sources/{id}/supported_scopes", &[Method::GET, Method::POST, Method::DELETE]),
            ("/api/v1/practitioner_clients", &[Method::GET, Method::POST]),
            ("/api/v1/practitioner_clients/{id}", &[Method::GET, Method::PATCH, Method::DELETE]),
            ("/api/v1/clients", &[Method::GET, Method::POST]),
            ("/api/v1/clients/{id}", &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE]),
            ("/api/v1/clients/{id}/data_sources", &[Method::GET, Method::POST, Method::DELETE]),
            ("/api/v1/patients/{id}/consolidated_clients", &[Method::GET]),
            ("/api/v1/practitioners", &[Method::GET, Method::POST]),
            ("/api/v1/practitioners/{id}", &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE]),
            ("/api/v1/patients", &[Method::GET, Method::POST]),
            ("/api/v1/patients/me", &[Method::GET]),
            ("/api/v1/patients/global_lookup", &[Method::GET]),
            ("/api/v1/patients/{id}", &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE]),
            ("/api/v1/patients/{id}/global_add_organization", &[Method::PATCH]),
            ("/api/v1/patients/organization_requests", &[Method::GET, Method::POST]),
            ("/api/v1/patients/organization_requests/{id}", &[Method::DELETE]),
            ("/api/v1/organizations", &[Method::GET, Method::POST]),
            ("/api/v1/organizations/types", &[Method::GET]),
            ("/api/v1/organizations/{id}", &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE]),
            ("/api/v1/organizations/{id}/tree", &[Method::GET]),
            ("/api/v1/organizations/{id}/users", &[Method::GET]),
            ("/api/v1/organizations/{id}/user", &[Method::POST]),
            ("/api/v1/organizations/{id}/remove_user", &[Method::DELETE]),
            ("/api/v1/users", &[Method::GET, Method::POST]),
            ("/api/v1/users/profile", &[Method::GET]),
            ("/api/v1/users/organizations", &[Method::GET]),
            ("/api/v1/users/search_by_email", &[Method::GET]),
            ("/api/v1/users/{id}", &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE]),
            ("/api/v1/patients/{id}/consents", &[Method::GET, Method::POST, Method::PATCH, Method::DELETE]),
            ("/api/v1/observations", &[Method::GET]),
            ("/api/v1/observations/{id}", &[Method::GET]),
            ("/api/v1/jhe_settings", &[Method::GET, Method::POST]),
            ("/api/v1/jhe_settings/{id}", &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE]),
            ("/api/v1/audit_events", &[Method::GET]),
            ("/api/v1/studies/{id}/observation_summary", &[Method::GET]),
            ("/api/v1/invitation", &[Method::GET, Method::POST]),
            ("/api/v1/invitation/{id}", &[Method::GET, Method::POST]),
            ("/api/v1/studies", &[Method::GET, Method::POST]),
            ("/api/v1/studies/{id}", &[Method::GET, Method::PATCH, Method::PUT, Method::DELETE]),
            ("/api/v1/studies/{id}/patients", &[Method::GET, Method::POST, Method::DELETE]),
            ("/api/v1/studies/{id}/scope_requests", &[Method::GET, Method::POST, Method::DELETE]),
            ("/api/v1/studies/{id}/clients", &[Method::GET, Method::POST, Method::DELETE]),
            ("/api/v1/studies/{id}/data_sources", &[Method::GET, Method::POST, Method::DELETE]),
            ("/api/v1/organizations/{id}/studies", &[Method::GET]),
        ];
        for (template, methods) in routes {
            for method in *methods {
                let path = template.replace("{resource_type}", "Patient");
                assert_ne!(route_scope(method, template, &path), RouteScope::Unmapped, "{method} {template}");
            }
        }
        assert_eq!(route_scope(&Method::GET, "/health", "/health"), RouteScope::Unmapped);
        // the patient's own decisions are never taken through a token limited by SMART scopes
        for template in
            ["/api/v1/patients/me/organization_requests", "/api/v1/patients/me/organization_requests/{id}/accept"]
        {
            assert_eq!(route_scope(&Method::POST, template, template), RouteScope::Unmapped, "{template}");
        }
    }
}
