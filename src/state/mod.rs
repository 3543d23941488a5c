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
//! A [`Snapshot`] of the derived state is stored from time to time: a
//! header (metadata key [`MetaKey::DerivedState`]) with the tree size it
//! covers, and one record per token, service, model version and model
//! ([`Part`]). Each fold notes the records an event may change
//! ([`Changes`]), and a snapshot rewrites only those ([`delta`]), in one
//! atomic write with the header: its cost is that of what changed since
//! the last one, not of the registry's size.
//! At start the server loads it and folds the entries after it. It is a
//! cache, not the truth: losing it, or a crash between an append and the
//! next snapshot, costs only a longer fold, and [`rebuild`] makes the state
//! again from the entries alone, which is what `modeltrail reindex` checks.
//!
//! What this module does not do: append, or decide anything.

use crate::access::{AccessState, RegisteredKey, TokenRecord};
use crate::audit::vocab::Action;
use crate::audit::{Event, Fold};
use crate::registry::{self, model_of};
use crate::store::{MetaKey, StateRecord, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Entries read at a time while folding.
const PAGE: u64 = 1000;
/// The snapshot format written by this version: a header and one record
/// per token, service, model version and model. Version 2 was one JSON
/// document; a store holding it is folded again from the entries.
pub const SNAPSHOT_VERSION: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("entry {index} cannot be read as an event: {message}")]
    Entry { index: u64, message: String },
    #[error("stored snapshot: {0}")]
    Snapshot(String),
}

/// One record of the stored snapshot: the unit that is rewritten when it
/// changes. Its key is a tag, a zero byte and the id (ids have no control
/// characters).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Part {
    /// A token, by token id.
    Token(String),
    /// The keys a service registered, by service id.
    Keys(String),
    /// A model version, by `name:version`.
    Version(String),
    /// A model (its versions and production slot), by name.
    Model(String),
}

impl Part {
    fn tag(&self) -> &'static str {
        match self {
            Part::Token(_) => "token",
            Part::Keys(_) => "keys",
            Part::Version(_) => "version",
            Part::Model(_) => "model",
        }
    }

    fn id(&self) -> &str {
        match self {
            Part::Token(id) | Part::Keys(id) | Part::Version(id) | Part::Model(id) => id,
        }
    }

    /// The record's key in the store.
    pub fn key(&self) -> Vec<u8> {
        let (tag, id) = (self.tag(), self.id());
        let mut k = Vec::with_capacity(tag.len() + 1 + id.len());
        k.extend_from_slice(tag.as_bytes());
        k.push(0);
        k.extend_from_slice(id.as_bytes());
        k
    }

    pub fn parse(key: &[u8]) -> Option<Part> {
        let at = key.iter().position(|&b| b == 0)?;
        let id = std::str::from_utf8(&key[at + 1..]).ok()?.to_string();
        match &key[..at] {
            b"token" => Some(Part::Token(id)),
            b"keys" => Some(Part::Keys(id)),
            b"version" => Some(Part::Version(id)),
            b"model" => Some(Part::Model(id)),
            _ => None,
        }
    }

    fn is_access(&self) -> bool {
        matches!(self, Part::Token(_) | Part::Keys(_))
    }
}

/// The records that may differ from the stored snapshot: a superset of
/// those that do (a record rewritten unchanged costs a write, one missed
/// would be a stale snapshot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Every record: the stored snapshot is of another format, or none.
    all: bool,
    parts: BTreeSet<Part>,
}

