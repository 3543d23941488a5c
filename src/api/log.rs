//! The log's read side: the checkpoint and tiles (tlog-tiles), entries,
//! proofs, receipts, health and metrics. Public, and bounded by the
//! published head.

use super::extract::{parse_uuid, path_u64, Page, PathParam, Query};
use super::{
    blocking, entry as entry_wire, receipt as receipt_wire, ApiError, AppState, MAX_PAGE_BYTES,
};
use crate::encoding::parse_hex32;
use crate::error::Error;
use crate::tiles::{self, TileKind};
use crate::wire::{self, Hex32};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

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

/// `GET /v1/receipt?index=I` or `?event_id=E`: an offline receipt against
/// the checkpoint `/checkpoint` serves (cosigned, with witnesses).
pub(super) async fn receipt(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::Receipt>, ApiError> {
    let q = Query::parse(q.as_deref(), &["index", "event_id"])?;
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

pub(super) async fn entry(
    State(st): State<AppState>,
    PathParam(index): PathParam<String>,
) -> Result<Json<wire::Entry>, ApiError> {
    let index = path_u64(&index, "index")?;
    let bytes = blocking(&st.log, move |log| log.entry(index)).await?;
    Ok(Json(entry_wire(index, &bytes)?))
}

pub(super) async fn entries(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::EntryPage>, ApiError> {
    let q = Query::parse(q.as_deref(), &["start", "limit"])?;
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

pub(super) async fn inclusion(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::InclusionProof>, ApiError> {
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
    let by_hash =
        match q.str("leaf_hash") {
            Some(h) => Some(parse_hex32(h).ok_or_else(|| {
                Error::bad("bad_hash", "leaf_hash must be 64 lowercase hex digits")
            })?),
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
    Ok(Json(wire::InclusionProof {
        index,
        tree_size: size,
        leaf_hash: Hex32(leaf),
        proof: wire::hexes(&proof),
    }))
}

pub(super) async fn consistency(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::ConsistencyProof>, ApiError> {
    let q = Query::parse(q.as_deref(), &["old_size", "new_size"])?;
    let old = q
        .u64("old_size")?
        .ok_or_else(|| Error::bad("bad_query", "old_size is required"))?;
    let new = match q.u64("new_size")? {
        Some(n) => n,
        None => st.log.head().size,
    };
    let proof = blocking(&st.log, move |log| log.consistency_proof(old, new)).await?;
    Ok(Json(wire::ConsistencyProof {
        old_size: old,
        new_size: new,
        proof: wire::hexes(&proof),
    }))
}

pub(super) async fn metrics(State(st): State<AppState>) -> Response {
    st.log.metrics().set_storage(st.log.storage_memory());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        st.log.metrics().render(),
    )
        .into_response()
}

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
