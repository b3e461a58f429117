//! A flaky network between simulated phones and real server processes: an
//! HTTP proxy that, per request, drops the request, drops the answer after the
//! server processed it, resets the connection, or delays the answer. One
//! request per connection (it asks the server to close), so each request meets
//! its own fate, and requests are spread over the upstream instances.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How often each fault happens, as fractions of requests.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// The request never reaches the server.
    pub drop_request: f64,
    /// The server answers; the answer never reaches the client.
    pub drop_answer: f64,
    /// The server answers; the client's connection is reset instead.
    pub reset: f64,
    /// The answer is held back up to `max_delay`.
    pub delay: f64,
    pub max_delay: Duration,
}

/// What the proxy did, for the report.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub requests: AtomicU64,
    pub dropped_requests: AtomicU64,
    pub dropped_answers: AtomicU64,
    pub resets: AtomicU64,
    pub delays: AtomicU64,
}

pub struct FlakyProxy {
    pub address: String,
    pub counts: Arc<FaultCounts>,
    accept: JoinHandle<()>,
}

impl FlakyProxy {
    pub async fn start(upstreams: Vec<SocketAddr>, faults: Faults) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let counts = Arc::new(FaultCounts::default());
        let next = Arc::new(AtomicUsize::new(0));
        let upstreams = Arc::new(upstreams);
        let task_counts = counts.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstreams[next.fetch_add(1, Ordering::Relaxed) % upstreams.len()];
                let counts = task_counts.clone();
                tokio::spawn(async move {
                    let _ = relay(client, upstream, faults, &counts).await;
                });
            }
        });
        Self {
            address,
            counts,
            accept,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// One request: read it whole, decide its fate, forward it, answer (or not).
async fn relay(
    mut client: TcpStream,
    upstream: SocketAddr,
    faults: Faults,
    counts: &FaultCounts,
) -> std::io::Result<()> {
    let Some(request) = read_request(&mut client).await? else {
        return Ok(());
    };
    counts.requests.fetch_add(1, Ordering::Relaxed);
    let (roll, delay) = {
        let mut rng = rand::thread_rng();
        (rng.r#gen::<f64>(), rng.r#gen::<f64>())
    };
    let mut threshold = faults.drop_request;
    if roll < threshold {
        counts.dropped_requests.fetch_add(1, Ordering::Relaxed);
        return Ok(()); // hang up: the server never saw it
    }
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&request).await?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).await?;

    threshold += faults.drop_answer;
    if roll < threshold {
        counts.dropped_answers.fetch_add(1, Ordering::Relaxed);
        return Ok(()); // the server acted; the client hears nothing
    }
    threshold += faults.reset;
    if roll < threshold {
        counts.resets.fetch_add(1, Ordering::Relaxed);
        client.set_zero_linger()?; // RST on close
        return Ok(());
    }
    threshold += faults.delay;
    if roll < threshold {
        counts.delays.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(faults.max_delay.mul_f64(delay)).await;
    }
    client.write_all(&answer).await?;
    client.shutdown().await
}

/// Reads one request (head and `Content-Length` body) and rewrites it to ask
/// the server to close the connection after answering. `None` if the client
/// went away first.
async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(None);
        }
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let request_line = lines.next().unwrap_or_default().to_owned();
    let mut length = 0usize;
    let mut headers = String::new();
    for line in lines {
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        headers.push_str(line);
        headers.push_str("\r\n");
    }
    while buf.len() < head_end + length {
        let n = client.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let mut request = format!("{request_line}\r\n{headers}Connection: close\r\n\r\n").into_bytes();
    request.extend_from_slice(&buf[head_end..head_end + length]);
    Ok(Some(request))
}
