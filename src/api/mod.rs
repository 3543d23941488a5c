//! The HTTP API (design §2): a thin axum layer. Handlers parse and bound
//! their input, call the log, and map the result; every error is a JSON
//! `{"error": {"code", "message"}}` with a fitting status.

mod error;
mod query;

pub use error::ApiError;

use crate::access::{Access, Caller, NewToken, TokenRecord};
use crate::audit::event;
use crate::error::Error;
use crate::log::{Head, Log, Receipt};
use crate::note::parse_canonical_u64;
use crate::registry::service::{Appended, Registry};
use crate::tiles::{self, TileKind};
use crate::tree::{leaf_hash, Hash};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use query::Query;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Largest request body accepted for an event.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Most entries in one `/v1/entries` page.
    pub max_page: u64,
    pub request_timeout: Duration,
    /// Longest an append with `?wait=witnessed` waits for cosignatures.
    pub witness_wait: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_page: 1000,
            request_timeout: Duration::from_secs(30),
            witness_wait: Duration::from_secs(10),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub log: Arc<Log>,
    /// Tokens, principals and roles.
    access: Arc<Access>,
    limits: ApiLimits,
    /// The checkpoint cosigned by witnesses, when witnesses are configured.
    witnessed: Option<watch::Receiver<Arc<Head>>>,
    /// The model registry's gates and state.
    registry: Arc<Registry>,
}

impl AppState {
    pub fn new(
        log: Arc<Log>,
        access: Arc<Access>,
        registry: Arc<Registry>,
        limits: ApiLimits,
    ) -> Self {
        AppState {
            log,
            access,
            registry,
            limits,
            witnessed: None,
        }
    }

    /// Serve the checkpoints a witness collector publishes at `/checkpoint`.
    pub fn with_witnessed(mut self, published: watch::Receiver<Arc<Head>>) -> Self {
        self.witnessed = Some(published);
        self
    }

    /// The checkpoint `/checkpoint` serves: the latest cosigned one when
    /// witnesses are configured, else the log's latest.
    fn published(&self) -> Arc<Head> {
        match &self.witnessed {
            Some(rx) => rx.borrow().clone(),
            None => self.log.head(),
        }
    }

    /// The caller behind the request's bearer token.
    fn authorize(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        // The scheme is case-insensitive (RFC 9110 §11.1).
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t)
            .ok_or(Error::Unauthorized)?;
        Ok(self.access.authenticate(presented)?)
    }
}

pub fn router(state: AppState) -> Router {
    let timeout = state.limits.request_timeout;
    Router::new()
        .route("/checkpoint", get(checkpoint))
        // Entry bundles compress well; everything else is small or random.
        .route(
            "/tile/{*path}",
            get(tile).layer(tower_http::compression::CompressionLayer::new().gzip(true)),
        )
        .route("/v1/log", get(log_info))
        .route("/v1/events", post(append))
        .route("/v1/events/{event_id}", get(event_by_id))
        .route("/v1/receipt", get(receipt))
        .route("/v1/admin/tokens", post(grant_token).get(list_tokens))
        .route("/v1/keys", post(register_key))
        .route("/v1/models/{name}/versions/{version}", get(model_version))
        .route("/v1/search", get(search))
        .route("/v1/trace/{kind}/{id}", get(trace))
        .route("/v1/keys/{service}", get(service_keys))
        .route(
            "/v1/admin/tokens/{token_id}",
            delete(revoke_token).patch(change_roles),
        )
        .route("/v1/entries", get(entries))
        .route("/v1/entries/{index}", get(entry))
        .route("/v1/proof/inclusion", get(inclusion))
        .route("/v1/proof/consistency", get(consistency))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(|| async { ApiError::from(Error::NotFound("no such endpoint".into())) })
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .with_state(state)
}

/// Run blocking store reads off the async workers.
async fn blocking<T: Send + 'static>(
    log: &Arc<Log>,
    f: impl FnOnce(&Log) -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    let log = log.clone();
    tokio::task::spawn_blocking(move || f(&log))
        .await
        .map_err(|e| Error::Internal(format!("read task failed: {e}")))?
        .map_err(ApiError::from)
}

