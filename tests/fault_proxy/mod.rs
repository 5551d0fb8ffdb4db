//! A fault-injecting HTTP/1.1 proxy for the fault tests: it stands between xcr and one upstream
//! (moto's S3, moto's DynamoDB, or the GCS emulator), forwards what it does not fault, and
//! faults a set share of requests the way real networks and services fail:
//!
//! * `Reset`: the request is read, never forwarded, and the connection is reset (TCP RST);
//! * `LostResponse`: the request is forwarded and applied upstream, then the connection is reset
//!   before any of the answer is sent (the case that tests idempotence: the work happened, the
//!   client cannot know);
//! * `ServerError`: 500 or 503 with the service's own error body, not forwarded;
//! * `Throttle`: the service's throttling answer, not forwarded: S3 `503 SlowDown` (XML),
//!   DynamoDB `400 ThrottlingException` / `ProvisionedThroughputExceededException` (JSON), GCS
//!   `429 rateLimitExceeded` (JSON);
//! * `Stall`: the request is held longer than the client's timeout, then dropped unforwarded;
//! * `LateDelivery` (scripted only): the request is held past the client's timeout and then
//!   forwarded and applied anyway, as a slow server applies a request its client gave up on;
//! * `BodyBreak` / `BodyStall` (only where the answer has a body worth splitting, i.e. S3 reads):
//!   the request is forwarded, the status, headers and first half of the body are sent, then the
//!   connection is reset, or held silent longer than the client's timeout;
//! * DynamoDB's own refusals (scripted or targeted only), answered without forwarding:
//!   `ResourceNotFound` (`400 ResourceNotFoundException`: the table does not exist),
//!   `TransactionConflict` (`400 TransactionConflictException`: a plain write met an item inside
//!   a running transaction) and `TransactionCanceledByConflict` (`400
//!   TransactionCanceledException` whose reasons are `None` then `TransactionConflict`, as
//!   `TransactWriteItems` of two items answers when the second is in another transaction).
//!
//! * GCS answers for Google's retry conformance scenarios (targeted only; not forwarded unless
//!   said): `Unavailable` (503), `RequestTimeout` (408), `BadRequest` (400), `Unauthorized`
//!   (401), and `ServerErrorAfter(n)`: an upload's bytes are forwarded up to byte `n` of the
//!   object (a resumable chunk is cut there; a multipart upload, which is all or nothing, is not
//!   forwarded at all), then 503 is answered, as GCS does when it fails mid-upload;
//! * GCS success answers rewritten after the request was applied upstream: `DropZeroFields`
//!   leaves out every field holding a zero or empty value, as a strict proto3-JSON server does
//!   (an empty object then has no `size`), and `GarbledAnswer` replaces the answer with a body
//!   that cannot be read.
//!
//! Besides the script and the rate, [`FaultProxy::fault_next`] faults the next requests of one
//! operation (by `X-Amz-Target`, optionally only those whose body names a table, or for GCS by
//! the JSON API method the request belongs to, such as `storage.objects.insert`: see
//! [`gcs_method`]; S3 requests by their operation read off method, path and query,
//! [`s3_operation`]; one step of a GCS upload, [`gcs_upload_step`]): a fault at one exact call,
//! whatever else the code under test sends before it.
//!
//! Which request is faulted, and how, is a pure function of the seed and the request's arrival
//! number, so a run is reproducible up to the order in which concurrent requests arrive.
//! Every decision is counted, and the test asserts on the counters.
#![allow(dead_code)]

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    S3,
    DynamoDb,
    Gcs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Reset,
    LostResponse,
    ServerError,
    Throttle,
    Stall,
    BodyBreak,
    BodyStall,
    LateDelivery,
    ResourceNotFound,
    TransactionConflict,
    TransactionCanceledByConflict,
    Unavailable,
    RequestTimeout,
    BadRequest,
    Unauthorized,
    ServerErrorAfter(u64),
    DropZeroFields,
    GarbledAnswer,
    /// S3 (targeted only, not forwarded): `400 InvalidRequest`, S3's answer to a GET or HEAD of
    /// an SSE-C object that does not carry the customer's key. moto ignores SSE-C altogether
    /// (it stores such an object as plain and serves it without the key), so this is how a test
    /// meets what AWS answers.
    SseCustomerKeyRequired,
    /// Forwarded untouched (targeted only): uses up an armed place, so that the faults armed
    /// after it reach a later request of the same operation.
    Pass,
}

