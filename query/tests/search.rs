//! The query engine against a real Postgres and real Parquet files in a temporary directory: consent on read,
//! pruning by the catalog, filters, sort orders and paging (cursor and offset) with exact totals.
//!
//! The server comes from `JHE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`); each test uses a
//! fresh database with a random name and drops it afterwards.

use std::collections::{BTreeSet, HashSet};
use std::ops::Bound;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use jhe_catalog::{Caller, NewParquetFile, publish, stage_files};
use jhe_processor::parquet_file::{encode_parquet, upload};
use jhe_processor::store::observation_object_path;
use jhe_query::fhir_params::parse_search;
use jhe_query::{
    CodeMatch, ObservationFilters, QueryEngine, QueryError, QuerySettings, SearchPage, SearchRequest, TimeCondition,
};
use jhe_schemas::table::ObservationBatchBuilder;
use jhe_schemas::{EffectiveTime, Identifier, MeasuredValues, ObservationRecord, Role};
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use sqlx::{Connection, PgConnection, PgPool};
use url::Url;
use uuid::Uuid;

const OMH: &str = "https://w3id.org/openmhealth";
const HEART_RATE: &str = "omh:heart-rate:2.0";
const BLOOD_PRESSURE: &str = "omh:blood-pressure:4.0";
const STEPS: &str = "omh:step-count:2.0";
/// 2025-03-01T00:00:00Z
const DAY_ONE: i64 = 1_740_787_200_000_000;
const DAY: i64 = 86_400_000_000;
const MINUTE: i64 = 60_000_000;

fn database_url(name: &str) -> Url {
    let base =
        std::env::var("JHE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string());
    let mut url = Url::parse(&base).expect("JHE_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url
}

/// A fresh, migrated database, dropped with the value (also when the test panics).
struct TestDb {
    name: String,
    pool: PgPool,
}

impl TestDb {
    async fn create() -> Self {
        let name = format!("jhe_query_test_{:016x}", rand_suffix());
        let url = database_url(&name);
        assert!(jhe_catalog::create_database_if_missing(url.as_str()).await.expect("create the test database"));
        let pool = jhe_catalog::connect(url.as_str(), 8).await.expect("connect to the test database");
        jhe_catalog::migrate(&pool).await.expect("migrate the test database");
        TestDb { name, pool }
    }
}

fn rand_suffix() -> u64 {
    Uuid::new_v4().as_u64_pair().0
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
            runtime.block_on(async move {
                let mut admin = PgConnection::connect(database_url("postgres").as_str())
                    .await
                    .expect("connect to the `postgres` database");
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                    .execute(&mut admin)
                    .await
                    .expect("drop the test database");
            });
        })
        .join();
    }
}

/// Two organizations; in A patients 1 and 2, in B patient 3. Study S1 (A) requests heart rate and blood pressure,
/// S2 (A) step count, S3 (B) heart rate. Consents: patient 1 — heart rate yes, blood pressure no (S1), steps yes
/// (S2); patient 2 — heart rate and blood pressure yes (S1); patient 3 — heart rate yes (S3).
struct World {
    db: TestDb,
    _lake: tempfile::TempDir,
    store: Arc<dyn ObjectStore>,
    engine: QueryEngine,
    org_a: i64,
    org_b: i64,
    patients: [i64; 3],
    studies: [i64; 3],
    practitioner_a: Caller,
    practitioner_b: Caller,
    superuser: Caller,
    patient_one: Caller,
    next_offset: i64,
}

async fn insert_id(pool: &PgPool, sql: &str, binds: &[&str]) -> i64 {
    let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql.to_owned()));
    for bind in binds {
        query = query.bind(*bind);
    }
    query.fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

