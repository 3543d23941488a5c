//! Derived state: everything the server knows beyond the entries themselves
//! (tokens and keys, the registry's model versions) is a pure fold over the
//! entries, in log order.
//!
//! - [`AccessState::apply`] folds `grant_access`, `revoke_access` and
//!   `register_key`;
//! - [`registry::State::apply`] folds the registry's actions;
//! - every other entry changes nothing ([`Event::fold`] says which is
//!   which, and the same answer routes a submission to the lock that
//!   orders it, see [`crate::ledger`]).
//!
//! A [`Snapshot`] of the whole derived state is stored from time to time
//! (metadata key [`MetaKey::DerivedState`]) with the tree size it covers;
//! at start the server loads it and folds the entries after it. It is a
//! cache, not the truth: losing it, or a crash between an append and the
//! next snapshot, costs only a longer fold, and [`rebuild`] makes the state
//! again from the entries alone, which is what `modeltrail reindex` checks.
//!
//! What this module does not do: append, or decide anything.

use crate::access::AccessState;
use crate::audit::vocab::Action;
use crate::audit::{Event, Fold};
use crate::registry;
use crate::store::{MetaKey, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Entries read at a time while folding.
const PAGE: u64 = 1000;
/// The snapshot format written by this version.
pub const SNAPSHOT_VERSION: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("entry {index} cannot be read as an event: {message}")]
    Entry { index: u64, message: String },
    #[error("stored snapshot: {0}")]
    Snapshot(String),
}

/// The whole derived state at one tree size.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub version: u32,
    /// The state covers entries `[0, indexed)`.
    pub indexed: u64,
    pub access: AccessState,
    pub registry: registry::State,
}

