//! Syslog transports: UDP, TCP, TLS (RFC 5425, rustls, optional client certificate) and unix
//! sockets (datagram, like /dev/log, or stream). A stream connection is probed before each
//! write: a syslog server never sends data, so a readable socket means the peer closed it, and
//! the sink reconnects instead of writing into a dead connection whose first write would still
//! "succeed".

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};

/// How long closing a stream waits for the server to read what it was sent and close its side
/// (`Conn::close`): at the end of `once`, at shutdown, on a reload that replaces the sink.
pub const LINGER: Duration = Duration::from_secs(5);

/// Which transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// One datagram per event.
    Udp,
    /// A TCP stream.
    Tcp,
    /// TLS over TCP (RFC 5425).
    Tls,
    /// A unix socket (path in `address`).
    Unix,
}

/// Unix socket kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UnixMode {
    /// SOCK_DGRAM, like /dev/log (default).
    #[default]
    Datagram,
    /// SOCK_STREAM.
    Stream,
}

/// Why a connection attempt failed.
#[derive(Debug)]
pub enum ConnectError {
    /// May work later (refused, unreachable, timeout).
    Transient(String),
    /// Will not work until the configuration or the server changes (certificate rejected).
    Fatal(String),
}

/// An open connection.
pub enum Conn {
    /// UDP socket connected to the server.
    Udp(UdpSocket),
    /// TCP stream.
    Tcp(TcpStream),
    /// TLS stream.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Unix datagram socket connected to the path.
    UnixDatagram(tokio::net::UnixDatagram),
    /// Unix stream.
    UnixStream(tokio::net::UnixStream),
}

/// The TLS settings of a sink.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// CA certificate(s) to trust instead of the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client private key for mutual TLS.
    pub client_key: Option<PathBuf>,
    /// Name to verify the server certificate against (default: the address's host).
    pub server_name: Option<String>,
}

/// A certificate or key path for a message, escaped and cut (a PEM pasted in place of the
/// path would otherwise be printed whole, over many lines).
fn shown(path: &std::path::Path) -> String {
    crate::settings::excerpt(&path.to_string_lossy())
}

