//! Observation reads over HTTP on the embedded pipeline: uploads through FHIR, then `GET /FHIR/R5/Observation`
//! (filters, cursor and `_page` paging with exact totals, the searchset envelope), `POST …/_search`, reads by id,
//! the REST `/api/v1/observations`, consent on read and OperationOutcome errors.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{ALL_ROLES, Answer, TestDatabase, TestServer, embedded_pipeline, seeded};
use serde_json::{Value, json};

const OMH: &str = "https://w3id.org/openmhealth";
const BP_HR_STUDY: &str = "Lifespan Study on BP & HR";
const BP_STUDY: &str = "Lifespan Study on BP";
const PETER_ROWS: u32 = 45;
const PAMELA_ROWS: u32 = 12;

async fn patient(server: &TestServer, email: &str) -> i64 {
    let user = server.id_of("users", "email", email).await;
    server.id_of("patients", "user_id::text", &user.to_string()).await
}

/// `/FHIR/R5/Observation?…` with the values percent-encoded.
fn search_path(pairs: &[(&str, &str)]) -> String {
    let url = reqwest::Url::parse_with_params("http://x/FHIR/R5/Observation", pairs).expect("a valid url");
    match url.query() {
        Some(query) if !query.is_empty() => format!("/FHIR/R5/Observation?{query}"),
        _ => "/FHIR/R5/Observation".to_owned(),
    }
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .expect("entry is always present")
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

fn link<'a>(bundle: &'a Value, relation: &str) -> Option<&'a str> {
    bundle["link"]
        .as_array()
        .expect("link is always present")
        .iter()
        .find(|l| l["relation"] == relation)
        .and_then(|l| l["url"].as_str())
}

fn assert_outcome(answer: &Answer, status: u16, diagnostics: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.body["resourceType"], "OperationOutcome", "{:?}", answer.body);
    assert_eq!(answer.body["issue"][0]["severity"], "error");
    let text = answer.body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(text.contains(diagnostics), "`{text}` should mention `{diagnostics}`");
}

/// A server on the embedded pipeline where Peter uploaded 45 heart rates (minutes 0–44 after
/// 2025-01-01T08:00Z) and Pamela 12, all processed into Parquet.
async fn uploaded() -> (TestServer, tempfile::TempDir, i64, i64) {
    jhe_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir.path()), ALL_ROLES).await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let pamela = patient(&server, seeded::PAMELA).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    for (email, id, rows) in [(seeded::PETER, peter, PETER_ROWS), (seeded::PAMELA, pamela, PAMELA_ROWS)] {
        let token = server.token(email).await;
        let entries = (0..rows)
            .map(|minute| {
                let uuid = format!("{id}-{minute}");
                omh::observation(
                    id,
                    carex,
                    HEART_RATE,
                    &omh::heart_rate(&uuid, minute, 60.0 + f64::from(minute)),
                    Some(&uuid),
                )
            })
            .collect();
        let answer = server.post("/FHIR/R5/", &token, omh::bundle(entries)).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(answer.body["entry"].as_array().unwrap().iter().all(|e| e["response"]["status"] == "201 Created"));
    }
    let total = i64::from(PETER_ROWS + PAMELA_ROWS);
    let published = jhe_tests_wait(&server, total).await;
    assert_eq!(published, total, "every upload is processed");
    (server, dir, peter, pamela)
}

