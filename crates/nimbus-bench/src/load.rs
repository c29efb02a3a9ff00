//! A closed-loop HTTP/1.1 load generator: `concurrency` keep-alive connections, each
//! sending its next request as soon as the previous response is read, for a bounded
//! time and count. It runs on one thread, so it takes at most one of the machine's
//! cores from the server under test.
//!
//! Each connection writes a request serialized once and parses the response with
//! httparse: one write and usually one read per request. A general HTTP client
//! (hyper's, through its connection task and channels) cost about three times the
//! CPU per request here, which made the generator the bottleneck.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One request, sent again and again.
#[derive(Debug, Clone)]
pub struct Call {
    pub address: SocketAddr,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// A byte string the response body must contain for the call to count as a
    /// success.
    pub expect: &'static str,
}

impl Call {
    /// Serializes the request to its bytes on the wire.
    fn serialize(&self) -> Bytes {
        let mut request = format!(
            "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            self.path,
            self.address,
            self.body.len()
        );
        for (name, value) in &self.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = BytesMut::from(request.as_bytes());
        bytes.extend_from_slice(&self.body);
        bytes.freeze()
    }
}

/// Bounds of one load run.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub concurrency: usize,
    /// Untimed requests first, to warm the target.
    pub warmup: Duration,
    pub duration: Duration,
    pub max_requests: u64,
}

/// Measurements of one load run. Latencies are in microseconds.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub requests: u64,
    pub failures: u64,
    pub first_failure: Option<String>,
    pub elapsed: Duration,
    pub latency_us: Histogram<u64>,
}

impl Outcome {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at `quantile` (0 to 1) in milliseconds.
    pub fn ms(&self, quantile: f64) -> f64 {
        self.latency_us.value_at_quantile(quantile) as f64 / 1000.0
    }
}

