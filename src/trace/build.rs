//! Building a trace bundle from the log: a breadth-first walk back along
//! `related` links from the start, each node's subject entries with their
//! inclusion proofs against the head at the start of the walk.
//!
//! The walk goes back in time: a node reached from entry `j` holds only
//! entries before `j` (what was known when `j` was logged), and a
//! deployment only its latest `deploy` before `j`, so a prediction traces
//! to the version that served it, not to every version ever deployed
//! there.

use super::{MAX_ENTRIES, MAX_EVENT_BYTES, MAX_NODES, MAX_PER_NODE};
use crate::audit::vocab::Action;
use crate::audit::{Event, Ref};
use crate::error::Error;
use crate::log::Log;
use crate::log::MentionRole as Role;
use crate::wire::{hexes, raw_event, ServedBy, TraceBundle, TraceEntry, TraceNode, TRACE_FORMAT};
use std::collections::{HashMap, HashSet, VecDeque};

/// Build the trace from `start` against the log's current head. Blocking.
pub fn build(log: &Log, start: Ref) -> Result<TraceBundle, Error> {
    let head = log.head();
    let size = head.size;
    let mut nodes: Vec<TraceNode> = Vec::new();
    let mut entries: Vec<TraceEntry> = Vec::new();
    // The links of each included entry, by index.
    let mut links_of: HashMap<u64, Vec<Ref>> = HashMap::new();
    let mut visited: HashSet<Ref> = HashSet::new();
    let mut queue: VecDeque<Ref> = VecDeque::new();
    let mut notes: Vec<String> = Vec::new();
    let mut truncated = false;
    let mut bytes = 0usize;
    let mut out_of_bytes = false;
    // Who first linked to each node, to tell a cycle from a shared ancestor.
    let mut parent: HashMap<Ref, Ref> = HashMap::new();
    // Entries of a node must come before this index (the latest entry
    // that linked to it so far); the start has none.
    let mut horizon: HashMap<Ref, u64> = HashMap::new();
    let mut events: HashMap<u64, Event> = HashMap::new();
    visited.insert(start.clone());
    queue.push_back(start.clone());
    while let Some(r) = queue.pop_front() {
        if nodes.len() == MAX_NODES {
            truncated = true;
            notes.push(format!(
                "stopped at {MAX_NODES} nodes; {} more not visited",
                queue.len() + 1
            ));
            break;
        }
        let (subject_of, node_truncated) = match horizon.get(&r) {
            None => subject_entries(log, &r, size)?,
            Some(&h) if r.kind == DEPLOYMENT => (latest_deploy(log, &r, h)?, false),
            Some(&h) => subject_entries(log, &r, h)?,
        };
        if nodes.is_empty() && subject_of.is_empty() {
            return Err(Error::NotFound(format!("no entry has the subject {r}")));
        }
        if node_truncated {
            truncated = true;
            notes.push(format!(
                "{r} has more than {MAX_PER_NODE} entries; the first {MAX_PER_NODE} are included"
            ));
        }
        let mut node = TraceNode {
            kind: r.kind.clone(),
            id: r.id.clone(),
            entries: Vec::new(),
            links: Vec::new(),
            truncated: node_truncated,
        };
        for index in subject_of {
            if let std::collections::hash_map::Entry::Vacant(slot) = links_of.entry(index) {
                if entries.len() == MAX_ENTRIES {
                    truncated = true;
                    node.truncated = true;
                    notes.push(format!("stopped at {MAX_ENTRIES} entries"));
                    break;
                }
                let bytes_of = log.entry(index)?;
                if bytes + bytes_of.len() > MAX_EVENT_BYTES {
                    truncated = true;
                    node.truncated = true;
                    notes.push(format!("stopped at {MAX_EVENT_BYTES} bytes of events"));
                    out_of_bytes = true;
                    break;
                }
                bytes += bytes_of.len();
                let ev = Event::from_canonical(&bytes_of)
                    .map_err(|e| Error::Internal(format!("entry {index}: {e}")))?;
                let (_, proof) = log.leaf_and_inclusion_proof(index, size)?;
                entries.push(TraceEntry {
                    index,
                    event: raw_event(&bytes_of).map_err(|e| Error::Internal(e.to_string()))?,
                    inclusion_proof: hexes(&proof),
                });
                slot.insert(ev.lineage_links());
                events.insert(index, ev);
            }
            node.entries.push(index);
            for l in links_of.get(&index).cloned().unwrap_or_default() {
                if !node.links.contains(&l) {
                    node.links.push(l.clone());
                }
                if visited.insert(l.clone()) {
                    parent.insert(l.clone(), r.clone());
                    horizon.insert(l.clone(), index);
                    queue.push_back(l);
                } else if let Some(h) = horizon.get_mut(&l).filter(|_| {
                    // Still waiting in the queue: a later link widens it.
                    queue.contains(&l)
                }) {
                    *h = (*h).max(index);
                } else if descends_from(&r, &l, &parent) {
                    notes.push(format!(
                        "{r} links back to {l}, which it descends from (a cycle)"
                    ));
                }
            }
        }
        nodes.push(node);
        if out_of_bytes || (truncated && entries.len() == MAX_ENTRIES) {
            break;
        }
    }
    notes.dedup();
    let served_by = served_by(&nodes, &events);
    Ok(TraceBundle {
        format: TRACE_FORMAT.into(),
        start,
        checkpoint: head.checkpoint.clone(),
        tree_size: size,
        nodes,
        entries,
        truncated,
        notes,
        served_by,
    })
}

