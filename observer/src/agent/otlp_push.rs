//! Pushing OTLP requests: a thread of its own (its own tokio runtime) that
//! takes a request body from its source every interval, gzips it if asked
//! (once, for all its attempts), and POSTs it over
//! HTTP/1.1, plain or TLS (rustls), so a down or slow endpoint never
//! stalls the scan loop or /metrics. Requests wait in a bounded queue
//! (the oldest dropped and counted); an attempt that fails to connect, times
//! out, or is answered 429 or 5xx is retried with exponential backoff and
//! jitter (a Retry-After in seconds is honoured); another 4xx is not.
//! Every attempt has a deadline and reads at most `MAX_RESPONSE_BYTES` of
//! the answer. What happened is counted in `Stats`, exported on /metrics.

use std::{
    collections::VecDeque,
    future::Future,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use http_body_util::{BodyExt as _, Full};
use hyper::{
    Request, StatusCode,
    body::{Bytes, Incoming},
    client::conn::http1::{self, SendRequest},
    header::{self, HeaderValue},
};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message as _;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    sync::Notify,
};
use tokio_rustls::{
    TlsConnector,
    rustls::{self, RootCertStore, pki_types::ServerName},
};

use super::{
    otlp_config::{Compression, Endpoint, Header},
    snapshot::{Labels, Snapshot},
};
use crate::window::StopSignal;

/// Requests waiting to be sent, at most (the one being sent is apart).
pub const MAX_PENDING: usize = 8;
/// Most bytes of an answer read (a hostile endpoint can send gigabytes).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Largest response head buffered (hyper's minimum is 8 KiB).
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Most response headers accepted.
const MAX_RESPONSE_HEADERS: usize = 64;
/// The first retry waits about this long; each further one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// No retry waits longer (a Retry-After included).
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A failure is logged at most this often (the first one at once).
const LOG_EVERY: Duration = Duration::from_secs(60);
/// How often the push thread looks at the stop signal.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Largest CA file read.
const MAX_CA_FILE_BYTES: u64 = 16 << 20;
const CONTENT_TYPE: &str = "application/x-protobuf";

/// What to push to, how often, and how patiently.
#[derive(Clone, Debug)]
pub struct Config {
    pub endpoint: Endpoint,
    pub headers: Vec<Header>,
    pub compression: Compression,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Counters of what the pushes came to (`goscope_otlp_*`).
#[derive(Debug, Default)]
pub struct Stats {
    ok: AtomicU64,
    retried: AtomicU64,
    dropped: AtomicU64,
    failed: AtomicU64,
    rejected_points: AtomicU64,
    pending: AtomicU64,
}

impl Stats {
    fn bump(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters as the agent's own series.
    pub fn export(&self, out: &mut Snapshot) {
        const HELP: &str = "OTLP push attempts by outcome (ok: delivered; retried: failed and tried again; dropped: pushed out of the full queue; failed: refused by the endpoint, not retried).";
        for (outcome, counter) in [
            ("ok", &self.ok),
            ("retried", &self.retried),
            ("dropped", &self.dropped),
            ("failed", &self.failed),
        ] {
            out.counter(
                "goscope_otlp_requests_total",
                HELP,
                &Labels::new(&[("outcome", outcome.to_string())]),
                counter.load(Ordering::Relaxed) as f64,
            );
        }
        out.counter(
            "goscope_otlp_rejected_data_points_total",
            "Data points the OTLP endpoint accepted the request of but rejected (partial success).",
            &Labels::default(),
            self.rejected_points.load(Ordering::Relaxed) as f64,
        );
        out.gauge(
            "goscope_otlp_pending_requests",
            "OTLP requests waiting to be sent, the one being sent included.",
            &Labels::default(),
            self.pending.load(Ordering::Relaxed) as f64,
        );
    }
}

/// Where request bodies come from: called once per interval.
pub trait Source {
    /// The next body to push (`None`: nothing new to say).
    fn next(&mut self) -> impl Future<Output = Option<Vec<u8>>>;
}

/// The bounded queue between the interval and the sender. The request
/// being sent counts towards the bound; when it is the oldest and the
/// queue is full it is superseded: dropped unless its attempt delivers.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
    ready: Notify,
}

#[derive(Default)]
struct QueueState {
    waiting: VecDeque<Bytes>,
    sending: bool,
    superseded: bool,
}

impl QueueState {
    fn pending(&self) -> usize {
        self.waiting.len() + usize::from(self.sending && !self.superseded)
    }
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a body, dropping the oldest pending one if full.
    fn push(&self, body: Bytes, stats: &Stats) {
        let mut state = self.lock();
        if state.pending() >= MAX_PENDING {
            if state.sending && !state.superseded {
                state.superseded = true;
            } else {
                state.waiting.pop_front();
                Stats::bump(&stats.dropped, 1);
            }
        }
        state.waiting.push_back(body);
        stats
            .pending
            .store(state.pending() as u64, Ordering::Relaxed);
        drop(state);
        self.ready.notify_one();
    }

