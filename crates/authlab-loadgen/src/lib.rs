//! A small closed-loop HTTP/1.1 load generator, in the manner of wrk, oha and rewrk.
//!
//! `authlab compare` drives every route with this crate so that the routes' numbers differ only by
//! what the server does, never by how they were measured. It knows nothing of authlab: it sends
//! one request again and again and writes down how long each answer took.
//!
//! # How a run works
//! - **Closed loop, fixed concurrency.** [`LoadSpec::connections`] tasks each open one keep-alive
//!   TCP connection (`hyper::client::conn::http1`, no pool, no proxy, no DNS) and send the next
//!   request as soon as the previous answer is read in full. So the offered load adapts to the
//!   server: this measures the throughput the server sustains, like `wrk -c N`.
//! - **Warm-up, then measurement.** Requests that *start* during [`LoadSpec::warmup`] are sent but
//!   not recorded (caches, connection set-up, CPU frequency); requests that start during the next
//!   [`LoadSpec::duration`] are recorded; the rest are abandoned when the window closes.
//! - **Latency** is kept in one [`hdrhistogram`] per connection (3 significant digits, in
//!   microseconds) and merged at the end, so recording costs no lock and no allocation.
//! - **Nothing is hidden.** Every answer that is not 2xx is counted by status code, and every
//!   transport failure (refused, reset, timed out) is counted too; a connection that fails is
//!   re-opened and the loop goes on.
//! - **Its own runtime.** [`run_blocking`] builds a Tokio runtime with
//!   [`LoadSpec::threads`] worker threads, so the generator never shares a scheduler with the
//!   server it measures (which matters when both live in one process, as in `authlab compare`).
//!
//! Closed-loop generators understate tail latency when the server stalls (coordinated omission:
//! a stalled connection stops sending, so the stall is recorded once, not once per request that
//! would have been sent). The percentiles here are per *completed* request, as wrk reports them.
//!
//! # Layout
//! - [`LoadSpec`]: what to send, how hard, for how long; [`Progress`]: the caller's progress line,
//!   redrawn from a [`Tick`]; [`LoadSpec::cancel`]: ending a run early (Ctrl-C);
//! - [`run_blocking`] / [`run`]: a run; [`LoadReport`]: what it found;
//! - [`fetch`]: one request on a fresh connection, for setting up a run (register, log in);
//!   [`KeepAlive`]: single requests on one kept connection, for probes that time one answer.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::rt::TokioIo;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Re-exported so callers can build requests without depending on hyper themselves.
mod ctrl_c;

pub use ctrl_c::{CtrlC, CtrlCMessages};
pub use hyper::{Method, header};

/// Highest latency the histograms can hold (60 s); slower answers are clamped to it.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What can go wrong before or around a run (failures *during* a run are counted, not raised).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The Tokio runtime for the generator could not be built.
    #[error("cannot start the load generator's runtime")]
    Runtime(#[source] std::io::Error),
    /// No TCP connection could be made to the target.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The target.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed (handshake, request, or reading the answer).
    #[error("HTTP request to {addr} failed")]
    Http {
        /// The target.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: hyper::Error,
    },
    /// The request could not be built (a header name or value that HTTP does not allow).
    #[error("invalid request")]
    InvalidRequest(#[source] hyper::http::Error),
    /// No answer within the time allowed.
    #[error("no answer from {addr} within {after:?}")]
    Timeout {
        /// The target.
        addr: SocketAddr,
        /// How long we waited.
        after: Duration,
    },
}

/// One request, as sent on every iteration of a run (and by [`fetch`]).
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// Where to connect.
    pub addr: SocketAddr,
    /// The method (usually `GET`).
    pub method: Method,
    /// Path and query, e.g. `/jwt/me`.
    pub path: String,
    /// Headers besides `Host` (which is set from `addr`), e.g. `Authorization`.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body (empty for `GET`).
    pub body: Bytes,
}

