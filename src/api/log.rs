//! The log's read side: the checkpoint and tiles (tlog-tiles), entries,
//! proofs, receipts, health and metrics. Public, and bounded by the
//! published head.

use super::extract::{parse_uuid, path_u64, query_params, Page, PathParam, Query};
use super::openapi::{Common, Missing};
use super::{
    blocking, entry as entry_wire, inline, receipt as receipt_wire, ApiError, AppState,
    MAX_PAGE_BYTES,
};
use crate::encoding::parse_hex32;
use crate::error::Error;
use crate::tiles::{self, TileKind};
use crate::wire::{self, Hex32};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

/// `GET /checkpoint`: the latest signed checkpoint (c2sp tlog-checkpoint).
#[utoipa::path(get, path = "/checkpoint", tag = "log",
    responses((status = 200, description = "The signed checkpoint, a c2sp signed note: origin, tree size, root hash, then signature lines (cosigned by witnesses when the server has them)", content_type = "text/plain", body = String)))]
pub(super) async fn checkpoint(State(st): State<AppState>) -> Response {
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

/// `GET /tile/{path}`: a hash tile or entry bundle (c2sp tlog-tiles).
#[utoipa::path(get, path = "/tile/{path}", tag = "log",
    params(("path" = String, Path, description = "`<L>/<N>[.p/<W>]` for a hash tile of level L, `entries/<N>[.p/<W>]` for an entry bundle; N in 3-digit groups (`x001/234`)")),
    responses(
        (status = 200, description = "The tile: 32-byte hashes, or an entry bundle (each entry a 2-byte big-endian length then its bytes). Full tiles never change.", content_type = "application/octet-stream", body = Vec<u8>),
        Common, Missing))]
pub(super) async fn tile(
    State(st): State<AppState>,
    PathParam(path): PathParam<String>,
) -> Result<Response, ApiError> {
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
    // An entry bundle is up to 256 entries of up to 64 KiB: an expensive
    // read. Hash tiles are 8 KiB.
    let _slot = match t.kind {
        TileKind::Entries => Some(st.heavy_slot().await?),
        TileKind::Hashes { .. } => None,
    };
    let body = match t.kind {
        TileKind::Hashes { level } => {
            inline(&st.log, |log| log.node_range(level * 8, start, t.width))?.concat()
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

/// `GET /v1/log`: the log's origin, verifier key and latest head.
#[utoipa::path(get, path = "/v1/log", tag = "log",
    responses((status = 200, body = wire::LogInfo), Common))]
pub(super) async fn info(State(st): State<AppState>) -> Json<wire::LogInfo> {
    let head = st.log.head();
    Json(wire::LogInfo {
        origin: st.log.origin().to_string(),
        verifier_key: st.log.verifier().to_string(),
        tree_size: head.size,
        root_hash: Hex32(head.root),
        checkpoint: head.checkpoint.clone(),
        witnessed: st.witnessed.as_ref().map(|rx| {
            let w = rx.borrow().clone();
            wire::WitnessedHead {
                tree_size: w.size,
                checkpoint: w.checkpoint.clone(),
            }
        }),
    })
}

/// `GET /v1/receipt`: its parameters (exactly one).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described here, parsed by `Query`
pub(super) struct ReceiptParams {
    /// The entry's index.
    #[param(minimum = 0)]
    index: Option<u64>,
    /// The event's id.
    event_id: Option<uuid::Uuid>,
}

/// `GET /v1/entries`, `GET /v1/models`: a page.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described here, parsed by `Query`
pub(super) struct PageParams {
    /// Where the page starts (default 0).
    #[param(minimum = 0)]
    start: Option<u64>,
    /// At most this many (default 100, at most the server's page limit, 1000 unless configured).
    #[param(minimum = 1)]
    limit: Option<u64>,
}

/// `GET /v1/proof/inclusion`: its parameters (`index` or `leaf_hash`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described here, parsed by `Query`
pub(super) struct InclusionParams {
    /// The entry's index.
    #[param(minimum = 0)]
    index: Option<u64>,
    /// The entry's leaf hash, SHA-256(0x00 ‖ event bytes).
    leaf_hash: Option<Hex32>,
    /// The tree the proof is in (default: the latest).
    #[param(minimum = 1)]
    tree_size: Option<u64>,
}

/// `GET /v1/proof/consistency`: its parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described here, parsed by `Query`
pub(super) struct ConsistencyParams {
    /// The older tree's size.
    #[param(minimum = 0)]
    old_size: u64,
    /// The newer tree's size (default: the latest).
    #[param(minimum = 0)]
    new_size: Option<u64>,
}

query_params!(
    ReceiptParams,
    PageParams,
    InclusionParams,
    ConsistencyParams
);

/// `GET /v1/receipt?index=I` or `?event_id=E`: an offline receipt against
/// the checkpoint `/checkpoint` serves (cosigned, with witnesses).
#[utoipa::path(get, path = "/v1/receipt", tag = "log", params(ReceiptParams),
    responses((status = 200, description = "The receipt: the event, its inclusion proof and the signed checkpoint, also as c2sp tlog-proof text", body = wire::Receipt), Common, Missing))]
