//! A practitioner of another organization cannot capture a patient (docs: README "deliberate differences"): adding
//! a patient by id needs the patient already in one of the caller's organizations, so the chains add → invite →
//! redeem → read and add → enrol → consent → read stop at their first step with nothing changed. A patient of
//! another organization joins only by accepting a request with their own login; an invitation yields a patient-app
//! token that uploads and manages consents but cannot read observations or accept requests.

use base64::Engine as _;
use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{ALL_ROLES, Answer, TestDatabase, TestServer, embedded_pipeline, seeded};
use serde_json::{Value, json};
use std::time::Duration;

/// A server with the embedded data plane where Peter uploaded two heart rates, both queryable.
async fn server_with_peters_data() -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir.path()), ALL_ROLES).await.unwrap();
    let peter = server.patient_id(seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let entries = (0..2)
        .map(|minute| {
            let uuid = format!("capture-{minute}");
            omh::observation(peter, carex, HEART_RATE, &omh::heart_rate(&uuid, minute, 70.0), Some(&uuid))
        })
        .collect();
    let uploaded = server.post("/FHIR/R5/", &server.token(seeded::PETER).await, omh::bundle(entries)).await;
    assert_eq!(uploaded.status, 200, "{:?}", uploaded.body);
    assert_eq!(server.wait_for_published_rows(2, Duration::from_secs(30)).await, 2);
    (server, dir)
}

/// Every row that says who belongs where, consents, invitations and enrolments: a fingerprint to compare before
/// and after an attack.
async fn memberships(server: &TestServer) -> String {
    sqlx::query_scalar(
        "SELECT concat_ws(' | ',
            (SELECT string_agg(patient_id || ':' || organization_id, ',' ORDER BY 1) FROM patient_organizations),
            (SELECT string_agg(study_id || ':' || patient_id, ',' ORDER BY 1) FROM study_patients),
            (SELECT count(*)::text FROM study_patient_scope_consents),
            (SELECT count(*)::text FROM patient_invitations),
            (SELECT count(*)::text FROM patient_organization_requests))",
    )
    .fetch_one(&server.db.pool)
    .await
    .unwrap()
}

fn assert_says_nothing_of(answer: &Answer, patient_email: &str) {
    let text = answer.body.to_string();
    assert!(!text.contains(patient_email) && !text.contains("Pearson"), "the answer describes the patient: {text}");
}

#[tokio::test]
async fn a_practitioner_of_another_organization_cannot_add_invite_enrol_or_consent_a_patient_by_id() {
    let (server, _dir) = server_with_peters_data().await;
    let mark = server.token(seeded::MARK).await;
    let peter = server.patient_id(seeded::PETER).await;
    let pulse_lab = server.id_of("organizations", "name", "Neptunian Pulse Lab").await;
    let bt_study = server.id_of("studies", "name", "Nep Pulse Lab Study on BT").await;
    let peters_study = server.id_of("studies", "name", "Lifespan Study on BP & HR").await;
    let carex = server.id_of("oauth_clients", "client_id", "carex").await;
    let before = memberships(&server).await;

    // add: refused, and answered exactly as an id that does not exist
    let add = |id: i64| format!("/api/v1/patients/{id}/global_add_organization?organizationId={pulse_lab}");
    let added = server.patch(&add(peter), &mark, json!({})).await;
    assert_eq!(added.status, 404, "{:?}", added.body);
    assert_says_nothing_of(&added, seeded::PETER);
    let unknown = server.patch(&add(999_999), &mark, json!({})).await;
    assert_eq!((unknown.status, unknown.body.clone()), (added.status, added.body.clone()));

    // (a) invite → redeem → read: the invitation is refused, as for an id that does not exist
    let invite = |id: i64| json!({"patient_id": id, "client_id": carex});
    let invited = server.post("/api/v1/invitation", &mark, invite(peter)).await;
    assert_eq!(invited.status, 403, "{:?}", invited.body);
    assert_eq!(server.post("/api/v1/invitation", &mark, invite(999_999)).await.body, invited.body);

    // (b) enrol → consent → read: each refused
    let enrolled =
        server.post(&format!("/api/v1/studies/{bt_study}/patients"), &mark, json!({"patientIds": [peter]})).await;
    assert!(matches!(enrolled.status, 400 | 403 | 404), "{:?}", enrolled.body);
    assert_says_nothing_of(&enrolled, seeded::PETER);
    let consent = json!({"studyScopeConsents": [{"studyId": bt_study, "scopeConsents": [
        {"codingSystem": "https://w3id.org/openmhealth", "codingCode": "omh:body-temperature:4.0", "consented": true}]}]});
    let consented = server.post(&format!("/api/v1/patients/{peter}/consents"), &mark, consent).await;
    assert_eq!(consented.status, 403, "{:?}", consented.body);
    for path in [
        format!("/api/v1/patients/{peter}"),
        format!("/api/v1/patients/{peter}/consents"),
        format!("/api/v1/patients/{peter}/consolidated_clients"),
        format!("/FHIR/R5/Patient/{peter}"),
        format!("/FHIR/R5/Observation?patient={peter}"),
        format!("/FHIR/R5/Observation?patient._has:Group:member:_id={peters_study}"),
        format!("/api/v1/observations?patientId={peter}"),
    ] {
        let read = server.get(&path, &mark).await;
        assert!(matches!(read.status, 403 | 404), "{path}: {:?}", read.body);
        assert_says_nothing_of(&read, seeded::PETER);
    }
    let export = reqwest::Client::new()
        .get(format!("{}/FHIR/R5/Group/{peters_study}/$export", server.base))
        .bearer_auth(&mark)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 403, "an export of Peter's study");
    assert_eq!(memberships(&server).await, before, "the attempts changed nothing");
}

