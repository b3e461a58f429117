//! Documentation served by the binary itself: `GET /openapi.json` and the
//! Swagger UI at `GET /docs`, from assets compiled into the binary (vendored at
//! build time, so it works with no internet).

use std::sync::{Arc, LazyLock};

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use utoipa_swagger_ui::Config;

use crate::error::ApiError;

/// The document, rendered once.
static DOCUMENT: LazyLock<String> = LazyLock::new(crate::openapi::document_json);

/// Swagger UI settings: load our document, keep the token across reloads.
static SWAGGER_CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new(["/openapi.json"])
            .persist_authorization(true)
            .try_it_out_enabled(true),
    )
});

/// Our own index page: the bundled one loads its assets by relative path,
/// which breaks at `/docs` (no trailing slash); this one uses absolute paths.
const INDEX_HTML: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="UTF-8">
  <title>auth-api: API documentation</title>
  <link rel="stylesheet" type="text/css" href="/docs/swagger-ui.css">
  <link rel="stylesheet" type="text/css" href="/docs/index.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js" charset="UTF-8"></script>
  <script src="/docs/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
  <script src="/docs/swagger-initializer.js" charset="UTF-8"></script>
</body>
</html>
"#;

/// The OpenAPI 3.1 document of this API (the same as `openapi/openapi.json`).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

/// Swagger UI: read the API, press "Authorize" with an access token, try calls.
#[utoipa::path(
    get,
    path = "/docs",
    tag = "operations",
    responses((status = 200, description = "The Swagger UI page", content_type = "text/html", body = String))
)]
pub async fn swagger_ui() -> HttpResponse {
    html(INDEX_HTML)
}

fn html(body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        // The page and its scripts are ours and Swagger UI's; nothing else may load.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             frame-ancestors 'none'",
        ))
        .body(body)
}

/// Swagger UI's assets (not in the document).
pub async fn swagger_asset(path: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let file = path.into_inner();
    if file.is_empty() || file == "index.html" {
        return Ok(html(INDEX_HTML));
    }
    match utoipa_swagger_ui::serve(&file, SWAGGER_CONFIG.clone()) {
        Ok(Some(asset)) => Ok(HttpResponse::Ok()
            .content_type(asset.content_type)
            .body(asset.bytes.into_owned())),
        Ok(None) => Err(ApiError::NotFound),
        Err(e) => Err(ApiError::Internal(anyhow::anyhow!(
            "swagger ui asset {file}: {e}"
        ))),
    }
}