/// Faults armed by [`FaultProxy::fault_next`].
#[derive(Debug, Clone)]
struct Targeted {
    /// The operation, as the end of `X-Amz-Target` names it (`UpdateItem`, `TransactWriteItems`),
    /// or the GCS JSON API method ([`gcs_method`]).
    operation: String,
    /// Only requests whose body contains this (e.g. a table name); empty: any.
    body_contains: String,
    fault: Fault,
    left: u32,
}

impl Service {
    /// Every fault the seeded rate injects on this service's path, so that a test can check
    /// that each kind really happened.
    pub fn rate_faults(self) -> Vec<Fault> {
        self.weights().iter().map(|(f, _)| *f).collect()
    }

    /// Relative weights of each fault for this service. Stalls are kept rare: each costs a full
    /// client timeout of wall time.
    fn weights(self) -> &'static [(Fault, u64)] {
        match self {
            Service::S3 => &[
                (Fault::Reset, 3),
                (Fault::LostResponse, 1),
                (Fault::ServerError, 3),
                (Fault::Throttle, 3),
                (Fault::Stall, 1),
                (Fault::BodyBreak, 3),
                (Fault::BodyStall, 1),
            ],
            Service::DynamoDb => &[
                (Fault::Reset, 3),
                (Fault::LostResponse, 3),
                (Fault::ServerError, 3),
                (Fault::Throttle, 4),
                (Fault::Stall, 1),
            ],
            Service::Gcs => &[
                (Fault::Reset, 3),
                (Fault::LostResponse, 3),
                (Fault::ServerError, 3),
                (Fault::Throttle, 3),
                (Fault::Stall, 1),
            ],
        }
    }
}

/// What to inject.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Share of requests faulted, in percent.
    pub rate_percent: u64,
    pub seed: u64,
    /// How long a stall holds a request (longer than the client's timeout).
    pub stall: Duration,
    /// Exact faults for the first requests (by arrival number), before the rate applies.
    pub script: Vec<Option<Fault>>,
}

impl Plan {
    /// Only the scripted faults, then none.
    pub fn script(stall: Duration, script: Vec<Option<Fault>>) -> Self {
        Self { rate_percent: 0, seed: 0, stall, script }
    }
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The query string, without `?` (empty when none): where GCS preconditions travel.
    pub query: String,
    pub fault: Option<Fault>,
    /// The upstream's status when the request was forwarded (what the service did, whatever
    /// the client was then told).
    pub upstream: Option<u16>,
    /// How long the upstream took to answer, from the request's arrival at the proxy, in ms.
    /// Why: an answer that took longer than the client's timeout never reached the client.
    pub upstream_ms: Option<u64>,
    /// GCS: the name of the object a forwarded upload request completed (answered 200 or 201
    /// with an object resource: a one-request upload, or a resumable session's last chunk).
    pub completed: Option<String>,
}

struct State {
    service: Service,
    upstream: String,
    plan: Plan,
    enabled: AtomicBool,
    next: AtomicU64,
    http: reqwest::Client,
    seen: Mutex<Vec<Seen>>,
    targeted: Mutex<Vec<Targeted>>,
}

/// A running proxy; it stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

/// Counters of one proxy, for a span of its requests.
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub requests: u64,
    pub faulted: u64,
    pub by_fault: BTreeMap<String, u64>,
}