impl Changes {
    /// Everything is to be written.
    pub fn all() -> Self {
        Changes {
            all: true,
            parts: BTreeSet::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        !self.all && self.parts.is_empty()
    }

    pub fn merge(&mut self, other: Changes) {
        self.all |= other.all;
        if !self.all {
            self.parts.extend(other.parts);
        } else {
            self.parts.clear();
        }
    }

    /// The access records and the registry records, apart.
    pub fn split(self) -> (Changes, Changes) {
        let (access, registry) = self.parts.into_iter().partition(Part::is_access);
        (
            Changes {
                all: self.all,
                parts: access,
            },
            Changes {
                all: self.all,
                parts: registry,
            },
        )
    }

    fn add(&mut self, part: Part) {
        if !self.all {
            self.parts.insert(part);
        }
    }
}

/// The records folding `ev` into the access state may change
/// ([`AccessState::apply`]): the token a grant or revocation names, the
/// keys of the service that registers one.
fn access_parts(ev: &Event, changes: &mut Changes) {
    match ev.action {
        Action::GrantAccess | Action::RevokeAccess => {
            if let Some(id) = ev.meta_str("token_id") {
                changes.add(Part::Token(id.to_string()));
            }
        }
        Action::RegisterKey => changes.add(Part::Keys(ev.actor.id.clone())),
        _ => {}
    }
}

/// The records folding `ev` into `state` may change
/// ([`registry::State::apply`]): the version it names; for a registration
/// its model too; for a change of stage the model and the version in
/// production before it (which it may replace).
fn registry_parts(state: &registry::State, ev: &Event, changes: &mut Changes) {
    let Some(id) = ev.model_version() else {
        return;
    };
    changes.add(Part::Version(id.to_string()));
    let stage_change = matches!(
        ev.action,
        Action::Promote | Action::Archive | Action::Rollback | Action::Retire
    );
    if stage_change || ev.action == Action::Register {
        let model = model_of(id);
        changes.add(Part::Model(model.to_string()));
        if let Some(old) = state.models.get(model).and_then(|m| m.production.as_ref()) {
            changes.add(Part::Version(old.clone()));
        }
    }
}

/// Fold `ev` (at `index`) into the access state, noting what it changes.
pub fn apply_access(state: &mut AccessState, changes: &mut Changes, index: u64, ev: &Event) {
    if ev.fold() == Fold::Access {
        access_parts(ev, changes);
        state.apply(index, ev);
    }
}

/// Fold `ev` (at `index`) into the registry state, noting what it changes.
pub fn apply_registry(state: &mut registry::State, changes: &mut Changes, index: u64, ev: &Event) {
    if ev.fold() == Fold::Registry {
        registry_parts(state, ev, changes);
        state.apply(index, ev);
    }
}

/// The whole derived state at one tree size.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// The state covers entries `[0, indexed)`.
    pub indexed: u64,
    pub access: AccessState,
    pub registry: registry::State,
    /// The records that may differ from the stored snapshot.
    pub changes: Changes,
}

/// Two snapshots are equal when they say the same (whatever was stored).
impl PartialEq for Snapshot {
    fn eq(&self, other: &Self) -> bool {
        self.indexed == other.indexed
            && self.access == other.access
            && self.registry == other.registry
    }
}

/// The stored header of a snapshot.
#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    indexed: u64,
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

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(v).map_err(|e| StateError::Snapshot(e.to_string()))
}

/// What one snapshot writes: its header and the records that changed.
#[derive(Debug)]
pub struct Delta {
    header: Vec<u8>,
    records: Vec<StateRecord>,
    replace_all: bool,
}

impl Delta {
    /// The records written (put or deleted).
    pub fn records(&self) -> usize {
        self.records.len()
    }

    /// Whether every record is rewritten (the others dropped).
    pub fn is_whole(&self) -> bool {
        self.replace_all
    }

    /// Write it, atomically and durably.
    pub fn write(&self, store: &dyn Store) -> Result<(), StateError> {
        store.put_state(&self.header, &self.records, self.replace_all)?;
        Ok(())
    }
}

/// The snapshot of `access` and `registry` at tree size `indexed`, as a
/// write of the records `changes` names (all of them if it says all):
/// the cost is that of what changed, not of the state.
pub fn delta(
    indexed: u64,
    access: &AccessState,
    registry: &registry::State,
    changes: &Changes,
) -> Result<Delta, StateError> {
    let header = to_json(&Header {
        version: SNAPSHOT_VERSION,
        indexed,
    })?;
    let mut records: Vec<StateRecord> = Vec::new();
    if changes.all {
        for t in access.tokens() {
            records.push((Part::Token(t.token_id.clone()).key(), Some(to_json(&t)?)));
        }
        for s in access.services() {
            records.push((
                Part::Keys(s.to_string()).key(),
                Some(to_json(&access.keys_of(s))?),
            ));
        }
        for (id, v) in &registry.versions {
            records.push((Part::Version(id.clone()).key(), Some(to_json(v)?)));
        }
        for (name, m) in &registry.models {
            records.push((Part::Model(name.clone()).key(), Some(to_json(m)?)));
        }
    } else {
        for part in &changes.parts {
            let value = match part {
                Part::Token(id) => access.token(id).ok().map(to_json).transpose()?,
                Part::Keys(s) => match access.keys_of(s) {
                    [] => None,
                    keys => Some(to_json(&keys)?),
                },
                Part::Version(id) => registry.versions.get(id).map(to_json).transpose()?,
                Part::Model(name) => registry.models.get(name).map(to_json).transpose()?,
            };
            records.push((part.key(), value));
        }
    }
    Ok(Delta {
        header,
        records,
        replace_all: changes.all,
    })
}

