//! The OpenAPI document at `/api/schema/`, generated from the handlers' annotations, and Swagger UI.

use crate::AppState;
use axum::Router;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(info(title = "jhe", description = "JupyterHealth Exchange (jhe): Admin REST API"))]
struct BaseDoc;

pub(crate) fn document() -> utoipa::openapi::OpenApi {
    let mut doc = BaseDoc::openapi();
    doc.info.version = crate::VERSION.to_owned();
    for part in crate::routes::openapi_parts() {
        doc.merge(part);
    }
    doc
}

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/schema/", get(schema))
        .route("/api/schema", get(schema))
        .route("/api/schema/swagger-ui/", get(swagger_ui))
}

async fn schema() -> Response {
    axum::Json(document()).into_response()
}

/// Swagger UI loads its scripts from the public npm CDN, as drf-spectacular does for the reference Exchange.
async fn swagger_ui() -> Html<&'static str> {
    Html(
        r##"<!doctype html>
<html><head><meta charset="utf-8"><title>jhe API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/api/schema/", dom_id: "#swagger-ui"});</script>
</body></html>"##,
    )
}
