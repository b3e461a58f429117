//! The one list of routes. Each entry gives a handler, its method and path,
//! who may call it, whether it takes a JSON body, and the error codes of its
//! own decisions; from this list come the actix routes ([`configure`]), the
//! paths of the OpenAPI document (with every response's enum of error codes,
//! `crate::openapi`), the route labels of the metrics, and the check that no
//! answer carries a code its route does not document ([`may_answer`]).
//!
//! How to add a route: see the module documentation of `crate::openapi`.

use actix_web::web;

use super::{
    account, admin, docs, health, keys, lifecycle, resource, revocations, sessions, tokens, verify,
};
use crate::error::ErrorCode::{self, *};

/// The methods the API serves (HEAD is answered wherever GET is, by
/// [`super::head::HeadAsGet`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }

    fn actix(self) -> actix_web::Route {
        match self {
            Method::Get => web::get(),
            Method::Post => web::post(),
            Method::Delete => web::delete(),
        }
    }
}

/// Who may call a route; each level implies its own error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Open,
    /// An access token: `401 missing_token` / `invalid_token`.
    Bearer,
    /// An access token with the admin role: also `403 insufficient_role`.
    Admin,
}

/// One operation: a method on a path, and everything the document and the
/// checks need to know about it.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: Method,
    /// The actix pattern, also the document's path and the metrics label.
    pub path: &'static str,
    pub access: Access,
    /// Takes a JSON body (`JsonObject`): `400`, `408`, `413`, `415`.
    pub json_body: bool,
    /// The codes of the handler's own decisions, beyond those implied by
    /// `access`, `json_body` and a path parameter (see [`Route::error_codes`]).
    pub errors: &'static [ErrorCode],
    /// In the app-facing OpenAPI document (false: operations' and Swagger
    /// UI's own routes).
    pub documented: bool,
    /// Served for every method (the document names `method`): forward auth,
    /// whose gateways pass the original request's method, and a route that
    /// must look absent to every method when it is off. Its handler answers
    /// `405` itself where it has to.
    pub any_method: bool,
    serve: fn(actix_web::Route) -> actix_web::Route,
}

impl Route {
    const fn new(method: Method, path: &'static str) -> Self {
        Route {
            method,
            path,
            access: Access::Open,
            json_body: false,
            errors: &[],
            documented: false,
            any_method: false,
            serve: |route| route,
        }
    }
    const fn get(path: &'static str) -> Self {
        Self::new(Method::Get, path)
    }
    const fn post(path: &'static str) -> Self {
        Self::new(Method::Post, path)
    }
    const fn delete(path: &'static str) -> Self {
        Self::new(Method::Delete, path)
    }
    const fn bearer(mut self) -> Self {
        self.access = Access::Bearer;
        self
    }
    const fn admin(mut self) -> Self {
        self.access = Access::Admin;
        self
    }
    const fn json_body(mut self) -> Self {
        self.json_body = true;
        self
    }
    const fn errors(mut self, errors: &'static [ErrorCode]) -> Self {
        self.errors = errors;
        self
    }
    const fn any_method(mut self) -> Self {
        self.any_method = true;
        self
    }
    const fn documented(mut self) -> Self {
        self.documented = true;
        self
    }
    const fn serve(mut self, serve: fn(actix_web::Route) -> actix_web::Route) -> Self {
        self.serve = serve;
        self
    }

    /// Every code this route may answer, in [`ErrorCode::ALL`] order: its own
    /// and those its access, body and path imply, and `500 internal_error`.
    /// (`405 method_not_allowed` belongs to a method the path does not serve,
    /// so it is in every operation's `default` answer only.)
    pub fn error_codes(&self) -> Vec<ErrorCode> {
        let mut codes = vec![InternalError];
        codes.extend_from_slice(self.errors);
        if self.json_body {
            codes.extend([
                InvalidRequest,
                RequestTimeout,
                PayloadTooLarge,
                UnsupportedMediaType,
            ]);
        }
        if matches!(self.access, Access::Bearer | Access::Admin) {
            codes.extend([MissingToken, InvalidToken]);
        }
        if self.access == Access::Admin {
            codes.push(InsufficientRole);
        }
        // A path parameter that does not parse is `404` (`path_config`).
        if self.path.contains('{') {
            codes.push(NotFound);
        }
        ErrorCode::ALL
            .into_iter()
            .filter(|code| codes.contains(code))
            .collect()
    }
}

