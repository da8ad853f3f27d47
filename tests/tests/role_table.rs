//! The role table of jhe-compat §4.2/§4.3 with the gaps of §13.2 closed: for each write route and each kind of
//! caller, the expected status. Every case runs on its own fresh copy of the seeded database, so a write that
//! succeeds for one caller cannot change what the next caller sees.
//!
//! The foreign-object dimension: every route that takes a patient, study or organization id, called by Lifespan
//! Lab's practitioners (every role) with the id of one they may not see (Neptunian Pulse Lab's patient Percy, its
//! study and the lab itself), answers 403 or 404 and changes nothing.

use jhe_tests::{TestServer, seeded};
use serde_json::Value;
use std::collections::HashMap;

/// Callers in the order of the expected-status arrays: superuser, manager, member and viewer of Lifespan Lab,
/// a practitioner of another organization (manager_mark, Neptune Health System), a patient (ll_patient_peter).
const CALLERS: [&str; 6] = [seeded::ADMIN, seeded::MARY, seeded::MEGAN, seeded::VICTOR, seeded::MARK, seeded::PETER];

struct Case {
    method: &'static str,
    /// `{name}` placeholders are replaced by ids of the seeded data (see `placeholders`).
    path: &'static str,
    body: Option<&'static str>,
    /// SQL run before the request; its single returned id replaces `{new}`.
    setup: Option<&'static str>,
    expect: [u16; 6],
}

async fn placeholders(server: &TestServer) -> HashMap<&'static str, i64> {
    let user = |email: &'static str| async move { server.id_of("users", "email", email).await };
    let mut ids = HashMap::new();
    ids.insert("lifespan", server.id_of("organizations", "name", "Lifespan Lab").await);
    ids.insert("saturn", server.id_of("organizations", "name", "Saturn School of Data Science").await);
    ids.insert("pulse_lab", server.id_of("organizations", "name", "Neptunian Pulse Lab").await);
    ids.insert("bt_study", server.id_of("studies", "name", "Nep Pulse Lab Study on BT").await);
    ids.insert("bp_study", server.id_of("studies", "name", "Lifespan Study on BP").await);
    ids.insert("bp_hr_study", server.id_of("studies", "name", "Lifespan Study on BP & HR").await);
    ids.insert("heart_rate", server.id_of("codeable_concepts", "coding_code", "omh:heart-rate:2.0").await);
    ids.insert("blood_pressure", server.id_of("codeable_concepts", "coding_code", "omh:blood-pressure:4.0").await);
    ids.insert("dexcom", server.id_of("data_sources", "name", "Dexcom").await);
    ids.insert("oura", server.id_of("data_sources", "name", "Oura").await);
    ids.insert("carex_source", server.id_of("data_sources", "name", "CareX").await);
    ids.insert("carex_client", server.id_of("oauth_clients", "client_id", "carex").await);
    ids.insert("commonhealth_client", server.id_of("oauth_clients", "client_id", "commonhealth").await);
    ids.insert("site_title", server.id_of("settings", "key", "site.ui.title").await);
    ids.insert("mark_user", user(seeded::MARK).await);
    ids.insert("mary_user", user(seeded::MARY).await);
    ids.insert("victor_user", user(seeded::VICTOR).await);
    let patient = |email: &'static str| async move {
        let user = server.id_of("users", "email", email).await;
        server.id_of("patients", "user_id::text", &user.to_string()).await
    };
    ids.insert("peter", patient(seeded::PETER).await);
    ids.insert("pamela", patient(seeded::PAMELA).await);
    ids.insert("percy", patient(seeded::PERCY).await);
    ids.insert("megan_practitioner", {
        let user = user(seeded::MEGAN).await;
        server.id_of("practitioners", "user_id::text", &user.to_string()).await
    });
    ids
}

fn fill(template: &str, ids: &HashMap<&'static str, i64>) -> String {
    let mut text = template.to_owned();
    for (name, id) in ids {
        text = text.replace(&format!("{{{name}}}"), &id.to_string());
    }
    let unfilled = text.match_indices('{').any(|(at, _)| text[at + 1..].starts_with(|c: char| c.is_ascii_lowercase()));
    assert!(!unfilled, "unknown placeholder in {text}");
    text
}