async fn jhe_tests_wait(server: &TestServer, rows: i64) -> i64 {
    let started = Instant::now();
    loop {
        let published: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(row_count), 0)::int8 FROM parquet_files WHERE state = 'published'")
                .fetch_one(&server.db.pool)
                .await
                .unwrap();
        if published >= rows || started.elapsed() > Duration::from_secs(30) {
            return published;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn searches_page_by_cursor_and_page_number_with_exact_totals() {
    let (server, _dir, peter, _) = uploaded().await;
    let mary = server.token(seeded::MARY).await;
    let peter_text = peter.to_string();

    // follow `next` as the Python client does: the absolute URL alone carries the state
    let first = server.get(&search_path(&[("patient", &peter_text), ("_count", "10")]), &mary).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["resourceType"], "Bundle");
    assert_eq!(first.body["type"], "searchset");
    assert_eq!(first.body["meta"], json!({}));
    assert_eq!(first.body["total"], PETER_ROWS);
    assert_eq!(
        link(&first.body, "self"),
        Some(format!("{}/FHIR/R5/Observation?patient={peter}&_count=10", server.base).as_str())
    );
    assert!(link(&first.body, "previous").is_none());
    let mut seen: Vec<String> = ids(&first.body);
    let mut page = first.body.clone();
    let mut pages = 1;
    while let Some(next) = link(&page, "next").map(str::to_owned) {
        assert!(next.starts_with(&format!("{}/FHIR/R5/Observation?", server.base)), "{next}");
        assert!(next.contains("_cursor=") && next.contains(&format!("_page={}", pages + 1)), "{next}");
        let answer = server.get(&next, &mary).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(answer.body["total"], PETER_ROWS, "the total is exact on every page");
        let previous = link(&answer.body, "previous").expect("a previous link after page 1");
        assert!(!previous.contains("_cursor"), "{previous}");
        if pages == 1 {
            assert!(!previous.contains("_page"), "page 1 has no _page: {previous}");
        }
        seen.extend(ids(&answer.body));
        page = answer.body;
        pages += 1;
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), PETER_ROWS as usize);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), PETER_ROWS as usize, "pages never overlap");

    // `_page` (offset) gives the same pages
    let mut by_page = Vec::new();
    for number in 1..=5 {
        let number = number.to_string();
        let answer =
            server.get(&search_path(&[("patient", &peter_text), ("_count", "10"), ("_page", &number)]), &mary).await;
        assert_eq!(answer.status, 200);
        assert_eq!(link(&answer.body, "next").is_some(), number != "5");
        by_page.extend(ids(&answer.body));
    }
    assert_eq!(by_page, seen);
    let beyond = server.get(&search_path(&[("patient", &peter_text), ("_count", "10"), ("_page", "6")]), &mary).await;
    assert_outcome(&beyond, 404, "Invalid page.");

    // _summary=count
    let count = server.get(&search_path(&[("patient", &peter_text), ("_summary", "count")]), &mary).await;
    assert_eq!(count.body["total"], PETER_ROWS);
    assert_eq!(count.body["entry"], json!([]));
    assert_eq!(count.body["link"].as_array().unwrap().len(), 1);

    // POST _search with a form body answers like the GET
    let posted = server
        .raw(
            "POST",
            "/FHIR/R5/Observation/_search",
            &mary,
            "application/x-www-form-urlencoded",
            &format!("patient={peter}&_count=5"),
        )
        .await;
    assert_eq!(posted.status, 200, "{:?}", posted.body);
    assert_eq!(posted.body["total"], PETER_ROWS);
    assert_eq!(ids(&posted.body), seen[..5].to_vec());
    assert!(link(&posted.body, "next").unwrap().contains("_count=5"));
}

#[tokio::test]
async fn filters_and_the_rendered_observation() {
    let (server, _dir, peter, pamela) = uploaded().await;
    let mary = server.token(seeded::MARY).await;
    let peter_text = peter.to_string();
    let total = |answer: &Answer| answer.body["total"].as_u64().unwrap_or_else(|| panic!("{:?}", answer.body));
    let search = |pairs: Vec<(&'static str, String)>| {
        let server = &server;
        let mary = &mary;
        async move {
            let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server.get(&search_path(&pairs), mary).await
        }
    };
    let hr = format!("{OMH}|{HEART_RATE}");
    assert_eq!(total(&search(vec![("code", hr.clone())]).await), u64::from(PETER_ROWS + PAMELA_ROWS));
    assert_eq!(total(&search(vec![("code", format!("{OMH}|omh:blood-pressure:4.0"))]).await), 0);
    // minutes 0–44 after 2025-01-01T08:00Z; `+` in an offset must be encoded, and is
    assert_eq!(
        total(&search(vec![("patient", peter_text.clone()), ("date", "ge2025-01-01T08:30:00Z".into())]).await),
        15
    );
    assert_eq!(
        total(&search(vec![("patient", peter_text.clone()), ("date", "lt2025-01-01T09:30:00+01:00".into())]).await),
        30
    );
    assert_eq!(
        total(&search(vec![("patient", peter_text.clone()), ("date", "2025-01-01".into())]).await),
        u64::from(PETER_ROWS)
    );
    assert_eq!(total(&search(vec![("patient", peter_text.clone()), ("date", "2025-01-02".into())]).await), 0);
    assert_eq!(
        total(&search(vec![("patient", peter_text.clone()), ("_lastUpdated", "ge2025-01-01".into())]).await),
        u64::from(PETER_ROWS)
    );
    assert_eq!(total(&search(vec![("patient", peter_text.clone()), ("_lastUpdated", "lt2025-01-01".into())]).await), 0);

    // study-scoped: both patients consented to heart rate for "BP & HR"; "BP" does not request it
    let bp_hr = server.id_of("studies", "name", BP_HR_STUDY).await.to_string();
    let bp = server.id_of("studies", "name", BP_STUDY).await.to_string();
    assert_eq!(
        total(&search(vec![("patient._has:Group:member:_id", bp_hr.clone())]).await),
        u64::from(PETER_ROWS + PAMELA_ROWS)
    );
    assert_eq!(total(&search(vec![("patient._has:_group:member:_id", bp)]).await), 0);
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await.to_string();
    assert_eq!(total(&search(vec![("patient.organization", lifespan)]).await), u64::from(PETER_ROWS + PAMELA_ROWS));

    // sorted by effective time, oldest first; the resource as the Python client reads it
    let sorted = search(vec![("patient", peter_text.clone()), ("_sort", "date".into()), ("_count", "3".into())]).await;
    let first = &sorted.body["entry"][0]["resource"];
    assert_eq!(first["resourceType"], "Observation");
    assert_eq!(first["status"], "final");
    assert_eq!(first["effectiveDateTime"], "2025-01-01T08:00:00Z");
    assert_eq!(sorted.body["entry"][1]["resource"]["effectiveDateTime"], "2025-01-01T08:01:00Z");
    assert_eq!(first["subject"]["reference"], format!("Patient/{peter}"));
    assert_eq!(first["code"]["coding"][0], json!({"system": OMH, "code": HEART_RATE, "display": "Heart Rate"}));
    assert_eq!(first["meta"]["source"], "https://jupyterhealth.org/jhe");
    assert_eq!(first["identifier"][0]["value"], format!("{peter}-0"));
    assert_eq!(first["valueAttachment"]["contentType"], "application/json");
    let data =
        base64::engine::general_purpose::STANDARD.decode(first["valueAttachment"]["data"].as_str().unwrap()).unwrap();
    let point: Value = serde_json::from_slice(&data).unwrap();
    assert_eq!(point, omh::heart_rate(&format!("{peter}-0"), 0, 60.0), "the data point comes back as uploaded");

    // read by id; the same id for someone who may not see it is a 404
    let id = first["id"].as_str().unwrap();
    let read = server.get(&format!("/FHIR/R5/Observation/{id}"), &mary).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(&read.body, first);
    let mark = server.token(seeded::MARK).await;
    assert_outcome(&server.get(&format!("/FHIR/R5/Observation/{id}"), &mark).await, 404, "Observation");
    assert_outcome(&server.get("/FHIR/R5/Observation/not-an-id", &mary).await, 404, "Observation");

    // _id, and several patients at once
    assert_eq!(ids(&search(vec![("_id", id.to_owned())]).await.body), vec![id.to_owned()]);
    let both = format!("{peter},Patient/{pamela}");
    assert_eq!(total(&search(vec![("patient", both)]).await), u64::from(PETER_ROWS + PAMELA_ROWS));
}

