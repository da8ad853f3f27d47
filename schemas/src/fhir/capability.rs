//! The CapabilityStatement (`GET /FHIR/R5/metadata`, §6.10), computed the way the reference derives it from its
//! mapping config (`core/fhir/capability.py` over `fhir_config.json`): the 26 supported types in sorted order, each
//! with the union of its jhe-native and imported-store interactions and search parameters, the US Core
//! `capabilitystatement-expectation` SHALL extension on each, the imported-only caveats as `documentation`, and the
//! SMART security block.

use serde_json::{Map, Value, json};

use super::time::{UtcSuffix, format_utc};

const EXPECTATION_URL: &str = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-expectation";
const OAUTH_URIS_URL: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";
const SECURITY_SERVICE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/restful-security-service";

/// Interactions of a store, by config name (`search` is the FHIR `search-type`).
const ALL_INTERACTIONS: &[&str] = &["create", "read", "update", "search", "delete"];

/// How one resource type is served: the jhe-native store (interactions it implements, its own search parameters)
/// if the type is mapped, and the imported-record store's search parameters (every type allows every interaction
/// there). Parameter types are the config's (`const`, `code` and `identifier` are FHIR `token`).
#[derive(Debug)]
struct ResourceType {
    name: &'static str,
    native: Option<(Interactions, Params)>,
    imported_params: Params,
}

/// Interaction names, as in the config.
type Interactions = &'static [&'static str];
/// Search parameters: name and config type.
type Params = &'static [(&'static str, &'static str)];

const READ_SEARCH: &[&str] = &["read", "search"];

/// Sorted by name, as the reference lists them.
const RESOURCE_TYPES: &[ResourceType] = &[
    ResourceType { name: "AllergyIntolerance", native: None, imported_params: &[("clinical-status", "token")] },
    ResourceType {
        name: "CarePlan",
        native: None,
        imported_params: &[("category", "token"), ("status", "code"), ("date", "date")],
    },
    ResourceType { name: "CareTeam", native: None, imported_params: &[("role", "token"), ("status", "code")] },
    ResourceType {
        name: "Condition",
        native: None,
        imported_params: &[
            ("abatement-date", "date"),
            ("asserted-date", "date"),
            ("category", "token"),
            ("clinical-status", "token"),
            ("code", "token"),
            ("encounter", "reference"),
            ("onset-date", "date"),
            ("recorded-date", "date"),
        ],
    },
    ResourceType { name: "Coverage", native: None, imported_params: &[] },
    ResourceType {
        name: "Device",
        native: Some((READ_SEARCH, &[("type", "const")])),
        imported_params: &[("status", "code"), ("type", "token")],
    },
    ResourceType {
        name: "DiagnosticReport",
        native: None,
        imported_params: &[("category", "token"), ("code", "token"), ("status", "code"), ("date", "date")],
    },
    ResourceType {
        name: "DocumentReference",
        native: None,
        imported_params: &[
            ("category", "token"),
            ("type", "token"),
            ("status", "code"),
            ("date", "date"),
            ("period", "date"),
        ],
    },
    ResourceType {
        name: "Encounter",
        native: None,
        imported_params: &[
            ("class", "token"),
            ("identifier", "identifier"),
            ("discharge-disposition", "token"),
            ("location", "reference"),
            ("status", "code"),
            ("type", "token"),
            ("date", "date"),
        ],
    },
    ResourceType {
        name: "Goal",
        native: None,
        imported_params: &[("description", "string"), ("lifecycle-status", "code"), ("target-date", "date")],
    },
    ResourceType { name: "Group", native: Some((READ_SEARCH, &[])), imported_params: &[] },
    ResourceType { name: "Immunization", native: None, imported_params: &[("status", "code"), ("date", "date")] },
    ResourceType {
        name: "Location",
        native: None,
        imported_params: &[
            ("name", "string"),
            ("address", "string"),
            ("address-city", "string"),
            ("address-state", "string"),
            ("address-postalcode", "string"),
        ],
    },
    ResourceType { name: "Medication", native: None, imported_params: &[] },
    ResourceType {
        name: "MedicationDispense",
        native: None,
        imported_params: &[("status", "code"), ("type", "token")],
    },
    ResourceType {
        name: "MedicationRequest",
        native: None,
        imported_params: &[("intent", "code"), ("status", "code"), ("encounter", "reference"), ("authoredon", "date")],
    },
    ResourceType {
        name: "Observation",
        native: Some((&["create", "read", "search"], &[("status", "const"), ("date", "date")])),
        imported_params: &[("category", "token"), ("code", "token"), ("status", "code"), ("date", "date")],
    },
    ResourceType {
        name: "Organization",
        native: Some((READ_SEARCH, &[("name", "string")])),
        imported_params: &[("name", "string"), ("address", "string")],
    },
    ResourceType {
        name: "Patient",
        native: Some((
            READ_SEARCH,
            &[("birthdate", "date"), ("family", "string"), ("given", "string"), ("name", "string")],
        )),
        imported_params: &[
            ("birthdate", "date"),
            ("death-date", "date"),
            ("family", "string"),
            ("given", "string"),
            ("name", "string"),
            ("identifier", "identifier"),
        ],
    },
    ResourceType {
        name: "Practitioner",
        native: Some((READ_SEARCH, &[("identifier", "token"), ("name", "string")])),
        imported_params: &[("name", "string"), ("identifier", "identifier")],
    },
    ResourceType {
        name: "PractitionerRole",
        native: None,
        imported_params: &[("practitioner", "reference"), ("specialty", "token")],
    },
    ResourceType {
        name: "Procedure",
        native: None,
        imported_params: &[("code", "token"), ("status", "code"), ("date", "date")],
    },
    ResourceType { name: "Provenance", native: None, imported_params: &[] },
    ResourceType {
        name: "QuestionnaireResponse",
        native: None,
        imported_params: &[("questionnaire", "reference"), ("status", "code"), ("authored", "date")],
    },
    ResourceType { name: "RelatedPerson", native: None, imported_params: &[("name", "string")] },
    ResourceType {
        name: "ServiceRequest",
        native: None,
        imported_params: &[("category", "token"), ("code", "token"), ("status", "code"), ("authored", "date")],
    },
];