    /// The oldest waiting body, now being sent.
    fn take(&self, stats: &Stats) -> Option<Bytes> {
        let mut state = self.lock();
        let body = state.waiting.pop_front()?;
        state.sending = true;
        state.superseded = false;
        stats
            .pending
            .store(state.pending() as u64, Ordering::Relaxed);
        Some(body)
    }

    /// Whether the body being sent was pushed out meanwhile.
    fn superseded(&self) -> bool {
        self.lock().superseded
    }

    /// The body being sent is done with (delivered, refused or dropped).
    fn done(&self, stats: &Stats) {
        let mut state = self.lock();
        state.sending = false;
        state.superseded = false;
        stats
            .pending
            .store(state.pending() as u64, Ordering::Relaxed);
    }
}

/// Exponential backoff with jitter: each delay is drawn from the upper
/// half of the current step, the step doubles up to `MAX_BACKOFF`.
struct Backoff {
    step: Duration,
    rng: u64,
}

impl Backoff {
    fn new(seed: u64) -> Self {
        Self {
            step: FIRST_BACKOFF,
            rng: seed | 1,
        }
    }

    fn reset(&mut self) {
        self.step = FIRST_BACKOFF;
    }

    /// xorshift64: enough to keep agents from retrying in step.
    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// The wait before the next attempt; `retry_after` (the endpoint's
    /// word) wins when longer, bounded by `MAX_BACKOFF`.
    fn next(&mut self, retry_after: Option<Duration>) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(MAX_BACKOFF);
        let half = step / 2;
        let jitter_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
        let drawn = half + Duration::from_nanos(self.random() % jitter_ns);
        drawn.max(retry_after.unwrap_or_default()).min(MAX_BACKOFF)
    }
}

/// A Retry-After in seconds (an HTTP date is ignored).
fn retry_after(value: Option<&HeaderValue>) -> Option<Duration> {
    let seconds: u64 = value?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds.min(MAX_BACKOFF.as_secs())))
}

/// What one attempt came to.
#[derive(Debug, PartialEq)]
enum Attempt {
    Delivered {
        rejected_points: u64,
        message: String,
    },
    Retry {
        why: String,
        after: Option<Duration>,
    },
    Refused {
        why: String,
    },
}

/// How an answer's status is taken (2xx delivered; 429 and 5xx retried).
fn judge(status: StatusCode) -> Option<bool> {
    if status.is_success() {
        None
    } else {
        Some(status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error())
    }
}