impl World {
    async fn new() -> Self {
        let db = TestDb::create().await;
        let pool = &db.pool;
        let org = |name: &'static str| async move {
            insert_id(
                pool,
                "INSERT INTO organizations (name, type, part_of) VALUES ($1, 'prov', 0) RETURNING id",
                &[name],
            )
            .await
        };
        let org_a = org("Org A").await;
        let org_b = org("Org B").await;
        let user = |email: &'static str, kind: &'static str| async move {
            insert_id(pool, "INSERT INTO users (email, user_type) VALUES ($1, $2) RETURNING id", &[email, kind]).await
        };
        let practitioner = |user_id: i64| async move {
            insert_id(pool, &format!("INSERT INTO practitioners (user_id) VALUES ({user_id}) RETURNING id"), &[]).await
        };
        let pa_user = user("pa@example.com", "practitioner").await;
        let pa = practitioner(pa_user).await;
        let pb_user = user("pb@example.com", "practitioner").await;
        let pb = practitioner(pb_user).await;
        let admin_user = user("admin@example.com", "practitioner").await;
        sqlx::query("UPDATE users SET is_superuser = true WHERE id = $1").bind(admin_user).execute(pool).await.unwrap();
        for (practitioner, organization) in [(pa, org_a), (pb, org_b)] {
            sqlx::query("INSERT INTO practitioner_organizations (practitioner_id, organization_id, role) VALUES ($1, $2, 'viewer')")
                .bind(practitioner)
                .bind(organization)
                .execute(pool)
                .await
                .unwrap();
        }
        let p1_user = user("p1@example.com", "patient").await;
        let patient = |user: Option<i64>, organization: i64| async move {
            let id = insert_id(
                pool,
                &format!(
                    "INSERT INTO patients (user_id, name_family) VALUES ({}, 'Doe') RETURNING id",
                    user.map_or("NULL".to_owned(), |u| u.to_string())
                ),
                &[],
            )
            .await;
            sqlx::query("INSERT INTO patient_organizations (patient_id, organization_id) VALUES ($1, $2)")
                .bind(id)
                .bind(organization)
                .execute(pool)
                .await
                .unwrap();
            id
        };
        let p1 = patient(Some(p1_user), org_a).await;
        let p2 = patient(None, org_a).await;
        let p3 = patient(None, org_b).await;
        sqlx::query("INSERT INTO patient_identifiers (patient_id, system, value) VALUES ($1, 'urn:mrn', 'MRN-2')")
            .bind(p2)
            .execute(pool)
            .await
            .unwrap();
        let code = |code: &'static str| async move {
            insert_id(
                pool,
                "INSERT INTO codeable_concepts (coding_system, coding_code, text) VALUES ($1, $2, $2) RETURNING id",
                &[OMH, code],
            )
            .await
        };
        let hr = code(HEART_RATE).await;
        let bp = code(BLOOD_PRESSURE).await;
        let steps = code(STEPS).await;
        let study = |name: &'static str, organization: i64| async move {
            insert_id(
                pool,
                &format!(
                    "INSERT INTO studies (name, description, organization_id) VALUES ($1, '', {organization}) RETURNING id"
                ),
                &[name],
            )
            .await
        };
        let s1 = study("S1", org_a).await;
        let s2 = study("S2", org_a).await;
        let s3 = study("S3", org_b).await;
        for (study, code) in [(s1, hr), (s1, bp), (s2, steps), (s3, hr)] {
            sqlx::query("INSERT INTO study_scope_requests (study_id, scope_code_id) VALUES ($1, $2)")
                .bind(study)
                .bind(code)
                .execute(pool)
                .await
                .unwrap();
        }
        let enrolments = [(s1, p1), (s2, p1), (s1, p2), (s3, p3)];
        for (study, patient) in enrolments {
            sqlx::query("INSERT INTO study_patients (study_id, patient_id) VALUES ($1, $2)")
                .bind(study)
                .bind(patient)
                .execute(pool)
                .await
                .unwrap();
        }
        let consents = [
            (s1, p1, hr, true),
            (s1, p1, bp, false),
            (s2, p1, steps, true),
            (s1, p2, hr, true),
            (s1, p2, bp, true),
            (s3, p3, hr, true),
        ];
        for (study, patient, code, consented) in consents {
            sqlx::query(
                "INSERT INTO study_patient_scope_consents (study_patient_id, scope_code_id, consented)
                 SELECT id, $3, $4 FROM study_patients WHERE study_id = $1 AND patient_id = $2",
            )
            .bind(study)
            .bind(patient)
            .bind(code)
            .bind(consented)
            .execute(pool)
            .await
            .unwrap();
        }

        let lake = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(lake.path()).unwrap());
        let engine =
            QueryEngine::new(pool.clone(), Arc::clone(&store), &QuerySettings { threads: 2, ..Default::default() })
                .unwrap();
        let caller =
            |user_id: i64, practitioner_id: Option<i64>, patient_id: Option<i64>, memberships: Vec<(i64, Role)>| {
                Caller {
                    user_id,
                    email: String::new(),
                    is_superuser: false,
                    user_type: Some(if patient_id.is_some() { "patient" } else { "practitioner" }.to_owned()),
                    practitioner_id,
                    patient_id,
                    memberships,
                    observation_codes: jhe_catalog::CodeLimit::default(),
                }
            };
        World {
            practitioner_a: caller(pa_user, Some(pa), None, vec![(org_a, Role::Viewer)]),
            practitioner_b: caller(pb_user, Some(pb), None, vec![(org_b, Role::Viewer)]),
            superuser: Caller { is_superuser: true, ..caller(admin_user, None, None, Vec::new()) },
            patient_one: caller(p1_user, None, Some(p1), Vec::new()),
            db,
            _lake: lake,
            store,
            engine,
            org_a,
            org_b,
            patients: [p1, p2, p3],
            studies: [s1, s2, s3],
            next_offset: 0,
        }
    }

    /// Writes `records` (one code, one UTC day) as one Parquet file and publishes it.
    async fn publish(&mut self, records: &[ObservationRecord]) {
        let mut builder = ObservationBatchBuilder::with_capacity(records.len());
        for record in records {
            builder.append(record).unwrap();
        }
        let encoded = encode_parquet(&[builder.finish().unwrap()]).unwrap();
        let id = Uuid::now_v7();
        let path = observation_object_path(&Path::default(), &encoded.stats.coding_code, encoded.stats.day, id);
        upload(self.store.as_ref(), &path, encoded.bytes.clone()).await.unwrap();
        self.catalog(encoded.catalog_entry(id, &path, 0)).await;
    }

    /// Catalogues and publishes a file entry (also entries whose object does not exist: a scan that opened one
    /// would fail, so they prove the catalog pruned them).
    async fn catalog(&mut self, entry: NewParquetFile) {
        stage_files(&self.db.pool, std::slice::from_ref(&entry)).await.unwrap();
        let delta = jhe_catalog::PartitionDelta { partition: 0, from: self.next_offset, to: self.next_offset + 1 };
        self.next_offset += 1;
        publish(&self.db.pool, "test", &[delta], &[entry.id]).await.unwrap();
    }

    async fn search(&self, caller: &Caller, params: &[(&str, &str)]) -> Result<SearchPage, QueryError> {
        let params: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let request = parse_search(&params, Utc::now())?;
        self.engine.search(caller, &request).await
    }

    async fn pairs(&self, caller: &Caller, params: &[(&str, &str)]) -> BTreeSet<(i64, String)> {
        let mut params = params.to_vec();
        params.push(("_count", "1000"));
        let page = self.search(caller, &params).await.unwrap();
        assert_eq!(page.total as usize, page.records.len());
        page.records.iter().map(|r| (r.patient_id, r.coding_code.clone())).collect()
    }
}