impl Counts {
    pub fn rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { self.faulted as f64 / self.requests as f64 }
    }

    /// One line for the test's log: requests, faults, and the faults by kind.
    pub fn print(&self, service: &str) {
        eprintln!(
            "  {service}: {} requests, {} faulted ({:.1}%): {:?}",
            self.requests,
            self.faulted,
            self.rate() * 100.0,
            self.by_fault
        );
    }
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port in front of `upstream` (a base URL).
    pub async fn start(service: Service, upstream: &str, plan: Plan) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(120))
            .tcp_nodelay(true)
            .build()
            .expect("upstream client");
        let state = Arc::new(State {
            service,
            upstream: upstream.trim_end_matches('/').to_string(),
            plan,
            enabled: AtomicBool::new(true),
            next: AtomicU64::new(0),
            http,
            seen: Mutex::new(Vec::new()),
            targeted: Mutex::new(Vec::new()),
        });
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(tcp, st).await;
                });
            }
        });
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Turns injection on or off (requests are still forwarded and recorded).
    pub fn set_enabled(&self, on: bool) {
        self.state.enabled.store(on, Ordering::SeqCst);
    }

    /// Faults the next `times` requests for `operation` (the end of their `X-Amz-Target` header,
    /// e.g. `UpdateItem`; for GCS the JSON API method, e.g. `storage.objects.insert`, see
    /// [`gcs_method`]; or the finer name of an S3 request, [`s3_operation`], or of a GCS upload
    /// step, [`gcs_upload_step`]) whose body contains `body_contains` (empty: any body) with `fault`,
    /// before the script and the rate are consulted. Armed faults of one operation apply in
    /// the order they were armed.
    pub fn fault_next(&self, operation: &str, body_contains: &str, fault: Fault, times: u32) {
        self.state.targeted.lock().expect("lock").push(Targeted {
            operation: operation.to_string(),
            body_contains: body_contains.to_string(),
            fault,
            left: times,
        });
    }

    /// How many armed faults ([`FaultProxy::fault_next`]) have not been used yet.
    pub fn armed(&self) -> u32 {
        self.state.targeted.lock().expect("lock").iter().map(|t| t.left).sum()
    }

    /// How many requests have been seen so far: a mark for [`FaultProxy::counts_since`].
    pub fn mark(&self) -> usize {
        self.state.seen.lock().expect("lock").len()
    }

    /// Counters over every request since `mark`.
    pub fn counts_since(&self, mark: usize) -> Counts {
        let seen = self.state.seen.lock().expect("lock");
        let mut c = Counts::default();
        for s in &seen[mark.min(seen.len())..] {
            c.requests += 1;
            if let Some(f) = s.fault {
                c.faulted += 1;
                *c.by_fault.entry(format!("{f:?}")).or_default() += 1;
            }
        }
        c
    }

    pub fn counts(&self) -> Counts {
        self.counts_since(0)
    }

    /// The requests seen since `mark`.
    pub fn seen_since(&self, mark: usize) -> Vec<Seen> {
        let seen = self.state.seen.lock().expect("lock");
        seen[mark.min(seen.len())..].to_vec()
    }
}

/// The SDK configuration xcr gets, pointing at one proxy. The SDK's standard retry (3 attempts)
/// with a short first backoff (production's is 1 s) keeps the runs short.
pub async fn sdk_via(endpoint: &str, region: &str) -> aws_config::SdkConfig {
    use aws_sdk_s3::config::{Credentials, Region};
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(100)),
        )
        .region(Region::new(region.to_string()))
        .credentials_provider(Credentials::new("test", "test", None, None, "xcr-fault-tests"))
        .load()
        .await
}

