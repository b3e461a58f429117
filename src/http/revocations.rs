//! `GET /revocations`: the revocation feed, for the app's own backends.
//!
//! A backend that verifies access tokens itself (with the JWKS) learns here
//! which sessions were revoked while their tokens may still be unexpired:
//! the snapshot as JSON, or, with `Accept: text/event-stream`, Server-Sent
//! Events: `event: snapshot` first, then `event: revoked` for each
//! revocation new to this instance's set (made here, or pushed from another
//! instance by PostgreSQL NOTIFY), and a `: keep-alive` comment every
//! `REVOCATIONS_KEEPALIVE` seconds.
//!
//! Read-only: the handler subscribes to the revocation set, it never writes
//! it. Nothing is buffered without bound for a subscriber: each stream has a
//! small outbox, and a subscriber is dropped (its stream ended) when it falls
//! [`FEED_CAPACITY`](crate::auth::revocations::FEED_CAPACITY) revocations behind, or takes nothing for two keep-alive
//! periods while something waits for it. It reconnects to a fresh snapshot.
//! Streams end when a graceful shutdown starts.
//!
//! The key is one of `BACKEND_API_KEYS` as a Bearer token; with none
//! configured the route does not exist (`404`).

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::http::Method;
use actix_web::http::header;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use utoipa::ToSchema;

use super::AppState;
use super::extract::bearer_token;
use crate::auth::TokenError;
use crate::auth::revocations::Revocation;
use crate::error::ApiError;
use crate::telemetry::Telemetry;

/// Chunks waiting for a subscriber's connection to take them.
const OUTBOX: usize = 64;

/// The sessions whose access tokens may still be unexpired.
#[derive(Debug, Serialize, ToSchema)]
pub struct RevocationSnapshot {
    pub revoked: Vec<RevokedSession>,
}

/// One revoked session (also the data of each `event: revoked`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RevokedSession {
    pub session_id: uuid::Uuid,
    pub user_id: uuid::Uuid,
    #[serde(serialize_with = "crate::http::timestamp")]
    pub revoked_at: chrono::DateTime<chrono::Utc>,
    /// No access token of the session verifies after this: forget the entry then.
    #[serde(serialize_with = "crate::http::timestamp")]
    pub forget_after: chrono::DateTime<chrono::Utc>,
}

/// The revocation feed for the app's backends (service key).
#[utoipa::path(
    get,
    path = "/revocations",
    tag = "backends",
    security(("service_key" = [])),
    responses(
        (status = 200, description = "Sessions revoked recently enough that their access tokens may still be unexpired. With `Accept: text/event-stream`, a Server-Sent Events stream instead: `event: snapshot` (this JSON), then `event: revoked` with one `RevokedSession` per revocation as it happens on any instance, and a `: keep-alive` comment at least every 15 s. A subscriber that falls far behind is disconnected; reconnect for a fresh snapshot. Entries may repeat: applying one twice changes nothing.",
            content(
                (RevocationSnapshot = "application/json"),
                (String = "text/event-stream", example = "event: snapshot\ndata: {\"revoked\":[]}\n\n: keep-alive\n\nevent: revoked\ndata: {\"session_id\":\"6f1c1f0e-8a61-4a8e-9b1e-2f4f5d1c0a11\",\"user_id\":\"0b7e5c1a-3f2d-4c8e-9a6b-1d2e3f4a5b6c\",\"revoked_at\":\"2026-11-27T17:00:00.123Z\",\"forget_after\":\"2026-11-27T17:15:35.123Z\"}\n\n"),
            )),
    )
)]
pub async fn revocations(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if state.service_keys.is_empty() {
        return Err(ApiError::NotFound);
    }
    // Every method reaches here (the route list serves it for any), so that
    // without service keys even a POST gets the 404 of a route that does not exist.
    if req.method() != Method::GET {
        return Err(ApiError::MethodNotAllowed {
            allow: "GET".into(),
        });
    }
    let authorized = bearer_token(req.headers().get(header::AUTHORIZATION))
        .is_ok_and(|key| state.service_keys.accepts(key));
    if !authorized {
        return Err(ApiError::InvalidToken(TokenError::NotAServiceKey));
    }
    let now = state.clock.now();
    if !wants_event_stream(&req) {
        return Ok(HttpResponse::Ok().json(RevocationSnapshot {
            revoked: state
                .revocations
                .snapshot(now)
                .into_iter()
                .map(RevokedSession::from)
                .collect(),
        }));
    }
    let mut response = HttpResponse::Ok();
    response
        .content_type("text/event-stream")
        // Tells nginx not to buffer the stream.
        .insert_header(("X-Accel-Buffering", "no"));
    if super::head::was_head(&req) {
        // The head of the stream, and no stream to keep open for nobody.
        return Ok(response.finish());
    }

    let (snapshot, feed) = state.revocations.subscribe(now);
    let (outbox, stream) = mpsc::channel(OUTBOX);
    let first = event(
        "snapshot",
        &RevocationSnapshot {
            revoked: snapshot.into_iter().map(RevokedSession::from).collect(),
        },
    );
    // The outbox is new and empty: this cannot fail.
    let _ = outbox.try_send(first);
    actix_web::rt::spawn(forward(
        feed,
        outbox,
        state.closing.subscribe(),
        state.feed_keepalive,
        Subscriber::new(state.telemetry.clone()),
    ));
    Ok(response.streaming(Outbox(stream)))
}