async fn run(case: Case) {
    let mut failures = Vec::new();
    for (caller, expected) in CALLERS.iter().zip(case.expect) {
        let server = TestServer::start().await.unwrap();
        let mut ids = placeholders(&server).await;
        if let Some(setup) = case.setup {
            let new: i64 =
                sqlx::query_scalar(sqlx::AssertSqlSafe(fill(setup, &ids))).fetch_one(&server.db.pool).await.unwrap();
            ids.insert("new", new);
        }
        let path = fill(case.path, &ids);
        let body: Option<Value> = case.body.map(|b| serde_json::from_str(&fill(b, &ids)).expect("valid body template"));
        let token = server.token(caller).await;
        let answer = server.request(case.method, &path, Some(&token), body).await;
        if answer.status != expected {
            failures.push(format!("{caller}: expected {expected}, got {} {}", answer.status, answer.body));
        }
    }
    assert!(failures.is_empty(), "{} {}:\n{}", case.method, case.path, failures.join("\n"));
}

macro_rules! role_cases {
    ($($name:ident: $method:literal $path:literal $(body $body:literal)? $(setup $setup:literal)? => $expect:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                run(Case {
                    method: $method,
                    path: $path,
                    body: None $(.or(Some($body)))?,
                    setup: None $(.or(Some($setup)))?,
                    expect: $expect,
                })
                .await;
            }
        )*
    };
}

