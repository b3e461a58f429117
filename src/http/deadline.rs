//! The body deadline: a request whose body has not arrived within
//! `HTTP_REQUEST_TIMEOUT` of its head is answered `408 request_timeout` and its
//! connection is closed.
//!
//! actix-http times out a request's head (`client_request_timeout`) but never
//! its body: a client that sends its headers at once, then one byte now and
//! then, would hold the connection and the worker's attention for as long as it
//! likes. [`BodyDeadline`] wraps the body stream of every request with a
//! deadline, so every body extractor gives up at the same moment, and the
//! answer is the same whatever the extractor made of the error.

use std::cell::Cell;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError};
use tokio::time::{Instant, Sleep};

use crate::error::ApiError;

/// Middleware: the request body must have arrived within `timeout` of the
/// moment its head did.
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline {
    timeout: Duration,
}

impl BodyDeadline {
    pub fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

/// Whether a payload error is the body deadline passing (as opposed to a
/// client that went away or sent a malformed chunk).
pub fn is_deadline_error(err: &PayloadError) -> bool {
    matches!(err, PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

impl<S, B> Transform<S, ServiceRequest> for BodyDeadline
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = BodyDeadlineService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(BodyDeadlineService {
            service,
            timeout: self.timeout,
        }))
    }
}

/// The service [`BodyDeadline`] wraps around the application.
#[derive(Debug)]
pub struct BodyDeadlineService<S> {
    service: S,
    timeout: Duration,
}

type ResponseFuture<B> =
    Pin<Box<dyn Future<Output = Result<ServiceResponse<EitherBody<B>>, Error>>>>;

impl<S, B> Service<ServiceRequest> for BodyDeadlineService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = ResponseFuture<B>;

    forward_ready!(service);

    fn call(&self, mut req: ServiceRequest) -> Self::Future {
        let body = req.take_payload();
        // Requests without a body (most GETs, the hot path) are left alone.
        let expired = if matches!(body, Payload::None) {
            None
        } else {
            let expired = Rc::new(Cell::new(false));
            let stream = DeadlineBody {
                body,
                deadline: Box::pin(tokio::time::sleep_until(Instant::now() + self.timeout)),
                expired: Rc::clone(&expired),
            };
            req.set_payload(Payload::from(
                Box::pin(stream) as actix_http::BoxedPayloadStream
            ));
            Some(expired)
        };
        let response = self.service.call(req);
        Box::pin(async move {
            let response = response.await?;
            if expired.is_some_and(|expired| expired.get()) {
                // Whatever the extractor made of the cut-off body, the answer
                // is a 408 that closes the connection: the rest of the body
                // may still be on its way, and closing is what frees the slot.
                let (request, _) = response.into_parts();
                let answer = ApiError::RequestTimeout.error_response();
                return Ok(ServiceResponse::new(request, answer).map_into_right_body());
            }
            Ok(response.map_into_left_body())
        })
    }
}

/// A request body that ends with a timeout error once its deadline passes.
struct DeadlineBody {
    body: Payload,
    deadline: Pin<Box<Sleep>>,
    expired: Rc<Cell<bool>>,
}

impl futures_core::Stream for DeadlineBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.expired.get() {
            return Poll::Ready(None);
        }
        // The deadline first: a client that keeps a trickle going must not
        // be let through just because a byte happens to be waiting.
        if this.deadline.as_mut().poll(cx).is_ready() {
            this.expired.set(true);
            return Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            )))));
        }
        Pin::new(&mut this.body).poll_next(cx)
    }
}