/// How the fault tests run xcr: its configuration as the functions read it from `stack`'s
/// local.env, with GCS reached through the `gcs` proxy, `chunk`-byte chunks (and the resumable
/// threshold there), a `timeout_secs` request timeout and `extra` on top; and the replicator
/// built from it, with S3 and DynamoDB reached through the `s3` and `dynamodb` proxies.
pub async fn replicator_via(
    stack: &crate::common::Stack,
    [s3, dynamodb, gcs]: [&str; 3],
    chunk: usize,
    timeout_secs: u64,
    extra: Vec<(&'static str, String)>,
) -> (xcr::config::Config, xcr::wiring::S3ToGcs) {
    let mut vars = stack.env.clone();
    for (k, v) in [
        ("STORAGE_EMULATOR_HOST", gcs.to_string()),
        ("XCR_CHUNK_SIZE", chunk.to_string()),
        ("XCR_RESUMABLE_THRESHOLD", chunk.to_string()),
        ("XCR_REQUEST_TIMEOUT_SECS", timeout_secs.to_string()),
    ]
    .into_iter()
    .chain(extra)
    {
        vars.insert(k.to_string(), v);
    }
    let cfg = xcr::config::Config::from_vars(vars, xcr::config::Needs::FUNCTION).expect("config");
    let region = stack.var("AWS_REGION");
    let r = xcr::wiring::replicator_split(&sdk_via(s3, region).await, &sdk_via(dynamodb, region).await, &cfg)
        .expect("replicator");
    (cfg, r)
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// SplitMix64: a good 64-bit mix, so consecutive request numbers give independent decisions.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl State {
    /// Uses up one armed fault matching this request, if any. A `ServerErrorAfter(n)` waits
    /// (armed, and holding back the faults armed after it) until a request's upload reaches
    /// byte `n`.
    fn targeted(&self, operation: Option<&str>, body: &[u8], range: Option<(u64, u64)>) -> Option<Fault> {
        let operation = operation?;
        let mut armed = self.targeted.lock().expect("lock");
        let t = armed.iter_mut().find(|t| {
            t.left > 0
                && t.operation == operation
                && (t.body_contains.is_empty()
                    || body.windows(t.body_contains.len()).any(|w| w == t.body_contains.as_bytes()))
        })?;
        if let Fault::ServerErrorAfter(n) = t.fault {
            // The end of this request's bytes in the object: a chunk's range, or the whole body
            // of a one-request upload. A request without bytes (a session's start, a status
            // query) does not reach it.
            let reached = match range {
                Some((_, last)) => last + 1 >= n,
                None => !body.is_empty() && body.len() as u64 >= n,
            };
            if !reached {
                return None;
            }
        }
        t.left -= 1;
        Some(t.fault)
    }

    /// The fault for request number `n` (and a second random number for its details), if any.
    fn decide(&self, n: u64) -> (Option<Fault>, u64) {
        let r = mix(self.plan.seed ^ mix(n));
        let detail = mix(r);
        if !self.enabled.load(Ordering::SeqCst) {
            return (None, detail);
        }
        if let Some(scripted) = usize::try_from(n).ok().and_then(|n| self.plan.script.get(n)) {
            return (*scripted, detail);
        }
        if r % 100 >= self.plan.rate_percent {
            return (None, detail);
        }
        let weights = self.service.weights();
        let total: u64 = weights.iter().map(|(_, w)| w).sum();
        let mut pick = (r >> 32) % total;
        for (f, w) in weights {
            if pick < *w {
                return (Some(*f), detail);
            }
            pick -= w;
        }
        (None, detail)
    }
}

async fn serve(tcp: TcpStream, st: Arc<State>) -> Result<(), BoxError> {
    tcp.set_nodelay(true)?;
    // A second handle on the same socket, so that a fault can set SO_LINGER to zero after hyper
    // owns the stream: closing then sends a TCP RST (a real reset) instead of a FIN.
    let std = tcp.into_std()?;
    let ctl = Arc::new(TcpStream::from_std(std.try_clone()?)?);
    let tcp = TcpStream::from_std(std)?;
    let svc = hyper::service::service_fn(move |req| handle(req, st.clone(), ctl.clone()));
    hyper::server::conn::http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(tcp), svc).await?;
    Ok(())
}

fn reset(ctl: &TcpStream) -> BoxError {
    let _ = ctl.set_zero_linger();
    "injected connection reset".into()
}

fn full(status: u16, content_type: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amz-request-id", "xcr-fault-proxy")
        .body(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed())
        .expect("response")
}

