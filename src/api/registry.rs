//! The registry's read side: a model version's state derived from the log
//! (with proofs on request), search by any id, and lineage traces.

use super::extract::{Page, PathParam, Query};
use super::{blocking, ApiError, AppState, MAX_PAGE_BYTES};
use crate::audit::event;
use crate::audit::Ref;
use crate::error::Error;
use crate::log::MentionRole as Role;
use crate::tree::leaf_hash;
use crate::wire::{self, Hex32};
use axum::extract::{RawQuery, State};
use axum::Json;

/// Most inclusion proofs in one answer about a model version.
pub const MAX_PROOFS: u64 = 256;

/// A `(type, id)` from a request: a type as in events, an id of bounded size.
fn lineage_ref(kind: &str, id: &str) -> Result<Ref, Error> {
    event::check_lineage_ref(kind, id).map_err(|e| Error::bad("bad_ref", e.to_string()))?;
    Ok(Ref::new(kind, id))
}

/// `GET /v1/models/{name}/versions/{version}`: the model version
/// `name:version` as derived from the log, with the indexes of the events.
pub(super) async fn model_version(
    State(st): State<AppState>,
    PathParam((name, version)): PathParam<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::ModelVersion>, ApiError> {
    let q = Query::parse(q.as_deref(), &["proofs", "start", "limit"])?;
    let with_proofs = q.flag("proofs")?;
    let page = Page::parse(&q, MAX_PROOFS)?;
    if name.is_empty() || version.is_empty() || name.len() + version.len() > 255 {
        return Err(Error::bad("bad_path", "model name and version must be 1..=255 bytes").into());
    }
    let id = format!("{name}:{version}");
    let (v, indexed) = st.ledger.version(&id).await?;
    let v = v.ok_or_else(|| Error::NotFound(format!("no model version {id} in the log")))?;
    let mut out = wire::ModelVersion {
        approvers: v.current_approvers(),
        tree_size: indexed,
        checkpoint: None,
        proof_tree_size: None,
        proofs: None,
        proofs_next: None,
        state: v,
    };
    if with_proofs {
        // Every event the state came from, with its inclusion proof against
        // the checkpoint `/checkpoint` serves (when it covers them).
        let head = st.published();
        let _slot = st.heavy_slot().await?;
        // At most MAX_PROOFS proofs per answer: `proofs_next` pages on.
        let covered: Vec<u64> = out
            .state
            .events
            .iter()
            .copied()
            .filter(|i| *i < head.size)
            .collect();
        let from = (page.start as usize).min(covered.len());
        let to = from.saturating_add(page.limit as usize).min(covered.len());
        out.proofs_next = (to < covered.len()).then_some(to as u64);
        let events = covered[from..to].to_vec();
        let (proofs, head) = blocking(&st.log, move |log| {
            let mut list = Vec::new();
            for i in events.into_iter().filter(|i| *i < head.size) {
                let (leaf, proof) = log.leaf_and_inclusion_proof(i, head.size)?;
                list.push(wire::EntryProof {
                    index: i,
                    leaf_hash: Hex32(leaf),
                    inclusion_proof: wire::hexes(&proof),
                });
            }
            Ok((list, head))
        })
        .await?;
        out.checkpoint = Some(head.checkpoint.clone());
        out.proof_tree_size = Some(head.size);
        out.proofs = Some(proofs);
    }
    Ok(Json(out))
}

/// `GET /v1/search?type=T&id=I[&start=S][&limit=L]`: the entries that
/// mention `T:I`, as subject or in `related`, in log order from index S.
pub(super) async fn search(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::SearchPage>, ApiError> {
    let q = Query::parse(q.as_deref(), &["type", "id", "start", "limit"])?;
    let r = lineage_ref(q.required("type")?, q.required("id")?)?;
    let Page { start, limit } = Page::parse(&q, st.limits.max_page)?;
    let size = st.log.head().size;
    let _slot = st.heavy_slot().await?;
    let (found, next) = blocking(&st.log, move |log| {
        let page = log.mentions(&r.kind, &r.id, start, limit as usize + 1)?;
        let mut out = Vec::new();
        let mut next = None;
        let mut bytes = 0usize;
        for (i, (index, role)) in page.into_iter().enumerate() {
            if index >= size {
                break;
            }
            if i == limit as usize {
                next = Some(index);
                break;
            }
            let e = log.entry(index)?;
            // Bounded in bytes as well as entries: the rest is the next page.
            if !out.is_empty() && bytes + e.len() > MAX_PAGE_BYTES {
                next = Some(index);
                break;
            }
            bytes += e.len();
            out.push((index, role, e));
        }
        Ok((out, next))
    })
    .await?;
    let entries = found
        .into_iter()
        .map(|(index, role, bytes)| {
            Ok(wire::SearchHit {
                index,
                role: match role {
                    Role::Subject => "subject",
                    Role::Related => "related",
                }
                .into(),
                leaf_hash: Hex32(leaf_hash(&bytes)),
                event: wire::raw_event(&bytes).map_err(|e| Error::Internal(e.to_string()))?,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(Json(wire::SearchPage {
        tree_size: size,
        next_start: next,
        entries,
    }))
}

/// `GET /v1/trace/{type}/{id}`: the lineage trace bundle (see `trace`).
pub(super) async fn trace(
    State(st): State<AppState>,
    PathParam((kind, id)): PathParam<(String, String)>,
) -> Result<Json<wire::TraceBundle>, ApiError> {
    let start = lineage_ref(&kind, &id)?;
    let _slot = st.heavy_slot().await?;
    let bundle = blocking(&st.log, move |log| crate::trace::build(log, start)).await?;
    Ok(Json(bundle))
}
