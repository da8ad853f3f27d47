//! FHIR R5 reads and searches of the Postgres-backed resources (Patient, Group, Organization, Practitioner,
//! Device) and the CapabilityStatement, against the seeded demo data (jhe-compat §6.1–§6.6, §6.9, §6.10; scoping
//! §4.3 with decisions.md), including the exact calls `jupyterhealth-client` 0.5.0 makes (§11.2, §11.7).

use jhe_tests::{Answer, TestServer, seeded};
use serde_json::{Value, json};

const JHE_SOURCE: &str = "https://jupyterhealth.org/jhe";
const MODEL_SYSTEM: &str = "https://jupyterhealth.org/fhir/CodeSystem/model";

/// Ids of the seeded rows the tests name.
struct Ids {
    lifespan: i64,
    planetary: i64,
    saturn: i64,
    neptune: i64,
    medicine: i64,
    cardiology: i64,
    pulse_lab: i64,
    cosmic: i64,
    bp_hr: i64,
    bp: i64,
    bgl: i64,
    bt: i64,
    o2: i64,
    peter: i64,
    pamela: i64,
    percy: i64,
    paul: i64,
    pat: i64,
    carex: i64,
    questionnaire: i64,
    dexcom: i64,
    ihealth: i64,
    mary: i64,
    megan: i64,
    victor: i64,
    tom: i64,
    mark: i64,
}

async fn profile_id(server: &TestServer, table: &str, email: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT t.id FROM {table} t JOIN users u ON u.id = t.user_id WHERE u.email = $1"
    )))
    .bind(email)
    .fetch_one(&server.db.pool)
    .await
    .unwrap_or_else(|e| panic!("{table} of {email}: {e}"))
}

async fn ids(server: &TestServer) -> Ids {
    let org = |name: &'static str| server.id_of("organizations", "name", name);
    let study = |name: &'static str| server.id_of("studies", "name", name);
    let source = |name: &'static str| server.id_of("data_sources", "name", name);
    Ids {
        lifespan: org("Lifespan Lab").await,
        planetary: org("Planetary Research Institute").await,
        saturn: org("Saturn School of Data Science").await,
        neptune: org("Neptune Health System").await,
        medicine: org("Department of Medicine").await,
        cardiology: org("Cardiology Division").await,
        pulse_lab: org("Neptunian Pulse Lab").await,
        cosmic: org("Cosmic Cardio Lab").await,
        bp_hr: study("Lifespan Study on BP & HR").await,
        bp: study("Lifespan Study on BP").await,
        bgl: study("Cardiology Div Study on BGL").await,
        bt: study("Nep Pulse Lab Study on BT").await,
        o2: study("Cosmic Cardio Lab Study on O2").await,
        peter: profile_id(server, "patients", seeded::PETER).await,
        pamela: profile_id(server, "patients", seeded::PAMELA).await,
        percy: profile_id(server, "patients", seeded::PERCY).await,
        paul: profile_id(server, "patients", seeded::PAUL).await,
        pat: profile_id(server, "patients", seeded::PAT).await,
        carex: source("CareX").await,
        questionnaire: source("Questionnaire").await,
        dexcom: source("Dexcom").await,
        ihealth: source("iHealth").await,
        mary: profile_id(server, "practitioners", seeded::MARY).await,
        megan: profile_id(server, "practitioners", seeded::MEGAN).await,
        victor: profile_id(server, "practitioners", seeded::VICTOR).await,
        tom: profile_id(server, "practitioners", seeded::TOM).await,
        mark: profile_id(server, "practitioners", seeded::MARK).await,
    }
}

async fn sql(server: &TestServer, statement: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&server.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// A searchset Bundle with the envelope §6.6 promises (entry and link always present, self first).
fn assert_searchset(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 200, "{what}: {}", answer.body);
    let body = &answer.body;
    assert_eq!(body["resourceType"], "Bundle", "{what}");
    assert_eq!(body["type"], "searchset", "{what}");
    assert!(body["total"].is_u64(), "{what}: total");
    assert!(body["entry"].is_array(), "{what}: entry must always be present");
    assert_eq!(body["link"][0]["relation"], "self", "{what}: self link first");
    assert_eq!(body["meta"], json!({}), "{what}");
}

async fn search(server: &TestServer, token: &str, path: &str) -> Value {
    let answer = server.get(path, token).await;
    assert_searchset(&answer, path);
    answer.body
}

/// The resource ids of a Bundle's entries, in order.
fn ids_in(bundle: &Value) -> Vec<i64> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"]["id"].as_str().expect("string id").parse().expect("integer id"))
        .collect()
}

/// The ids a search finds, checking that `total` counts exactly them (all on one page).
async fn found(server: &TestServer, token: &str, path: &str) -> Vec<i64> {
    let bundle = search(server, token, path).await;
    let ids = ids_in(&bundle);
    assert_eq!(bundle["total"], ids.len(), "{path}: total vs entries");
    ids
}

fn sorted(mut ids: Vec<i64>) -> Vec<i64> {
    ids.sort_unstable();
    ids
}

