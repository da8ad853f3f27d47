//! Observation analytics over HTTP on the embedded pipeline: FHIR `Observation/$lastn` and `Observation/$stats`
//! and the REST study summary, computed from the Parquet files under the same consent as searches.

use std::time::{Duration, Instant};

use jhe_tests::omh::{self, HEART_RATE};
use jhe_tests::{ALL_ROLES, Answer, TestDatabase, TestServer, embedded_pipeline, seeded};
use serde_json::{Value, json};

const OMH: &str = "https://w3id.org/openmhealth";
const BP_HR_STUDY: &str = "Lifespan Study on BP & HR";
const BP_STUDY: &str = "Lifespan Study on BP";
/// Peter: minutes 0–44 of 2025-01-01T08:00Z at 60 + minute bpm, then minutes 0–4 of 2025-01-02T12:00Z at
/// 100 + 2·minute bpm. Pamela: minutes 0–11 of 2025-01-01T08:00Z at 60 + minute bpm.
const PETER_DAY1: u32 = 45;
const PETER_DAY2: u32 = 5;
const PAMELA_ROWS: u32 = 12;

/// A heart rate at `2025-01-02T12:{minute}:00Z`.
fn heart_rate_day2(uuid: &str, minute: u32, bpm: f64) -> Value {
    let mut point = omh::heart_rate(uuid, minute, bpm);
    point["body"]["effective_time_frame"]["date_time"] = json!(format!("2025-01-02T12:{minute:02}:00Z"));
    point
}

fn path(base: &str, pairs: &[(&str, &str)]) -> String {
    let url = reqwest::Url::parse_with_params(&format!("http://x{base}"), pairs).expect("a valid url");
    match url.query() {
        Some(query) if !query.is_empty() => format!("{base}?{query}"),
        _ => base.to_owned(),
    }
}

fn assert_outcome(answer: &Answer, status: u16, diagnostics: &str) {
    assert_eq!(answer.status, status, "{:?}", answer.body);
    assert_eq!(answer.body["resourceType"], "OperationOutcome", "{:?}", answer.body);
    let text = answer.body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(text.contains(diagnostics), "`{text}` should mention `{diagnostics}`");
}

async fn patient(server: &TestServer, email: &str) -> i64 {
    let user = server.id_of("users", "email", email).await;
    server.id_of("patients", "user_id::text", &user.to_string()).await
}

async fn uploaded() -> (TestServer, tempfile::TempDir, i64, i64) {
    jhe_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir.path()), ALL_ROLES).await.unwrap();
    let peter = patient(&server, seeded::PETER).await;
    let pamela = patient(&server, seeded::PAMELA).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let mut peter_entries: Vec<Value> = (0..PETER_DAY1)
        .map(|minute| {
            let uuid = format!("{peter}-{minute}");
            let point = omh::heart_rate(&uuid, minute, 60.0 + f64::from(minute));
            omh::observation(peter, carex, HEART_RATE, &point, Some(&uuid))
        })
        .collect();
    peter_entries.extend((0..PETER_DAY2).map(|minute| {
        let uuid = format!("{peter}-day2-{minute}");
        let point = heart_rate_day2(&uuid, minute, 100.0 + 2.0 * f64::from(minute));
        omh::observation(peter, carex, HEART_RATE, &point, Some(&uuid))
    }));
    let pamela_entries: Vec<Value> = (0..PAMELA_ROWS)
        .map(|minute| {
            let uuid = format!("{pamela}-{minute}");
            let point = omh::heart_rate(&uuid, minute, 60.0 + f64::from(minute));
            omh::observation(pamela, carex, HEART_RATE, &point, Some(&uuid))
        })
        .collect();
    for (email, entries) in [(seeded::PETER, peter_entries), (seeded::PAMELA, pamela_entries)] {
        let token = server.token(email).await;
        let answer = server.post("/FHIR/R5/", &token, omh::bundle(entries)).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(answer.body["entry"].as_array().unwrap().iter().all(|e| e["response"]["status"] == "201 Created"));
    }
    let total = i64::from(PETER_DAY1 + PETER_DAY2 + PAMELA_ROWS);
    assert_eq!(
        server.wait_for_published_rows(total, Duration::from_secs(30)).await,
        total,
        "every upload is processed"
    );
    (server, dir, peter, pamela)
}

fn close(value: &Value, expected: f64) -> bool {
    value.as_f64().is_some_and(|found| (found - expected).abs() < 1e-9)
}