#[tokio::test]
async fn a_patient_of_another_organization_joins_only_by_accepting_a_request_with_their_own_login() {
    let server = TestServer::start().await.unwrap();
    let mark = server.token(seeded::MARK).await;
    let megan = server.token(seeded::MEGAN).await;
    let peter = server.patient_id(seeded::PETER).await;
    let pulse_lab = server.id_of("organizations", "name", "Neptunian Pulse Lab").await;
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await;

    // a member or manager of the organization asks by the exact email; the answer describes only the request
    let ask = json!({"organizationId": pulse_lab, "telecomEmail": seeded::PETER.to_uppercase()});
    let asked = server.post("/api/v1/patients/organization_requests", &mark, ask.clone()).await;
    assert_eq!(asked.status, 201, "{:?}", asked.body);
    let request_id = asked.body["id"].as_i64().unwrap();
    assert_eq!(asked.body["status"], "pending");
    assert_eq!(asked.body["organization"]["id"], pulse_lab);
    assert!(asked.body.get("patient").is_none() && asked.body.get("patientId").is_none(), "{:?}", asked.body);
    // asking again answers the pending request; nothing changed yet
    assert_eq!(server.post("/api/v1/patients/organization_requests", &mark, ask).await.body["id"], request_id);
    assert_eq!(server.get(&format!("/api/v1/patients/{peter}"), &mark).await.status, 403);
    // no such patient, an organization the caller cannot manage, a patient already there
    let no_patient = json!({"organizationId": pulse_lab, "telecomEmail": "nobody@example.com"});
    assert_eq!(server.post("/api/v1/patients/organization_requests", &mark, no_patient).await.status, 400);
    let foreign_org = json!({"organizationId": lifespan, "telecomEmail": seeded::PERCY});
    assert_eq!(server.post("/api/v1/patients/organization_requests", &mark, foreign_org).await.status, 403);
    let already = json!({"organizationId": lifespan, "telecomEmail": seeded::PETER});
    assert_eq!(server.post("/api/v1/patients/organization_requests", &megan, already).await.status, 409);
    // the requester's organizations see the request; others do not
    assert_eq!(server.get("/api/v1/patients/organization_requests", &mark).await.body["count"], 1);
    assert_eq!(server.get("/api/v1/patients/organization_requests", &megan).await.body["count"], 0);
    assert_eq!(
        server.delete(&format!("/api/v1/patients/organization_requests/{request_id}"), &megan, None).await.status,
        404
    );

    // the patient's app, holding an invitation token, may not accept for the patient
    let app = patient_app_token(&server, &megan, peter).await;
    let accept = format!("/api/v1/patients/me/organization_requests/{request_id}/accept");
    assert_eq!(server.post(&accept, &app, json!({})).await.status, 403);
    // nor may another patient
    let pamela = server.token(seeded::PAMELA).await;
    assert_eq!(server.post(&accept, &pamela, json!({})).await.status, 404);
    assert_eq!(server.get(&format!("/api/v1/patients/{peter}"), &mark).await.status, 403);

    // the patient, with their own login, sees who asks and accepts
    let own = server.token(seeded::PETER).await;
    let mine = server.get("/api/v1/patients/me/organization_requests", &own).await;
    assert_eq!(mine.status, 200, "{:?}", mine.body);
    assert_eq!(mine.body[0]["organization"]["name"], "Neptunian Pulse Lab");
    assert!(mine.body[0]["requestedBy"].as_str().unwrap().contains(seeded::MARK), "{:?}", mine.body);
    let accepted = server.post(&accept, &own, json!({})).await;
    assert_eq!((accepted.status, accepted.body["status"].as_str()), (200, Some("accepted")), "{:?}", accepted.body);
    assert_eq!(server.post(&accept, &own, json!({})).await.status, 409, "decided once");
    assert_eq!(server.get(&format!("/api/v1/patients/{peter}"), &mark).await.status, 200);

    // a declined request changes nothing
    let percy_ask = json!({"organizationId": lifespan, "telecomEmail": seeded::PERCY});
    let asked = server.post("/api/v1/patients/organization_requests", &megan, percy_ask).await;
    assert_eq!(asked.status, 201, "{:?}", asked.body);
    let percy = server.token(seeded::PERCY).await;
    let decline = format!("/api/v1/patients/me/organization_requests/{}/decline", asked.body["id"]);
    assert_eq!(server.post(&decline, &percy, json!({})).await.body["status"], "declined");
    let percy_id = server.patient_id(seeded::PERCY).await;
    assert_eq!(server.get(&format!("/api/v1/patients/{percy_id}"), &megan).await.status, 403);

    // the trail names who changed memberships
    let audited: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_events WHERE action = 'membership'")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert!(audited >= 3, "{audited} membership events");
}

