//! `HEAD` is answered wherever `GET` is (API.md, "Conventions").
//!
//! [`HeadAsGet`] routes a `HEAD` request as a `GET`: the `GET` handler runs, and
//! its status and headers are the answer. No body goes out: actix-http's codec
//! remembers that the request was a `HEAD` and writes the head only (with the
//! `Content-Length` the body would have had, as RFC 9110 §9.3.2 allows). One
//! mechanism for every route, so a new `GET` route gets `HEAD` without a line
//! of its own. The access log and the metrics still say `HEAD`: they run
//! before this middleware. `405` answers list `HEAD` beside `GET`
//! ([`crate::error::ApiError::MethodNotAllowed`]).

use std::future::{Ready, ready};

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::Method;
use actix_web::{Error, HttpMessage};

/// Marks a request that arrived as `HEAD` (see [`was_head`]).
#[derive(Debug, Clone, Copy)]
struct WasHead;

/// Did this request arrive as `HEAD` (now routed as `GET`)?
pub fn was_head(req: &actix_web::HttpRequest) -> bool {
    req.extensions().contains::<WasHead>()
}

/// Middleware: serve `HEAD` with the `GET` route of the same path.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadAsGet;

impl<S, B> Transform<S, ServiceRequest> for HeadAsGet
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = HeadAsGetService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(HeadAsGetService { service }))
    }
}

/// The service [`HeadAsGet`] wraps around the application.
#[derive(Debug)]
pub struct HeadAsGetService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for HeadAsGetService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = S::Future;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        if req.method() == Method::HEAD {
            // Only the routing sees GET; the connection already knows it
            // answers a HEAD and will send no body. A handler that would
            // stream (the revocation feed) asks [`was_head`] and does not.
            req.head_mut().method = Method::GET;
            req.extensions_mut().insert(WasHead);
        }
        self.service.call(req)
    }
}
