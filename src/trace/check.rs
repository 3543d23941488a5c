//! Verifying a trace bundle offline, with nothing but a trust policy (the
//! log's key, and witnesses if wanted).

use super::MAX_BUNDLE_BYTES;
use crate::audit::vocab::Action;
use crate::audit::{Event, Ref};
use crate::tree;
use crate::verify::{event_leaf, Failure, Policy};
use crate::wire::{unhex, TraceBundle, TRACE_FORMAT, TRACE_FORMAT_V1};
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
    // v1 bundles (links followed forward in time) still verify as v1.
    let v2 = match b.format.as_str() {
        TRACE_FORMAT => true,
        TRACE_FORMAT_V1 => false,
        _ => return Err(Failure::Malformed(format!("unknown format {:?}", b.format))),
    };
    if !v2 && b.served_by.is_some() {
        return Err(Failure::Malformed("served_by needs format v2".into()));
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
    // v2: the latest entry of an earlier node that links to each node.
    let mut horizon: HashMap<Ref, u64> = HashMap::new();
    for (pos, n) in b.nodes.iter().enumerate() {
        let me = n.reference();
        if !reached.contains(&me) {
            return Err(Failure::Invalid(format!(
                "node {me} is not linked from an earlier node"
            )));
        }
        if !seen_nodes.insert(me.clone()) {
            return Err(Failure::Invalid(format!("node {me} is listed twice")));
        }
        if v2 && pos > 0 {
            let h = horizon.get(&me).copied().unwrap_or(0);
            if let Some(i) = n.entries.iter().find(|i| **i >= h) {
                return Err(Failure::Invalid(format!(
                    "entry {i} of {me} is not before the entry that links to it ({h})"
                )));
            }
            if me.kind == "deployment"
                && (n.entries.len() > 1
                    || n.entries
                        .iter()
                        .any(|i| by_index.get(i).is_some_and(|e| e.action != Action::Deploy)))
            {
                return Err(Failure::Invalid(format!(
                    "{me} must hold only its latest deploy before the entry that links to it"
                )));
            }
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
            let from_entry = if v2 { ev.lineage_links() } else { ev.links() };
            for l in from_entry {
                let h = horizon.entry(l.clone()).or_insert(*i);
                *h = (*h).max(*i);
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
    if let Some(sb) = &b.served_by {
        let start_node = &b.nodes[0];
        let dep = Ref::new("deployment", sb.deployment.as_str());
        let named = start_node.entries.contains(&sb.entry_index)
            && by_index
                .get(&sb.entry_index)
                .is_some_and(|e| e.lineage_links().contains(&dep));
        let deployed = b
            .nodes
            .iter()
            .find(|n| n.reference() == dep)
            .is_some_and(|n| n.entries == [sb.deploy_index])
            && by_index.get(&sb.deploy_index).is_some_and(|e| {
                e.action == Action::Deploy && e.model_version() == Some(sb.model_version.as_str())
            });
        if !named || !deployed || sb.deploy_index >= sb.entry_index {
            return Err(Failure::Invalid(format!(
                "served_by {} is not what entries {} and {} say",
                sb.model_version, sb.entry_index, sb.deploy_index
            )));
        }
    }
    Ok(TraceCheck {
        tree_size: size,
        witnesses: cp.witnesses.clone(),
        bundle: b,
    })
}
