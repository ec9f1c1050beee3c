//! The floor the agent's cycle is compared with: download a listing from the simulator and
//! parse it with serde_json, doing nothing else. Two modes:
//!
//! - `typed` (default, the stricter floor): the whole body into memory, then one
//!   `serde_json::from_slice` into typed records with borrowed strings (the fastest way
//!   serde_json offers).
//! - `value`: the same into `serde_json::Value`, what a naive program would do.
//!
//! Usage: `floor BASE_URL [typed|value]` (credentials: the simulator's defaults).

use serde::Deserialize;
use std::borrow::Cow;
use std::time::Instant;

#[allow(dead_code)]
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow)]
    origin_ip: Option<Cow<'a, str>>,
    #[serde(borrow)]
    credential: Option<Cow<'a, str>>,
    #[serde(borrow)]
    device: Option<Cow<'a, str>>,
    #[serde(borrow)]
    protocol: Option<Cow<'a, str>>,
    #[serde(borrow)]
    proxy: Option<Cow<'a, str>>,
    #[serde(borrow)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    start: Option<Cow<'a, str>>,
    #[serde(borrow)]
    end: Option<Cow<'a, str>>,
    #[serde(borrow)]
    time: Option<Cow<'a, str>>,
    #[serde(borrow)]
    prevent_purge: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "ITSM")]
    itsm: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Listing<'a> {
    #[serde(borrow)]
    remote_sessions: Vec<Record<'a>>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let base = args.next().ok_or("usage: floor BASE_URL [typed|value]")?;
    let mode = args.next().unwrap_or_else(|| "typed".into());
    let started = Instant::now();
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{base}/iso/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "forwarder"),
            ("client_secret", "simulator-secret"),
        ])
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"].as_str().ok_or("no token")?;
    let body = http
        .get(format!("{base}/api/session/remotesessions"))
        .bearer_auth(token)
        .send()
        .await?
        .bytes()
        .await?;
    let n = if mode == "value" {
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        v["remote_sessions"].as_array().map_or(0, Vec::len)
    } else {
        let l: Listing<'_> = serde_json::from_slice(&body)?;
        l.remote_sessions.len()
    };
    eprintln!(
        "floor ({mode}): {n} records, {} bytes, {:.2}s",
        body.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
