//! The simulator's HTTP handlers: the token endpoint, the listing at both documented paths
//! (generated, a fixture, or a misbehaving answer), the OAuth 1.0a check and the stats.

use super::generate::Body;
use super::{hostile, HttpBody, Paths, Shared, SimOptions};
use bytes::Bytes;
use chrono::NaiveDateTime;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn json(status: StatusCode, body: String) -> Response<HttpBody> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed())
        .expect("static response parts are valid")
}

/// The answer `--fail-first` and `--fail-token-first` give: `--fail-status` (500 "Unexpected
/// error.", the vault's own, unless another is asked for) with `--fail-message` if given, and
/// `--retry-after` if given.
fn injected_failure(opts: &SimOptions) -> Response<HttpBody> {
    let status = StatusCode::from_u16(opts.fail_status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let message = match &opts.fail_message {
        Some(m) => m.as_str(),
        None if status == StatusCode::INTERNAL_SERVER_ERROR => "Unexpected error.",
        None => status.canonical_reason().unwrap_or("Error"),
    };
    let mut resp = api_error(status, message);
    // --stall-after applies to the failure's body too: its head arrives, then nothing.
    if let Some(limit) = opts.misbehave.stall_after {
        let (parts, body) = resp.into_parts();
        let whole = body_bytes(body);
        let head = whole.slice(..whole.len().min(usize::try_from(limit).unwrap_or(usize::MAX)));
        let stream = futures_util::stream::unfold(Some(head), |head| async move {
            match head {
                Some(h) => Some((Ok::<_, std::io::Error>(Frame::data(h)), None)),
                None => futures_util::future::pending().await,
            }
        });
        resp = Response::from_parts(parts, BodyExt::boxed(StreamBody::new(stream)));
    }
    // Checked when the options were parsed.
    if let Some(value) = opts
        .retry_after
        .as_deref()
        .and_then(|v| hyper::header::HeaderValue::from_str(v).ok())
    {
        resp.headers_mut().insert(hyper::header::RETRY_AFTER, value);
    }
    resp
}

/// The bytes of a body built whole (`json`): its one frame.
fn body_bytes(body: HttpBody) -> Bytes {
    use futures_util::FutureExt;
    body.collect()
        .now_or_never()
        .and_then(Result::ok)
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default()
}

fn api_error(status: StatusCode, message: &str) -> Response<HttpBody> {
    let body = serde_json::json!({
        "code": status.as_u16(),
        "response": {"status": status.as_u16(), "message": message, "error": true, "error_code": status.as_u16(),
                     "detail": "", "mensagem": message, "erro": true, "cod_erro": status.as_u16()}
    });
    json(status, body.to_string())
}

pub(super) async fn handle(
    state: Shared,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<HttpBody>, std::convert::Infallible> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    Ok(match (method.as_str(), path.as_str()) {
        ("POST", "/iso/oauth2/token") => token(state, req).await,
        ("GET", "/_simulator/stats") => {
            let s = state.lock().expect("simulator state lock");
            let mut stats = s.stats.clone();
            stats.sessions = s.sessions.len();
            json(StatusCode::OK, serde_json::to_string(&stats).expect("stats serialise"))
        }
        ("GET", "/api/pam/session/remotesessions") | ("GET", "/api/session/remotesessions") => {
            listing(state, req, &path).await
        }
        _ => api_error(StatusCode::NOT_FOUND, "Resource sub not found"),
    })
}

/// The one valid record before a bomb: ended an hour before the vault's start time.
pub(super) fn bomb_record(base: NaiveDateTime) -> String {
    let fmt = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    format!(
        r#"{{"id":"1","session_id":"b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0","user":"before-the-bomb","device":"10.0.0.1:22","protocol":"SSH","start":"{}","end":"{}"}}"#,
        fmt(base - chrono::Duration::hours(2)),
        fmt(base - chrono::Duration::hours(1))
    )
}

fn redirect(status: StatusCode, location: &str) -> Response<HttpBody> {
    Response::builder()
        .status(status)
        .header("location", location)
        .body(Full::new(Bytes::new()).map_err(|never| match never {}).boxed())
        .unwrap_or_else(|_| api_error(StatusCode::INTERNAL_SERVER_ERROR, "bad --redirect URL"))
}

fn streamed(
    content_type: &str,
    gzip: bool,
    mut next: impl FnMut() -> Option<Bytes> + Send + Sync + 'static,
) -> Response<HttpBody> {
    let stream = futures_util::stream::poll_fn(move |_| std::task::Poll::Ready(next().map(|b| Ok(Frame::data(b)))));
    let mut builder = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type);
    if gzip {
        builder = builder.header("content-encoding", "gzip");
    }
    builder
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("static response parts are valid")
}