fn link(bundle: &Value, relation: &str) -> Option<String> {
    bundle["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == relation)
        .map(|l| l["url"].as_str().unwrap().to_owned())
}

/// `application/x-www-form-urlencoded`, as Python's `urlencode` (what `requests` sends) writes it.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            b' ' => "+".to_owned(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

fn outcome(answer: &Answer, status: u16, diagnostics: &str) {
    assert_eq!(answer.status, status, "{}", answer.body);
    assert_eq!(answer.body["resourceType"], "OperationOutcome", "{}", answer.body);
    assert_eq!(answer.body["issue"][0]["severity"], "error");
    assert_eq!(answer.body["issue"][0]["code"], "processing");
    let text = answer.body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(text.contains(diagnostics), "diagnostics {text:?} should contain {diagnostics:?}");
}

#[tokio::test]
async fn each_caller_sees_the_resources_around_their_organizations() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let (mary, mark, tom, admin) = (
        server.token(seeded::MARY).await,
        server.token(seeded::MARK).await,
        server.token(seeded::TOM).await,
        server.token(seeded::ADMIN).await,
    );
    // Patient: name order (family, given), then id
    assert_eq!(found(&server, &mary, "/FHIR/R5/Patient").await, vec![ids.pamela, ids.peter]);
    assert_eq!(sorted(found(&server, &mark, "/FHIR/R5/Patient").await), sorted(vec![ids.percy, ids.pat]));
    assert_eq!(
        sorted(found(&server, &tom, "/FHIR/R5/Patient").await),
        sorted(vec![ids.peter, ids.pamela, ids.percy, ids.paul, ids.pat])
    );
    assert_eq!(found(&server, &admin, "/FHIR/R5/Patient").await.len(), 5);
    // Group: studies of the organizations, by name
    assert_eq!(found(&server, &mary, "/FHIR/R5/Group").await, vec![ids.bp, ids.bp_hr]);
    assert_eq!(sorted(found(&server, &mark, "/FHIR/R5/Group").await), sorted(vec![ids.bgl, ids.bt]));
    assert_eq!(sorted(found(&server, &tom, "/FHIR/R5/Group").await), sorted(vec![ids.bp, ids.bp_hr, ids.bt, ids.o2]));
    assert_eq!(found(&server, &admin, "/FHIR/R5/Group").await.len(), 5);
    // Organization: the caller's own
    assert_eq!(found(&server, &mary, "/FHIR/R5/Organization").await, vec![ids.lifespan, ids.planetary, ids.saturn]);
    assert_eq!(
        sorted(found(&server, &mark, "/FHIR/R5/Organization").await),
        sorted(vec![ids.neptune, ids.medicine, ids.cardiology, ids.pulse_lab])
    );
    assert_eq!(found(&server, &admin, "/FHIR/R5/Organization").await.len(), 9, "every organization, ROOT included");
    // Practitioner: those sharing an organization
    assert_eq!(
        sorted(found(&server, &mary, "/FHIR/R5/Practitioner").await),
        sorted(vec![ids.mary, ids.megan, ids.victor, ids.tom])
    );
    assert_eq!(sorted(found(&server, &mark, "/FHIR/R5/Practitioner").await), sorted(vec![ids.mark, ids.tom]));
    assert_eq!(found(&server, &admin, "/FHIR/R5/Practitioner").await.len(), 6);
    // Device: data sources of the organizations' studies
    assert_eq!(found(&server, &mary, "/FHIR/R5/Device").await, vec![ids.carex, ids.questionnaire]);
    assert_eq!(found(&server, &mark, "/FHIR/R5/Device").await, vec![ids.dexcom, ids.ihealth]);
    assert_eq!(
        sorted(found(&server, &tom, "/FHIR/R5/Device").await),
        sorted(vec![ids.carex, ids.questionnaire, ids.ihealth])
    );
    assert_eq!(found(&server, &admin, "/FHIR/R5/Device").await.len(), 6);
}

#[tokio::test]
async fn patients_see_themselves_and_what_surrounds_them() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let peter = server.token(seeded::PETER).await;
    assert_eq!(found(&server, &peter, "/FHIR/R5/Patient").await, vec![ids.peter]);
    // the location filters are ignored for patient users: still only themselves, never a 403
    let other = format!("/FHIR/R5/Patient?patient={}", ids.pat);
    assert_eq!(found(&server, &peter, &other).await, vec![ids.peter]);
    let other_org = format!("/FHIR/R5/Patient?patient.organization={}", ids.cosmic);
    assert_eq!(found(&server, &peter, &other_org).await, vec![ids.peter]);
    assert_eq!(found(&server, &peter, &format!("/FHIR/R5/Patient?_id={}", ids.pamela)).await, Vec::<i64>::new());
    assert_eq!(found(&server, &peter, "/FHIR/R5/Group").await, vec![ids.bp, ids.bp_hr]);
    assert_eq!(found(&server, &peter, "/FHIR/R5/Device").await, vec![ids.carex, ids.questionnaire]);
    assert_eq!(found(&server, &peter, "/FHIR/R5/Organization").await, vec![ids.lifespan]);
    assert_eq!(
        sorted(found(&server, &peter, "/FHIR/R5/Practitioner").await),
        sorted(vec![ids.mary, ids.megan, ids.victor, ids.tom])
    );
    // reads: their own record, nobody else's
    let own = server.get(&format!("/FHIR/R5/Patient/{}", ids.peter), &peter).await;
    assert_eq!((own.status, own.body["id"].as_str()), (200, Some(ids.peter.to_string().as_str())));
    let pamela = server.get(&format!("/FHIR/R5/Patient/{}", ids.pamela), &peter).await;
    outcome(&pamela, 404, &format!("Patient/{} not found.", ids.pamela));
    let study = server.get(&format!("/FHIR/R5/Group/{}", ids.bgl), &peter).await;
    outcome(&study, 404, "not found");

    let pat = server.token(seeded::PAT).await;
    assert_eq!(found(&server, &pat, "/FHIR/R5/Group").await, vec![ids.bgl, ids.o2]);
    assert_eq!(found(&server, &pat, "/FHIR/R5/Device").await, vec![ids.dexcom]);
    assert_eq!(found(&server, &pat, "/FHIR/R5/Organization").await, vec![ids.cardiology, ids.cosmic]);
    assert_eq!(sorted(found(&server, &pat, "/FHIR/R5/Practitioner").await), sorted(vec![ids.mark, ids.tom]));
}