pub(super) async fn receipt(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::Receipt>, ApiError> {
    let q = Query::of::<ReceiptParams>(q.as_deref())?;
    let by_id = match q.str("event_id") {
        Some(s) => Some(parse_uuid(s, "bad_event_id", "event_id")?),
        None => None,
    };
    let index = q.u64("index")?;
    let head = st.published();
    let r = blocking(&st.log, move |log| {
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
        log.receipt_at(index, head)
    })
    .await?;
    Ok(Json(receipt_wire(&r, None)?))
}

/// `GET /v1/entries/{index}`: one entry.
#[utoipa::path(get, path = "/v1/entries/{index}", tag = "log",
    params(("index" = u64, Path, minimum = 0, description = "The entry's index")),
    responses((status = 200, body = wire::Entry), Common, Missing))]
pub(super) async fn entry(
    State(st): State<AppState>,
    PathParam(index): PathParam<String>,
) -> Result<Json<wire::Entry>, ApiError> {
    let index = path_u64(&index, "index")?;
    let bytes = blocking(&st.log, move |log| log.entry(index)).await?;
    Ok(Json(entry_wire(index, &bytes)?))
}

/// `GET /v1/entries`: entries in log order.
#[utoipa::path(get, path = "/v1/entries", tag = "log", params(PageParams),
    responses((status = 200, description = "Up to `limit` entries from `start` (fewer when the page would exceed 4 MiB)", body = wire::EntryPage), Common))]
pub(super) async fn entries(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::EntryPage>, ApiError> {
    let q = Query::of::<PageParams>(q.as_deref())?;
    let Page { start, limit } = Page::parse(&q, st.limits.max_page)?;
    let size = st.log.head().size;
    if start > size {
        return Err(Error::bad(
            "beyond_tree",
            format!("start {start} is beyond the tree size {size}"),
        )
        .into());
    }
    let end = start.saturating_add(limit).min(size);
    let _slot = st.heavy_slot().await?;
    let list = blocking(&st.log, move |log| read_page(log, start, end)).await?;
    let entries = list
        .iter()
        .enumerate()
        .map(|(i, b)| entry_wire(start + i as u64, b))
        .collect::<Result<_, _>>()?;
    Ok(Json(wire::EntryPage {
        start,
        tree_size: size,
        entries,
    }))
}

/// Entries `[start, end)`, read a few at a time, stopping before the page
/// holds more than [`MAX_PAGE_BYTES`] of events (but with at least one).
fn read_page(log: &crate::log::Log, start: u64, end: u64) -> Result<Vec<Vec<u8>>, Error> {
    const CHUNK: u64 = 16;
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut bytes = 0usize;
    let mut at = start;
    while at < end {
        for e in log.entries(at, (at + CHUNK).min(end))? {
            if !out.is_empty() && bytes + e.len() > MAX_PAGE_BYTES {
                return Ok(out);
            }
            bytes += e.len();
            out.push(e);
        }
        at += CHUNK;
    }
    Ok(out)
}

/// `GET /v1/events/{event_id}`: one entry by its event's id.
#[utoipa::path(get, path = "/v1/events/{event_id}", tag = "log",
    params(("event_id" = uuid::Uuid, Path, description = "The event's id, lowercase and hyphenated")),
    responses((status = 200, body = wire::Entry), Common, Missing))]