impl RequestSpec {
    /// A `GET` of `path` on `addr` with no extra headers.
    pub fn get(addr: SocketAddr, path: impl Into<String>) -> Self {
        Self {
            addr,
            method: Method::GET,
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// A `POST` of a JSON body.
    pub fn post_json(addr: SocketAddr, path: impl Into<String>, json: impl Into<Bytes>) -> Self {
        Self {
            addr,
            method: Method::POST,
            path: path.into(),
            headers: vec![(
                hyper::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body: json.into(),
        }
    }

    fn build(&self) -> Result<Request<Full<Bytes>>, hyper::http::Error> {
        let mut builder = Request::builder()
            .method(self.method.clone())
            .uri(self.path.as_str())
            .header(hyper::header::HOST, self.addr.to_string());
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder.body(Full::new(self.body.clone()))
    }
}

/// A run: what to send, with how many connections, for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The request every connection sends, over and over.
    pub request: RequestSpec,
    /// Concurrent keep-alive connections (one task each), like `wrk -c`.
    pub connections: usize,
    /// Worker threads of the generator's own runtime, like `wrk -t`.
    pub threads: usize,
    /// Unrecorded time before the measurement.
    pub warmup: Duration,
    /// Recorded time.
    pub duration: Duration,
    /// Longest wait for one answer before it counts as a transport error.
    pub timeout: Duration,
    /// Draws the progress line; `None` for none. The line shows only when stderr is a terminal.
    pub progress: Option<Progress>,
    /// Set from elsewhere (a Ctrl-C handler) to end the run early: every connection stops after
    /// its current request, and the report covers what was done.
    pub cancel: Option<Arc<AtomicBool>>,
}

/// Where a run is, handed to [`Progress`] every 200 ms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    /// Time since the run started (warm-up included).
    pub elapsed: Duration,
    /// The warm-up, as planned.
    pub warmup: Duration,
    /// The measured window, as planned.
    pub duration: Duration,
    /// Completed requests per second over the last tick.
    pub requests_per_sec: f64,
}

impl Tick {
    /// Whether the run is still in its warm-up.
    pub fn warming_up(&self) -> bool {
        self.elapsed < self.warmup
    }

    /// How far the run is, from 0 to 1.
    pub fn fraction(&self) -> f64 {
        let total = (self.warmup + self.duration).as_secs_f64();
        if total <= 0.0 {
            return 1.0;
        }
        (self.elapsed.as_secs_f64() / total).clamp(0.0, 1.0)
    }

    /// Time left in this run.
    pub fn remaining(&self) -> Duration {
        (self.warmup + self.duration).saturating_sub(self.elapsed)
    }
}

/// Renders the progress line from a [`Tick`]. The caller decides what the line says (a run that is
/// one step of a longer plan can show the plan's counters and ETA); the generator only redraws it.
/// Keep the line narrower than the terminal: a line that wraps is redrawn on every tick.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(&Tick) -> String + Send + Sync>);

impl Progress {
    /// A progress line drawn by `render`.
    pub fn new(render: impl Fn(&Tick) -> String + Send + Sync + 'static) -> Self {
        Self(Arc::new(render))
    }

    /// The line for `tick`.
    pub fn render(&self, tick: &Tick) -> String {
        (self.0)(tick)
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress(..)")
    }
}

/// Latency percentiles of one run, in microseconds.
#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct Latency {
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Slowest.
    pub max_us: u64,
}

/// What a run found.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct LoadReport {
    /// Requests that started and completed inside the measured window (any status).
    pub requests: u64,
    /// Requests completed in the warm-up, not recorded.
    pub warmup_requests: u64,
    /// The measured window, in seconds.
    pub duration_s: f64,
    /// `requests / duration_s`.
    pub requests_per_sec: f64,
    /// Latency of the measured requests.
    pub latency: Latency,
    /// Count of each status code seen in the window (warm-up included, so no error is hidden).
    pub status_counts: BTreeMap<u16, u64>,
    /// Answers that were not 2xx (warm-up included).
    pub non_2xx: u64,
    /// Transport failures: refused, reset, timed out, malformed answers (warm-up included).
    pub transport_errors: u64,
    /// Response body bytes read in the measured window.
    pub body_bytes: u64,
    /// Latency at each percentile of [`PERCENTILE_CURVE`], for charts: `(percentile, us)`.
    pub curve: Vec<(f64, u64)>,
}

impl LoadReport {
    /// Every request that did not end in a 2xx answer: `non_2xx + transport_errors`.
    pub fn errors(&self) -> u64 {
        self.non_2xx + self.transport_errors
    }

    /// Requests sent in total, warm-up included (what a server-side counter would see).
    pub fn total_requests(&self) -> u64 {
        self.requests + self.warmup_requests
    }
}

/// The percentiles stored in [`LoadReport::curve`].
pub const PERCENTILE_CURVE: [f64; 12] = [
    1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.99, 100.0,
];

/// What one connection task counted.
struct TaskTally {
    histogram: Histogram<u64>,
    requests: u64,
    warmup_requests: u64,
    status_counts: BTreeMap<u16, u64>,
    transport_errors: u64,
    body_bytes: u64,
}

