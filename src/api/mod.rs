//! The HTTP API (design §2): a thin axum layer. Handlers parse and bound
//! their input ([`extract`]), call the ledger (writes) or the log (reads),
//! and answer with the shapes of [`crate::wire`]; every error is a JSON
//! `{"error": {"code", "message"}}` with a fitting status ([`error`]).
//!
//! By concern:
//! - [`log`]: checkpoint, tiles, entries, proofs, receipts, health, metrics;
//! - [`events`]: appending events;
//! - [`admin`]: tokens and signing keys;
//! - [`registry`]: model state, search and lineage traces;
//! - [`openapi`]: the API's description, generated from the handlers;
//! - [`explorer`]: the pages that verify what they show, in the browser.
//!
//! What this module does not do: decide anything. Rules live in the
//! ledger, the access and registry modules; storage is behind the log.

mod admin;
mod artifacts;
mod error;
mod events;
mod explorer;
pub mod extract;
mod log;
mod mlflow;
pub mod openapi;
mod privacy;
mod registry;

pub use artifacts::run_reconcile;
pub use error::ApiError;
pub use mlflow::MlflowHook;

use crate::error::Error;
use crate::ledger::Ledger;
use crate::log::{Head, Log};
use crate::wire;
use axum::http::{header, HeaderMap};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest request body accepted for an event.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest body of any other request.
pub const MAX_SMALL_BODY: usize = 16 * 1024;
/// Most bytes of events in one page of entries or search results (a page
/// always holds at least one entry).
pub const MAX_PAGE_BYTES: usize = 4 << 20;
/// Longest an expensive read waits for a slot.
pub const HEAVY_READ_WAIT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Most entries in one page of a list.
    pub max_page: u64,
    /// Most appends in flight (from reading the body to the receipt);
    /// beyond it, 503 with `Retry-After`.
    pub max_appends: usize,
    /// Most expensive reads at once; a read waits up to
    /// [`HEAVY_READ_WAIT`] for a slot, then gets 503 with `Retry-After`.
    pub max_heavy_reads: usize,
    pub request_timeout: Duration,
    /// Longest an append with `?wait=witnessed` waits for cosignatures.
    pub witness_wait: Duration,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_page: 1000,
            max_appends: 256,
            max_heavy_reads: 2,
            request_timeout: Duration::from_secs(30),
            witness_wait: Duration::from_secs(10),
        }
    }
}

/// What every handler shares, behind one `Arc`: a request clones and drops
/// its state more than once (the middleware and the handler each take
/// one), and one reference count is cheaper to move than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Clone)]
pub struct Shared {
    ledger: Arc<Ledger>,
    log: Arc<Log>,
    limits: ApiLimits,
    /// The checkpoint cosigned by witnesses, when witnesses are configured.
    witnessed: Option<watch::Receiver<Arc<Head>>>,
    appends: Arc<Semaphore>,
    heavy: Arc<Semaphore>,
    /// The artifact store, when the server keeps one.
    blobs: Option<Arc<crate::artifacts::Blobs>>,
    /// Where reconciliation reports with problems are posted.
    webhook: Option<String>,
    /// Whether reads other than the checkpoint, tiles and health need a
    /// token (of any role).
    private_reads: bool,
    /// MLflow webhooks, when configured.
    mlflow: Option<Arc<MlflowHook>>,
}

impl AppState {
    pub fn new(ledger: Arc<Ledger>, limits: ApiLimits) -> Self {
        AppState(Arc::new(Shared {
            log: ledger.log().clone(),
            ledger,
            appends: Arc::new(Semaphore::new(limits.max_appends.max(1))),
            heavy: Arc::new(Semaphore::new(limits.max_heavy_reads.max(1))),
            limits,
            witnessed: None,
            blobs: None,
            webhook: None,
            private_reads: false,
            mlflow: None,
        }))
    }

    /// The shared state to change while the server is being built (a copy
    /// if it is already shared, which it is not then).
    fn build(&mut self) -> &mut Shared {
        Arc::make_mut(&mut self.0)
    }

    /// Accept MLflow webhook deliveries.
    pub fn with_mlflow(mut self, hook: MlflowHook) -> Self {
        self.build().mlflow = Some(Arc::new(hook));
        self
    }

    /// Require a token for every read but `/checkpoint`, tiles and
    /// `/healthz` (which witnesses, monitors and load balancers use).
    pub fn with_private_reads(mut self, private: bool) -> Self {
        self.build().private_reads = private;
        self
    }

