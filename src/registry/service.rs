//! The registry next to the log: checks registry events against the
//! promotion gates before they are appended, logs refusals as `deny`
//! events, appends the server's follow-ups (archiving the replaced
//! production version), and keeps the derived state.
//!
//! Registry events are decided and appended one at a time under one lock,
//! so a check always sees every registry event before it in the log. The
//! state is a snapshot in the store's metadata (`registry_state`) with the
//! log size it covers; at start the server folds in whatever entries came
//! after it. The log stays the truth: `modeltrail reindex` folds the whole
//! log again and must come out identical.

use super::{is_registry_action, model_version, Policy, Refusal, State, Version, SERVER_PRINCIPAL};
use crate::access::Caller;
use crate::audit::event::{self, Prepared};
use crate::error::Error;
use crate::log::{Log, Receipt};
use crate::store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

pub const META_KEY: &str = "registry_state";
/// Entries read at a time while folding the log.
const PAGE: u64 = 1000;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Snapshot {
    /// The state covers entries `[0, indexed)`.
    pub indexed: u64,
    pub state: State,
}

/// The outcome of a registry event.
pub enum Appended {
    Accepted(Receipt),
    /// Refused by the gates; the refusal was logged.
    Denied {
        reasons: Vec<String>,
        receipt: Receipt,
        event_id: String,
    },
}

pub struct Registry {
    policy: Policy,
    inner: tokio::sync::Mutex<Snapshot>,
}

/// Fold entries `[from, to)` of a store into a snapshot.
pub fn fold(store: &dyn Store, snap: &mut Snapshot, to: u64) -> Result<(), String> {
    while snap.indexed < to {
        let end = (snap.indexed + PAGE).min(to);
        let entries = store
            .entries(snap.indexed, end)
            .map_err(|e| e.to_string())?;
        for (i, bytes) in entries.iter().enumerate() {
            let v: Value = serde_json::from_slice(bytes)
                .map_err(|e| format!("entry {}: {e}", snap.indexed + i as u64))?;
            if v.get("action")
                .and_then(Value::as_str)
                .is_some_and(is_registry_action)
            {
                snap.state.apply(snap.indexed + i as u64, &v);
            }
        }
        snap.indexed = end;
    }
    Ok(())
}

/// Rebuild the registry state from the whole log in a store.
pub fn rebuild(store: &dyn Store) -> Result<Snapshot, String> {
    let size = store.tree_size().map_err(|e| e.to_string())?;
    let mut snap = Snapshot::default();
    fold(store, &mut snap, size)?;
    Ok(snap)
}

/// The stored snapshot, if any.
pub fn stored(store: &dyn Store) -> Result<Option<Snapshot>, String> {
    match store.get_meta(META_KEY).map_err(|e| e.to_string())? {
        Some(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("stored registry state is unreadable: {e}")),
        None => Ok(None),
    }
}

pub fn save(store: &dyn Store, snap: &Snapshot) -> Result<(), String> {
    let bytes = serde_json::to_vec(snap).map_err(|e| e.to_string())?;
    store.put_meta(META_KEY, &bytes).map_err(|e| e.to_string())
}