fn record(id: i64, patient_id: i64, code: &str, start: i64, last_updated: i64) -> ObservationRecord {
    ObservationRecord {
        id,
        patient_id,
        jhe_user_id: None,
        data_source_id: Some(70001),
        coding_system: OMH.to_owned(),
        coding_code: code.to_owned(),
        effective: EffectiveTime { start_micros: start, end_micros: None },
        last_updated_micros: last_updated,
        identifiers: vec![Identifier { system: "urn:test".into(), value: format!("obs-{id}") }],
        omh_json: format!(r#"{{"body":{{"n":{id}}}}}"#),
        values: MeasuredValues { value: Some(id as f64), ..Default::default() },
    }
}

/// Patient 1: 3 days × 30 heart rates, 5 blood pressures and 5 step counts on day one; patient 2: 10 heart rates
/// and 4 blood pressures on day one; patient 3: 6 heart rates on day two. Heart rates of patients 1 and 2 share
/// the day-one file. `last_updated` repeats in runs of 4, so the id has to break ties.
async fn seeded() -> World {
    let mut world = World::new().await;
    let [p1, p2, p3] = world.patients;
    let mut next_id = 1000;
    let mut make = |patient: i64, code: &str, day: i64, count: i64| {
        (0..count)
            .map(|i| {
                next_id += 1;
                record(
                    next_id,
                    patient,
                    code,
                    DAY_ONE + day * DAY + i * 7 * MINUTE,
                    DAY_ONE + 10 * DAY + next_id / 4 * MINUTE,
                )
            })
            .collect::<Vec<_>>()
    };
    let mut day_one_hr = make(p1, HEART_RATE, 0, 30);
    day_one_hr.extend(make(p2, HEART_RATE, 0, 10));
    let day_two_hr = make(p1, HEART_RATE, 1, 30);
    let day_three_hr = make(p1, HEART_RATE, 2, 30);
    let bp_one = make(p1, BLOOD_PRESSURE, 0, 5);
    let mut bp = bp_one;
    bp.extend(make(p2, BLOOD_PRESSURE, 0, 4));
    let steps = make(p1, STEPS, 0, 5);
    let p3_hr = make(p3, HEART_RATE, 1, 6);
    for file in [day_one_hr, day_two_hr, day_three_hr, bp, steps, p3_hr] {
        world.publish(&file).await;
    }
    world
}

fn set(items: &[(i64, &str)]) -> BTreeSet<(i64, String)> {
    items.iter().map(|(p, c)| (*p, (*c).to_owned())).collect()
}

#[tokio::test]
async fn consent_decides_what_each_caller_sees() {
    let world = seeded().await;
    let [p1, p2, p3] = world.patients;

    // practitioner of A: consented pairs of A's patients for A's studies (not patient 1's blood pressure)
    let seen = world.pairs(&world.practitioner_a, &[]).await;
    assert_eq!(seen, set(&[(p1, HEART_RATE), (p1, STEPS), (p2, HEART_RATE), (p2, BLOOD_PRESSURE)]));
    let page = world.search(&world.practitioner_a, &[("_summary", "count")]).await.unwrap();
    assert_eq!(page.total, 90 + 5 + 10 + 4, "the total counts only visible rows");
    assert!(page.records.is_empty());

    // study-scoped: S1 requests heart rate and blood pressure, so patient 1's steps (consented for S2) drop
    let s1 = world.studies[0].to_string();
    let seen = world.pairs(&world.practitioner_a, &[("patient._has:Group:member:_id", &s1)]).await;
    assert_eq!(seen, set(&[(p1, HEART_RATE), (p2, HEART_RATE), (p2, BLOOD_PRESSURE)]));
    let s2 = world.studies[1].to_string();
    let seen = world.pairs(&world.practitioner_a, &[("patient._has:_group:member:_id", &s2)]).await;
    assert_eq!(seen, set(&[(p1, STEPS)]));

    // a patient sees all of their own data, whatever they consented to, and their filters on others are ignored
    let seen = world.pairs(&world.patient_one, &[]).await;
    assert_eq!(seen, set(&[(p1, HEART_RATE), (p1, BLOOD_PRESSURE), (p1, STEPS)]));
    let other = p2.to_string();
    assert_eq!(world.pairs(&world.patient_one, &[("patient", &other)]).await, seen);

    // practitioner of B sees only B's patient; asking for A's patient, study or organization is forbidden
    assert_eq!(world.pairs(&world.practitioner_b, &[]).await, set(&[(p3, HEART_RATE)]));
    let p1_text = p1.to_string();
    for params in [
        [("patient", p1_text.as_str())],
        [("patient._has:Group:member:_id", s1.as_str())],
        [("patient.organization", &world.org_a.to_string())],
        [("patient", "999999")],
    ] {
        let error = world.search(&world.practitioner_b, &params).await.unwrap_err();
        assert!(matches!(error, QueryError::Forbidden(_)), "{params:?}: {error}");
    }
    let org_b = world.org_b.to_string();
    assert_eq!(world.pairs(&world.practitioner_b, &[("patient.organization", &org_b)]).await, set(&[(p3, HEART_RATE)]));

    // a superuser sees every consented pair
    let seen = world.pairs(&world.superuser, &[]).await;
    assert_eq!(seen, set(&[(p1, HEART_RATE), (p1, STEPS), (p2, HEART_RATE), (p2, BLOOD_PRESSURE), (p3, HEART_RATE)]));

    // identifiers resolve to patients (not pre-authorized: an unknown one just matches nothing)
    assert_eq!(
        world.pairs(&world.practitioner_a, &[("identifier", "urn:mrn|MRN-2")]).await,
        set(&[(p2, HEART_RATE), (p2, BLOOD_PRESSURE)])
    );
    assert!(world.pairs(&world.practitioner_a, &[("identifier", "nobody")]).await.is_empty());
}

#[tokio::test]
async fn a_revoked_consent_hides_rows_from_the_next_read() {
    let world = seeded().await;
    let [_, p2, _] = world.patients;
    let before = world.search(&world.practitioner_a, &[("patient", &p2.to_string())]).await.unwrap();
    assert_eq!(before.total, 14);
    sqlx::query(
        "UPDATE study_patient_scope_consents SET consented = false
         WHERE study_patient_id = (SELECT id FROM study_patients WHERE patient_id = $1)
           AND scope_code_id = (SELECT id FROM codeable_concepts WHERE coding_code = $2)",
    )
    .bind(p2)
    .bind(HEART_RATE)
    .execute(&world.db.pool)
    .await
    .unwrap();
    let after = world.search(&world.practitioner_a, &[("patient", &p2.to_string())]).await.unwrap();
    assert_eq!(after.total, 4);
    assert!(after.records.iter().all(|r| r.coding_code == BLOOD_PRESSURE));
    // nothing was deleted: the patient still sees it
    let patient_two = Caller {
        patient_id: Some(p2),
        practitioner_id: None,
        user_type: Some("patient".into()),
        ..world.patient_one.clone()
    };
    assert_eq!(world.search(&patient_two, &[]).await.unwrap().total, 14);
}

#[tokio::test]
async fn cursor_and_offset_pages_agree_in_every_order() {
    let world = seeded().await;
    let p1 = world.patients[0].to_string();
    let hr = format!("{OMH}|{HEART_RATE}");
    for sort in ["", "date", "-date", "_lastUpdated", "-_lastUpdated", "-_id", "date,-_lastUpdated"] {
        let mut base = vec![("patient", p1.as_str()), ("code", hr.as_str()), ("_count", "7")];
        if !sort.is_empty() {
            base.push(("_sort", sort));
        }
        // all rows at once, in the engine's order
        let mut all_params = base.clone();
        all_params.retain(|(k, _)| *k != "_count");
        all_params.push(("_count", "1000"));
        let all = world.search(&world.practitioner_a, &all_params).await.unwrap();
        assert_eq!(all.total, 90);
        assert_eq!(all.records.len(), 90);
        assert!(all.next.is_none());
        let ids: Vec<i64> = all.records.iter().map(|r| r.id).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 90, "{sort}: no duplicates");
        assert_sorted(&all.records, sort);

        // by cursor
        let mut by_cursor = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut params = base.clone();
            let text;
            if let Some(c) = &cursor {
                text = c.clone();
                params.push(("_cursor", text.as_str()));
            }
            let page = world.search(&world.practitioner_a, &params).await.unwrap();
            assert_eq!(page.total, 90, "{sort}: the total is exact on every page");
            assert!(page.records.len() <= 7);
            by_cursor.extend(page.records.iter().map(|r| r.id));
            pages += 1;
            match page.next {
                Some(next) => cursor = Some(next.encode()),
                None => break,
            }
        }
        assert_eq!(pages, 13, "{sort}");
        assert_eq!(by_cursor, ids, "{sort}: cursor pages");

        // by offset
        let mut by_offset = Vec::new();
        for page_number in 1..=13 {
            let mut params = base.clone();
            let number = page_number.to_string();
            params.push(("_page", number.as_str()));
            let page = world.search(&world.practitioner_a, &params).await.unwrap();
            assert_eq!(page.next.is_some(), page_number < 13);
            by_offset.extend(page.records.iter().map(|r| r.id));
        }
        assert_eq!(by_offset, ids, "{sort}: offset pages");
        let mut params = base.clone();
        params.push(("_page", "14"));
        assert!(matches!(world.search(&world.practitioner_a, &params).await, Err(QueryError::InvalidPage)));
    }
}

