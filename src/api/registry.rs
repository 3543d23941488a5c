//! The registry's read side: a model version's state derived from the log
//! (with proofs on request), search by any id, and lineage traces.

use super::extract::{query_params, Page, PathParam, Query};
use super::openapi::{Common, Missing};
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

/// `GET /v1/models/{name}/versions/{version}`: its parameters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described here, parsed by `Query`
pub(super) struct VersionParams {
    /// With each event's inclusion proof against one signed checkpoint.
    proofs: Option<bool>,
    /// The first event to prove, as a position in `events` (default 0).
    #[param(minimum = 0)]
    start: Option<u64>,
    /// At most this many proofs (default 100, at most 256).
    #[param(minimum = 1, maximum = 256)]
    limit: Option<u64>,
}

/// `GET /v1/search`: its parameters; every filter given must match.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // described here, parsed by `Query`
pub(super) struct SearchParams {
    /// With `id`: entries whose subject or a `related` link is this
    /// `(type, id)` (`model_version`, `dataset`, `run`, …).
    #[param(rename = "type")]
    kind: Option<String>,
    /// With `type`.
    id: Option<String>,
    /// `user:<id>` or `service:<id>`.
    actor: Option<String>,
    /// An action (`register`, `approve`, …).
    action: Option<String>,
    /// RFC 3339; on the event's own timestamp, inclusive.
    since: Option<String>,
    /// RFC 3339; on the event's own timestamp, inclusive.
    until: Option<String>,
    /// The log index to scan from (default 0); the previous page's `next_start`.
    #[param(minimum = 0)]
    start: Option<u64>,
    /// At most this many entries (default 100, at most the server's page limit).
    #[param(minimum = 1)]
    limit: Option<u64>,
}

query_params!(VersionParams, SearchParams);

const NAME: &str = "The model's name";

/// `GET /v1/models/{name}/versions/{version}`: the model version
/// `name:version` as derived from the log, with the indexes of the events.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}", tag = "registry",
    params(("name" = String, Path, description = NAME), ("version" = String, Path, description = "The version"), VersionParams),
    responses((status = 200, body = wire::ModelVersion), Common, Missing))]
pub(super) async fn model_version(
    State(st): State<AppState>,
    PathParam((name, version)): PathParam<(String, String)>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::ModelVersion>, ApiError> {
    let q = Query::of::<VersionParams>(q.as_deref())?;
    let with_proofs = q.flag("proofs")?;
    let page = Page::parse(&q, MAX_PROOFS)?;
    if name.is_empty() || version.is_empty() || name.len() + version.len() > 255 {
        return Err(Error::bad("bad_path", "model name and version must be 1..=255 bytes").into());
    }
    if version.contains(':') {
        return Err(Error::bad("bad_path", "a version has no ':'").into());
    }
    let id = format!("{name}:{version}");
    let (v, indexed) = st.ledger.version(&id).await?;
    let v = v.ok_or_else(|| Error::NotFound(format!("no model version {id} in the log")))?;
    let mut out = wire::ModelVersion {
        approvers: v.current_approvers(),
        approval_status: v.approval_status(st.ledger.policy()),
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

/// `GET /v1/models[?start=S&limit=L]`: registered models by name, each
/// with its production version and how many versions it has.
#[utoipa::path(get, path = "/v1/models", tag = "registry", params(super::log::PageParams),
    responses((status = 200, body = wire::ModelPage), Common))]
pub(super) async fn models(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::ModelPage>, ApiError> {
    let q = Query::of::<super::log::PageParams>(q.as_deref())?;
    let Page { start, limit } = Page::parse(&q, st.limits.max_page)?;
    let (models, next_start, tree_size) = st.ledger.models(start, limit).await?;
    Ok(Json(wire::ModelPage {
        tree_size,
        models: models
            .into_iter()
            .map(|(name, m)| wire::ModelSummary {
                name,
                production: m.production,
                version_count: m.versions.len() as u64,
            })
            .collect(),
        next_start,
    }))
}

/// `GET /v1/models/{name}`: a model's versions, stages and approval status.
#[utoipa::path(get, path = "/v1/models/{name}", tag = "registry",
    params(("name" = String, Path, description = NAME)),
    responses((status = 200, body = wire::ModelDetail), Common, Missing))]