impl Registry {
    /// Load the snapshot and fold in the entries after it.
    pub fn open(log: &Log, policy: Policy) -> Result<Self, String> {
        let store = log.store().as_ref();
        let mut snap = stored(store)?.unwrap_or_default();
        let size = log.head().size;
        if snap.indexed > size {
            return Err(format!(
                "the registry state covers {} entries but the log has {size}",
                snap.indexed
            ));
        }
        fold(store, &mut snap, size)?;
        save(store, &snap)?;
        Ok(Registry {
            policy,
            inner: tokio::sync::Mutex::new(snap),
        })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// A model version's state, and the log size the state covers.
    pub async fn version(&self, id: &str) -> (Option<Version>, u64) {
        let g = self.inner.lock().await;
        (g.state.version(id).cloned(), g.indexed)
    }

    /// Decide and append a registry event.
    pub async fn append(
        &self,
        log: &Arc<Log>,
        caller: &Caller,
        prepared: Prepared,
    ) -> Result<Appended, Error> {
        let value: Value = serde_json::from_slice(&prepared.canonical)
            .map_err(|e| Error::Internal(e.to_string()))?;
        let mut g = self.inner.lock().await;
        // Catch up with anything appended since (there is nothing, unless a
        // registry event got in without this lock, which is a bug we would
        // rather survive).
        let head = log.head().size;
        if g.indexed < head {
            let store = log.store().clone();
            let mut snap = std::mem::take(&mut *g);
            let snap = tokio::task::spawn_blocking(move || {
                let r = fold(store.as_ref(), &mut snap, head);
                (snap, r)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))?;
            *g = snap.0;
            snap.1.map_err(Error::Internal)?;
        }
        // An identical resubmission gets its original receipt, whatever the
        // state says now.
        if prepared.client_id && log.find_event(prepared.event_id.as_bytes())?.is_some() {
            return Ok(Appended::Accepted(log.append(prepared).await?));
        }
        match g.state.check(&value, &self.policy) {
            Err(Refusal::Malformed(m)) => Err(Error::bad("invalid_event", m)),
            Err(Refusal::Denied(reasons)) => {
                let mut deny = serde_json::json!({
                    "action": "deny",
                    "actor": {"type": "service", "id": SERVER_PRINCIPAL},
                    "timestamp": event::now_rfc3339(),
                    "subject": value.get("subject").cloned().unwrap_or(Value::Null),
                    "metadata": {
                        "attempted_action": prepared.action,
                        "attempted_event_id": prepared.event_id.to_string(),
                        "caller": {"type": caller.kind, "id": caller.id},
                        "reasons": reasons,
                    },
                });
                if let Some(r) = value.get("related") {
                    deny["related"] = r.clone();
                }
                let (receipt, event_id) = self.record(log, &mut g, &deny).await?;
                Ok(Appended::Denied {
                    reasons,
                    receipt,
                    event_id,
                })
            }
            Ok(()) => {
                let receipt = log.append(prepared).await?;
                if receipt.created {
                    let follow = g
                        .state
                        .follow_ups(&value, &event::now_rfc3339(), receipt.index);
                    g.state.apply(receipt.index, &value);
                    g.indexed = g.indexed.max(receipt.index + 1);
                    for f in follow {
                        self.record(log, &mut g, &f).await?;
                    }
                    self.persist(log, &g).await?;
                }
                Ok(Appended::Accepted(receipt))
            }
        }
    }

    /// Append an event the server makes and fold it in.
    async fn record(
        &self,
        log: &Arc<Log>,
        g: &mut Snapshot,
        ev: &Value,
    ) -> Result<(Receipt, String), Error> {
        let p = event::prepare(ev.to_string().as_bytes())
            .map_err(|e| Error::Internal(format!("server event: {e}")))?;
        let id = p.event_id.to_string();
        let r = log.append(p).await?;
        let stored: Value =
            serde_json::from_slice(&r.canonical).map_err(|e| Error::Internal(e.to_string()))?;
        g.state.apply(r.index, &stored);
        g.indexed = g.indexed.max(r.index + 1);
        self.persist(log, g).await?;
        Ok((r, id))
    }

    async fn persist(&self, log: &Arc<Log>, g: &Snapshot) -> Result<(), Error> {
        let store = log.store().clone();
        let snap = g.clone();
        tokio::task::spawn_blocking(move || save(store.as_ref(), &snap))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(Error::Internal)
    }
}

/// Is this event one the registry decides on? Registry actions are, except
/// deployments and attestations that name no model version.
pub fn decides(p: &Prepared) -> bool {
    if !is_registry_action(&p.action) {
        return false;
    }
    match p.action.as_str() {
        "deploy" | "attest" => version_of(&p.canonical).is_some(),
        _ => true,
    }
}

/// The model version an event names, if any (for callers that only have
/// the stored bytes).
pub fn version_of(bytes: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| model_version(&v))
}

/// Check the lineage index against the entries, entry by entry, and write
/// back any key that is missing. Returns how many were missing.
pub fn repair_lineage(store: &dyn Store) -> Result<u64, String> {
    use crate::store::{mention_key, Role};
    let size = store.tree_size().map_err(|e| e.to_string())?;
    let mut missing = 0u64;
    let mut from = 0u64;
    while from < size {
        let end = (from + PAGE).min(size);
        let entries = store.entries(from, end).map_err(|e| e.to_string())?;
        let mut fix = Vec::new();
        for (i, bytes) in entries.iter().enumerate() {
            let index = from + i as u64;
            let p = event::prepare(bytes).map_err(|e| format!("entry {index}: {e}"))?;
            for (t, id, subject) in &p.mentions {
                let prefix = mention_key(t, id);
                let role = if *subject {
                    Role::Subject
                } else {
                    Role::Related
                };
                let found = store
                    .mentions(&prefix, index, 1)
                    .map_err(|e| e.to_string())?;
                if found.first() != Some(&(index, role)) {
                    fix.push((index, prefix, role));
                }
            }
        }
        missing += fix.len() as u64;
        if !fix.is_empty() {
            store.put_mentions(&fix).map_err(|e| e.to_string())?;
        }
        from = end;
    }
    Ok(missing)
}