fn assert_sorted(records: &[ObservationRecord], sort: &str) {
    let key = |r: &ObservationRecord| -> Vec<i64> {
        match sort {
            "" | "-_lastUpdated" => vec![-r.last_updated_micros, -r.id],
            "date" => vec![r.effective.start_micros, r.id],
            "-date" => vec![-r.effective.start_micros, -r.id],
            "_lastUpdated" => vec![r.last_updated_micros, r.id],
            "-_id" => vec![-r.id],
            "date,-_lastUpdated" => vec![r.effective.start_micros, -r.last_updated_micros, -r.id],
            other => panic!("no key for {other}"),
        }
    };
    assert!(records.windows(2).all(|pair| key(&pair[0]) < key(&pair[1])), "sorted by {sort:?}");
}

/// A catalog entry for a Parquet file that does not exist, spanning days `first_day..=last_day` of effective and
/// update times, with `patient_rows`: a query that opened it would fail.
fn phantom_file(
    code: &str,
    first_day: i64,
    last_day: i64,
    patients: (i64, i64),
    patient_rows: Vec<(i64, i64)>,
) -> NewParquetFile {
    let id = Uuid::now_v7();
    let start = DateTime::<Utc>::from_timestamp_micros(DAY_ONE + first_day * DAY).unwrap();
    let end = DateTime::<Utc>::from_timestamp_micros(DAY_ONE + last_day * DAY).unwrap();
    NewParquetFile {
        id,
        object_path: format!("observations/code={code}/date={}/{id}.parquet", start.format("%Y-%m-%d")),
        coding_system: OMH.to_owned(),
        coding_code: code.to_owned(),
        day: start.date_naive(),
        row_count: patient_rows.iter().map(|(_, rows)| rows).sum::<i64>().max(1),
        size_bytes: 1000,
        min_patient_id: patients.0,
        max_patient_id: patients.1,
        min_effective_start: start,
        max_effective_start: end,
        max_effective_end: None,
        min_last_updated: start,
        max_last_updated: end,
        compaction_level: 0,
        patient_rows,
    }
}

