//! The HTTP surface: routes, request admission (load shedding), body
//! limits and gzip decoding, and the answers of each endpoint. Decoding is
//! in `sdk`, `segment` and `wechat_push`; storing is in `ingest`.
//!
//! Answers: the SDK endpoint always sends header `err_code` (`0` ok;
//! `1001` bad app or key, `1002` malformed, `1003` too large, `1004` an
//! event was rejected (the others are stored), `1005` overloaded, `1006`
//! body too slow, `1007` unsupported encoding, `1008` storing failed) with
//! a JSON body `{"err_code", "message", …}`. `/v1/batch` answers 200 with
//! per-message results, 400/401/408/413/415, or 503 with `Retry-After`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use cohortdb_sql::ingest::sources;
use cohortdb_sql::model::rows::now_ms;
use futures::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ingest::{Incoming, IngestError, Ingestor, Outcome};
use crate::metrics as m;
use crate::settings::CollectorSettings;

/// The collector: shared state of every request.
pub struct Collector {
    ingest: Ingestor,
    admission: Arc<Semaphore>,
    metrics: PrometheusHandle,
}

impl Collector {
    /// A collector writing through `engine` with `settings`.
    pub fn new(engine: Arc<cohortdb_sql::Engine>, settings: CollectorSettings) -> Arc<Collector> {
        let admission = Arc::new(Semaphore::new(settings.max_inflight.max(1)));
        Arc::new(Collector {
            ingest: Ingestor::new(engine, settings),
            admission,
            metrics: m::install(),
        })
    }

    fn settings(&self) -> &CollectorSettings {
        self.ingest.settings()
    }
}

/// The routes of SPEC §12.
pub fn router(c: Arc<Collector>) -> Router {
    Router::new()
        .route("/sdk/v1/track", post(sdk_track).get(sdk_track_get))
        .route("/v1/batch", post(batch))
        .route("/wechat/{account_id}", get(wechat_check).post(wechat_push))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .with_state(c)
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    c: Arc<Collector>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(c))
        .with_graceful_shutdown(shutdown)
        .await
}

/// A request refused before its messages were read.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    err_code: u32,
    message: String,
}

fn refuse(status: StatusCode, err_code: u32, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        err_code,
        message: message.into(),
    }
}

/// Counts one answered request and its latency.
struct Request {
    endpoint: &'static str,
    start: Instant,
    _permit: OwnedSemaphorePermit,
}

impl Request {
    fn finish(self, resp: Response) -> Response {
        metrics::counter!(m::REQUESTS, "endpoint" => self.endpoint, "status" => resp.status().as_u16().to_string())
            .increment(1);
        metrics::histogram!(m::LATENCY, "endpoint" => self.endpoint)
            .record(self.start.elapsed().as_secs_f64());
        metrics::gauge!(m::IN_FLIGHT).decrement(1.0);
        resp
    }
}

/// Admits a request, or answers 503 with `Retry-After` when
/// `max_inflight` requests are already being handled.
fn admit(c: &Collector, endpoint: &'static str) -> Result<Request, Refusal> {
    match c.admission.clone().try_acquire_owned() {
        Ok(permit) => {
            metrics::gauge!(m::IN_FLIGHT).increment(1.0);
            Ok(Request {
                endpoint,
                start: Instant::now(),
                _permit: permit,
            })
        }
        Err(_) => {
            metrics::counter!(m::REQUESTS, "endpoint" => endpoint, "status" => "503").increment(1);
            Err(refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                1005,
                "overloaded: too many requests in flight (max_inflight); retry later",
            ))
        }
    }
}

/// Most bytes of an oversized body read (and dropped) before answering 413.
const DRAIN_MAX: usize = 16 << 20;