const DEPLOYMENT: &str = "deployment";

/// The model version behind the start: the first start entry that names a
/// deployment, that deployment's `deploy` in the bundle (the latest before
/// the entry), and the model version it deployed.
fn served_by(nodes: &[TraceNode], events: &HashMap<u64, Event>) -> Option<ServedBy> {
    let start = nodes.first()?;
    for &i in &start.entries {
        let ev = events.get(&i)?;
        for l in ev.lineage_links().iter().filter(|l| l.kind == DEPLOYMENT) {
            let node = nodes.iter().find(|n| n.reference() == *l)?;
            let d = *node.entries.first()?;
            let dep = events.get(&d)?;
            if dep.action != Action::Deploy {
                continue;
            }
            if let Some(mv) = dep.model_version() {
                return Some(ServedBy {
                    model_version: mv.to_string(),
                    deployment: l.id.clone(),
                    deploy_index: d,
                    entry_index: i,
                });
            }
        }
    }
    None
}

/// The latest `deploy` of a deployment before `before`: at most one entry,
/// found by seeking back over its subject entries.
fn latest_deploy(log: &Log, r: &Ref, before: u64) -> Result<Vec<u64>, Error> {
    let mut before = before;
    for _ in 0..MAX_PER_NODE {
        let Some(i) = log.last_mention(&r.kind, &r.id, Role::Subject, before)? else {
            break;
        };
        let ev = Event::from_canonical(&log.entry(i)?)
            .map_err(|e| Error::Internal(format!("entry {i}: {e}")))?;
        if ev.action == Action::Deploy {
            return Ok(vec![i]);
        }
        before = i;
    }
    Ok(Vec::new())
}

/// The entries below `size` (the head, or the node's horizon) whose subject is `r`, in log order, at most
/// [`MAX_PER_NODE`]; and whether there were more. One range read of the
/// subject mentions, however many entries name `r` in `related`.
fn subject_entries(log: &Log, r: &Ref, size: u64) -> Result<(Vec<u64>, bool), Error> {
    let mut out = log.mentions_as(&r.kind, &r.id, Role::Subject, 0, MAX_PER_NODE + 1)?;
    out.retain(|i| *i < size);
    let more = out.len() > MAX_PER_NODE;
    out.truncate(MAX_PER_NODE);
    Ok((out, more))
}

/// Is `l` an ancestor of `r` on the walk (so the link from `r` closes a
/// cycle)?
fn descends_from(r: &Ref, l: &Ref, parent: &HashMap<Ref, Ref>) -> bool {
    let mut cur = Some(r);
    let mut steps = 0;
    while let Some(c) = cur {
        if c == l {
            return true;
        }
        steps += 1;
        if steps > MAX_NODES {
            return false;
        }
        cur = parent.get(c);
    }
    false
}