/// The TLS settings for https endpoints: Mozilla's roots, and those of
/// `ca_file` when given (an unreadable file, or one without a
/// certificate, is an error naming it).
pub fn tls_config(ca_file: Option<&Path>) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject as _};
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let shown = crate::target::display_path(path);
        let file = std::fs::File::open(path).with_context(|| format!("reading {shown}"))?;
        let mut pem = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(file, MAX_CA_FILE_BYTES + 1),
            &mut pem,
        )
        .with_context(|| format!("reading {shown}"))?;
        if pem.len() as u64 > MAX_CA_FILE_BYTES {
            anyhow::bail!("{shown} is larger than {MAX_CA_FILE_BYTES} bytes; not a CA file");
        }
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| anyhow::anyhow!("{shown}: not PEM: {e}"))?;
            roots
                .add(cert)
                .map_err(|e| anyhow::anyhow!("{shown}: a certificate goscope cannot use: {e}"))?;
            added += 1;
        }
        if added == 0 {
            anyhow::bail!("{shown} holds no PEM certificate");
        }
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("setting up TLS")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// One connection at a time to the endpoint, reused while it stays open.
struct Client {
    config: Config,
    tls: Option<TlsConnector>,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(MAX_RESPONSE_HEAD)
            .max_headers(MAX_RESPONSE_HEADERS)
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        // Ends when the connection closes (or the runtime does).
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let e = &self.config.endpoint;
        let tcp = TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(|err| format!("connecting to {}:{}: {err}", e.host, e.port))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Self::handshake(tcp).await,
            Some(tls) => {
                let name = ServerName::try_from(e.host.clone())
                    .map_err(|err| format!("{:?} as a TLS server name: {err}", e.host))?;
                let stream = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|err| format!("TLS with {}: {err}", e.host))?;
                Self::handshake(stream).await
            }
        }
    }

    fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, String> {
        let e = &self.config.endpoint;
        let mut request = Request::post(e.path.as_str())
            .header(header::HOST, e.authority.as_str())
            .header(header::CONTENT_TYPE, CONTENT_TYPE)
            .header(
                header::USER_AGENT,
                concat!("goscope/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(body))
            .map_err(|err| format!("building the request: {err}"))?;
        if let Some(encoding) = self.config.compression.content_encoding() {
            request
                .headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
        }
        for h in &self.config.headers {
            request
                .headers_mut()
                .append(h.name.clone(), h.value.clone());
        }
        Ok(request)
    }

    /// One POST of `body` (a reused connection found closed is replaced
    /// once), its answer read up to `MAX_RESPONSE_BYTES`.
    async fn post(&mut self, body: Bytes) -> Attempt {
        let mut fresh = false;
        let response = loop {
            let reused = match self.connection.take() {
                Some(mut sender) => sender.ready().await.is_ok().then_some(sender),
                None => None,
            };
            let mut sender = match reused {
                Some(sender) => sender,
                None => {
                    fresh = true;
                    match self.connect().await {
                        Ok(sender) => sender,
                        Err(why) => return Attempt::Retry { why, after: None },
                    }
                }
            };
            let request = match self.request(body.clone()) {
                Ok(request) => request,
                Err(why) => return Attempt::Refused { why },
            };
            match sender.send_request(request).await {
                Ok(response) => {
                    self.connection = Some(sender);
                    break response;
                }
                // The endpoint closed an idle connection: once more, anew.
                Err(_) if !fresh => continue,
                Err(err) => {
                    return Attempt::Retry {
                        why: format!("sending: {err}"),
                        after: None,
                    };
                }
            }
        };
        let status = response.status();
        let after = retry_after(response.headers().get(header::RETRY_AFTER));
        let protobuf = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with(CONTENT_TYPE));
        let answer = self.read_bounded(response).await;
        match judge(status) {
            None => {
                let partial = answer
                    .filter(|_| protobuf)
                    .and_then(|a| ExportMetricsServiceResponse::decode(&*a).ok())
                    .and_then(|r| r.partial_success);
                Attempt::Delivered {
                    rejected_points: partial
                        .as_ref()
                        .map_or(0, |p| u64::try_from(p.rejected_data_points).unwrap_or(0)),
                    message: partial.map(|p| p.error_message).unwrap_or_default(),
                }
            }
            Some(true) => Attempt::Retry {
                why: format!("HTTP {status}"),
                after,
            },
            Some(false) => Attempt::Refused {
                why: format!("HTTP {status}"),
            },
        }
    }

    /// The answer's body, or `None` past `MAX_RESPONSE_BYTES` (or on an
    /// error): then the connection is not reused.
    async fn read_bounded(&mut self, response: hyper::Response<Incoming>) -> Option<Bytes> {
        let mut body = response.into_body();
        let mut read = Vec::new();
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                self.connection = None;
                return None;
            };
            if let Some(data) = frame.data_ref() {
                if read.len() + data.len() > MAX_RESPONSE_BYTES {
                    self.connection = None;
                    return None;
                }
                read.extend_from_slice(data);
            }
        }
        Some(Bytes::from(read))
    }

    /// `post` within the deadline.
    async fn attempt(&mut self, body: Bytes) -> Attempt {
        match tokio::time::timeout(self.config.timeout, self.post(body)).await {
            Ok(attempt) => attempt,
            Err(_) => {
                self.connection = None;
                Attempt::Retry {
                    why: format!("no answer within {} ms", self.config.timeout.as_millis()),
                    after: None,
                }
            }
        }
    }
}