//                                                                  admin mary megan victor mark peter
role_cases! {
    organization_create_sub: "POST" "/api/v1/organizations"
        body r#"{"name": "New Lab", "type": "laboratory", "partOf": {lifespan}}"# => [201, 201, 403, 403, 403, 403];
    organization_create_top_level: "POST" "/api/v1/organizations"
        body r#"{"name": "New Top", "type": "edu", "partOf": 0}"# => [201, 403, 403, 403, 403, 403];
    organization_update: "PATCH" "/api/v1/organizations/{lifespan}" body r#"{"name": "Renamed"}"#
        => [200, 200, 403, 403, 403, 403];
    organization_delete: "DELETE" "/api/v1/organizations/{lifespan}" => [204, 204, 403, 403, 403, 403];
    organization_add_user: "POST" "/api/v1/organizations/{lifespan}/user"
        body r#"{"jheUserId": {mark_user}, "organizationPartitionerRole": "viewer"}"# => [201, 201, 403, 403, 403, 403];
    organization_remove_user: "DELETE" "/api/v1/organizations/{lifespan}/remove_user"
        body r#"{"jheUserId": {victor_user}}"# => [204, 204, 403, 403, 403, 403];
    patient_create: "POST" "/api/v1/patients"
        body r#"{"organizationId": {lifespan}, "telecomEmail": "role.table@example.com"}"# => [201, 201, 201, 403, 403, 403];
    patient_update: "PATCH" "/api/v1/patients/{peter}?organizationId={lifespan}" body r#"{"nameGiven": "P"}"#
        => [200, 200, 200, 403, 403, 403];
    patient_remove: "DELETE" "/api/v1/patients/{peter}?organizationId={lifespan}" => [204, 204, 204, 403, 403, 403];
    // Percy is a patient of Neptunian Pulse Lab: only a superuser adds him by id (others ask him, he accepts)
    patient_add_organization: "PATCH" "/api/v1/patients/{percy}/global_add_organization?organizationId={lifespan}"
        body "{}" => [200, 404, 404, 403, 403, 403];
    patient_add_visible_to_another_organization: "PATCH"
        "/api/v1/patients/{peter}/global_add_organization?organizationId={saturn}" body "{}"
        => [200, 200, 403, 403, 403, 403];
    practitioner_create: "POST" "/api/v1/practitioners" body r#"{"telecomEmail": "dr.role@example.com"}"#
        => [201, 403, 403, 403, 403, 403];
    practitioner_update: "PATCH" "/api/v1/practitioners/{megan_practitioner}" body r#"{"nameFamily": "X"}"#
        => [200, 403, 403, 403, 403, 403];
    practitioner_delete: "DELETE" "/api/v1/practitioners/{megan_practitioner}" => [204, 403, 403, 403, 403, 403];
    user_create: "POST" "/api/v1/users" body r#"{"email": "someone@example.com"}"# => [201, 403, 403, 403, 403, 403];
    user_update_mary: "PATCH" "/api/v1/users/{mary_user}" body r#"{"firstName": "M"}"# => [200, 200, 403, 403, 403, 403];
    user_delete: "DELETE" "/api/v1/users/{victor_user}" => [204, 403, 403, 403, 403, 403];
    study_create: "POST" "/api/v1/studies"
        body r#"{"name": "New Study", "description": "d", "organization": {lifespan}}"# => [201, 201, 201, 403, 403, 403];
    study_update: "PATCH" "/api/v1/studies/{bp_study}" body r#"{"name": "Renamed"}"# => [200, 200, 200, 403, 403, 403];
    study_delete: "DELETE" "/api/v1/studies/{bp_study}" => [204, 204, 204, 403, 403, 403];
    study_enrol: "POST" "/api/v1/studies/{bp_study}/patients" body r#"{"patientIds": [{new}]}"#
        setup "WITH p AS (INSERT INTO patients (name_family) VALUES ('RoleTable') RETURNING id),
               o AS (INSERT INTO patient_organizations (patient_id, organization_id) SELECT id, {lifespan} FROM p)
               SELECT id FROM p" => [201, 201, 201, 403, 403, 403];
    study_unenrol: "DELETE" "/api/v1/studies/{bp_study}/patients" body r#"{"patientIds": [{pamela}]}"#
        => [204, 204, 204, 403, 403, 403];
    study_scope_request_add: "POST" "/api/v1/studies/{bp_study}/scope_requests" body r#"{"scopeCodeId": {heart_rate}}"#
        => [201, 201, 201, 403, 403, 403];
    study_scope_request_remove: "DELETE" "/api/v1/studies/{bp_study}/scope_requests"
        body r#"{"scopeCodeId": {blood_pressure}}"# => [204, 204, 204, 403, 403, 403];
    study_client_add: "POST" "/api/v1/studies/{bp_study}/clients" body r#"{"clientId": {commonhealth_client}}"#
        => [201, 201, 201, 403, 403, 403];
    study_client_remove: "DELETE" "/api/v1/studies/{bp_study}/clients" body r#"{"client_id": {carex_client}}"#
        => [204, 204, 204, 403, 403, 403];
    study_data_source_add: "POST" "/api/v1/studies/{bp_study}/data_sources" body r#"{"dataSourceId": {dexcom}}"#
        => [201, 201, 201, 403, 403, 403];
    study_data_source_remove: "DELETE" "/api/v1/studies/{bp_study}/data_sources"
        body r#"{"dataSourceId": {carex_source}}"# => [204, 204, 204, 403, 403, 403];
    consent_give: "POST" "/api/v1/patients/{peter}/consents"
        body r#"{"studyScopeConsents": [{"studyId": {bp_study}, "scopeConsents": [
            {"codingSystem": "https://w3id.org/openmhealth", "codingCode": "omh:blood-pressure:4.0", "consented": true}]}]}"#
        => [201, 201, 201, 403, 403, 201];
    consent_change: "PATCH" "/api/v1/patients/{peter}/consents"
        body r#"{"studyScopeConsents": [{"studyId": {bp_hr_study}, "scopeConsents": [
            {"codingSystem": "https://w3id.org/openmhealth", "codingCode": "omh:heart-rate:2.0", "consented": false}]}]}"#
        => [200, 200, 200, 403, 403, 200];
    consent_withdraw: "DELETE" "/api/v1/patients/{peter}/consents"
        body r#"{"studyScopeConsents": [{"studyId": {bp_hr_study}, "scopeConsents": [
            {"codingSystem": "https://w3id.org/openmhealth", "codingCode": "omh:heart-rate:2.0", "consented": true}]}]}"#
        => [204, 204, 204, 403, 403, 204];
    data_source_create: "POST" "/api/v1/data_sources" body r#"{"name": "Garmin", "type": "personal_device"}"#
        => [201, 403, 403, 403, 403, 403];
    data_source_update: "PATCH" "/api/v1/data_sources/{dexcom}" body r#"{"name": "Dexcom G7"}"#
        => [200, 403, 403, 403, 403, 403];
    data_source_delete: "DELETE" "/api/v1/data_sources/{oura}" => [204, 403, 403, 403, 403, 403];
    data_source_scope_add: "POST" "/api/v1/data_sources/{dexcom}/supported_scopes" body r#"{"scopeCodeId": {heart_rate}}"#
        => [201, 403, 403, 403, 403, 403];
    client_create: "POST" "/api/v1/clients"
        body r#"{"name": "App", "clientId": "role-table-app", "invitationUrl": "https://app.example.org/i/CODE"}"#
        => [201, 403, 403, 403, 403, 403];
    client_update: "PATCH" "/api/v1/clients/{carex_client}" body r#"{"name": "CareX 2"}"# => [200, 403, 403, 403, 403, 403];
    client_delete: "DELETE" "/api/v1/clients/{commonhealth_client}" => [204, 403, 403, 403, 403, 403];
    client_data_source_add: "POST" "/api/v1/clients/{carex_client}/data_sources" body r#"{"dataSourceId": {dexcom}}"#
        => [201, 403, 403, 403, 403, 403];
    setting_create: "POST" "/api/v1/jhe_settings" body r#"{"key": "site.extra", "valueType": "string", "value": "x"}"#
        => [201, 403, 403, 403, 403, 403];
    setting_update: "PATCH" "/api/v1/jhe_settings/{site_title}" body r#"{"value": "My JHE"}"#
        => [200, 403, 403, 403, 403, 403];
    invitation_create: "POST" "/api/v1/invitation" body r#"{"patient_id": {peter}, "client_id": {carex_client}}"#
        => [201, 201, 201, 403, 403, 403];
    practitioner_client_create: "POST" "/api/v1/practitioner_clients" body r#"{"label": "notebook"}"#
        => [201, 201, 201, 201, 201, 403];
}