/// The service's own answer for an injected 5xx or throttle.
fn synthetic(service: Service, fault: Fault, detail: u64) -> Response<Body> {
    let alt = detail.is_multiple_of(2);
    match (service, fault) {
        (Service::S3, Fault::Throttle) => full(
            503,
            "application/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message><RequestId>xcr-fault</RequestId></Error>".into(),
        ),
        (Service::S3, Fault::SseCustomerKeyRequired) => full(
            400,
            "application/xml",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidRequest</Code><Message>The object was stored using a form of Server Side Encryption. The correct parameters must be provided to retrieve the object.</Message><RequestId>xcr-fault</RequestId></Error>".into(),
        ),
        (Service::S3, _) => {
            let (status, code) = if alt { (500, "InternalError") } else { (503, "ServiceUnavailable") };
            full(
                status,
                "application/xml",
                format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected {code}</Message><RequestId>xcr-fault</RequestId></Error>"),
            )
        }
        (Service::DynamoDb, Fault::Throttle) => {
            let code = if alt { "ThrottlingException" } else { "ProvisionedThroughputExceededException" };
            full(
                400,
                "application/x-amz-json-1.0",
                format!("{{\"__type\":\"com.amazonaws.dynamodb.v20120810#{code}\",\"message\":\"injected {code}\"}}"),
            )
        }
        (Service::DynamoDb, Fault::ResourceNotFound) => dynamodb_error(
            "ResourceNotFoundException",
            "Requested resource not found",
            "",
        ),
        (Service::DynamoDb, Fault::TransactionConflict) => dynamodb_error(
            "TransactionConflictException",
            "Transaction is ongoing for the item",
            "",
        ),
        (Service::DynamoDb, Fault::TransactionCanceledByConflict) => dynamodb_error(
            "TransactionCanceledException",
            "Transaction cancelled, please refer cancellation reasons for specific reasons [None, TransactionConflict]",
            ",\"CancellationReasons\":[{\"Code\":\"None\"},{\"Code\":\"TransactionConflict\",\"Message\":\"Transaction is ongoing for the item\"}]",
        ),
        (Service::DynamoDb, _) => {
            if alt {
                full(
                    500,
                    "application/x-amz-json-1.0",
                    "{\"__type\":\"com.amazonaws.dynamodb.v20120810#InternalServerError\",\"message\":\"injected\"}".into(),
                )
            } else {
                full(503, "application/x-amz-json-1.0", "{\"__type\":\"com.amazon.coral.availability#ServiceUnavailableException\",\"message\":\"injected\"}".into())
            }
        }
        (Service::Gcs, Fault::Throttle) => full(
            429,
            "application/json",
            "{\"error\":{\"code\":429,\"message\":\"injected: rate limit exceeded\",\"errors\":[{\"reason\":\"rateLimitExceeded\"}]}}".into(),
        ),
        (Service::Gcs, _) => {
            let status = if alt { 500 } else { 503 };
            full(
                status,
                "application/json",
                format!("{{\"error\":{{\"code\":{status},\"message\":\"injected backend error\",\"errors\":[{{\"reason\":\"backendError\"}}]}}}}"),
            )
        }
    }
}

/// A DynamoDB error answer (400, JSON 1.0) with `code`, `message` and `extra` members (which,
/// when not empty, start with a comma).
fn dynamodb_error(code: &str, message: &str, extra: &str) -> Response<Body> {
    full(
        400,
        "application/x-amz-json-1.0",
        format!("{{\"__type\":\"com.amazonaws.dynamodb.v20120810#{code}\",\"message\":\"{message}\"{extra}}}"),
    )
}

/// Hop-by-hop headers, which a proxy must not forward.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
    )
}

