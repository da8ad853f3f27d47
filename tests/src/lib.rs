//! Test support: a real jhe server (in this process, on an ephemeral port) over a fresh, seeded Postgres
//! database of its own, and a small HTTP client.

use anyhow::Context;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::net::SocketAddr;

pub mod browser;

/// The Postgres server tests use; `JHE_TEST_DATABASE_URL` overrides it (any database name in it is replaced).
pub fn server_url() -> String {
    std::env::var("JHE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn with_database(server: &str, database: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[authority_end..].find('/') {
        Some(slash) => &base[..authority_end + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A fresh database with migrations applied and the demo seed loaded; dropped when the value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pub name: String,
    pub pool: PgPool,
}

impl TestDatabase {
    /// A fresh database: migrated, and with the demo seed when `seed` is set (cloned from a template database
    /// that is built once per migration/seed version, so each test pays for a copy, not for a seed).
    pub async fn create(seed: bool) -> anyhow::Result<Self> {
        let name = format!("jhe_test_{}", Alphanumeric.sample_string(&mut rand::rng(), 10).to_lowercase());
        let url = with_database(&server_url(), &name);
        if seed {
            let template = seeded_template().await?;
            clone_database(&template, &name).await?;
        } else {
            jhe_catalog::create_database_if_missing(&url).await.context("creating the test database")?;
        }
        let pool = jhe_catalog::connect(&url, 8).await?;
        jhe_catalog::migrate(&pool).await?;
        Ok(TestDatabase { url, name, pool })
    }

    /// Keeps this database after the process ends, for benchmarks: it is renamed `jhe_bench_…` (clean-ups of stale
    /// `jhe_test_…` databases leave it alone). Returns its URL and a pool on it.
    pub async fn keep(self) -> anyhow::Result<(String, PgPool)> {
        self.pool.close().await;
        let kept = self.name.replacen("jhe_test_", "jhe_bench_", 1);
        let admin = admin_pool().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{}\" RENAME TO \"{kept}\"", self.name)))
            .execute(&admin)
            .await
            .context("renaming the bench database")?;
        admin.close().await;
        let url = with_database(&server_url(), &kept);
        drop(self); // its drop finds nothing left to remove
        let pool = jhe_catalog::connect(&url, 8).await?;
        Ok((url, pool))
    }
}

/// What the template's content depends on: the migrations and the seed code.
fn template_name() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for migration in jhe_catalog::MIGRATOR.iter() {
        migration.checksum.hash(&mut hasher);
    }
    include_str!("../../schemas/catalog/src/seed.rs").hash(&mut hasher);
    format!("jhe_template_{:016x}", hasher.finish())
}

async fn admin_pool() -> anyhow::Result<PgPool> {
    Ok(jhe_catalog::connect(&with_database(&server_url(), "postgres"), 2).await?)
}

/// Builds the seeded template once (other test processes wait on an advisory lock) and returns its name.
async fn seeded_template() -> anyhow::Result<String> {
    let name = template_name();
    let admin = admin_pool().await?;
    let mut lock = admin.acquire().await?;
    sqlx::query("SELECT pg_advisory_lock(4242)").execute(&mut *lock).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&name)
        .fetch_one(&mut *lock)
        .await?;
    let built = if exists { Ok(()) } else { build_template(&name).await };
    sqlx::query("SELECT pg_advisory_unlock(4242)").execute(&mut *lock).await?;
    built.map(|()| name)
}

async fn build_template(name: &str) -> anyhow::Result<()> {
    let building = format!("{name}_building");
    let admin = admin_pool().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{building}\" WITH (FORCE)")))
        .execute(&admin)
        .await?;
    let url = with_database(&server_url(), &building);
    jhe_catalog::create_database_if_missing(&url).await?;
    let pool = jhe_catalog::connect(&url, 2).await?;
    jhe_catalog::migrate(&pool).await?;
    jhe_catalog::seed_demo(&pool, "http://127.0.0.1:8000").await?;
    pool.close().await;
    // rename only when complete, so a half-built template is never cloned
    sqlx::query(sqlx::AssertSqlSafe(format!("ALTER DATABASE \"{building}\" RENAME TO \"{name}\"")))
        .execute(&admin)
        .await?;
    Ok(())
}

