//! The audit trail: every read and search is recorded (who, which query, how many rows, when, the outcome), and
//! superusers read it back at `/api/v1/audit_events`.

use jhe_tests::{TestServer, seeded};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The audit events of `user` (newest first), waiting until at least `at_least` are there.
async fn events_of(server: &TestServer, admin: &str, user: &str, at_least: usize) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let answer = server.get(&format!("/api/v1/audit_events?user_id={user}&page_size=100"), admin).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let results = answer.body["results"].as_array().unwrap().clone();
        if results.len() >= at_least || started.elapsed() > Duration::from_secs(10) {
            return results;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn reads_are_recorded_with_who_what_rows_and_outcome() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let admin = server.token(seeded::ADMIN).await;
    let mary_id = server.id_of("users", "email", seeded::MARY).await.to_string();
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await;

    let answer = server.get(&format!("/api/v1/patients?organization_id={lifespan}"), &mary).await;
    assert_eq!(answer.status, 200);
    // an id outside the caller's organizations (here one that does not exist) is refused, and audited as such
    let answer = server.get("/api/v1/patients/999999", &mary).await;
    assert_eq!(answer.status, 403);
    // not audited: public documents, uploads
    assert_eq!(server.request("GET", "/FHIR/R5/metadata", None, None).await.status, 200);
    assert_eq!(server.get("/health", &mary).await.status, 200);

    let events = events_of(&server, &admin, &mary_id, 2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let (missing, list) = (&events[0], &events[1]);
    assert_eq!(list["action"], "read");
    assert_eq!(list["resourceType"], "patients");
    assert_eq!(list["method"], "GET");
    assert_eq!(list["path"], "/api/v1/patients");
    assert_eq!(list["query"], format!("organization_id={lifespan}"));
    assert_eq!(list["status"], 200);
    assert_eq!(list["rowCount"], 2, "Lifespan Lab has two patients");
    assert!(list["requestId"].as_str().is_some_and(|id| !id.is_empty()), "{list}");
    assert!(list["at"].as_str().is_some() && list["durationUs"].as_i64().unwrap() >= 0);
    assert_eq!(missing["path"], "/api/v1/patients/999999");
    assert_eq!(missing["status"], 403);
    assert_eq!(missing["rowCount"], Value::Null);

    // Refused requests are recorded without a user.
    let answer = server.request("GET", "/api/v1/patients", None, None).await;
    assert_eq!(answer.status, 401);
    let started = Instant::now();
    loop {
        let anonymous: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM audit_events WHERE user_id IS NULL AND status = 401 AND path = '/api/v1/patients'",
        )
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
        if anonymous == 1 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the refused read was not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // FHIR searches are recorded as searches, with the entries returned.
    let answer = server.get(&format!("/FHIR/R5/Patient?patient.organization={lifespan}"), &mary).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let started = Instant::now();
    loop {
        let recorded: Option<(String, String, Option<i64>)> =
            sqlx::query_as("SELECT action, resource_type, row_count FROM audit_events WHERE path = '/FHIR/R5/Patient'")
                .fetch_optional(&server.db.pool)
                .await
                .unwrap();
        if let Some(recorded) = recorded {
            assert_eq!(recorded, ("search".to_owned(), "Patient".to_owned(), Some(2)));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the FHIR search was not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Filters, and only superusers read the trail.
    let answer = server.get(&format!("/api/v1/audit_events?user_id={mary_id}&action=search"), &admin).await;
    assert_eq!(answer.body["count"], 1, "{:?}", answer.body);
    let answer = server.get("/api/v1/audit_events?action=delete", &admin).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let answer = server.get("/api/v1/audit_events?since=yesterday", &admin).await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    let answer = server.get("/api/v1/audit_events?since=2000-01-01", &admin).await;
    assert_eq!(answer.status, 200);
    assert!(answer.body["count"].as_i64().unwrap() >= 3);
    assert_eq!(server.get("/api/v1/audit_events", &mary).await.status, 403);

    // A search whose parameters come in a form body is recorded with them.
    let posted = reqwest::Client::new()
        .post(format!("{}/FHIR/R5/Patient/_search?_count=5", server.base))
        .bearer_auth(&mary)
        .form(&[("patient.organization", lifespan.to_string())])
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
    let started = Instant::now();
    loop {
        let recorded: Option<(String, Option<i64>)> = sqlx::query_as(
            "SELECT query, row_count FROM audit_events WHERE path = '/FHIR/R5/Patient/_search' AND method = 'POST'",
        )
        .fetch_optional(&server.db.pool)
        .await
        .unwrap();
        if let Some(recorded) = recorded {
            assert_eq!(recorded, (format!("_count=5&patient.organization={lifespan}"), Some(2)));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the form-body search was not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