/// A page in `date` or `_lastUpdated` order opens only the files that can hold it: the catalog's rows per file
/// and patient say how far back the page can reach, and files wholly beyond that are never read (here: a phantom,
/// which fails any query that opens it).
#[tokio::test]
async fn a_page_opens_only_the_files_its_first_rows_can_come_from() {
    let mut world = seeded().await;
    let p1 = world.patients[0];
    let p1_text = p1.to_string();
    let hr = format!("{OMH}|{HEART_RATE}");
    // 50 heart rates of patient 1 before all the others, in effective and update time
    let old = phantom_file(HEART_RATE, -30, -20, (p1, p1), vec![(p1, 50)]);
    world.catalog(old.clone()).await;
    for sort in ["-_lastUpdated", "-date"] {
        let mut cursor: Option<String> = None;
        let mut seen = 0;
        // 9 pages of 7: the last starts after row 56, while day one's 30 rows (61–90) still lie wholly beyond it
        for page_number in 1..=9 {
            let mut params =
                vec![("patient", p1_text.as_str()), ("code", hr.as_str()), ("_count", "7"), ("_sort", sort)];
            let text;
            if let Some(c) = &cursor {
                text = c.clone();
                params.push(("_cursor", text.as_str()));
            }
            let page = world.search(&world.practitioner_a, &params).await.unwrap_or_else(|error| {
                panic!("{sort}, page {page_number}: {error}");
            });
            assert_eq!(page.total, 140, "{sort}: the catalog counts the phantom's rows too");
            assert_eq!(page.records.len(), 7);
            assert_sorted(&page.records, sort);
            seen += page.records.len();
            cursor = page.next.map(|next| next.encode());
        }
        assert_eq!(seen, 63);
        // offset pages use the same bound
        let page = world
            .search(&world.practitioner_a, &[("patient", &p1_text), ("code", &hr), ("_count", "20"), ("_page", "3")])
            .await
            .unwrap();
        assert_eq!(page.records.len(), 20);
    }
    // a page that needs more rows than the newer files hold must read the older one
    let error = world
        .search(&world.practitioner_a, &[("patient", &p1_text), ("code", &hr), ("_count", "91")])
        .await
        .unwrap_err();
    assert!(!matches!(error, QueryError::InvalidPage), "{error}");

    // ascending: a phantom after everything else is never reached by the first pages
    sqlx::query("DELETE FROM parquet_files WHERE id = $1").bind(old.id).execute(&world.db.pool).await.unwrap();
    world.catalog(phantom_file(HEART_RATE, 20, 30, (p1, p1), vec![(p1, 50)])).await;
    for sort in ["_lastUpdated", "date"] {
        let page = world
            .search(&world.practitioner_a, &[("patient", &p1_text), ("code", &hr), ("_count", "60"), ("_sort", sort)])
            .await
            .unwrap();
        assert_eq!(page.records.len(), 60);
        assert_sorted(&page.records, sort);
    }
}