/// Sends the request on to the upstream.
async fn forward(
    st: &State,
    method: hyper::Method,
    headers: &hyper::HeaderMap,
    path: &str,
    body: Bytes,
) -> Result<reqwest::Response, BoxError> {
    let mut fwd = st.http.request(method, format!("{}{path}", st.upstream));
    for (name, value) in headers {
        let lower = name.as_str();
        if !hop_by_hop(lower) && lower != "host" && lower != "content-length" {
            fwd = fwd.header(name, value);
        }
    }
    Ok(fwd.body(body).send().await?)
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    st: Arc<State>,
    ctl: Arc<TcpStream>,
) -> Result<Response<Body>, BoxError> {
    let arrived = std::time::Instant::now();
    let n = st.next.fetch_add(1, Ordering::SeqCst);
    let (decided, detail) = st.decide(n);
    let (parts, body) = req.into_parts();
    // The whole request arrives before any decision takes effect, as a server would read it.
    let body = body.collect().await?.to_bytes();
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let operation = match target {
        Some(t) => t.rsplit('.').next().map(str::to_string),
        None if st.service == Service::Gcs => gcs_method(parts.method.as_str(), parts.uri.path()).map(str::to_string),
        None => None,
    };
    let range = parts.headers.get("content-range").and_then(|v| v.to_str().ok()).and_then(chunk_range);
    let query = parts.uri.query().unwrap_or_default();
    // The finer name of the same request (an S3 operation, a step of a GCS upload), which a
    // targeted fault may name instead of `operation`.
    let step = match st.service {
        Service::S3 => s3_operation(parts.method.as_str(), parts.uri.path(), query),
        Service::Gcs => gcs_upload_step(
            parts.method.as_str(),
            parts.uri.path(),
            query,
            parts.headers.get("content-range").and_then(|v| v.to_str().ok()),
        ),
        Service::DynamoDb => None,
    };
    let fault = st.targeted(operation.as_deref(), &body, range).or_else(|| st.targeted(step, &body, range)).or(decided);
    let path = parts.uri.path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
    let index = {
        let mut seen = st.seen.lock().expect("lock");
        seen.push(Seen {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            fault,
            upstream: None,
            upstream_ms: None,
            completed: None,
        });
        seen.len() - 1
    };
    let record = |status: u16| {
        if let Some(s) = st.seen.lock().expect("lock").get_mut(index) {
            s.upstream = Some(status);
            s.upstream_ms = Some(arrived.elapsed().as_millis() as u64);
        }
    };
    match fault {
        Some(f @ (Fault::Unavailable | Fault::RequestTimeout | Fault::BadRequest | Fault::Unauthorized)) => {
            return Ok(gcs_error(f));
        }
        Some(Fault::ServerErrorAfter(n)) => {
            // Only a resumable chunk that starts before byte `n` lands in part; GCS keeps
            // what it received up to there.
            if let Some((first, _)) = range.filter(|(first, _)| *first < n) {
                let total = parts
                    .headers
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.rsplit('/').next())
                    .unwrap_or("*")
                    .to_string();
                let keep = usize::try_from(n - first).unwrap_or(usize::MAX).min(body.len());
                let mut headers = parts.headers.clone();
                let cut = format!("bytes {first}-{}/{total}", first + keep as u64 - 1);
                headers.insert("content-range", cut.parse()?);
                headers.remove("x-goog-hash");
                let resp = forward(&st, parts.method.clone(), &headers, &path, body.slice(..keep)).await?;
                record(resp.status().as_u16());
            }
            return Ok(gcs_error(Fault::Unavailable));
        }
        Some(Fault::Reset) => return Err(reset(&ctl)),
        Some(Fault::Stall) => {
            tokio::time::sleep(st.plan.stall).await;
            return Err(reset(&ctl));
        }
        Some(
            f @ (Fault::ServerError
            | Fault::Throttle
            | Fault::ResourceNotFound
            | Fault::TransactionConflict
            | Fault::TransactionCanceledByConflict
            | Fault::SseCustomerKeyRequired),
        ) => return Ok(synthetic(st.service, f, detail)),
        Some(Fault::LateDelivery) => {
            // Detached, so the late request is applied even though its client is long gone.
            let (late, stall) = (st.clone(), st.plan.stall);
            let (method, headers) = (parts.method.clone(), parts.headers.clone());
            tokio::spawn(async move {
                tokio::time::sleep(stall).await;
                // Recorded too, so a test can see that the late request did reach the service
                // and what the service answered it.
                if let Ok(resp) = forward(&late, method, &headers, &path, body).await
                    && let Some(s) = late.seen.lock().expect("lock").get_mut(index)
                {
                    s.upstream = Some(resp.status().as_u16());
                    s.upstream_ms = Some(arrived.elapsed().as_millis() as u64);
                }
            });
            tokio::time::sleep(stall).await;
            return Err(reset(&ctl));
        }
        _ => {}
    }

    let resp = forward(&st, parts.method.clone(), &parts.headers, &path, body).await?;
    let status = resp.status();
    record(status.as_u16());
    let headers = resp.headers().clone();
    let mut bytes = resp.bytes().await?;
    if st.service == Service::Gcs && path.starts_with("/upload/") && matches!(status.as_u16(), 200 | 201) {
        let name = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_string));
        if let Some(s) = st.seen.lock().expect("lock").get_mut(index) {
            s.completed = name;
        }
    }
    let mut rewritten = false;
    if status.is_success() {
        match fault {
            Some(Fault::DropZeroFields) => {
                if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    drop_zero_fields(&mut v);
                    bytes = Bytes::from(serde_json::to_vec(&v)?);
                    rewritten = true;
                }
            }
            Some(Fault::GarbledAnswer) => {
                bytes = Bytes::from_static(b"{\"kind\": \"storage#object\", \"na");
                rewritten = true;
            }
            _ => {}
        }
    }
    if fault == Some(Fault::LostResponse) {
        return Err(reset(&ctl));
    }

    let mut out = Response::builder().status(StatusCode::from_u16(status.as_u16())?);
    for (name, value) in &headers {
        // A rewritten body has another length, which hyper sets (a HEAD answer keeps its own).
        let stale_length = rewritten && name.as_str() == "content-length";
        if !hop_by_hop(name.as_str()) && !stale_length {
            out = out.header(name, value);
        }
    }
    match fault {
        Some(f @ (Fault::BodyBreak | Fault::BodyStall)) if bytes.len() >= 2 && status.is_success() => {
            // The head and the first half of the body go out; then the stream breaks or stalls.
            let half = bytes.slice(..bytes.len() / 2);
            let stall = st.plan.stall;
            let gcs = st.service == Service::Gcs;
            let first = futures::stream::once(async move { Ok::<_, BoxError>(Frame::data(half)) });
            let then = futures::stream::once(async move {
                if f == Fault::BodyStall {
                    tokio::time::sleep(stall).await;
                } else if gcs {
                    // A GCS answer is small: reset at once, and the RST can reach the client
                    // before it has read the head, which then discards it (a lost answer, not a
                    // broken one). A moment lets the head and half the body be read first.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                }
                Err::<Frame<Bytes>, BoxError>(reset(&ctl))
            });
            Ok(out.body(BodyExt::boxed(StreamBody::new(first.chain(then))))?)
        }
        // A body too small to split: the answer is lost instead.
        Some(Fault::BodyBreak | Fault::BodyStall) => Err(reset(&ctl)),
        _ => Ok(out.body(Full::new(bytes).map_err(|never| match never {}).boxed())?),
    }
}

