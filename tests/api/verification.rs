//! Email verification: the mail queued at registration, `POST
//! /email/verification`, `POST /email/verify` by token or by code, the
//! `email_verified` claim and field, REQUIRE_EMAIL_VERIFICATION.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    PASSWORD, assert_error, decode_claims, spawn_app, spawn_app_with, unique_email, wrong_code,
};

#[tokio::test]
async fn registration_queues_a_verification_mail_with_a_link_and_a_code() {
    let app = spawn_app_with(&[
        ("APP_NAME", "Acme Notes"),
        ("APP_LINK_URL", "https://acme.example/open"),
    ])
    .await;
    let email = unique_email();
    let response = app.register(&email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["email_verified"], false);

    let mails = app.mails_to(&email).await;
    assert_eq!(mails.len(), 1, "one mail, queued with the user row");
    let mail = app.last_mail(&email).await;
    assert!(mail.subject.contains("Acme Notes"), "{}", mail.subject);
    assert!(mail.body.contains("Acme Notes"));
    assert!(
        mail.body.contains(&format!(
            "https://acme.example/open?purpose=verify&token={}",
            mail.token
        )),
        "{}",
        mail.body
    );
    assert!(mail.token.len() >= 22, "at least 128 bits");
    assert!(
        mail.token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(mail.code.len(), 6);
    assert!(mail.code.bytes().all(|b| b.is_ascii_digit()));
}

#[tokio::test]
async fn a_refused_registration_queues_no_mail() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let response = app.register(&email, PASSWORD).await;
    assert_error(response, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(
        app.mails_to(&email).await.len(),
        1,
        "only the first registration's"
    );
}

#[tokio::test]
async fn the_token_verifies_the_email_and_new_tokens_say_so() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let before = app.login_ok(&email, PASSWORD).await;
    assert_eq!(decode_claims(&before.access_token)["email_verified"], false);
    assert_eq!(
        app.account(&before.access_token).await["email_verified"],
        false
    );

    let mail = app.last_mail(&email).await;
    let response = app
        .post_json("/email/verify", &json!({"token": mail.token}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_eq!(
        app.account(&before.access_token).await["email_verified"],
        true
    );
    // A refresh reads the flag from the database, like the role.
    let refreshed = app.refresh_ok(&before).await;
    assert_eq!(
        decode_claims(&refreshed.access_token)["email_verified"],
        true
    );
    let login = app.login_ok(&email, PASSWORD).await;
    assert_eq!(decode_claims(&login.access_token)["email_verified"], true);
}

#[tokio::test]
async fn the_email_and_code_verify_too() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let mail = app.last_mail(&email).await;
    let response = app
        .post_json(
            "/email/verify",
            &json!({"email": email.to_uppercase(), "code": mail.code}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let login = app.login_ok(&email, PASSWORD).await;
    assert_eq!(decode_claims(&login.access_token)["email_verified"], true);
}

#[tokio::test]
async fn a_token_or_code_works_once() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let mail = app.last_mail(&email).await;
    let first = app
        .post_json("/email/verify", &json!({"token": mail.token}))
        .await;
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    for body in [
        json!({"token": mail.token}),
        json!({"email": email, "code": mail.code}),
    ] {
        let again = app.post_json("/email/verify", &body).await;
        assert_error(again, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
}

#[tokio::test]
async fn an_expired_token_or_code_is_refused() {
    let app = spawn_app_with(&[("MAIL_CODE_TTL", "600")]).await;
    let email = app.new_user().await;
    let mail = app.last_mail(&email).await;
    app.advance(601);
    let response = app
        .post_json("/email/verify", &json!({"token": mail.token}))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    let response = app
        .post_json("/email/verify", &json!({"email": email, "code": mail.code}))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
}

#[tokio::test]
async fn a_newer_mail_supersedes_the_older_one() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let login = app.login_ok(&email, PASSWORD).await;
    let old = app.last_mail(&email).await;
    let response = app
        .post_with_token("/email/verification", &login.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let new = app.last_mail(&email).await;
    assert_ne!(old.token, new.token);

    let response = app
        .post_json("/email/verify", &json!({"token": old.token}))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    let response = app
        .post_json("/email/verify", &json!({"token": new.token}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_fifth_wrong_code_kills_the_grant() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let mail = app.last_mail(&email).await;
    let wrong = if mail.code == "000000" {
        "000001"
    } else {
        "000000"
    };
    for _ in 0..5 {
        let response = app
            .post_json("/email/verify", &json!({"email": email, "code": wrong}))
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    // The right code, and even the link, no longer work.
    let response = app
        .post_json("/email/verify", &json!({"email": email, "code": mail.code}))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    let response = app
        .post_json("/email/verify", &json!({"token": mail.token}))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
}

#[tokio::test]
async fn four_wrong_codes_leave_the_right_one_working() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let mail = app.last_mail(&email).await;
    let wrong = if mail.code == "000000" {
        "000001"
    } else {
        "000000"
    };
    for _ in 0..4 {
        let response = app
            .post_json("/email/verify", &json!({"email": email, "code": wrong}))
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    let response = app
        .post_json("/email/verify", &json!({"email": email, "code": mail.code}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn malformed_verify_bodies_are_invalid_requests_or_codes() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    for body in [
        json!({}),
        json!({"email": email}),
        json!({"code": "123456"}),
        json!({"token": "x", "email": email, "code": "123456"}),
    ] {
        let response = app.post_json("/email/verify", &body).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
    for body in [
        json!({"token": "not-a-token"}),
        json!({"email": "nobody@example.com", "code": "123456"}),
        json!({"email": "not an email", "code": "123456"}),
    ] {
        let response = app.post_json("/email/verify", &body).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
}

#[tokio::test]
async fn a_link_opened_with_get_spends_nothing() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let mail = app.last_mail(&email).await;
    let response = app
        .client
        .get(app.url(&format!("/email/verify?token={}", mail.token)))
        .send()
        .await
        .unwrap();
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let response = app
        .post_json("/email/verify", &json!({"token": mail.token}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn asking_again_when_verified_is_a_no_op() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let mail = app.last_mail(&email).await;
    app.post_json("/email/verify", &json!({"token": mail.token}))
        .await;
    let login = app.login_ok(&email, PASSWORD).await;
    let response = app
        .post_with_token("/email/verification", &login.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(app.mails_to(&email).await.len(), 1, "no new mail");
}

#[tokio::test]
async fn at_most_five_mails_an_hour_go_to_one_address() {
    let app = spawn_app().await;
    let email = app.new_user().await; // mail 1
    let login = app.login_ok(&email, PASSWORD).await;
    for _ in 0..4 {
        let response = app
            .post_with_token("/email/verification", &login.access_token)
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
    }
    let response = app
        .post_with_token("/email/verification", &login.access_token)
        .await;
    let body = assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert!(body["message"].is_string());
    assert_eq!(app.mails_to(&email).await.len(), 5);
    // An hour later the address gets mail again.
    app.advance(3601);
    let login = app.login_ok(&email, PASSWORD).await;
    let response = app
        .post_with_token("/email/verification", &login.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(app.mails_to(&email).await.len(), 6);
}

#[tokio::test]
async fn verification_needs_a_bearer_token() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/email/verification"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[tokio::test]
async fn with_verification_required_an_unverified_login_is_refused_and_mailed() {
    let app = spawn_app_with(&[("REQUIRE_EMAIL_VERIFICATION", "true")]).await;
    let email = app.new_user().await;
    assert_eq!(app.mails_to(&email).await.len(), 1);
    // A wrong password learns nothing about verification.
    let response = app.login(&email, "wrong password here").await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let response = app.login(&email, PASSWORD).await;
    assert_error(response, StatusCode::FORBIDDEN, "email_not_verified").await;
    assert_eq!(
        app.mails_to(&email).await.len(),
        2,
        "a new verification mail"
    );
    let mail = app.last_mail(&email).await;
    let response = app
        .post_json("/email/verify", &json!({"token": mail.token}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let login = app.login_ok(&email, PASSWORD).await;
    assert_eq!(decode_claims(&login.access_token)["email_verified"], true);
}

#[tokio::test]
async fn verifying_reaches_no_session_of_another_account() {
    let app = spawn_app().await;
    let alice = app.new_user().await;
    let bob = app.new_user().await;
    let mail = app.last_mail(&alice).await;
    if app.last_mail(&bob).await.code == mail.code {
        return; // one chance in a million: the codes happen to match
    }
    // Alice's code is not Bob's.
    let response = app
        .send_json(
            Method::POST,
            "/email/verify",
            None,
            &json!({"email": bob, "code": mail.code}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
}

/// `n` wrong codes for `email`'s live verification grant, one after the other.
async fn wrong_codes(app: &crate::helpers::TestApp, email: &str, right: &str, n: usize) {
    for _ in 0..n {
        let response = app
            .post_json(
                "/email/verify",
                &json!({"email": email, "code": wrong_code(right)}),
            )
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
}

async fn resend(app: &crate::helpers::TestApp, access_token: &str) {
    let response = app
        .post_with_token("/email/verification", access_token)
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn ten_wrong_codes_over_fresh_grants_refuse_the_next_right_code_but_not_its_link() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let login = app.login_ok(&email, PASSWORD).await;
    // Five wrong codes kill a grant; a new mail does not restart the count.
    let first = app.last_mail(&email).await;
    wrong_codes(&app, &email, &first.code, 5).await;
    resend(&app, &login.access_token).await;
    let second = app.last_mail(&email).await;
    wrong_codes(&app, &email, &second.code, 5).await;
    assert_eq!(app.code_attempts(login.user_id, "verify").await, 10);

    resend(&app, &login.access_token).await;
    let third = app.last_mail(&email).await;
    let response = app
        .post_json(
            "/email/verify",
            &json!({"email": email, "code": third.code}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    assert_eq!(
        app.code_attempts(login.user_id, "verify").await,
        10,
        "a refused code is not compared and not counted"
    );
    // The link cannot be guessed: it still works.
    let response = app
        .post_json("/email/verify", &json!({"token": third.token}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn twenty_concurrent_wrong_codes_spend_at_most_the_budget() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let login = app.login_ok(&email, PASSWORD).await;
    let first = app.last_mail(&email).await;
    wrong_codes(&app, &email, &first.code, 5).await;
    resend(&app, &login.access_token).await;
    let second = app.last_mail(&email).await;
    wrong_codes(&app, &email, &second.code, 2).await;
    resend(&app, &login.access_token).await;
    let third = app.last_mail(&email).await;

    // 3 attempts are left of the 10: parallel guesses get no more.
    let guess = json!({"email": email, "code": wrong_code(&third.code)});
    let guesses = (0..20).map(|_| app.post_json("/email/verify", &guess));
    for response in futures::future::join_all(guesses).await {
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    assert_eq!(app.code_attempts(login.user_id, "verify").await, 10);
    // Only 3 were compared against the third grant, so it is alive: its
    // link works (5 would have killed it).
    let response = app
        .post_json("/email/verify", &json!({"token": third.token}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_right_code_does_not_count_against_the_budget() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let login = app.login_ok(&email, PASSWORD).await;
    let mail = app.last_mail(&email).await;
    wrong_codes(&app, &email, &mail.code, 1).await;
    let response = app
        .post_json("/email/verify", &json!({"email": email, "code": mail.code}))
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(app.code_attempts(login.user_id, "verify").await, 1);
}

#[tokio::test]
async fn resets_asked_for_an_address_leave_its_verification_mails_alone() {
    let app = spawn_app().await;
    let email = app.new_user().await; // verification mail 1
    let login = app.login_ok(&email, PASSWORD).await;
    for _ in 0..6 {
        app.forgot_ok(&email).await; // anyone may ask; 5 are mailed
    }
    for _ in 0..4 {
        resend(&app, &login.access_token).await;
    }
    let response = app
        .post_with_token("/email/verification", &login.access_token)
        .await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    assert_eq!(
        app.mails_to(&email).await.len(),
        10,
        "5 resets, 5 verifications"
    );
}

/// On PostgreSQL, verifying and asking a new mail at once used to take the
/// grant and user row locks in opposite orders (a deadlock, answered 500).
#[tokio::test]
async fn verify_racing_a_resend_never_fails() {
    let _ = crate::support::require_postgres!();
    let app = spawn_app().await;
    for _ in 0..20 {
        let email = app.new_user().await;
        let login = app.login_ok(&email, PASSWORD).await;
        let mail = app.last_mail(&email).await;
        let body = json!({"token": mail.token});
        let (verify, again) = tokio::join!(
            app.post_json("/email/verify", &body),
            app.post_with_token("/email/verification", &login.access_token),
        );
        assert!(
            [StatusCode::NO_CONTENT, StatusCode::BAD_REQUEST].contains(&verify.status()),
            "{verify:?}"
        );
        assert_eq!(again.status(), StatusCode::ACCEPTED);
    }
}
