//! SMART v2 scope constraints are filters inside the query, not checks of the URL (docs/identity.md, "SMART
//! scopes"): a token whose Observation scope is limited to heart rates (`user/Observation.rs?code=<omh>|<heart
//! rate>`) gets no blood pressure by any route — FHIR search with every trick of its parameters, read by id,
//! `$lastn`, `$stats`, counts, REST observations, the study summary and bulk export — and a constraint the server
//! cannot enforce is `invalid_scope` wherever a token is asked for (client credentials, the authorization
//! endpoint, invitation redemption, refresh), with nothing issued.

use std::time::{Duration, Instant};

use jhe_tests::browser::{Browser, authorize_url, form_post};
use jhe_tests::omh::{self, BLOOD_PRESSURE, HEART_RATE, SYSTEM};
use jhe_tests::{ALL_ROLES, Answer, TestDatabase, TestServer, embedded_pipeline, seeded};
use openidconnect::PkceCodeChallenge;
use serde_json::{Value, json};

const BP_HR_STUDY: &str = "Lifespan Study on BP & HR";
/// Observations of each code per patient (Peter and Pamela).
const PER_CODE: u64 = 3;
/// The seeded admin UI's redirect URI (nothing listens there; the tests read the Location).
const REDIRECT: &str = "http://127.0.0.1:8000/auth/callback";

fn heart_rate_code() -> String {
    format!("{SYSTEM}|{HEART_RATE}")
}

fn blood_pressure_code() -> String {
    format!("{SYSTEM}|{BLOOD_PRESSURE}")
}

/// The scope limiting Observation reads and searches to heart rates.
fn heart_rates_only(context: &str) -> String {
    format!("{context}/Observation.rs?code={}", heart_rate_code())
}

/// `base` with `pairs` as its (encoded) query string.
fn path(base: &str, pairs: &[(&str, &str)]) -> String {
    let url = reqwest::Url::parse_with_params(&format!("http://x{base}"), pairs).expect("a valid url");
    match url.query() {
        Some(query) if !query.is_empty() => format!("{base}?{query}"),
        _ => base.to_owned(),
    }
}

/// The uploaded observations' ids by code.
struct Uploaded {
    heart_rates: Vec<String>,
    blood_pressures: Vec<String>,
    /// Peter's blood pressures (the patient token's own data of the other code).
    peters_blood_pressures: Vec<String>,
}

/// A pipeline server where Peter and Pamela (Lifespan Lab, consenting to both codes for the BP & HR study) each
/// uploaded `PER_CODE` heart rates and `PER_CODE` blood pressures, all published.
async fn server_with_two_codes(dir: &std::path::Path) -> (TestServer, Uploaded) {
    jhe_tests::init_logs();
    let db = TestDatabase::create(true).await.unwrap();
    let server = TestServer::start_pipeline(db, &embedded_pipeline(dir), ALL_ROLES).await.unwrap();
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let mut uploaded = Uploaded { heart_rates: vec![], blood_pressures: vec![], peters_blood_pressures: vec![] };
    for email in [seeded::PETER, seeded::PAMELA] {
        let patient = server.patient_id(email).await;
        let mut entries = Vec::new();
        for minute in 0..PER_CODE as u32 {
            let uuid = format!("{patient}-hr-{minute}");
            let point = omh::heart_rate(&uuid, minute, 60.0 + f64::from(minute));
            entries.push(omh::observation(patient, carex, HEART_RATE, &point, Some(&uuid)));
            let uuid = format!("{patient}-bp-{minute}");
            entries.push(omh::observation(patient, carex, BLOOD_PRESSURE, &blood_pressure(&uuid, minute), Some(&uuid)));
        }
        let answer = server.post("/FHIR/R5/", &server.token(email).await, omh::bundle(entries)).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        for (at, entry) in answer.body["entry"].as_array().unwrap().iter().enumerate() {
            let id = entry["resource"]["id"].as_str().expect("created").to_owned();
            if at % 2 == 0 {
                uploaded.heart_rates.push(id);
            } else {
                if email == seeded::PETER {
                    uploaded.peters_blood_pressures.push(id.clone());
                }
                uploaded.blood_pressures.push(id);
            }
        }
    }
    let total = i64::try_from(4 * PER_CODE).unwrap();
    assert_eq!(server.wait_for_published_rows(total, Duration::from_secs(30)).await, total);
    (server, uploaded)
}

