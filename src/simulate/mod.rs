//! The loopback senhasegura API (docs/design.md, "The simulator"), for tests, benchmarks and `demo`.
//!
//! It serves the token endpoint and the listing at both documented paths, streams generated
//! listings chunk by chunk (a million sessions never sit in memory), grows between polls,
//! serves a fixture verbatim, and injects faults: 500s, cut connections, delays, rejected
//! credentials and revoked tokens. It shares no code with the agent's source side, so the
//! agent is tested against an independent reading of the API.

pub mod generate;
mod handlers;
pub mod hostile;
pub mod tls;

use bytes::Bytes;
use chrono::{NaiveDateTime, Utc};
use chrono_tz::Tz;
use generate::{Sessions, Shape};
use http_body_util::combinators::BoxBody;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Simulator options (also the `simulate` command's flags).
#[derive(Debug, Clone, clap::Args)]
pub struct SimOptions {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// OAuth 2.0 client id the token endpoint accepts.
    #[arg(long, default_value = "forwarder")]
    pub client_id: String,
    /// OAuth 2.0 client secret the token endpoint accepts.
    #[arg(long, default_value = "simulator-secret")]
    pub client_secret: String,
    /// OAuth 1.0a token the listing accepts (consumer key/secret: --client-id/--client-secret).
    #[arg(long, default_value = "simulator-token")]
    pub oauth1_token: String,
    /// OAuth 1.0a token secret.
    #[arg(long, default_value = "simulator-token-secret")]
    pub oauth1_token_secret: String,
    /// Lifetime of issued tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub token_ttl: u64,
    /// Number of generated sessions.
    #[arg(long, default_value_t = 100)]
    pub sessions: u64,
    /// How many of the newest generated sessions are still running.
    #[arg(long, default_value_t = 5)]
    pub active: u64,
    /// Seed of the generated values.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Each listing call adds K new running sessions and ends up to K running ones.
    #[arg(long, default_value_t = 0)]
    pub grow: u64,
    /// Time span the generated sessions' starts are spread over, ending now.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub history: Duration,
    /// The vault's wall-clock "now" at start (YYYY-MM-DD HH:MM:SS); default the real clock.
    #[arg(long, value_parser = parse_wall)]
    pub now: Option<NaiveDateTime>,
    /// IANA zone of the wall-clock times the simulated vault writes.
    #[arg(long, default_value = "UTC")]
    pub timezone: Tz,
    /// Envelope shape of generated listings.
    #[arg(long, value_enum, default_value = "flat")]
    pub shape: Shape,
    /// Envelope tenant of generated listings.
    #[arg(long, default_value = "Segura")]
    pub tenant: String,
    /// Which listing paths exist: both, v3 (/api/pam/session/...) or v4 (/api/session/...).
    #[arg(long, value_enum, default_value = "both")]
    pub paths: Paths,
    /// Serve this file verbatim as the listing instead of generated sessions.
    #[arg(long)]
    pub fixture: Option<PathBuf>,
    /// Answer the first N listing calls with 500 "Unexpected error." (or --fail-status).
    #[arg(long, default_value_t = 0)]
    pub fail_first: u64,
    /// Answer the first N token requests the same way.
    #[arg(long, default_value_t = 0)]
    pub fail_token_first: u64,
    /// The HTTP status of those failures (e.g. 429, 503).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(400..=599))]
    pub fail_status: u16,
    /// The message of those failures (default: "Unexpected error." for 500, else the status's
    /// standard reason).
    #[arg(long)]
    pub fail_message: Option<String>,
    /// A Retry-After header on those failures, sent as given (seconds or an HTTP date).
    #[arg(long, value_parser = parse_header_value)]
    pub retry_after: Option<String>,
    /// Drop the connection after this many body bytes of every listing.
    #[arg(long)]
    pub truncate_at: Option<u64>,
    /// Wait this long before answering each listing.
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Refuse every token request with "Client authentication failed.".
    #[arg(long)]
    pub reject_auth: bool,
    /// Invalidate every issued token after each N listings (a 401 for the next poll).
    #[arg(long, default_value_t = 0)]
    pub revoke_tokens_every: u64,
    /// Serve HTTPS with a generated certificate.
    #[arg(long)]
    pub tls: bool,
    /// Write the generated CA certificate (PEM) here.
    #[arg(long)]
    pub tls_ca_out: Option<PathBuf>,
    /// Ways to misbehave.
    #[command(flatten)]
    pub misbehave: hostile::Misbehave,
}

/// Which listing paths the simulator serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Paths {
    /// Both documented paths.
    Both,
    /// Only the v3 path.
    V3,
    /// Only the v4 path.
    V4,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

fn parse_header_value(s: &str) -> Result<String, String> {
    hyper::header::HeaderValue::from_str(s)
        .map(|_| s.to_string())
        .map_err(|_| "not a valid HTTP header value".to_string())
}

fn parse_wall(s: &str) -> Result<NaiveDateTime, String> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").map_err(|e| format!("expected YYYY-MM-DD HH:MM:SS: {e}"))
}

