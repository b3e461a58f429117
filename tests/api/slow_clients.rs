//! Slow clients (API.md, "Input rules"): a request whose headers or body do
//! not arrive within `HTTP_REQUEST_TIMEOUT` gets `408` and its connection is
//! closed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::spawn_app_with;

/// The head of a `/login` whose body is announced but will come slowly.
const SLOW_LOGIN_HEAD: &[u8] = b"POST /login HTTP/1.1\r\nHost: auth\r\n\
    Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"email\": ";

/// What a client got on one connection before the server closed it.
struct Answer {
    bytes: Vec<u8>,
    /// From the moment the request was sent to the close.
    after: Duration,
}

impl Answer {
    fn status_line(&self) -> String {
        let text = String::from_utf8_lossy(&self.bytes);
        text.lines().next().unwrap_or_default().to_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(&self.bytes);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        head.lines().skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
    }

    fn json(&self) -> Value {
        let text = String::from_utf8_lossy(&self.bytes);
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        serde_json::from_str(body).unwrap_or_else(|e| panic!("a JSON body ({e}): {text}"))
    }
}

/// Sends `head`, then one byte of body every 200 ms (a slow client keeping its
/// request alive), until the server answers or closes; returns what it got.
async fn trickle(stream: TcpStream, head: &'static [u8], within: Duration) -> Answer {
    let (mut reader, mut writer) = stream.into_split();
    let sent = Instant::now();
    let writing = tokio::spawn(async move {
        if writer.write_all(head).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if writer.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(within, async {
        loop {
            match reader.read(&mut chunk).await {
                // A reset after the answer (the trickle raced the close) still
                // ends the connection: what was read is what the client got.
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    writing.abort();
                    bytes.extend_from_slice(&chunk[..n]);
                }
            }
        }
    })
    .await;
    writing.abort();
    assert!(read.is_ok(), "the connection stayed open for {within:?}");
    Answer {
        bytes,
        after: sent.elapsed(),
    }
}

fn socket_of(address: &str) -> SocketAddr {
    address
        .trim_start_matches("http://")
        .parse()
        .expect("an http://ip:port address")
}

fn assert_json_408(answer: &Answer) {
    let text = String::from_utf8_lossy(&answer.bytes);
    assert!(answer.status_line().starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(
        answer.header("connection").as_deref(),
        Some("close"),
        "{text}"
    );
    assert!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{text}"
    );
    let body = answer.json();
    assert_eq!(body["error"], "request_timeout", "{body}");
    assert!(body["message"].is_string(), "{body}");
}

#[tokio::test]
async fn a_body_that_trickles_past_the_timeout_gets_a_json_408_and_is_closed() {
    let app = spawn_app_with(&[("HTTP_REQUEST_TIMEOUT", "1")]).await;
    let server = socket_of(&app.address);
    let stream = TcpStream::connect(server).await.unwrap();

    let answer = trickle(stream, SLOW_LOGIN_HEAD, Duration::from_secs(5)).await;

    assert_json_408(&answer);
    assert!(
        answer.after >= Duration::from_millis(900) && answer.after < Duration::from_secs(3),
        "answered after {:?}",
        answer.after
    );
    // The same server still serves a prompt client.
    let r = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn headers_that_never_finish_get_a_408_and_the_connection_is_closed() {
    let app = spawn_app_with(&[("HTTP_REQUEST_TIMEOUT", "1")]).await;
    let mut stream = TcpStream::connect(socket_of(&app.address)).await.unwrap();
    let sent = Instant::now();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: auth\r\nX-Slow: ")
        .await
        .unwrap();

    let mut bytes = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut bytes)).await;

    assert!(read.is_ok(), "the connection stayed open");
    let answer = Answer {
        bytes,
        after: sent.elapsed(),
    };
    assert!(
        answer.status_line().starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&answer.bytes)
    );
    assert!(
        answer.after < Duration::from_secs(3),
        "after {:?}",
        answer.after
    );
}