fn from_json<T: for<'a> Deserialize<'a>>(key: &[u8], v: &[u8]) -> Result<T, StateError> {
    serde_json::from_slice(v).map_err(|e| {
        StateError::Snapshot(format!(
            "record {:?} is unreadable: {e}",
            String::from_utf8_lossy(key)
        ))
    })
}

impl Snapshot {
    /// Fold one event (at `index`) into whichever state folds it.
    pub fn apply(&mut self, index: u64, ev: &Event) {
        match ev.fold() {
            Fold::Access => apply_access(&mut self.access, &mut self.changes, index, ev),
            Fold::Registry => apply_registry(&mut self.registry, &mut self.changes, index, ev),
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

    /// The stored snapshot, if any (in this version's format), with no
    /// changes against the store.
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
        let header: Header = serde_json::from_slice(&bytes)
            .map_err(|e| StateError::Snapshot(format!("unreadable: {e}")))?;
        let mut snap = Snapshot {
            indexed: header.indexed,
            ..Snapshot::default()
        };
        for (key, value) in store.state_records()? {
            let part = Part::parse(&key).ok_or_else(|| {
                StateError::Snapshot(format!(
                    "unknown record {:?}",
                    String::from_utf8_lossy(&key)
                ))
            })?;
            match part {
                Part::Token(_) => snap
                    .access
                    .restore_token(from_json::<TokenRecord>(&key, &value)?),
                Part::Keys(s) => snap
                    .access
                    .restore_keys(&s, from_json::<Vec<RegisteredKey>>(&key, &value)?),
                Part::Version(id) => {
                    snap.registry.versions.insert(id, from_json(&key, &value)?);
                }
                Part::Model(name) => {
                    snap.registry.models.insert(name, from_json(&key, &value)?);
                }
            }
        }
        snap.access = std::mem::take(&mut snap.access).with_legacy_hashes(legacy);
        Ok(Some(snap))
    }

    /// Store this whole snapshot, replacing every stored record.
    pub fn save(&self, store: &dyn Store) -> Result<(), StateError> {
        delta(self.indexed, &self.access, &self.registry, &Changes::all())?.write(store)
    }

    /// Store what changed since the stored snapshot, then mark it stored.
    pub fn save_changes(&mut self, store: &dyn Store) -> Result<Delta, StateError> {
        let d = delta(self.indexed, &self.access, &self.registry, &self.changes)?;
        d.write(store)?;
        self.changes = Changes::default();
        Ok(d)
    }
}

/// The derived state at tree size `to`: the stored snapshot (if any) with
/// the entries after it folded in; its changes are what that fold touched
/// (everything if there was no snapshot).
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
        indexed: 0,
        access: AccessState::default().with_legacy_hashes(legacy_token_hashes(store)?),
        registry: registry::State::default(),
        changes: Changes::all(),
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
    use crate::store::{LINEAGE_LAYOUT, LINEAGE_LAYOUT_SINGLE};
    let layout = store.get_meta(MetaKey::LineageLayout)?;
    if layout.as_deref() == Some(LINEAGE_LAYOUT) {
        return Ok(0);
    }
    if layout.as_deref() == Some(LINEAGE_LAYOUT_SINGLE) {
        // Complete, in keys of one entry each: read as they are.
        store.put_meta(MetaKey::LineageLayout, LINEAGE_LAYOUT)?;
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

    /// Six predictions committed without lineage keys, as a store of an
    /// earlier layout looks once its old index is dropped.
    fn commit_unindexed(store: &dyn Store) {
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
    }

    #[test]
    fn an_index_in_an_earlier_layout_is_rebuilt_once() {
        let store = MemStore::new();
        commit_unindexed(&store);
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

    #[test]
    fn an_index_of_one_key_per_entry_is_taken_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::RocksStore::open(
            &dir.path().join("db"),
            &crate::store::RocksOptions::default(),
        )
        .unwrap();
        commit_unindexed(&store);
        let d = mention_key("deployment", "d");
        store
            .put_mentions(&[(0, d.clone(), Role::Related), (3, d.clone(), Role::Related)])
            .unwrap();
        store
            .put_meta(MetaKey::LineageLayout, crate::store::LINEAGE_LAYOUT_SINGLE)
            .unwrap();
        // Not rebuilt from the entries: what was there is what is read.
        assert_eq!(ensure_lineage(&store).unwrap(), 0);
        assert_eq!(
            store.get_meta(MetaKey::LineageLayout).unwrap().as_deref(),
            Some(LINEAGE_LAYOUT)
        );
        assert_eq!(
            store.mentions_as(&d, Role::Related, 0, 100).unwrap(),
            [0, 3]
        );
    }
}

#[cfg(test)]
mod snapshot_tests {
    use super::*;
    use crate::audit::event::prepare;
    use crate::store::MemStore;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn event(v: Value) -> Event {
        prepare(v.to_string().as_bytes()).unwrap().event
    }