fn blood_pressure(uuid: &str, minute: u32) -> Value {
    json!({
        "header": {
            "uuid": uuid,
            "schema_id": {"namespace": "omh", "name": "blood-pressure", "version": "4.0"},
            "source_creation_date_time": "2025-01-01T01:04:01-08:00",
            "modality": "sensed"
        },
        "body": {
            "systolic_blood_pressure": {"value": 120 + minute, "unit": "mmHg"},
            "diastolic_blood_pressure": {"value": 80, "unit": "mmHg"},
            "effective_time_frame": {"date_time": format!("2025-01-01T09:{minute:02}:00-08:00")}
        }
    })
}

/// The codes of a searchset Bundle's Observations.
fn bundle_codes(answer: &Answer) -> Vec<String> {
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["resourceType"], "Bundle", "{:?}", answer.body);
    answer.body["entry"]
        .as_array()
        .map(|entries| {
            entries.iter().map(|e| e["resource"]["code"]["coding"][0]["code"].as_str().unwrap().to_owned()).collect()
        })
        .unwrap_or_default()
}

/// A searchset with `total` observations, heart rates only.
fn assert_heart_rates(answer: &Answer, total: u64, what: &str) {
    let codes = bundle_codes(answer);
    assert_eq!(answer.body["total"].as_u64(), Some(total), "{what}: {:?}", answer.body);
    assert!(codes.iter().all(|code| code == HEART_RATE), "{what}: {codes:?}");
}

/// A 404 OperationOutcome or `{"detail"}`, as for an observation that does not exist.
fn assert_not_found(answer: &Answer, what: &str) {
    assert_eq!(answer.status, 404, "{what}: {:?}", answer.body);
}

/// A client-credentials token of Mary's API key asking for `scope` (none when empty).
async fn key_token(server: &TestServer, key: &str, scope: &str) -> String {
    let body = server.client_credentials(key, (!scope.is_empty()).then_some(scope)).await;
    assert_eq!(body["scope"], scope, "the token response names the granted scope");
    body["access_token"].as_str().unwrap().to_owned()
}

async fn issued_tokens(server: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM access_tokens").fetch_one(&server.db.pool).await.unwrap()
}

async fn granted_codes(server: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM oauth_grants").fetch_one(&server.db.pool).await.unwrap()
}

