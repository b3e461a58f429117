//! Many keep-alive connections, as mobile apps hold them: the two halves of
//! `benches/connections.sh`, each its own process so that the probe's
//! latencies are not the holder's scheduling.
//!
//! `hold`: opens `--connections` keep-alive connections to a running server,
//! spread over `--addresses` source addresses 127.0.0.2, 127.0.0.3, … (the
//! server caps connections per address, `HTTP_MAX_CONNECTIONS_PER_IP`), and
//! polls `GET /me` on each every `--interval` seconds (jittered) for
//! `--seconds`. It writes `open` to `--ready-file` once every connection is
//! open, and prints requests, answers, errors, and connections the server
//! closed (reopened at once).
//!
//! `probe`: for `--seconds`, one keep-alive connection of its own (from
//! 127.0.0.1) sending `GET /me` every 20 ms, and once a second a brand-new
//! connection (from 127.0.0.250) sending one `GET /me`; prints the
//! percentiles of both and how many new clients connected.
//!
//! ```sh
//! cargo bench --bench connections -- hold --port 18080 --token "$TOKEN" --connections 10000 \
//!     --addresses 40 --interval 3 --seconds 90 --ready-file /tmp/ready
//! cargo bench --bench connections -- probe --port 18080 --token "$TOKEN" --seconds 20
//! ```

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

struct Args {
    mode: String,
    port: u16,
    token: String,
    connections: usize,
    addresses: u8,
    interval: f64,
    seconds: u64,
    ready_file: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        mode: String::new(),
        port: 18080,
        token: String::new(),
        connections: 10_000,
        addresses: 40,
        interval: 3.0,
        seconds: 60,
        ready_file: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "hold" | "probe" => args.mode = flag.clone(),
            "--port" => args.port = value().parse().expect("--port N"),
            "--token" => args.token = value(),
            "--connections" => args.connections = value().parse().expect("--connections N"),
            "--addresses" => args.addresses = value().parse().expect("--addresses N (<= 200)"),
            "--interval" => args.interval = value().parse().expect("--interval SECONDS"),
            "--seconds" => args.seconds = value().parse().expect("--seconds N"),
            "--ready-file" => args.ready_file = Some(value()),
            // `cargo bench` passes --bench; ignore anything else of the harness.
            _ => {}
        }
    }
    assert!(
        !args.mode.is_empty() && !args.token.is_empty() && args.addresses <= 200,
        "usage: connections (hold|probe) --port N --token T [--connections N] [--addresses N] \
         [--interval S] [--seconds N] [--ready-file PATH]"
    );
    args
}

fn main() {
    let args = parse_args();
    // One thread each: the holder must not take the server's cores, and the
    // probe measures the server, not its own scheduling.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    match args.mode.as_str() {
        "hold" => runtime.block_on(hold(args)),
        _ => runtime.block_on(probe(args)),
    }
}

/// One HTTP/1.1 keep-alive connection that sends `GET /me` and reads the answer.
struct Client {
    reader: BufReader<TcpStream>,
    request: Arc<Vec<u8>>,
}

impl Client {
    async fn connect(from: Ipv4Addr, port: u16, request: Arc<Vec<u8>>) -> std::io::Result<Self> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
        let stream = socket
            .connect(SocketAddr::from(([127, 0, 0, 1], port)))
            .await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::with_capacity(1024, stream),
            request,
        })
    }

    /// One request; the status code of its answer.
    async fn me(&mut self) -> std::io::Result<u16> {
        self.reader.get_mut().write_all(&self.request).await?;
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or(std::io::ErrorKind::InvalidData)?;
        let mut length = 0usize;
        loop {
            line.clear();
            if self.reader.read_line(&mut line).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| std::io::ErrorKind::InvalidData)?;
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok(status)
    }
}

fn me_request(token: &str) -> Arc<Vec<u8>> {
    Arc::new(
        format!(
            "GET /me HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n\
             User-Agent: connections-bench\r\n\r\n"
        )
        .into_bytes(),
    )
}

#[derive(Default)]
struct Counts {
    open: AtomicU64,
    requests: AtomicU64,
    ok: AtomicU64,
    not_ok: AtomicU64,
    closed_by_server: AtomicU64,
    connect_errors: AtomicU64,
    /// The latest a poll started after its time, in milliseconds (the
    /// holder's own scheduling on a busy machine).
    max_late_ms: AtomicU64,
}

