//! Password reset: `POST /password/forgot` and `POST /password/reset`.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    PASSWORD, TestApp, assert_error, spawn_app, spawn_app_with, unique_email, wrong_code,
};

const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn forgot_answers_the_same_for_known_unknown_and_differently_spelt_emails() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let unknown = unique_email();
    app.forgot_ok(&email).await;
    app.forgot_ok(&unknown).await;
    app.forgot_ok(&format!("  {}  ", email.to_uppercase()))
        .await;
    // Mail only for the account (registration's, then two resets).
    let mails = app.mails_to(&email).await;
    assert_eq!(mails.len(), 3);
    assert!(mails[2].subject.contains("reset"), "{}", mails[2].subject);
    assert!(mails[2].body.contains("?purpose=reset&token="));
    assert!(app.mails_to(&unknown).await.is_empty());
}

#[tokio::test]
async fn forgot_refuses_a_malformed_email() {
    let app = spawn_app().await;
    for email in ["not an email", "a@b", "al\u{200B}ice@example.com"] {
        let response = app
            .post_json("/password/forgot", &json!({"email": email}))
            .await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
    }
}

#[tokio::test]
async fn forgot_caps_mails_per_address_and_purpose_silently() {
    let app = spawn_app().await;
    let email = app.new_user().await; // a verification mail: not a reset
    for _ in 0..6 {
        app.forgot_ok(&email).await;
    }
    assert_eq!(app.mails_to(&email).await.len(), 1 + 5);
    // The cap is per hour.
    app.advance(3601);
    app.forgot_ok(&email).await;
    assert_eq!(app.mails_to(&email).await.len(), 1 + 5 + 1);
}

