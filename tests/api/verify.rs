//! `/verify`: forward auth for gateways. The same Bearer check as `/me`,
//! answered with `X-Auth-*` headers, for any method and any path under it.

use reqwest::{Method, Response, StatusCode};

use crate::helpers::{TestApp, assert_error, decode_claims, spawn_app};

impl TestApp {
    /// `<method> <path>` with `Authorization: Bearer <token>` when given.
    pub async fn verify_as(&self, method: Method, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    pub async fn verify(&self, token: &str) -> Response {
        self.verify_as(Method::GET, "/verify", Some(token)).await
    }
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("a {name} header"))
        .to_str()
        .expect("an ASCII header")
}

#[tokio::test]
async fn a_valid_token_is_answered_with_who_the_caller_is_in_headers() {
    let app = spawn_app().await;
    let login = app.new_login().await;

    let response = app.verify(&login.access_token).await;

    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        header(&response, "x-auth-user-id"),
        login.user_id.to_string()
    );
    assert_eq!(
        header(&response, "x-auth-session-id"),
        login.session_id.to_string()
    );
    assert_eq!(header(&response, "x-auth-role"), "user");
    assert_eq!(header(&response, "x-auth-email-verified"), "false");
    assert_eq!(header(&response, "cache-control"), "no-store");
    assert!(response.bytes().await.unwrap().is_empty(), "an empty body");
}

#[tokio::test]
async fn access_tokens_carry_the_email_verified_claim() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    assert_eq!(
        decode_claims(&login.access_token)["email_verified"],
        serde_json::Value::Bool(false)
    );
}

#[tokio::test]
async fn any_method_and_any_subpath_are_verified_alike_and_the_body_is_ignored() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    for method in [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
    ] {
        for path in ["/verify", "/verify/", "/verify/api/orders/42?x=1"] {
            let response = app
                .client
                .request(method.clone(), app.url(path))
                .bearer_auth(&login.access_token)
                .header("content-type", "text/plain")
                .body("not json, never read")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
            assert_eq!(
                header(&response, "x-auth-session-id"),
                login.session_id.to_string(),
                "{method} {path}"
            );
        }
        let refused = app.verify_as(method.clone(), "/verify/a/b", None).await;
        assert_error(refused, StatusCode::UNAUTHORIZED, "missing_token").await;
    }
}

#[tokio::test]
async fn methods_beyond_the_common_ones_are_answered_alike() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    for method in ["TRACE", "PROPFIND", "QUERY"] {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = app
            .verify_as(method.clone(), "/verify/x", Some(&login.access_token))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{method}");
        assert_eq!(
            header(&response, "x-auth-user-id"),
            login.user_id.to_string()
        );
        let refused = app
            .verify_as(method.clone(), "/verify/x", Some("bad"))
            .await;
        assert_error(refused, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
}

#[tokio::test]
async fn head_answers_like_get_with_no_body() {
    let app = spawn_app().await;
    let login = app.new_login().await;

    let ok = app
        .verify_as(Method::HEAD, "/verify/x", Some(&login.access_token))
        .await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(header(&ok, "x-auth-user-id"), login.user_id.to_string());

    let refused = app.verify_as(Method::HEAD, "/verify", Some("nope")).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(header(&refused, "www-authenticate").starts_with("Bearer error=\"invalid_token\""));
}

#[tokio::test]
async fn a_missing_token_gets_the_bare_bearer_challenge() {
    let app = spawn_app().await;
    let response = app.verify_as(Method::GET, "/verify", None).await;
    assert_eq!(header(&response, "www-authenticate"), "Bearer");
    assert_error(response, StatusCode::UNAUTHORIZED, "missing_token").await;
}

#[tokio::test]
async fn a_bad_token_gets_invalid_token_with_the_rfc_6750_challenge() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let mut tampered = login.access_token.clone();
    tampered.pop();
    tampered.push(if login.access_token.ends_with('A') {
        'B'
    } else {
        'A'
    });
    for token in ["garbage", "a.b.c", tampered.as_str()] {
        let response = app.verify(token).await;
        assert!(
            header(&response, "www-authenticate").starts_with("Bearer error=\"invalid_token\""),
            "{token}"
        );
        assert!(response.headers().get("x-auth-user-id").is_none());
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    // Past the 900 s lifetime and the 30 s leeway.
    app.advance(900 + 31);
    let response = app.verify(&login.access_token).await;
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(body["message"], "the token has expired");
}

#[tokio::test]
async fn a_token_of_a_logged_out_session_is_refused_at_once() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    assert_eq!(
        app.verify(&login.access_token).await.status(),
        StatusCode::OK
    );

    assert_eq!(
        app.logout(&login.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );

    let response = app.verify(&login.access_token).await;
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert_eq!(body["message"], "the token has been revoked");
}

#[tokio::test]
async fn role_admin_refuses_a_user_and_admits_an_admin() {
    let app = spawn_app().await;
    let user = app.new_login().await;
    let response = app
        .verify_as(Method::GET, "/verify?role=admin", Some(&user.access_token))
        .await;
    assert_error(response, StatusCode::FORBIDDEN, "insufficient_role").await;

    // role=user: any valid token.
    let response = app
        .verify_as(Method::GET, "/verify/p?role=user", Some(&user.access_token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let admin_email = app.new_user().await;
    app.make_admin(&admin_email).await;
    let admin = app.login_ok(&admin_email, crate::helpers::PASSWORD).await;
    let response = app
        .verify_as(
            Method::POST,
            "/verify/admin/panel?role=admin",
            Some(&admin.access_token),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "x-auth-role"), "admin");
}

#[tokio::test]
async fn an_unknown_role_is_a_bad_request_not_a_pass() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    for query in ["role=root", "role=", "role=Admin"] {
        let response = app
            .verify_as(
                Method::GET,
                &format!("/verify?{query}"),
                Some(&login.access_token),
            )
            .await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}