#[tokio::test]
async fn a_practitioner_of_another_organization_sees_nothing_of_it() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let mark = server.token(seeded::MARK).await;
    // reads of Lifespan Lab's resources look like missing ones
    for path in [
        format!("/FHIR/R5/Patient/{}", ids.peter),
        format!("/FHIR/R5/Group/{}", ids.bp_hr),
        format!("/FHIR/R5/Organization/{}", ids.lifespan),
        format!("/FHIR/R5/Practitioner/{}", ids.megan),
        format!("/FHIR/R5/Device/{}", ids.carex),
    ] {
        outcome(&server.get(&path, &mark).await, 404, "not found.");
    }
    // searching for them by id finds nothing, and counts nothing
    for path in [
        format!("/FHIR/R5/Patient?_id={},{}", ids.peter, ids.pamela),
        format!("/FHIR/R5/Group?_id={}", ids.bp_hr),
        "/FHIR/R5/Patient?identifier=abc123".to_owned(),
        format!("/FHIR/R5/Patient?_summary=count&_id={}", ids.peter),
    ] {
        let bundle = search(&server, &mark, &path).await;
        assert_eq!((bundle["total"].as_u64(), ids_in(&bundle).len()), (Some(0), 0), "{path}");
    }
    // naming them as a location is refused
    let cases = [
        (format!("/FHIR/R5/Patient?patient={}", ids.peter), format!("Patient/{}", ids.peter)),
        (format!("/FHIR/R5/Group?patient._has:Group:member:_id={}", ids.bp_hr), format!("Group/{}", ids.bp_hr)),
        (format!("/FHIR/R5/Device?patient.organization={}", ids.lifespan), format!("Organization/{}", ids.lifespan)),
        // a study or patient that does not exist is refused the same way (nothing is revealed)
        ("/FHIR/R5/Patient?patient._has:_group:member:_id=39999".to_owned(), "Group/39999".to_owned()),
        ("/FHIR/R5/Organization?patient=49999".to_owned(), "Patient/49999".to_owned()),
        // also for the types jhe keeps nothing of
        (format!("/FHIR/R5/Condition?patient={}", ids.peter), format!("Patient/{}", ids.peter)),
    ];
    for (path, reference) in cases {
        let answer = server.get(&path, &mark).await;
        outcome(&answer, 403, &format!("Current user is not authorized to access {reference}."));
    }
    // the superuser may name anything
    let admin = server.token(seeded::ADMIN).await;
    let path = format!("/FHIR/R5/Patient?patient.organization={}", ids.lifespan);
    assert_eq!(found(&server, &admin, &path).await, vec![ids.pamela, ids.peter]);
    assert_eq!(found(&server, &admin, "/FHIR/R5/Patient?patient=49999").await, Vec::<i64>::new());
}

#[tokio::test]
async fn resources_render_as_the_reference_maps_them() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let mary = server.token(seeded::MARY).await;
    for table in ["patients", "studies", "organizations", "practitioners", "data_sources"] {
        sql(&server, &format!("UPDATE {table} SET last_updated = '2024-03-01T10:00:00.25Z'")).await;
    }
    let meta = json!({"lastUpdated": "2024-03-01T10:00:00.250000Z", "source": JHE_SOURCE});
    let given: String = sqlx::query_scalar("SELECT name_given FROM patients WHERE id = $1")
        .bind(ids.peter)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    let patient = server.get(&format!("/FHIR/R5/Patient/{}", ids.peter), &mary).await;
    assert_eq!(patient.status, 200);
    assert_eq!(
        patient.body.to_string(),
        json!({
            "id": ids.peter.to_string(),
            "identifier": [
                {"system": "https://openwearables.io/ns/patient-id", "value": "abc123"},
                {"system": "urn:oid:1.2.3.4", "value": "E1234"}
            ],
            "meta": meta,
            "name": [{"family": "Pearson", "given": [given]}],
            "birthDate": "1986-04-12",
            "telecom": [
                {"system": "phone", "value": "+1-555-010-0006", "use": "mobile"},
                {"system": "email", "value": seeded::PETER, "use": "home"}
            ],
            "resourceType": "Patient"
        })
        .to_string()
    );
    let group = server.get(&format!("/FHIR/R5/Group/{}", ids.bp_hr), &mary).await;
    assert_eq!(
        group.body.to_string(),
        json!({
            "id": ids.bp_hr.to_string(), "membership": "enumerated", "meta": meta, "name": "Lifespan Study on BP & HR",
            "type": {"coding": [{"system": MODEL_SYSTEM, "code": "study"}]}, "resourceType": "Group"
        })
        .to_string()
    );
    let organization = server.get(&format!("/FHIR/R5/Organization/{}", ids.lifespan), &mary).await;
    assert_eq!(
        organization.body.to_string(),
        json!({
            "id": ids.lifespan.to_string(), "meta": meta, "name": "Lifespan Lab",
            "type": {"coding": [{"system": MODEL_SYSTEM, "code": "organization"}]}, "resourceType": "Organization"
        })
        .to_string()
    );
    let practitioner = server.get(&format!("/FHIR/R5/Practitioner/{}", ids.megan), &mary).await;
    assert_eq!(practitioner.body["resourceType"], "Practitioner");
    assert_eq!(practitioner.body["meta"], meta);
    assert_eq!(practitioner.body["name"][0]["family"], "Moreno");
    let device = server.get(&format!("/FHIR/R5/Device/{}", ids.carex), &mary).await;
    assert_eq!(
        device.body.to_string(),
        json!({
            "id": ids.carex.to_string(), "meta": meta, "name": "CareX",
            "type": {"coding": [{"system": MODEL_SYSTEM, "code": "data-source"}]}, "resourceType": "Device"
        })
        .to_string()
    );
    // a search renders the same resources, wrapped as {"resource": …} without fullUrl
    let bundle = search(&server, &mary, &format!("/FHIR/R5/Device?_id={}", ids.carex)).await;
    assert_eq!(bundle["entry"], json!([{"resource": device.body}]));
    assert_eq!(bundle["total"], 1);
}