/// Build the rustls client configuration; an error names the setting at fault.
pub fn tls_config(s: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, (&'static str, String)> {
    let mut roots = rustls::RootCertStore::empty();
    match &s.ca_file {
        Some(path) => {
            let bad = |e: &dyn std::fmt::Display| ("sink.ca_file", format!("{}: {e}", shown(path)));
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
                roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
            }
            if roots.is_empty() {
                return Err(("sink.ca_file", format!("{} holds no certificate", shown(path))));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(("sink.ca_file", "no system CA certificates found; set ca_file".into()));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ("sink.transport", e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&s.client_cert, &s.client_key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ("sink.client_cert", format!("{}: {e}", shown(cert))))?;
            let key =
                PrivateKeyDer::from_pem_file(key).map_err(|e| ("sink.client_key", format!("{}: {e}", shown(key))))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ("sink.client_key", format!("does not go with client_cert: {e}")))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => return Err(("sink.client_key", "client_cert and client_key go together".into())),
    };
    Ok(Arc::new(config))
}

fn host_of(address: &str) -> &str {
    match address.rsplit_once(':') {
        Some((host, _)) => host.trim_start_matches('[').trim_end_matches(']'),
        None => address,
    }
}

/// Connect to `address` (host:port, or a path for unix).
pub async fn connect(
    transport: Transport,
    unix_mode: UnixMode,
    address: &str,
    tls: Option<(&Arc<rustls::ClientConfig>, &TlsSettings)>,
    timeout: Duration,
) -> Result<Conn, ConnectError> {
    let transient = |e: std::io::Error| ConnectError::Transient(format!("cannot connect to {address}: {e}"));
    let attempt = async {
        match transport {
            Transport::Udp => {
                let target = tokio::net::lookup_host(address)
                    .await
                    .map_err(transient)?
                    .next()
                    .ok_or_else(|| ConnectError::Transient(format!("{address} resolves to no address")))?;
                let bind = if target.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let sock = UdpSocket::bind(bind).await.map_err(transient)?;
                sock.connect(target).await.map_err(transient)?;
                Ok(Conn::Udp(sock))
            }
            Transport::Tcp => {
                let s = TcpStream::connect(address).await.map_err(transient)?;
                let _ = s.set_nodelay(true);
                Ok(Conn::Tcp(s))
            }
            Transport::Tls => {
                let (config, settings) = tls.expect("TLS settings are built for tls sinks");
                let name = settings
                    .server_name
                    .clone()
                    .unwrap_or_else(|| host_of(address).to_string());
                let server_name = ServerName::try_from(name.clone())
                    .map_err(|e| ConnectError::Fatal(format!("invalid TLS server name `{name}`: {e}")))?;
                let s = TcpStream::connect(address).await.map_err(transient)?;
                let _ = s.set_nodelay(true);
                let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(server_name, s).await.map_err(|e| {
                    let text = e.to_string();
                    if text.contains("certificate") || text.contains("Certificate") || text.contains("UnknownIssuer") {
                        ConnectError::Fatal(format!(
                            "TLS handshake with {address} failed: {text}; check that ca_file holds the CA that signed the server's certificate and that server_name matches it"
                        ))
                    } else {
                        ConnectError::Transient(format!("TLS handshake with {address} failed: {text}"))
                    }
                })?;
                Ok(Conn::Tls(Box::new(tls)))
            }
            Transport::Unix => match unix_mode {
                UnixMode::Datagram => {
                    let s = tokio::net::UnixDatagram::unbound().map_err(transient)?;
                    s.connect(Path::new(address)).map_err(transient)?;
                    Ok(Conn::UnixDatagram(s))
                }
                UnixMode::Stream => Ok(Conn::UnixStream(
                    tokio::net::UnixStream::connect(address).await.map_err(transient)?,
                )),
            },
        }
    };
    tokio::time::timeout(timeout, attempt).await.unwrap_or_else(|_| {
        Err(ConnectError::Transient(format!(
            "connecting to {address} timed out after {timeout:?}"
        )))
    })
}

/// Whether a TLS connection is still open, read through rustls without waiting: what the
/// server sent is TLS (after a TLS 1.3 handshake, session tickets), to be processed as such,
/// not bytes to read off the socket (which took the tickets for data, reconnected before every
/// batch and dropped the old socket unread: a reset, and the server lost what it had not read).
/// Still open: nothing to read yet. Closed: end of stream (close_notify), an error, or data.
fn tls_alive(s: &mut tokio_rustls::client::TlsStream<TcpStream>) -> bool {
    use tokio::io::AsyncRead;
    let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
    let mut probe = [0u8; 64];
    let mut buf = tokio::io::ReadBuf::new(&mut probe);
    std::pin::Pin::new(s).poll_read(&mut cx, &mut buf).is_pending()
}

impl Conn {
    /// One message per datagram, or a stream.
    pub fn is_datagram(&self) -> bool {
        matches!(self, Conn::Udp(_) | Conn::UnixDatagram(_))
    }

    /// False when the peer has closed a stream connection (or sent anything at all).
    pub fn is_alive(&mut self) -> bool {
        let mut probe = [0u8; 64];
        let r = match self {
            Conn::Tcp(s) => s.try_read(&mut probe),
            Conn::Tls(s) => return tls_alive(s),
            Conn::UnixStream(s) => s.try_read(&mut probe),
            Conn::Udp(_) | Conn::UnixDatagram(_) => return true,
        };
        matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Send one datagram.
    pub async fn send(&mut self, msg: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Udp(s) => s.send(msg).await.map(|_| ()),
            Conn::UnixDatagram(s) => s.send(msg).await.map(|_| ()),
            _ => Err(std::io::Error::other("not a datagram socket")),
        }
    }

    /// Close politely (TLS close_notify, TCP FIN), then read and drop whatever the server still
    /// sends until it closes its side too, for at most [`LINGER`]. A socket closed with bytes
    /// unread (a TLS 1.3 server's session tickets, sent once it reads the handshake's end, can
    /// come after the last batch was written) is reset by the kernel, and a reset makes the
    /// server drop what it had not read yet: events the agent counted as delivered.
    pub async fn close(&mut self) {
        let _ = match self {
            Conn::Tcp(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
            Conn::UnixStream(s) => s.shutdown().await,
            Conn::Udp(_) | Conn::UnixDatagram(_) => return,
        };
        let _ = tokio::time::timeout(LINGER, self.drain()).await;
    }

    /// Read until the end of the stream or an error.
    async fn drain(&mut self) {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 4096];
        loop {
            let read = match self {
                Conn::Tcp(s) => s.read(&mut buf).await,
                Conn::Tls(s) => s.read(&mut buf).await,
                Conn::UnixStream(s) => s.read(&mut buf).await,
                Conn::Udp(_) | Conn::UnixDatagram(_) => return,
            };
            if !matches!(read, Ok(n) if n > 0) {
                return;
            }
        }
    }

    /// Write and flush bytes on a stream.
    pub async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Conn::Tls(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            Conn::UnixStream(s) => {
                s.write_all(bytes).await?;
                s.flush().await
            }
            _ => Err(std::io::Error::other("not a stream socket")),
        }
    }
}
