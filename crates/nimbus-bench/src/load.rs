//! A closed-loop HTTP/1.1 load generator: `concurrency` keep-alive connections, each
//! sending its next request as soon as the previous response is read, for a bounded
//! time and count. It runs on one thread, so it takes at most one of the machine's
//! cores from the server under test.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
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
    /// The parsed request line and headers, built once per run so that the
    /// generator spends its time on the wire rather than on parsing.
    fn template(&self) -> Result<Template> {
        let mut headers = hyper::HeaderMap::new();
        headers.insert(hyper::header::HOST, self.address.to_string().parse()?);
        headers.insert(hyper::header::CONTENT_TYPE, "application/json".parse()?);
        for (name, value) in &self.headers {
            headers.insert(hyper::header::HeaderName::from_bytes(name.as_bytes())?, value.parse()?);
        }
        Ok(Template {
            uri: self.path.parse()?,
            headers,
        })
    }
}

#[derive(Clone)]
struct Template {
    uri: hyper::Uri,
    headers: hyper::HeaderMap,
}

impl Template {
    fn request(&self, body: &Bytes) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(body.clone()));
        *request.method_mut() = hyper::Method::POST;
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
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

/// What one load run measured. Latencies are in microseconds.
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

/// Runs `call` within `bounds`. Callers run it on a single-threaded runtime.
pub async fn run(call: &Call, bounds: Bounds) -> Result<Outcome> {
    let template = call.template()?;
    let mut connections = Vec::with_capacity(bounds.concurrency);
    for _ in 0..bounds.concurrency {
        connections.push(connect(call.address).await?);
    }
    if !bounds.warmup.is_zero() {
        let warm_until = Instant::now() + bounds.warmup;
        let warmers = connections
            .into_iter()
            .map(|sender| tokio::spawn(drive(call.clone(), template.clone(), sender, warm_until, u64::MAX)));
        connections = Vec::new();
        for warmer in warmers {
            let (sender, worker) = warmer.await?;
            if worker.failures > 0 {
                bail!(
                    "warm-up of {} failed: {}",
                    call.path,
                    worker.first_failure.unwrap_or_default()
                );
            }
            connections.push(sender);
        }
    }
    let started = Instant::now();
    let until = started + bounds.duration;
    let per_connection = bounds.max_requests.div_ceil(bounds.concurrency as u64);
    let workers = connections
        .into_iter()
        .map(|sender| tokio::spawn(drive(call.clone(), template.clone(), sender, until, per_connection)));
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

/// A histogram of microseconds from 1 µs to 10 minutes with 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

type Sender = http1::SendRequest<Full<Bytes>>;

async fn connect(address: SocketAddr) -> Result<Sender> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("connect to {address}"))?;
    stream.set_nodelay(true)?;
    let io = hyper_util::rt::TokioIo::new(stream);
    let (sender, connection) = http1::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

struct Worker {
    requests: u64,
    failures: u64,
    first_failure: Option<String>,
    latency_us: Histogram<u64>,
}

async fn drive(call: Call, template: Template, mut sender: Sender, until: Instant, limit: u64) -> (Sender, Worker) {
    let mut worker = Worker {
        requests: 0,
        failures: 0,
        first_failure: None,
        latency_us: histogram(),
    };
    while worker.requests + worker.failures < limit && Instant::now() < until {
        let sent = Instant::now();
        let result = send(&call, &template, &mut sender).await;
        let micros = sent.elapsed().as_micros() as u64;
        match result {
            Ok(()) => {
                worker.requests += 1;
                let _ = worker.latency_us.record(micros.max(1));
            }
            Err(error) => {
                worker.failures += 1;
                worker.first_failure.get_or_insert_with(|| format!("{error:#}"));
                if sender.is_closed() {
                    match connect(call.address).await {
                        Ok(fresh) => sender = fresh,
                        Err(_) => break,
                    }
                }
            }
        }
    }
    (sender, worker)
}

async fn send(call: &Call, template: &Template, sender: &mut Sender) -> Result<()> {
    sender.ready().await?;
    let response = sender.send_request(template.request(&call.body)).await?;
    let status = response.status();
    let function_error = response.headers().contains_key("x-function-error");
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() || function_error || !contains(&body, call.expect.as_bytes()) {
        bail!(
            "status {status}, function error {function_error}, body {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window == needle)
}
