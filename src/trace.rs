//! Lineage traces: from a prediction, deployment, model version or any id,
//! walk back along `related` links (prediction → deployment → model version
//! → run → dataset, code commit, environment) and return every event on
//! the way with its inclusion proof against one signed checkpoint: a
//! bundle an auditor verifies offline with [`verify`].
//!
//! The walk visits each `(type, id)` once, so cycles in `related` links end
//! it, and it is bounded in nodes, entries and entries per node; a bundle
//! that hit a bound says so (`truncated`, with the reasons in `notes`).

use crate::audit::event;
use crate::error::Error;
use crate::log::Log;
use crate::store::{mention_key, Role};
use crate::tree::{self, Hash};
use crate::verify::{Failure, Policy};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeSet, HashSet, VecDeque};

pub const FORMAT: &str = "modeltrail-trace/v1";
/// Most `(type, id)` nodes in one trace.
pub const MAX_NODES: usize = 256;
/// Most entries in one trace.
pub const MAX_ENTRIES: usize = 1024;
/// Most entries whose subject is one node.
pub const MAX_PER_NODE: usize = 256;
/// Largest bundle the verifier reads.
pub const MAX_BUNDLE_BYTES: usize = 64 << 20;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(deny_unknown_fields)]
pub struct Ref {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    /// Entries whose subject is this node.
    pub entries: Vec<u64>,
    /// The `related` links of those entries: where the walk went next.
    pub links: Vec<Ref>,
    /// True if this node had more entries than were included.
    pub truncated: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub index: u64,
    pub event: Value,
    /// Lowercase hex hashes: the inclusion proof in the checkpoint's tree.
    pub inclusion_proof: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    pub start: Ref,
    /// The signed checkpoint every proof is against.
    pub checkpoint: String,
    pub tree_size: u64,
    /// In the order visited; the first is `start`.
    pub nodes: Vec<Node>,
    pub entries: Vec<Entry>,
    pub truncated: bool,
    pub notes: Vec<String>,
}

fn link(v: &Value) -> Option<Ref> {
    event::link(v).map(|(kind, id)| Ref { kind, id })
}

fn related(ev: &Value) -> Vec<Ref> {
    let mut out: Vec<Ref> = Vec::new();
    for r in ev
        .get("related")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(l) = link(r) {
            if !out.contains(&l) {
                out.push(l);
            }
        }
    }
    out
}

