//! Identifier claims at commit (jhe-compat §6.7 step 5), for the paths where ingest moves the identifiers into the
//! claims and back instead of copying them: the 201 body still carries them, an entry that loses one of several
//! claims answers 409 and releases the others, and entries of one batch claim in entry order.

use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{ALL_ROLES, TestDatabase, TestServer, embedded_pipeline, seeded};
use serde_json::{Value, json};

struct Fixture {
    server: TestServer,
    _dir: tempfile::TempDir,
    peter: i64,
    carex: i64,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir.path()), ALL_ROLES).await.unwrap();
    let user = server.id_of("users", "email", seeded::PETER).await;
    let peter = server.id_of("patients", "user_id::text", &user.to_string()).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    Fixture { server, _dir: dir, peter, carex }
}

/// An observation of Peter's with the given identifiers (system `https://example.org/test-uuid` unless given).
fn observation(f: &Fixture, minute: u32, identifiers: &[(&str, &str)]) -> Value {
    let mut body = omh::observation(f.peter, f.carex, HEART_RATE, &omh::heart_rate("u", minute, 60.0), None);
    body["identifier"] =
        identifiers.iter().map(|(system, value)| json!({"system": system, "value": value})).collect::<Value>();
    body
}

fn statuses(answer: &Value) -> Vec<String> {
    answer["entry"].as_array().unwrap().iter().map(|e| e["response"]["status"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_created_observation_carries_its_identifiers() {
    let f = fixture().await;
    let token = f.server.token(seeded::MARY).await;
    let body = observation(&f, 1, &[("https://a.example", "id-1"), ("", "id-2")]);
    let answer = f.server.post("/FHIR/R5/Observation", &token, body).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    assert_eq!(
        answer.body["identifier"],
        json!([{"system": "https://a.example", "value": "id-1"}, {"value": "id-2"}]),
        "{:?}",
        answer.body
    );
}

#[tokio::test]
async fn an_entry_that_loses_one_claim_keeps_none() {
    let f = fixture().await;
    let token = f.server.token(seeded::PETER).await;
    let first = f.server.post("/FHIR/R5/", &token, omh::bundle(vec![observation(&f, 1, &[("s", "taken")])])).await;
    assert_eq!(statuses(&first.body), ["201 Created"]);

    let entries = vec![
        observation(&f, 2, &[("s", "free-1"), ("s", "taken")]),
        observation(&f, 3, &[("s", "free-2")]),
        observation(&f, 4, &[("s", "free-2")]),
        observation(&f, 5, &[]),
    ];
    let answer = f.server.post("/FHIR/R5/", &token, omh::bundle(entries)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(statuses(&answer.body), ["409 Conflict", "201 Created", "409 Conflict", "201 Created"]);
    let diagnostics = answer.body["entry"][0]["response"]["outcome"]["issue"][0]["diagnostics"].as_str().unwrap();
    assert_eq!(diagnostics, "Identifier already exists: system=s value=taken");
    let diagnostics = answer.body["entry"][2]["response"]["outcome"]["issue"][0]["diagnostics"].as_str().unwrap();
    assert_eq!(diagnostics, "Identifier already exists: system=s value=free-2");

    // the refused entry's other claim was released: it can be used now
    let again = f.server.post("/FHIR/R5/", &token, omh::bundle(vec![observation(&f, 6, &[("s", "free-1")])])).await;
    assert_eq!(statuses(&again.body), ["201 Created"]);
}