#[tokio::test]
async fn a_code_constrained_practitioner_token_reads_no_other_code_by_any_route() {
    let dir = tempfile::tempdir().unwrap();
    let (server, uploaded) = server_with_two_codes(dir.path()).await;
    let mary = server.token(seeded::MARY).await;
    let key = server.practitioner_api_key(&mary, "constrained").await;
    let study = server.id_of("studies", "name", BP_HR_STUDY).await.to_string();
    let peter = server.patient_id(seeded::PETER).await.to_string();
    let pamela = server.patient_id(seeded::PAMELA).await.to_string();
    let plain = key_token(&server, &key, "").await;
    let hr = key_token(&server, &key, &format!("{} user/Group.r", heart_rates_only("user"))).await;
    let (hr_code, bp_code) = (heart_rate_code(), blood_pressure_code());
    let all = 2 * PER_CODE;

    // the control: without scopes Mary's key sees both codes of both patients
    let everything = server.get("/FHIR/R5/Observation?_count=100", &plain).await;
    assert_eq!(everything.body["total"].as_u64(), Some(2 * all), "{:?}", everything.body);
    assert!(bundle_codes(&everything).iter().any(|code| code == BLOOD_PRESSURE));

    // FHIR search: no spelling of the parameters reaches a blood pressure
    let owned = |pairs: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        pairs.iter().map(|(name, value)| (*name, (*value).to_owned())).collect()
    };
    let searches: Vec<(Vec<(&str, String)>, u64)> = vec![
        (vec![], all),
        (owned(&[("code", &bp_code)]), 0),
        (owned(&[("code", BLOOD_PRESSURE)]), 0),
        (owned(&[("code", &format!("{SYSTEM}|"))]), all),
        (owned(&[("code", &format!("{hr_code},{bp_code}"))]), all),
        (owned(&[("code", &format!("{hr_code},{BLOOD_PRESSURE}"))]), all),
        (owned(&[("code", &hr_code), ("code", &bp_code)]), 0),
        (owned(&[("code", &hr_code), ("code", HEART_RATE)]), all),
        (owned(&[("code", &bp_code), ("code", &hr_code)]), 0),
        (owned(&[("patient._has:Group:member:_id", &study)]), all),
        (owned(&[("_has:Group:member:_id", &study), ("code", &bp_code)]), 0),
        (owned(&[("patient", &format!("{peter},{pamela}"))]), all),
        (owned(&[("patient", &peter), ("code", BLOOD_PRESSURE)]), 0),
        (owned(&[("category", "vital-signs"), ("foo", "bar"), ("_elements", "code")]), all),
        (owned(&[("_id", &uploaded.blood_pressures.join(","))]), 0),
        (owned(&[("_id", &format!("{},{}", uploaded.heart_rates[0], uploaded.blood_pressures[0]))]), 1),
        (owned(&[("_sort", "-_lastUpdated")]), all),
        (owned(&[("status", "final"), ("date", "ge2024-01-01")]), all),
    ];
    for (params, total) in &searches {
        let params: Vec<(&str, &str)> = params.iter().map(|(name, value)| (*name, value.as_str())).collect();
        let mut with_count = params.clone();
        with_count.push(("_count", "100"));
        let answer = server.get(&path("/FHIR/R5/Observation", &with_count), &hr).await;
        assert_heart_rates(&answer, *total, &format!("search {params:?}"));
        assert_eq!(bundle_codes(&answer).len() as u64, *total, "search {params:?}");
        // `_summary=count`: the same total, from the catalog or a count
        let mut counted = params.clone();
        counted.push(("_summary", "count"));
        let answer = server.get(&path("/FHIR/R5/Observation", &counted), &hr).await;
        assert_eq!(answer.body["total"].as_u64(), Some(*total), "count {params:?}: {:?}", answer.body);
        // and the same by POST `_search`
        let form =
            reqwest::Url::parse_with_params("http://x/", &with_count).unwrap().query().unwrap_or_default().to_owned();
        let posted =
            server.raw("POST", "/FHIR/R5/Observation/_search", &hr, "application/x-www-form-urlencoded", &form).await;
        assert_heart_rates(&posted, *total, &format!("_search {params:?}"));
    }

    // read by id: a blood pressure is not found, on FHIR and REST alike
    for id in &uploaded.blood_pressures {
        assert_not_found(&server.get(&format!("/FHIR/R5/Observation/{id}"), &hr).await, "FHIR read");
        assert_not_found(&server.get(&format!("/api/v1/observations/{id}"), &hr).await, "REST read");
        assert_eq!(server.get(&format!("/FHIR/R5/Observation/{id}"), &plain).await.status, 200);
    }
    assert_eq!(server.get(&format!("/FHIR/R5/Observation/{}", uploaded.heart_rates[0]), &hr).await.status, 200);

    // $lastn and $stats
    for params in [vec![], vec![("code", bp_code.as_str())], vec![("patient", peter.as_str())]] {
        let latest = server.get(&path("/FHIR/R5/Observation/$lastn", &params), &hr).await;
        let codes = bundle_codes(&latest);
        assert!(codes.iter().all(|code| code == HEART_RATE), "$lastn {params:?}: {codes:?}");
        assert_eq!(codes.is_empty(), params.iter().any(|(_, v)| *v == bp_code), "$lastn {params:?}: {codes:?}");
    }
    let unlimited_lastn = bundle_codes(&server.get("/FHIR/R5/Observation/$lastn", &plain).await);
    assert!(unlimited_lastn.iter().any(|code| code == BLOOD_PRESSURE), "{unlimited_lastn:?}");
    let either = format!("{hr_code},{bp_code}");
    for params in [
        vec![("patient", peter.as_str()), ("code", bp_code.as_str())],
        vec![("patient._has:Group:member:_id", study.as_str()), ("code", bp_code.as_str())],
        vec![("patient._has:Group:member:_id", study.as_str()), ("code", either.as_str())],
        vec![("patient", peter.as_str()), ("code", BLOOD_PRESSURE), ("code", either.as_str())],
        vec![("patient", peter.as_str()), ("code", hr_code.as_str())],
    ] {
        let stats = server.get(&path("/FHIR/R5/Observation/$stats", &params), &hr).await;
        assert_eq!(stats.status, 200, "$stats {params:?}: {:?}", stats.body);
        let codes: Vec<&str> = stats.body["parameter"]
            .as_array()
            .map(|statistics| statistics.iter().filter_map(|s| s["part"][1]["valueCoding"]["code"].as_str()).collect())
            .unwrap_or_default();
        assert!(codes.iter().all(|code| *code == HEART_RATE), "$stats {params:?}: {codes:?}");
        let asks_blood_pressure = params.iter().any(|(_, v)| *v == bp_code || *v == BLOOD_PRESSURE);
        assert_eq!(codes.is_empty(), asks_blood_pressure, "$stats {params:?}: {codes:?}");
    }

    // REST observations, which take no `code` parameter at all (so naming the allowed code proves nothing)
    for params in [
        vec![],
        vec![("code", hr_code.as_str())],
        vec![("code", bp_code.as_str())],
        vec![("studyId", study.as_str())],
        vec![("patientId", peter.as_str()), ("codingCode", BLOOD_PRESSURE)],
        vec![("observationId", uploaded.blood_pressures[0].as_str())],
        vec![("pageSize", "1000")],
    ] {
        let answer = server.get(&path("/api/v1/observations", &params), &hr).await;
        assert_eq!(answer.status, 200, "REST {params:?}: {:?}", answer.body);
        let results = answer.body["results"].as_array().unwrap();
        assert!(results.iter().all(|r| r["codingCode"] == HEART_RATE), "REST {params:?}: {results:?}");
        let expected = match params.first().map(|(name, _)| *name) {
            Some("patientId") => PER_CODE,
            Some("observationId") => 0,
            _ => all,
        };
        assert_eq!(answer.body["count"].as_u64(), Some(expected), "REST {params:?}: {:?}", answer.body);
    }

    // the study summary
    let summary = server.get(&format!("/api/v1/studies/{study}/observation_summary"), &hr).await;
    assert_eq!(summary.status, 200, "{:?}", summary.body);
    let summarized = summary.body["results"].as_array().unwrap();
    assert!(!summarized.is_empty() && summarized.iter().all(|r| r["code"] == HEART_RATE), "{summarized:?}");

    // bulk export: the constrained token's files hold heart rates only
    let own = export(&server, &study, &hr).await;
    let lines = ndjson_codes(&get_raw(&own.file_url, &hr).await);
    assert_eq!(lines.len() as u64, all, "{lines:?}");
    assert!(lines.iter().all(|code| code == HEART_RATE), "{lines:?}");
    // an export of the same user made without scopes holds blood pressures: the constrained token is refused its
    // status and files (403), and the export stays for the token that made it
    let full = export(&server, &study, &plain).await;
    assert!(ndjson_codes(&get_raw(&full.file_url, &plain).await).iter().any(|code| code == BLOOD_PRESSURE));
    for url in [&full.status_url, &full.file_url] {
        let refused = get_raw(url, &hr).await;
        assert_eq!(refused.0, 403, "{url}: {}", String::from_utf8_lossy(&refused.1));
        assert!(!String::from_utf8_lossy(&refused.1).contains(BLOOD_PRESSURE));
    }
    assert_eq!(job_status(&server, &full.job).await, "completed", "the constrained token withdrew nothing");
    assert_eq!(get_raw(&full.file_url, &plain).await.0, 200);

    // nothing was stored or changed by any of it
    assert_eq!(server.published_rows().await, i64::try_from(2 * all).unwrap());
}

