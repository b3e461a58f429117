//! The OpenAPI document and the Swagger UI, served by the binary.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app};

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let served = response.text().await.unwrap();
    assert!(
        served == COMMITTED,
        "openapi/openapi.json is stale: regenerate it with \
         `cargo run --release -- openapi > openapi/openapi.json` and review the diff"
    );
}

#[test]
fn the_document_is_openapi_3_1_and_covers_the_contract() {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let bearer = [
        ("post", "/logout-all"),
        ("get", "/me"),
        ("get", "/sessions"),
        ("delete", "/sessions/{id}"),
        ("post", "/password"),
        ("post", "/admin/users/{id}/revoke-sessions"),
    ];
    let open = [
        ("post", "/register"),
        ("post", "/login"),
        ("post", "/refresh"),
        ("post", "/logout"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/openapi.json"),
        ("get", "/docs"),
    ];
    for (method, path) in bearer {
        let op = &doc["paths"][path][method];
        assert_eq!(
            op["security"],
            serde_json::json!([{"bearer": []}]),
            "{method} {path}"
        );
        assert!(
            op["responses"]["401"].is_object(),
            "{method} {path} documents 401"
        );
    }
    for (method, path) in open {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is documented");
        assert!(
            op.get("security").is_none(),
            "{method} {path} needs no token"
        );
    }
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http");
    assert_eq!(scheme["scheme"], "bearer");
    assert_eq!(scheme["bearerFormat"], "JWT");
    // Error answers are shared responses, each with an enum of its codes.
    let login_errors = &doc["paths"]["/login"]["post"]["responses"];
    for (status, response) in [
        ("400", "InvalidRequest"),
        ("401", "InvalidCredentials"),
        ("413", "PayloadTooLarge"),
        ("415", "UnsupportedMediaType"),
        ("429", "TooManyRequests"),
        ("500", "InternalError"),
        ("503", "Unavailable"),
        ("default", "Error"),
    ] {
        assert_eq!(
            login_errors[status]["$ref"],
            format!("#/components/responses/{response}"),
            "{status}"
        );
    }
    let responses = &doc["components"]["responses"];
    assert_eq!(
        doc["components"]["schemas"]["InvalidCredentialsError"]["properties"]["error"]["enum"],
        serde_json::json!(["invalid_credentials"])
    );
    assert!(responses["MissingTokenOrInvalidToken"]["headers"]["WWW-Authenticate"].is_object());
    assert!(
        doc["paths"]["/metrics"].is_null(),
        "operators' route, not apps'"
    );
    assert_eq!(doc["servers"][0]["url"], "/");
    assert!(responses["TooManyRequests"]["headers"]["Retry-After"].is_object());
}

#[tokio::test]
async fn swagger_ui_is_served_by_the_binary_with_its_assets() {
    let app = spawn_app().await;
    for path in ["/docs", "/docs/", "/docs/index.html"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(response.text().await.unwrap().contains("swagger-ui"));
    }
    for (asset, kind) in [
        ("/docs/swagger-ui-bundle.js", "javascript"),
        ("/docs/swagger-ui-standalone-preset.js", "javascript"),
        ("/docs/swagger-ui.css", "css"),
        ("/docs/index.css", "css"),
    ] {
        let response = app.client.get(app.url(asset)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .contains(kind),
            "{asset}"
        );
    }
    let init = app
        .client
        .get(app.url("/docs/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert!(
        init.text().await.unwrap().contains("/openapi.json"),
        "the UI loads our document"
    );

    let missing = app
        .client
        .get(app.url("/docs/no-such-file.js"))
        .send()
        .await
        .unwrap();
    assert_error(missing, StatusCode::NOT_FOUND, "not_found").await;
}
