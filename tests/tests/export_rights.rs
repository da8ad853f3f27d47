//! Bulk export files live only as long as the rights they were made under, and no longer than their time: a
//! practitioner removed from the study's organization, or a consent revoked for data in the files, withdraws the
//! export (403 / 410, files deleted); an expired export answers 410 once the sweeper has deleted its files.

use std::time::{Duration, Instant};

use jhe_tests::omh::{self, BLOOD_PRESSURE, HEART_RATE};
use jhe_tests::{ALL_ROLES, TestDatabase, TestServer, embedded_pipeline, seeded};
use serde_json::{Value, json};

const OMH: &str = "https://w3id.org/openmhealth";
const BP_HR_STUDY: &str = "Lifespan Study on BP & HR";
const BP_STUDY: &str = "Lifespan Study on BP";

/// An HTTP answer with its raw body.
struct Raw {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }
}

async fn send(method: reqwest::Method, url: &str, token: &str, prefer: bool) -> Raw {
    let mut request = reqwest::Client::new().request(method, url).bearer_auth(token);
    if prefer {
        request = request.header("prefer", "respond-async");
    }
    let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Raw { status, headers, body: response.bytes().await.unwrap() }
}

async fn get(url: &str, token: &str) -> Raw {
    send(reqwest::Method::GET, url, token, false).await
}

fn assert_outcome(answer: &Raw, status: u16, diagnostics: &str) {
    let body = answer.json();
    assert_eq!(answer.status, status, "{body:?}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body:?}");
    let text = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(text.contains(diagnostics), "`{text}` should mention `{diagnostics}`");
}

/// A finished export of `study` by the holder of `token`.
struct Export {
    job: String,
    status_url: String,
    file_url: String,
    /// The completed status answer (the manifest).
    manifest: Raw,
}

