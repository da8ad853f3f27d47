//! The real Python `jupyterhealth-client` (from PyPI) against a real jhe server: its REST methods must work
//! unchanged. `scripts/setup` makes the virtual environment; `JHE_PYTHON` overrides the interpreter.

use jhe_tests::{TestServer, seeded};

fn python() -> String {
    jhe_tests::python().unwrap_or_else(|| "python3".to_owned())
}

#[tokio::test]
async fn jupyterhealth_client_rest_methods_work_unchanged() {
    let server = TestServer::start().await.unwrap();
    let token = server.token(seeded::MARY).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/client_rest.py");
    let output = tokio::process::Command::new(python())
        .arg(script)
        .env("JHE_URL", &server.base)
        .env("JHE_TOKEN", &token)
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {} (run scripts/setup to create the venv): {e}", python()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "client script failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("jupyterhealth-client REST contract: ok"), "{stdout}");
}