/// Build the trace from `start` against the log's current head. Blocking.
pub fn build(log: &Log, start: Ref) -> Result<Bundle, Error> {
    let head = log.head();
    let size = head.size;
    let store = log.store();
    let mut nodes: Vec<Node> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut included: HashSet<u64> = HashSet::new();
    let mut visited: HashSet<Ref> = HashSet::new();
    let mut queue: VecDeque<Ref> = VecDeque::new();
    let mut notes: Vec<String> = Vec::new();
    let mut truncated = false;
    // Who first linked to each node, to tell a cycle from a shared ancestor.
    let mut parent: std::collections::HashMap<Ref, Ref> = std::collections::HashMap::new();
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
        // Subject mentions only, in log order, below the checkpoint.
        let mut subject_of = Vec::new();
        let mut node_truncated = false;
        let mut from = 0u64;
        'scan: loop {
            let page = store.mentions(&mention_key(&r.kind, &r.id), from, 1024)?;
            if page.is_empty() {
                break;
            }
            from = page.last().map_or(u64::MAX, |m| m.0.saturating_add(1));
            for (index, role) in page {
                if index >= size {
                    break 'scan;
                }
                if role == Role::Subject {
                    if subject_of.len() == MAX_PER_NODE {
                        node_truncated = true;
                        break 'scan;
                    }
                    subject_of.push(index);
                }
            }
        }
        if nodes.is_empty() && subject_of.is_empty() {
            return Err(Error::NotFound(format!(
                "no entry has the subject {}:{}",
                r.kind, r.id
            )));
        }
        if node_truncated {
            truncated = true;
            notes.push(format!(
                "{}:{} has more than {MAX_PER_NODE} entries; the first {MAX_PER_NODE} are included",
                r.kind, r.id
            ));
        }
        let mut node = Node {
            kind: r.kind.clone(),
            id: r.id.clone(),
            entries: Vec::new(),
            links: Vec::new(),
            truncated: node_truncated,
        };
        for index in subject_of {
            if !included.contains(&index) {
                if entries.len() == MAX_ENTRIES {
                    truncated = true;
                    node.truncated = true;
                    notes.push(format!("stopped at {MAX_ENTRIES} entries"));
                    break;
                }
                let bytes = store.entry(index)?;
                let ev: Value =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Internal(e.to_string()))?;
                let (_, proof) = log.leaf_and_inclusion_proof(index, size)?;
                entries.push(Entry {
                    index,
                    event: ev,
                    inclusion_proof: proof.iter().map(hex::encode).collect(),
                });
                included.insert(index);
            }
            node.entries.push(index);
            let ev = &entries
                .iter()
                .find(|e| e.index == index)
                .ok_or_else(|| Error::Internal("trace entry vanished".into()))?
                .event;
            for l in related(ev) {
                if !node.links.contains(&l) {
                    node.links.push(l.clone());
                }
                if visited.insert(l.clone()) {
                    parent.insert(l.clone(), r.clone());
                    queue.push_back(l);
                } else {
                    // A link to this node or one it descends from: a cycle.
                    let mut cur = Some(&r);
                    let mut steps = 0;
                    while let Some(c) = cur {
                        if *c == l {
                            notes.push(format!(
                                "{}:{} links back to {}:{}, which it descends from (a cycle)",
                                r.kind, r.id, l.kind, l.id
                            ));
                            break;
                        }
                        steps += 1;
                        if steps > MAX_NODES {
                            break;
                        }
                        cur = parent.get(c);
                    }
                }
            }
        }
        nodes.push(node);
        if truncated && entries.len() == MAX_ENTRIES {
            break;
        }
    }
    notes.dedup();
    Ok(Bundle {
        format: FORMAT.into(),
        start,
        checkpoint: head.checkpoint.clone(),
        tree_size: size,
        nodes,
        entries,
        truncated,
        notes,
    })
}

/// What a verified trace bundle proves.
#[derive(Clone, Debug)]
pub struct TraceCheck {
    pub bundle: Bundle,
    pub tree_size: u64,
    pub witnesses: Vec<String>,
}