async fn hold(args: Args) {
    let request = me_request(&args.token);
    let counts = Arc::new(Counts::default());
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let interval = Duration::from_secs_f64(args.interval);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let from = Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(args.addresses)) as u8);
        let (request, counts) = (request.clone(), counts.clone());
        // Spread the polls over the interval, so the load is steady.
        let offset = interval.mul_f64((i as f64 * 0.618_034) % 1.0);
        tasks.push(tokio::spawn(async move {
            let mut client = None;
            let mut next = Instant::now() + offset;
            while Instant::now() < deadline {
                if client.is_none() {
                    match Client::connect(from, args.port, request.clone()).await {
                        Ok(c) => {
                            counts.open.fetch_add(1, Ordering::Relaxed);
                            client = Some(c);
                        }
                        Err(_) => {
                            counts.connect_errors.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    }
                }
                tokio::time::sleep_until(next.into()).await;
                let late = next.elapsed().as_millis() as u64;
                counts.max_late_ms.fetch_max(late, Ordering::Relaxed);
                next += interval;
                let c = client.as_mut().expect("connected above");
                counts.requests.fetch_add(1, Ordering::Relaxed);
                match c.me().await {
                    Ok(200) => counts.ok.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => counts.not_ok.fetch_add(1, Ordering::Relaxed),
                    Err(_) => {
                        counts.open.fetch_sub(1, Ordering::Relaxed);
                        client = None;
                        counts.closed_by_server.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
        // A gentle ramp (about 2,000 new connections a second): the listen
        // backlog is not what is measured.
        if i % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mut reported = false;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let open = counts.open.load(Ordering::Relaxed);
        if !reported && open as usize >= args.connections {
            reported = true;
            eprintln!(
                "hold: {open} connections open after {:.1} s",
                started.elapsed().as_secs_f64()
            );
            if let Some(path) = &args.ready_file {
                std::fs::write(path, "open\n").expect("write the ready file");
            }
        }
    }
    let open_at_end = counts.open.load(Ordering::Relaxed);
    for task in tasks {
        task.abort();
    }
    println!(
        "hold: {} connections over {} source addresses, one GET /me each every {} s for {} s: \
         open at the end {open_at_end}, requests {}, 200 {}, other statuses {}, \
         closed by the server {} (reopened), connect errors {}, latest poll {} ms after its time",
        args.connections,
        args.addresses,
        args.interval,
        args.seconds,
        counts.requests.load(Ordering::Relaxed),
        counts.ok.load(Ordering::Relaxed),
        counts.not_ok.load(Ordering::Relaxed),
        counts.closed_by_server.load(Ordering::Relaxed),
        counts.connect_errors.load(Ordering::Relaxed),
        counts.max_late_ms.load(Ordering::Relaxed),
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

async fn probe(args: Args) {
    let request = me_request(&args.token);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);

    // New clients: a fresh connection (and request) once a second.
    let fresh = {
        let request = request.clone();
        tokio::spawn(async move {
            let (mut times, mut failures) = (Vec::new(), 0u32);
            while Instant::now() < deadline {
                let start = Instant::now();
                let answer = tokio::time::timeout(Duration::from_secs(5), async {
                    let mut c =
                        Client::connect(Ipv4Addr::new(127, 0, 0, 250), args.port, request.clone())
                            .await?;
                    c.me().await
                })
                .await;
                match answer {
                    Ok(Ok(200)) => times.push(start.elapsed()),
                    _ => failures += 1,
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            (times, failures)
        })
    };

    let mut latencies = Vec::new();
    let mut errors = 0u32;
    let mut client = Client::connect(Ipv4Addr::LOCALHOST, args.port, request.clone())
        .await
        .expect("the probe connects");
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while Instant::now() < deadline {
        tick.tick().await;
        let start = Instant::now();
        match client.me().await {
            Ok(200) => latencies.push(start.elapsed()),
            _ => {
                errors += 1;
                client = Client::connect(Ipv4Addr::LOCALHOST, args.port, request.clone())
                    .await
                    .expect("the probe reconnects");
            }
        }
    }
    latencies.sort();
    let (mut fresh_times, fresh_failures) = fresh.await.expect("the new-client task");
    fresh_times.sort();
    println!(
        "probe: GET /me on its own keep-alive connection every 20 ms for {} s: {} answers, \
         {errors} errors, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        args.seconds,
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    println!(
        "probe: new clients (connect + GET /me), one a second: {} connected and answered, \
         {fresh_failures} failed; p50 {:.2} ms, max {:.2} ms",
        fresh_times.len(),
        percentile(&fresh_times, 0.50),
        percentile(&fresh_times, 1.0),
    );
}