impl Default for SimOptions {
    fn default() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            o: SimOptions,
        }
        Wrap::parse_from(["simulate"]).o
    }
}

/// Counters the simulator exposes at `/_simulator/stats`.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct SimStats {
    /// Listing calls answered (any status).
    pub listings: u64,
    /// Token requests answered.
    pub token_requests: u64,
    /// Sessions currently listed.
    pub sessions: u64,
}

struct State {
    opts: SimOptions,
    sessions: Arc<Sessions>,
    tokens: HashMap<String, Instant>,
    stats: SimStats,
    started: Instant,
    base: NaiveDateTime,
    /// The gzipped bomb, compressed once at start.
    bomb_gz: Option<Bytes>,
}

impl State {
    fn now(&self) -> NaiveDateTime {
        self.base + chrono::Duration::from_std(self.started.elapsed()).unwrap_or_default()
    }
}

type Shared = Arc<Mutex<State>>;
type HttpBody = BoxBody<Bytes, std::io::Error>;

/// A running simulator.
pub struct Simulator {
    /// Its base URL (`http://127.0.0.1:PORT` or `https://...`).
    pub base_url: String,
    /// The CA PEM when serving TLS.
    pub ca_pem: Option<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Simulator {
    /// Bind and start serving in the background.
    pub async fn start(opts: SimOptions) -> Result<Simulator, String> {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", opts.listen))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (ca_pem, acceptor) = if opts.tls {
            let (pem, config) = tls::generate()?;
            if let Some(out) = &opts.tls_ca_out {
                std::fs::write(out, &pem).map_err(|e| format!("cannot write {}: {e}", out.display()))?;
            }
            (Some(pem), Some(tokio_rustls::TlsAcceptor::from(config)))
        } else {
            (None, None)
        };
        let base = opts
            .now
            .unwrap_or_else(|| Utc::now().with_timezone(&opts.timezone).naive_local());
        let sessions = Sessions::new(opts.seed, opts.sessions, opts.active, base, opts.history);
        let bomb_gz = match (opts.misbehave.bomb, opts.misbehave.gzip) {
            (Some(kind), true) => {
                let bomb = hostile::Repeated::bomb(kind, opts.misbehave.bomb_bytes, &handlers::bomb_record(base));
                Some(
                    tokio::task::spawn_blocking(move || bomb.gzip())
                        .await
                        .map_err(|e| e.to_string())?,
                )
            }
            _ => None,
        };
        let state = Arc::new(Mutex::new(State {
            sessions: Arc::new(sessions),
            tokens: HashMap::new(),
            stats: SimStats::default(),
            started: Instant::now(),
            base,
            bomb_gz,
            opts: opts.clone(),
        }));
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        let base_url = format!("{scheme}://{addr}");
        let task = tokio::spawn(serve(listener, acceptor, state));
        Ok(Simulator { base_url, ca_pem, task })
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: tokio::net::TcpListener, acceptor: Option<tokio_rustls::TlsAcceptor>, state: Shared) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handlers::handle(state.clone(), req));
            let builder = hyper::server::conn::http1::Builder::new();
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                            .await;
                    }
                }
                None => {
                    let _ = builder
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
            }
        });
    }
}