/// The GCS JSON API method a request belongs to, as the retry conformance scenarios name them:
/// every request of an upload (a one-request upload, a session's start, its chunks and status
/// queries) is `storage.objects.insert`.
pub fn gcs_method(method: &str, path: &str) -> Option<&'static str> {
    let object = path.strip_prefix("/storage/v1/b/").and_then(|rest| rest.split_once("/o")).map(|(_, o)| o);
    match (method, object) {
        ("POST" | "PUT", _) if path.starts_with("/upload/storage/v1/b/") => Some("storage.objects.insert"),
        ("GET", Some("")) => Some("storage.objects.list"),
        ("GET", Some(o)) if o.starts_with('/') => Some("storage.objects.get"),
        ("DELETE", Some(o)) if o.starts_with('/') => Some("storage.objects.delete"),
        ("GET", None) => Some("storage.buckets.get"),
        _ => None,
    }
}

/// The S3 operation a path-style request is (`GetObject`, `HeadObject`, `PutObject`,
/// `ListObjects` ...), for [`FaultProxy::fault_next`]: S3 requests carry no `X-Amz-Target`, so
/// what they are is read off the method, the path and the query, as S3 itself does.
pub fn s3_operation(method: &str, path: &str, query: &str) -> Option<&'static str> {
    let has = |k: &str| query.split('&').any(|p| p == k || p.starts_with(&format!("{k}=")));
    let object = path.trim_start_matches('/').split_once('/').is_some_and(|(_, k)| !k.is_empty());
    Some(match (method, object) {
        ("GET", true) if has("attributes") => "GetObjectAttributes",
        ("GET", true) if has("tagging") => "GetObjectTagging",
        ("GET", true) if has("uploadId") => "ListParts",
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("PUT", true) if has("partNumber") => "UploadPart",
        ("PUT", true) => "PutObject",
        ("POST", true) if has("uploads") => "CreateMultipartUpload",
        ("POST", true) if has("uploadId") => "CompleteMultipartUpload",
        ("DELETE", true) => "DeleteObject",
        ("GET", false) if has("versions") => "ListObjectVersions",
        ("GET", false) => "ListObjects",
        ("HEAD", false) => "HeadBucket",
        _ => return None,
    })
}

