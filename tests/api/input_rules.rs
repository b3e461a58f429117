//! API.md, "Input rules", over HTTP: NFKC emails and passwords, invisible
//! characters refused, device names and user agents cleaned, and a NUL never a
//! 5xx. Run on PostgreSQL too (`TEST_DATABASE_URL`): that is where a NUL bites.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_error, login_from_body, spawn_app, unique_email};

/// A unique address whose local part starts with `café`, precomposed (NFC)
/// and decomposed (NFD).
fn cafe_emails() -> (String, String) {
    let nfc = format!("caf\u{E9}.{}", unique_email());
    let nfd = nfc.replacen('\u{E9}', "e\u{301}", 1);
    assert_ne!(nfc, nfd);
    (nfc, nfd)
}

async fn user_id_of(app: &TestApp, email: &str, password: &str) -> String {
    let response = app.login(email, password).await;
    assert_eq!(response.status(), StatusCode::OK, "login as {email:?}");
    login_from_body(email, response.json().await.unwrap())
        .user_id
        .to_string()
}

async fn sessions(app: &TestApp, access_token: &str) -> Vec<Value> {
    let response = app.sessions(access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["sessions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn precomposed_and_decomposed_spellings_of_an_email_are_one_account() {
    let app = spawn_app().await;
    let (nfc, nfd) = cafe_emails();
    let response = app.register(&nfc, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["email"], nfc);

    let response = app.register(&nfd, PASSWORD).await;
    assert_error(response, StatusCode::CONFLICT, "email_taken").await;

    let id = created["id"].as_str().unwrap();
    assert_eq!(user_id_of(&app, &nfc, PASSWORD).await, id);
    assert_eq!(user_id_of(&app, &nfd, PASSWORD).await, id);
}

#[tokio::test]
async fn an_account_registered_decomposed_is_stored_precomposed() {
    let app = spawn_app().await;
    let (nfc, nfd) = cafe_emails();
    let response = app.register(&nfd.to_uppercase(), PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["email"], nfc);
    let response = app.register(&nfc, PASSWORD).await;
    assert_error(response, StatusCode::CONFLICT, "email_taken").await;
}

#[tokio::test]
async fn a_fullwidth_spelling_of_an_email_signs_in_to_the_ascii_account() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    // NFKC maps fullwidth letters, digits, `＠` and `．` to ASCII.
    let fullwidth: String = email
        .chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 - 0x21 + 0xFF01).unwrap(),
            other => other,
        })
        .collect();
    assert_ne!(fullwidth, email);
    let login = app.login_ok(&fullwidth, PASSWORD).await;
    assert_eq!(
        user_id_of(&app, &email, PASSWORD).await,
        login.user_id.to_string()
    );
}

#[tokio::test]
async fn invisible_characters_and_malformed_addresses_are_a_422_invalid_email() {
    let app = spawn_app().await;
    let base = unique_email();
    let (local, domain) = base.split_once('@').unwrap();
    let mut emails: Vec<String> = [
        '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{202E}', '\u{2066}', '\u{00AD}', '\u{3164}',
        '\u{FE0F}', '\u{1B}', '\u{E000}',
    ]
    .iter()
    .map(|c| format!("{local}{c}@{domain}"))
    .collect();
    emails.extend([
        format!("{local}@evil.test@{domain}"),
        format!("{local}\u{FF20}evil.test@{domain}"),
        format!("{local}@localhost"),
        "a@b".to_owned(),
    ]);
    for email in &emails {
        let response = app.register(email, PASSWORD).await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
    }
}

