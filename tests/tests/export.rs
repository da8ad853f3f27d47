//! FHIR Bulk Data export (`Group/{study}/$export`) on the embedded pipeline: kick-off, status, manifest and files,
//! holding exactly the observations of the study the caller may see, as NDJSON and as Parquet.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use jhe_tests::omh::{self, BLOOD_PRESSURE, HEART_RATE};
use jhe_tests::{ALL_ROLES, TestDatabase, TestServer, embedded_pipeline, seeded};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Value, json};

const OMH: &str = "https://w3id.org/openmhealth";
const BP_HR_STUDY: &str = "Lifespan Study on BP & HR";
const BP_STUDY: &str = "Lifespan Study on BP";

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

/// Kicks off an export and returns the status URL.
async fn kick_off(server: &TestServer, study: i64, query: &str, token: &str) -> String {
    let url = format!("{}/FHIR/R5/Group/{study}/$export{query}", server.base);
    let answer = send(reqwest::Method::GET, &url, token, true).await;
    assert_eq!(answer.status, 202, "{:?}", answer.json());
    let location = answer.header("content-location").to_owned();
    assert!(location.contains("/FHIR/R5/$export-status/"), "{location}");
    location
}

/// Polls until the job is done and returns the manifest.
async fn manifest(status_url: &str, token: &str) -> Value {
    let started = Instant::now();
    loop {
        let answer = send(reqwest::Method::GET, status_url, token, false).await;
        if answer.status != 202 {
            assert_eq!(answer.status, 200, "{:?}", answer.json());
            return answer.json();
        }
        assert!(!answer.header("x-progress").is_empty(), "a running job says how far it is");
        assert!(started.elapsed() < Duration::from_secs(60), "the export finishes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The only output file of a manifest: its URL and count.
fn only_output(manifest: &Value) -> (String, u64) {
    let output = manifest["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{manifest}");
    assert_eq!(output[0]["type"], "Observation");
    (output[0]["url"].as_str().unwrap().to_owned(), output[0]["count"].as_u64().unwrap())
}

async fn ndjson(url: &str, token: &str) -> Vec<Value> {
    let answer = send(reqwest::Method::GET, url, token, false).await;
    assert_eq!(answer.status, 200, "{:?}", answer.json());
    assert_eq!(answer.header("content-type"), "application/fhir+ndjson");
    std::str::from_utf8(&answer.body)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect()
}

/// (patient reference, code) → observations.
fn counts(resources: &[Value]) -> BTreeMap<(String, String), usize> {
    let mut counts = BTreeMap::new();
    for resource in resources {
        assert_eq!(resource["resourceType"], "Observation");
        let key = (
            resource["subject"]["reference"].as_str().unwrap().to_owned(),
            resource["code"]["coding"][0]["code"].as_str().unwrap().to_owned(),
        );
        *counts.entry(key).or_default() += 1;
    }
    counts
}

fn assert_outcome(answer: &Raw, status: u16, diagnostics: &str) {
    let body = answer.json();
    assert_eq!(answer.status, status, "{body:?}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body:?}");
    let text = body["issue"][0]["diagnostics"].as_str().unwrap_or_default();
    assert!(text.contains(diagnostics), "`{text}` should mention `{diagnostics}`");
}

/// A server on the embedded pipeline holding Peter's 8 heart rates and 3 blood pressures and Pamela's 5 and 4;
/// returns it with the two patient ids. `rows_per_file` sets the export part size.
async fn server_with_observations(dir: &std::path::Path, rows_per_file: Option<u64>) -> (TestServer, i64, i64) {
    let db = TestDatabase::create(true).await.unwrap();
    let mut config = embedded_pipeline(dir);
    if let Some(rows) = rows_per_file {
        config.query.export_rows_per_file = rows;
    }
    let server = TestServer::start_pipeline(db, &config, ALL_ROLES).await.unwrap();
    let peter = server.patient_id(seeded::PETER).await;
    let pamela = server.patient_id(seeded::PAMELA).await;
    let carex = server.id_of("data_sources", "name", "CareX").await;
    let mut total = 0;
    for (email, patient, heart_rates, pressures) in [(seeded::PETER, peter, 8, 3), (seeded::PAMELA, pamela, 5, 4)] {
        let mut entries: Vec<Value> = (0..heart_rates)
            .map(|minute| {
                let uuid = format!("{patient}-hr-{minute}");
                let point = omh::heart_rate(&uuid, minute, 60.0 + f64::from(minute));
                omh::observation(patient, carex, HEART_RATE, &point, Some(&uuid))
            })
            .collect();
        entries.extend((0..pressures).map(|minute| {
            let uuid = format!("{patient}-bp-{minute}");
            omh::observation(patient, carex, BLOOD_PRESSURE, &blood_pressure(&uuid, minute), Some(&uuid))
        }));
        total += entries.len() as i64;
        let answer = server.post("/FHIR/R5/", &server.token(email).await, omh::bundle(entries)).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert!(answer.body["entry"].as_array().unwrap().iter().all(|e| e["response"]["status"] == "201 Created"));
    }
    assert_eq!(server.wait_for_published_rows(total, Duration::from_secs(30)).await, total);
    (server, peter, pamela)
}

#[tokio::test]
async fn group_export_holds_the_consented_observations_of_the_study() {
    jhe_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, peter, pamela) = server_with_observations(dir.path(), None).await;

    let mary = server.token(seeded::MARY).await;
    let megan = server.token(seeded::MEGAN).await;
    let bp_hr = server.id_of("studies", "name", BP_HR_STUDY).await;
    let bp = server.id_of("studies", "name", BP_STUDY).await;

    // the Group read of fhir_read still answers next to `Group/{id}/$export`
    let group = server.get(&format!("/FHIR/R5/Group/{bp_hr}"), &mary).await;
    assert_eq!(group.status, 200, "{:?}", group.body);
    assert_eq!(group.body["resourceType"], "Group");

    // kick-off mistakes are 400 OperationOutcomes; another organization's study is 403
    let export_url = format!("{}/FHIR/R5/Group/{bp_hr}/$export", server.base);
    assert_outcome(&send(reqwest::Method::GET, &export_url, &mary, false).await, 400, "respond-async");
    let patients = format!("{export_url}?_type=Patient");
    assert_outcome(&send(reqwest::Method::GET, &patients, &mary, true).await, 400, "supported types: Observation");
    let csv = format!("{export_url}?_outputFormat=text/csv");
    assert_outcome(&send(reqwest::Method::GET, &csv, &mary, true).await, 400, "_outputFormat");
    let mark = server.token(seeded::MARK).await;
    assert_outcome(&send(reqwest::Method::GET, &export_url, &mark, true).await, 403, "Group/");

    // NDJSON of the study: every observation, rendered as the search renders it
    let status_url = kick_off(&server, bp_hr, "?_type=Observation", &mary).await;
    let manifest_body = manifest(&status_url, &mary).await;
    assert_eq!(manifest_body["requiresAccessToken"], true);
    assert_eq!(manifest_body["error"], json!([]));
    assert!(manifest_body["request"].as_str().unwrap().ends_with(&format!("/Group/{bp_hr}/$export?_type=Observation")));
    assert!(manifest_body["transactionTime"].as_str().is_some_and(|t| t.starts_with("20")));
    let (file_url, count) = only_output(&manifest_body);
    let exported = ndjson(&file_url, &mary).await;
    assert_eq!(exported.len() as u64, count);
    let expected: BTreeMap<(String, String), usize> = BTreeMap::from([
        ((format!("Patient/{peter}"), HEART_RATE.to_owned()), 8),
        ((format!("Patient/{peter}"), BLOOD_PRESSURE.to_owned()), 3),
        ((format!("Patient/{pamela}"), HEART_RATE.to_owned()), 5),
        ((format!("Patient/{pamela}"), BLOOD_PRESSURE.to_owned()), 4),
    ]);
    assert_eq!(counts(&exported), expected);
    let search =
        server.get(&format!("/FHIR/R5/Observation?patient._has:Group:member:_id={bp_hr}&_count=1000"), &mary).await;
    assert_eq!(search.status, 200, "{:?}", search.body);
    let searched: HashMap<String, Value> = search.body["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["resource"]["id"].as_str().unwrap().to_owned(), entry["resource"].clone()))
        .collect();
    assert_eq!(searched.len(), exported.len());
    for resource in &exported {
        assert_eq!(Some(resource), searched.get(resource["id"].as_str().unwrap()), "exported as searched");
    }

    // the job and its files are the starter's only
    let megan_status = send(reqwest::Method::GET, &status_url, &megan, false).await;
    assert_outcome(&megan_status, 404, "export job");
    assert_eq!(send(reqwest::Method::GET, &file_url, &megan, false).await.status, 404);
    assert!(file_url.ends_with("/Observation.1.ndjson"), "{file_url}");
    let unknown = file_url.replace("Observation.1.ndjson", "Patient.1.ndjson");
    assert_eq!(send(reqwest::Method::GET, &unknown, &mary, false).await.status, 404);

    // Parquet of the BP study: only Pamela's blood pressure (Peter's is pending there; heart rate is not requested)
    let parquet_status = kick_off(&server, bp, "?_outputFormat=application/vnd.apache.parquet", &mary).await;
    let (parquet_url, parquet_count) = only_output(&manifest(&parquet_status, &mary).await);
    assert_eq!(parquet_count, 4);
    let file = send(reqwest::Method::GET, &parquet_url, &mary, false).await;
    assert_eq!(file.status, 200);
    assert_eq!(file.header("content-type"), "application/vnd.apache.parquet");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file.body.clone()).unwrap().build().unwrap();
    let mut rows = 0;
    for batch in reader {
        let batch = batch.unwrap();
        rows += batch.num_rows();
        let patients = batch.column_by_name("patient_id").unwrap().as_primitive::<Int64Type>();
        assert!(patients.iter().all(|id| id == Some(pamela)));
        let codes = batch.column_by_name("coding_code").unwrap();
        let codes = arrow::compute::cast(codes, &arrow::datatypes::DataType::Utf8).unwrap();
        assert!(codes.as_string::<i32>().iter().all(|code| code == Some(BLOOD_PRESSURE)));
    }
    assert_eq!(rows, 4);

    // `_since` after every upload: an empty file
    let since_status = kick_off(&server, bp_hr, "?_since=2999-01-01T00:00:00Z", &mary).await;
    let (since_url, since_count) = only_output(&manifest(&since_status, &mary).await);
    assert_eq!(since_count, 0);
    assert!(ndjson(&since_url, &mary).await.is_empty());

    // Peter revokes heart rate for the study: the next export leaves it out
    let peter_token = server.token(seeded::PETER).await;
    let consent = json!({"studyScopeConsents": [{"studyId": bp_hr,
        "scopeConsents": [{"codingSystem": OMH, "codingCode": HEART_RATE, "consented": false}]}]});
    assert_eq!(server.patch(&format!("/api/v1/patients/{peter}/consents"), &peter_token, consent).await.status, 200);
    let revoked_status = kick_off(&server, bp_hr, "", &mary).await;
    let (revoked_url, revoked_count) = only_output(&manifest(&revoked_status, &mary).await);
    let revoked = ndjson(&revoked_url, &mary).await;
    assert_eq!(revoked.len() as u64, revoked_count);
    let mut without = expected.clone();
    without.remove(&(format!("Patient/{peter}"), HEART_RATE.to_owned()));
    assert_eq!(counts(&revoked), without);

    // POST takes the parameters as a FHIR Parameters resource
    let post = |parameters: Value| {
        reqwest::Client::new()
            .post(&export_url)
            .bearer_auth(&mary)
            .header("prefer", "respond-async")
            .json(&json!({"resourceType": "Parameters", "parameter": parameters}))
            .send()
    };
    let refused = post(json!([{"name": "_type", "valueString": "Patient"}])).await.unwrap();
    assert_eq!(refused.status().as_u16(), 400);
    let accepted = post(json!([{"name": "_outputFormat", "valueString": "application/fhir+ndjson"}])).await.unwrap();
    assert_eq!(accepted.status().as_u16(), 202);
    let posted_status = accepted.headers()["content-location"].to_str().unwrap().to_owned();
    assert_eq!(only_output(&manifest(&posted_status, &mary).await).1, revoked_count);

    // DELETE withdraws a job: 202, then 404 for its status and files
    assert_eq!(send(reqwest::Method::DELETE, &status_url, &megan, false).await.status, 404);
    assert_eq!(send(reqwest::Method::DELETE, &status_url, &mary, false).await.status, 202);
    assert_eq!(send(reqwest::Method::GET, &status_url, &mary, false).await.status, 404);
    assert_eq!(send(reqwest::Method::GET, &file_url, &mary, false).await.status, 404);

    // a job whose process is gone (its heartbeat stopped) reads as failed: a server failure, 500; one whose
    // process beats (another replica) is still running
    let mary_id = server.id_of("users", "email", seeded::MARY).await;
    for (id, heartbeat_age) in [("orphan", "5 minutes"), ("elsewhere", "1 second")] {
        sqlx::query(
            "INSERT INTO export_jobs (id, user_id, study_id, request, output_format, status, instance,
                                      transaction_time, heartbeat_at)
             VALUES ($1, $2, $3, 'x', 'ndjson', 'running', 'another-process', now(), now() - $4::interval)",
        )
        .bind(id)
        .bind(mary_id)
        .bind(bp_hr)
        .bind(heartbeat_age)
        .execute(&server.db.pool)
        .await
        .unwrap();
    }
    let orphan = format!("{}/FHIR/R5/$export-status/orphan", server.base);
    assert_outcome(&send(reqwest::Method::GET, &orphan, &mary, false).await, 500, "server stopped");
    let elsewhere = format!("{}/FHIR/R5/$export-status/elsewhere", server.base);
    assert_eq!(send(reqwest::Method::GET, &elsewhere, &mary, false).await.status, 202);
}

/// The files of an export under the lake's local directory.
fn files_of_job(dir: &std::path::Path, status_url: &str) -> Vec<String> {
    let job = status_url.rsplit('/').next().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.join("lake").join("exports").join(job))
        .map(|entries| entries.map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn large_exports_are_split_into_parts_and_deleting_a_job_deletes_its_files() {
    jhe_tests::init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (server, _, _) = server_with_observations(dir.path(), Some(6)).await;
    let mary = server.token(seeded::MARY).await;
    let bp_hr = server.id_of("studies", "name", BP_HR_STUDY).await;

    // 20 observations in parts of 6: 6 + 6 + 6 + 2, in the order of a search (patient, time, id)
    for (format, extension) in [("", "ndjson"), ("?_outputFormat=parquet", "parquet")] {
        let status_url = kick_off(&server, bp_hr, format, &mary).await;
        let manifest_body = manifest(&status_url, &mary).await;
        let output = manifest_body["output"].as_array().unwrap();
        let names: Vec<&str> =
            output.iter().map(|file| file["url"].as_str().unwrap().rsplit('/').next().unwrap()).collect();
        let expected: Vec<String> = (1..=4).map(|part| format!("Observation.{part}.{extension}")).collect();
        assert_eq!(names, expected, "{manifest_body}");
        let counts: Vec<u64> = output.iter().map(|file| file["count"].as_u64().unwrap()).collect();
        assert_eq!(counts, [6, 6, 6, 2]);
        assert_eq!(files_of_job(dir.path(), &status_url), expected);
        if extension == "ndjson" {
            let mut all = Vec::new();
            for file in output {
                let part = ndjson(file["url"].as_str().unwrap(), &mary).await;
                assert_eq!(part.len() as u64, file["count"].as_u64().unwrap());
                all.extend(part);
            }
            let search = server
                .get(&format!("/FHIR/R5/Observation?patient._has:Group:member:_id={bp_hr}&_count=1000"), &mary)
                .await;
            let searched: Vec<&Value> =
                search.body["entry"].as_array().unwrap().iter().map(|entry| &entry["resource"]["id"]).collect();
            let exported: Vec<&Value> = all.iter().map(|resource| &resource["id"]).collect();
            assert_eq!(exported, searched, "the parts hold the search's rows in the search's order");
        } else {
            let file = send(reqwest::Method::GET, output[3]["url"].as_str().unwrap(), &mary, false).await;
            assert_eq!(file.header("content-length"), file.body.len().to_string());
            let reader = ParquetRecordBatchReaderBuilder::try_new(file.body.clone()).unwrap().build().unwrap();
            assert_eq!(reader.map(|batch| batch.unwrap().num_rows()).sum::<usize>(), 2);
        }

        // DELETE of a finished job removes its files from the store
        assert_eq!(send(reqwest::Method::DELETE, &status_url, &mary, false).await.status, 202);
        assert!(files_of_job(dir.path(), &status_url).is_empty(), "the files are deleted");
    }

    // DELETE right after the kick-off: whether it stops the running export or removes a finished one's files,
    // nothing is left behind
    let status_url = kick_off(&server, bp_hr, "", &mary).await;
    assert_eq!(send(reqwest::Method::DELETE, &status_url, &mary, false).await.status, 202);
    assert_eq!(send(reqwest::Method::GET, &status_url, &mary, false).await.status, 404);
    let started = Instant::now();
    while !files_of_job(dir.path(), &status_url).is_empty() {
        assert!(started.elapsed() < Duration::from_secs(15), "a cancelled export's files are deleted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // a server restarted after its process died marks the jobs it left running failed
    let mary_id = server.id_of("users", "email", seeded::MARY).await;
    sqlx::query(
        "INSERT INTO export_jobs (id, user_id, study_id, request, output_format, status, instance, transaction_time,
                                  heartbeat_at)
         VALUES ('left-running', $1, $2, 'x', 'ndjson', 'running', 'gone', now(), now() - interval '1 hour')",
    )
    .bind(mary_id)
    .bind(bp_hr)
    .execute(&server.db.pool)
    .await
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let restarted = format!("http://{}/health", listener.local_addr().unwrap());
    tokio::spawn(jhe_api::serve(listener, jhe_api::AppState::new(server.db.pool.clone()), std::future::pending()));
    // the sweep runs before the server answers its first request
    assert_eq!(reqwest::get(&restarted).await.unwrap().status(), 200);
    let status: String = sqlx::query_scalar("SELECT status FROM export_jobs WHERE id = 'left-running'")
        .fetch_one(&server.db.pool)
        .await
        .unwrap();
    assert_eq!(status, "failed");
}