/// Declares [`ROUTES`] and the document's paths from one list. A handler in
/// `documented` needs a `#[utoipa::path]` with its success answers (error
/// answers are written from the list; a test checks that the annotation's
/// method and path are the entry's).
macro_rules! route_table {
    (
        documented { $( $dm:ident :: $dh:ident => $dr:expr, )* }
        undocumented { $( $um:ident :: $uh:ident => $ur:expr, )* }
    ) => {
        /// Every route the service serves, in registration order.
        pub static ROUTES: &[Route] = &[
            $( $dr.documented().serve(|route| route.to($dm::$dh)), )*
            $( $ur.serve(|route| route.to($um::$uh)), )*
        ];

        /// The documented routes' operations, from their annotations.
        pub(crate) fn documented_operations() -> utoipa::openapi::OpenApi {
            #[derive(utoipa::OpenApi)]
            #[openapi(paths( $( $dm::$dh ),* ))]
            struct Operations;
            <Operations as utoipa::OpenApi>::openapi()
        }
    };
}

route_table! {
    documented {
        account::register => Route::post("/register").json_body()
            .errors(&[EmailTaken, InvalidEmail, WeakPassword, TooManyRequests, Unavailable]),
        tokens::login => Route::post("/login").json_body()
            .errors(&[InvalidCredentials, EmailNotVerified, AccountDisabled, TooManyRequests, Unavailable]),
        tokens::refresh => Route::post("/refresh").json_body()
            .errors(&[InvalidGrant, Unavailable]),
        tokens::logout => Route::post("/logout").json_body().errors(&[Unavailable]),
        tokens::logout_all => Route::post("/logout-all").bearer().errors(&[Unavailable]),
        keys::jwks => Route::get("/.well-known/jwks.json"),
        account::me => Route::get("/me").bearer(),
        sessions::list_sessions => Route::get("/sessions").bearer().errors(&[Unavailable]),
        sessions::delete_session => Route::delete("/sessions/{id}").bearer()
            .errors(&[NotFound, Unavailable]),
        account::change_password => Route::post("/password").bearer().json_body()
            .errors(&[InvalidCredentials, WeakPassword, TooManyRequests, Unavailable]),
        account::account => Route::get("/account").bearer().errors(&[NotFound, Unavailable]),
        account::delete_account => Route::delete("/account").bearer().json_body()
            .errors(&[InvalidCredentials, TooManyRequests, Unavailable]),
        lifecycle::forgot_password => Route::post("/password/forgot").json_body()
            .errors(&[InvalidEmail, TooManyRequests, Unavailable]),
        lifecycle::reset_password => Route::post("/password/reset").json_body()
            .errors(&[InvalidCode, WeakPassword, TooManyRequests, Unavailable]),
        lifecycle::resend_verification => Route::post("/email/verification").bearer()
            .errors(&[NotFound, TooManyRequests, Unavailable]),
        lifecycle::verify_email => Route::post("/email/verify").json_body()
            .errors(&[InvalidCode, TooManyRequests, Unavailable]),
        lifecycle::change_email => Route::post("/email/change").bearer().json_body()
            .errors(&[InvalidCredentials, EmailTaken, InvalidEmail, TooManyRequests, Unavailable]),
        lifecycle::confirm_email_change => Route::post("/email/change/confirm").bearer().json_body()
            .errors(&[InvalidCode, EmailTaken, TooManyRequests, Unavailable]),
        admin::find_user => Route::get("/admin/users").admin()
            .errors(&[InvalidRequest, NotFound, Unavailable]),
        admin::revoke_user_sessions => Route::post("/admin/users/{id}/revoke-sessions").admin()
            .errors(&[NotFound, Unavailable]),
        health::healthz => Route::get("/healthz"),
        health::readyz => Route::get("/readyz").errors(&[Unavailable]),
        verify::verify => Route::get("/verify").bearer().any_method()
            .errors(&[InvalidRequest, InsufficientRole]),
        revocations::revocations => Route::get("/revocations").any_method()
            .errors(&[InvalidToken, NotFound, MethodNotAllowed]),
        docs::openapi_json => Route::get("/openapi.json"),
        docs::swagger_ui => Route::get("/docs"),
    }
    undocumented {
        // For the operator's monitoring, not for apps (README, Operations).
        health::metrics => Route::get("/metrics").errors(&[NotFound]),
        docs::swagger_asset => Route::get("/docs/{file:.*}"),
        // `/verify` under any path (gateways often pass the original one).
        verify::verify => Route::get("/verify/{path:.*}").bearer().any_method()
            .errors(&[InvalidRequest, InsufficientRole]),
    }
}