    fn about(action: &str, actor: Value, version: &str, metadata: Value) -> Event {
        event(json!({
            "action": action, "actor": actor, "timestamp": "2025-05-05T14:03:00Z",
            "subject": {"type": "model_version", "id": version},
            "metadata": metadata,
        }))
    }

    fn access(action: &str, token: &str, metadata: Value) -> Event {
        let mut m = metadata;
        m["token_id"] = json!(token);
        event(json!({
            "action": action, "actor": {"type": "user", "id": "admin"},
            "timestamp": "2025-05-05T14:03:00Z",
            "subject": {"type": "user", "id": format!("u-{token}")},
            "metadata": m,
        }))
    }

    /// One of the registry's and access's events, about one of a few
    /// models, versions, tokens and services, in no particular order.
    fn op(kind: u8, a: usize, b: usize) -> Event {
        let v = format!("m{a}:v{b}");
        let user = json!({"type": "user", "id": format!("user{b}")});
        let ci = json!({"type": "service", "id": "ci"});
        let stage = |s: &str| json!({"to_stage": s});
        match kind {
            0 => about("register", ci, &v, json!({})),
            1 => about("approve", user, &v, json!({})),
            2 => about("reject", user, &v, json!({})),
            3 => about("attest", ci, &v, json!({"kind": "tests", "passed": b != 1})),
            4 => event(json!({
                "action": "deploy", "actor": ci, "timestamp": "2025-05-05T14:03:00Z",
                "subject": {"type": "deployment", "id": format!("d{a}")},
                "related": [{"type": "model_version", "id": v}],
                "metadata": {"environment": "prod"},
            })),
            5 => about("promote", user, &v, stage("Staging")),
            6 => about("promote", user, &v, stage("Production")),
            7 => about(
                "archive",
                json!({"type": "service", "id": crate::audit::vocab::SERVER_PRINCIPAL}),
                &v,
                stage("Archived"),
            ),
            8 => about("rollback", user, &v, json!({})),
            9 => about("retire", user, &v, json!({})),
            10 => about(
                "deny",
                json!({"type": "service", "id": crate::audit::vocab::SERVER_PRINCIPAL}),
                &v,
                json!({"reasons": ["no"]}),
            ),
            11 => access(
                "grant_access",
                &format!("t{a}"),
                json!({"roles": ["approver"], "token_sha256": crate::encoding::hex32(&[a as u8 + 1; 32])}),
            ),
            12 => access(
                "grant_access",
                &format!("t{a}"),
                json!({"roles": ["deployer"], "previous_roles": ["approver"]}),
            ),
            13 => access("revoke_access", &format!("t{a}"), json!({})),
            _ => {
                let key = base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    [b as u8 + 1; 32],
                );
                event(json!({
                    "action": "register_key",
                    "actor": {"type": "service", "id": format!("s{a}")},
                    "timestamp": "2025-05-05T14:03:00Z",
                    "subject": {"type": "service", "id": format!("s{a}")},
                    "metadata": {"ed25519_public_key": key},
                }))
            }
        }
    }

