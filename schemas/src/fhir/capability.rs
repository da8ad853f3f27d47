//! The CapabilityStatement (`GET /FHIR/R5/metadata`, §6.10). It lists the reference's 26 resource types in sorted
//! order (what `jupyterhealth-client`'s `list_fhir_resource_types()` returns) with the US Core
//! `capabilitystatement-expectation` SHALL extension and the SMART security block, as the reference does — but it
//! advertises only what jhe serves: the reference also lists create, update, patch and delete on every type for its
//! imported-record store, which jhe does not have, so a client reading the reference's statement would be promised
//! writes that answer 405 here. Types jhe keeps no records of are read and search only (always empty); the native
//! types carry the search parameters and operations (`$lastn`, `$stats`, `$export`) jhe implements.

use serde_json::{Map, Value, json};

use super::time::{UtcSuffix, format_utc};

const EXPECTATION_URL: &str = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-expectation";
const OAUTH_URIS_URL: &str = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris";
const SECURITY_SERVICE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/restful-security-service";

/// How one resource type is served: the jhe-native store (interactions it implements, its own search parameters)
/// if jhe keeps such records, and the search parameters the reference's imported-record store defines (accepted
/// here, matching nothing, for types jhe keeps no records of). Parameter types are the reference config's (`const`,
/// `code` and `identifier` are FHIR `token`).
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
        native: Some((
            &["create", "read", "search"],
            &[
                ("code", "token"),
                ("date", "date"),
                ("identifier", "token"),
                ("patient", "reference"),
                ("patient.organization", "reference"),
                ("status", "const"),
                ("subject", "reference"),
            ],
        )),
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
            &[
                ("birthdate", "date"),
                ("family", "string"),
                ("given", "string"),
                ("identifier", "token"),
                ("name", "string"),
            ],
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

const SOURCE_PARAM_DOCUMENTATION: &str = "jhe has one store: omit _source, or pass the JHE-native source URI; \
     any other source (and _source:below) matches nothing.";

/// The FHIR operations jhe implements, by resource type: (name, canonical definition).
const OPERATIONS: &[(&str, &str, &str)] = &[
    ("Group", "export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"),
    ("Observation", "lastn", "http://hl7.org/fhir/OperationDefinition/Observation-lastn"),
    ("Observation", "stats", "http://hl7.org/fhir/OperationDefinition/Observation-stats"),
];

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
        "rest": [{
            "mode": "server",
            "documentation": "Searches also support _sort (date, lastUpdated, id), _count, _summary=count and \
                cursor paging through their next links. POST [base]/[type]/_search is accepted with form-encoded \
                parameters. Observation search takes patient._has:Group:member:_id (or _group) for a study.",
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
    let (interactions, params, documentation): (&[&str], Params, String) = match resource.native {
        Some((interactions, params)) => {
            let documentation = if resource.name == "Observation" {
                "JHE-native Observations code their measurement with system https://w3id.org/openmhealth and carry \
                 the full Open mHealth data point as a base64 JSON valueAttachment (contentType application/json). \
                 Results hold only what the caller may see under the patients' consents."
                    .to_owned()
            } else {
                format!("Read and search only; {} records are managed through the Admin REST API.", resource.name)
            };
            (interactions, params, documentation)
        }
        None => (
            READ_SEARCH,
            resource.imported_params,
            format!(
                "jhe keeps no {} records (the reference Exchange keeps them only in an imported-record store jhe \
                 does not have): searches answer an empty Bundle and reads 404.",
                resource.name
            ),
        ),
    };
    let mut params: Vec<(&str, &str)> = params.to_vec();
    params.sort_unstable_by_key(|(name, _)| *name);
    let mut search_params: Vec<Value> = params
        .iter()
        .map(|(name, kind)| {
            let kind = match *kind {
                "identifier" | "code" | "const" => "token",
                other => other,
            };
            shall(json!({"name": name, "type": kind}))
        })
        .collect();
    search_params.push(shall(json!({"name": "_id", "type": "token"})));
    search_params.push(shall(json!({"name": "_lastUpdated", "type": "date"})));
    search_params.push(shall(json!({"name": "_source", "type": "uri", "documentation": SOURCE_PARAM_DOCUMENTATION})));

    let mut entry = json!({
        "type": resource.name,
        "documentation": documentation,
        "interaction": codes(interactions.iter().copied()).into_iter().map(|code| shall(json!({"code": code}))).collect::<Vec<_>>(),
        "searchParam": search_params,
    });
    let operations: Vec<Value> = OPERATIONS
        .iter()
        .filter(|(type_name, _, _)| *type_name == resource.name)
        .map(|(_, name, definition)| shall(json!({"name": name, "definition": definition})))
        .collect();
    if !operations.is_empty() {
        entry["operation"] = Value::Array(operations);
    }
    entry
}