#[tokio::test]
async fn patient_search_parameters() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let tom = server.token(seeded::TOM).await;
    sql(&server, &format!("UPDATE patients SET last_updated = '2024-03-01T10:00:00Z' WHERE id = {}", ids.peter)).await;
    sql(&server, &format!("UPDATE patients SET last_updated = '2024-03-02T00:00:00Z' WHERE id <> {}", ids.peter)).await;
    let cases: Vec<(String, Vec<i64>)> = vec![
        // strings: case-insensitive prefix by default, :exact, :contains, comma = OR, repeat = AND
        ("family=pe".into(), vec![ids.peter, ids.percy]),
        ("family=PEARSON".into(), vec![ids.peter]),
        ("family:exact=Pearson".into(), vec![ids.peter]),
        ("family:exact=pearson".into(), vec![]),
        ("family:contains=RSO".into(), vec![ids.pat, ids.peter]),
        ("family=Pal,Pau".into(), vec![ids.pamela, ids.paul]),
        ("family=P&family=Pat".into(), vec![ids.pat]),
        ("name=Patt".into(), vec![ids.pat]),
        ("given=LlPatientPe".into(), vec![ids.peter]),
        ("name=ccl".into(), vec![ids.pat, ids.paul]),
        ("family=50%25".into(), vec![]),
        // birthdate: day precision with prefixes
        ("birthdate=1986-04-12".into(), vec![ids.peter]),
        ("birthdate=1986".into(), vec![ids.peter]),
        ("birthdate=ge1990-01-01".into(), vec![ids.pamela, ids.paul]),
        ("birthdate=lt1986-04-12".into(), vec![ids.percy]),
        ("birthdate=le1986-04-12".into(), vec![ids.peter, ids.percy]),
        ("birthdate=gt1990-09-23".into(), vec![ids.paul]),
        ("birthdate=ge1986&birthdate=lt1990".into(), vec![ids.pat, ids.peter]),
        ("birthdate=ne1986-04-12&family=Pe".into(), vec![ids.percy]),
        // identifiers: value in any system, system|value, system| alone; comma = OR
        ("identifier=abc123".into(), vec![ids.peter]),
        ("identifier=urn:oid:1.2.3.4|E1234".into(), vec![ids.peter]),
        ("identifier=urn:oid:9.9|E1234".into(), vec![]),
        ("identifier=https://openwearables.io/ns/patient-id|".into(), vec![ids.peter]),
        ("patient.identifier=E1234".into(), vec![ids.peter]),
        ("identifier=nope,E1234".into(), vec![ids.peter]),
        // _id (wrong shapes match nothing) and _lastUpdated
        (format!("_id={},{}", ids.pat, ids.paul), vec![ids.pat, ids.paul]),
        ("_id=not-a-number".into(), vec![]),
        ("_lastUpdated=2024-03-01".into(), vec![ids.peter]),
        ("_lastUpdated=ge2024-03-01T10:00:00Z&family=Pe".into(), vec![ids.peter, ids.percy]),
        ("_lastUpdated=gt2024-03-01T10:00:00Z&family=Pe".into(), vec![ids.percy]),
        ("_lastUpdated=lt2024-03-02".into(), vec![ids.peter]),
        ("_lastUpdated=le2024-03-01T11:00:00%2B01:00".into(), vec![ids.peter]),
        // an unencoded `+` in the offset arrives as a space and still works
        ("_lastUpdated=le2024-03-01T11:00:00+01:00".into(), vec![ids.peter]),
        ("_last_updated=ge2024-03-01&_lastUpdated=lt2024-03-01T10:00:01Z".into(), vec![ids.peter]),
        // location filters
        (format!("patient={}", ids.pat), vec![ids.pat]),
        (format!("patient=Patient/{}", ids.pat), vec![ids.pat]),
        (format!("patient._has:Group:member:_id={}", ids.bp), vec![ids.pamela, ids.peter]),
        (format!("patient._has:_group:member:_id={}", ids.o2), vec![ids.pat, ids.paul]),
        (format!("patient.organization={}", ids.cosmic), vec![ids.pat, ids.paul]),
        (format!("patient.organization={}&patient._has:Group:member:_id={}", ids.cosmic, ids.bt), vec![]),
        // _source: only the jhe-native source has these resources
        (format!("_source={JHE_SOURCE}&family=Pea"), vec![ids.peter]),
        ("_source=https://jupyterhealth.org/fhir/fhir-source/90001".into(), vec![]),
        ("_source:below=https://jupyterhealth.org/fhir/fhir-source/".into(), vec![]),
        // unknown parameters are ignored (lenient handling)
        ("code=https://w3id.org/openmhealth|omh:heart-rate:2.0&family=Pea".into(), vec![ids.peter]),
        // _sort
        ("_sort=birthdate".into(), vec![ids.percy, ids.peter, ids.pat, ids.pamela, ids.paul]),
        ("_sort=-birthdate".into(), vec![ids.paul, ids.pamela, ids.pat, ids.peter, ids.percy]),
        ("_sort=-_lastUpdated,_id&family=Pe".into(), vec![ids.percy, ids.peter]),
        ("_sort=_lastUpdated,-_id&family=Pa".into(), vec![ids.pat, ids.paul, ids.pamela]),
    ];
    for (query, expected) in cases {
        let path = format!("/FHIR/R5/Patient?{query}");
        assert_eq!(found(&server, &tom, &path).await, expected, "{path}");
    }
}