#[tokio::test]
async fn a_reset_by_token_sets_the_password_and_ends_every_session() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let phone = app.login_ok(&email, PASSWORD).await;
    let laptop = app.login_ok(&email, PASSWORD).await;
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;

    let response = app
        .post_json(
            "/password/reset",
            &json!({"token": mail.token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for login in [&phone, &laptop] {
        let response = app.me(&login.access_token).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        let response = app.refresh(&login.refresh_token).await;
        let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
        assert_eq!(body["reason"], "revoked");
    }
    let response = app.login(&email, PASSWORD).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    app.login_ok(&email, NEW_PASSWORD).await;
}

#[tokio::test]
async fn a_reset_by_email_and_code_works_and_verifies_the_email() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    let response = app
        .post_json(
            "/password/reset",
            &json!({"email": email, "code": mail.code, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let login = app.login_ok(&email, NEW_PASSWORD).await;
    // The mail proved the address.
    assert_eq!(
        app.account(&login.access_token).await["email_verified"],
        true
    );
}

#[tokio::test]
async fn a_reset_works_once() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    let body = json!({"token": mail.token, "new_password": NEW_PASSWORD});
    let response = app.post_json("/password/reset", &body).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .post_json(
            "/password/reset",
            &json!({"token": mail.token, "new_password": "yet another passphrase"}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    let response = app
        .post_json(
            "/password/reset",
            &json!({"email": email, "code": mail.code, "new_password": "yet another passphrase"}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    app.login_ok(&email, NEW_PASSWORD).await;
}

#[tokio::test]
async fn an_expired_reset_is_refused() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    app.advance(1801);
    let response = app
        .post_json(
            "/password/reset",
            &json!({"token": mail.token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    app.login_ok(&email, PASSWORD).await;
}

#[tokio::test]
async fn a_newer_reset_mail_supersedes_the_older() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.forgot_ok(&email).await;
    let old = app.last_mail(&email).await;
    app.forgot_ok(&email).await;
    let new = app.last_mail(&email).await;
    for body in [
        json!({"token": old.token, "new_password": NEW_PASSWORD}),
        json!({"email": email, "code": old.code, "new_password": NEW_PASSWORD}),
    ] {
        if body.get("code").is_some() && old.code == new.code {
            continue; // the same six digits by chance: nothing to tell apart
        }
        let response = app.post_json("/password/reset", &body).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    let response = app
        .post_json(
            "/password/reset",
            &json!({"token": new.token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_fifth_wrong_reset_code_kills_the_grant() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    let wrong = if mail.code == "999999" {
        "999998"
    } else {
        "999999"
    };
    for _ in 0..5 {
        let response = app
            .post_json(
                "/password/reset",
                &json!({"email": email, "code": wrong, "new_password": NEW_PASSWORD}),
            )
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    let response = app
        .post_json(
            "/password/reset",
            &json!({"email": email, "code": mail.code, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    app.login_ok(&email, PASSWORD).await;
}

#[tokio::test]
async fn a_weak_new_password_is_refused_and_the_grant_survives() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    for weak in ["short", "password123"] {
        let response = app
            .post_json(
                "/password/reset",
                &json!({"token": mail.token, "new_password": weak}),
            )
            .await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
    }
    let response = app
        .post_json(
            "/password/reset",
            &json!({"token": mail.token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_reset_token_is_not_a_verification_token() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.forgot_ok(&email).await;
    let reset = app.last_mail(&email).await;
    let response = app
        .post_json("/email/verify", &json!({"token": reset.token}))
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    let verify = app.mails_to(&email).await[0].body.clone();
    let verify = crate::helpers::parse_mail("", &verify);
    let response = app
        .post_json(
            "/password/reset",
            &json!({"token": verify.token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
}

#[tokio::test]
async fn a_login_racing_a_reset_opens_no_session_that_outlives_it() {
    // Many rounds of a login and a reset at once: whichever wins, no session
    // opened with the old password is alive afterwards.
    let app = spawn_app().await;
    let email = app.new_user().await;
    let mut password = PASSWORD.to_owned();
    for round in 0..8 {
        app.forgot_ok(&email).await;
        let mail = app.last_mail(&email).await;
        let next = format!("{NEW_PASSWORD} {round}");
        let reset_body = json!({"token": mail.token, "new_password": next});
        let (login, reset) = tokio::join!(
            app.login(&email, &password),
            app.post_json("/password/reset", &reset_body)
        );
        assert_eq!(reset.status(), StatusCode::NO_CONTENT);
        if login.status() == StatusCode::OK {
            let login = crate::helpers::login_from_body(&email, login.json().await.unwrap());
            let response = app.refresh(&login.refresh_token).await;
            let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
            assert_eq!(body["reason"], "revoked", "round {round}");
        } else {
            assert_error(login, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        }
        password = next;
        app.advance(3600); // past the hourly mail cap
    }
}

#[tokio::test]
async fn reset_routes_are_rate_limited_per_ip() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "3")]).await;
    for _ in 0..3 {
        app.forgot_ok("someone@example.com").await;
    }
    let response = app
        .post_json("/password/forgot", &json!({"email": "someone@example.com"}))
        .await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    let response = app
        .post_json(
            "/password/reset",
            &json!({"token": "x", "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    let response = app.post_json("/email/verify", &json!({"token": "x"})).await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
}

/// Not a timing assertion: prints the median latency of `/password/forgot`
/// for an address with an account and one without, for BENCHMARKS.md.
#[tokio::test]
async fn forgot_latency_for_known_and_unknown_addresses_is_reported() {
    let app = spawn_app().await;
    let known: Vec<String> = {
        let mut emails = Vec::new();
        for _ in 0..20 {
            emails.push(app.new_user().await);
        }
        emails
    };
    let median = |samples: &mut Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for round in 0..3 {
        for email in &known {
            let start = Instant::now();
            app.forgot_ok(email).await;
            with.push(start.elapsed());
            let other = format!("nobody{round}-{email}");
            let start = Instant::now();
            app.forgot_ok(&other).await;
            without.push(start.elapsed());
        }
    }
    eprintln!(
        "/password/forgot median over {} requests each ({}): known address {:?}, unknown address {:?}",
        with.len(),
        app.state.store.kind(),
        median(&mut with),
        median(&mut without)
    );
}

#[tokio::test]
async fn two_racing_resets_with_one_token_set_one_password() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    for round in 0..4 {
        app.forgot_ok(&email).await;
        let mail = app.last_mail(&email).await;
        let (a, b) = (
            format!("first passphrase {round}"),
            format!("second passphrase {round}"),
        );
        let by_token = json!({"token": mail.token, "new_password": a});
        let by_code = json!({"email": email, "code": mail.code, "new_password": b});
        let (ra, rb) = tokio::join!(
            app.post_json("/password/reset", &by_token),
            app.post_json("/password/reset", &by_code)
        );
        let (winner, loser) = match (ra.status(), rb.status()) {
            (StatusCode::NO_CONTENT, _) => (a, rb),
            (_, StatusCode::NO_CONTENT) => (b, ra),
            other => panic!("neither reset won: {other:?}"),
        };
        assert_error(loser, StatusCode::BAD_REQUEST, "invalid_code").await;
        app.login_ok(&email, &winner).await;
        app.advance(3600); // past the hourly mail cap
    }
}

#[tokio::test]
async fn email_routes_and_account_deletion_are_rate_limited_per_ip() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "2")]).await;
    // The registration and the login below use the budget of /register and /login.
    let login = app.new_login().await;
    let response = app
        .post_with_token("/email/verification", &login.access_token)
        .await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    let response = app
        .send_json(
            reqwest::Method::POST,
            "/email/change",
            Some(&login.access_token),
            &json!({"new_email": unique_email(), "password": PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    let response = app
        .send_json(
            reqwest::Method::DELETE,
            "/account",
            Some(&login.access_token),
            &json!({"password": PASSWORD}),
        )
        .await;
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    app.me(&login.access_token)
        .await
        .error_for_status()
        .unwrap();
}

/// A reset by `email` and a wrong code; asserts it is refused.
async fn wrong_reset_codes(app: &TestApp, email: &str, right: &str, n: usize) {
    for _ in 0..n {
        let body = json!({"email": email, "code": wrong_code(right), "new_password": NEW_PASSWORD});
        let response = app.post_json("/password/reset", &body).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
}

#[tokio::test]
async fn ten_wrong_reset_codes_over_fresh_mails_refuse_the_next_code_for_a_day_not_the_link() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let email = login.email.clone();
    for _ in 0..2 {
        app.forgot_ok(&email).await;
        let mail = app.last_mail(&email).await;
        wrong_reset_codes(&app, &email, &mail.code, 5).await;
    }
    assert_eq!(app.code_attempts(login.user_id, "reset").await, 10);

    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    let by_code = json!({"email": email, "code": mail.code, "new_password": NEW_PASSWORD});
    let response = app.post_json("/password/reset", &by_code).await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    app.login_ok(&email, PASSWORD).await;
    let response = app
        .post_json(
            "/password/reset",
            &json!({"token": mail.token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // The window slides: a day later a code works again.
    app.advance(24 * 3600 + 1);
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    let body =
        json!({"email": email, "code": mail.code, "new_password": "a third passphrase here"});
    let response = app.post_json("/password/reset", &body).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn the_reset_code_budget_is_not_the_verification_one() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let email = login.email.clone();
    let verification = app.last_mail(&email).await;
    for _ in 0..2 {
        app.forgot_ok(&email).await;
        let mail = app.last_mail(&email).await;
        wrong_reset_codes(&app, &email, &mail.code, 5).await;
    }
    let response = app
        .post_json(
            "/email/verify",
            &json!({"email": email, "code": verification.code}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn twenty_concurrent_wrong_reset_codes_spend_at_most_the_budget() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let email = login.email.clone();
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    wrong_reset_codes(&app, &email, &mail.code, 5).await;
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    wrong_reset_codes(&app, &email, &mail.code, 4).await;
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    let guess =
        json!({"email": email, "code": wrong_code(&mail.code), "new_password": NEW_PASSWORD});
    let guesses = (0..20).map(|_| app.post_json("/password/reset", &guess));
    for response in futures::future::join_all(guesses).await {
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
    }
    assert_eq!(app.code_attempts(login.user_id, "reset").await, 10);
}
