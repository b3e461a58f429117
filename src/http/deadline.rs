//! Request deadlines (`HTTP_REQUEST_TIMEOUT`): a request whose head, or whose
//! body, has not arrived in time is answered `408 request_timeout` and its
//! connection is closed.
//!
//! actix-http times out only the head of a connection's *first* request
//! (`client_request_timeout`; actix-web issue #928), and never a body: a client
//! could send one quick request and then the next head a byte at a time, or
//! its headers at once and then its body a byte now and then, and hold the
//! connection and a worker's attention for as long as it liked. So:
//! - [`HeadDeadline`] wraps each connection's socket and times every head:
//!   from the connection's start for the first request, from the first byte
//!   after an answer for the next ones. When a head is late it reports the end
//!   of input to actix-http, which finishes what it was doing and shuts the
//!   connection; on the way out the wrapper writes the 408.
//! - [`BodyDeadline`] (middleware) tells the connection when a head has
//!   arrived and when it was answered, and wraps every request body with a
//!   deadline, so every body extractor gives up at the same moment, and the
//!   answer is the same whatever the extractor made of the error.

use std::cell::Cell;
use std::future::{Future, Ready, ready};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::LazyLock;
use std::task::{Context, Poll, ready as ready_poll};
use std::time::Duration;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::{Error, HttpMessage, ResponseError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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
        // The head is in: the connection's head deadline stops until the answer.
        let phase = req.conn_data::<Rc<ConnectionPhase>>().cloned();
        if let Some(phase) = &phase {
            phase.head_received();
        }
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
            let response = response.await;
            if let Some(phase) = phase {
                phase.answered();
            }
            let response = response?;
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

/// Where a connection is between requests; shared by its [`HeadDeadline`] and
/// [`BodyDeadline`] (through the connection's data).
#[derive(Debug, Default)]
pub struct ConnectionPhase {
    /// Request heads received on this connection so far.
    heads: Cell<u64>,
    /// A head has arrived and its answer is not made yet.
    serving: Cell<bool>,
}

impl ConnectionPhase {
    fn head_received(&self) {
        self.heads.set(self.heads.get() + 1);
        self.serving.set(true);
    }

    fn answered(&self) {
        self.serving.set(false);
    }
}

/// A connection's socket, with a deadline on every request head.
#[derive(Debug)]
pub struct HeadDeadline<T> {
    io: T,
    timeout: Duration,
    phase: Rc<ConnectionPhase>,
    /// The running deadline, and the number of heads received when it was
    /// set: a head received since makes it moot.
    deadline: Option<(Pin<Box<Sleep>>, u64)>,
    /// Set once a head is late: reads report the end of input, and the 408
    /// goes out when actix-http shuts the connection.
    late: Option<Late>,
}

#[derive(Debug)]
struct Late {
    /// Heads received when the deadline passed.
    heads: u64,
    /// Bytes of [`LATE_HEAD_ANSWER`] written so far.
    written: usize,
}

impl<T> HeadDeadline<T> {
    /// `io`, whose first request head must arrive within `timeout` from now.
    pub fn new(io: T, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            phase: Rc::default(),
            deadline: Some((Box::pin(tokio::time::sleep(timeout)), 0)),
            late: None,
        }
    }

    /// The state [`BodyDeadline`] updates; put in the connection's data.
    pub fn phase(&self) -> Rc<ConnectionPhase> {
        Rc::clone(&self.phase)
    }
}

/// The 408 for a late head. It bypasses the App (no request was ever
/// parsed), so it carries by hand the headers the App's middleware adds.
static LATE_HEAD_ANSWER: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let response = ApiError::RequestTimeout.error_response();
    let mut head = format!("HTTP/1.1 {}\r\n", response.status());
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("x-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\n");
    let body = response
        .into_body()
        .try_into_bytes()
        .unwrap_or_else(|_| Bytes::new());
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    let mut answer = head.into_bytes();
    answer.extend_from_slice(&body);
    answer
});

impl<T: AsyncRead + Unpin> AsyncRead for HeadDeadline<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.late.is_some() {
            return Poll::Ready(Ok(()));
        }
        let heads = this.phase.heads.get();
        let serving = this.phase.serving.get();
        if serving || this.deadline.as_ref().is_some_and(|(_, at)| *at != heads) {
            this.deadline = None;
        }
        // The deadline before the socket: a byte that happens to be waiting
        // does not excuse a late head.
        if let Some((deadline, _)) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.deadline = None;
            this.late = Some(Late { heads, written: 0 });
            return Poll::Ready(Ok(()));
        }
        let filled = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if !serving && this.deadline.is_none() && buf.filled().len() > filled {
            // The first byte of the next head: the whole head has `timeout`.
            let mut deadline = Box::pin(tokio::time::sleep(this.timeout));
            // Polled once so that it wakes the connection when it passes.
            let _ = deadline.as_mut().poll(cx);
            this.deadline = Some((deadline, heads));
        }
        read
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HeadDeadline<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // actix-http has flushed every answer it had; unless a request came
        // in after all, the late head gets its 408 before the close.
        if let Some(late) = this.late.as_mut()
            && late.heads == this.phase.heads.get()
            && !this.phase.serving.get()
        {
            let answer = LATE_HEAD_ANSWER.as_slice();
            while late.written < answer.len() {
                match ready_poll!(Pin::new(&mut this.io).poll_write(cx, &answer[late.written..])) {
                    Ok(0) => break,
                    Ok(n) => late.written += n,
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
            ready_poll!(Pin::new(&mut this.io).poll_flush(cx))?;
        }
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