pub(super) async fn event_by_id(
    State(st): State<AppState>,
    PathParam(s): PathParam<String>,
) -> Result<Json<wire::Entry>, ApiError> {
    let id = parse_uuid(&s, "bad_event_id", "event_id")?;
    let (index, bytes) = blocking(&st.log, move |log| {
        let index = log
            .find_event(id.as_bytes())?
            .ok_or_else(|| Error::NotFound(format!("no event {id}")))?;
        Ok((index, log.entry(index)?))
    })
    .await?;
    Ok(Json(entry_wire(index, &bytes)?))
}

/// `GET /v1/proof/inclusion`: an RFC 6962 inclusion proof.
#[utoipa::path(get, path = "/v1/proof/inclusion", tag = "log", params(InclusionParams),
    responses((status = 200, body = wire::InclusionProof), Common, Missing))]
pub(super) async fn inclusion(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::of::<InclusionParams>(q.as_deref())?;
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
    let by_hash =
        match q.str("leaf_hash") {
            Some(h) => Some(parse_hex32(h).ok_or_else(|| {
                Error::bad("bad_hash", "leaf_hash must be 64 lowercase hex digits")
            })?),
            None => None,
        };
    let index = q.u64("index")?;
    let (index, leaf, proof) = inline(&st.log, move |log| {
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
    })?;
    Ok(super::json_bytes(
        StatusCode::OK,
        wire::inclusion_proof_json(index, size, &leaf, &proof),
    ))
}

/// `GET /v1/proof/consistency`: an RFC 6962 consistency proof.
#[utoipa::path(get, path = "/v1/proof/consistency", tag = "log", params(ConsistencyParams),
    responses((status = 200, body = wire::ConsistencyProof), Common))]
pub(super) async fn consistency(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let q = Query::of::<ConsistencyParams>(q.as_deref())?;
    let old = q
        .u64("old_size")?
        .ok_or_else(|| Error::bad("bad_query", "old_size is required"))?;
    let new = match q.u64("new_size")? {
        Some(n) => n,
        None => st.log.head().size,
    };
    let proof = inline(&st.log, move |log| log.consistency_proof(old, new))?;
    Ok(super::json_bytes(
        StatusCode::OK,
        wire::consistency_proof_json(old, new, &proof),
    ))
}

/// `GET /metrics`: Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "log",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text", body = String), Common))]
pub(super) async fn metrics(State(st): State<AppState>) -> Response {
    st.log.metrics().set_storage(st.log.storage_memory());
    st.log.metrics().set_tile_file(st.log.tile_file());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        st.log.metrics().render(),
    )
        .into_response()
}

/// `GET /healthz`: whether the log can append.
#[utoipa::path(get, path = "/healthz", tag = "log",
    responses((status = 200, description = "Healthy", body = wire::Health),
              (status = 503, description = "Failing: the log cannot append (its status says why)", body = wire::Health)))]
pub(super) async fn healthz(State(st): State<AppState>) -> Response {
    let head = st.log.head();
    let healthy = st.log.healthy();
    let body = wire::Health {
        status: if healthy { "ok" } else { "failing" }.into(),
        tree_size: head.size,
    };
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