/// The step of a GCS JSON API upload a request is, for [`FaultProxy::fault_next`], finer than
/// its method (`storage.objects.insert` covers them all): `insert.single` (a one-request media
/// or multipart upload), `insert.resumable.start` (a session's initiation), `insert.chunk.first`
/// (a chunk from byte 0), `insert.chunk` (a later chunk), `insert.query` (a status query,
/// `Content-Range: bytes */TOTAL`).
pub fn gcs_upload_step(method: &str, path: &str, query: &str, content_range: Option<&str>) -> Option<&'static str> {
    if !path.starts_with("/upload/storage/v1/b/") {
        return None;
    }
    let resumable = query.split('&').any(|p| p == "uploadType=resumable");
    let session = query.split('&').any(|p| p.starts_with("upload_id="));
    Some(match (method, content_range) {
        ("POST", _) if resumable && !session => "insert.resumable.start",
        ("POST", _) => "insert.single",
        ("PUT", Some(r)) => match chunk_range(r) {
            Some((0, _)) => "insert.chunk.first",
            Some(_) => "insert.chunk",
            None => "insert.query",
        },
        ("PUT", None) => "insert.chunk",
        _ => return None,
    })
}

/// `Content-Range: bytes FIRST-LAST/TOTAL` of a chunk that carries bytes; `None` for a status
/// query (`bytes */TOTAL`) or no header.
fn chunk_range(v: &str) -> Option<(u64, u64)> {
    let (span, _) = v.trim().strip_prefix("bytes ")?.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    Some((first.parse().ok()?, last.parse().ok()?))
}

/// GCS's own error answer for the conformance faults.
fn gcs_error(fault: Fault) -> Response<Body> {
    let (status, reason, message) = match fault {
        Fault::RequestTimeout => (408, "requestTimeout", "injected: request timeout"),
        Fault::BadRequest => (400, "invalid", "injected: invalid argument"),
        Fault::Unauthorized => (401, "authError", "injected: invalid credentials"),
        _ => (503, "backendError", "injected: service unavailable"),
    };
    full(
        status,
        "application/json",
        format!(
            "{{\"error\":{{\"code\":{status},\"message\":\"{message}\",\"errors\":[{{\"reason\":\"{reason}\"}}]}}}}"
        ),
    )
}

/// Leaves out every member holding a zero or empty value, recursively, as proto3 JSON does.
fn drop_zero_fields(v: &mut serde_json::Value) {
    use serde_json::Value;
    if let Value::Object(map) = v {
        map.retain(|_, m| {
            drop_zero_fields(m);
            !matches!(m, Value::Null | Value::Bool(false))
                && m.as_str().is_none_or(|s| !s.is_empty() && s != "0")
                && m.as_u64() != Some(0)
                && m.as_array().is_none_or(|a| !a.is_empty())
                && m.as_object().is_none_or(|o| !o.is_empty())
        });
    }
}