    /// Serve and accept artifacts from this store.
    pub fn with_blobs(
        mut self,
        blobs: Arc<crate::artifacts::Blobs>,
        webhook: Option<String>,
    ) -> Self {
        let shared = self.build();
        shared.blobs = Some(blobs);
        shared.webhook = webhook;
        self
    }

    /// A slot for an append, or 503 at once.
    fn append_slot(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.appends.clone().try_acquire_owned().map_err(|_| {
            self.log.metrics().overloaded.inc();
            Error::Overloaded
        })
    }

    /// A slot for an expensive read, waiting a little, or 503.
    async fn heavy_slot(&self) -> Result<OwnedSemaphorePermit, Error> {
        match tokio::time::timeout(HEAVY_READ_WAIT, self.heavy.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(p),
            _ => {
                self.log.metrics().overloaded.inc();
                Err(Error::Overloaded)
            }
        }
    }

    /// Serve the checkpoints a witness collector publishes at `/checkpoint`.
    pub fn with_witnessed(mut self, published: watch::Receiver<Arc<Head>>) -> Self {
        self.build().witnessed = Some(published);
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
}

/// The bearer token of a request. The scheme is case-insensitive (RFC 9110
/// §11.1).
fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t)
        .ok_or(Error::Unauthorized)
}

/// Paths anyone may read, even when reads are private.
fn always_public(path: &str) -> bool {
    path == "/checkpoint"
        || path == "/healthz"
        || path == "/openapi.json"
        || path == "/"
        || path.starts_with("/explorer/")
        || path.starts_with("/tile/")
}

/// With private reads, a GET or HEAD needs a valid token (any role).
async fn read_gate(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let read = req.method() == axum::http::Method::GET || req.method() == axum::http::Method::HEAD;
    if st.private_reads && read && !always_public(req.uri().path()) {
        let token = match bearer(req.headers()) {
            Ok(t) => t.to_string(),
            Err(e) => return ApiError::from(e).into_response(),
        };
        if let Err(e) = st.ledger.authenticate(&token).await {
            return ApiError::from(e).into_response();
        }
    }
    next.run(req).await
}

/// Every route with its description (see [`openapi`]): `routes!` takes
/// each handler's method and path from its `#[utoipa::path]`.
fn routes(timeout: Duration) -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        // log and proofs
        .routes(routes!(log::checkpoint))
        // A wildcard, so added by hand (its description is in `ApiDoc`).
        // Entry bundles compress well; everything else is small or random.
        .route(
            "/tile/{*path}",
            get(log::tile).layer(tower_http::compression::CompressionLayer::new().gzip(true)),
        )
        .routes(routes!(log::info))
        .routes(routes!(log::entries))
        .routes(routes!(log::entry))
        .routes(routes!(log::event_by_id))
        .routes(routes!(log::receipt))
        .routes(routes!(log::inclusion))
        .routes(routes!(log::consistency))
        .routes(routes!(log::metrics))
        .routes(routes!(log::healthz))
        .routes(routes!(openapi::serve))
        // the explorer
        .routes(routes!(explorer::index))
        .routes(routes!(explorer::asset))
        // events
        .routes(routes!(events::append))
        // admin
        .routes(routes!(admin::grant_token, admin::list_tokens))
        .routes(routes!(admin::revoke_token, admin::change_roles))
        .routes(routes!(admin::register_key))
        .routes(routes!(admin::service_keys))
        .routes(routes!(admin::reconciled))
        // registry and lineage
        .routes(routes!(registry::model_version))
        .routes(routes!(registry::models))
        .routes(routes!(registry::model))
        .routes(routes!(registry::search))
        .routes(routes!(registry::trace))
        // integrations
        .routes(routes!(mlflow::deliver))
        // private values
        .routes(routes!(privacy::reveal))
        .routes(routes!(privacy::erase))
        .fallback(|| async { ApiError::from(Error::NotFound("no such endpoint".into())) })
        .layer(axum::middleware::from_fn_with_state(timeout, time_limit))
        // Transfers of any size and re-hashing them: no request time limit
        // (connections that go silent are still cut off).
        .routes(routes!(artifacts::reconcile))
        .routes(routes!(
            artifacts::download,
            artifacts::head,
            artifacts::upload
        ))
}