/// Reads the body within the wire limit and the body timeout, then
/// inflates gzip within the decoded limit.
async fn read_body(c: &Collector, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Refusal> {
    let s = c.settings();
    let wire_max = s.max_wire_kb << 10;
    let too_large = |what: &str, max: usize| {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            1003,
            format!("the {what} is over {} KiB", max >> 10),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > wire_max.max(DRAIN_MAX) {
            return Err(too_large("request body (max_wire_kb)", wire_max));
        }
    }
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e.is_empty() || e == "identity" => false,
        Some(e) if e == "gzip" || e == "x-gzip" => true,
        Some(e) => {
            return Err(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                1007,
                format!("Content-Encoding {e} is not supported (use gzip or none)"),
            ))
        }
    };
    let deadline = Duration::from_secs(s.body_timeout_secs.max(1));
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(deadline, async {
        // Past the limit the rest is read and dropped (up to DRAIN_MAX), so
        // the client, still sending, receives the 413 instead of a reset.
        let (mut over, mut seen) = (false, 0usize);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                refuse(
                    StatusCode::BAD_REQUEST,
                    1002,
                    format!("reading the body failed: {e}"),
                )
            })?;
            seen += chunk.len();
            if over || buf.len() + chunk.len() > wire_max {
                over = true;
                buf = Vec::new();
                if seen > DRAIN_MAX {
                    break;
                }
                continue;
            }
            buf.extend_from_slice(&chunk);
        }
        if over {
            return Err(too_large("request body (max_wire_kb)", wire_max));
        }
        Ok(())
    })
    .await;
    match read {
        Err(_) => {
            return Err(refuse(
                StatusCode::REQUEST_TIMEOUT,
                1006,
                format!(
                    "the body did not arrive within {} s (body_timeout_secs)",
                    deadline.as_secs()
                ),
            ))
        }
        Ok(Err(r)) => return Err(r),
        Ok(Ok(())) => {}
    }
    if gzip || buf.starts_with(&[0x1f, 0x8b]) {
        use std::io::Read;
        let max = s.max_decoded_kb << 10;
        let mut out = Vec::new();
        let mut dec = flate2::read::GzDecoder::new(buf.as_slice()).take(max as u64 + 1);
        dec.read_to_end(&mut out).map_err(|e| {
            refuse(
                StatusCode::BAD_REQUEST,
                1002,
                format!("the gzip body is corrupt: {e}"),
            )
        })?;
        if out.len() > max {
            return Err(too_large("decoded body (max_decoded_kb)", max));
        }
        return Ok(out);
    }
    Ok(buf)
}

fn count_outcomes(outcomes: &[Outcome]) -> (usize, usize, usize) {
    let (mut stored, mut dup, mut rejected) = (0, 0, 0);
    for o in outcomes {
        match o {
            Outcome::Stored { warnings } => {
                stored += 1;
                if !warnings.is_empty() {
                    metrics::counter!(m::DROPPED_PROPERTIES).increment(warnings.len() as u64);
                }
            }
            Outcome::Duplicate => dup += 1,
            Outcome::Rejected(_) => rejected += 1,
        }
    }
    metrics::counter!(m::MESSAGES, "result" => "stored").increment(stored as u64);
    metrics::counter!(m::MESSAGES, "result" => "duplicate").increment(dup as u64);
    metrics::counter!(m::MESSAGES, "result" => "rejected").increment(rejected as u64);
    (stored, dup, rejected)
}

/// Stores the decoded messages; messages refused while decoding keep
/// their reason. Returns the outcome of each, in order.
async fn store_all(
    c: &Collector,
    decoded: Vec<Result<Incoming, String>>,
) -> Result<Vec<Outcome>, Refusal> {
    let max = c.settings().max_batch_events;
    if decoded.len() > max {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            1003,
            format!(
                "{} events in one request, over the limit of {max} (max_batch_events)",
                decoded.len()
            ),
        ));
    }
    let mut slots = Vec::with_capacity(decoded.len());
    let mut good = Vec::new();
    for d in decoded {
        match d {
            Ok(inc) => {
                slots.push(None);
                good.push(inc);
            }
            Err(reason) => slots.push(Some(Outcome::Rejected(reason))),
        }
    }
    let stored = c.ingest.store(good).await.map_err(|e: IngestError| {
        tracing::warn!("collector write failed: {e}");
        refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            1008,
            format!("{e}; nothing of this request was stored, retry it"),
        )
    })?;
    let mut it = stored.into_iter();
    Ok(slots
        .into_iter()
        .map(|s| s.unwrap_or_else(|| it.next().expect("one outcome per stored message")))
        .collect())
}

fn results_json(outcomes: &[Outcome]) -> Vec<serde_json::Value> {
    outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| match o {
            Outcome::Stored { warnings } if warnings.is_empty() => {
                json!({"index": i, "status": "stored"})
            }
            Outcome::Stored { warnings } => {
                json!({"index": i, "status": "stored", "warnings": warnings})
            }
            Outcome::Duplicate => json!({"index": i, "status": "duplicate"}),
            Outcome::Rejected(r) => json!({"index": i, "status": "rejected", "reason": r}),
        })
        .collect()
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---- POST /sdk/v1/track ----