impl TaskTally {
    fn new() -> Self {
        Self {
            // Bounds and precision are constants, so this cannot fail; fall back just in case.
            histogram: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!())),
            requests: 0,
            warmup_requests: 0,
            status_counts: BTreeMap::new(),
            transport_errors: 0,
            body_bytes: 0,
        }
    }
}

/// Runs `spec` on a Tokio runtime of its own (built here, dropped on return), blocking the
/// calling thread. Call it from a thread that is not inside another runtime.
pub fn run_blocking(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(spec.threads.max(1))
        .thread_name("loadgen")
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)?;
    runtime.block_on(run(spec))
}

/// Runs `spec` on the current runtime. Prefer [`run_blocking`], which isolates the generator.
///
/// Fails only if the target cannot be reached at all before the run starts; failures during the
/// run are counted in the report.
pub async fn run(spec: &LoadSpec) -> Result<LoadReport, LoadError> {
    // Fail fast with a clear error when nothing listens, rather than reporting a run of errors.
    let probe = TcpStream::connect(spec.request.addr)
        .await
        .map_err(|source| LoadError::Connect {
            addr: spec.request.addr,
            source,
        })?;
    drop(probe);
    let request = spec.request.build().map_err(LoadError::InvalidRequest)?;
    drop(request);

    let start = Instant::now();
    let measure_from = start + spec.warmup;
    let end = measure_from + spec.duration;
    let completed = Arc::new(AtomicU64::new(0));

    let bar = spec.progress.clone().map(|progress| {
        let bar = progress_bar();
        (bar, progress)
    });
    let ticker = bar.clone().map(|(bar, progress)| {
        let completed = completed.clone();
        let (warmup, duration) = (spec.warmup, spec.duration);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_millis(200));
            let mut last = (Instant::now(), 0u64);
            loop {
                every.tick().await;
                let now = Instant::now();
                let done = completed.load(Ordering::Relaxed);
                let seconds = now.duration_since(last.0).as_secs_f64();
                let requests_per_sec = if seconds > 0.0 {
                    (done - last.1) as f64 / seconds
                } else {
                    0.0
                };
                last = (now, done);
                bar.set_message(progress.render(&Tick {
                    elapsed: now.duration_since(start),
                    warmup,
                    duration,
                    requests_per_sec,
                }));
                bar.tick();
            }
        })
    });

    let tasks: Vec<_> = (0..spec.connections.max(1))
        .map(|_| {
            let request = spec.request.clone();
            let completed = completed.clone();
            let timeout = spec.timeout;
            let cancel = spec.cancel.clone();
            tokio::spawn(connection_loop(
                request,
                measure_from,
                end,
                timeout,
                completed,
                cancel,
            ))
        })
        .collect();

    let mut total = TaskTally::new();
    for task in tasks {
        // A task that panicked lost its counts; there is no panic path in it, but do not hide it.
        let Ok(tally) = task.await else {
            total.transport_errors += 1;
            continue;
        };
        // Both histograms share bounds, so adding cannot fail.
        let _ = total.histogram.add(&tally.histogram);
        total.requests += tally.requests;
        total.warmup_requests += tally.warmup_requests;
        total.transport_errors += tally.transport_errors;
        total.body_bytes += tally.body_bytes;
        for (status, count) in tally.status_counts {
            *total.status_counts.entry(status).or_default() += count;
        }
    }
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some((bar, _)) = bar {
        bar.finish_and_clear();
    }
    Ok(report(total, spec.duration))
}

/// A bar that shows nothing but the line [`Progress`] renders (no padding, no bar of its own, so
/// the line is exactly as wide as the caller made it).
fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar
}

fn report(tally: TaskTally, duration: Duration) -> LoadReport {
    let h = &tally.histogram;
    let non_2xx = tally
        .status_counts
        .iter()
        .filter(|(status, _)| !(200..300).contains(*status))
        .map(|(_, count)| count)
        .sum();
    let seconds = duration.as_secs_f64();
    let latency = if h.is_empty() {
        Latency::default()
    } else {
        Latency {
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    };
    let curve = if h.is_empty() {
        Vec::new()
    } else {
        PERCENTILE_CURVE
            .iter()
            .map(|&p| (p, h.value_at_percentile(p)))
            .collect()
    };
    LoadReport {
        requests: tally.requests,
        warmup_requests: tally.warmup_requests,
        duration_s: seconds,
        requests_per_sec: if seconds > 0.0 {
            tally.requests as f64 / seconds
        } else {
            0.0
        },
        latency,
        status_counts: tally.status_counts,
        non_2xx,
        transport_errors: tally.transport_errors,
        body_bytes: tally.body_bytes,
        curve,
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens one keep-alive connection; its driver runs as a task until the connection closes.
async fn connect(addr: SocketAddr) -> Result<Sender, LoadError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|source| LoadError::Connect { addr, source })?;
    // Requests are small and latency-bound: send them at once.
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|source| LoadError::Http { addr, source })?;
    tokio::spawn(async move {
        // The connection ends when the sender is dropped or the peer closes; either is fine here.
        let _ = connection.await;
    });
    Ok(sender)
}

