//! Health, unknown routes, authentication errors, paging envelope and the OpenAPI document.

use jhe_tests::{TestDatabase, TestServer, seeded};
use serde_json::json;

#[tokio::test]
async fn health_reports_status_and_version_without_auth() {
    let server = TestServer::start().await.unwrap();
    let answer = server.request("GET", "/health", None, None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["status"], "ok");
    assert!(answer.body["version"].as_str().unwrap().starts_with('v'));
    assert_eq!(answer.headers["x-content-type-options"], "nosniff");
    assert!(answer.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let server = TestServer::start().await.unwrap();
    let token = server.token(seeded::MARY).await;
    let missing = server.get("/api/v1/nothing-here", &token).await;
    assert_eq!(missing.status, 404);
    assert!(missing.detail().contains("/api/v1/nothing-here"));
    // the reference's router has no trailing slashes
    assert_eq!(server.get("/api/v1/patients/", &token).await.status, 404);
    let wrong_method = server.request("PATCH", "/health", None, Some(json!({}))).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.detail(), "Method \"PATCH\" not allowed.");
}

#[tokio::test]
async fn missing_or_invalid_token_is_401_with_www_authenticate() {
    let server = TestServer::start().await.unwrap();
    let without = server.request("GET", "/api/v1/users/profile", None, None).await;
    assert_eq!(without.status, 401);
    assert_eq!(without.detail(), "Authentication credentials were not provided.");
    assert_eq!(without.headers["www-authenticate"], "Bearer realm=\"api\"");
    let invalid = server.request("GET", "/api/v1/users/profile", Some("not-a-token"), None).await;
    assert_eq!(invalid.status, 401);
    assert_eq!(invalid.detail(), "Invalid token.");
}

#[tokio::test]
async fn every_api_route_needs_a_token() {
    let server = TestServer::start().await.unwrap();
    let routes = [
        ("GET", "/api/v1/users"),
        ("GET", "/api/v1/users/profile"),
        ("GET", "/api/v1/users/organizations"),
        ("GET", "/api/v1/users/search_by_email?email=a@b.c"),
        ("GET", "/api/v1/users/10001"),
        ("PATCH", "/api/v1/users/10001"),
        ("GET", "/api/v1/organizations"),
        ("POST", "/api/v1/organizations"),
        ("GET", "/api/v1/organizations/types"),
        ("GET", "/api/v1/organizations/20001"),
        ("DELETE", "/api/v1/organizations/20001"),
        ("GET", "/api/v1/organizations/20001/tree"),
        ("GET", "/api/v1/organizations/20001/users"),
        ("POST", "/api/v1/organizations/20001/user"),
        ("DELETE", "/api/v1/organizations/20001/remove_user"),
        ("GET", "/api/v1/practitioners"),
        ("POST", "/api/v1/practitioners"),
        ("GET", "/api/v1/patients"),
        ("POST", "/api/v1/patients"),
        ("GET", "/api/v1/patients/me"),
        ("GET", "/api/v1/patients/global_lookup?email=a@b.c"),
        ("GET", "/api/v1/patients/40001"),
        ("PATCH", "/api/v1/patients/40001"),
        ("DELETE", "/api/v1/patients/40001"),
        ("PATCH", "/api/v1/patients/40001/global_add_organization"),
    ];
    for (method, path) in routes {
        let answer = server.request(method, path, None, Some(json!({}))).await;
        assert_eq!(answer.status, 401, "{method} {path}");
    }
}

#[tokio::test]
async fn list_links_are_absolute_and_honour_forwarded_headers_of_trusted_proxies() {
    // the tests' requests come from 127.0.0.1: a trusted proxy here
    let server = TestServer::start_configured(TestDatabase::create(true).await.unwrap(), |state| {
        let proxy = jhe_api::login_limits::TrustedProxy::parse("127.0.0.1").unwrap();
        state.login_limits =
            jhe_api::login_limits::LoginLimits::new(jhe_api::login_limits::default_lockout(), 1000, vec![proxy]);
    })
    .await
    .unwrap();
    let token = server.token(seeded::MARY).await;
    let first = server.get("/api/v1/organizations?pageSize=2", &token).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["count"], 9);
    assert_eq!(first.body["results"].as_array().unwrap().len(), 2);
    assert_eq!(first.body["previous"], serde_json::Value::Null);
    let next = first.body["next"].as_str().unwrap().to_owned();
    assert_eq!(next, format!("{}/api/v1/organizations?page=2&page_size=2", server.base));
    let second = server.get(&next, &token).await;
    assert_eq!(second.body["previous"], format!("{}/api/v1/organizations?page_size=2", server.base));
    let third = server.get(second.body["next"].as_str().unwrap(), &token).await;
    assert_eq!(third.body["previous"], format!("{}/api/v1/organizations?page=2&page_size=2", server.base));
    // pages never overlap and cover every row once
    let mut seen = std::collections::BTreeSet::new();
    let mut url = Some(format!("{}/api/v1/organizations?page_size=4", server.base));
    while let Some(page) = url {
        let answer = server.get(&page, &token).await;
        for item in answer.body["results"].as_array().unwrap() {
            assert!(seen.insert(item["id"].as_i64().unwrap()));
        }
        url = answer.body["next"].as_str().map(str::to_owned);
    }
    assert_eq!(seen.len(), 9);

    let proxied = reqwest::Client::new()
        .get(format!("{}/api/v1/organizations?page_size=2", server.base))
        .bearer_auth(&token)
        .header("x-forwarded-host", "jhe.example.org")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(proxied["next"], "https://jhe.example.org/api/v1/organizations?page=2&page_size=2");

    let beyond = server.get("/api/v1/organizations?page=99", &token).await;
    assert_eq!(beyond.status, 404);
    assert_eq!(beyond.detail(), "Invalid page.");
    assert_eq!(server.get("/api/v1/organizations?page=abc", &token).await.status, 404);
    let capped = server.get("/api/v1/organizations?page_size=5000", &token).await;
    assert_eq!(capped.status, 200);
}

#[tokio::test]
async fn openapi_document_and_swagger_ui_are_public() {
    let server = TestServer::start().await.unwrap();
    let schema = server.request("GET", "/api/schema/", None, None).await;
    assert_eq!(schema.status, 200);
    assert!(schema.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = schema.body["paths"].as_object().unwrap();
    for path in ["/api/v1/patients", "/api/v1/organizations/types", "/api/v1/users/profile", "/api/v1/studies"] {
        assert!(paths.contains_key(path), "{path} missing from the OpenAPI document");
    }
    let ui = reqwest::get(format!("{}/api/schema/swagger-ui/", server.base)).await.unwrap();
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.unwrap().contains("SwaggerUIBundle"));
}

#[tokio::test]
async fn malformed_json_bodies_are_400() {
    let server = TestServer::start().await.unwrap();
    let token = server.token(seeded::ADMIN).await;
    let broken = server.raw("POST", "/api/v1/organizations", &token, "application/json", "{\"name\": ").await;
    assert_eq!(broken.status, 400);
    assert!(broken.detail().starts_with("JSON parse error"), "{}", broken.detail());
    let not_object = server.raw("POST", "/api/v1/organizations", &token, "application/json", "[1,2]").await;
    assert_eq!(not_object.status, 400);
    assert_eq!(not_object.detail(), "the request body must be a JSON object");
    let wrong_type = server.raw("POST", "/api/v1/organizations", &token, "text/plain", "name=x").await;
    assert_eq!(wrong_type.status, 400);
    assert!(wrong_type.detail().contains("application/json"));
}
