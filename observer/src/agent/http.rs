//! The agent's HTTP server (hyper, HTTP/1.1, one request per connection):
//! GET /metrics answers with the exposition, / with a pointer to it,
//! anything else 404. It is safe against hostile local clients: requests
//! are bounded in size and header count, every connection has a total
//! deadline, connections past a cap are closed at once, and no request
//! waits on another.

use std::{
    convert::Infallible,
    sync::Arc,
    time::{Duration, Instant},
};

use http_body_util::Full;
use hyper::{
    Method, Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{self, HeaderValue},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};

use super::Metrics;
use crate::window::StopSignal;

/// Everything a connection may take, from accept to the last byte written:
/// a client that trickles its request or never reads the answer is cut off.
const CONNECTION_DEADLINE: Duration = Duration::from_secs(5);
/// The request line and headers must arrive within this.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(4);
/// Largest request head buffered (hyper's minimum is 8 KiB); longer is 431.
const MAX_REQUEST_BYTES: usize = 16 * 1024;
/// Most request headers accepted.
const MAX_HEADERS: usize = 32;
/// Most connections served at once; past it a new one is closed at once.
pub const MAX_CONNECTIONS: usize = 512;
/// How often the accept loop looks at the stop signal.
const STOP_POLL: Duration = Duration::from_millis(50);
/// Pause after a failed accept (e.g. out of file descriptors), so the
/// loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Accept failures are logged at most this often.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
const INDEX: &str =
    "<html><body><h1>goscope agent</h1><a href=\"/metrics\">/metrics</a></body></html>\n";

/// Serves `listener` until `stop` is raised (or the renderer is gone).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: StopSignal) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(false);
    let builder = Arc::new(builder);
    let mut stop_poll = tokio::time::interval(STOP_POLL);
    let mut last_accept_log: Option<Instant> = None;
    while !stop.raised() && metrics.renderer_alive() {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop_poll.tick() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                if last_accept_log.is_none_or(|t| t.elapsed() >= ACCEPT_LOG_EVERY) {
                    eprintln!("goscope agent: accepting a connection failed: {e}");
                    last_accept_log = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Over the cap: dropping the stream closes it.
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let builder = Arc::clone(&builder);
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = service_fn(move |request| respond(request, Arc::clone(&metrics)));
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            // A client error or the deadline ends the connection; either is
            // the client's doing and not worth a log line per connection.
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
            drop(slot);
        });
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Routes one request. HEAD is answered as GET (hyper leaves the body out).
async fn respond(
    request: Request<Incoming>,
    metrics: Arc<Metrics>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    if path != "/metrics" && path != "/" {
        return Ok(response(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"not found\n"),
        ));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut refused = response(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            Bytes::from_static(b"method not allowed\n"),
        );
        refused
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return Ok(refused);
    }
    Ok(if path == "/metrics" {
        response(
            StatusCode::OK,
            METRICS_TYPE,
            Bytes::from(metrics.scrape().await),
        )
    } else {
        response(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(INDEX.as_bytes()),
        )
    })
}