/// Lowercase hex of a hash. Table-driven: this runs several times per
/// receipt, and the `hex` crate's char iterator showed in profiles.
fn hex32(h: &Hash) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(64);
    for b in h {
        out.push(DIGITS[(b >> 4) as usize]);
        out.push(DIGITS[(b & 15) as usize]);
    }
    // Every byte pushed is an ASCII digit or letter.
    String::from_utf8(out).unwrap_or_default()
}

fn parse_hex32(s: &str, name: &str) -> Result<Hash, ApiError> {
    let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let bytes = if ok { hex::decode(s).ok() } else { None };
    bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| {
        Error::bad(
            "bad_hash",
            format!("{name} must be 64 lowercase hex digits"),
        )
        .into()
    })
}

/// A JSON object written field by field, so that stored canonical events are
/// embedded as they are instead of being parsed and serialized again.
struct JsonObject(String);

impl JsonObject {
    fn new() -> Self {
        JsonObject(String::from("{"))
    }
    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push('"');
        self.0.push_str(k);
        self.0.push_str("\":");
    }
    fn field<T: Serialize + ?Sized>(mut self, k: &str, v: &T) -> Self {
        self.key(k);
        // Serializing plain strings, numbers and lists of strings cannot fail.
        self.0
            .push_str(&serde_json::to_string(v).unwrap_or_else(|_| "null".into()));
        self
    }
    /// Embed bytes that are already JSON (an event as stored).
    fn raw(mut self, k: &str, json: &[u8]) -> Result<Self, Error> {
        let s = std::str::from_utf8(json)
            .map_err(|_| Error::Internal("stored entry is not UTF-8".into()))?;
        self.key(k);
        self.0.push_str(s);
        Ok(self)
    }
    fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A 2xx JSON response from a pre-built body.
fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn checkpoint(State(st): State<AppState>) -> Response {
    let head = st.published();
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=2"),
        ],
        head.checkpoint.clone(),
    )
        .into_response()
}

async fn tile(
    State(st): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(path) = path.map_err(|e| Error::bad("bad_tile_path", e.body_text()))?;
    let t = tiles::parse(&path).map_err(|m| Error::bad("bad_tile_path", m))?;
    let size = st.log.head().size;
    match t.min_tree_size() {
        Some(needed) if needed <= size => {}
        _ => {
            return Err(
                Error::NotFound(format!("tile {path} is not in the tree of size {size}")).into(),
            )
        }
    }
    let start = t.index * tiles::TILE_WIDTH;
    let body = match t.kind {
        TileKind::Hashes { level } => {
            let hashes = blocking(&st.log, move |log| {
                log.node_range(level * 8, start, t.width)
            })
            .await?;
            hashes.concat()
        }
        TileKind::Entries => {
            let entries = blocking(&st.log, move |log| log.entries(start, start + t.width)).await?;
            tiles::entry_bundle(&entries)
        }
    };
    let cache = if t.is_partial() {
        "public, max-age=60"
    } else {
        "public, max-age=31536000, immutable"
    };
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response())
}

#[derive(Serialize)]
struct LogInfo {
    origin: String,
    verifier_key: String,
    tree_size: u64,
    root_hash: String,
    checkpoint: String,
    /// With witnesses: the latest checkpoint they cosigned (what
    /// `/checkpoint` serves).
    #[serde(skip_serializing_if = "Option::is_none")]
    witnessed: Option<Witnessed>,
}

#[derive(Serialize)]
struct Witnessed {
    tree_size: u64,
    checkpoint: String,
}

async fn log_info(State(st): State<AppState>) -> Json<LogInfo> {
    let head = st.log.head();
    Json(LogInfo {
        origin: st.log.origin().to_string(),
        verifier_key: st.log.verifier().to_string(),
        tree_size: head.size,
        root_hash: hex32(&head.root),
        checkpoint: head.checkpoint.clone(),
        witnessed: st.witnessed.as_ref().map(|rx| {
            let w = rx.borrow().clone();
            Witnessed {
                tree_size: w.size,
                checkpoint: w.checkpoint.clone(),
            }
        }),
    })
}