async fn token(state: Shared, req: Request<hyper::body::Incoming>) -> Response<HttpBody> {
    let misbehave = state.lock().expect("simulator state lock").opts.misbehave.clone();
    if let Some(to) = &misbehave.redirect_token {
        state.lock().expect("simulator state lock").stats.token_requests += 1;
        return redirect(StatusCode::TEMPORARY_REDIRECT, to);
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return api_error(StatusCode::BAD_REQUEST, "Bad request"),
    };
    let form: HashMap<String, String> = url_decode_form(&body);
    let issued = {
        let mut s = state.lock().expect("simulator state lock");
        s.stats.token_requests += 1;
        if s.stats.token_requests <= s.opts.fail_token_first {
            return injected_failure(&s.opts);
        }
        let ok = !s.opts.reject_auth
            && form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id") == Some(&s.opts.client_id)
            && form.get("client_secret") == Some(&s.opts.client_secret);
        ok.then(|| {
            let token = hex::encode(rand::random::<[u8; 20]>());
            let ttl = s.opts.token_ttl;
            s.tokens
                .insert(token.clone(), Instant::now() + Duration::from_secs(ttl));
            (token, ttl)
        })
    };
    let Some((token, ttl)) = issued else {
        let body = serde_json::json!({"error": "invalid_client", "error_description": "Client authentication failed.",
            "message": "Client authentication failed."});
        return json(StatusCode::UNAUTHORIZED, body.to_string());
    };
    if misbehave.token_expires_in.is_some() || misbehave.token_pad.is_some() || misbehave.gzip {
        let expires_in = misbehave.token_expires_in.clone().unwrap_or_else(|| ttl.to_string());
        let body = hostile::Repeated::token(&token, &expires_in, misbehave.token_pad.unwrap_or(0));
        if misbehave.gzip {
            let gz = tokio::task::spawn_blocking(move || body.gzip())
                .await
                .unwrap_or_default();
            let mut once = Some(gz);
            return streamed("application/json", true, move || once.take());
        }
        return streamed("application/json", false, body.chunks());
    }
    json(
        StatusCode::OK,
        serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": ttl}).to_string(),
    )
}

