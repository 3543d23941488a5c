//! Verifying a trace bundle offline, with nothing but a trust policy (the
//! log's key, and witnesses if wanted).

use super::MAX_BUNDLE_BYTES;
use crate::audit::{Event, Ref};
use crate::tree;
use crate::verify::{event_leaf, Failure, Policy};
use crate::wire::{unhex, TraceBundle, TRACE_FORMAT};
use std::collections::{BTreeSet, HashMap};

/// What a verified trace bundle proves.
#[derive(Debug)]
pub struct TraceCheck {
    pub bundle: TraceBundle,
    pub tree_size: u64,
    pub witnesses: Vec<String>,
}

/// Verify a bundle: the checkpoint under the policy, every entry's leaf
/// (recomputed from its event) and inclusion proof, and that the nodes and
/// links are exactly what the entries say, each node reached from the
/// start.
pub fn check(policy: &Policy, bundle: &[u8]) -> Result<TraceCheck, Failure> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(Failure::Malformed("trace bundle too large".into()));
    }
    let b: TraceBundle = serde_json::from_slice(bundle)
        .map_err(|e| Failure::Malformed(format!("trace bundle: {e}")))?;
    if b.format != TRACE_FORMAT {
        return Err(Failure::Malformed(format!("unknown format {:?}", b.format)));
    }
    let cp = policy.open_checkpoint(b.checkpoint.as_bytes())?;
    let size = cp.checkpoint.size;
    if b.tree_size != size {
        return Err(Failure::Invalid(format!(
            "the bundle says tree size {} but its checkpoint is for {size}",
            b.tree_size
        )));
    }
    let mut by_index: HashMap<u64, Event> = HashMap::new();
    for e in &b.entries {
        let malformed = |err: String| Failure::Malformed(format!("entry {}: {err}", e.index));
        let (canonical, leaf) =
            event_leaf(e.event.get().as_bytes()).map_err(|f| malformed(f.to_string()))?;
        tree::verify_inclusion(
            e.index,
            size,
            &leaf,
            &unhex(&e.inclusion_proof),
            &cp.checkpoint.root,
        )
        .map_err(|err| Failure::Invalid(format!("entry {}: {err}", e.index)))?;
        let ev = Event::from_canonical(&canonical).map_err(|err| malformed(err.to_string()))?;
        if by_index.insert(e.index, ev).is_some() {
            return Err(Failure::Malformed(format!(
                "entry {} is listed twice",
                e.index
            )));
        }
    }
    let first = b
        .nodes
        .first()
        .ok_or_else(|| Failure::Malformed("a trace has at least its start node".into()))?;
    if first.reference() != b.start {
        return Err(Failure::Invalid("the first node is not the start".into()));
    }
    let mut reached: BTreeSet<Ref> = BTreeSet::new();
    reached.insert(b.start.clone());
    let mut seen_nodes: BTreeSet<Ref> = BTreeSet::new();
    for n in &b.nodes {
        let me = n.reference();
        if !reached.contains(&me) {
            return Err(Failure::Invalid(format!(
                "node {me} is not linked from an earlier node"
            )));
        }
        if !seen_nodes.insert(me.clone()) {
            return Err(Failure::Invalid(format!("node {me} is listed twice")));
        }
        let mut links: Vec<Ref> = Vec::new();
        for i in &n.entries {
            let ev = by_index.get(i).ok_or_else(|| {
                Failure::Invalid(format!(
                    "node {me} names entry {i}, which is not in the bundle"
                ))
            })?;
            if ev.subject != me {
                return Err(Failure::Invalid(format!("entry {i} is not about {me}")));
            }
            for l in ev.links() {
                if !links.contains(&l) {
                    links.push(l);
                }
            }
        }
        if links != n.links {
            return Err(Failure::Invalid(format!(
                "the links of {me} are not those of its entries"
            )));
        }
        reached.extend(links);
    }
    Ok(TraceCheck {
        tree_size: size,
        witnesses: cp.witnesses.clone(),
        bundle: b,
    })
}
