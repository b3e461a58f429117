//! One id per request, on every log line the request causes: the access
//! line, the audit lines, a 5xx's cause. Clients see it as `X-Request-Id`, so
//! a user's report ("it failed at 10:02, request id …") leads to the lines.
//!
//! [`RequestIds`] gives each request an id (or keeps the one your proxy set,
//! with `TRUST_FORWARDED_FOR`), writes it into the request's `X-Request-Id`
//! header (which the access line prints) and the answer's, and runs the rest
//! of the request inside a task-local scope that the log format reads
//! ([`current`]): any line logged while the request is handled carries it,
//! with no parameter threaded through the services.

use std::future::{Ready, ready};
use std::pin::Pin;

use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue};

/// The header carrying the id, in and out.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled on this task, if any (for the log format).
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// 16 hex digits from the OS CSPRNG: unique enough to find a request's lines.
fn new_id() -> String {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An id a proxy sent that is safe to log as is: short, no spaces or
/// control characters that could forge a log line.
fn acceptable(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let safe = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    safe.then(|| text.to_owned())
}

/// Middleware: see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct RequestIds {
    /// Keep an incoming `X-Request-Id` (only behind a proxy you run).
    pub trust_incoming: bool,
}

impl<S, B> Transform<S, ServiceRequest> for RequestIds
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = RequestIdService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestIdService {
            service,
            trust_incoming: self.trust_incoming,
        }))
    }
}

/// The service [`RequestIds`] wraps around the application.
#[derive(Debug)]
pub struct RequestIdService<S> {
    service: S,
    trust_incoming: bool,
}

impl<S, B> Service<ServiceRequest> for RequestIdService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let incoming = self
            .trust_incoming
            .then(|| req.headers().get(&HEADER).and_then(acceptable))
            .flatten();
        let id = incoming.unwrap_or_else(new_id);
        if let Ok(value) = HeaderValue::from_str(&id) {
            req.headers_mut().insert(HEADER, value);
        }
        // The inner services do part of their work in `call` itself, the
        // rest when polled: both run with the id in scope.
        let response = REQUEST_ID.sync_scope(id.clone(), || self.service.call(req));
        Box::pin(async move {
            let mut response = REQUEST_ID.scope(id.clone(), response).await?;
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(HEADER, value);
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_incoming_ids_are_kept() {
        assert_eq!(
            acceptable(&HeaderValue::from_static("abc-123_x.y:z")),
            Some("abc-123_x.y:z".into())
        );
        assert_eq!(acceptable(&HeaderValue::from_static("a b")), None);
        assert_eq!(acceptable(&HeaderValue::from_static("")), None);
        assert_eq!(new_id().len(), 16);
    }
}