#[tokio::test]
async fn search_parameters_of_the_other_types() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let tom = server.token(seeded::TOM).await;
    sql(&server, &format!("UPDATE practitioners SET identifier = 'npi-42' WHERE id = {}", ids.mark)).await;
    let cases: Vec<(String, Vec<i64>)> = vec![
        // Group
        (format!("Group?patient={}", ids.peter), vec![ids.bp, ids.bp_hr]),
        (format!("Group?patient={}", ids.pat), vec![ids.o2]),
        (format!("Group?patient._has:Group:member:_id={}", ids.bt), vec![ids.bt]),
        (format!("Group?patient.organization={}", ids.lifespan), vec![ids.bp, ids.bp_hr]),
        ("Group?identifier=abc123".into(), vec![ids.bp, ids.bp_hr]),
        (format!("Group?_id={}", ids.o2), vec![ids.o2]),
        // Organization
        ("Organization?name=cos".into(), vec![ids.cosmic]),
        ("Organization?name:contains=lab".into(), vec![ids.cosmic, ids.lifespan, ids.pulse_lab]),
        (format!("Organization?patient={}", ids.pat), vec![ids.cosmic]),
        (format!("Organization?patient._has:Group:member:_id={}", ids.bp), vec![ids.lifespan]),
        ("Organization?patient.identifier=E1234".into(), vec![ids.lifespan]),
        // Practitioner
        ("Practitioner?name=thom".into(), vec![ids.tom]),
        ("Practitioner?name=Mendez".into(), vec![ids.mark]),
        (format!("Practitioner?patient={}", ids.percy), vec![ids.mark, ids.tom]),
        (format!("Practitioner?patient.organization={}", ids.cosmic), vec![ids.tom]),
        (
            format!("Practitioner?patient._has:Group:member:_id={}", ids.bp_hr),
            vec![ids.mary, ids.megan, ids.tom, ids.victor],
        ),
        ("Practitioner?identifier=npi-42".into(), vec![ids.mark]),
        ("Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|npi-42".into(), vec![ids.mark]),
        ("Practitioner?_sort=-name".into(), vec![ids.victor, ids.tom, ids.megan, ids.mark, ids.mary]),
        // Device
        ("Device?type=data-source".into(), vec![ids.carex, ids.ihealth, ids.questionnaire]),
        (format!("Device?type={MODEL_SYSTEM}|data-source"), vec![ids.carex, ids.ihealth, ids.questionnaire]),
        ("Device?type=phone".into(), vec![]),
        (format!("Device?patient={}", ids.percy), vec![ids.ihealth]),
        (format!("Device?patient._has:Group:member:_id={}", ids.bp), vec![ids.carex, ids.questionnaire]),
        (format!("Device?patient._has:Group:member:_id={}", ids.o2), vec![]),
        (format!("Device?patient.organization={}", ids.pulse_lab), vec![ids.ihealth]),
        (format!("Device?_sort=-name&patient._has:Group:member:_id={}", ids.bp), vec![ids.questionnaire, ids.carex]),
    ];
    for (query, expected) in cases {
        let path = format!("/FHIR/R5/{query}");
        let got = found(&server, &tom, &path).await;
        if query.contains("_sort") {
            assert_eq!(got, expected, "{path}");
        } else {
            assert_eq!(sorted(got), sorted(expected), "{path}");
        }
    }
}

#[tokio::test]
async fn paging_has_exact_totals_and_links_that_carry_the_search() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let mary = server.token(seeded::MARY).await;
    // 45 namesakes: only the id can order them
    sql(
        &server,
        &format!(
            "WITH p AS (INSERT INTO patients (name_family, name_given) SELECT 'Twin', 'Same' FROM generate_series(1, 45)
                        RETURNING id)
             INSERT INTO patient_organizations (patient_id, organization_id) SELECT id, {} FROM p",
            ids.lifespan
        ),
    )
    .await;
    let base = &server.base;
    let first = search(&server, &mary, "/FHIR/R5/Patient?family=Twin&_count=20").await;
    assert_eq!(first["total"], 45);
    assert_eq!(ids_in(&first).len(), 20);
    assert_eq!(link(&first, "self").unwrap(), format!("{base}/FHIR/R5/Patient?family=Twin&_count=20"));
    assert_eq!(link(&first, "previous"), None);
    assert_eq!(link(&first, "next").unwrap(), format!("{base}/FHIR/R5/Patient?_count=20&_page=2&family=Twin"));
    let second = search(&server, &mary, &link(&first, "next").unwrap()).await;
    assert_eq!((second["total"].as_u64(), ids_in(&second).len()), (Some(45), 20));
    assert_eq!(link(&second, "previous").unwrap(), format!("{base}/FHIR/R5/Patient?_count=20&family=Twin"));
    let third = search(&server, &mary, &link(&second, "next").unwrap()).await;
    assert_eq!((third["total"].as_u64(), ids_in(&third).len()), (Some(45), 5));
    assert_eq!(link(&third, "next"), None);
    assert_eq!(link(&third, "previous").unwrap(), format!("{base}/FHIR/R5/Patient?_count=20&_page=2&family=Twin"));
    let walked: Vec<i64> = [&first, &second, &third].into_iter().flat_map(ids_in).collect();
    let expected: Vec<i64> = sqlx::query_scalar("SELECT id FROM patients WHERE name_family = 'Twin' ORDER BY id")
        .fetch_all(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(walked, expected, "every row exactly once, in id order");

    // the default page size is 20, values over 1000 are capped, invalid ones fall back to 20
    assert_eq!(ids_in(&search(&server, &mary, "/FHIR/R5/Patient").await).len(), 20);
    assert_eq!(ids_in(&search(&server, &mary, "/FHIR/R5/Patient?_count=5000").await).len(), 47);
    assert_eq!(ids_in(&search(&server, &mary, "/FHIR/R5/Patient?_count=0").await).len(), 20);
    assert_eq!(ids_in(&search(&server, &mary, "/FHIR/R5/Patient?_count=ten").await).len(), 20);
    let last = search(&server, &mary, "/FHIR/R5/Patient?family=Twin&_count=20&_page=last").await;
    assert_eq!(ids_in(&last), ids_in(&third));
    // past the end: 404 Invalid page; an empty result still has its first page
    outcome(&server.get("/FHIR/R5/Patient?family=Twin&_count=20&_page=4", &mary).await, 404, "Invalid page.");
    outcome(&server.get("/FHIR/R5/Patient?_page=0", &mary).await, 404, "Invalid page.");
    let empty = search(&server, &mary, "/FHIR/R5/Patient?family=Nobody").await;
    assert_eq!((empty["total"].as_u64(), empty["entry"].clone()), (Some(0), json!([])));
    assert_eq!(empty["link"].as_array().unwrap().len(), 1);
    outcome(&server.get("/FHIR/R5/Patient?family=Nobody&_page=2", &mary).await, 404, "Invalid page.");

    // _summary=count: the total only
    let counted = server.get("/FHIR/R5/Patient?family=Twin&_summary=count", &mary).await;
    assert_eq!(
        counted.body,
        json!({
            "resourceType": "Bundle", "type": "searchset", "total": 45, "entry": [],
            "link": [{"relation": "self", "url": format!("{base}/FHIR/R5/Patient?family=Twin&_summary=count")}],
            "meta": {}
        })
    );
}