/// An invitation of `patient` to CareX issued by `practitioner`, redeemed and exchanged: the access token.
async fn patient_app_token(server: &TestServer, practitioner: &str, patient: i64) -> String {
    let (_, token) = server.invite(practitioner, patient).await;
    let redeemed = server.request("POST", &format!("/api/v1/invitation/{token}"), None, None).await;
    assert_eq!(redeemed.status, 200, "{:?}", redeemed.body);
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.as_bytes());
    let (status, tokens) = server.exchange_grant(&redeemed.body["grant"], &verifier).await;
    assert_eq!(status, 200, "{tokens:?}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_invitation_token_uploads_and_manages_consents_but_reads_no_observations() {
    let server = TestServer::start().await.unwrap();
    let megan = server.token(seeded::MEGAN).await;
    let peter = server.patient_id(seeded::PETER).await;
    let (_, token) = server.invite(&megan, peter).await;
    let redeemed = server.request("POST", &format!("/api/v1/invitation/{token}"), None, None).await;
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.as_bytes());
    let (_, tokens) = server.exchange_grant(&redeemed.body["grant"], &verifier).await;
    assert_eq!(tokens["scope"], "openid email patient/Observation.c patient/Consent.cruds patient/Patient.r");
    let app = tokens["access_token"].as_str().unwrap();

    assert_eq!(server.get("/api/v1/users/profile", app).await.status, 200);
    assert_eq!(server.get(&format!("/api/v1/patients/{peter}/consents"), app).await.status, 200);
    assert_eq!(server.get(&format!("/FHIR/R5/Patient/{peter}"), app).await.status, 200);
    for read in ["/FHIR/R5/Observation", "/api/v1/observations", "/FHIR/R5/Observation/$lastn"] {
        let answer = server.get(read, app).await;
        assert_eq!(answer.status, 403, "{read}: {:?}", answer.body);
    }
    // another patient's consents stay out of reach
    let pamela = server.patient_id(seeded::PAMELA).await;
    assert_eq!(server.get(&format!("/api/v1/patients/{pamela}/consents"), app).await.status, 403);

    // an app may ask for less, never for more
    let (_, again) = server.invite(&megan, peter).await;
    let wider =
        server.request("POST", &format!("/api/v1/invitation/{again}?scope=patient%2FObservation.rs"), None, None).await;
    assert_eq!(wider.status, 400, "{:?}", wider.body);
    assert!(wider.detail().starts_with("invalid_scope"), "{}", wider.detail());
    let narrower =
        server.request("POST", &format!("/api/v1/invitation/{again}?scope=patient%2FObservation.c"), None, None).await;
    assert_eq!(narrower.status, 200, "{:?}", narrower.body);
    let verifier = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(again.as_bytes());
    let (_, narrow) = server.exchange_grant(&narrower.body["grant"], &verifier).await;
    assert_eq!(narrow["scope"], "openid email patient/Observation.c");
}