    /// A state folded from nothing, as the server starts without a snapshot.
    fn fresh() -> Snapshot {
        Snapshot {
            changes: Changes::all(),
            ..Snapshot::default()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Snapshots written incrementally, at any points of any sequence
        /// of events (several models, versions, tokens and services, in
        /// and out of the happy order), load as exactly the state folded
        /// in memory: no change is ever left unwritten.
        #[test]
        fn incremental_snapshots_load_as_the_fold(
            ops in prop::collection::vec((0u8..15, 0usize..3, 0usize..3, any::<bool>()), 1..120)
        ) {
            let store = MemStore::new();
            let mut live = fresh();
            let mut all = fresh();
            for (i, (kind, a, b, cut)) in ops.iter().enumerate() {
                let ev = op(*kind, *a, *b);
                live.apply(i as u64, &ev);
                all.apply(i as u64, &ev);
                live.indexed = i as u64 + 1;
                all.indexed = live.indexed;
                if *cut {
                    live.save_changes(&store).unwrap();
                    prop_assert!(live.changes.is_empty());
                    let loaded = Snapshot::load(&store).unwrap().unwrap();
                    prop_assert_eq!(&loaded, &live);
                }
            }
            live.save_changes(&store).unwrap();
            let loaded = Snapshot::load(&store).unwrap().unwrap();
            prop_assert_eq!(&loaded, &all);
        }
    }

    #[test]
    fn a_snapshot_writes_only_what_changed() {
        let store = MemStore::new();
        let mut snap = fresh();
        let mut i = 0u64;
        let mut apply = |snap: &mut Snapshot, ev: Event| {
            snap.apply(i, &ev);
            i += 1;
            snap.indexed = i;
        };
        for m in 0..50 {
            for v in 0..4 {
                apply(
                    &mut snap,
                    about(
                        "register",
                        json!({"type": "service", "id": "ci"}),
                        &format!("m{m}:v{v}"),
                        json!({}),
                    ),
                );
            }
        }
        apply(
            &mut snap,
            access("grant_access", "t1", json!({"roles": ["approver"]})),
        );
        // The first snapshot after a start without one writes everything.
        let d = snap.save_changes(&store).unwrap();
        assert!(d.is_whole());
        assert_eq!(d.records(), 200 + 50 + 1);
        assert_eq!(store.state_records().unwrap().len(), 251);
        // Nothing changed: the header alone.
        assert_eq!(snap.save_changes(&store).unwrap().records(), 0);
        // An approval changes its version only.
        apply(
            &mut snap,
            about(
                "approve",
                json!({"type": "user", "id": "alice"}),
                "m7:v2",
                json!({}),
            ),
        );
        let d = snap.save_changes(&store).unwrap();
        assert_eq!((d.records(), d.is_whole()), (1, false));
        // A promotion to production: the version and its model; the next
        // one also the version it replaces.
        apply(
            &mut snap,
            about(
                "promote",
                json!({"type": "user", "id": "alice"}),
                "m7:v1",
                json!({"to_stage": "Production"}),
            ),
        );
        assert_eq!(snap.save_changes(&store).unwrap().records(), 2);
        apply(
            &mut snap,
            about(
                "promote",
                json!({"type": "user", "id": "alice"}),
                "m7:v2",
                json!({"to_stage": "Production"}),
            ),
        );
        assert_eq!(snap.save_changes(&store).unwrap().records(), 3);
        let loaded = Snapshot::load(&store).unwrap().unwrap();
        assert_eq!(loaded, snap);
        assert_eq!(loaded.registry.versions["m7:v1"].stage, "archived");
        assert_eq!(
            loaded.registry.models["m7"].production.as_deref(),
            Some("m7:v2")
        );
        // A revocation: its token only.
        apply(&mut snap, access("revoke_access", "t1", json!({})));
        assert_eq!(snap.save_changes(&store).unwrap().records(), 1);
        assert_eq!(Snapshot::load(&store).unwrap().unwrap(), snap);
        assert_eq!(store.state_records().unwrap().len(), 251);
    }

    #[test]
    fn a_snapshot_of_the_earlier_format_is_folded_again() {
        let store = MemStore::new();
        store
            .put_meta(
                MetaKey::DerivedState,
                br#"{"version":2,"indexed":5,"access":{},"registry":{}}"#,
            )
            .unwrap();
        assert!(Snapshot::load(&store).unwrap().is_none());
        let snap = open(&store, 0).unwrap();
        assert_eq!(snap.changes, Changes::all());
    }

    #[test]
    fn record_keys_round_trip() {
        for p in [
            Part::Token("t-1".into()),
            Part::Keys("ci".into()),
            Part::Version("fraud:v3".into()),
            Part::Model("fraud".into()),
        ] {
            assert_eq!(Part::parse(&p.key()), Some(p));
        }
        assert_eq!(Part::parse(b"other\0x"), None);
        assert_eq!(Part::parse(b"token"), None);
    }
}