#[tokio::test]
async fn post_search_takes_form_and_json_bodies() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let mary = server.token(seeded::MARY).await;
    let base = &server.base;
    let form = "application/x-www-form-urlencoded";
    // form parameters merge with the query string; links are the equivalent GET searches
    let answer = server.raw("POST", "/FHIR/R5/Patient/_search?_count=1", &mary, form, "family=P&_sort=family").await;
    assert_searchset(&answer, "POST _search");
    assert_eq!(answer.body["total"], 2);
    assert_eq!(ids_in(&answer.body), vec![ids.pamela]);
    assert_eq!(link(&answer.body, "self").unwrap(), format!("{base}/FHIR/R5/Patient?_count=1&_sort=family&family=P"));
    let next = link(&answer.body, "next").unwrap();
    assert_eq!(next, format!("{base}/FHIR/R5/Patient?_count=1&_page=2&_sort=family&family=P"));
    assert_eq!(ids_in(&search(&server, &mary, &next).await), vec![ids.peter]);
    // identifiers with `|` and `:` arrive form-encoded
    let answer =
        server.raw("POST", "/FHIR/R5/Patient/_search", &mary, form, "identifier=urn%3Aoid%3A1.2.3.4%7CE1234").await;
    assert_eq!(ids_in(&answer.body), vec![ids.peter]);
    // a trailing slash, and an empty body (the query string alone)
    let answer = server.raw("POST", "/FHIR/R5/Group/_search/?name=x", &mary, form, "").await;
    assert_eq!(ids_in(&answer.body).len(), 2);
    // FHIR JSON: a Parameters resource, or a plain object
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient._has:Group:member:_id", "valueString": ids.bp.to_string()},
        {"name": "family", "valueString": "Pea"}
    ]});
    let answer =
        server.raw("POST", "/FHIR/R5/Patient/_search", &mary, "application/fhir+json", &parameters.to_string()).await;
    assert_eq!(ids_in(&answer.body), vec![ids.peter]);
    // arrays are repeated parameters (AND); a comma inside one value is OR
    let object = json!({"_id": format!("{},{}", ids.peter, ids.pamela), "_sort": ["-family"]});
    let answer = server.raw("POST", "/FHIR/R5/Patient/_search", &mary, "application/json", &object.to_string()).await;
    assert_eq!(ids_in(&answer.body), vec![ids.peter, ids.pamela]);
    // the same rules as GET: scoping, 403s, 400s
    let answer = server
        .raw("POST", "/FHIR/R5/Patient/_search", &mary, form, &format!("patient.organization={}", ids.cosmic))
        .await;
    outcome(&answer, 403, &format!("Organization/{}", ids.cosmic));
    outcome(&server.raw("POST", "/FHIR/R5/Patient/_search", &mary, form, "birthdate=soon").await, 400, "birthdate");
    outcome(&server.raw("POST", "/FHIR/R5/Patient/_search", &mary, "text/plain", "family=P").await, 400, "text/plain");
    outcome(&server.raw("POST", "/FHIR/R5/Patient/_search", &mary, "application/json", "{nope").await, 400, "JSON");
    outcome(&server.raw("POST", "/FHIR/R5/Patient/_search", &mary, "application/json", "[1]").await, 400, "Parameters");
    outcome(
        &server.raw("POST", "/FHIR/R5/Foo/_search", &mary, form, "").await,
        404,
        "Unsupported FHIR resource type: Foo.",
    );
}

