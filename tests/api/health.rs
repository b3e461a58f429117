use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn healthz_answers_ok_while_the_process_runs() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        serde_json::json!({"status": "ok"})
    );
}

#[tokio::test]
async fn readyz_answers_ok_when_the_database_answers() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn readyz_answers_503_when_the_database_is_gone() {
    let app = spawn_app().await;
    // Closing the pool is what an unreachable database looks like to a handler.
    app.state.store.close().await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert!(response.headers().contains_key("retry-after"));
    crate::helpers::assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
}

#[tokio::test]
async fn login_and_refresh_answer_503_not_500_when_the_database_is_gone() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    app.state.store.close().await;

    let response = app.login(&login.email, crate::helpers::PASSWORD).await;
    crate::helpers::assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let response = app.refresh(&login.refresh_token).await;
    crate::helpers::assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    // The Bearer check needs no database and keeps working.
    assert_eq!(app.me(&login.access_token).await.status(), StatusCode::OK);
}
