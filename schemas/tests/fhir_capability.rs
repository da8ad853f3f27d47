//! The CapabilityStatement (jhe-compat §6.10), checked against what the reference's own tests and client expect.

use jhe_schemas::fhir::capability::{CapabilityContext, capability_statement, resource_types};
use serde_json::{Value, json};

/// 2026-08-21T10:11:12.345678Z
const STARTED_AT: i64 = 1_787_307_072_345_678;

fn statement() -> Value {
    capability_statement(&CapabilityContext {
        base_url: "https://jhe.example.org/",
        software_name: "JupyterHealth Exchange",
        software_version: None,
        started_at_micros: STARTED_AT,
    })
}

fn resource<'a>(statement: &'a Value, name: &str) -> &'a Value {
    statement["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == name).unwrap()
}

fn param<'a>(entry: &'a Value, name: &str) -> &'a Value {
    entry["searchParam"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
}

fn codes(entry: &Value) -> Vec<&str> {
    entry["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect()
}

fn shall() -> Value {
    json!([{"url": "http://hl7.org/fhir/StructureDefinition/capabilitystatement-expectation", "valueCode": "SHALL"}])
}

#[test]
fn lists_the_26_resource_types_sorted() {
    let expected = [
        "AllergyIntolerance",
        "CarePlan",
        "CareTeam",
        "Condition",
        "Coverage",
        "Device",
        "DiagnosticReport",
        "DocumentReference",
        "Encounter",
        "Goal",
        "Group",
        "Immunization",
        "Location",
        "Medication",
        "MedicationDispense",
        "MedicationRequest",
        "Observation",
        "Organization",
        "Patient",
        "Practitioner",
        "PractitionerRole",
        "Procedure",
        "Provenance",
        "QuestionnaireResponse",
        "RelatedPerson",
        "ServiceRequest",
    ];
    assert_eq!(resource_types().collect::<Vec<_>>(), expected);
    // What the Python client's list_fhir_resource_types() reads: rest[*].resource[*].type.
    let statement = statement();
    let listed: Vec<&str> =
        statement["rest"][0]["resource"].as_array().unwrap().iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(listed, expected);
}

#[test]
fn header_and_security() {
    let statement = statement();
    let keys: Vec<&str> = statement.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "resourceType",
            "status",
            "date",
            "kind",
            "software",
            "implementation",
            "fhirVersion",
            "format",
            "patchFormat",
            "rest"
        ]
    );
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["status"], "active");
    assert_eq!(statement["date"], "2026-08-21T10:11:12.345678+00:00");
    assert_eq!(statement["kind"], "instance");
    assert_eq!(statement["software"], json!({"name": "JupyterHealth Exchange"}));
    assert_eq!(
        statement["implementation"],
        json!({"description": "JupyterHealth Exchange", "url": "https://jhe.example.org/FHIR/R5/"})
    );
    assert_eq!(statement["fhirVersion"], "5.0.0");
    assert_eq!(statement["format"], json!(["json"]));
    assert_eq!(statement["patchFormat"], json!(["application/json"]));

    let rest = &statement["rest"][0];
    assert_eq!(rest["mode"], "server");
    assert_eq!(
        rest["security"]["extension"],
        json!([{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": "https://jhe.example.org/o/authorize/"},
                {"url": "token", "valueUri": "https://jhe.example.org/o/token/"}
            ]
        }])
    );
    assert_eq!(rest["security"]["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    assert_eq!(rest["interaction"], json!([{"code": "batch", "extension": shall()}]));

    let versioned = capability_statement(&CapabilityContext {
        base_url: "http://localhost:8000",
        software_name: "jhe",
        software_version: Some("0.1.0"),
        started_at_micros: 0,
    });
    assert_eq!(versioned["software"], json!({"name": "jhe", "version": "0.1.0"}));
    assert_eq!(versioned["date"], "1970-01-01T00:00:00+00:00");
}

#[test]
fn observation_entry() {
    let statement = statement();
    let observation = resource(&statement, "Observation");
    assert_eq!(codes(observation), ["create", "delete", "patch", "read", "search-type", "update"]);
    let documentation = observation["documentation"].as_str().unwrap();
    assert!(documentation.starts_with(
        "The delete, patch, update interactions apply to imported records only; JHE-native records support create, \
         read, search-type."
    ));
    assert!(documentation.contains("w3id.org/openmhealth") && documentation.contains("valueAttachment"));
    let names: Vec<&str> =
        observation["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["category", "code", "date", "status", "_id", "_lastUpdated", "_source"]);
    assert_eq!(param(observation, "date")["type"], "date");
    assert_eq!(param(observation, "code"), &json!({"name": "code", "type": "token", "extension": shall()}));
    assert!(param(observation, "category")["documentation"].as_str().unwrap().contains("_source"));
    assert_eq!(param(observation, "status").get("documentation"), None);
}

#[test]
fn patient_condition_and_group_entries() {
    let statement = statement();
    let patient = resource(&statement, "Patient");
    assert!(patient["documentation"].as_str().unwrap().starts_with("The create, delete, patch, update interactions"));
    for (name, kind) in [
        ("birthdate", "date"),
        ("family", "string"),
        ("given", "string"),
        ("name", "string"),
        ("identifier", "token"),
        ("_id", "token"),
        ("_lastUpdated", "date"),
        ("_source", "uri"),
    ] {
        assert_eq!(param(patient, name)["type"], kind, "{name}");
    }
    assert!(param(patient, "death-date")["documentation"].as_str().unwrap().contains("_source"));
    assert_eq!(param(patient, "identifier").get("documentation"), None);
    assert_eq!(patient["interaction"][0]["extension"], shall());

    let condition = resource(&statement, "Condition");
    assert!(codes(condition).contains(&"patch"));
    assert_eq!(
        condition["documentation"],
        "Creates routed to the imported-record store must name a FhirSource via the X-JHE-FHIR-Source-ID header or \
         the resource's meta.source."
    );

    let interactions: Vec<Value> = ["create", "delete", "patch", "read", "search-type", "update"]
        .map(|code| json!({"code": code, "extension": shall()}))
        .into();
    let common = json!([
        {"name": "_id", "type": "token", "extension": shall()},
        {"name": "_lastUpdated", "type": "date", "extension": shall()},
        {
            "name": "_source",
            "type": "uri",
            "documentation": "Selects the backing store: omit (or pass the JHE-native source URI) for JHE-native \
                records; pass an imported FhirSource URI (or _source:below) for imported records.",
            "extension": shall()
        }
    ]);
    assert_eq!(
        resource(&statement, "Group").to_string(),
        json!({
            "type": "Group",
            "documentation": "The create, delete, patch, update interactions apply to imported records only; \
                JHE-native records support read, search-type. Creates routed to the imported-record store must name \
                a FhirSource via the X-JHE-FHIR-Source-ID header or the resource's meta.source.",
            "interaction": interactions,
            "searchParam": common
        })
        .to_string()
    );
}