#[tokio::test]
async fn a_code_constrained_patient_token_reads_only_that_code_of_the_patients_own_data() {
    let dir = tempfile::tempdir().unwrap();
    let (server, uploaded) = server_with_two_codes(dir.path()).await;
    // Peter signs in to the admin UI and grants it his heart rates only
    let scope = format!("openid {}", heart_rates_only("patient"));
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let url = authorize_url(&server, "jhe-admin-ui", REDIRECT, &scope, Some("st"), challenge.as_str());
    let back = Browser::at(&server).authorize(url.as_str(), seeded::PETER, true).await;
    let code = back.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()).expect("a code");
    let (status, tokens) = server.exchange_code("jhe-admin-ui", &code, REDIRECT, verifier.secret()).await;
    assert_eq!(status, 200, "{tokens:?}");
    assert_eq!(tokens["scope"], scope);
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let bp_code = blood_pressure_code();

    assert_heart_rates(&server.get("/FHIR/R5/Observation", access).await, PER_CODE, "own search");
    assert_heart_rates(&server.get(&path("/FHIR/R5/Observation", &[("code", &bp_code)]), access).await, 0, "BP");
    let both = format!("{},{bp_code}", heart_rate_code());
    assert_heart_rates(&server.get(&path("/FHIR/R5/Observation", &[("code", &both)]), access).await, PER_CODE, "OR");
    let counted = server.get(&path("/FHIR/R5/Observation", &[("_summary", "count"), ("code", &bp_code)]), access).await;
    assert_eq!(counted.body["total"].as_u64(), Some(0), "{:?}", counted.body);
    let counted = server.get("/FHIR/R5/Observation?_summary=count", access).await;
    assert_eq!(counted.body["total"].as_u64(), Some(PER_CODE), "{:?}", counted.body);
    for id in &uploaded.peters_blood_pressures {
        assert_not_found(&server.get(&format!("/FHIR/R5/Observation/{id}"), access).await, "own BP by id");
    }
    let codes = bundle_codes(&server.get("/FHIR/R5/Observation/$lastn", access).await);
    assert!(!codes.is_empty() && codes.iter().all(|code| code == HEART_RATE), "{codes:?}");
    let stats = server.get("/FHIR/R5/Observation/$stats", access).await;
    assert!(!stats.body.to_string().contains(BLOOD_PRESSURE), "{:?}", stats.body);

    // a refresh cannot widen the constraint, drop it, or add one the server cannot enforce
    let server = &server;
    let narrow = |scope: String| async move {
        form_post(
            server,
            "/o/token/",
            None,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "jhe-admin-ui"),
                ("refresh_token", refresh),
                ("scope", &scope),
            ],
        )
        .await
    };
    for wider in [
        format!("openid patient/Observation.rs?code={bp_code}"),
        format!("openid patient/Observation.rs?code={}|", SYSTEM),
        "openid patient/Observation.rs".to_owned(),
        format!("openid patient/Observation.rs?code={}&foo=bar", heart_rate_code()),
    ] {
        let (status, body) = narrow(wider.clone()).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{wider}: {body:?}");
    }
    // the refused refreshes changed nothing: the refresh token still narrows to reads by id
    let (status, body) = narrow(format!("openid patient/Observation.r?code={}", heart_rate_code())).await;
    assert_eq!(status, 200, "{body:?}");
    let reads = body["access_token"].as_str().unwrap();
    assert_not_found(
        &server.get(&format!("/FHIR/R5/Observation/{}", uploaded.peters_blood_pressures[0]), reads).await,
        "narrowed",
    );
}

