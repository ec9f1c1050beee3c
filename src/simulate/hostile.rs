//! A misbehaving vault, for the tests and measurements of what the agent refuses: answers a
//! broken proxy, a vault upgrade or an attacker on the path could produce. Huge bodies are
//! streamed (or, gzipped, compressed once at start), never held whole.

use bytes::Bytes;
use std::io::Write;

/// How the simulated vault misbehaves (the `simulate` command's flags).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Misbehave {
    /// Raw JSON of the token answer's `expires_in` (e.g. '"inf"', 1e19).
    #[arg(long)]
    pub token_expires_in: Option<String>,
    /// Pad the token answer with a string field of this many bytes.
    #[arg(long)]
    pub token_pad: Option<u64>,
    /// Answer token requests with 307 to this URL.
    #[arg(long)]
    pub redirect_token: Option<String>,
    /// Answer listing requests with 302 to this URL.
    #[arg(long)]
    pub redirect_listing: Option<String>,
    /// Content type of listing answers (default application/json).
    #[arg(long)]
    pub content_type: Option<String>,
    /// Serve a bomb after one valid record: `nesting` (unclosed `[`) or `string` (a record
    /// holding one huge string).
    #[arg(long, value_enum)]
    pub bomb: Option<Bomb>,
    /// Size of the bomb in bytes.
    #[arg(long, default_value_t = 100_000_000)]
    pub bomb_bytes: u64,
    /// gzip the token answer and bomb or fixture listings (Content-Encoding: gzip).
    #[arg(long)]
    pub gzip: bool,
    /// Send this many bytes of each listing (and of each `--fail-first` answer), then stall: keep
    /// the connection open, send nothing.
    #[arg(long)]
    pub stall_after: Option<u64>,
}

/// A listing built to exhaust the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Bomb {
    /// One record, then `[` repeated, never closed.
    Nesting,
    /// One record, then a record whose `user` is one huge string.
    String,
}

/// A body made of a prefix, one byte repeated, and a suffix.
#[derive(Debug, Clone)]
pub struct Repeated {
    prefix: Vec<u8>,
    byte: u8,
    count: u64,
    suffix: Vec<u8>,
}

const CHUNK: usize = 64 * 1024;

impl Repeated {
    /// The nesting or string bomb after one valid record `record`.
    pub fn bomb(kind: Bomb, bytes: u64, record: &str) -> Repeated {
        match kind {
            Bomb::Nesting => Repeated {
                prefix: format!(r#"{{"remote_sessions":[{record},"#).into_bytes(),
                byte: b'[',
                count: bytes,
                suffix: Vec::new(),
            },
            Bomb::String => Repeated {
                prefix: format!(r#"{{"remote_sessions":[{record},{{"session_id":"bomb-string","user":""#).into_bytes(),
                byte: b'a',
                count: bytes,
                suffix: br#""}]}"#.to_vec(),
            },
        }
    }

    /// A token answer padded with a huge string field.
    pub fn token(token: &str, expires_in: &str, pad: u64) -> Repeated {
        Repeated {
            prefix: format!(r#"{{"access_token":"{token}","token_type":"bearer","expires_in":{expires_in},"pad":""#)
                .into_bytes(),
            byte: b'a',
            count: pad,
            suffix: br#""}"#.to_vec(),
        }
    }

    /// The body as a stream of chunks (never held whole).
    pub fn chunks(self) -> impl FnMut() -> Option<Bytes> + Send + Sync {
        let mut stage = 0u8;
        let mut left = self.count;
        let fill = Bytes::from(vec![self.byte; CHUNK]);
        let (prefix, suffix) = (Bytes::from(self.prefix), Bytes::from(self.suffix));
        move || loop {
            match stage {
                0 => {
                    stage = 1;
                    return Some(prefix.clone());
                }
                1 if left > 0 => {
                    let n = left.min(CHUNK as u64);
                    left -= n;
                    return Some(fill.slice(..n as usize));
                }
                1 => stage = 2,
                2 => {
                    stage = 3;
                    return Some(suffix.clone());
                }
                _ => return None,
            }
        }
    }

    /// The whole body gzipped (small for these bodies: they are one byte repeated).
    pub fn gzip(self) -> Bytes {
        let mut next = self.chunks();
        let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        while let Some(chunk) = next() {
            // Writing into a Vec cannot fail.
            let _ = z.write_all(&chunk);
        }
        Bytes::from(z.finish().unwrap_or_default())
    }
}

/// gzip a small body.
pub fn gzip(body: &[u8]) -> Bytes {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = z.write_all(body);
    Bytes::from(z.finish().unwrap_or_default())
}
