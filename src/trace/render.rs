//! A trace for people: an indented tree, each node under the node that
//! first linked to it, with its entries' actions.

use super::MAX_NODES;
use crate::audit::{Event, Ref};
use crate::wire::TraceBundle;
use std::collections::HashMap;

struct Tree<'a> {
    b: &'a TraceBundle,
    order: Vec<Ref>,
    parent: HashMap<Ref, Ref>,
    /// `action by actor (#index)` of each entry, by index.
    lines: HashMap<u64, String>,
}

impl Tree<'_> {
    fn depth(&self, r: &Ref) -> usize {
        let mut d = 0;
        let mut cur = r;
        while let Some(p) = self.parent.get(cur) {
            d += 1;
            cur = p;
            if d > MAX_NODES {
                break;
            }
        }
        d
    }

    /// Depth-first, children in visiting order.
    fn walk(&self, r: &Ref, out: &mut String) {
        let Some(n) = self.b.nodes.iter().find(|n| n.reference() == *r) else {
            return;
        };
        let actions: Vec<&str> = n
            .entries
            .iter()
            .filter_map(|i| self.lines.get(i).map(String::as_str))
            .collect();
        out.push_str(&format!(
            "{}{r}{}  {}\n",
            "  ".repeat(self.depth(r)),
            if n.truncated { " (truncated)" } else { "" },
            actions.join(", ")
        ));
        for c in &self.order {
            if self.parent.get(c) == Some(r) {
                self.walk(c, out);
            }
        }
    }
}

/// The trace as an indented tree.
pub fn render(b: &TraceBundle) -> String {
    let mut parent: HashMap<Ref, Ref> = HashMap::new();
    let mut order: Vec<Ref> = Vec::new();
    for n in &b.nodes {
        let me = n.reference();
        order.push(me.clone());
        for l in &n.links {
            if *l != me && !parent.contains_key(l) && !order.contains(l) {
                parent.insert(l.clone(), me.clone());
            }
        }
    }
    let lines = b
        .entries
        .iter()
        .map(|e| {
            let line = match Event::from_canonical(e.event.get().as_bytes()) {
                Ok(ev) => format!("{} by {} (#{})", ev.action, ev.actor.id, e.index),
                Err(_) => format!("? (#{})", e.index),
            };
            (e.index, line)
        })
        .collect();
    let tree = Tree {
        b,
        order,
        parent,
        lines,
    };
    let mut out = String::new();
    tree.walk(&b.start, &mut out);
    if let Some(sb) = &b.served_by {
        out.push_str(&format!(
            "served by model_version:{} (deploy #{} to deployment:{}, before #{})\n",
            sb.model_version, sb.deploy_index, sb.deployment, sb.entry_index
        ));
    }
    for note in &b.notes {
        out.push_str(&format!("note: {note}\n"));
    }
    out
}