/// Returns a histogram of microseconds from 1 µs to 10 minutes with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Runs `call` within `bounds`. Callers run it on a single-threaded runtime.
pub async fn run(call: &Call, bounds: Bounds) -> Result<Outcome> {
    let request = call.serialize();
    let mut connections = Vec::with_capacity(bounds.concurrency);
    for _ in 0..bounds.concurrency {
        connections.push(Connection::open(call.address).await?);
    }
    if !bounds.warmup.is_zero() {
        let warm_until = Instant::now() + bounds.warmup;
        let warmers: Vec<_> = connections
            .drain(..)
            .map(|connection| tokio::spawn(drive(call.clone(), request.clone(), connection, warm_until, u64::MAX)))
            .collect();
        for warmer in warmers {
            let (connection, worker) = warmer.await?;
            if worker.failures > 0 {
                bail!(
                    "warm-up of {} failed: {}",
                    call.path,
                    worker.first_failure.unwrap_or_default()
                );
            }
            connections.push(connection);
        }
    }
    let started = Instant::now();
    let until = started + bounds.duration;
    let per_connection = bounds.max_requests.div_ceil(bounds.concurrency as u64);
    let workers: Vec<_> = connections
        .into_iter()
        .map(|connection| tokio::spawn(drive(call.clone(), request.clone(), connection, until, per_connection)))
        .collect();
    let mut outcome = Outcome {
        requests: 0,
        failures: 0,
        first_failure: None,
        elapsed: Duration::ZERO,
        latency_us: histogram(),
    };
    for worker in workers {
        let (_, worker) = worker.await?;
        outcome.requests += worker.requests;
        outcome.failures += worker.failures;
        if outcome.first_failure.is_none() {
            outcome.first_failure = worker.first_failure;
        }
        outcome.latency_us.add(&worker.latency_us)?;
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// A keep-alive connection and the bytes read past the last response.
struct Connection {
    address: SocketAddr,
    stream: Option<TcpStream>,
    buffer: BytesMut,
}

impl Connection {
    async fn open(address: SocketAddr) -> Result<Connection> {
        let mut connection = Connection {
            address,
            stream: None,
            buffer: BytesMut::with_capacity(16 * 1024),
        };
        connection.reconnect().await?;
        Ok(connection)
    }

    async fn reconnect(&mut self) -> Result<()> {
        self.buffer.clear();
        let stream = TcpStream::connect(self.address)
            .await
            .with_context(|| format!("connect to {}", self.address))?;
        stream.set_nodelay(true)?;
        self.stream = Some(stream);
        Ok(())
    }

    /// Sends the request and reads one response; fails on a non-2xx status, a
    /// function error or a body without `expect`.
    async fn exchange(&mut self, request: &[u8], expect: &[u8]) -> Result<()> {
        let stream = self.stream.as_mut().context("the connection is closed")?;
        stream.write_all(request).await?;
        let (status, function_error, header_length, body_length) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(header_length) = response.parse(&self.buffer)? {
                let mut content_length = None;
                let mut function_error = false;
                for header in response.headers.iter() {
                    if header.name.eq_ignore_ascii_case("content-length") {
                        content_length = std::str::from_utf8(header.value)?.trim().parse::<usize>().ok();
                    } else if header.name.eq_ignore_ascii_case("x-function-error") {
                        function_error = true;
                    } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                        bail!("the response is chunked; the generator reads only Content-Length bodies");
                    }
                }
                let length = content_length.context("a response without Content-Length")?;
                break (response.code.unwrap_or(0), function_error, header_length, length);
            }
            if stream.read_buf(&mut self.buffer).await? == 0 {
                bail!("the server closed the connection");
            }
        };
        while self.buffer.len() < header_length + body_length {
            if stream.read_buf(&mut self.buffer).await? == 0 {
                bail!("the server closed the connection in a response body");
            }
        }
        let body = &self.buffer[header_length..header_length + body_length];
        let ok = (200..300).contains(&status) && !function_error && contains(body, expect);
        let failure = (!ok).then(|| {
            format!(
                "status {status}, function error {function_error}, body {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            )
        });
        self.buffer.advance(header_length + body_length);
        match failure {
            None => Ok(()),
            Some(failure) => bail!(failure),
        }
    }
}

struct Worker {
    requests: u64,
    failures: u64,
    first_failure: Option<String>,
    latency_us: Histogram<u64>,
}

async fn drive(
    call: Call,
    request: Bytes,
    mut connection: Connection,
    until: Instant,
    limit: u64,
) -> (Connection, Worker) {
    let mut worker = Worker {
        requests: 0,
        failures: 0,
        first_failure: None,
        latency_us: histogram(),
    };
    while worker.requests + worker.failures < limit && Instant::now() < until {
        let sent = Instant::now();
        let result = connection.exchange(&request, call.expect.as_bytes()).await;
        let micros = sent.elapsed().as_micros() as u64;
        match result {
            Ok(()) => {
                worker.requests += 1;
                let _ = worker.latency_us.record(micros.max(1));
            }
            Err(error) => {
                worker.failures += 1;
                worker.first_failure.get_or_insert_with(|| format!("{error:#}"));
                // After a failed exchange the stream's position is unknown.
                if connection.reconnect().await.is_err() {
                    break;
                }
            }
        }
    }
    (connection, worker)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_serializes_with_its_length() {
        let call = Call {
            address: "127.0.0.1:9".parse().unwrap(),
            path: "/functions/f/invocations".into(),
            headers: vec![("authorization".into(), "Bearer k".into())],
            body: Bytes::from_static(b"{}"),
            expect: "ok",
        };
        let text = String::from_utf8(call.serialize().to_vec()).unwrap();
        assert!(text.starts_with("POST /functions/f/invocations HTTP/1.1\r\n"), "{text}");
        assert!(text.contains("content-length: 2\r\n"), "{text}");
        assert!(text.contains("authorization: Bearer k\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{}"), "{text}");
    }

    #[tokio::test]
    async fn run_counts_failures_with_reason() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // Every other response, counted over all connections, lacks `"ok"`.
        let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let calls = calls.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while socket.read(&mut buffer).await.unwrap_or(0) > 0 {
                        let calls = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                        let body = if calls % 2 == 0 { "{\"ok\":true}" } else { "{\"no\":1}" };
                        let response = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                        socket.write_all(response.as_bytes()).await.unwrap();
                    }
                });
            }
        });
        let call = Call {
            address,
            path: "/".into(),
            headers: Vec::new(),
            body: Bytes::from_static(b"{}"),
            expect: "\"ok\"",
        };
        let bounds = Bounds {
            concurrency: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(10),
            max_requests: 4,
        };
        let outcome = run(&call, bounds).await.unwrap();
        assert_eq!((outcome.requests, outcome.failures), (2, 2));
        assert!(outcome.first_failure.unwrap().contains("{\"no\":1}"));
    }
}
