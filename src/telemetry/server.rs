//! The endpoint: `GET /metrics` (Prometheus text format 0.0.4) and `GET /health` (JSON, 200
//! or 503), over HTTP/1.1 with hyper. Read-only: it changes nothing in the agent.

use super::Telemetry;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// Content type of the Prometheus text exposition format.
const METRICS_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The telemetry the endpoint serves: the agent's current one, replaced when a reload builds
/// another (`Agent::reload`).
#[derive(Debug)]
pub struct Served(std::sync::RwLock<Arc<Telemetry>>);

impl Served {
    /// Serve `telemetry`.
    pub fn new(telemetry: Arc<Telemetry>) -> Served {
        Served(std::sync::RwLock::new(telemetry))
    }

    /// What requests are answered from now on.
    pub fn current(&self) -> Arc<Telemetry> {
        // Only whole `Arc`s are stored: a panic elsewhere cannot leave a torn value.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Serve `telemetry` from the next request on.
    pub fn replace(&self, telemetry: Arc<Telemetry>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = telemetry;
    }
}

/// Connections served at once; one over it is closed at once. Prometheus needs one.
const MAX_CONNECTIONS: usize = 32;
/// A request's head must arrive within this.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A connection is closed after this, kept alive or not (a scraper reconnects).
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(120);
/// Read buffer per connection: a scrape's request is a few hundred bytes.
const MAX_BUF: usize = 16 * 1024;

/// Bind `addr` and serve until the process ends; returns the bound address (port 0 picks one).
/// Whoever can reach the address can connect: connections are capped, slow or idle ones
/// closed, and requests kept small, so that no client holds the agent's file descriptors or
/// memory (it has no authentication; it listens on loopback by default).
pub fn start(addr: SocketAddr, served: Arc<Served>) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    let bound = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!(error = %e, "Metrics endpoint: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Over the cap: closed now rather than queued behind clients that may never speak.
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let served = served.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let telemetry = served.current();
                    async move { Ok::<_, std::convert::Infallible>(handle(&telemetry, &req)) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_BUF)
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
                drop(slot);
            });
        }
    });
    Ok(bound)
}

fn response(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn handle<B>(telemetry: &Telemetry, req: &Request<B>) -> Response<Full<Bytes>> {
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return response(StatusCode::METHOD_NOT_ALLOWED, "text/plain", b"GET only\n".to_vec());
    }
    match req.uri().path() {
        "/metrics" => response(StatusCode::OK, METRICS_TYPE, telemetry.metrics.render()),
        "/health" => {
            let (ok, doc) = telemetry.health();
            let status = if ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut body = doc.to_string().into_bytes();
            body.push(b'\n');
            response(status, "application/json", body)
        }
        _ => response(
            StatusCode::NOT_FOUND,
            "text/plain",
            b"not found: try /metrics or /health\n".to_vec(),
        ),
    }
}