fn sdk_answer(status: StatusCode, err_code: u32, body: serde_json::Value) -> Response {
    let mut resp = json_response(status, &body);
    resp.headers_mut()
        .insert("err_code", HeaderValue::from(err_code));
    resp
}

fn sdk_refusal(r: Refusal) -> Response {
    let mut resp = sdk_answer(
        r.status,
        r.err_code,
        json!({"err_code": r.err_code, "message": r.message}),
    );
    if r.status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

async fn sdk_track(State(c): State<Arc<Collector>>, headers: HeaderMap, body: Body) -> Response {
    let req = match admit(&c, "sdk") {
        Ok(r) => r,
        Err(r) => return sdk_refusal(r),
    };
    let resp = match read_body(&c, &headers, body).await {
        Ok(bytes) => sdk_store(&c, &bytes).await,
        Err(r) => sdk_refusal(r),
    };
    req.finish(resp)
}

/// `GET /sdk/v1/track?data=<base64 JSON>` (the SDK's `apiMethod: get`).
async fn sdk_track_get(
    State(c): State<Arc<Collector>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let req = match admit(&c, "sdk") {
        Ok(r) => r,
        Err(r) => return sdk_refusal(r),
    };
    let data = q.get("data").map(String::as_str).unwrap_or("");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(data)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(data));
    let resp = match decoded {
        Ok(bytes) if !bytes.is_empty() => sdk_store(&c, &bytes).await,
        _ => sdk_refusal(refuse(
            StatusCode::BAD_REQUEST,
            1002,
            "GET needs ?data=<base64 of the JSON body>",
        )),
    };
    req.finish(resp)
}

async fn sdk_store(c: &Collector, body: &[u8]) -> Response {
    let store = c.ingest.engine().store().clone();
    let auth =
        |app: &str, key: &str| sources::authenticate_app(&store, app, key).map(|a| a.channel_id);
    let max_event = c.settings().max_event_kb << 10;
    let decoded = match crate::sdk::parse(body, now_ms(), max_event, &auth) {
        Ok(d) => d,
        Err(crate::sdk::SdkError::Malformed(msg)) => {
            return sdk_refusal(refuse(StatusCode::BAD_REQUEST, 1002, msg))
        }
        Err(crate::sdk::SdkError::Unauthorized(msg)) => {
            return sdk_refusal(refuse(StatusCode::UNAUTHORIZED, 1001, msg))
        }
    };
    let outcomes = match store_all(c, decoded).await {
        Ok(o) => o,
        Err(r) => return sdk_refusal(r),
    };
    let (stored, dup, rejected) = count_outcomes(&outcomes);
    let err_code = if rejected > 0 { 1004 } else { 0 };
    let message = if rejected > 0 {
        format!("{rejected} event(s) rejected, the others stored")
    } else {
        "ok".to_string()
    };
    sdk_answer(
        StatusCode::OK,
        err_code,
        json!({
            "err_code": err_code,
            "message": message,
            "stored": stored,
            "duplicates": dup,
            "rejected": rejected,
            "results": results_json(&outcomes),
        }),
    )
}

// ---- POST /v1/batch ----

fn batch_refusal(r: Refusal) -> Response {
    let mut resp = json_response(r.status, &json!({"error": r.message}));
    if r.status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if r.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"cohortdb collector\""),
        );
    }
    resp
}

/// The app a batch request authenticates as: Basic `key:` or
/// `app_id:key`, or `X-Write-Key: key`.
fn batch_app(
    store: &cohortdb_storage::Store,
    headers: &HeaderMap,
) -> Option<cohortdb_storage::catalog::collector::CollectorAppDef> {
    if let Some(basic) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
    {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, pass) = text.split_once(':').unwrap_or((text.as_str(), ""));
        return if pass.is_empty() {
            sources::authenticate_key(store, user)
        } else {
            sources::authenticate_app(store, user, pass)
        };
    }
    let key = headers.get("x-write-key")?.to_str().ok()?;
    sources::authenticate_key(store, key.trim())
}

async fn batch(State(c): State<Arc<Collector>>, headers: HeaderMap, body: Body) -> Response {
    let req = match admit(&c, "batch") {
        Ok(r) => r,
        Err(r) => return batch_refusal(r),
    };
    let resp = batch_inner(&c, &headers, body).await;
    req.finish(resp)
}