/// What the pushes say on stderr: a failure when its reason changes (the
/// same reason again at most once per `LOG_EVERY`), and a line when pushes
/// work again.
struct Log {
    url: String,
    last: Option<(Instant, String)>,
    failures: u64,
}

impl Log {
    fn say(&mut self, why: &str, then: &str) {
        let repeated = self
            .last
            .as_ref()
            .is_some_and(|(at, said)| said == why && at.elapsed() < LOG_EVERY);
        if !repeated {
            eprintln!("goscope agent: OTLP push to {}: {why}; {then}", self.url);
            self.last = Some((Instant::now(), why.to_string()));
        }
    }

    fn failure(&mut self, why: &str, then: &str) {
        self.failures += 1;
        self.say(why, then);
    }

    fn delivered(&mut self) {
        if self.failures > 0 {
            eprintln!(
                "goscope agent: OTLP push to {} delivered again (after {} failed attempts)",
                self.url, self.failures
            );
        }
        self.failures = 0;
        self.last = None;
    }
}

/// Sends what the queue holds, oldest first, until the runtime ends.
async fn send_loop(mut client: Client, queue: &Queue, stats: &Stats) {
    let mut backoff = Backoff::new(seed());
    let mut log = Log {
        url: client.config.endpoint.url.clone(),
        last: None,
        failures: 0,
    };
    loop {
        let Some(body) = queue.take(stats) else {
            queue.ready.notified().await;
            continue;
        };
        loop {
            match client.attempt(body.clone()).await {
                Attempt::Delivered {
                    rejected_points,
                    message,
                } => {
                    Stats::bump(&stats.ok, 1);
                    log.delivered();
                    if rejected_points > 0 {
                        Stats::bump(&stats.rejected_points, rejected_points);
                        log.say(
                            &format!(
                                "{rejected_points} data points rejected: {}",
                                crate::format::escape_control(
                                    &message.chars().take(200).collect::<String>()
                                )
                            ),
                            "the rest was accepted",
                        );
                    }
                    backoff.reset();
                    break;
                }
                Attempt::Refused { why } => {
                    Stats::bump(&stats.failed, 1);
                    log.failure(&why, "the request is dropped, not retried");
                    backoff.reset();
                    break;
                }
                Attempt::Retry { why, after } => {
                    if queue.superseded() {
                        Stats::bump(&stats.dropped, 1);
                        log.failure(&why, "the oldest request is dropped");
                        break;
                    }
                    Stats::bump(&stats.retried, 1);
                    let wait = backoff.next(after);
                    log.failure(&why, &format!("retrying in {:.1} s", wait.as_secs_f64()));
                    tokio::time::sleep(wait).await;
                    if queue.superseded() {
                        Stats::bump(&stats.dropped, 1);
                        break;
                    }
                }
            }
        }
        queue.done(stats);
    }
}

fn seed() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    now ^ (u64::from(std::process::id()) << 32)
}

