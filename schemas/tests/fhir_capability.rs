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
        ["resourceType", "status", "date", "kind", "software", "implementation", "fhirVersion", "format", "rest"]
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
    assert_eq!(statement.get("patchFormat"), None, "jhe patches nothing");

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
    assert_eq!(codes(observation), ["create", "read", "search-type"], "only what jhe serves");
    let documentation = observation["documentation"].as_str().unwrap();
    assert!(documentation.contains("w3id.org/openmhealth") && documentation.contains("valueAttachment"));
    let names: Vec<&str> =
        observation["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "code",
            "date",
            "identifier",
            "patient",
            "patient.organization",
            "status",
            "subject",
            "_id",
            "_lastUpdated",
            "_source"
        ]
    );
    assert_eq!(param(observation, "date")["type"], "date");
    assert_eq!(param(observation, "code"), &json!({"name": "code", "type": "token", "extension": shall()}));
    assert_eq!(param(observation, "patient")["type"], "reference");
    let operations: Vec<&str> =
        observation["operation"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(operations, ["lastn", "stats"]);
}

#[test]
fn patient_condition_and_group_entries() {
    let statement = statement();
    let read_search: Vec<Value> =
        ["read", "search-type"].map(|code| json!({"code": code, "extension": shall()})).into();
    let patient = resource(&statement, "Patient");
    assert_eq!(patient["interaction"], Value::Array(read_search.clone()));
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

    // a type jhe keeps no records of: read and search, saying they are always empty
    let condition = resource(&statement, "Condition");
    assert_eq!(codes(condition), ["read", "search-type"]);
    assert!(condition["documentation"].as_str().unwrap().contains("empty Bundle"));
    assert_eq!(param(condition, "clinical-status")["type"], "token");

    let group = resource(&statement, "Group");
    assert_eq!(group["interaction"], Value::Array(read_search));
    assert_eq!(
        group["operation"],
        json!([{
            "name": "export",
            "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
            "extension": shall()
        }])
    );
    // no type promises a write but Observation's create
    for entry in statement["rest"][0]["resource"].as_array().unwrap() {
        for code in codes(entry) {
            assert!(
                ["read", "search-type"].contains(&code) || (entry["type"] == "Observation" && code == "create"),
                "{} advertises {code}",
                entry["type"]
            );
        }
    }
}