/// The action of canonical leaf bytes, read from their first member
/// (`action` sorts first among an event's members), without parsing the
/// rest. `None` if the bytes do not start that way.
fn leading_action(bytes: &[u8]) -> Option<&str> {
    let rest = bytes.strip_prefix(b"{\"action\":\"")?;
    let end = rest.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Call `f` with every entry in `[from, to)` that some derived state folds
/// in, in log order. Entries no state folds are skipped without being
/// parsed.
pub fn for_each_folded(
    store: &dyn Store,
    from: u64,
    to: u64,
    mut f: impl FnMut(u64, &Event),
) -> Result<(), StateError> {
    let mut at = from;
    while at < to {
        let end = (at + PAGE).min(to);
        for (i, bytes) in store.entries(at, end)?.iter().enumerate() {
            let index = at + i as u64;
            if let Some(a) = leading_action(bytes) {
                if Action::parse(a).fold() == Fold::None {
                    continue;
                }
            }
            let ev = Event::from_canonical(bytes).map_err(|e| StateError::Entry {
                index,
                message: e.to_string(),
            })?;
            if ev.fold() != Fold::None {
                f(index, &ev);
            }
        }
        at = end;
    }
    Ok(())
}

impl Snapshot {
    /// Fold one event (at `index`) into whichever state folds it.
    pub fn apply(&mut self, index: u64, ev: &Event) {
        match ev.fold() {
            Fold::Access => self.access.apply(index, ev),
            Fold::Registry => self.registry.apply(index, ev),
            Fold::None => {}
        }
    }

    /// Fold the entries `[self.indexed, to)`.
    pub fn fold_to(&mut self, store: &dyn Store, to: u64) -> Result<(), StateError> {
        if to < self.indexed {
            return Err(StateError::Snapshot(format!(
                "the snapshot covers {} entries but the log has {to}",
                self.indexed
            )));
        }
        let from = self.indexed;
        for_each_folded(store, from, to, |i, ev| self.apply(i, ev))?;
        self.indexed = to;
        Ok(())
    }

    /// The stored snapshot, if any.
    pub fn load(store: &dyn Store) -> Result<Option<Snapshot>, StateError> {
        let legacy = legacy_token_hashes(store)?;
        let Some(bytes) = store.get_meta(MetaKey::DerivedState)? else {
            return Ok(None);
        };
        #[derive(Deserialize)]
        struct Format {
            version: u32,
        }
        let format: Format = serde_json::from_slice(&bytes)
            .map_err(|e| StateError::Snapshot(format!("unreadable: {e}")))?;
        if format.version != SNAPSHOT_VERSION {
            // Written by another version of the fold: the state is derived,
            // so it is rebuilt from the entries rather than trusted.
            return Ok(None);
        }
        let mut snap: Snapshot = serde_json::from_slice(&bytes)
            .map_err(|e| StateError::Snapshot(format!("unreadable: {e}")))?;
        snap.access = std::mem::take(&mut snap.access).with_legacy_hashes(legacy);
        Ok(Some(snap))
    }

    /// Store this snapshot (replacing the previous one).
    pub fn save(&self, store: &dyn Store) -> Result<(), StateError> {
        let bytes = serde_json::to_vec(self).map_err(|e| StateError::Snapshot(e.to_string()))?;
        store.put_meta(MetaKey::DerivedState, &bytes)?;
        Ok(())
    }
}

/// The derived state at tree size `to`: the stored snapshot (if any) with
/// the entries after it folded in.
pub fn open(store: &dyn Store, to: u64) -> Result<Snapshot, StateError> {
    let mut snap = match Snapshot::load(store)? {
        Some(s) => s,
        None => empty(store)?,
    };
    snap.fold_to(store, to)?;
    Ok(snap)
}

/// The derived state at tree size `to`, from the entries alone.
pub fn rebuild(store: &dyn Store, to: u64) -> Result<Snapshot, StateError> {
    let mut snap = empty(store)?;
    snap.fold_to(store, to)?;
    Ok(snap)
}

fn empty(store: &dyn Store) -> Result<Snapshot, StateError> {
    Ok(Snapshot {
        version: SNAPSHOT_VERSION,
        indexed: 0,
        access: AccessState::default().with_legacy_hashes(legacy_token_hashes(store)?),
        registry: registry::State::default(),
    })
}

/// Token hashes kept by versions whose `grant_access` events did not carry
/// them: token id → hex hash, from the old token table if there is one.
fn legacy_token_hashes(store: &dyn Store) -> Result<BTreeMap<String, String>, StateError> {
    let Some(bytes) = store.get_meta(MetaKey::LegacyAccessTokens)? else {
        return Ok(BTreeMap::new());
    };
    let list: Vec<serde_json::Value> = serde_json::from_slice(&bytes)
        .map_err(|e| StateError::Snapshot(format!("the old token table is unreadable: {e}")))?;
    Ok(list
        .iter()
        .filter_map(|t| {
            Some((
                t.get("token_id")?.as_str()?.to_string(),
                t.get("token_sha256")?.as_str()?.to_string(),
            ))
        })
        .collect())
}

/// What `reindex` found.
#[derive(Debug)]
pub struct Reindexed {
    /// The state rebuilt from the entries alone, now stored.
    pub rebuilt: Snapshot,
    /// Whether the stored snapshot, brought up to the same size, was
    /// identical (`None`: there was none).
    pub identical: Option<bool>,
    /// Lineage index keys that were missing and have been written.
    pub lineage_repaired: u64,
}

/// Rebuild the derived state from the entries alone, compare it with what
/// the server would have loaded, store it, and check the lineage index.
/// Run with the server stopped.
pub fn reindex(store: &dyn Store) -> Result<Reindexed, StateError> {
    let size = store.tree_size()?;
    let lineage_repaired = repair_lineage(store, size)?;
    let stored = match Snapshot::load(store)? {
        Some(mut s) if s.indexed <= size => {
            s.fold_to(store, size)?;
            Some(s)
        }
        Some(_) => None,
        None => None,
    };
    let rebuilt = rebuild(store, size)?;
    let identical = stored.map(|s| s == rebuilt);
    rebuilt.save(store)?;
    Ok(Reindexed {
        rebuilt,
        identical,
        lineage_repaired,
    })
}

/// Check the lineage index against the entries, entry by entry, and write
/// back any key that is missing. Returns how many were missing.
pub fn repair_lineage(store: &dyn Store, size: u64) -> Result<u64, StateError> {
    use crate::store::{mention_key, Role};
    let mut missing = 0u64;
    let mut from = 0u64;
    while from < size {
        let end = (from + PAGE).min(size);
        let mut fix = Vec::new();
        for (i, bytes) in store.entries(from, end)?.iter().enumerate() {
            let index = from + i as u64;
            let ev = Event::from_canonical(bytes).map_err(|e| StateError::Entry {
                index,
                message: e.to_string(),
            })?;
            for (r, subject) in ev.index_keys() {
                let prefix = mention_key(&r.kind, &r.id);
                let role = if subject {
                    Role::Subject
                } else {
                    Role::Related
                };
                let found = store.mentions_as(&prefix, role, index, 1)?;
                if found.first() != Some(&index) {
                    fix.push((index, prefix, role));
                }
            }
        }
        missing += fix.len() as u64;
        if !fix.is_empty() {
            store.put_mentions(&fix)?;
        }
        from = end;
    }
    Ok(missing)
}

/// Make sure the lineage index is complete in this version's layout:
/// a store written by an earlier layout gets its index rebuilt from the
/// entries (once; blocking). Returns how many keys were written.
pub fn ensure_lineage(store: &dyn Store) -> Result<u64, StateError> {
    use crate::store::LINEAGE_LAYOUT;
    if store.get_meta(MetaKey::LineageLayout)?.as_deref() == Some(LINEAGE_LAYOUT) {
        return Ok(0);
    }
    let size = store.tree_size()?;
    let written = repair_lineage(store, size)?;
    store.put_meta(MetaKey::LineageLayout, LINEAGE_LAYOUT)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_action_is_read_from_the_first_member() {
        assert_eq!(
            leading_action(br#"{"action":"grant_access","actor":{}}"#),
            Some("grant_access")
        );
        assert_eq!(leading_action(br#"{"actor":{},"action":"x"}"#), None);
        assert_eq!(leading_action(br#"{"action":"x"#), None);
    }
}

#[cfg(test)]
mod lineage_tests {
    use super::*;
    use crate::audit::event::prepare;
    use crate::store::{mention_key, Batch, MemStore, NewEntry, Role, LINEAGE_LAYOUT};

    #[test]
    fn an_index_in_an_earlier_layout_is_rebuilt_once() {
        let store = MemStore::new();
        // Entries committed without lineage keys, as a store of an earlier
        // layout looks once its old index is dropped.
        let entries: Vec<NewEntry> = (0..6u8)
            .map(|i| {
                let p = prepare(
                    serde_json::json!({
                        "action": "predict", "actor": {"type": "service", "id": "s"},
                        "timestamp": "2025-05-05T14:03:00Z",
                        "subject": {"type": "prediction", "id": format!("p{i}")},
                        "related": [{"type": "deployment", "id": "d"}]
                    })
                    .to_string()
                    .as_bytes(),
                )
                .unwrap();
                NewEntry {
                    leaf_hash: p.leaf_hash,
                    bytes: std::sync::Arc::new(p.canonical),
                    event_id: [i + 1; 16],
                    mentions: Vec::new(),
                }
            })
            .collect();
        store
            .commit(&Batch {
                first_index: 0,
                entries: &entries,
                nodes: &[],
                checkpoint: b"cp",
            })
            .unwrap();
        // Two lineage keys and three auditor keys (actor, action, month) each.
        assert_eq!(ensure_lineage(&store).unwrap(), 30);
        assert_eq!(
            store.get_meta(MetaKey::LineageLayout).unwrap().as_deref(),
            Some(LINEAGE_LAYOUT)
        );
        assert_eq!(
            store
                .mentions_as(&mention_key("deployment", "d"), Role::Related, 0, 100)
                .unwrap(),
            (0..6).collect::<Vec<u64>>()
        );
        assert_eq!(
            store
                .mentions_as(&mention_key("@month", "2025-05"), Role::Subject, 0, 100)
                .unwrap(),
            (0..6).collect::<Vec<u64>>()
        );
        assert_eq!(ensure_lineage(&store).unwrap(), 0);
    }
}