async fn clone_database(template: &str, name: &str) -> anyhow::Result<()> {
    let admin = admin_pool().await?;
    let mut attempt = 0;
    loop {
        let created = sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"")))
            .execute(&admin)
            .await;
        match created {
            Ok(_) => return Ok(()),
            // another session may briefly hold the template (e.g. a concurrent clone)
            Err(e) if attempt < 50 && e.to_string().contains("being accessed by other users") => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).context("cloning the seeded template database"),
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin_url = with_database(&server_url(), "postgres");
        let name = self.name.clone();
        // Drop cannot await; a short-lived runtime on its own thread removes the database.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(pool) = jhe_catalog::connect(&admin_url, 1).await {
                    let _ =
                        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
                            .execute(&pool)
                            .await;
                }
            });
        })
        .join();
    }
}

/// The jhe server under test.
#[derive(Debug)]
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub db: TestDatabase,
    http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    /// Stops the data plane (processor, cache follower) of a pipeline server.
    pipeline_stop: Option<tokio_util::sync::CancellationToken>,
    pipeline_tasks: Option<tokio::task::JoinSet<anyhow::Result<()>>>,
    /// The ingest service of a pipeline server (tests wait on its control-plane cache).
    pub ingest: Option<jhe_ingest::Ingestor>,
}

/// An HTTP answer: status and JSON body (`Value::Null` when empty or not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Answer {
    /// The `detail` message of an error body.
    pub fn detail(&self) -> String {
        self.body.get("detail").and_then(Value::as_str).unwrap_or_default().to_owned()
    }
}

