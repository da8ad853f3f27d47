//! The `jhe` binary as a user runs it: help, configuration, migrate, seed, token create, dev and serve, against a
//! real Postgres.

use jhe_tests::TestDatabase;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn jhe(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jhe"));
    command.args(args).env_remove("DATABASE_URL").env_remove("JHE_CONFIG").env("JHE_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the jhe binary runs")
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

#[test]
fn every_subcommand_has_help() {
    let top = jhe(&["--help"], &[]);
    assert!(top.status.success());
    for command in ["dev", "serve", "process", "migrate", "seed", "token"] {
        assert!(text(&top).contains(command), "{command} missing from --help");
        let help = jhe(&[command, "--help"], &[]);
        assert!(help.status.success(), "{command} --help");
    }
    let serve = text(&jhe(&["serve", "--help"], &[]));
    for variable in ["DATABASE_URL", "JHE_LISTEN", "JHE_DATA_DIR", "JHE_SITE_URL"] {
        assert!(serve.contains(variable), "{variable} missing from serve --help");
    }
    for variable in ["JHE_KAFKA_BROKERS", "JHE_OBJECT_STORE_URL", "JHE_FLUSH_INTERVAL_MS"] {
        assert!(serve.contains(variable), "{variable} missing from serve --help");
    }
    assert!(jhe(&["token", "create", "--help"], &[]).status.success());
    // the processor alone needs the Kafka topic; without it the message says what to do instead
    let process = jhe(&["process"], &[]);
    assert!(!process.status.success());
    assert!(text(&process).contains("JHE_KAFKA_BROKERS"), "{}", text(&process));
    assert!(!jhe(&["frobnicate"], &[]).status.success());
}

#[tokio::test]
async fn migrate_seed_twice_and_token_create() {
    let db = TestDatabase::create(false).await.unwrap();
    let env = [("DATABASE_URL", db.url.as_str())];
    let migrate = jhe(&["migrate"], &env);
    assert!(migrate.status.success(), "{}", text(&migrate));
    let first = jhe(&["seed"], &env);
    assert!(first.status.success(), "{}", text(&first));
    assert!(!text(&first).contains("seed done: 0 new rows"), "{}", text(&first));
    let second = jhe(&["seed"], &env);
    assert!(text(&second).contains("seed done: 0 new rows"), "a second seed changes nothing: {}", text(&second));

    let token = jhe(&["token", "create", "--email", "manager_mary@example.com"], &env);
    assert!(token.status.success(), "{}", text(&token));
    let token = String::from_utf8(token.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 40);
    let caller = jhe_catalog::authenticate(&db.pool, &token).await.unwrap().expect("the printed token works");
    assert_eq!(caller.email, "manager_mary@example.com");

    let unknown = jhe(&["token", "create", "--email", "nobody@example.com"], &env);
    assert!(!unknown.status.success());
    assert!(text(&unknown).contains("nobody@example.com"), "{}", text(&unknown));
}

#[tokio::test]
async fn serve_refuses_an_unmigrated_database() {
    let db = TestDatabase::create(false).await.unwrap();
    sqlx::query("DROP TABLE _sqlx_migrations").execute(&db.pool).await.unwrap();
    let port = free_port().to_string();
    let output = jhe(&["serve", "--listen", &format!("127.0.0.1:{port}")], &[("DATABASE_URL", db.url.as_str())]);
    assert!(!output.status.success());
    assert!(text(&output).contains("run `jhe migrate` first"), "{}", text(&output));
}

#[test]
fn configuration_file_is_validated() {
    let dir = std::env::temp_dir().join(format!("jhe-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:1\"\ncolour = \"red\"\n").unwrap();
    let output = jhe(&["--config", bad.to_str().unwrap(), "migrate"], &[]);
    assert!(!output.status.success());
    assert!(text(&output).contains("unknown field `colour`"), "{}", text(&output));
    let unreachable = dir.join("unreachable.toml");
    std::fs::write(&unreachable, "database_url = \"postgres://postgres@127.0.0.1:1/nowhere\"\n").unwrap();
    let output = jhe(&["--config", unreachable.to_str().unwrap(), "migrate"], &[]);
    assert!(!output.status.success());
    std::fs::remove_dir_all(&dir).ok();
}

/// `jhe dev` on an empty database: creates it, migrates, seeds, serves, and says how to log in. Flags beat the
/// environment, which beats the configuration file.
#[tokio::test]
async fn dev_creates_seeds_and_serves() {
    let template = TestDatabase::create(false).await.unwrap();
    let url = template.url.replace(&template.name, &format!("{}_dev", template.name));
    let port = free_port();
    let config = std::env::temp_dir().join(format!("jhe-dev-{}.toml", std::process::id()));
    std::fs::write(&config, format!("database_url = \"{url}\"\nlisten = \"127.0.0.1:1\"\n")).unwrap();
    let data_dir = std::env::temp_dir().join(format!("jhe-dev-data-{}", std::process::id()));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_jhe"))
        .args(["--config", config.to_str().unwrap(), "dev", "--data-dir", data_dir.to_str().unwrap()])
        .env_remove("DATABASE_URL")
        .env("JHE_LISTEN", format!("127.0.0.1:{port}"))
        .env("JHE_LOG", "warn")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let mut healthy = false;
    for _ in 0..150 {
        if let Ok(response) = http.get(format!("http://127.0.0.1:{port}/health")).send().await {
            healthy = response.status().is_success();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.start_kill().ok();
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(healthy, "jhe dev did not serve on the JHE_LISTEN port:\n{stderr}");
    assert!(stderr.contains("seeded the demo data"), "{stderr}");
    assert!(stderr.contains("Jhe1234!") && stderr.contains(&format!("http://127.0.0.1:{port}")), "{stderr}");
    assert!(data_dir.is_dir(), "the data directory is created");

    let admin = jhe_catalog::connect(&template.url.replace(&template.name, "postgres"), 1).await.unwrap();
    let dev_database = format!("{}_dev", template.name);
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS \"{dev_database}\" WITH (FORCE)")))
        .execute(&admin)
        .await
        .unwrap();
    std::fs::remove_file(&config).ok();
    std::fs::remove_dir_all(&data_dir).ok();
}