/// Takes a body from `source` every interval, encoded once for all its
/// attempts, until the runtime ends.
async fn produce_loop<S: Source>(
    source: &mut S,
    interval: Duration,
    compression: Compression,
    queue: &Queue,
    stats: &Stats,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(body) = source.next().await else {
            continue;
        };
        match compression.encode(body) {
            Ok(body) => queue.push(Bytes::from(body), stats),
            Err(e) => {
                Stats::bump(&stats.failed, 1);
                eprintln!("goscope agent: OTLP: compressing a request: {e}; it is not sent");
            }
        }
    }
}

async fn stopped(stop: &StopSignal) {
    while !stop.raised() {
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// Starts the push thread; it ends when `stop` is raised.
pub fn start<S: Source + Send + 'static>(
    config: Config,
    tls: Arc<rustls::ClientConfig>,
    mut source: S,
    stats: Arc<Stats>,
    stop: StopSignal,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .context("starting the OTLP push runtime")?;
    std::thread::Builder::new()
        .name("otlp".into())
        .spawn(move || {
            let queue = Queue::default();
            let (interval, compression) = (config.interval, config.compression);
            let client = Client {
                tls: config.endpoint.tls.then(|| TlsConnector::from(tls)),
                config,
                connection: None,
            };
            runtime.block_on(async {
                tokio::select! {
                    () = produce_loop(&mut source, interval, compression, &queue, &stats) => {}
                    () = send_loop(client, &queue, &stats) => {}
                    () = stopped(&stop) => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_millis(200));
        })
        .context("starting the OTLP push thread")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_pending_request_is_dropped_and_counted() {
        let (queue, stats) = (Queue::default(), Stats::default());
        for i in 0..MAX_PENDING + 2 {
            queue.push(Bytes::from(vec![i as u8]), &stats);
        }
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(stats.pending.load(Ordering::Relaxed), MAX_PENDING as u64);
        assert_eq!(queue.take(&stats).as_deref(), Some(&[2u8][..]));
        // The one being sent is the oldest: superseded, not dropped yet.
        queue.push(Bytes::from_static(b"new"), &stats);
        queue.push(Bytes::from_static(b"newer"), &stats);
        assert!(queue.superseded());
        assert_eq!(stats.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(stats.pending.load(Ordering::Relaxed), MAX_PENDING as u64);
        queue.done(&stats);
        assert!(!queue.superseded());
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() {
        let mut b = Backoff::new(12345);
        let mut step = FIRST_BACKOFF;
        for _ in 0..12 {
            let wait = b.next(None);
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} for step {step:?}"
            );
            step = (step * 2).min(MAX_BACKOFF);
        }
        assert!(b.next(None) <= MAX_BACKOFF);
        b.reset();
        assert!(b.next(Some(Duration::from_secs(7))) >= Duration::from_secs(7));
        assert_eq!(b.next(Some(Duration::from_secs(3600))), MAX_BACKOFF);
    }

    #[test]
    fn statuses_and_retry_after_are_judged() {
        assert_eq!(judge(StatusCode::OK), None);
        assert_eq!(judge(StatusCode::ACCEPTED), None);
        assert_eq!(judge(StatusCode::TOO_MANY_REQUESTS), Some(true));
        assert_eq!(judge(StatusCode::SERVICE_UNAVAILABLE), Some(true));
        assert_eq!(judge(StatusCode::INTERNAL_SERVER_ERROR), Some(true));
        assert_eq!(judge(StatusCode::BAD_REQUEST), Some(false));
        assert_eq!(judge(StatusCode::NOT_FOUND), Some(false));
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static("5"))),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            retry_after(Some(&HeaderValue::from_static(
                "Wed, 21 Oct 2015 07:28:00 GMT"
            ))),
            None
        );
        assert_eq!(retry_after(None), None);
    }

    #[test]
    fn a_ca_file_without_certificates_is_an_error_naming_it() {
        let dir = std::env::temp_dir().join(format!("goscope-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("empty.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let err = tls_config(Some(&path)).unwrap_err();
        assert!(format!("{err:#}").contains("empty.pem"), "{err:#}");
        let err = tls_config(Some(&dir.join("missing.pem"))).unwrap_err();
        assert!(format!("{err:#}").contains("missing.pem"), "{err:#}");
        assert!(tls_config(None).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