#[tokio::test]
async fn constraints_the_server_cannot_enforce_are_invalid_scope_wherever_a_token_is_asked_for() {
    let server = TestServer::start().await.unwrap();
    let mary = server.token(seeded::MARY).await;
    let key = server.practitioner_api_key(&mary, "unenforceable").await;
    let tokens_before = issued_tokens(&server).await;

    // client credentials: refused, naming the constraint; no token issued
    for (bad, named) in [
        ("user/Observation.rs?category=vital-signs", "`category`"),
        ("user/Observation.rs?foo=bar", "`foo`"),
        ("user/Observation.rs?code=a&foo=bar", "`foo`"),
        ("user/Patient.rs?code=x", "Observation scopes only"),
        ("user/*.rs?code=x", "Observation scopes only"),
        ("user/Observation.crs?code=x", "reads and searches only"),
        ("user/Observation.rs?code=a&code=b", "one `code` constraint"),
        ("system/Patient.r?identifier=x", "`identifier`"),
    ] {
        let scope = format!("openid {bad}");
        let (status, body) = form_post(
            &server,
            "/o/token/",
            Some(&format!("Basic {key}")),
            &[("grant_type", "client_credentials"), ("scope", &scope)],
        )
        .await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_scope")), "{bad}: {body:?}");
        let description = body["error_description"].as_str().unwrap_or_default();
        assert!(description.contains(bad) && description.contains(named), "{bad}: {description}");
    }
    assert_eq!(issued_tokens(&server).await, tokens_before, "nothing was issued");
    // the supported constraint is issued as asked
    let supported = heart_rates_only("user");
    assert_eq!(server.client_credentials(&key, Some(&supported)).await["scope"], supported);

    // the authorization endpoint answers the client with invalid_scope before anyone signs in
    let grants_before = granted_codes(&server).await;
    for bad in ["openid user/Observation.rs?category=vital-signs", "openid patient/Consent.r?code=x"] {
        let url = authorize_url(&server, "jhe-admin-ui", REDIRECT, bad, Some("st"), &"a".repeat(43));
        let response = jhe_tests::browser::http().get(url).send().await.unwrap();
        assert_eq!(response.status(), 302);
        let location = reqwest::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap();
        let params: Vec<(String, String)> = location.query_pairs().into_owned().collect();
        assert!(params.contains(&("error".into(), "invalid_scope".into())), "{bad}: {params:?}");
    }

    // an invitation redeemed with one is a 400 `invalid_scope` and stays unredeemed
    let peter = server.patient_id(seeded::PETER).await;
    let (invitation, token) = server.invite(&mary, peter).await;
    for bad in [
        "patient/Observation.c?code=x",
        "patient/Consent.cruds?foo=bar",
        "patient/Patient.r?code=x",
        "patient/Observation.rs?category=vital-signs",
    ] {
        let redeem = path(&format!("/api/v1/invitation/{token}"), &[("scope", bad)]);
        let refused = server.request("POST", &redeem, None, None).await;
        assert_eq!(refused.status, 400, "{bad}: {:?}", refused.body);
        assert!(
            refused.detail().starts_with("invalid_scope") && refused.detail().contains(bad),
            "{}",
            refused.detail()
        );
    }
    let status: String = sqlx::query_scalar("SELECT status FROM patient_invitations WHERE id = $1")
        .bind(invitation)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "issued");
    assert_eq!(granted_codes(&server).await, grants_before, "no code was granted");
}