/// Verify a bundle offline: the checkpoint under the policy, every entry's
/// leaf (recomputed from the event) and inclusion proof, and that the nodes
/// and links are exactly what the entries say.
pub fn verify(policy: &Policy, bundle: &[u8]) -> Result<TraceCheck, Failure> {
    if bundle.len() > MAX_BUNDLE_BYTES {
        return Err(Failure::Malformed("trace bundle too large".into()));
    }
    let b: Bundle = serde_json::from_slice(bundle)
        .map_err(|e| Failure::Malformed(format!("trace bundle: {e}")))?;
    if b.format != FORMAT {
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
    let mut by_index = std::collections::HashMap::new();
    for e in &b.entries {
        let canonical_input = serde_json::to_vec(&e.event)
            .map_err(|err| Failure::Malformed(format!("entry {}: {err}", e.index)))?;
        let value = event::parse_strict(&canonical_input)
            .map_err(|err| Failure::Malformed(format!("entry {}: {err}", e.index)))?;
        let canonical = event::canonicalize(&value)
            .map_err(|err| Failure::Malformed(format!("entry {}: {err}", e.index)))?;
        let leaf = tree::leaf_hash(&canonical);
        let proof: Vec<Hash> = crate::verify::parse_hex_hashes(&e.inclusion_proof)
            .map_err(|err| Failure::Malformed(format!("entry {}: {err}", e.index)))?;
        tree::verify_inclusion(e.index, size, &leaf, &proof, &cp.checkpoint.root)
            .map_err(|err| Failure::Invalid(format!("entry {}: {err}", e.index)))?;
        if by_index.insert(e.index, &e.event).is_some() {
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
    if first.kind != b.start.kind || first.id != b.start.id {
        return Err(Failure::Invalid("the first node is not the start".into()));
    }
    let mut reached: BTreeSet<Ref> = BTreeSet::new();
    reached.insert(b.start.clone());
    let mut seen_nodes: BTreeSet<Ref> = BTreeSet::new();
    for n in &b.nodes {
        let me = Ref {
            kind: n.kind.clone(),
            id: n.id.clone(),
        };
        if !reached.contains(&me) {
            return Err(Failure::Invalid(format!(
                "node {}:{} is not linked from an earlier node",
                n.kind, n.id
            )));
        }
        if !seen_nodes.insert(me) {
            return Err(Failure::Invalid(format!(
                "node {}:{} is listed twice",
                n.kind, n.id
            )));
        }
        let mut links: Vec<Ref> = Vec::new();
        for i in &n.entries {
            let ev = by_index.get(i).ok_or_else(|| {
                Failure::Invalid(format!(
                    "node {}:{} names entry {i}, which is not in the bundle",
                    n.kind, n.id
                ))
            })?;
            let subject = ev.get("subject").and_then(link);
            if subject.as_ref().map(|s| (&s.kind, &s.id)) != Some((&n.kind, &n.id)) {
                return Err(Failure::Invalid(format!(
                    "entry {i} is not about {}:{}",
                    n.kind, n.id
                )));
            }
            for l in related(ev) {
                if !links.contains(&l) {
                    links.push(l);
                }
            }
        }
        if links != n.links {
            return Err(Failure::Invalid(format!(
                "the links of {}:{} are not those of its entries",
                n.kind, n.id
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

/// The trace as an indented tree, for people: each node under the node
/// that first linked to it, with its entries' actions.
pub fn render(b: &Bundle) -> String {
    let mut parent: std::collections::HashMap<Ref, Ref> = std::collections::HashMap::new();
    let mut order: Vec<Ref> = Vec::new();
    for n in &b.nodes {
        let me = Ref {
            kind: n.kind.clone(),
            id: n.id.clone(),
        };
        order.push(me.clone());
        for l in &n.links {
            if *l != me && !parent.contains_key(l) && !order.contains(l) {
                parent.insert(l.clone(), me.clone());
            }
        }
    }
    let depth = |r: &Ref| {
        let mut d = 0;
        let mut cur = r.clone();
        while let Some(p) = parent.get(&cur) {
            d += 1;
            cur = p.clone();
            if d > MAX_NODES {
                break;
            }
        }
        d
    };
    let mut out = String::new();
    // Depth-first, children in visiting order.
    fn walk(
        r: &Ref,
        b: &Bundle,
        order: &[Ref],
        parent: &std::collections::HashMap<Ref, Ref>,
        depth: &dyn Fn(&Ref) -> usize,
        out: &mut String,
    ) {
        let Some(n) = b.nodes.iter().find(|n| n.kind == r.kind && n.id == r.id) else {
            return;
        };
        let pad = "  ".repeat(depth(r));
        let actions: Vec<String> = n
            .entries
            .iter()
            .filter_map(|i| b.entries.iter().find(|e| e.index == *i))
            .map(|e| {
                format!(
                    "{} by {} (#{})",
                    e.event["action"].as_str().unwrap_or("?"),
                    e.event["actor"]["id"].as_str().unwrap_or("?"),
                    e.index
                )
            })
            .collect();
        out.push_str(&format!(
            "{pad}{}:{}{}  {}\n",
            n.kind,
            n.id,
            if n.truncated { " (truncated)" } else { "" },
            actions.join(", ")
        ));
        for c in order {
            if parent.get(c) == Some(r) {
                walk(c, b, order, parent, depth, out);
            }
        }
    }
    walk(&b.start, b, &order, &parent, &depth, &mut out);
    for note in &b.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