#[tokio::test]
async fn an_email_is_at_most_254_bytes_once_normalised() {
    let app = spawn_app().await;
    // `İ` is 2 bytes as typed and 3 once lower-cased (`i` + U+0307).
    let grows = format!(
        "{}@{}.example.com",
        unique_email().replace('@', "."),
        "\u{130}".repeat(100)
    );
    assert!(grows.len() <= 254, "{} bytes as typed", grows.len());
    let response = app.register(&grows, PASSWORD).await;
    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;

    let fits = format!("a{}@{}.com", &unique_email()[..10], "\u{130}".repeat(60));
    let response = app.register(&fits, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let created: Value = response.json().await.unwrap();
    let stored = created["email"].as_str().unwrap();
    assert!(stored.len() <= 254 && stored.len() > fits.len());
    assert!(stored.contains("i\u{307}"));
}

#[tokio::test]
async fn a_password_registered_precomposed_signs_in_typed_decomposed_or_fullwidth() {
    let app = spawn_app().await;
    let email = unique_email();
    let nfc = "cr\u{E8}me br\u{FB}l\u{E9}e 1984";
    let nfd = "cre\u{300}me bru\u{302}le\u{301}e 1984";
    let fullwidth = "cr\u{E8}me br\u{FB}l\u{E9}e \u{FF11}\u{FF19}\u{FF18}\u{FF14}";
    assert_eq!(
        app.register(&email, nfc).await.status(),
        StatusCode::CREATED
    );
    app.login_ok(&email, nfd).await;
    app.login_ok(&email, fullwidth).await;
    app.login_ok(&email, nfc).await;
    let response = app.login(&email, "creme brulee 1984").await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn a_password_registered_decomposed_signs_in_typed_precomposed() {
    let app = spawn_app().await;
    let email = unique_email();
    let nfd = "cre\u{300}me bru\u{302}le\u{301}e 1984";
    assert_eq!(
        app.register(&email, nfd).await.status(),
        StatusCode::CREATED
    );
    app.login_ok(&email, "cr\u{E8}me br\u{FB}l\u{E9}e 1984")
        .await;
}

#[tokio::test]
async fn a_new_password_set_decomposed_signs_in_typed_precomposed() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let nfd = "cre\u{300}me bru\u{302}le\u{301}e 1984";
    let response = app
        .change_password(&login.access_token, PASSWORD, nfd)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    app.login_ok(&login.email, "cr\u{E8}me br\u{FB}l\u{E9}e 1984")
        .await;
    // The current password is compared in NFKC too.
    let response = app
        .change_password(
            &login.access_token,
            "cr\u{E8}me br\u{FB}l\u{E9}e 1984",
            PASSWORD,
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_password_of_eight_code_points_that_compose_to_four_is_too_short() {
    let app = spawn_app().await;
    // Eight code points as typed, `éèêë` (four) once composed.
    let decomposed = "e\u{301}e\u{300}e\u{302}e\u{308}";
    assert_eq!(decomposed.chars().count(), 8);
    let response = app.register(&unique_email(), decomposed).await;
    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
}

#[tokio::test]
async fn a_fullwidth_spelling_of_a_common_password_is_weak() {
    let app = spawn_app().await;
    // `ｐａｓｓｗｏｒｄ１` is `password1`, on the list.
    let response = app
        .register(
            &unique_email(),
            "\u{FF50}\u{FF41}\u{FF53}\u{FF53}\u{FF57}\u{FF4F}\u{FF52}\u{FF44}\u{FF11}",
        )
        .await;
    assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
}

#[tokio::test]
async fn a_device_name_with_a_control_format_or_bidi_character_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let first = app.login_ok(&email, PASSWORD).await;
    for device in [
        "Alice\u{1B}[2JPhone",
        "Alice's\niPhone",
        "Alice's iPhone\r\n",
        "enohPi s'ecilA\u{202E}",
        "Alice\u{200B}Phone",
        "\u{FEFF}Alice",
        "Alice\u{7F}",
    ] {
        let response = app.login_from(&email, PASSWORD, device).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("device_name"), "{message}");
    }
    // No session was started by any of them.
    assert_eq!(sessions(&app, &first.access_token).await.len(), 1);
    // Spaces, apostrophes and letters of any script are fine.
    let response = app
        .login_from(&email, PASSWORD, "  Téléphone d'Élodie – 電話 ")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let listed = sessions(&app, &first.access_token).await;
    assert_eq!(listed[0]["device_name"], "Téléphone d'Élodie – 電話");
}

#[tokio::test]
async fn a_user_agent_with_control_characters_is_listed_cleaned() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    // A tab is the one control character HTTP lets through in a header.
    let response = app
        .client
        .post(app.url("/login"))
        .header("user-agent", "Mozilla/5.0\t(Test;\tRig)\t")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let login = login_from_body(&email, response.json().await.unwrap());
    let listed = sessions(&app, &login.access_token).await;
    assert_eq!(listed[0]["user_agent"], "Mozilla/5.0(Test;Rig)");

    // Non-ASCII bytes (here a right-to-left override) are not recorded.
    let header =
        reqwest::header::HeaderValue::from_bytes("Evil\u{202E}gnp.exe".as_bytes()).unwrap();
    let response = app
        .client
        .post(app.url("/login"))
        .header("user-agent", header)
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let listed = sessions(&app, &login.access_token).await;
    let agent = &listed[0]["user_agent"];
    assert!(
        agent.as_str().is_none_or(|a| !a.contains('\u{202E}')),
        "{agent}"
    );
}

#[tokio::test]
async fn a_nul_in_any_string_field_of_any_body_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let fresh = unique_email();
    let bodies = [
        (
            "/register",
            json!({"email": fresh, "password": "a new long password"}),
        ),
        (
            "/login",
            json!({"email": login.email, "password": PASSWORD, "device_name": "Phone"}),
        ),
        ("/refresh", json!({"refresh_token": login.refresh_token})),
        ("/logout", json!({"refresh_token": login.refresh_token})),
        (
            "/password",
            json!({"current_password": PASSWORD, "new_password": "a new long password"}),
        ),
    ];
    // Every answer that is not the expected 400 naming the field, so that a
    // failure lists them all (on PostgreSQL, a NUL that reaches a query is a 500).
    let mut wrong = Vec::new();
    for (path, body) in &bodies {
        let mut cases: Vec<(String, Value)> = Vec::new();
        for field in body.as_object().unwrap().keys() {
            let value = body[field].as_str().unwrap();
            for with_nul in [
                format!("\u{0}{value}"),
                format!("{}\u{0}{}", &value[..1], &value[1..]),
                format!("{value}\u{0}"),
            ] {
                let mut body = body.clone();
                body[field] = with_nul.into();
                cases.push((field.clone(), body));
            }
        }
        // A NUL in a field the endpoint does not read is refused as well.
        let mut extra = body.clone();
        extra["comment"] = "\u{0}".into();
        cases.push(("comment".into(), extra));

        for (field, body) in cases {
            let response = app
                .client
                .post(app.url(path))
                .bearer_auth(&login.access_token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let answer: Value = response.json().await.unwrap_or_default();
            let message = answer["message"].as_str().unwrap_or_default();
            if status != StatusCode::BAD_REQUEST
                || answer["error"] != "invalid_request"
                || !message.contains(&field)
            {
                wrong.push(format!("{path} {body}: {status} {answer}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // Nothing happened: no account for the fresh address, the session and
    // the password are untouched.
    assert_eq!(
        app.login(&fresh, "a new long password").await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.refresh_ok(&login).await;
    app.login_ok(&login.email, PASSWORD).await;
}
