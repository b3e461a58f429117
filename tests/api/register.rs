use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, assert_error, spawn_app, unique_email};

#[tokio::test]
async fn register_creates_a_user_and_answers_201_with_it() {
    let app = spawn_app().await;
    let email = unique_email();
    let response = app.register(&email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().parse::<uuid::Uuid>().is_ok());
    assert_eq!(body["email"], email);
    assert_eq!(body["role"], "user");
    assert!(chrono::DateTime::parse_from_rfc3339(body["created_at"].as_str().unwrap()).is_ok());
    assert!(body.get("password_hash").is_none() && body.get("password").is_none());
    // And the account works.
    app.login_ok(&email, PASSWORD).await;
}

#[tokio::test]
async fn the_email_is_trimmed_and_compared_case_insensitively() {
    let app = spawn_app().await;
    let response = app.register("  Alice.Smith@Example.COM ", PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.json::<Value>().await.unwrap()["email"],
        "alice.smith@example.com"
    );

    let response = app.register("alice.smith@example.com", PASSWORD).await;
    assert_error(response, StatusCode::CONFLICT, "email_taken").await;
    app.login_ok("ALICE.SMITH@example.com", PASSWORD).await;
}

#[tokio::test]
async fn registering_a_taken_email_is_a_409() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let response = app.register(&email, "another long password").await;
    assert_error(response, StatusCode::CONFLICT, "email_taken").await;
    // The first password still works; the second never took.
    app.login_ok(&email, PASSWORD).await;
    assert_eq!(
        app.login(&email, "another long password").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn malformed_emails_are_a_422_invalid_email() {
    let app = spawn_app().await;
    let too_long = format!("{}@example.com", "a".repeat(250));
    for email in [
        "",
        "plainaddress",
        "@example.com",
        "alice@",
        "al ice@example.com",
        too_long.as_str(),
    ] {
        let response = app.register(email, PASSWORD).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
    }
}

#[tokio::test]
async fn weak_passwords_are_a_422_weak_password() {
    let app = spawn_app().await;
    let too_long = "x".repeat(1025);
    for password in [
        "short",
        "1234567",
        "ééééééé",
        "password",
        "Password1",
        "qwertyuiop",
        too_long.as_str(),
    ] {
        let response = app.register(&unique_email(), password).await;
        let body = assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
        // ("password" itself is a word of the message; every other one must not appear.)
        if password != "password" {
            assert!(
                !body.to_string().contains(password),
                "the password is not echoed"
            );
        }
    }
}

#[tokio::test]
async fn passwords_count_code_points_and_have_no_composition_rules() {
    let app = spawn_app().await;
    // Eight code points (16 bytes), all lowercase letters of one script: accepted.
    let response = app.register(&unique_email(), "ééééééééé").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app.register(&unique_email(), &"y".repeat(1024)).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn the_stored_password_is_an_argon2id_hash() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let user = app
        .state
        .store
        .find_user_by_email(&email)
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
    assert!(!user.password_hash.contains(PASSWORD));
}

#[tokio::test]
async fn extra_fields_are_ignored() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/register",
            &json!({"email": unique_email(), "password": PASSWORD, "role": "admin"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.json::<Value>().await.unwrap()["role"], "user");
}