/// A fingerprint of everything a foreign-id request could change: people, memberships, studies, consents,
/// invitations, requests and export jobs (practitioner settings are left out: lists remember the view asked for).
async fn control_plane_digest(server: &TestServer) -> String {
    const TABLES: [&str; 15] = [
        "users",
        "patients",
        "patient_organizations",
        "patient_identifiers",
        "organizations",
        "practitioner_organizations",
        "studies",
        "study_patients",
        "study_scope_requests",
        "study_patient_scope_consents",
        "study_data_sources",
        "study_clients",
        "patient_invitations",
        "patient_organization_requests",
        "export_jobs",
    ];
    let parts: Vec<String> = TABLES
        .iter()
        .map(|table| format!("(SELECT coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {table} t)"))
        .collect();
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT concat_ws(' ', {})", parts.join(", "))))
        .fetch_one(&server.db.pool)
        .await
        .unwrap()
}

/// Lifespan Lab's manager, member and viewer: none may reach Neptunian Pulse Lab's objects.
const LIFESPAN_CALLERS: [&str; 3] = [seeded::MARY, seeded::MEGAN, seeded::VICTOR];

async fn run_foreign(method: &str, path: &str, body: Option<&str>) {
    let server = TestServer::start().await.unwrap();
    let ids = placeholders(&server).await;
    let path = fill(path, &ids);
    let before = control_plane_digest(&server).await;
    let mut failures = Vec::new();
    for caller in LIFESPAN_CALLERS {
        let body: Option<Value> = body.map(|b| serde_json::from_str(&fill(b, &ids)).expect("valid body template"));
        let token = server.token(caller).await;
        let answer = server.request(method, &path, Some(&token), body).await;
        if !matches!(answer.status, 403 | 404) {
            failures.push(format!("{caller}: expected 403 or 404, got {} {}", answer.status, answer.body));
        }
        if answer.body.to_string().contains(seeded::PERCY) {
            failures.push(format!("{caller}: the answer describes Percy: {}", answer.body));
        }
    }
    assert_eq!(control_plane_digest(&server).await, before, "{method} {path} changed something");
    assert!(failures.is_empty(), "{method} {path}:\n{}", failures.join("\n"));
}

macro_rules! foreign_cases {
    ($($name:ident: $method:literal $path:literal $(body $body:expr)?;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                run_foreign($method, $path, None $(.or(Some($body)))?).await;
            }
        )*
    };
}

const BT_CONSENT: &str = r#"{"studyScopeConsents": [{"studyId": {bt_study}, "scopeConsents": [
    {"codingSystem": "https://w3id.org/openmhealth", "codingCode": "omh:body-temperature:4.0", "consented": true}]}]}"#;