/// Parameters every search resolves through the canonical patient filters, whichever store serves it.
const CANONICAL_PARAMS: &[&str] = &["identifier", "code"];
const SOURCE_PARAM_DOCUMENTATION: &str = "Selects the backing store: omit (or pass the JHE-native source URI) for \
     JHE-native records; pass an imported FhirSource URI (or _source:below) for imported records.";
const IMPORTED_ONLY_PARAM_DOCUMENTATION: &str =
    "Applies when searching imported records via _source; the default JHE-native search ignores it.";

/// The FHIR resource types jhe serves, sorted (what the Python client's `list_fhir_resource_types()` returns).
pub fn resource_types() -> impl Iterator<Item = &'static str> {
    RESOURCE_TYPES.iter().map(|resource| resource.name)
}

/// What the statement needs from the running server.
#[derive(Debug, Clone, Copy)]
pub struct CapabilityContext<'a> {
    /// Scheme, host and port the client reached, without a trailing slash (`https://jhe.example.org`).
    pub base_url: &'a str,
    /// `software.name` and `implementation.description`; the reference says "JupyterHealth Exchange".
    pub software_name: &'a str,
    /// `software.version`, left out when `None` (the reference has none).
    pub software_version: Option<&'a str>,
    /// The statement's `date`: when the process started (keeps the body stable and cacheable).
    pub started_at_micros: i64,
}

/// The whole CapabilityStatement. Build it once per base URL and cache it; it does not change while running.
pub fn capability_statement(context: &CapabilityContext<'_>) -> Value {
    let base = context.base_url.trim_end_matches('/');
    let mut software = Map::new();
    software.insert("name".into(), context.software_name.into());
    if let Some(version) = context.software_version {
        software.insert("version".into(), version.into());
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": format_utc(context.started_at_micros, UtcSuffix::Offset),
        "kind": "instance",
        "software": software,
        "implementation": {"description": context.software_name, "url": format!("{base}/FHIR/R5/")},
        "fhirVersion": "5.0.0",
        "format": ["json"],
        "patchFormat": ["application/json"],
        "rest": [{
            "mode": "server",
            "documentation": "Searches also support _sort (date, lastUpdated) and _summary=count. \
                POST [base]/[type]/_search is accepted with form-encoded parameters.",
            "security": {
                "extension": [{
                    "url": OAUTH_URIS_URL,
                    "extension": [
                        {"url": "authorize", "valueUri": format!("{base}/o/authorize/")},
                        {"url": "token", "valueUri": format!("{base}/o/token/")},
                    ],
                }],
                "service": [{"coding": [{"system": SECURITY_SERVICE_SYSTEM, "code": "SMART-on-FHIR"}]}],
                "description": "OAuth 2.0 (SMART-on-FHIR). Unauthorized requests are rejected with 401, 403, or 404.",
            },
            "interaction": [shall(json!({"code": "batch"}))],
            "resource": RESOURCE_TYPES.iter().map(resource_entry).collect::<Vec<_>>(),
        }],
    })
}

