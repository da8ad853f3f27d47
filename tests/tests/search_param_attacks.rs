//! Search parameters built to overflow or to make the server sort everything: dates past the calendar's end (chrono
//! reaches year 262142), pages deeper than any page may go, numbers of any length, cursors naming impossible times
//! and bytes that are not UTF-8. Each is a 400 (OperationOutcome on FHIR, `{"detail": …}` on REST) naming the
//! parameter, never a panic, and the server answers the same search the same way afterwards.

use std::time::Duration;

use base64::Engine as _;
use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{ALL_ROLES, Answer, TestDatabase, TestServer, embedded_pipeline, seeded};
use serde_json::{Value, json};

const PETER_ROWS: u32 = 3;

/// A pipeline server where Peter uploaded a few heart rates, all published.
async fn server_with_observations() -> (TestServer, tempfile::TempDir, i64) {
    jhe_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir.path()), ALL_ROLES).await.unwrap();
    let peter = server.patient_id(seeded::PETER).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let entries = (0..PETER_ROWS)
        .map(|minute| {
            let uuid = format!("attack-{minute}");
            omh::observation(peter, carex, HEART_RATE, &omh::heart_rate(&uuid, minute, 70.0), Some(&uuid))
        })
        .collect();
    let token = server.token(seeded::PETER).await;
    let answer = server.post("/FHIR/R5/", &token, omh::bundle(entries)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let rows = i64::from(PETER_ROWS);
    assert_eq!(server.wait_for_published_rows(rows, Duration::from_secs(30)).await, rows);
    (server, dir, peter)
}

/// A cursor as the server encodes one (base64url of `{"s": order, "k": keys}`).
fn cursor(order: &str, keys: &[i64]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json!({ "s": order, "k": keys }).to_string())
}

fn assert_outcome(answer: &Answer, status: u16, mentions: &str, query: &str) {
    assert_eq!(answer.status, status, "{query}: {:?}", answer.body);
    assert_eq!(answer.body["resourceType"], "OperationOutcome", "{query}: {:?}", answer.body);
    assert_eq!(answer.body["issue"][0]["severity"], "error", "{query}");
    let text = answer.body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(text.contains(mentions), "{query}: `{text}` should mention `{mentions}`");
}

fn assert_detail(answer: &Answer, status: u16, mentions: &str, query: &str) {
    assert_eq!(answer.status, status, "{query}: {:?}", answer.body);
    assert!(answer.detail().contains(mentions), "{query}: `{}` should mention `{mentions}`", answer.detail());
}

/// The total and the entries' ids of a search that must succeed.
async fn search(server: &TestServer, token: &str, path: &str) -> (u64, Vec<Value>) {
    let answer = server.get(path, token).await;
    assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
    let ids = answer.body["entry"].as_array().unwrap().iter().map(|entry| entry["resource"]["id"].clone()).collect();
    (answer.body["total"].as_u64().unwrap(), ids)
}

#[tokio::test]
async fn observation_searches_refuse_out_of_range_dates_pages_and_cursors() {
    let (server, _dir, peter) = server_with_observations().await;
    let mary = server.token(seeded::MARY).await;
    let before = search(&server, &mary, &format!("/FHIR/R5/Observation?patient={peter}")).await;
    assert_eq!(before.0, u64::from(PETER_ROWS));
    let far_cursor = format!("_cursor={}", cursor("-_lastUpdated,-_id", &[i64::MAX, 1]));
    let ancient_cursor = format!("_cursor={}", cursor("-_lastUpdated,-_id", &[i64::MIN, 1]));
    let attacks = [
        // `+` unencoded arrives as a space and is read back as a `+`
        ("date=+262142-12-31T23:59Z", "date"),
        ("date=%2B262142-12-31T23:59Z", "date"),
        ("date=262142-12-31T23:59Z", "date"),
        ("date=ge-262143-01-01", "date"),
        ("date=ge-262143-01-01T00:00Z", "date"),
        ("date=ap%2B262142-12-31T23:59Z", "date"),
        ("date=le10000-01-01", "date"),
        ("date=2025-01-02T10:00%2B99:00", "date"),
        ("_lastUpdated=gt+262142-12-31", "_lastUpdated"),
        ("_lastUpdated=lt-262143-01-01T00:00:00Z", "_lastUpdated"),
        ("_lastUpdated=%FF%FE2025", "_lastUpdated"),
        ("date=%E2%82", "date"),
        ("_page=99999999999999999999", "_page"),
        ("_page=1000000000", "_page"),
        ("_page=5001", "past row 100000"),
        ("_count=1000&_page=101", "past row 100000"),
        ("_count=99999999999999999999&_page=200", "past row 100000"),
        ("_page=-1", "_page"),
        ("_page=%FF", "_page"),
        (far_cursor.as_str(), "cursor"),
        (ancient_cursor.as_str(), "cursor"),
        ("_cursor=%FF%FE", "cursor"),
    ];
    for (query, mentions) in attacks {
        let path = format!("/FHIR/R5/Observation?patient={peter}&{query}");
        assert_outcome(&server.get(&path, &mary).await, 400, mentions, query);
    }
    let deep = server.get(&format!("/FHIR/R5/Observation?patient={peter}&_page=5001"), &mary).await;
    let text = deep.body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(text.contains("follow the `next` link"), "{text}");

    // a page size of any length is capped, as the reference caps it; a negative one is the default
    for count in ["99999999999999999999", "-5", "-99999999999999999999"] {
        let answer = search(&server, &mary, &format!("/FHIR/R5/Observation?patient={peter}&_count={count}")).await;
        assert_eq!(answer, before, "_count={count}");
    }
    // the deepest page allowed is answered like any other page past the end
    let last_allowed = server.get(&format!("/FHIR/R5/Observation?patient={peter}&_page=5000"), &mary).await;
    assert_outcome(&last_allowed, 404, "Invalid page.", "_page=5000");
    // and the server still answers the same search the same way
    assert_eq!(search(&server, &mary, &format!("/FHIR/R5/Observation?patient={peter}")).await, before);
    assert_eq!(server.published_rows().await, i64::from(PETER_ROWS), "nothing was stored");
}