/// A finished export of `study` with its status and first file's URLs.
struct Export {
    job: String,
    status_url: String,
    file_url: String,
}

async fn export(server: &TestServer, study: &str, token: &str) -> Export {
    let kick_off = format!("{}/FHIR/R5/Group/{study}/$export", server.base);
    let response = reqwest::Client::new()
        .get(&kick_off)
        .bearer_auth(token)
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202, "{:?}", response.text().await);
    let status_url = response.headers()["content-location"].to_str().unwrap().to_owned();
    let started = Instant::now();
    let manifest = loop {
        let (status, body) = get_raw(&status_url, token).await;
        if status != 202 {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            break serde_json::from_slice::<Value>(&body).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the export finishes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let file_url = manifest["output"][0]["url"].as_str().unwrap().to_owned();
    let job = status_url.rsplit('/').next().unwrap().to_owned();
    Export { job, status_url, file_url }
}

/// The codes of an NDJSON export file's Observations.
fn ndjson_codes((status, body): &(u16, bytes::Bytes)) -> Vec<String> {
    assert_eq!(*status, 200, "{}", String::from_utf8_lossy(body));
    String::from_utf8_lossy(body)
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let resource: Value = serde_json::from_str(line).unwrap();
            resource["code"]["coding"][0]["code"].as_str().unwrap().to_owned()
        })
        .collect()
}

async fn job_status(server: &TestServer, job: &str) -> String {
    sqlx::query_scalar("SELECT status FROM export_jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&server.db.pool)
        .await
        .unwrap()
}

/// A GET of an absolute URL (export status and file URLs) with `token`: the status and the raw body.
async fn get_raw(url: &str, token: &str) -> (u16, bytes::Bytes) {
    let response = reqwest::Client::new().get(url).bearer_auth(token).send().await.unwrap();
    (response.status().as_u16(), response.bytes().await.unwrap())
}