pub fn router(state: AppState) -> Router {
    let gate = state.clone();
    let (router, _) = routes(state.limits.request_timeout).split_for_parts();
    router
        .method_not_allowed_fallback(|| async { ApiError::from(Error::MethodNotAllowed) })
        .layer(axum::middleware::from_fn_with_state(gate, read_gate))
        .with_state(state)
}

/// Every request gets `limit` to be answered; past it, 503 with the JSON
/// error body and `Retry-After`.
async fn time_limit(
    axum::extract::State(limit): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::from(Error::Unavailable(format!(
            "the request took longer than {} s",
            limit.as_secs()
        )))
        .into_response(),
    }
}

/// Reads small enough to run on the async worker itself: proofs and hash
/// tiles read the upper tree levels from memory and one tile's value (or
/// the few node keys of a partial tile) from the store, less work than
/// handing the request to another thread and back (a profile of proofs
/// under load found most of their time in that hand-off). The cost: a read
/// that misses the page cache holds the worker for one disk read.
fn inline<T>(log: &Arc<Log>, f: impl FnOnce(&Log) -> Result<T, Error>) -> Result<T, ApiError> {
    f(log).map_err(ApiError::from)
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

/// A receipt as it travels.
fn receipt(r: &crate::log::Receipt, witnessed: Option<bool>) -> Result<wire::Receipt, Error> {
    receipt_parts(r, witnessed)
        .to_receipt()
        .map_err(|e| Error::Internal(e.to_string()))
}

/// Which part of the log's receipt goes where in the answer: one mapping
/// for both ways of writing it.
fn receipt_parts(r: &crate::log::Receipt, witnessed: Option<bool>) -> wire::ReceiptParts<'_> {
    wire::ReceiptParts {
        index: r.index,
        tree_size: r.head.size,
        leaf_hash: &r.leaf_hash,
        event_id: r.event_id,
        event: &r.canonical,
        checkpoint: &r.head.checkpoint,
        inclusion_proof: &r.proof,
        witnessed,
    }
}

/// The answer to an accepted append: its receipt's JSON written straight
/// from the parts (`wire::ReceiptParts`), the event spliced in as the
/// canonical bytes `prepare` has just written from the parsed event, so
/// they are not parsed again. The bytes are what `Json(receipt(r, witnessed))`
/// writes.
fn receipt_response(
    status: axum::http::StatusCode,
    r: &crate::log::Receipt,
    witnessed: Option<bool>,
) -> Result<axum::response::Response, Error> {
    let body = receipt_parts(r, witnessed)
        .to_json()
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(json_bytes(status, body))
}

/// An answer whose JSON was written by hand, with the header `Json` sets.
fn json_bytes(status: axum::http::StatusCode, body: Vec<u8>) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The 422 answer to a submission the registry refused, with the receipt
/// of the logged `deny`.
fn denied(
    reasons: Vec<String>,
    deny: &crate::log::Receipt,
) -> Result<axum::response::Response, Error> {
    use axum::response::IntoResponse;
    let body = wire::ErrorBody {
        error: wire::ErrorDetail {
            code: "denied".into(),
            message: format!("refused by the registry's rules: {}", reasons.join("; ")),
            reasons,
        },
        deny_receipt: Some(receipt(deny, None)?),
    };
    Ok((
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        axum::Json(body),
    )
        .into_response())
}

/// An entry as it travels.
fn entry(index: u64, bytes: &[u8]) -> Result<wire::Entry, Error> {
    Ok(wire::Entry {
        index,
        leaf_hash: wire::Hex32(crate::tree::leaf_hash(bytes)),
        event: wire::raw_event(bytes).map_err(|e| Error::Internal(e.to_string()))?,
    })
}

/// A small JSON request body: bounded, strict JSON (UTF-8, no duplicate
/// keys), then the expected shape with no unknown fields.
async fn read_json<T: serde::de::DeserializeOwned>(body: axum::body::Body) -> Result<T, ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_SMALL_BODY)
        .await
        .map_err(|_| Error::TooLarge(format!("the body is larger than {MAX_SMALL_BODY} bytes")))?;
    let value = crate::audit::event::parse_strict(&bytes)
        .map_err(|e| Error::bad("invalid_json", e.to_string()))?;
    Ok(serde_json::from_value(value).map_err(|e| Error::bad("invalid_request", e.to_string()))?)
}