#[tokio::test]
async fn resource_searches_refuse_out_of_range_dates_and_pages() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let before = search(&server, &mary, "/FHIR/R5/Patient").await;
    let attacks = [
        ("_lastUpdated=gt+262142-12-31", "_lastUpdated"),
        ("_lastUpdated=%2B262142-12-31T23:59Z", "_lastUpdated"),
        ("_lastUpdated=262142-12-31T23:59Z", "_lastUpdated"),
        ("_lastUpdated=ge-262143-01-01", "_lastUpdated"),
        ("_lastUpdated=9999-12-31T23:59%2B15:00", "_lastUpdated"),
        ("_lastUpdated=%FF%FE2025", "_lastUpdated"),
        ("birthdate=262142-12-31", "birthdate"),
        ("birthdate=0000", "a year from 0001 to 9999"),
        ("birthdate=%E2%82", "birthdate"),
        ("_page=99999999999999999999", "past row 100000"),
        ("_page=1000000000", "past row 100000"),
        ("_page=5001", "past row 100000"),
        ("_count=1000&_page=101", "past row 100000"),
        ("_count=99999999999999999999&_page=200", "past row 100000"),
    ];
    for (query, mentions) in attacks {
        assert_outcome(&server.get(&format!("/FHIR/R5/Patient?{query}"), &mary).await, 400, mentions, query);
    }
    // a page number that is not one is Django REST framework's 404, as before
    for query in ["_page=-1", "_page=-99999999999999999999", "_page=%FF"] {
        assert_outcome(&server.get(&format!("/FHIR/R5/Patient?{query}"), &mary).await, 404, "Invalid page.", query);
    }
    for count in ["99999999999999999999", "-5"] {
        assert_eq!(search(&server, &mary, &format!("/FHIR/R5/Patient?_count={count}")).await, before, "{count}");
    }
    assert_eq!(search(&server, &mary, "/FHIR/R5/Patient").await, before);
}

#[tokio::test]
async fn rest_lists_refuse_pages_past_the_depth_limit() {
    let (server, _dir, peter) = server_with_observations().await;
    let mary = server.token(seeded::MARY).await;
    let list = |query: &str| format!("/api/v1/observations?patient_id={peter}&{query}");
    let before = server.get(&list(""), &mary).await;
    assert_eq!(before.status, 200, "{:?}", before.body);
    assert_eq!(before.body["count"], PETER_ROWS);
    for query in [
        "page=99999999999999999999",
        "page=1000000000",
        "page=5001",
        "page=101&pageSize=1000",
        "page=200&pageSize=99999999999999999999",
    ] {
        assert_detail(&server.get(&list(query), &mary).await, 400, "past row 100000", query);
        assert_detail(&server.get(&format!("/api/v1/patients?{query}"), &mary).await, 400, "past row 100000", query);
    }
    // lists without a page size of their own page by 1000
    assert_detail(&server.get("/api/v1/clients?page=101&pageSize=1", &mary).await, 400, "past row 100000", "clients");
    for (query, mentions) in [
        ("patient_id=99999999999999999999", "patientId"),
        ("organization_id=-99999999999999999999", "organizationId"),
        ("study_id=%FF", "studyId"),
    ] {
        let answer = server.get(&format!("/api/v1/observations?{query}"), &mary).await;
        assert_detail(&answer, 400, mentions, query);
    }
    // a page number that is not one is Django REST framework's 404, as before
    for query in ["page=-1", "page=%FF", "page=0"] {
        assert_detail(&server.get(&list(query), &mary).await, 404, "Invalid page.", query);
    }
    let capped = server.get(&list("pageSize=99999999999999999999"), &mary).await;
    assert_eq!((capped.status, &capped.body["results"]), (200, &before.body["results"]));
    let after = server.get(&list(""), &mary).await;
    assert_eq!((after.status, &after.body), (200, &before.body), "the server answers as before");
}