/// Registers every route: one actix resource per path, serving its methods
/// and answering `405` with `Allow` for the others.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let mut registered: Vec<&str> = Vec::new();
    for route in ROUTES {
        if registered.contains(&route.path) {
            continue;
        }
        registered.push(route.path);
        if route.any_method {
            // No method guard: every method reaches the handler.
            cfg.service(web::resource(route.path).route((route.serve)(web::route())));
            continue;
        }
        let mut resource = resource(route.path, allow(route.path));
        for same_path in ROUTES.iter().filter(|r| r.path == route.path) {
            resource = resource.route((same_path.serve)(same_path.method.actix()));
        }
        cfg.service(resource);
    }
}

/// The methods a path serves, for `Allow`.
fn allow(path: &str) -> String {
    ROUTES
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.method.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The route a request matched, by method (`HEAD` as `GET`) and pattern.
pub fn find(method: &str, pattern: Option<&str>) -> Option<&'static Route> {
    let method = if method == "HEAD" { "GET" } else { method };
    let pattern = pattern?;
    ROUTES
        .iter()
        .find(|r| r.path == pattern && (r.any_method || r.method.as_str() == method))
}

/// The metrics label of a matched pattern: a route's path, or `unmatched`
/// (never the raw path, which could carry ids).
pub fn label(pattern: Option<&str>) -> &'static str {
    pattern
        .and_then(|p| ROUTES.iter().find(|r| r.path == p))
        .map_or("unmatched", |r| r.path)
}

/// Whether an answer with `code` to this method and pattern is documented:
/// in the route's codes, or, where no route matched (an unknown path, a
/// method the path does not serve), one of the answers of no route.
pub fn may_answer(method: &str, pattern: Option<&str>, code: ErrorCode) -> bool {
    match find(method, pattern) {
        Some(route) => route.error_codes().contains(&code),
        None => matches!(
            code,
            NotFound | MethodNotAllowed | RequestTimeout | PayloadTooLarge | InternalError
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_route_is_its_annotation_and_nothing_else_is_documented() {
        let doc = documented_operations();
        let mut annotated = Vec::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("DELETE", &item.delete),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
            ] {
                if op.is_some() {
                    annotated.push(format!("{method} {path}"));
                }
            }
        }
        annotated.sort();
        let mut listed: Vec<String> = ROUTES
            .iter()
            .filter(|r| r.documented)
            .map(|r| format!("{} {}", r.method.as_str(), r.path))
            .collect();
        listed.sort();
        assert_eq!(annotated, listed);
    }

    #[test]
    fn no_method_and_path_is_listed_twice() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {}",
                    a.method.as_str(),
                    a.path
                );
            }
        }
    }

    #[test]
    fn implied_codes_follow_access_body_and_path() {
        let password = find("POST", Some("/password")).expect("listed");
        let codes = password.error_codes();
        for code in [
            InvalidRequest,
            MissingToken,
            InvalidToken,
            InvalidCredentials,
            PayloadTooLarge,
            InternalError,
        ] {
            assert!(codes.contains(&code), "{code}");
        }
        assert!(!codes.contains(&InsufficientRole));
        let healthz = find("HEAD", Some("/healthz")).expect("HEAD is GET");
        assert_eq!(healthz.error_codes(), vec![InternalError]);
        assert!(may_answer("PUT", Some("/login"), MethodNotAllowed));
        assert!(!may_answer("GET", Some("/me"), InvalidCredentials));
        assert_eq!(label(Some("/sessions/{id}")), "/sessions/{id}");
        assert_eq!(label(Some("/nowhere")), "unmatched");
    }
}