#[tokio::test]
async fn filters_select_rows_and_the_catalog_prunes_files() {
    let mut world = seeded().await;
    let [p1, p2, p3] = world.patients;
    // Catalog entries whose objects do not exist: opening one fails the query, so every search below that
    // succeeds proves the catalog pruned it (by day, by patient range, by code). Their patient rows are not
    // known: a count over these codes has to read, and fails if it opens a phantom.
    let phantom = |code: &str, day: i64, patients: (i64, i64)| phantom_file(code, day, day, patients, Vec::new());
    let phantoms = [
        phantom(HEART_RATE, 20, (p1, p3)),           // a later day
        phantom(HEART_RATE, 1, (p3 + 1, p3 + 5)),    // other patients
        phantom("omh:body-weight:2.0", 0, (p1, p3)), // a code nobody consented to
    ];
    for entry in &phantoms {
        world.catalog(entry.clone()).await;
    }

    let p1_text = p1.to_string();
    let hr = format!("{OMH}|{HEART_RATE}");
    let day_two = NaiveDate::from_ymd_opt(2025, 3, 2).unwrap().to_string();
    let page = world
        .search(&world.practitioner_a, &[("patient", &p1_text), ("code", &hr), ("date", &day_two), ("_count", "100")])
        .await
        .unwrap();
    assert_eq!(page.total, 30);
    assert!(page.records.iter().all(|r| r.effective.start_micros / DAY == (DAY_ONE + DAY) / DAY));

    let page = world
        .search(&world.practitioner_a, &[("code", &hr), ("date", "ge2025-03-02"), ("date", "lt2025-03-03T00:00:00Z")])
        .await
        .unwrap();
    assert_eq!(page.total, 30, "patient 3's day-two heart rates are B's");

    // instants: the first heart rate of day two is at 00:00, the next at 00:07
    let page = world
        .search(
            &world.practitioner_a,
            &[
                ("patient", &p1_text),
                ("code", &hr),
                ("date", "gt2025-03-02T00:00:00Z"),
                ("date", "le2025-03-02T00:07:00Z"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(page.total, 1);

    // the searches below cannot prune by day: forget the phantoms
    let phantom_ids: Vec<Uuid> = phantoms.iter().map(|entry| entry.id).collect();
    sqlx::query("DELETE FROM parquet_files WHERE id = ANY($1)")
        .bind(&phantom_ids)
        .execute(&world.db.pool)
        .await
        .unwrap();
    let page = world
        .search(
            &world.practitioner_a,
            &[("patient", &p1_text), ("date", "ne2025-03-01"), ("code", &hr), ("_count", "1")],
        )
        .await
        .unwrap();
    assert_eq!(page.total, 60);

    // codes: any system, several, a system alone
    let both = format!("{HEART_RATE},{OMH}|{STEPS}");
    assert_eq!(world.search(&world.practitioner_a, &[("patient", &p1_text), ("code", &both)]).await.unwrap().total, 95);
    let system_only = format!("{OMH}|");
    assert_eq!(
        world.search(&world.practitioner_a, &[("patient", &p1_text), ("code", &system_only)]).await.unwrap().total,
        95
    );
    assert_eq!(world.search(&world.practitioner_a, &[("code", "https://example.org|x")]).await.unwrap().total, 0);

    // patients: several, and the superuser reaching patient 3's day-two file next to the phantom of day two
    let two = format!("{p1},{p2}");
    assert_eq!(world.search(&world.practitioner_a, &[("patient", &two), ("code", &hr)]).await.unwrap().total, 100);
    let p3_text = p3.to_string();
    assert_eq!(world.search(&world.superuser, &[("patient", &p3_text)]).await.unwrap().total, 6);

    // _lastUpdated and _id
    let page = world.search(&world.practitioner_a, &[("_count", "1")]).await.unwrap();
    let newest = &page.records[0];
    let at = DateTime::<Utc>::from_timestamp_micros(newest.last_updated_micros).unwrap().to_rfc3339();
    let page = world.search(&world.practitioner_a, &[("_lastUpdated", &format!("ge{at}"))]).await.unwrap();
    assert!(page.total >= 1 && page.total <= 4, "{}", page.total);
    let id = newest.id.to_string();
    let page = world.search(&world.practitioner_a, &[("_id", &id)]).await.unwrap();
    assert_eq!(page.records.iter().map(|r| r.id).collect::<Vec<_>>(), vec![newest.id]);
    assert_eq!(world.search(&world.practitioner_a, &[("_id", "not-an-id")]).await.unwrap().total, 0);
    assert_eq!(world.search(&world.practitioner_a, &[("status", "cancelled")]).await.unwrap().total, 0);

    // the records come back whole
    assert_eq!(newest.identifiers, vec![Identifier { system: "urn:test".into(), value: format!("obs-{}", newest.id) }]);
    assert_eq!(newest.omh_json, format!(r#"{{"body":{{"n":{}}}}}"#, newest.id));
    assert_eq!(newest.data_source_id, Some(70001));
}

#[tokio::test]
async fn reads_by_id_respect_consent() {
    let world = seeded().await;
    let [p1, p2, _] = world.patients;
    let all = world.search(&world.patient_one, &[("_count", "1000")]).await.unwrap();
    let blood_pressure = all.records.iter().find(|r| r.coding_code == BLOOD_PRESSURE && r.patient_id == p1).unwrap();
    let heart_rate = all.records.iter().find(|r| r.coding_code == HEART_RATE).unwrap();
    assert_eq!(
        world.engine.observation(&world.patient_one, blood_pressure.id).await.unwrap().as_ref(),
        Some(blood_pressure)
    );
    assert_eq!(
        world.engine.observation(&world.practitioner_a, heart_rate.id).await.unwrap().as_ref(),
        Some(heart_rate)
    );
    assert_eq!(
        world.engine.observation(&world.practitioner_a, blood_pressure.id).await.unwrap(),
        None,
        "not consented"
    );
    assert_eq!(
        world.engine.observation(&world.practitioner_b, heart_rate.id).await.unwrap(),
        None,
        "another organization"
    );
    assert_eq!(world.engine.observation(&world.practitioner_a, 1).await.unwrap(), None, "no such id");

    // a typed request with every kind of filter, built without FHIR parameters
    let request = SearchRequest {
        filters: ObservationFilters {
            patients: Some(BTreeSet::from([p2])),
            codes: vec![vec![CodeMatch { system: Some(OMH.into()), code: Some(BLOOD_PRESSURE.into()) }]],
            effective: vec![TimeCondition {
                lower: Bound::Included(DAY_ONE),
                upper: Bound::Excluded(DAY_ONE + DAY),
                negated: false,
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let page = world.engine.search(&world.practitioner_a, &request).await.unwrap();
    assert_eq!(page.total, 4);
}