fn receipt_json(r: &Receipt, event_id: &str) -> Result<String, Error> {
    Ok(receipt_object(r, event_id)?.finish())
}

fn receipt_object(r: &Receipt, event_id: &str) -> Result<JsonObject, Error> {
    let proof: Vec<String> = r.proof.iter().map(hex32).collect();
    Ok(JsonObject::new()
        .field("index", &r.index)
        .field("tree_size", &r.head.size)
        .field("leaf_hash", &hex32(&r.leaf_hash))
        .field("event_id", event_id)
        .raw("event", &r.canonical)?
        .field("checkpoint", &r.head.checkpoint)
        .field("inclusion_proof", &proof)
        .field("tlog_proof", &r.tlog_proof()))
}

async fn append(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = st.authorize(&headers)?;
    let q = Query::parse(q.as_deref(), &["wait"])?;
    let wait_witnessed = match q.str("wait") {
        None => false,
        Some("witnessed") => true,
        Some(_) => return Err(Error::bad("bad_query", "wait must be \"witnessed\"").into()),
    };
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(
            Error::UnsupportedMediaType("Content-Type must be application/json".into()).into(),
        );
    }
    let bytes: Bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| Error::TooLarge(format!("the body is larger than {MAX_BODY_BYTES} bytes")))?;
    let prepared = event::prepare(&bytes).map_err(|e| match e {
        event::EventError::TooLarge(_) => Error::TooLarge(e.to_string()),
        event::EventError::Json(_) => Error::bad("invalid_json", e.to_string()),
        event::EventError::Field { .. } => Error::bad("invalid_event", e.to_string()),
    })?;
    st.access.check_event(&caller, &prepared)?;
    st.access.check_signature(&prepared)?;
    let event_id = prepared.event_id.to_string();
    let receipt = if crate::registry::service::decides(&prepared) {
        match st.registry.append(&st.log, &caller, prepared).await? {
            Appended::Accepted(r) => r,
            Appended::Denied {
                reasons,
                receipt,
                event_id,
            } => {
                let body = serde_json::json!({
                    "error": {
                        "code": "denied",
                        "message": format!("refused by the registry's rules: {}", reasons.join("; ")),
                        "reasons": reasons,
                    },
                    "deny_receipt": receipt_value(&receipt, &event_id)?,
                });
                return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response());
            }
        }
    } else {
        st.log.append(prepared).await?
    };
    let status = if receipt.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if !wait_witnessed {
        return Ok(json_response(status, receipt_json(&receipt, &event_id)?));
    }
    // The event is durable; now wait (bounded) for a cosigned checkpoint
    // that covers it. On time-out the log-signed receipt is still valid.
    let index = receipt.index;
    let head = match st.witnessed.clone() {
        Some(mut rx) => tokio::time::timeout(st.limits.witness_wait, async move {
            rx.wait_for(|h| h.size > index)
                .await
                .ok()
                .map(|h| h.clone())
        })
        .await
        .ok()
        .flatten(),
        None => None,
    };
    let (receipt, witnessed) = match head {
        Some(head) => {
            let created = receipt.created;
            let mut r = blocking(&st.log, move |log| log.receipt_at(index, head)).await?;
            r.created = created;
            (r, true)
        }
        None => (receipt, false),
    };
    let body = receipt_object(&receipt, &event_id)?
        .field("witnessed", &witnessed)
        .finish();
    Ok(json_response(status, body))
}