async fn export(server: &TestServer, study: i64, query: &str, token: &str) -> Export {
    let kick_off = format!("{}/FHIR/R5/Group/{study}/$export{query}", server.base);
    let answer = send(reqwest::Method::GET, &kick_off, token, true).await;
    assert_eq!(answer.status, 202, "{:?}", answer.json());
    let status_url = answer.header("content-location").to_owned();
    let started = Instant::now();
    let manifest = loop {
        let answer = get(&status_url, token).await;
        if answer.status != 202 {
            assert_eq!(answer.status, 200, "{:?}", answer.json());
            break answer;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the export finishes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let file_url = manifest.json()["output"][0]["url"].as_str().unwrap().to_owned();
    let job = status_url.rsplit('/').next().unwrap().to_owned();
    Export { job, status_url, file_url, manifest }
}

/// The files of an export job under the lake's local directory.
fn files_of_job(dir: &std::path::Path, job: &str) -> Vec<String> {
    std::fs::read_dir(dir.join("lake").join("exports").join(job))
        .map(|entries| entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

async fn job_status(server: &TestServer, job: &str) -> String {
    sqlx::query_scalar("SELECT status FROM export_jobs WHERE id = $1")
        .bind(job)
        .fetch_one(&server.db.pool)
        .await
        .unwrap()
}

/// A server on the embedded pipeline (its sweeper looking for expired exports every 100 ms) holding heart rates and
/// blood pressures of Peter and Pamela; returns it with Peter's patient id.
async fn server_with_observations(dir: &std::path::Path) -> (TestServer, i64) {
    let db = TestDatabase::create(true).await.unwrap();
    let mut config = embedded_pipeline(dir);
    config.query.export_sweep_interval = Duration::from_millis(100);
    let server = TestServer::start_pipeline(db, &config, ALL_ROLES).await.unwrap();
    let peter = server.patient_id(seeded::PETER).await;
    let pamela = server.patient_id(seeded::PAMELA).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let mut total = 0;
    for (email, patient) in [(seeded::PETER, peter), (seeded::PAMELA, pamela)] {
        let mut entries = Vec::new();
        for minute in 0..3 {
            let uuid = format!("{patient}-hr-{minute}");
            let point = omh::heart_rate(&uuid, minute, 60.0 + f64::from(minute));
            entries.push(omh::observation(patient, carex, HEART_RATE, &point, Some(&uuid)));
            let uuid = format!("{patient}-bp-{minute}");
            entries.push(omh::observation(patient, carex, BLOOD_PRESSURE, &blood_pressure(&uuid, minute), Some(&uuid)));
        }
        total += entries.len() as i64;
        let answer = server.post("/FHIR/R5/", &server.token(email).await, omh::bundle(entries)).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
    }
    assert_eq!(server.wait_for_published_rows(total, Duration::from_secs(30)).await, total);
    (server, peter)
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

#[tokio::test]
async fn a_practitioner_removed_from_the_organization_loses_their_exports() {
    jhe_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = server_with_observations(dir.path()).await;
    let megan = server.token(seeded::MEGAN).await;
    let mary = server.token(seeded::MARY).await;
    let bp_hr = server.id_of("studies", "name", BP_HR_STUDY).await;
    let lifespan = server.id_of("organizations", "name", "Lifespan Lab").await;

    let exported = export(&server, bp_hr, "", &megan).await;
    assert_eq!(get(&exported.file_url, &megan).await.status, 200);
    assert!(!files_of_job(dir.path(), &exported.job).is_empty(), "the export wrote its files");

    // the manager removes Megan from the organization that holds the study
    let megan_id = server.id_of("users", "email", seeded::MEGAN).await;
    let remove = format!("/api/v1/organizations/{lifespan}/remove_user");
    assert_eq!(server.delete(&remove, &mary, Some(json!({"jheUserId": megan_id}))).await.status, 204);

    // her export's status and files are refused, and the files are gone from the store
    assert_outcome(&get(&exported.status_url, &megan).await, 403, "Group/");
    assert!(files_of_job(dir.path(), &exported.job).is_empty(), "the files are deleted");
    assert_eq!(job_status(&server, &exported.job).await, "withdrawn");
    assert_outcome(&get(&exported.file_url, &megan).await, 403, "Group/");

    // back in the organization, she finds the export gone rather than its files again
    let add = format!("/api/v1/organizations/{lifespan}/user");
    let added = server.post(&add, &mary, json!({"jheUserId": megan_id, "organizationPartitionerRole": "member"})).await;
    assert!(added.status < 300, "{:?}", added.body);
    assert_outcome(&get(&exported.status_url, &megan).await, 410, "may no longer export its study");
    assert_outcome(&get(&exported.file_url, &megan).await, 410, "withdrawn");
    assert!(files_of_job(dir.path(), &exported.job).is_empty());
}

#[tokio::test]
async fn a_revoked_consent_withdraws_the_exports_holding_that_data() {
    jhe_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, peter) = server_with_observations(dir.path()).await;
    let mary = server.token(seeded::MARY).await;
    let bp_hr = server.id_of("studies", "name", BP_HR_STUDY).await;
    let bp = server.id_of("studies", "name", BP_STUDY).await;

    // one export holds Peter's heart rates; the other (the BP study, where only Pamela consented) does not
    let with_peter = export(&server, bp_hr, "", &mary).await;
    let without_peter = export(&server, bp, "?_outputFormat=parquet", &mary).await;
    assert!(!files_of_job(dir.path(), &with_peter.job).is_empty());
    assert_eq!(get(&with_peter.file_url, &mary).await.status, 200);

    // Peter revokes heart rate for the BP & HR study
    let consent = json!({"studyScopeConsents": [{"studyId": bp_hr,
        "scopeConsents": [{"codingSystem": OMH, "codingCode": HEART_RATE, "consented": false}]}]});
    let peter_token = server.token(seeded::PETER).await;
    assert_eq!(server.patch(&format!("/api/v1/patients/{peter}/consents"), &peter_token, consent).await.status, 200);

    // the export holding his heart rates is gone, files and all
    assert_outcome(&get(&with_peter.file_url, &mary).await, 410, "revoked consent");
    assert!(files_of_job(dir.path(), &with_peter.job).is_empty(), "the files are deleted");
    assert_eq!(job_status(&server, &with_peter.job).await, "withdrawn");
    assert_outcome(&get(&with_peter.status_url, &mary).await, 410, "revoked consent");

    // the export that holds none of his data is still served
    assert_eq!(get(&without_peter.status_url, &mary).await.status, 200);
    let file = get(&without_peter.file_url, &mary).await;
    assert_eq!(file.status, 200);
    assert!(!file.body.is_empty());
    assert!(!files_of_job(dir.path(), &without_peter.job).is_empty());
}

#[tokio::test]
async fn expired_exports_are_swept_and_answer_gone() {
    jhe_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, _) = server_with_observations(dir.path()).await;
    let mary = server.token(seeded::MARY).await;
    let bp_hr = server.id_of("studies", "name", BP_HR_STUDY).await;

    let exported = export(&server, bp_hr, "", &mary).await;
    assert!(!exported.manifest.header("expires").is_empty(), "the manifest says until when the files are served");
    let kept_for: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - finished_at)::float8 FROM export_jobs WHERE id = $1",
    )
    .bind(&exported.job)
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(kept_for, 24.0 * 3600.0, "files are kept a day by default");
    assert!(!files_of_job(dir.path(), &exported.job).is_empty());

    // a day passes
    sqlx::query("UPDATE export_jobs SET expires_at = now() - interval '1 minute' WHERE id = $1")
        .bind(&exported.job)
        .execute(&server.db.pool)
        .await
        .unwrap();

    // the sweeper deletes the files without anyone asking for them
    let started = Instant::now();
    loop {
        let deleted: bool = sqlx::query_scalar(
            "SELECT status = 'expired' AND files_deleted_at IS NOT NULL FROM export_jobs WHERE id = $1",
        )
        .bind(&exported.job)
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
        if deleted {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the sweeper deletes the expired export's files");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(files_of_job(dir.path(), &exported.job).is_empty(), "the files are deleted");
    assert_outcome(&get(&exported.status_url, &mary).await, 410, "expired");
    assert_outcome(&get(&exported.file_url, &mary).await, 410, "expired");
}