/// The `statistic` parameters of a `$stats` answer as (patient reference, code, {name: value}).
fn statistics(answer: &Answer) -> Vec<(String, String, serde_json::Map<String, Value>)> {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["resourceType"], "Parameters", "{:?}", answer.body);
    answer.body["parameter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|parameter| {
            assert_eq!(parameter["name"], "statistic");
            let parts = parameter["part"].as_array().unwrap();
            let subject = parts[0]["valueReference"]["reference"].as_str().unwrap().to_owned();
            let code = parts[1]["valueCoding"]["code"].as_str().unwrap().to_owned();
            let values = parts[2..]
                .iter()
                .map(|part| {
                    let name = part["name"].as_str().unwrap().to_owned();
                    let value = part.get("valueInteger").or_else(|| part.get("valueDecimal")).unwrap().clone();
                    (name, value)
                })
                .collect();
            (subject, code, values)
        })
        .collect()
}

#[tokio::test]
async fn lastn_stats_and_study_summary_match_the_uploaded_data() {
    let (server, _dir, peter, pamela) = uploaded().await;
    let mary = server.token(seeded::MARY).await;
    let code = format!("{OMH}|{HEART_RATE}");
    let peter_text = peter.to_string();

    // $lastn: the literal segment is not read as an observation id
    let latest = server.get(&path("/FHIR/R5/Observation/$lastn", &[("patient", &peter_text)]), &mary).await;
    assert_eq!(latest.status, 200, "{:?}", latest.body);
    assert_eq!(latest.body["resourceType"], "Bundle");
    assert_eq!(latest.body["type"], "searchset");
    assert_eq!(latest.body["total"], 1);
    let newest = &latest.body["entry"][0]["resource"];
    assert_eq!(newest["resourceType"], "Observation");
    assert_eq!(newest["effectiveDateTime"], "2025-01-02T12:04:00Z");
    assert_eq!(newest["subject"]["reference"], format!("Patient/{peter}"));
    assert_eq!(newest["code"]["coding"][0]["display"], "Heart Rate");
    // and reading that id still works next to the operation routes
    let id = newest["id"].as_str().unwrap();
    let read = server.get(&format!("/FHIR/R5/Observation/{id}"), &mary).await;
    assert_eq!(read.status, 200, "{:?}", read.body);
    assert_eq!(&read.body, newest);

    let three = server
        .get(&path("/FHIR/R5/Observation/$lastn", &[("patient", &peter_text), ("max", "3"), ("code", &code)]), &mary)
        .await;
    let times: Vec<&str> = three.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["effectiveDateTime"].as_str().unwrap())
        .collect();
    assert_eq!(times, ["2025-01-02T12:04:00Z", "2025-01-02T12:03:00Z", "2025-01-02T12:02:00Z"]);

    // every patient Mary may see: one each, ordered by patient
    let everyone = server.get("/FHIR/R5/Observation/$lastn", &mary).await;
    assert_eq!(everyone.body["total"], 2, "{:?}", everyone.body);
    let mut latest_of: Vec<(String, String)> = everyone.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let resource = &e["resource"];
            (
                resource["subject"]["reference"].as_str().unwrap().to_owned(),
                resource["effectiveDateTime"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    latest_of.sort();
    let mut expected = vec![
        (format!("Patient/{peter}"), "2025-01-02T12:04:00Z".to_owned()),
        (format!("Patient/{pamela}"), "2025-01-01T08:11:00Z".to_owned()),
    ];
    expected.sort();
    assert_eq!(latest_of, expected);
    // a date filter applies before the ranking
    let day1 = server
        .get(&path("/FHIR/R5/Observation/$lastn", &[("patient", &peter_text), ("date", "le2025-01-01")]), &mary)
        .await;
    assert_eq!(day1.body["entry"][0]["resource"]["effectiveDateTime"], "2025-01-01T08:44:00Z");

    // $stats over all of Peter's heart rates: 45 at 60..=104 and 5 at 100..=108
    let stats = statistics(
        &server.get(&path("/FHIR/R5/Observation/$stats", &[("patient", &peter_text), ("code", &code)]), &mary).await,
    );
    assert_eq!(stats.len(), 1);
    let (subject, stat_code, values) = &stats[0];
    assert_eq!((subject.as_str(), stat_code.as_str()), (format!("Patient/{peter}").as_str(), HEART_RATE));
    assert_eq!(values["count"], 50);
    assert!(close(&values["min"], 60.0), "{values:?}");
    assert!(close(&values["max"], 108.0), "{values:?}");
    let mean = (f64::from((60..=104).sum::<u32>()) + 520.0) / 50.0;
    assert!(close(&values["mean"], mean), "{values:?}");
    let names: Vec<&String> = values.keys().collect();
    assert_eq!(names.len(), 4);

    // a period and a subset of the statistics
    let period = statistics(
        &server
            .get(
                &path(
                    "/FHIR/R5/Observation/$stats",
                    &[
                        ("patient", &peter_text),
                        ("code", HEART_RATE),
                        ("period", "2025-01-02/2025-01-02"),
                        ("statistic", "count,mean"),
                    ],
                ),
                &mary,
            )
            .await,
    );
    let values = &period[0].2;
    assert_eq!(values.len(), 2, "{values:?}");
    assert_eq!(values["count"], 5);
    assert!(close(&values["mean"], 104.0), "{values:?}");

    // study-wide $stats: both patients
    let bp_hr = server.id_of("studies", "name", BP_HR_STUDY).await;
    let study_stats = statistics(
        &server
            .get(
                &path(
                    "/FHIR/R5/Observation/$stats",
                    &[("patient._has:Group:member:_id", &bp_hr.to_string()), ("code", &code)],
                ),
                &mary,
            )
            .await,
    );
    assert_eq!(study_stats.len(), 2);
    let pamela_stats = study_stats.iter().find(|s| s.0 == format!("Patient/{pamela}")).unwrap();
    assert_eq!(pamela_stats.2["count"], 12);
    assert!(close(&pamela_stats.2["mean"], 65.5));

    // REST: per patient, code and UTC day
    let summary = server
        .get(
            &path(&format!("/api/v1/studies/{bp_hr}/observation_summary"), &[("code", &code), ("granularity", "day")]),
            &mary,
        )
        .await;
    assert_eq!(summary.status, 200, "{:?}", summary.body);
    let results = summary.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 3, "{results:?}");
    let row = |patient: i64, day: &str| {
        results.iter().find(|r| r["patientId"] == patient && r["day"] == day).unwrap_or_else(|| panic!("{results:?}"))
    };
    let peter1 = row(peter, "2025-01-01");
    assert_eq!((peter1["code"].as_str(), peter1["count"].as_u64()), (Some(HEART_RATE), Some(45)));
    assert!(close(&peter1["min"], 60.0) && close(&peter1["max"], 104.0) && close(&peter1["mean"], 82.0), "{peter1}");
    let peter2 = row(peter, "2025-01-02");
    assert_eq!(peter2["count"], 5);
    assert!(close(&peter2["min"], 100.0) && close(&peter2["max"], 108.0) && close(&peter2["mean"], 104.0), "{peter2}");
    let pamela1 = row(pamela, "2025-01-01");
    assert_eq!(pamela1["count"], 12);
    assert!(close(&pamela1["min"], 60.0) && close(&pamela1["max"], 71.0), "{pamela1}");
    // a range that holds only the second day
    let second = server
        .get(
            &path(
                &format!("/api/v1/studies/{bp_hr}/observation_summary"),
                &[("start", "2025-01-02"), ("end", "2025-01-02")],
            ),
            &mary,
        )
        .await;
    assert_eq!(second.status, 200, "{:?}", second.body);
    assert_eq!(second.body["results"].as_array().unwrap().len(), 1, "{:?}", second.body);
    // "BP" does not request heart rate: the study-scoped rule leaves nothing
    let bp = server.id_of("studies", "name", BP_STUDY).await;
    let none = server.get(&format!("/api/v1/studies/{bp}/observation_summary"), &mary).await;
    assert_eq!(none.status, 200, "{:?}", none.body);
    assert_eq!(none.body["results"], json!([]));

    // the audit trail records each answer's row count under the `analytics` action
    let started = Instant::now();
    let audited: Vec<(String, Option<i64>)> = loop {
        let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
            "SELECT path, row_count FROM audit_events WHERE action = 'analytics' AND path LIKE '%$stats' ORDER BY id",
        )
        .fetch_all(&server.db.pool)
        .await
        .unwrap();
        if rows.len() >= 3 || started.elapsed() > Duration::from_secs(10) {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let counts: Vec<Option<i64>> = audited.iter().map(|(_, rows)| *rows).collect();
    assert_eq!(counts, [Some(1), Some(1), Some(2)], "{audited:?}");
}

#[tokio::test]
async fn analytics_follow_consent_and_organizations() {
    let (server, _dir, peter, pamela) = uploaded().await;
    let mary = server.token(seeded::MARY).await;
    let peter_token = server.token(seeded::PETER).await;
    let bp_hr = server.id_of("studies", "name", BP_HR_STUDY).await;
    let summary_path = format!("/api/v1/studies/{bp_hr}/observation_summary");
    let patients_in = |answer: &Answer| {
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let mut ids: Vec<i64> =
            answer.body["results"].as_array().unwrap().iter().map(|r| r["patientId"].as_i64().unwrap()).collect();
        ids.dedup();
        ids
    };
    let mut both = vec![peter, pamela];
    both.sort_unstable();
    assert_eq!(patients_in(&server.get(&summary_path, &mary).await), both);

    // another organization's practitioner: 403 for the study and for Lifespan's patient, nothing otherwise
    let mark = server.token(seeded::MARK).await;
    assert_eq!(server.get(&summary_path, &mark).await.status, 403);
    let peters_stats = path("/FHIR/R5/Observation/$stats", &[("patient", &peter.to_string()), ("code", HEART_RATE)]);
    assert_outcome(&server.get(&peters_stats, &mark).await, 403, "Patient/");
    let nothing = server.get("/FHIR/R5/Observation/$lastn", &mark).await;
    assert_eq!(nothing.status, 200, "{:?}", nothing.body);
    assert_eq!(nothing.body["total"], 0);
    // a patient reads their own data only, and no study summary
    let own = server.get("/FHIR/R5/Observation/$lastn", &peter_token).await;
    assert_eq!(own.body["total"], 1, "{:?}", own.body);
    assert_eq!(server.get(&summary_path, &peter_token).await.status, 403);

    // Peter revokes heart rate: his groups disappear from the next aggregates
    let consent = |consented: bool| {
        json!({"studyScopeConsents": [{"studyId": bp_hr,
            "scopeConsents": [{"codingSystem": OMH, "codingCode": HEART_RATE, "consented": consented}]}]})
    };
    let consents = format!("/api/v1/patients/{peter}/consents");
    assert_eq!(server.patch(&consents, &peter_token, consent(false)).await.status, 200);
    let started = Instant::now();
    while patients_in(&server.get(&summary_path, &mary).await) != vec![pamela] {
        assert!(started.elapsed() < Duration::from_secs(5), "a revoked consent hides the rows");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(statistics_count(&server.get(&peters_stats, &mary).await), 0);
    let latest = server.get(&path("/FHIR/R5/Observation/$lastn", &[("patient", &peter.to_string())]), &mary).await;
    assert_eq!(latest.body["total"], 0, "{:?}", latest.body);
    assert_eq!(server.patch(&consents, &peter_token, consent(true)).await.status, 200);
    assert_eq!(statistics_count(&server.get(&peters_stats, &mary).await), 1);
}

fn statistics_count(answer: &Answer) -> usize {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body["parameter"].as_array().unwrap().len()
}

#[tokio::test]
async fn bad_analytics_parameters_are_400() {
    let (server, _dir, peter, _) = uploaded().await;
    let mary = server.token(seeded::MARY).await;
    let peter_text = peter.to_string();
    for (pairs, mentions) in
        [(vec![("max", "0")], "max"), (vec![("max", "many")], "max"), (vec![("date", "yesterday")], "date")]
    {
        let answer = server.get(&path("/FHIR/R5/Observation/$lastn", &pairs), &mary).await;
        assert_outcome(&answer, 400, mentions);
    }
    for (pairs, mentions) in [
        (vec![("patient", peter_text.as_str())], "code"),
        (vec![("code", HEART_RATE)], "patient"),
        (vec![("patient", peter_text.as_str()), ("code", HEART_RATE), ("statistic", "median")], "statistic"),
        (vec![("patient", peter_text.as_str()), ("code", HEART_RATE), ("period", "2025-01-01")], "period"),
    ] {
        let answer = server.get(&path("/FHIR/R5/Observation/$stats", &pairs), &mary).await;
        assert_outcome(&answer, 400, mentions);
    }
    let bp_hr = server.id_of("studies", "name", BP_HR_STUDY).await;
    for (pairs, mentions) in [(vec![("granularity", "hour")], "granularity"), (vec![("start", "soon")], "date")] {
        let answer = server.get(&path(&format!("/api/v1/studies/{bp_hr}/observation_summary"), &pairs), &mary).await;
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert!(answer.body["detail"].as_str().unwrap().contains(mentions), "{:?}", answer.body);
    }
    let missing = server.get("/api/v1/studies/999999/observation_summary", &mary).await;
    assert_eq!(missing.status, 404, "{:?}", missing.body);
    assert!(missing.body["detail"].is_string());
}