/// `GET /v1/receipt?index=I` or `?event_id=E`: an offline receipt against
/// the checkpoint `/checkpoint` serves (cosigned, with witnesses).
async fn receipt(State(st): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref(), &["index", "event_id"])?;
    let by_id = match q.str("event_id") {
        Some(s) => Some(parse_uuid(s, "bad_event_id", "event_id")?),
        None => None,
    };
    let index = q.u64("index")?;
    let head = st.published();
    let (r, event_id) = blocking(&st.log, move |log| {
        let index = match (index, by_id) {
            (Some(i), None) => i,
            (None, Some(id)) => log
                .find_event(id.as_bytes())?
                .ok_or_else(|| Error::NotFound(format!("no event {id}")))?,
            _ => {
                return Err(Error::bad(
                    "bad_query",
                    "give exactly one of index and event_id",
                ))
            }
        };
        if index >= head.size {
            return Err(Error::NotFound(format!(
                "entry {index} is not yet in the published checkpoint (size {}); retry later",
                head.size
            )));
        }
        let r = log.receipt_at(index, head)?;
        let event_id = serde_json::from_slice::<serde_json::Value>(&r.canonical)
            .ok()
            .and_then(|v| v["event_id"].as_str().map(str::to_string))
            .unwrap_or_default();
        Ok((r, event_id))
    })
    .await?;
    Ok(json_response(StatusCode::OK, receipt_json(&r, &event_id)?))
}

fn entry_json(index: u64, bytes: &[u8]) -> Result<String, Error> {
    Ok(JsonObject::new()
        .field("index", &index)
        .field("leaf_hash", &hex32(&leaf_hash(bytes)))
        .raw("event", bytes)?
        .finish())
}

fn path_u64(
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    name: &str,
) -> Result<u64, ApiError> {
    let Path(s) = p.map_err(|e| Error::bad("bad_path", e.body_text()))?;
    parse_canonical_u64(&s).ok_or_else(|| {
        Error::bad(
            "bad_number",
            format!("{name} must be a canonical non-negative integer"),
        )
        .into()
    })
}

async fn entry(
    State(st): State<AppState>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let index = path_u64(p, "index")?;
    let bytes = blocking(&st.log, move |log| log.entry(index)).await?;
    Ok(json_response(StatusCode::OK, entry_json(index, &bytes)?))
}

async fn entries(State(st): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref(), &["start", "limit"])?;
    let start = q.u64("start")?.unwrap_or(0);
    let limit = q.u64("limit")?.unwrap_or(100);
    if limit == 0 || limit > st.limits.max_page {
        return Err(Error::bad(
            "bad_limit",
            format!("limit must be 1..={}", st.limits.max_page),
        )
        .into());
    }
    let size = st.log.head().size;
    if start > size {
        return Err(Error::bad(
            "beyond_tree",
            format!("start {start} is beyond the tree size {size}"),
        )
        .into());
    }
    let end = start.saturating_add(limit).min(size);
    let list = blocking(&st.log, move |log| log.entries(start, end)).await?;
    let mut entries = String::from("[");
    for (i, b) in list.iter().enumerate() {
        if i > 0 {
            entries.push(',');
        }
        entries.push_str(&entry_json(start + i as u64, b)?);
    }
    entries.push(']');
    let body = JsonObject::new()
        .field("start", &start)
        .field("tree_size", &size)
        .raw("entries", entries.as_bytes())?
        .finish();
    Ok(json_response(StatusCode::OK, body))
}

async fn event_by_id(
    State(st): State<AppState>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(s) = p.map_err(|e| Error::bad("bad_path", e.body_text()))?;
    let id = parse_uuid(&s, "bad_event_id", "event_id")?;
    let (index, bytes) = blocking(&st.log, move |log| {
        let index = log
            .find_event(id.as_bytes())?
            .ok_or_else(|| Error::NotFound(format!("no event {id}")))?;
        Ok((index, log.entry(index)?))
    })
    .await?;
    Ok(json_response(StatusCode::OK, entry_json(index, &bytes)?))
}

#[derive(Serialize)]
struct InclusionJson {
    index: u64,
    tree_size: u64,
    leaf_hash: String,
    proof: Vec<String>,
}