/// Appends the SHALL expectation extension.
fn shall(mut element: Value) -> Value {
    if let Value::Object(map) = &mut element {
        map.insert("extension".into(), json!([{"url": EXPECTATION_URL, "valueCode": "SHALL"}]));
    }
    element
}

/// FHIR interaction codes, sorted.
fn codes<'a>(interactions: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut codes: Vec<&str> =
        interactions.into_iter().map(|name| if name == "search" { "search-type" } else { name }).collect();
    codes.sort_unstable();
    codes.dedup();
    codes
}

fn resource_entry(resource: &ResourceType) -> Value {
    let native: &[&str] = resource.native.map(|(interactions, _)| interactions).unwrap_or_default();
    let native_params = resource.native.map(|(_, params)| params).unwrap_or_default();
    // The imported store serves every interaction, and PATCH as a JSON merge because it serves update.
    let all: Vec<&str> = native.iter().chain(ALL_INTERACTIONS).copied().chain(["patch"]).collect();

    let mut documentation = Vec::new();
    let imported_only_writes: Vec<&str> =
        ALL_INTERACTIONS.iter().copied().filter(|name| !native.contains(name) && !READ_SEARCH.contains(name)).collect();
    if !native.is_empty() && !imported_only_writes.is_empty() {
        documentation.push(format!(
            "The {} interactions apply to imported records only; JHE-native records support {}.",
            codes(imported_only_writes.iter().copied().chain(["patch"])).join(", "),
            codes(native.iter().copied()).join(", "),
        ));
    }
    documentation.push(
        "Creates routed to the imported-record store must name a FhirSource via the X-JHE-FHIR-Source-ID header or \
         the resource's meta.source."
            .to_owned(),
    );
    if resource.name == "Observation" {
        documentation.push(
            "JHE-native Observations code their measurement with system https://w3id.org/openmhealth and carry the \
             full Open mHealth data point as a base64 JSON valueAttachment (contentType application/json)."
                .to_owned(),
        );
    }

    // Union of both stores' parameters (the native definition wins a tie), sorted by name.
    let mut params: Vec<(&str, &str)> = native_params.to_vec();
    params.extend(resource.imported_params.iter().filter(|(name, _)| !native_params.iter().any(|(n, _)| n == name)));
    params.sort_unstable_by_key(|(name, _)| *name);
    let mut search_params: Vec<Value> = params
        .iter()
        .map(|(name, kind)| {
            let kind = match *kind {
                "identifier" | "code" | "const" => "token",
                other => other,
            };
            let mut param = json!({"name": name, "type": kind});
            let imported_only = resource.native.is_some()
                && !native_params.iter().any(|(n, _)| n == name)
                && !CANONICAL_PARAMS.contains(name);
            if imported_only {
                param["documentation"] = IMPORTED_ONLY_PARAM_DOCUMENTATION.into();
            }
            shall(param)
        })
        .collect();
    search_params.push(shall(json!({"name": "_id", "type": "token"})));
    search_params.push(shall(json!({"name": "_lastUpdated", "type": "date"})));
    search_params.push(shall(json!({"name": "_source", "type": "uri", "documentation": SOURCE_PARAM_DOCUMENTATION})));

    json!({
        "type": resource.name,
        "documentation": documentation.join(" "),
        "interaction": codes(all).into_iter().map(|code| shall(json!({"code": code}))).collect::<Vec<_>>(),
        "searchParam": search_params,
    })
}