foreign_cases! {
    foreign_patient_read: "GET" "/api/v1/patients/{percy}";
    foreign_patient_update: "PATCH" "/api/v1/patients/{percy}?organizationId={lifespan}" body r#"{"nameGiven": "X"}"#;
    foreign_patient_update_in_its_organization: "PATCH" "/api/v1/patients/{percy}?organizationId={pulse_lab}"
        body r#"{"telecomEmail": "x@example.com"}"#;
    foreign_patient_remove: "DELETE" "/api/v1/patients/{percy}?organizationId={lifespan}";
    foreign_patient_remove_from_its_organization: "DELETE" "/api/v1/patients/{percy}?organizationId={pulse_lab}";
    foreign_patient_add_organization: "PATCH"
        "/api/v1/patients/{percy}/global_add_organization?organizationId={lifespan}" body "{}";
    foreign_patient_consents_read: "GET" "/api/v1/patients/{percy}/consents";
    foreign_patient_consents_reset: "GET" "/api/v1/patients/{percy}/consents?reset=true";
    foreign_patient_consents_write: "POST" "/api/v1/patients/{percy}/consents" body "{}";
    foreign_patient_consents_change: "PATCH" "/api/v1/patients/{percy}/consents" body "{}";
    foreign_patient_consents_withdraw: "DELETE" "/api/v1/patients/{percy}/consents" body "{}";
    foreign_patient_clients: "GET" "/api/v1/patients/{percy}/consolidated_clients";
    foreign_patient_invitation: "POST" "/api/v1/invitation" body r#"{"patient_id": {percy}, "client_id": {carex_client}}"#;
    foreign_patient_enrolled_in_own_study: "POST" "/api/v1/studies/{bp_study}/patients" body r#"{"patientIds": [{percy}]}"#;
    foreign_patient_unenrolled_from_its_study: "DELETE" "/api/v1/studies/{bt_study}/patients"
        body r#"{"patientIds": [{percy}]}"#;
    foreign_study_consent_for_own_patient: "POST" "/api/v1/patients/{peter}/consents" body BT_CONSENT;
    foreign_study_read: "GET" "/api/v1/studies/{bt_study}";
    foreign_study_update: "PATCH" "/api/v1/studies/{bt_study}" body r#"{"name": "Renamed"}"#;
    foreign_study_delete: "DELETE" "/api/v1/studies/{bt_study}";
    foreign_study_patients: "GET" "/api/v1/studies/{bt_study}/patients";
    foreign_study_enrol_own_patient: "POST" "/api/v1/studies/{bt_study}/patients" body r#"{"patientIds": [{peter}]}"#;
    foreign_study_scope_request_add: "POST" "/api/v1/studies/{bt_study}/scope_requests"
        body r#"{"scopeCodeId": {heart_rate}}"#;
    foreign_study_client_add: "POST" "/api/v1/studies/{bt_study}/clients" body r#"{"clientId": {carex_client}}"#;
    foreign_study_data_source_add: "POST" "/api/v1/studies/{bt_study}/data_sources" body r#"{"dataSourceId": {dexcom}}"#;
    foreign_study_observation_summary: "GET" "/api/v1/studies/{bt_study}/observation_summary";
    foreign_organization_update: "PATCH" "/api/v1/organizations/{pulse_lab}" body r#"{"name": "Renamed"}"#;
    foreign_organization_delete: "DELETE" "/api/v1/organizations/{pulse_lab}";
    foreign_organization_add_user: "POST" "/api/v1/organizations/{pulse_lab}/user"
        body r#"{"jheUserId": {victor_user}, "organizationPartitionerRole": "manager"}"#;
    foreign_organization_remove_user: "DELETE" "/api/v1/organizations/{pulse_lab}/remove_user"
        body r#"{"jheUserId": {mark_user}}"#;
    foreign_organization_patient_create: "POST" "/api/v1/patients"
        body r#"{"organizationId": {pulse_lab}, "telecomEmail": "planted@example.com"}"#;
    foreign_organization_request: "POST" "/api/v1/patients/organization_requests"
        body r#"{"organizationId": {pulse_lab}, "telecomEmail": "ll_patient_peter@example.com"}"#;
    foreign_fhir_patient: "GET" "/FHIR/R5/Patient/{percy}";
    foreign_fhir_group: "GET" "/FHIR/R5/Group/{bt_study}";
}