async fn inclusion(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<InclusionJson>, ApiError> {
    let q = Query::parse(q.as_deref(), &["index", "leaf_hash", "tree_size"])?;
    let head_size = st.log.head().size;
    let size = q.u64("tree_size")?.unwrap_or(head_size);
    if size > head_size {
        return Err(Error::bad(
            "beyond_tree",
            format!("tree_size {size} is beyond the tree size {head_size}"),
        )
        .into());
    }
    if size == 0 {
        return Err(Error::bad("empty_tree", "tree_size 0 has no inclusion proofs").into());
    }
    let by_hash = match q.str("leaf_hash") {
        Some(h) => Some(parse_hex32(h, "leaf_hash")?),
        None => None,
    };
    let index = q.u64("index")?;
    let (index, leaf, proof) = blocking(&st.log, move |log| {
        let index = match (index, by_hash) {
            (Some(i), None) => i,
            (None, Some(h)) => {
                let i = log
                    .find_leaf(&h)?
                    .ok_or_else(|| Error::NotFound("no entry with that leaf hash".into()))?;
                if i >= size {
                    return Err(Error::NotFound(format!(
                        "that leaf is at index {i}, not below tree_size {size}"
                    )));
                }
                i
            }
            _ => {
                return Err(Error::bad(
                    "bad_query",
                    "give exactly one of index and leaf_hash",
                ))
            }
        };
        let (leaf, proof) = log.leaf_and_inclusion_proof(index, size)?;
        Ok((index, leaf, proof))
    })
    .await?;
    Ok(Json(InclusionJson {
        index,
        tree_size: size,
        leaf_hash: hex32(&leaf),
        proof: proof.iter().map(hex32).collect(),
    }))
}

#[derive(Serialize)]
struct ConsistencyJson {
    old_size: u64,
    new_size: u64,
    proof: Vec<String>,
}

async fn consistency(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<ConsistencyJson>, ApiError> {
    let q = Query::parse(q.as_deref(), &["old_size", "new_size"])?;
    let old = q
        .u64("old_size")?
        .ok_or_else(|| Error::bad("bad_query", "old_size is required"))?;
    let new = match q.u64("new_size")? {
        Some(n) => n,
        None => st.log.head().size,
    };
    let proof = blocking(&st.log, move |log| log.consistency_proof(old, new)).await?;
    Ok(Json(ConsistencyJson {
        old_size: old,
        new_size: new,
        proof: proof.iter().map(hex32).collect(),
    }))
}

async fn metrics(State(st): State<AppState>) -> Response {
    st.log.metrics().set_storage(st.log.store().memory());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        st.log.metrics().render(),
    )
        .into_response()
}

async fn healthz(State(st): State<AppState>) -> Response {
    let head = st.log.head();
    let body = serde_json::json!({"status": if st.log.healthy() { "ok" } else { "failing" }, "tree_size": head.size});
    let status = if st.log.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

fn token_json(t: &TokenRecord) -> serde_json::Value {
    serde_json::json!({
        "token_id": t.token_id,
        "principal": {"type": t.principal.kind, "id": t.principal.id},
        "roles": t.roles,
        "created_at": t.created_at,
        "expires_at": t.expires_at,
        "revoked_at": t.revoked_at,
        "granted_by": t.granted_by,
        "grant_index": t.grant_index,
        "revoke_index": t.revoke_index,
    })
}

/// A receipt as a JSON value, for answers built as values.
fn receipt_value(r: &Receipt, event_id: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(&receipt_json(r, event_id)?).map_err(|e| Error::Internal(e.to_string()))
}

/// Largest body of an admin request.
const MAX_ADMIN_BODY: usize = 16 * 1024;

/// A small JSON request body: bounded, strict JSON (UTF-8, no duplicate
/// keys), then the expected shape with no unknown fields.
async fn read_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_ADMIN_BODY)
        .await
        .map_err(|_| Error::TooLarge(format!("the body is larger than {MAX_ADMIN_BODY} bytes")))?;
    let value =
        event::parse_strict(&bytes).map_err(|e| Error::bad("invalid_json", e.to_string()))?;
    Ok(serde_json::from_value(value).map_err(|e| Error::bad("invalid_request", e.to_string()))?)
}

