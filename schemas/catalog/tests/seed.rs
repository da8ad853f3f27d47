//! The demo seed against a real Postgres: ids in the reference's ranges, and a second run changes nothing.
//! The server comes from `JHE_TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432`); each run uses
//! a fresh database with a random name and drops it afterwards.

use jhe_catalog::{SEED_PASSWORD, connect, create_database_if_missing, migrate, seed_demo};
use sqlx::{Connection, PgConnection, PgPool};
use url::Url;

const SITE_URL: &str = "http://127.0.0.1:8000";

/// Every table the seed writes to (and the ones it must leave alone).
const TABLES: [&str; 23] = [
    "users",
    "organizations",
    "practitioners",
    "practitioner_organizations",
    "patients",
    "patient_organizations",
    "patient_identifiers",
    "codeable_concepts",
    "studies",
    "study_patients",
    "study_scope_requests",
    "study_patient_scope_consents",
    "data_sources",
    "data_source_supported_scopes",
    "study_data_sources",
    "oauth_clients",
    "patient_apps",
    "practitioner_clients",
    "study_clients",
    "client_data_sources",
    "patient_invitations",
    "settings",
    "access_tokens",
];

/// The URL of database `name` on the test server.
fn database_url(name: &str) -> Url {
    let base =
        std::env::var("JHE_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string());
    let mut url = Url::parse(&base).expect("JHE_TEST_DATABASE_URL is a URL");
    url.set_path(&format!("/{name}"));
    url
}

#[tokio::test]
async fn seed_is_complete_deterministic_and_idempotent() {
    let name = format!("jhe_seed_test_{:016x}", rand::random::<u64>());
    let url = database_url(&name);
    assert!(create_database_if_missing(url.as_str()).await.expect("create the test database"));
    let pool = connect(url.as_str(), 4).await.expect("connect to the test database");
    let outcome = check_seed(&pool).await;
    pool.close().await;
    drop_database(&name).await;
    if let Err(error) = outcome {
        panic!("{error}");
    }
}

async fn drop_database(name: &str) {
    let mut admin =
        PgConnection::connect(database_url("postgres").as_str()).await.expect("connect to the `postgres` database");
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")))
        .execute(&mut admin)
        .await
        .expect("drop the test database");
}

async fn check_seed(pool: &PgPool) -> Result<(), String> {
    migrate(pool).await.map_err(|e| format!("migrate: {e}"))?;

    let first = seed_demo(pool, SITE_URL).await.map_err(|e| format!("first seed: {e}"))?;
    let after_first = snapshot(pool).await?;
    let second = seed_demo(pool, SITE_URL).await.map_err(|e| format!("second seed: {e}"))?;
    let after_second = snapshot(pool).await?;

    assert!(first.total() > 0, "the first run inserted nothing: {first:?}");
    assert_eq!(first.users, 11);
    assert_eq!(first.practitioners, 6);
    assert_eq!(first.patients, 5);
    assert_eq!(first.codes, 16);
    assert_eq!(first.organizations, 8);
    assert_eq!(first.studies, 5);
    assert_eq!(first.data_sources, 6);
    assert_eq!(first.oauth_clients, 4);
    assert_eq!(first.patient_apps, 3);
    assert_eq!(first.study_patients, 8);
    assert_eq!(first.consents, 12);
    assert_eq!(second.total(), 0, "the second run inserted rows: {second:?}");
    // same rows, same contents (passwords, settings and consent times included)
    assert_eq!(after_first, after_second);

    check_ids(pool).await
}

/// (table, row count, digest of all rows) for every table.
async fn snapshot(pool: &PgPool) -> Result<Vec<(String, i64, String)>, String> {
    let mut rows = Vec::new();
    for table in TABLES {
        let sql =
            format!("SELECT count(*), coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t");
        let (count, digest): (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_one(pool)
            .await
            .map_err(|e| format!("snapshot of `{table}`: {e}"))?;
        rows.push((table.to_string(), count, digest));
    }
    Ok(rows)
}

async fn scalar(pool: &PgPool, sql: &'static str) -> Result<i64, String> {
    sqlx::query_scalar(sql).fetch_one(pool).await.map_err(|e| format!("`{sql}`: {e}"))
}

async fn check_ids(pool: &PgPool) -> Result<(), String> {
    let expectations: [(&'static str, i64); 18] = [
        ("SELECT id FROM users WHERE email = 'admin@example.com'", 10001),
        ("SELECT id FROM users WHERE email = 'ccl_cardio_patient_pat@example.com'", 10011),
        ("SELECT count(*) FROM users WHERE is_superuser", 1),
        ("SELECT id FROM codeable_concepts WHERE coding_code = 'omh:blood-glucose:4.0'", 50001),
        ("SELECT count(*) FROM codeable_concepts", 16),
        ("SELECT count(*) FROM organizations", 9),
        ("SELECT count(*) FROM organizations WHERE id = 0 AND name = 'ROOT'", 1),
        ("SELECT id FROM organizations WHERE name = 'Lifespan Lab'", 20003),
        ("SELECT count(*) FROM studies", 5),
        ("SELECT min(id) FROM studies", 30001),
        ("SELECT min(id) FROM patients", 40001),
        ("SELECT min(id) FROM data_sources", 70001),
        ("SELECT min(id) FROM practitioners", 80001),
        // admin is a practitioner too
        (
            "SELECT p.id FROM practitioners p JOIN users u ON u.id = p.user_id
             WHERE u.email = 'admin@example.com' AND u.user_type = 'practitioner'",
            80001,
        ),
        // three_org_tom: viewer, member and manager in three organizations
        (
            "SELECT count(DISTINCT po.role) FROM practitioner_organizations po
             JOIN practitioners p ON p.id = po.practitioner_id JOIN users u ON u.id = p.user_id
             WHERE u.email = 'three_org_tom@example.com'",
            3,
        ),
        // peter has consented to the 3 scopes of "BP & HR" and nothing of "BP" (pending)
        (
            "SELECT count(*) FROM study_patient_scope_consents c
             JOIN study_patients sp ON sp.id = c.study_patient_id JOIN patients p ON p.id = sp.patient_id
             JOIN users u ON u.id = p.user_id WHERE u.email = 'll_patient_peter@example.com'",
            3,
        ),
        (
            "SELECT count(*) FROM patient_identifiers i JOIN patients p ON p.id = i.patient_id
             WHERE p.id = 40001 AND (i.system, i.value) IN
             (('https://openwearables.io/ns/patient-id', 'abc123'), ('urn:oid:1.2.3.4', 'E1234'))",
            2,
        ),
        (
            "SELECT count(*) FROM data_source_supported_scopes s JOIN data_sources d ON d.id = s.data_source_id
             JOIN codeable_concepts c ON c.id = s.scope_code_id
             WHERE d.name = 'Questionnaire' AND c.coding_code = 'QuestionnaireResponse'",
            1,
        ),
    ];
    for (sql, expected) in expectations {
        let actual = scalar(pool, sql).await?;
        if actual != expected {
            return Err(format!("`{sql}` gave {actual}, expected {expected}"));
        }
    }

    let site: Option<String> = sqlx::query_scalar("SELECT value_string FROM settings WHERE key = 'site.url'")
        .fetch_one(pool)
        .await
        .map_err(|e| format!("site.url: {e}"))?;
    assert_eq!(site.as_deref(), Some(SITE_URL));
    let redirect: String = sqlx::query_scalar("SELECT redirect_uris FROM oauth_clients WHERE name = 'JHE Admin UI'")
        .fetch_one(pool)
        .await
        .map_err(|e| format!("admin ui client: {e}"))?;
    assert_eq!(redirect, format!("{SITE_URL}/auth/callback"));

    let hash: String = sqlx::query_scalar("SELECT password FROM users WHERE email = 'manager_mary@example.com'")
        .fetch_one(pool)
        .await
        .map_err(|e| format!("password: {e}"))?;
    assert!(jhe_catalog::passwords::verify_password(SEED_PASSWORD, &hash));
    Ok(())
}