pub(super) async fn model(
    State(st): State<AppState>,
    PathParam(name): PathParam<String>,
) -> Result<Json<wire::ModelDetail>, ApiError> {
    if name.is_empty() || name.len() > 255 {
        return Err(Error::bad("bad_path", "a model name is 1..=255 bytes").into());
    }
    let found = st.ledger.model(&name).await?;
    let (m, versions, tree_size) =
        found.ok_or_else(|| Error::NotFound(format!("no model {name} in the log")))?;
    let policy = st.ledger.policy();
    Ok(Json(wire::ModelDetail {
        name,
        production: m.production,
        tree_size,
        versions: versions
            .iter()
            .map(|v| wire::VersionSummary {
                id: v.id.clone(),
                version: v.id.rsplit_once(':').map_or("", |(_, ver)| ver).to_string(),
                stage: v.stage.clone(),
                approval_status: v.approval_status(policy),
                human_approvers: v.human_approvers(),
                registered_index: v.registered.as_ref().map(|r| r.index),
                deployments: v.deployments.iter().map(|d| d.index).collect(),
            })
            .collect(),
    }))
}

/// Most entries one search request reads and filters before it answers with
/// what it found and where to go on (`next_start`).
pub const MAX_SCAN: usize = 4096;
/// Index keys read at a time from each index a search walks.
const CHUNK: usize = 256;

/// What a search asks for; every part optional but at least one.
struct Filter {
    lineage: Option<Ref>,
    actor: Option<String>,
    action: Option<String>,
    since: Option<time::OffsetDateTime>,
    until: Option<time::OffsetDateTime>,
}

impl Filter {
    fn parse(q: &Query) -> Result<Filter, Error> {
        let lineage = match (q.str("type"), q.str("id")) {
            (Some(t), Some(i)) => Some(lineage_ref(t, i)?),
            (None, None) => None,
            _ => return Err(Error::bad("bad_query", "type and id go together")),
        };
        let actor = match q.str("actor") {
            Some(a) => {
                let (kind, id) = a.split_once(':').ok_or_else(|| {
                    Error::bad("bad_query", "actor is type:id (user:alice, service:ci)")
                })?;
                if !matches!(kind, "user" | "service") {
                    return Err(Error::bad(
                        "bad_query",
                        "an actor's type is user or service",
                    ));
                }
                event::check_lineage_ref("actor", id)
                    .map_err(|e| Error::bad("bad_query", e.to_string()))?;
                Some(a.to_string())
            }
            None => None,
        };
        let action = match q.str("action") {
            Some(a) => {
                event::check_action(a).map_err(|e| Error::bad("bad_query", e.to_string()))?;
                Some(a.to_string())
            }
            None => None,
        };
        let time = |name: &str| -> Result<Option<time::OffsetDateTime>, Error> {
            q.str(name)
                .map(|t| {
                    event::parse_time(t).ok_or_else(|| {
                        Error::bad("bad_query", format!("{name} is not an RFC 3339 time"))
                    })
                })
                .transpose()
        };
        let (since, until) = (time("since")?, time("until")?);
        if let (Some(s), Some(u)) = (since, until) {
            if u < s {
                return Err(Error::bad("bad_query", "until is before since"));
            }
        }
        let f = Filter {
            lineage,
            actor,
            action,
            since,
            until,
        };
        if f.lineage.is_none() && f.actor.is_none() && f.action.is_none() && !f.timed() {
            return Err(Error::bad(
                "bad_query",
                "search by type and id, actor, action, since or until",
            ));
        }
        Ok(f)
    }

    fn timed(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }

    /// The index walked: the narrowest one asked for.
    fn driver(&self) -> Vec<(Ref, Role)> {
        if let Some(r) = &self.lineage {
            return vec![(r.clone(), Role::Subject), (r.clone(), Role::Related)];
        }
        if let Some(a) = &self.actor {
            return vec![(Ref::new(event::BY_ACTOR, a.as_str()), Role::Subject)];
        }
        if let Some(a) = &self.action {
            return vec![(Ref::new(event::BY_ACTION, a.as_str()), Role::Subject)];
        }
        // The month buckets the range covers.
        let (lo, hi) = event::MONTH_YEARS;
        let first = self
            .since
            .map(event::month_bucket)
            .unwrap_or(format!("{lo:04}-01"));
        let last = self
            .until
            .map(event::month_bucket)
            .unwrap_or(format!("{hi:04}-12"));
        let mut out = Vec::new();
        for y in lo..=hi {
            for m in 1..=12 {
                let b = format!("{y:04}-{m:02}");
                if b >= first && b <= last {
                    out.push((Ref::new(event::BY_MONTH, b), Role::Subject));
                }
            }
        }
        out
    }

    /// Does this entry match everything asked?
    fn matches(&self, ev: &crate::audit::Event) -> bool {
        if self
            .actor
            .as_deref()
            .is_some_and(|a| ev.actor.to_string() != a)
        {
            return false;
        }
        if self
            .action
            .as_deref()
            .is_some_and(|a| ev.action.as_str() != a)
        {
            return false;
        }
        if self.timed() {
            let Some(t) = event::parse_time(&ev.timestamp) else {
                return false;
            };
            if self.since.is_some_and(|s| t < s) || self.until.is_some_and(|u| t > u) {
                return false;
            }
        }
        true
    }
}