/// `POST /v1/admin/tokens` (admin): make a token for a principal with
/// roles. The secret is in this answer only; the grant is logged first.
async fn grant_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = st.authorize(&headers)?;
    let req: NewToken = read_json(body).await?;
    let g = st.access.grant(&st.log, &caller, req).await?;
    let mut out = token_json(&g.record);
    out["token"] = serde_json::Value::String(g.secret);
    out["receipt"] = receipt_value(&g.receipt, &g.event_id)?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /v1/admin/tokens` (admin or auditor): every token, no secrets.
async fn list_tokens(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let caller = st.authorize(&headers)?;
    let list: Vec<serde_json::Value> = st.access.list(&caller)?.iter().map(token_json).collect();
    Ok(Json(serde_json::json!({ "tokens": list })).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRoles {
    roles: Vec<String>,
}

/// `PATCH /v1/admin/tokens/{token_id}` (admin): `{"roles": [...]}`
/// replaces a live token's roles; logged first as `grant_access`.
async fn change_roles(
    State(st): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = st.authorize(&headers)?;
    let id = token_id_path(p)?;
    let req: NewRoles = read_json(body).await?;
    let (record, receipt, event_id) = st
        .access
        .set_roles(&st.log, &caller, &id, &req.roles)
        .await?;
    let mut out = token_json(&record);
    out["receipt"] = receipt_value(&receipt, &event_id)?;
    Ok(Json(out).into_response())
}

fn token_id_path(
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    let Path(id) = p.map_err(|e| Error::bad("bad_path", e.body_text()))?;
    parse_uuid(&id, "bad_token_id", "token_id")?;
    Ok(id)
}

/// A UUID in its one canonical text form: lowercase, hyphenated.
fn parse_uuid(s: &str, code: &'static str, name: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::try_parse(s)
        .ok()
        .filter(|u| u.hyphenated().to_string() == s)
        .ok_or_else(|| {
            Error::bad(code, format!("{name} must be a lowercase hyphenated UUID")).into()
        })
}

/// `DELETE /v1/admin/tokens/{token_id}` (admin): revoke; logged first.
async fn revoke_token(
    State(st): State<AppState>,
    headers: HeaderMap,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let caller = st.authorize(&headers)?;
    let id = token_id_path(p)?;
    let r = st.access.revoke(&st.log, &caller, &id).await?;
    let mut out = token_json(&r.record);
    out["receipt"] = receipt_value(&r.receipt, &r.event_id)?;
    Ok(Json(out).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    public_key: String,
}

/// `POST /v1/keys` (a service, for itself): register an Ed25519 public key
/// for signed attestations; logged as a `register_key` event first.
async fn register_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let caller = st.authorize(&headers)?;
    let req: NewKey = read_json(body).await?;
    let (key, receipt, event_id) = st
        .access
        .register_key(&st.log, &caller, &req.public_key)
        .await?;
    let out = serde_json::json!({
        "service": caller.id,
        "public_key": key.public_key,
        "registered_at": key.registered_at,
        "index": key.index,
        "receipt": receipt_value(&receipt, &event_id)?,
    });
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// `GET /v1/keys/{service}` (public): the keys a service has registered,
/// each with the index of its `register_key` event.
async fn service_keys(
    State(st): State<AppState>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path(service) = p.map_err(|e| Error::bad("bad_path", e.body_text()))?;
    if service.is_empty() || service.len() > 256 {
        return Err(Error::bad("bad_path", "service id must be 1..=256 bytes").into());
    }
    let keys = st.access.keys_of(&service)?;
    Ok(Json(serde_json::json!({"service": service, "keys": keys})).into_response())
}

/// `GET /v1/models/{name}/versions/{version}`: the model version
/// `name:version` as derived from the log, with the indexes of the events.
async fn model_version(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref(), &["proofs"])?;
    let with_proofs = match q.str("proofs") {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(Error::bad("bad_query", "proofs must be true or false").into()),
    };
    let Path((name, version)) = p.map_err(|e| Error::bad("bad_path", e.body_text()))?;
    if name.is_empty() || version.is_empty() || name.len() + version.len() > 255 {
        return Err(Error::bad("bad_path", "model name and version must be 1..=255 bytes").into());
    }
    let id = format!("{name}:{version}");
    let (v, indexed) = st.registry.version(&id).await;
    let v = v.ok_or_else(|| Error::NotFound(format!("no model version {id} in the log")))?;
    let mut out = serde_json::to_value(&v).map_err(|e| Error::Internal(e.to_string()))?;
    out["approvers"] = serde_json::json!(v.current_approvers());
    out["tree_size"] = serde_json::json!(indexed);
    if with_proofs {
        // Every event the state came from, with its inclusion proof against
        // the checkpoint `/checkpoint` serves (when it covers them).
        let head = st.published();
        let events = v.events.clone();
        let proofs = blocking(&st.log, move |log| {
            let mut out = Vec::new();
            for i in events.into_iter().filter(|i| *i < head.size) {
                let (leaf, proof) = log.leaf_and_inclusion_proof(i, head.size)?;
                out.push(serde_json::json!({
                    "index": i,
                    "leaf_hash": hex32(&leaf),
                    "inclusion_proof": proof.iter().map(hex32).collect::<Vec<_>>(),
                }));
            }
            Ok((out, head))
        })
        .await?;
        out["checkpoint"] = serde_json::json!(proofs.1.checkpoint);
        out["proof_tree_size"] = serde_json::json!(proofs.1.size);
        out["proofs"] = serde_json::Value::Array(proofs.0);
    }
    Ok(Json(out).into_response())
}

/// A `(type, id)` from a request: a type as in events, an id of bounded size.
fn lineage_ref(kind: &str, id: &str) -> Result<crate::trace::Ref, ApiError> {
    event::check_lineage_ref(kind, id).map_err(|e| Error::bad("bad_ref", e.to_string()))?;
    Ok(crate::trace::Ref {
        kind: kind.to_string(),
        id: id.to_string(),
    })
}

/// `GET /v1/search?type=T&id=I[&start=S][&limit=L]`: the entries that
/// mention `T:I`, as subject or in `related`, in log order from index S.
async fn search(State(st): State<AppState>, RawQuery(q): RawQuery) -> Result<Response, ApiError> {
    let q = Query::parse(q.as_deref(), &["type", "id", "start", "limit"])?;
    let r = lineage_ref(
        q.str("type")
            .ok_or_else(|| Error::bad("bad_query", "type is required"))?,
        q.str("id")
            .ok_or_else(|| Error::bad("bad_query", "id is required"))?,
    )?;
    let start = q.u64("start")?.unwrap_or(0);
    let limit = q.u64("limit")?.unwrap_or(100);
    if limit == 0 || limit > st.limits.max_page {
        return Err(Error::bad(
            "bad_limit",
            format!("limit must be 1..={}", st.limits.max_page),
        )
        .into());
    }
    let size = st.log.head().size;
    let (found, next) = blocking(&st.log, move |log| {
        let key = crate::store::mention_key(&r.kind, &r.id);
        let page = log.store().mentions(&key, start, limit as usize + 1)?;
        let mut out = Vec::new();
        let mut next = None;
        for (i, (index, role)) in page.into_iter().enumerate() {
            if index >= size {
                break;
            }
            if i == limit as usize {
                next = Some(index);
                break;
            }
            let bytes = log.store().entry(index)?;
            out.push((index, role, bytes));
        }
        Ok((out, next))
    })
    .await?;
    let mut list = String::from("[");
    for (i, (index, role, bytes)) in found.iter().enumerate() {
        if i > 0 {
            list.push(',');
        }
        let role = match role {
            crate::store::Role::Subject => "subject",
            crate::store::Role::Related => "related",
        };
        list.push_str(
            &JsonObject::new()
                .field("index", index)
                .field("role", role)
                .field("leaf_hash", &hex32(&leaf_hash(bytes)))
                .raw("event", bytes)?
                .finish(),
        );
    }
    list.push(']');
    let body = JsonObject::new()
        .field("tree_size", &size)
        .field("next_start", &next)
        .raw("entries", list.as_bytes())?
        .finish();
    Ok(json_response(StatusCode::OK, body))
}

/// `GET /v1/trace/{type}/{id}`: the lineage trace bundle (see `trace`).
async fn trace(
    State(st): State<AppState>,
    p: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    let Path((kind, id)) = p.map_err(|e| Error::bad("bad_path", e.body_text()))?;
    let start = lineage_ref(&kind, &id)?;
    let bundle = blocking(&st.log, move |log| crate::trace::build(log, start)).await?;
    Ok(Json(bundle).into_response())
}