/// One connection's loop: send, read the whole answer, record, repeat, until `end`.
async fn connection_loop(
    spec: RequestSpec,
    measure_from: Instant,
    end: Instant,
    timeout: Duration,
    completed: Arc<AtomicU64>,
    cancel: Option<Arc<AtomicBool>>,
) -> TaskTally {
    let mut tally = TaskTally::new();
    let mut sender: Option<Sender> = None;
    // Checked to build in `run`, so a failure here is impossible; count it rather than panic.
    let Ok(template) = spec.build() else {
        tally.transport_errors += 1;
        return tally;
    };
    let (parts, body) = template.into_parts();

    loop {
        let started = Instant::now();
        if started >= end || cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            break;
        }
        let deadline = (started + timeout).min(end + timeout);
        let attempt = async {
            let conn = match sender.as_mut() {
                Some(conn) => conn,
                None => sender.insert(connect(spec.addr).await?),
            };
            conn.ready().await.map_err(|source| LoadError::Http {
                addr: spec.addr,
                source,
            })?;
            let request = Request::from_parts(parts.clone(), body.clone());
            let response = conn
                .send_request(request)
                .await
                .map_err(|source| LoadError::Http {
                    addr: spec.addr,
                    source,
                })?;
            let status = response.status().as_u16();
            let mut body = response.into_body();
            let mut bytes = 0u64;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|source| LoadError::Http {
                    addr: spec.addr,
                    source,
                })?;
                if let Some(data) = frame.data_ref() {
                    bytes += data.len() as u64;
                }
            }
            Ok::<_, LoadError>((status, bytes))
        };
        let outcome = tokio::time::timeout_at(deadline, attempt).await;
        let finished = Instant::now();
        let measured = started >= measure_from;
        if !measured || finished <= end {
            completed.fetch_add(1, Ordering::Relaxed);
        }
        match outcome {
            Ok(Ok((status, bytes))) => {
                if measured && finished > end {
                    // Started in the window but answered after it closed: it belongs to no window.
                    break;
                }
                *tally.status_counts.entry(status).or_default() += 1;
                if measured {
                    tally.requests += 1;
                    tally.body_bytes += bytes;
                    let micros = finished.duration_since(started).as_micros() as u64;
                    let _ = tally.histogram.record(micros.clamp(1, MAX_LATENCY_US));
                } else {
                    tally.warmup_requests += 1;
                }
            }
            Ok(Err(_)) | Err(_) => {
                if finished > end + timeout / 2 && measured {
                    // Abandoned at the end of the run, not a failure of the server.
                    break;
                }
                tally.transport_errors += 1;
                // The connection may be unusable; open a new one next time.
                sender = None;
                if matches!(outcome, Ok(Err(LoadError::Connect { .. }))) {
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }
    tally
}

/// An answer read by [`fetch`].
#[derive(Debug, Clone)]
pub struct FetchedResponse {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// The whole body.
    pub body: Bytes,
}

/// Sends one request on a fresh connection and reads the whole answer (for setting up a run:
/// registering, logging in, checking a credential). Any status is `Ok`; only transport fails.
pub async fn fetch(request: &RequestSpec, timeout: Duration) -> Result<FetchedResponse, LoadError> {
    let addr = request.addr;
    let exchange = async {
        let mut sender = connect(addr).await?;
        let built = request.build().map_err(LoadError::InvalidRequest)?;
        let response = sender
            .send_request(built)
            .await
            .map_err(|source| LoadError::Http { addr, source })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|source| LoadError::Http { addr, source })?
            .to_bytes();
        Ok(FetchedResponse {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| LoadError::Timeout {
            addr,
            after: timeout,
        })?
}

/// One keep-alive connection for a sequence of single requests (a probe that measures one answer
/// at a time, where a fresh connection per request would add its handshake to every figure).
pub struct KeepAlive {
    addr: SocketAddr,
    sender: Option<Sender>,
}

impl KeepAlive {
    /// A client for `addr`; it connects on the first [`KeepAlive::send`].
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    /// The address this client talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends `request` (whose `addr` must be this client's) on the kept connection, reconnecting
    /// if the last one closed, and reads the whole answer. Any status is `Ok`.
    pub async fn send(
        &mut self,
        request: &RequestSpec,
        timeout: Duration,
    ) -> Result<FetchedResponse, LoadError> {
        let addr = self.addr;
        let exchange = async {
            let sender = match self.sender.as_mut() {
                Some(sender) if sender.is_ready() => sender,
                _ => self.sender.insert(connect(addr).await?),
            };
            let built = request.build().map_err(LoadError::InvalidRequest)?;
            let response = sender
                .send_request(built)
                .await
                .map_err(|source| LoadError::Http { addr, source })?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|source| LoadError::Http { addr, source })?
                .to_bytes();
            Ok(FetchedResponse {
                status,
                headers,
                body,
            })
        };
        let answer = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| LoadError::Timeout {
                addr,
                after: timeout,
            })
            .and_then(|answer| answer);
        if answer.is_err() {
            // A connection that failed or timed out mid-answer is not reused.
            self.sender = None;
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Response;
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    /// A tiny keep-alive server: `/ok` answers 200, `/fail` 503, anything else 404.
    async fn serve() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let status = match req.uri().path() {
                            "/ok" => 200,
                            "/fail" => 503,
                            _ => 404,
                        };
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::from_static(b"hello")))
                                .unwrap(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    fn spec(addr: SocketAddr, path: &str) -> LoadSpec {
        LoadSpec {
            request: RequestSpec::get(addr, path),
            connections: 4,
            threads: 1,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(200),
            timeout: Duration::from_secs(2),
            progress: None,
            cancel: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_2xx_answer_is_counted_and_none_is_an_error() {
        let addr = serve().await;
        let report = run(&spec(addr, "/ok")).await.unwrap();
        assert!(report.requests > 0);
        assert_eq!(report.errors(), 0);
        assert_eq!(report.non_2xx, 0);
        assert_eq!(
            report.status_counts.get(&200).copied(),
            Some(report.total_requests())
        );
        assert_eq!(report.body_bytes, 5 * report.requests);
        assert!(report.latency.p50_us <= report.latency.p99_us);
        assert_eq!(report.curve.len(), PERCENTILE_CURVE.len());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_non_2xx_answer_is_counted_as_an_error_by_status() {
        let addr = serve().await;
        let report = run(&spec(addr, "/fail")).await.unwrap();
        assert!(report.requests > 0);
        assert_eq!(report.non_2xx, report.total_requests());
        assert_eq!(report.errors(), report.total_requests());
        assert_eq!(
            report.status_counts.keys().copied().collect::<Vec<_>>(),
            [503]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_target_that_does_not_listen_is_an_error_before_the_run() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        assert!(matches!(
            run(&spec(addr, "/ok")).await,
            Err(LoadError::Connect { .. })
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_run_stops_before_its_window_and_records_nothing() {
        let addr = serve().await;
        let mut spec = spec(addr, "/ok");
        // Without the cancel flag this run would measure for an hour.
        spec.warmup = Duration::ZERO;
        spec.duration = Duration::from_secs(3600);
        spec.cancel = Some(Arc::new(AtomicBool::new(true)));
        let report = run(&spec).await.unwrap();
        assert_eq!(report.total_requests(), 0);
        assert_eq!(report.errors(), 0);
    }

    #[test]
    fn a_tick_knows_its_phase_fraction_and_time_left() {
        let tick = Tick {
            elapsed: Duration::from_secs(1),
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(6),
            requests_per_sec: 10.0,
        };
        assert!(tick.warming_up());
        assert_eq!(tick.fraction(), 0.125);
        assert_eq!(tick.remaining(), Duration::from_secs(7));
        let later = Tick {
            elapsed: Duration::from_secs(9),
            ..tick
        };
        assert!(!later.warming_up());
        assert_eq!(later.fraction(), 1.0);
        assert_eq!(later.remaining(), Duration::ZERO);
    }

    #[tokio::test]
    async fn fetch_returns_status_headers_and_body() {
        let addr = serve().await;
        let answer = fetch(&RequestSpec::get(addr, "/nope"), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(answer.status, 404);
        assert_eq!(&answer.body[..], b"hello");
    }
}