#[tokio::test]
async fn bad_requests_are_operation_outcomes() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let mary = server.token(seeded::MARY).await;
    // no token, a bad token: 401 without a WWW-Authenticate challenge, as on the reference's FHIR routes
    let anonymous = server.request("GET", "/FHIR/R5/Patient", None, None).await;
    outcome(&anonymous, 401, "Authentication credentials were not provided.");
    assert!(anonymous.headers.get("www-authenticate").is_none());
    outcome(&server.get(&format!("/FHIR/R5/Patient/{}", ids.peter), "not-a-token").await, 401, "Invalid token.");
    // unknown types; types jhe keeps nothing of are empty
    outcome(&server.get("/FHIR/R5/Foo", &mary).await, 404, "Unsupported FHIR resource type: Foo.");
    outcome(&server.get("/FHIR/R5/patient", &mary).await, 404, "Unsupported FHIR resource type: patient.");
    outcome(&server.get("/FHIR/R5/Foo/1", &mary).await, 404, "Unsupported FHIR resource type: Foo.");
    let conditions = search(&server, &mary, "/FHIR/R5/Condition?clinical-status=active").await;
    assert_eq!((conditions["total"].as_u64(), conditions["entry"].clone()), (Some(0), json!([])));
    let counted = search(&server, &mary, "/FHIR/R5/Encounter?_summary=count").await;
    assert_eq!(counted["total"], 0);
    outcome(&server.get("/FHIR/R5/Condition/7d7b6c0e-3f0b-4d8e-8a53-1f2f0b8c9d10", &mary).await, 404, "not found.");
    // reads of missing or malformed ids
    outcome(&server.get("/FHIR/R5/Patient/49999", &mary).await, 404, "Patient/49999 not found.");
    outcome(&server.get("/FHIR/R5/Patient/abc", &mary).await, 404, "Patient/abc not found.");
    outcome(&server.get("/FHIR/R5/Group/99999999999999999999999", &mary).await, 404, "not found.");
    // values a known parameter cannot use
    for (query, diagnostics) in [
        ("_lastUpdated=yesterday", "Invalid _lastUpdated value: 'yesterday'."),
        ("_lastUpdated=ap2024-01-01", "'ap'"),
        ("birthdate=1986-02-30", "Invalid birthdate value"),
        ("patient=abc", "(expected a Patient id)"),
        ("patient=Group/1", "(expected a Patient id)"),
        ("patient._has:Group:member:_id=x", "(expected a Group id)"),
        ("patient.organization=", "Invalid patient.organization value: '' (expected an Organization id)."),
        ("_summary=everything", "Invalid _summary value"),
        ("name:fuzzy=x", "The modifier :fuzzy is not supported"),
        ("birthdate:exact=1986", "The modifier :exact is not supported"),
        ("_format=xml", "JSON only"),
    ] {
        outcome(&server.get(&format!("/FHIR/R5/Patient?{query}"), &mary).await, 400, diagnostics);
    }
    // strict handling turns unknown parameters and sort keys into 400s
    let strict = reqwest::Client::new()
        .get(format!("{}/FHIR/R5/Group?colour=blue&_sort=date", server.base))
        .bearer_auth(&mary)
        .header("prefer", "handling=strict")
        .send()
        .await
        .unwrap();
    assert_eq!(strict.status(), 400);
    let body: Value = strict.json().await.unwrap();
    assert_eq!(body["resourceType"], "OperationOutcome");
    // writes are not served for these resources
    outcome(&server.post("/FHIR/R5/Patient", &mary, json!({"resourceType": "Patient"})).await, 405, "POST");
    outcome(&server.put(&format!("/FHIR/R5/Patient/{}", ids.peter), &mary, json!({})).await, 405, "PUT");
    outcome(&server.delete(&format!("/FHIR/R5/Group/{}", ids.bp), &mary, None).await, 405, "DELETE");
}

#[tokio::test]
async fn trailing_slashes_and_content_types() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let mary = server.token(seeded::MARY).await;
    let bundle = search(&server, &mary, "/FHIR/R5/Patient/?_count=1").await;
    assert_eq!(bundle["total"], 2);
    assert_eq!(link(&bundle, "next").unwrap(), format!("{}/FHIR/R5/Patient/?_count=1&_page=2", server.base));
    let read = server.get(&format!("/FHIR/R5/Patient/{}/", ids.peter), &mary).await;
    assert_eq!((read.status, read.body["resourceType"].as_str()), (200, Some("Patient")));
    assert!(server.get("/FHIR/R5/metadata/", &mary).await.body["rest"].is_array());
    // JSON by default (the Python client sends no Accept), FHIR JSON when asked for
    let plain = server.get("/FHIR/R5/Group", &mary).await;
    assert_eq!(plain.headers["content-type"], "application/json");
    let http = reqwest::Client::new();
    for (accept, path) in
        [("application/fhir+json", "/FHIR/R5/Group"), ("*/*", "/FHIR/R5/Group?_format=application/fhir%2Bjson")]
    {
        let response = http
            .get(format!("{}{path}", server.base))
            .bearer_auth(&mary)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/fhir+json", "{accept} {path}");
    }
    let missing = http
        .get(format!("{}/FHIR/R5/Patient/49999", server.base))
        .bearer_auth(&mary)
        .header("accept", "application/fhir+json")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["content-type"], "application/fhir+json");
}

#[tokio::test]
async fn the_capability_statement_is_public() {
    let server = TestServer::start().await.unwrap();
    let answer = server.request("GET", "/FHIR/R5/metadata", None, None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.headers["access-control-allow-origin"], "*");
    assert_eq!(answer.headers["cache-control"], "public, max-age=3600");
    let statement = &answer.body;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["status"], "active");
    assert_eq!(statement["kind"], "instance");
    assert_eq!(statement["fhirVersion"], "5.0.0");
    assert_eq!(statement["format"], json!(["json"]));
    assert_eq!(statement["implementation"]["url"], format!("{}/FHIR/R5/", server.base));
    assert_eq!(statement["software"]["name"], "JupyterHealth Exchange");
    let security = &statement["rest"][0]["security"]["extension"][0]["extension"];
    assert_eq!(security[0]["valueUri"], format!("{}/o/authorize/", server.base));
    assert_eq!(security[1]["valueUri"], format!("{}/o/token/", server.base));
    // what list_fhir_resource_types() returns: rest[*].resource[*].type
    let types: Vec<&str> = statement["rest"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rest| rest["resource"].as_array().unwrap())
        .map(|resource| resource["type"].as_str().unwrap())
        .collect();
    assert_eq!(types.len(), 26);
    for name in ["Device", "Group", "Observation", "Organization", "Patient", "Practitioner"] {
        assert!(types.contains(&name), "{name} in {types:?}");
    }
    let mut sorted_types = types.clone();
    sorted_types.sort_unstable();
    assert_eq!(types, sorted_types);
    // the statement follows the host the client reached; forwarded headers count only from a trusted proxy
    // (JHE_TRUSTED_PROXIES), and this server trusts none
    let proxied = reqwest::Client::new()
        .get(format!("{}/FHIR/R5/metadata", server.base))
        .header("x-forwarded-host", "jhe.example.org")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let proxied: Value = proxied.json().await.unwrap();
    assert_eq!(proxied["implementation"]["url"], format!("{}/FHIR/R5/", server.base));
    // the CORS preflight
    let preflight = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("{}/FHIR/R5/metadata", server.base))
        .header("origin", "https://app.example.org")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
}