/// Candidate entries (index, how the key names them), and where to read on.
type Candidates = (Vec<(u64, Role)>, Option<u64>);

/// Index positions from `from` on across `keys`, merged in log order, up
/// to where every key's answer is complete; and where to read on.
fn candidates(log: &crate::log::Log, keys: &[(Ref, Role)], from: u64) -> Result<Candidates, Error> {
    let mut frontier = u64::MAX;
    let mut all = Vec::new();
    for (r, role) in keys {
        let got = log.mentions_as(&r.kind, &r.id, *role, from, CHUNK)?;
        if got.len() == CHUNK {
            frontier = frontier.min(*got.last().unwrap_or(&from));
        }
        all.extend(got.into_iter().map(|i| (i, *role)));
    }
    all.sort_by_key(|(i, _)| *i);
    all.dedup_by_key(|(i, _)| *i);
    all.retain(|(i, _)| *i <= frontier);
    Ok((all, (frontier != u64::MAX).then(|| frontier + 1)))
}

/// `GET /v1/search`: entries in log order from index `start`, matching
/// every filter given: `type` and `id` (as subject or in `related`),
/// `actor` (`user:alice`), `action`, `since` and `until` (RFC 3339, on the
/// event's own timestamp, both inclusive). Paged by `next_start`; a page
/// can be short or empty when the scan bound is reached first.
#[utoipa::path(get, path = "/v1/search", tag = "registry", params(SearchParams),
    responses((status = 200, description = "Matching entries in log order; a page can be short or empty when the scan bound is reached, and `next_start` says where to go on", body = wire::SearchPage), Common))]
pub(super) async fn search(
    State(st): State<AppState>,
    RawQuery(q): RawQuery,
) -> Result<Json<wire::SearchPage>, ApiError> {
    let q = Query::of::<SearchParams>(q.as_deref())?;
    let mut filter = Filter::parse(&q)?;
    // A person is searched for by name; the log holds the commitment.
    if let Some(id) = filter
        .actor
        .as_deref()
        .and_then(|a| a.strip_prefix("user:"))
    {
        filter.actor = Some(format!("user:{}", st.ledger.known_user_id(id).await?));
    }
    let Page { start, limit } = Page::parse(&q, st.limits.max_page)?;
    let size = st.log.head().size;
    let _slot = st.heavy_slot().await?;
    let (found, next) = blocking(&st.log, move |log| {
        let keys = filter.driver();
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut scanned = 0usize;
        let mut from = start;
        loop {
            let (batch, resume) = candidates(log, &keys, from)?;
            for (index, role) in batch {
                if index >= size {
                    return Ok((out, None));
                }
                if out.len() == limit as usize || scanned >= MAX_SCAN {
                    return Ok((out, Some(index)));
                }
                scanned += 1;
                let e = log.entry(index)?;
                let ev = crate::audit::Event::from_canonical(&e)
                    .map_err(|err| Error::Internal(format!("entry {index}: {err}")))?;
                if !filter.matches(&ev) {
                    continue;
                }
                // Bounded in bytes as well as entries: the rest is the next page.
                if !out.is_empty() && bytes + e.len() > MAX_PAGE_BYTES {
                    return Ok((out, Some(index)));
                }
                bytes += e.len();
                let role = filter.lineage.as_ref().map(|_| role);
                out.push((index, role, e));
            }
            match resume {
                Some(r) if r < size => from = r,
                _ => return Ok((out, None)),
            }
        }
    })
    .await?;
    let entries = found
        .into_iter()
        .map(|(index, role, bytes)| {
            Ok(wire::SearchHit {
                index,
                role: role.map(|r| {
                    match r {
                        Role::Subject => "subject",
                        Role::Related => "related",
                    }
                    .to_string()
                }),
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
#[utoipa::path(get, path = "/v1/trace/{kind}/{id}", tag = "registry",
    params(("kind" = String, Path, description = "Where the trace starts: a reference type (`prediction`, `model_version`, `dataset`, …)"),
           ("id" = String, Path, description = "The reference's id")),
    responses((status = 200, description = "A lineage trace bundle, verified offline by `modeltrail verify trace`", body = wire::TraceBundle), Common, Missing))]
pub(super) async fn trace(
    State(st): State<AppState>,
    PathParam((kind, id)): PathParam<(String, String)>,
) -> Result<Json<wire::TraceBundle>, ApiError> {
    let start = lineage_ref(&kind, &id)?;
    let _slot = st.heavy_slot().await?;
    let bundle = blocking(&st.log, move |log| crate::trace::build(log, start)).await?;
    Ok(Json(bundle))
}