#[tokio::test]
async fn consent_and_organizations_decide_who_sees_what() {
    let (server, _dir, peter, pamela) = uploaded().await;
    let mary = server.token(seeded::MARY).await;
    let peter_token = server.token(seeded::PETER).await;
    let total = |answer: &Answer| answer.body["total"].as_u64().unwrap_or_else(|| panic!("{:?}", answer.body));

    // a patient sees their own observations only; their patient filters are ignored
    assert_eq!(total(&server.get("/FHIR/R5/Observation", &peter_token).await), u64::from(PETER_ROWS));
    let other = search_path(&[("patient", &pamela.to_string())]);
    assert_eq!(total(&server.get(&other, &peter_token).await), u64::from(PETER_ROWS));

    // a practitioner of another organization sees nothing, and may not ask for Lifespan's patients
    let mark = server.token(seeded::MARK).await;
    assert_eq!(total(&server.get("/FHIR/R5/Observation", &mark).await), 0);
    let peters = search_path(&[("patient", &peter.to_string())]);
    assert_outcome(&server.get(&peters, &mark).await, 403, "Patient/");
    // the superuser sees every consented observation
    let admin = server.token(seeded::ADMIN).await;
    assert_eq!(total(&server.get("/FHIR/R5/Observation", &admin).await), u64::from(PETER_ROWS + PAMELA_ROWS));

    // Peter revokes heart rate: his rows disappear from Mary's next read (nothing is deleted)
    let bp_hr = server.id_of("studies", "name", BP_HR_STUDY).await;
    let revoke = |consented: bool| {
        json!({"studyScopeConsents": [{"studyId": bp_hr,
            "scopeConsents": [{"codingSystem": OMH, "codingCode": HEART_RATE, "consented": consented}]}]})
    };
    assert_eq!(total(&server.get(&peters, &mary).await), u64::from(PETER_ROWS));
    let consents = format!("/api/v1/patients/{peter}/consents");
    assert_eq!(server.patch(&consents, &peter_token, revoke(false)).await.status, 200);
    let hidden = wait_for_total(&server, &peters, &mary, 0).await;
    assert_eq!(hidden, 0, "a revoked consent hides the rows");
    assert_eq!(total(&server.get("/FHIR/R5/Observation", &mary).await), u64::from(PAMELA_ROWS));
    assert_eq!(total(&server.get("/FHIR/R5/Observation", &peter_token).await), u64::from(PETER_ROWS));
    assert_eq!(server.patch(&consents, &peter_token, revoke(true)).await.status, 200);
    assert_eq!(wait_for_total(&server, &peters, &mary, u64::from(PETER_ROWS)).await, u64::from(PETER_ROWS));
}