#[tokio::test]
async fn an_organization_may_not_change_a_login_email_other_organizations_share() {
    let server = TestServer::start().await.unwrap();
    let megan = server.token(seeded::MEGAN).await;
    let admin = server.token(seeded::ADMIN).await;
    let peter = server.patient_id(seeded::PETER).await;
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await;
    let cosmic = server.id_of("organizations", "name", "Cosmic Cardio Lab").await;
    let verified = |email: &'static str| {
        let server = &server;
        async move {
            let row: (String, bool) = sqlx::query_as(
                "SELECT email, email_is_verified FROM users u JOIN patients p ON p.user_id = u.id WHERE p.id = $1",
            )
            .bind(peter)
            .fetch_one(&server.db.pool)
            .await
            .unwrap();
            assert_eq!(row.0, email);
            row.1
        }
    };
    sqlx::query("UPDATE users SET email_is_verified = TRUE WHERE lower(email) = lower($1)")
        .bind(seeded::PETER)
        .execute(&server.db.pool)
        .await
        .unwrap();
    let path = format!("/api/v1/patients/{peter}?organizationId={lifespan}");
    let added = server
        .patch(&format!("/api/v1/patients/{peter}/global_add_organization?organizationId={cosmic}"), &admin, json!({}))
        .await;
    assert_eq!(added.status, 200, "{:?}", added.body);

    // shared with Cosmic Cardio Lab: Lifespan Lab may not rewrite it
    let refused = server.patch(&path, &megan, json!({"telecomEmail": "attacker@example.com"})).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert!(verified(seeded::PETER).await, "unchanged and still verified");
    // other fields still change
    assert_eq!(server.patch(&path, &megan, json!({"nameGiven": "Pete"})).await.status, 200);

    // in one organization only: it changes, unverified until confirmed
    let remove = format!("/api/v1/patients/{peter}?organizationId={cosmic}");
    assert_eq!(server.delete(&remove, &admin, None).await.status, 204);
    let changed = server.patch(&path, &megan, json!({"telecomEmail": "peter.new@example.com"})).await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert!(!verified("peter.new@example.com").await, "a changed email is unverified");
}

#[tokio::test]
async fn an_identifier_search_outside_the_callers_organizations_matches_nothing() {
    let (server, _dir) = server_with_peters_data().await;
    let mark = server.token(seeded::MARK).await;
    let megan = server.token(seeded::MEGAN).await;
    for query in ["identifier=E1234", "identifier=urn%3Aoid%3A1.2.3.4%7CE1234", "patient.identifier=abc123"] {
        // Peter's identifier, asked by another organization: an empty Bundle, as for an unknown identifier
        let foreign = server.get(&format!("/FHIR/R5/Observation?{query}"), &mark).await;
        assert_eq!((foreign.status, foreign.body["total"].as_u64()), (200, Some(0)), "{query}: {:?}", foreign.body);
        assert!(!foreign.body.to_string().contains("Patient/"), "{query}: {:?}", foreign.body);
        let unknown = query.replace("E1234", "nope").replace("abc123", "nope");
        let unknown = server.get(&format!("/FHIR/R5/Observation?{unknown}"), &mark).await;
        assert_eq!((unknown.status, unknown.body["total"].clone()), (200, Value::from(0)));
        // Peter's own organization still finds his data by it
        let own = server.get(&format!("/FHIR/R5/Observation?{query}"), &megan).await;
        assert_eq!((own.status, own.body["total"].as_u64()), (200, Some(2)), "{query}: {:?}", own.body);
    }
}