/// The requests `jupyterhealth-client` 0.5.0 sends (its `get_fhir`, `list_fhir`, `list_fhir_resource_types`), with
/// its encoding (`requests` form-encodes keys and values) and its paging loop: `_count=1000` on the first request,
/// then the `next` links as they are, reading `entry[].resource.id` and `link[].relation` (§11.2, §11.3).
#[tokio::test]
async fn the_python_clients_fhir_calls_work() {
    let server = TestServer::start().await.unwrap();
    let ids = ids(&server).await;
    let mary = server.token(seeded::MARY).await;
    let encode = |pairs: &[(&str, String)]| {
        pairs
            .iter()
            .map(|(key, value)| format!("{}={}", form_encode(key), form_encode(value)))
            .collect::<Vec<_>>()
            .join("&")
    };

    // get_fhir("Patient", id): the resource itself
    let patient = server.get(&format!("/FHIR/R5/Patient/{}", ids.peter), &mary).await;
    assert_eq!((patient.status, patient.body["id"].clone()), (200, json!(ids.peter.to_string())));
    // get_fhir("Patient", id, patient_id=…) also sends the search parameters; a read ignores them
    let query = encode(&[("patient", ids.pamela.to_string())]);
    let patient = server.get(&format!("/FHIR/R5/Patient/{}?{query}", ids.peter), &mary).await;
    assert_eq!(patient.body["id"], ids.peter.to_string());
    // get_fhir("Group", study_id=…): a searchset
    let query = encode(&[("patient._has:Group:member:_id", ids.bp_hr.to_string())]);
    assert!(query.contains("%3AGroup%3A"), "{query}");
    let groups = search(&server, &mary, &format!("/FHIR/R5/Group?{query}")).await;
    assert_eq!(ids_in(&groups), vec![ids.bp_hr]);

    // list_fhir(resource_type, study_id=…, patient_id=…, limit=None, params={"_count": 1}): follows next links
    // while a page brings new ids
    async fn list_fhir(server: &TestServer, token: &str, first: String) -> Vec<i64> {
        let mut seen = Vec::new();
        let mut bundle = search(server, token, &first).await;
        loop {
            let mut new_records = false;
            for entry in bundle["entry"].as_array().expect("entry") {
                let id: i64 = entry["resource"]["id"].as_str().unwrap().parse().unwrap();
                assert!(!seen.contains(&id), "{id} repeated across pages");
                seen.push(id);
                new_records = true;
            }
            let next = bundle["link"].as_array().expect("link").iter().find(|l| l["relation"] == "next").cloned();
            match next {
                Some(next) if new_records => bundle = search(server, token, next["url"].as_str().unwrap()).await,
                _ => return seen,
            }
        }
    }
    let query = encode(&[("patient._has:Group:member:_id", ids.bp_hr.to_string()), ("_count", "1000".into())]);
    let patients = list_fhir(&server, &mary, format!("/FHIR/R5/Patient?{query}")).await;
    assert_eq!(patients, vec![ids.pamela, ids.peter]);
    let query = encode(&[("patient", ids.peter.to_string()), ("_count", "1".into())]);
    assert_eq!(list_fhir(&server, &mary, format!("/FHIR/R5/Group?{query}")).await, vec![ids.bp, ids.bp_hr]);
    let query = encode(&[("_count", "1".into())]);
    assert_eq!(
        sorted(list_fhir(&server, &mary, format!("/FHIR/R5/Practitioner?{query}")).await),
        sorted(vec![ids.mary, ids.megan, ids.victor, ids.tom])
    );
    assert_eq!(
        list_fhir(&server, &mary, format!("/FHIR/R5/Organization?{query}")).await,
        vec![ids.lifespan, ids.planetary, ids.saturn]
    );
    assert_eq!(list_fhir(&server, &mary, format!("/FHIR/R5/Device?{query}")).await, vec![ids.carex, ids.questionnaire]);
    // fhir_source="imported" and fhir_source=<id>: nothing is imported into jhe
    let query =
        encode(&[("_source:below", "https://jupyterhealth.org/fhir/fhir-source/".into()), ("_count", "1000".into())]);
    assert_eq!(list_fhir(&server, &mary, format!("/FHIR/R5/Patient?{query}")).await, Vec::<i64>::new());
    let query =
        encode(&[("_source", "https://jupyterhealth.org/fhir/fhir-source/90001".into()), ("_count", "1000".into())]);
    assert_eq!(list_fhir(&server, &mary, format!("/FHIR/R5/Condition?{query}")).await, Vec::<i64>::new());

    // get_fhir_capability_statement() / list_fhir_resource_types(): sent with the bearer token
    let statement = server.get("/FHIR/R5/metadata", &mary).await;
    assert_eq!(statement.status, 200);
    assert!(statement.body["rest"][0]["resource"].as_array().unwrap().iter().all(|r| r["type"].is_string()));
}