async fn batch_inner(c: &Collector, headers: &HeaderMap, body: Body) -> Response {
    let store = c.ingest.engine().store().clone();
    let Some(app) = batch_app(&store, headers) else {
        return batch_refusal(refuse(
            StatusCode::UNAUTHORIZED,
            1001,
            "missing or unknown write key: send it as the HTTP Basic user or in X-Write-Key",
        ));
    };
    let bytes = match read_body(c, headers, body).await {
        Ok(b) => b,
        Err(r) => return batch_refusal(r),
    };
    let s = c.settings();
    let decoded = match crate::segment::parse(
        &bytes,
        &app.app_id,
        &app.channel_id,
        now_ms(),
        s.clock_skew_secs * 1000,
        s.max_event_kb << 10,
    ) {
        Ok(d) => d,
        Err(e) => return batch_refusal(refuse(StatusCode::BAD_REQUEST, 1002, e.0)),
    };
    let outcomes = match store_all(c, decoded).await {
        Ok(o) => o,
        Err(r) => return batch_refusal(r),
    };
    let (stored, dup, rejected) = count_outcomes(&outcomes);
    json_response(
        StatusCode::OK,
        &json!({
            "ok": stored,
            "duplicates": dup,
            "rejected": rejected,
            "results": results_json(&outcomes),
        }),
    )
}

// ---- /wechat/{account_id} ----

fn wechat_verified(
    c: &Collector,
    account: &str,
    q: &HashMap<String, String>,
) -> Result<(), Refusal> {
    let store = c.ingest.engine().store();
    let token = sources::wechat_token(store, account).ok_or_else(|| {
        refuse(
            StatusCode::UNAUTHORIZED,
            1001,
            format!("no event-push token is set for account {account} (CALL collector_set_wechat_token)"),
        )
    })?;
    let arg = |k: &str| q.get(k).map(String::as_str).unwrap_or("");
    if arg("signature").is_empty()
        || !crate::wechat_push::signature_ok(
            &token,
            arg("timestamp"),
            arg("nonce"),
            arg("signature"),
        )
    {
        return Err(refuse(
            StatusCode::UNAUTHORIZED,
            1001,
            "bad or missing signature",
        ));
    }
    Ok(())
}

fn plain(r: Refusal) -> Response {
    let mut resp = (r.status, format!("{}\n", r.message)).into_response();
    if r.status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

/// WeChat's URL check: `echostr` back when the signature is right.
async fn wechat_check(
    State(c): State<Arc<Collector>>,
    Path(account): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match wechat_verified(&c, &account, &q) {
        Ok(()) => q
            .get("echostr")
            .cloned()
            .unwrap_or_default()
            .into_response(),
        Err(r) => plain(r),
    }
}

async fn wechat_push(
    State(c): State<Arc<Collector>>,
    Path(account): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let req = match admit(&c, "wechat") {
        Ok(r) => r,
        Err(r) => return plain(r),
    };
    let resp = wechat_inner(&c, &account, &q, &headers, body).await;
    req.finish(resp)
}

async fn wechat_inner(
    c: &Collector,
    account: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = wechat_verified(c, account, q) {
        return plain(r);
    }
    if q.get("encrypt_type").is_some_and(|e| e != "raw") {
        return plain(refuse(
            StatusCode::BAD_REQUEST,
            1002,
            "encrypted (safe) mode pushes are not supported: set the account's message mode to plain text",
        ));
    }
    let bytes = match read_body(c, headers, body).await {
        Ok(b) => b,
        Err(r) => return plain(r),
    };
    let events = match crate::wechat_push::parse(&bytes, account) {
        Ok(v) => v,
        Err(e) => return plain(refuse(StatusCode::BAD_REQUEST, 1002, e)),
    };
    let budget = Duration::from_secs(c.settings().wechat_reply_secs.max(1));
    let decoded = events.into_iter().map(Ok).collect();
    match tokio::time::timeout(budget, store_all(c, decoded)).await {
        Ok(Ok(outcomes)) => {
            count_outcomes(&outcomes);
            if let Some(Outcome::Rejected(r)) =
                outcomes.iter().find(|o| matches!(o, Outcome::Rejected(_)))
            {
                tracing::warn!("official-account push for {account} not stored: {r}");
            }
            // WeChat wants "success" (or an empty body) to stop retrying
            "success".into_response()
        }
        Ok(Err(r)) => plain(r),
        Err(_) => plain(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            1008,
            "storing the push took too long; WeChat will retry it (stored once)",
        )),
    }
}

// ---- GET /metrics ----

async fn metrics(State(c): State<Arc<Collector>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        c.metrics.render(),
    )
        .into_response()
}