impl TestServer {
    /// A server over a freshly seeded database.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(TestDatabase::create(true).await?).await
    }

    pub async fn start_with(db: TestDatabase) -> anyhow::Result<Self> {
        Self::start_state(db, None, None, None, |_| {}).await
    }

    /// A server over `db` whose state `configure` adjusts before it serves (e.g. a mail outbox, lower limits):
    /// settings a test needs of its own server, where environment variables would be shared by parallel tests.
    pub async fn start_configured(
        db: TestDatabase,
        configure: impl FnOnce(&mut jhe_api::AppState),
    ) -> anyhow::Result<Self> {
        Self::start_state(db, None, None, None, configure).await
    }

    /// A server that also takes uploads and runs the data-plane `roles` of `config` in this process.
    pub async fn start_pipeline(
        db: TestDatabase,
        config: &jhe_api::pipeline::PipelineConfig,
        roles: jhe_api::pipeline::Roles,
    ) -> anyhow::Result<Self> {
        let stop = tokio_util::sync::CancellationToken::new();
        let mut plane = jhe_api::pipeline::start(config, db.pool.clone(), roles, stop.clone()).await?;
        let ingest = plane.ingest.take();
        let query = plane.query.take();
        let mut server = Self::start_state(db, ingest, query, Some(stop), |_| {}).await?;
        server.pipeline_tasks = Some(plane.tasks);
        Ok(server)
    }

    /// Stops the data plane (the processor publishes what it holds) and waits for it.
    pub async fn stop_pipeline(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.pipeline_stop.take() {
            stop.cancel();
        }
        if let Some(mut tasks) = self.pipeline_tasks.take() {
            while let Some(joined) = tasks.join_next().await {
                joined??;
            }
        }
        Ok(())
    }

    async fn start_state(
        db: TestDatabase,
        ingest: Option<jhe_ingest::Ingestor>,
        query: Option<jhe_query::QueryEngine>,
        pipeline_stop: Option<tokio_util::sync::CancellationToken>,
        configure: impl FnOnce(&mut jhe_api::AppState),
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut state = jhe_api::AppState::new(db.pool.clone());
        state.ingest = ingest.clone();
        state.query = query;
        configure(&mut state);
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = jhe_api::serve(listener, state, async {
                let _ = stopped.await;
            })
            .await;
        });
        Ok(TestServer {
            addr,
            base: format!("http://{addr}"),
            db,
            http: reqwest::Client::new(),
            shutdown: Some(shutdown),
            pipeline_stop,
            pipeline_tasks: None,
            ingest,
        })
    }

    /// A bearer token for the seeded (or created) user with this email.
    pub async fn token(&self, email: &str) -> String {
        jhe_catalog::create_token_for_email(&self.db.pool, email, chrono_days(1))
            .await
            .unwrap_or_else(|e| panic!("token for {email}: {e}"))
            .token
    }

    /// A new practitioner API key (§5.5) of the practitioner holding `practitioner_token`: the Basic credentials of
    /// a client-credentials client.
    pub async fn practitioner_api_key(&self, practitioner_token: &str, label: &str) -> String {
        let created = self.post("/api/v1/practitioner_clients", practitioner_token, json!({ "label": label })).await;
        assert_eq!(created.status, 201, "creating API key {label}: {:?}", created.body);
        created.body["key"].as_str().expect("the new key").to_owned()
    }

    pub async fn request(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Answer {
        let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{}", self.base, path) };
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("test uses a valid method");
        let mut request = self.http.request(method, &url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, body, headers }
    }

    pub async fn get(&self, path: &str, token: &str) -> Answer {
        self.request("GET", path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request("POST", path, Some(token), Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request("PATCH", path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> Answer {
        self.request("PUT", path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str, body: Option<Value>) -> Answer {
        self.request("DELETE", path, Some(token), body).await
    }

    /// A request with raw bytes (NDJSON, invalid JSON, …) and the answer's body as text.
    pub async fn send_bytes(&self, path: &str, token: &str, content_type: &str, body: Vec<u8>) -> Answer {
        let response = self
            .http
            .post(format!("{}{}", self.base, path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or(Value::Null);
        Answer { status, body, headers }
    }

    /// A raw request with a body that is not JSON.
    pub async fn raw(&self, method: &str, path: &str, token: &str, content_type: &str, body: &str) -> Answer {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("test uses a valid method");
        let response = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body.to_owned())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = serde_json::from_slice(&response.bytes().await.unwrap_or_default()).unwrap_or(Value::Null);
        Answer { status, body, headers }
    }

    /// The id of the seeded row with this value in a column (e.g. an organization by name).
    pub async fn id_of(&self, table: &str, column: &str, value: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM {table} WHERE {column} = $1 ORDER BY id LIMIT 1"
        )))
        .bind(value)
        .fetch_one(&self.db.pool)
        .await
        .unwrap_or_else(|e| panic!("{table}.{column} = {value}: {e}"))
    }

    /// The patient id of a seeded patient account.
    pub async fn patient_id(&self, email: &str) -> i64 {
        let user = self.id_of("users", "email", email).await;
        self.id_of("patients", "user_id::text", &user.to_string()).await
    }

    /// Rows in published Parquet files, per the catalog.
    pub async fn published_rows(&self) -> i64 {
        sqlx::query_scalar("SELECT COALESCE(SUM(row_count), 0)::int8 FROM parquet_files WHERE state = 'published'")
            .fetch_one(&self.db.pool)
            .await
            .expect("counting published rows")
    }

    /// Waits until the catalog holds at least `rows` published rows, or `timeout` passed; returns the count seen last.
    pub async fn wait_for_published_rows(&self, rows: i64, timeout: std::time::Duration) -> i64 {
        let started = std::time::Instant::now();
        loop {
            let published = self.published_rows().await;
            if published >= rows || started.elapsed() > timeout {
                return published;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(stop) = self.pipeline_stop.take() {
            stop.cancel();
        }
    }
}

/// Sends the server's logs to the test output when `JHE_TEST_LOG` is set (a filter, e.g. `info,sqlx=warn`).
pub fn init_logs() {
    if let Ok(filter) = std::env::var("JHE_TEST_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// The test Python interpreter (`JHE_PYTHON`, else the venv `scripts/setup --tests` makes), if it exists.
pub fn python() -> Option<String> {
    let path = std::env::var("JHE_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
        format!("{home}/.cache/jhe-venv/bin/python")
    });
    std::path::Path::new(&path).exists().then_some(path)
}

/// A pipeline on the embedded log and a local object store under `dir`, flushing every 100 ms.
pub fn embedded_pipeline(dir: &std::path::Path) -> jhe_api::pipeline::PipelineConfig {
    jhe_api::pipeline::PipelineConfig {
        kafka_brokers: None,
        kafka_properties: Vec::new(),
        object_store_url: None,
        data_dir: dir.to_path_buf(),
        topic: "jhe.observations".to_owned(),
        partitions: 2,
        group: "jhe-processor".to_owned(),
        flush_interval: std::time::Duration::from_millis(100),
        flush_max_records: 100_000,
        schemas_dir: None,
        query: jhe_query::QuerySettings::default(),
    }
}

/// Everything (ingest and processor) in this process.
pub const ALL_ROLES: jhe_api::pipeline::Roles = jhe_api::pipeline::Roles { ingest: true, processor: true };

/// Builders of Open mHealth data points and the FHIR Observations that carry them.
pub mod omh {
    use base64::Engine;
    use serde_json::{Value, json};

    pub const SYSTEM: &str = "https://w3id.org/openmhealth";
    pub const HEART_RATE: &str = "omh:heart-rate:2.0";
    pub const BLOOD_PRESSURE: &str = "omh:blood-pressure:4.0";

    /// A valid heart-rate 2.0 data point at `minute` minutes after 2025-01-01T00:00:00-08:00.
    pub fn heart_rate(uuid: &str, minute: u32, bpm: f64) -> Value {
        let (hour, minute) = (minute / 60 % 24, minute % 60);
        json!({
            "header": {
                "uuid": uuid,
                "schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"},
                "source_creation_date_time": "2025-01-01T01:04:01-08:00",
                "modality": "sensed"
            },
            "body": {
                "heart_rate": {"value": bpm, "unit": "beats/min"},
                "effective_time_frame": {"date_time": format!("2025-01-01T{hour:02}:{minute:02}:00-08:00")}
            }
        })
    }

    /// A FHIR Observation carrying `data_point` as base64 JSON.
    pub fn observation(patient: i64, device: i64, code: &str, data_point: &Value, identifier: Option<&str>) -> Value {
        let data = base64::engine::general_purpose::STANDARD.encode(data_point.to_string());
        let mut observation = json!({
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": SYSTEM, "code": code}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "device": {"reference": format!("Device/{device}")},
            "valueAttachment": {"contentType": "application/json", "data": data}
        });
        if let Some(value) = identifier {
            observation["identifier"] = json!([{"system": "https://example.org/test-uuid", "value": value}]);
        }
        observation
    }

    /// A batch Bundle of `observations`.
    pub fn bundle(observations: Vec<Value>) -> Value {
        let entry: Vec<Value> = observations
            .into_iter()
            .map(|resource| json!({"resource": resource, "request": {"method": "POST", "url": "Observation"}}))
            .collect();
        json!({"resourceType": "Bundle", "type": "batch", "entry": entry})
    }
}

fn chrono_days(days: i64) -> chrono::Duration {
    chrono::Duration::days(days)
}

/// Seeded accounts (jhe-compat seed): every password is `Jhe1234!`.
pub mod seeded {
    pub const ADMIN: &str = "admin@example.com";
    pub const MARY: &str = "manager_mary@example.com";
    pub const MEGAN: &str = "member_megan@example.com";
    pub const VICTOR: &str = "viewer_victor@example.com";
    pub const TOM: &str = "three_org_tom@example.com";
    pub const MARK: &str = "manager_mark@example.com";
    pub const PETER: &str = "ll_patient_peter@example.com";
    pub const PAMELA: &str = "ll_patient_pamela@example.com";
    pub const PERCY: &str = "npl_patient_percy@example.com";
    pub const PAUL: &str = "ccl_patient_paul@example.com";
    pub const PAT: &str = "ccl_cardio_patient_pat@example.com";
}