/// Does the request accept Server-Sent Events?
fn wants_event_stream(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|media| {
            media
                .split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

/// Moves revocations from the set's broadcast into one subscriber's outbox,
/// with keep-alives, until the subscriber goes away, falls behind, or the
/// server shuts down.
async fn forward(
    mut feed: broadcast::Receiver<Revocation>,
    outbox: mpsc::Sender<Bytes>,
    mut closing: tokio::sync::watch::Receiver<bool>,
    keepalive: Duration,
    subscriber: Subscriber,
) {
    let closed = closing.wait_for(|closing| *closing);
    tokio::pin!(closed);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Taking nothing for this long while something waits for it is stuck.
    let stuck_after = keepalive * 2;
    loop {
        let chunk = tokio::select! {
            biased;
            _ = &mut closed => return,
            _ = outbox.closed() => return,
            received = feed.recv() => match received {
                Ok(revocation) => event("revoked", &RevokedSession::from(revocation)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    subscriber.dropped(&format!("{missed} revocations behind"));
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = ticks.tick() => Bytes::from_static(b": keep-alive\n\n"),
        };
        let room = tokio::select! {
            biased;
            _ = &mut closed => return,
            room = tokio::time::timeout(stuck_after, outbox.reserve()) => room,
        };
        match room {
            Ok(Ok(permit)) => permit.send(chunk),
            // The client went away.
            Ok(Err(_)) => return,
            Err(_) => {
                subscriber.dropped("it took nothing for two keep-alive periods");
                return;
            }
        }
    }
}

/// One `event:` of the stream, with its JSON `data:` line.
fn event(name: &str, data: &impl Serialize) -> Bytes {
    let json = serde_json::to_string(data).unwrap_or_default();
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

impl From<Revocation> for RevokedSession {
    fn from(r: Revocation) -> Self {
        Self {
            session_id: r.session_id,
            user_id: r.user_id,
            revoked_at: r.revoked_at,
            forget_after: r.forget_after,
        }
    }
}

/// Counts an open stream in `/metrics` for as long as it lives.
struct Subscriber {
    telemetry: std::sync::Arc<Telemetry>,
}

impl Subscriber {
    fn new(telemetry: std::sync::Arc<Telemetry>) -> Self {
        telemetry.feed_subscribers.inc();
        Self { telemetry }
    }

    fn dropped(&self, why: &str) {
        self.telemetry.feed_dropped.inc();
        log::warn!("revocation feed: a subscriber was dropped: {why}; it will reconnect");
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.telemetry.feed_subscribers.dec();
    }
}

/// The response body: what [`forward`] puts in the outbox. Ends when the
/// forwarder does (its sender dropped).
struct Outbox(mpsc::Receiver<Bytes>);

impl futures_core::Stream for Outbox {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|chunk| chunk.map(Ok))
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Outbox")
    }
}