/// Polls the total of a search until it is `expected` (consent is read on every search, so the first read should
/// already show it; the poll only bounds the wait at a second).
async fn wait_for_total(server: &TestServer, path: &str, token: &str, expected: u64) -> u64 {
    let started = Instant::now();
    loop {
        let answer = server.get(path, token).await;
        let total = answer.body["total"].as_u64().unwrap_or_else(|| panic!("{:?}", answer.body));
        if total == expected || started.elapsed() > Duration::from_secs(1) {
            return total;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn rest_observations_for_practitioners() {
    let (server, _dir, peter, _) = uploaded().await;
    let mary = server.token(seeded::MARY).await;
    let list = server.get(&format!("/api/v1/observations?patient_id={peter}&pageSize=20"), &mary).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    assert_eq!(list.body["count"], PETER_ROWS);
    assert_eq!(list.body["results"].as_array().unwrap().len(), 20);
    assert_eq!(list.body["previous"], Value::Null);
    let next = list.body["next"].as_str().unwrap();
    assert_eq!(next, format!("{}/api/v1/observations?page=2&page_size=20&patient_id={peter}", server.base));
    let item = &list.body["results"][0];
    let keys: Vec<&str> = item.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "id",
            "subjectPatientId",
            "patientNameFamily",
            "patientNameGiven",
            "jheUserId",
            "codeableConceptId",
            "codingSystem",
            "codingCode",
            "codingText",
            "lastUpdated",
            "omhData"
        ]
    );
    assert_eq!(item["subjectPatientId"], peter);
    assert_eq!(item["codingText"], "Heart Rate");
    assert!(item["omhData"]["body"]["heart_rate"]["value"].is_number(), "OMH keys stay snake_case: {item}");
    assert!(item["lastUpdated"].as_str().unwrap().ends_with('Z'));

    let one = server.get(&format!("/api/v1/observations/{}", item["id"]), &mary).await;
    assert_eq!(one.status, 200);
    assert_eq!(&one.body, item);
    assert_eq!(server.get("/api/v1/observations/1", &mary).await.status, 404);
    let third = server.get(&format!("/api/v1/observations?patient_id={peter}&pageSize=20&page=3"), &mary).await;
    assert_eq!(third.body["results"].as_array().unwrap().len(), 5);
    assert_eq!(
        server.get(&format!("/api/v1/observations?patient_id={peter}&pageSize=20&page=4"), &mary).await.status,
        404
    );

    // patients get 404; another organization's patient is 403
    let peter_token = server.token(seeded::PETER).await;
    assert_eq!(server.get("/api/v1/observations", &peter_token).await.status, 404);
    assert_eq!(server.get(&format!("/api/v1/observations/{}", item["id"]), &peter_token).await.status, 404);
    let mark = server.token(seeded::MARK).await;
    assert_eq!(server.get(&format!("/api/v1/observations?patient_id={peter}"), &mark).await.status, 403);
    assert_eq!(server.get("/api/v1/observations?patient_id=abc", &mary).await.status, 400);
}

#[tokio::test]
async fn bad_requests_are_operation_outcomes() {
    let (server, _dir, _, _) = uploaded().await;
    let mary = server.token(seeded::MARY).await;
    for (pairs, mentions) in [
        (vec![("date", "yesterday")], "date"),
        (vec![("patient", "abc")], "patient"),
        (vec![("_lastUpdated", "ge2025-13-01")], "_lastUpdated"),
        (vec![("_page", "zero")], "_page"),
        (vec![("_cursor", "junk")], "cursor"),
        (vec![("code", "|")], "code"),
        (vec![("patient._has:Group:member:_id", "1,2")], "Group"),
    ] {
        assert_outcome(&server.get(&search_path(&pairs), &mary).await, 400, mentions);
    }
    let no_token = server.request("GET", "/FHIR/R5/Observation", None, None).await;
    assert_eq!(no_token.status, 401);
    assert_eq!(no_token.body["resourceType"], "OperationOutcome");
    let json_body = server.raw("POST", "/FHIR/R5/Observation/_search", &mary, "application/json", "{}").await;
    assert_outcome(&json_body, 400, "x-www-form-urlencoded");
    // the upload route on the same path still works
    let upload = server.post("/FHIR/R5/Observation", &mary, json!({"resourceType": "Observation"})).await;
    assert_eq!(upload.status, 400, "{:?}", upload.body);
}