fn url_decode_form(body: &[u8]) -> HashMap<String, String> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    match std::str::from_utf8(&bytes[i + 1..i + 3])
                        .ok()
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                    {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

async fn listing(state: Shared, req: Request<hyper::body::Incoming>, path: &str) -> Response<HttpBody> {
    let (misbehave, bomb_gz, base) = {
        let mut s = state.lock().expect("simulator state lock");
        if let Some(to) = s.opts.misbehave.redirect_listing.clone() {
            s.stats.listings += 1;
            return redirect(StatusCode::FOUND, &to);
        }
        (s.opts.misbehave.clone(), s.bomb_gz.clone(), s.base)
    };
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bearer = authorization
        .as_deref()
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::to_string);
    let host = req
        .headers()
        .get("host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let (snapshot, fixture, delay, truncate) = {
        let mut s = state.lock().expect("simulator state lock");
        match (bearer, authorization.as_deref().and_then(|a| a.strip_prefix("OAuth "))) {
            (Some(token), _) => match s.tokens.get(&token) {
                Some(exp) if *exp > Instant::now() => {}
                _ => {
                    return api_error(
                        StatusCode::UNAUTHORIZED,
                        "You are not authorized to access this resource.",
                    )
                }
            },
            (None, Some(params)) => {
                let scheme = if s.opts.tls { "https" } else { "http" };
                if !oauth1_valid(&s.opts, params, &format!("{scheme}://{host}{path}")) {
                    return api_error(StatusCode::UNAUTHORIZED, "Invalid signature");
                }
            }
            (None, None) => return api_error(StatusCode::UNAUTHORIZED, "No route matched with those values."),
        }
        let served = match s.opts.paths {
            Paths::Both => true,
            Paths::V3 => path.starts_with("/api/pam/"),
            Paths::V4 => !path.starts_with("/api/pam/"),
        };
        if !served {
            return api_error(StatusCode::NOT_FOUND, "Resource sub not found");
        }
        s.stats.listings += 1;
        let n = s.stats.listings;
        if n <= s.opts.fail_first {
            return injected_failure(&s.opts);
        }
        if s.opts.revoke_tokens_every > 0 && n % s.opts.revoke_tokens_every == 0 {
            s.tokens.clear();
        }
        if s.opts.grow > 0 {
            let now = s.now();
            let k = s.opts.grow;
            Arc::make_mut(&mut s.sessions).grow(k, now);
        }
        (
            s.sessions.clone(),
            s.opts.fixture.clone(),
            s.opts.delay_ms,
            s.opts.truncate_at,
        )
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let (shape, tenant) = {
        let s = state.lock().expect("simulator state lock");
        (s.opts.shape, s.opts.tenant.clone())
    };
    let once = |bytes: Bytes| -> Box<dyn FnMut() -> Option<Bytes> + Send + Sync> {
        let mut once = Some(bytes);
        Box::new(move || once.take())
    };
    let gzipped = misbehave.gzip && (misbehave.bomb.is_some() || fixture.is_some());
    let stall = misbehave.stall_after;
    let source: Box<dyn FnMut() -> Option<Bytes> + Send + Sync> = match (fixture, misbehave.bomb) {
        (_, Some(kind)) => match bomb_gz {
            Some(gz) => once(gz),
            None => Box::new(hostile::Repeated::bomb(kind, misbehave.bomb_bytes, &bomb_record(base)).chunks()),
        },
        (Some(file), None) => match std::fs::read(&file) {
            Ok(bytes) if misbehave.gzip => once(hostile::gzip(&bytes)),
            Ok(bytes) => once(Bytes::from(bytes)),
            Err(e) => {
                return api_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("fixture {}: {e}", file.display()),
                )
            }
        },
        (None, None) => {
            let mut body = Body::new(snapshot, shape, &tenant);
            Box::new(move || body.next_chunk())
        }
    };

    let stream = futures_util::stream::unfold((source, 0u64, Cut::No), move |(mut source, sent, cut)| async move {
        let cut_error = || Err(std::io::Error::other("connection cut by --truncate-at"));
        match cut {
            Cut::Done => None,
            Cut::Next => Some((cut_error(), (source, sent, Cut::Done))),
            Cut::No => {
                if stall.is_some_and(|limit| sent >= limit) {
                    // --stall-after: the connection stays open and silent.
                    futures_util::future::pending::<()>().await;
                }
                let mut chunk = source()?;
                if let Some(limit) = stall {
                    chunk = chunk.slice(..chunk.len().min((limit - sent) as usize));
                }
                let len = chunk.len() as u64;
                match truncate {
                    Some(limit) if sent + len >= limit => {
                        let keep = (limit - sent) as usize;
                        if keep == 0 {
                            Some((cut_error(), (source, sent, Cut::Done)))
                        } else {
                            Some((Ok(Frame::data(chunk.slice(..keep))), (source, limit, Cut::Next)))
                        }
                    }
                    _ => Some((Ok(Frame::data(chunk)), (source, sent + len, Cut::No))),
                }
            }
        }
    });
    let mut builder = Response::builder().status(StatusCode::OK).header(
        "content-type",
        misbehave.content_type.as_deref().unwrap_or("application/json"),
    );
    if gzipped {
        builder = builder.header("content-encoding", "gzip");
    }
    builder
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|_| api_error(StatusCode::INTERNAL_SERVER_ERROR, "bad --content-type"))
}

/// Check an OAuth 1.0a header of a GET without query parameters, written apart from the
/// agent's signer (RFC 5849 §3.4) so that the two check each other.
fn oauth1_valid(opts: &SimOptions, header: &str, base_uri: &str) -> bool {
    use base64::Engine as _;
    use hmac::Mac as _;
    fn enc(s: &str) -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
    let mut params: HashMap<String, String> = HashMap::new();
    for part in header.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            let raw = v.trim_matches('"');
            let decoded = url_decode_form(format!("x={}", raw.replace('+', "%2B")).as_bytes())
                .remove("x")
                .unwrap_or_default();
            params.insert(k.to_string(), decoded);
        }
    }
    let Some(given) = params.remove("oauth_signature") else {
        return false;
    };
    params.remove("realm");
    if params.get("oauth_consumer_key") != Some(&opts.client_id)
        || params.get("oauth_token") != Some(&opts.oauth1_token)
        || params.get("oauth_signature_method").map(String::as_str) != Some("HMAC-SHA1")
    {
        return false;
    }
    let mut pairs: Vec<String> = params.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect();
    pairs.sort();
    let base = format!("GET&{}&{}", enc(base_uri), enc(&pairs.join("&")));
    let key = format!("{}&{}", enc(&opts.client_secret), enc(&opts.oauth1_token_secret));
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).expect("any key length");
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()) == given
}

/// Where a `--truncate-at` body is in its cut.
#[derive(Clone, Copy)]
enum Cut {
    No,
    Next,
    Done,
}
