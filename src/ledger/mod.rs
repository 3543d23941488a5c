//! The one path into the log for everything above the core: a submitted
//! event, an event the server records itself (a refusal, an archive, an
//! access change). It authenticates the caller, applies the access rules
//! and the registry's gates, appends through [`Log`], and folds what it
//! appended into the derived state ([`crate::state`]).
//!
//! # Ordering
//!
//! The derived state is held behind two locks, always taken in this order:
//!
//! 1. **access** (read/write): every append holds it for reading from the
//!    moment its token is checked until its entry is durable; an access
//!    change (grant, role change, revocation, key registration) holds it
//!    for writing. So an access change waits for the appends already
//!    authorised, and every append after it is checked against it: an
//!    event can never land in the log after the `revoke_access` of the
//!    token that appended it.
//! 2. **registry** (exclusive): registry events are decided and appended
//!    one at a time, so a decision sees every registry event before it.
//!
//! Events that no state folds (`predict`, a team's own actions) take only
//! the first lock, for reading, and never wait for each other.
//!
//! # Faults
//!
//! An append that fails may or may not have reached the log (the sequencer
//! reloads from the store and the store is the truth). The state it would
//! have changed is then marked dirty and brought up to date from the
//! entries before its next use, with the same fold that runs at start.

use crate::access::{AccessState, Caller, NewToken, RegisteredKey, TokenRecord};
use crate::artifacts::{Blobs, Rehash};
use crate::audit::event::now_rfc3339;
use crate::audit::vocab::{Action, Principal, Ref};
use crate::audit::{Event, Fold, Prepared, Record};
use crate::error::Error;
use crate::log::{Log, Receipt};
use crate::privacy::{FieldPath, Opening, Privacy, PrivacyError, Tombstone};
use crate::registry::{self, ArtifactCheck, Policy, Refusal};
use crate::state::{self, Changes, StateError};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// A derived state with the tree size it is known to cover.
struct Tracked<S> {
    state: S,
    /// The state is the fold of the entries `[0, indexed)`, and no entry
    /// from `indexed` to the head changes it (unless `dirty`).
    indexed: u64,
    /// An append that would have changed it failed: some entry at or after
    /// `indexed` may change it.
    dirty: bool,
    /// The records of the stored snapshot this state may differ from
    /// (behind its own lock, so that a snapshot can take them under the
    /// shared access lock without stopping appends).
    changes: std::sync::Mutex<Changes>,
}

impl<S> Tracked<S> {
    /// Take the changes noted so far.
    fn take_changes(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Note changes again (a snapshot that did not store them).
    fn note(&self, changes: Changes) {
        self.changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .merge(changes);
    }
}

/// The changes of a state held exclusively.
fn changes_mut(m: &mut std::sync::Mutex<Changes>) -> &mut Changes {
    m.get_mut().unwrap_or_else(PoisonError::into_inner)
}

/// The outcome of a submission.
pub enum Submitted {
    Accepted(Receipt),
    /// Refused by the registry's gates; the refusal was logged.
    Denied {
        reasons: Vec<String>,
        receipt: Receipt,
    },
}

/// A token just made: the secret (shown once), its record and the receipt
/// of its `grant_access` event.
pub struct Granted {
    pub secret: String,
    pub record: TokenRecord,
    pub receipt: Receipt,
}

/// When snapshots of the derived state are written.
#[derive(Clone, Copy, Debug)]
pub struct SnapshotPolicy {
    /// Least time between two snapshots.
    pub interval: Duration,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy {
            interval: Duration::from_secs(10),
        }
    }
}

pub struct Ledger {
    log: Arc<Log>,
    admin_hash: [u8; 32],
    policy: Policy,
    access: RwLock<Tracked<AccessState>>,
    registry: Mutex<Tracked<registry::State>>,
    /// The tree size of the last snapshot written, and when.
    saved: std::sync::Mutex<(u64, Instant)>,
    /// Held while a snapshot is written, so that two never cross.
    saving: Mutex<()>,
    /// The artifact store promotions are checked against, if any.
    blobs: Option<Arc<Blobs>>,
    /// Refused and committed fields, and the private store.
    privacy: Arc<Privacy>,
}

/// What `reconcile` found: every digest registry events name, re-hashed.
#[derive(Debug)]
pub struct Reconciled {
    /// The tree size whose events were read.
    pub tree_size: u64,
    pub checked: u64,
    /// `(digest, events naming it, what the store said)` for each problem.
    pub problems: Vec<(String, Vec<u64>, Rehash)>,
    /// The logged `reconcile` event.
    pub receipt: Receipt,
}

fn tracked<S>(state: S, indexed: u64, changes: Changes) -> Tracked<S> {
    Tracked {
        state,
        indexed,
        dirty: false,
        changes: std::sync::Mutex::new(changes),
    }
}

impl Ledger {
    /// Load the derived state (snapshot plus the entries after it) for
    /// `log`. Blocking: it reads the entries since the last snapshot.
    pub fn open(log: Arc<Log>, admin_token: &str, policy: Policy) -> Result<Ledger, StateError> {
        let size = log.head().size;
        let snap = state::open(log.store().as_ref(), size)?;
        let (access_changes, registry_changes) = snap.changes.split();
        Ok(Ledger {
            admin_hash: crate::access::admin_hash(admin_token),
            policy,
            access: RwLock::new(tracked(snap.access, size, access_changes)),
            registry: Mutex::new(tracked(snap.registry, size, registry_changes)),
            saved: std::sync::Mutex::new((u64::MAX, Instant::now())),
            saving: Mutex::new(()),
            blobs: None,
            privacy: Arc::new(Privacy::none()),
            log,
        })
    }

    /// Apply these privacy rules (principals' ids, reveals, erasure).
    pub fn with_privacy(mut self, privacy: Arc<Privacy>) -> Self {
        self.privacy = privacy;
        self
    }

    pub fn privacy(&self) -> &Arc<Privacy> {
        &self.privacy
    }

    /// Check promotions against this artifact store.
    pub fn with_blobs(mut self, blobs: Arc<Blobs>) -> Self {
        self.blobs = Some(blobs);
        self
    }

    /// What the store says about a blob (re-hashed off the async workers).
    async fn check_blob(&self, digest: &str) -> Result<ArtifactCheck, Error> {
        let Some(blobs) = self.blobs.clone() else {
            return Ok(ArtifactCheck::Missing);
        };
        let r = blobs
            .rehash(digest)
            .await
            .map_err(|e| Error::Internal(format!("re-hashing {digest}: {e}")))?;
        Ok(match r {
            Rehash::Ok { .. } => ArtifactCheck::Verified,
            Rehash::Missing => ArtifactCheck::Missing,
            Rehash::Mismatch { actual } => ArtifactCheck::Mismatch { actual },
        })
    }

    /// Log that `caller` was served an artifact (before it is served).
    pub async fn record_access(
        &self,
        caller: &Caller,
        digest: &str,
        range: Option<(u64, u64)>,
    ) -> Result<Receipt, Error> {
        let mut r = Record::new(
            Action::Access,
            Ref::new("artifact", format!("sha256:{digest}")),
        )
        .meta(
            "viewer",
            serde_json::json!({"type": caller.principal.kind, "id": caller.principal.id}),
        );
        if let Some((a, b)) = range {
            r = r.meta("range", format!("bytes={a}-{b}"));
        }
        self.log.append(server_event(&r)?).await
    }

    /// Re-hash every blob that registry events name (registrations and
    /// deployments), then log a `reconcile` event with the counts and the
    /// tree size covered.
    pub async fn reconcile(&self) -> Result<Reconciled, Error> {
        let (named, tree_size) = {
            let mut reg = self.registry.lock().await;
            self.catch_up(&mut reg, Fold::Registry).await?;
            let mut named: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
            for v in reg.state.versions.values() {
                if let (Some(d), Some(r)) = (&v.artifact_sha256, &v.registered) {
                    named.entry(d.clone()).or_default().push(r.index);
                }
                for dep in &v.deployments {
                    if let Some(d) = &dep.artifact_sha256 {
                        named.entry(d.clone()).or_default().push(dep.index);
                    }
                }
            }
            (named, reg.indexed.max(self.log.head().size))
        };
        let mut problems = Vec::new();
        for (digest, mut events) in named.iter().map(|(d, e)| (d.clone(), e.clone())) {
            events.sort_unstable();
            let r = match self.check_blob(&digest).await? {
                ArtifactCheck::Verified => continue,
                ArtifactCheck::Missing => Rehash::Missing,
                ArtifactCheck::Mismatch { actual } => Rehash::Mismatch { actual },
            };
            problems.push((digest, events, r));
        }
        let missing = problems.iter().filter(|p| p.2 == Rehash::Missing).count();
        let store = self.blobs.as_ref().map_or("none".into(), |b| b.describe());
        let rec = Record::new(Action::Reconcile, Ref::new("artifact_store", store))
            .meta("checked", named.len() as u64)
            .meta("missing", missing as u64)
            .meta("mismatched", (problems.len() - missing) as u64)
            .meta("tree_size", tree_size);
        let receipt = self.log.append(server_event(&rec)?).await?;
        Ok(Reconciled {
            tree_size,
            checked: named.len() as u64,
            problems,
            receipt,
        })
    }

    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Who a token stands for right now. Appends check again when they
    /// append; this is for failing fast and for reads.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, Error> {
        self.access
            .read()
            .await
            .state
            .authenticate(token, &self.admin_hash)
    }

    /// Append a client's event: its token must allow its action, its actor
    /// must be the caller, a signature must verify, and a registry event
    /// must pass the gates (a refusal is logged and returned as
    /// [`Submitted::Denied`]).
    pub async fn submit(&self, token: &str, p: Prepared) -> Result<Submitted, Error> {
        let access = self.access.read().await;
        let caller = access.state.authenticate(token, &self.admin_hash)?;
        AccessState::check_event(&caller, &p.event)?;
        access.state.check_signature(&p)?;
        if p.event.fold() != Fold::Registry {
            return Ok(Submitted::Accepted(self.log.append(p).await?));
        }
        let mut reg = self.registry.lock().await;
        self.catch_up(&mut reg, Fold::Registry).await?;
        // An identical resubmission gets its original receipt, whatever
        // the state says now.
        if p.client_id && self.log.find_event(p.event_id().as_bytes())?.is_some() {
            return Ok(Submitted::Accepted(self.log.append(p).await?));
        }
        // Artifacts checked on use: re-hash the version's blob without
        // holding the registry (a blob can be large). Its digest is fixed
        // at registration, so what the store said still holds.
        let artifact = match reg.state.artifact_to_check(&p.event, &self.policy) {
            Some(digest) => {
                drop(reg);
                let a = self.check_blob(&digest).await?;
                reg = self.registry.lock().await;
                self.catch_up(&mut reg, Fold::Registry).await?;
                Some(a)
            }
            None => None,
        };
        match reg
            .state
            .check_with(&p.event, &self.policy, artifact.as_ref())
        {
            Err(Refusal::Malformed(m)) => Err(Error::bad("invalid_event", m)),
            Err(Refusal::Denied(reasons)) => {
                let deny = Record::new(Action::Deny, p.event.subject.clone())
                    .related_all(p.event.related.iter().cloned())
                    .meta("attempted_action", p.event.action.as_str())
                    .meta("attempted_event_id", p.event_id().to_string())
                    .meta(
                        "caller",
                        serde_json::json!({"type": caller.principal.kind, "id": caller.principal.id}),
                    )
                    .meta("reasons", reasons.clone());
                let receipt = self.record_registry(&mut reg, &deny).await?;
                Ok(Submitted::Denied { reasons, receipt })
            }
            Ok(()) => {
                let ev = p.event.clone();
                let receipt = self.append_registry(&mut reg, p).await?;
                if receipt.created {
                    let follow = reg.state.follow_ups(&ev, receipt.index);
                    apply_registry(&mut reg, receipt.index, &ev);
                    for f in follow {
                        self.record_registry(&mut reg, &f).await?;
                    }
                }
                Ok(Submitted::Accepted(receipt))
            }
        }
    }

    /// Append through the log, marking the registry dirty on failure.
    async fn append_registry(
        &self,
        reg: &mut Tracked<registry::State>,
        p: Prepared,
    ) -> Result<Receipt, Error> {
        self.log.append(p).await.inspect_err(|_| reg.dirty = true)
    }

    /// Record a server event for the registry and fold it in.
    async fn record_registry(
        &self,
        reg: &mut Tracked<registry::State>,
        r: &Record,
    ) -> Result<Receipt, Error> {
        let p = server_event(r)?;
        let ev = p.event.clone();
        let receipt = self.append_registry(reg, p).await?;
        apply_registry(reg, receipt.index, &ev);
        Ok(receipt)
    }

    /// Record an access change (holding the access lock for writing) and
    /// fold it in. `plan` decides from the current state.
    async fn change_access(
        &self,
        token: &str,
        plan: impl FnOnce(&AccessState, &Caller) -> Result<Record, Error>,
    ) -> Result<(Caller, Receipt), Error> {
        let mut access = self.access.write().await;
        let caller = access.state.authenticate(token, &self.admin_hash)?;
        if access.dirty {
            self.catch_up_access(&mut access).await?;
        }
        let record = plan(&access.state, &caller)?;
        let p = record
            .prepare(&caller.principal, &now_rfc3339())
            .map_err(|e| Error::bad("invalid_principal", format!("access event: {e}")))?;
        let ev = p.event.clone();
        let receipt = match self.log.append(p).await {
            Ok(r) => r,
            Err(e) => {
                access.dirty = true;
                return Err(e);
            }
        };
        let access = &mut *access;
        state::apply_access(
            &mut access.state,
            changes_mut(&mut access.changes),
            receipt.index,
            &ev,
        );
        if !access.dirty {
            access.indexed = access.indexed.max(receipt.index + 1);
        }
        Ok((caller, receipt))
    }

    /// Make a token (admin only); the `grant_access` event is appended
    /// first, and the token works once it is durable.
    pub async fn grant(&self, token: &str, req: NewToken) -> Result<Granted, Error> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| Error::Internal(e.to_string()))?;
        let token_id = uuid::Uuid::now_v7().to_string();
        // A person's id enters the log as its commitment when user ids are
        // committed to; the token then stands for that commitment.
        let mut req = req;
        if req.principal.kind == crate::audit::PrincipalKind::User
            && self.privacy.actor_kind().is_some()
        {
            self.authenticate(token)
                .await?
                .require(crate::audit::Role::Admin)?;
            event_check_id(&req.principal.id)?;
            req.principal.id = self.user_id(&req.principal.id).await?;
        }
        let mut secret = String::new();
        let (_, receipt) = self
            .change_access(token, |st, caller| {
                let (r, s) = st.plan_grant(caller, &req, raw, &token_id)?;
                secret = s;
                Ok(r)
            })
            .await?;
        let record = self.access.read().await.state.token(&token_id)?.clone();
        Ok(Granted {
            secret,
            record,
            receipt,
        })
    }

    /// Replace a live token's roles (admin only), logged as `grant_access`
    /// with the previous roles.
    pub async fn set_roles(
        &self,
        token: &str,
        token_id: &str,
        roles: &[String],
    ) -> Result<(TokenRecord, Receipt), Error> {
        let (_, receipt) = self
            .change_access(token, |st, caller| {
                st.plan_set_roles(caller, token_id, roles)
            })
            .await?;
        let record = self.access.read().await.state.token(token_id)?.clone();
        Ok((record, receipt))
    }

    /// Revoke a token (admin only), logged as `revoke_access`.
    pub async fn revoke(
        &self,
        token: &str,
        token_id: &str,
    ) -> Result<(TokenRecord, Receipt), Error> {
        let (_, receipt) = self
            .change_access(token, |st, caller| st.plan_revoke(caller, token_id))
            .await?;
        let record = self.access.read().await.state.token(token_id)?.clone();
        Ok((record, receipt))
    }

    /// A service registers a public key for its signed attestations,
    /// logged as `register_key`.
    pub async fn register_key(
        &self,
        token: &str,
        public_key: &str,
    ) -> Result<(Principal, RegisteredKey, Receipt), Error> {
        let (caller, receipt) = self
            .change_access(token, |st, caller| st.plan_register_key(caller, public_key))
            .await?;
        let key = self
            .access
            .read()
            .await
            .state
            .keys_of(&caller.principal.id)
            .iter()
            .find(|k| k.index == receipt.index)
            .cloned()
            .ok_or_else(|| Error::Internal("registered key not in the state".into()))?;
        Ok((caller.principal, key, receipt))
    }

    /// Every token record (admins and auditors).
    pub async fn tokens(&self, token: &str) -> Result<Vec<TokenRecord>, Error> {
        let access = self.access.read().await;
        let caller = access.state.authenticate(token, &self.admin_hash)?;
        AccessState::check_list(&caller)?;
        Ok(access.state.tokens())
    }

    /// The keys a service has registered.
    pub async fn keys_of(&self, service: &str) -> Vec<RegisteredKey> {
        self.access.read().await.state.keys_of(service).to_vec()
    }

    /// A model version's state, and the tree size the state covers.
    pub async fn version(&self, id: &str) -> Result<(Option<registry::Version>, u64), Error> {
        let mut reg = self.registry.lock().await;
        self.catch_up(&mut reg, Fold::Registry).await?;
        let size = self.log.head().size.max(reg.indexed);
        Ok((reg.state.version(id).cloned(), size))
    }

    /// Registered models by name from offset `start`, at most `limit`, the
    /// offset of the next page, and the tree size the state covers.
    #[allow(clippy::type_complexity)]
    pub async fn models(
        &self,
        start: u64,
        limit: u64,
    ) -> Result<(Vec<(String, registry::Model)>, Option<u64>, u64), Error> {
        let mut reg = self.registry.lock().await;
        self.catch_up(&mut reg, Fold::Registry).await?;
        let size = self.log.head().size.max(reg.indexed);
        let total = reg.state.models.len() as u64;
        let list = reg
            .state
            .models
            .iter()
            .skip(start.min(total) as usize)
            .take(limit as usize)
            .map(|(name, m)| (name.clone(), m.clone()))
            .collect();
        let next = start.saturating_add(limit);
        Ok((list, (next < total).then_some(next), size))
    }

    /// One model, its versions in the order registered, and the tree size
    /// the state covers.
    #[allow(clippy::type_complexity)]
    pub async fn model(
        &self,
        name: &str,
    ) -> Result<Option<(registry::Model, Vec<registry::Version>, u64)>, Error> {
        let mut reg = self.registry.lock().await;
        self.catch_up(&mut reg, Fold::Registry).await?;
        let size = self.log.head().size.max(reg.indexed);
        let Some(m) = reg.state.models.get(name) else {
            return Ok(None);
        };
        let versions = m
            .versions
            .iter()
            .filter_map(|id| reg.state.version(id).cloned())
            .collect();
        Ok(Some((m.clone(), versions, size)))
    }

    /// Bring a dirty registry state up to date from the entries.
    async fn catch_up(&self, reg: &mut Tracked<registry::State>, _: Fold) -> Result<(), Error> {
        if !reg.dirty {
            return Ok(());
        }
        let (from, mut state) = (reg.indexed, reg.state.clone());
        let mut changes = reg.take_changes();
        let log = self.log.clone();
        let (state, to, changes) = tokio::task::spawn_blocking(move || {
            let to = log.head().size;
            state::for_each_folded(log.store().as_ref(), from, to, |i, ev| {
                state::apply_registry(&mut state, &mut changes, i, ev)
            })
            .map(|()| (state, to, changes))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(e.to_string()))?;
        *reg = tracked(state, to, changes);
        Ok(())
    }

    /// Bring a dirty access state up to date from the entries.
    async fn catch_up_access(&self, access: &mut Tracked<AccessState>) -> Result<(), Error> {
        let (from, mut state) = (access.indexed, access.state.clone());
        let mut changes = access.take_changes();
        let log = self.log.clone();
        let (state, to, changes) = tokio::task::spawn_blocking(move || {
            let to = log.head().size;
            state::for_each_folded(log.store().as_ref(), from, to, |i, ev| {
                state::apply_access(&mut state, &mut changes, i, ev)
            })
            .map(|()| (state, to, changes))
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::Internal(e.to_string()))?;
        *access = tracked(state, to, changes);
        Ok(())
    }

    /// Store a snapshot of the derived state if the log grew since the
    /// last one and `policy.interval` has passed (always, with `force`):
    /// only the records that changed since the last one, with the tree
    /// size it covers. Returns that size.
    pub async fn snapshot(&self, policy: SnapshotPolicy, force: bool) -> Result<u64, Error> {
        let _saving = self.saving.lock().await;
        let head = self.log.head().size;
        {
            let saved = self
                .saved
                .lock()
                .map_err(|_| Error::Internal("snapshot lock poisoned".into()))?;
            if saved.0 == head || (!force && saved.1.elapsed() < policy.interval) {
                return Ok(saved.0);
            }
        }
        let (delta, size, taken) = {
            let access = self.access.read().await;
            if access.dirty {
                // Caught up by the next access change; no snapshot until then.
                return Ok(0);
            }
            let mut reg = self.registry.lock().await;
            self.catch_up(&mut reg, Fold::Registry).await?;
            // Under both locks no folded event is in flight, so the state
            // is the fold of everything published. Only the changed
            // records are serialised here.
            let size = self.log.head().size;
            let mut taken = access.take_changes();
            taken.merge(reg.take_changes());
            match state::delta(size, &access.state, &reg.state, &taken) {
                Ok(d) => (d, size, taken),
                Err(e) => {
                    let (a, r) = taken.split();
                    access.note(a);
                    reg.note(r);
                    return Err(Error::Internal(e.to_string()));
                }
            }
        };
        let store = self.log.store().clone();
        let written = tokio::task::spawn_blocking(move || delta.write(store.as_ref()))
            .await
            .map_err(|e| Error::Internal(e.to_string()))
            .and_then(|r| r.map_err(|e| Error::Internal(e.to_string())));
        if let Err(e) = written {
            // Not stored: the next snapshot writes these records again.
            let (a, r) = taken.split();
            self.access.read().await.note(a);
            self.registry.lock().await.note(r);
            return Err(e);
        }
        if let Ok(mut s) = self.saved.lock() {
            *s = (size, Instant::now());
        }
        Ok(size)
    }
}

fn event_check_id(id: &str) -> Result<(), Error> {
    crate::audit::event::check_id_text("principal.id", id)
        .map_err(|e| Error::bad("bad_principal", e.to_string()))
}

/// The service error of a privacy failure.
pub fn privacy_error(e: PrivacyError) -> Error {
    match e {
        PrivacyError::Refused(_) => Error::bad("pii_field", e.to_string()),
        PrivacyError::Unfit { .. } => Error::bad("invalid_event", e.to_string()),
        PrivacyError::UnknownSubject(_) | PrivacyError::UnknownCommitment(_) => {
            Error::NotFound(e.to_string())
        }
        PrivacyError::Erased { .. } => Error::Erased(e.to_string()),
        PrivacyError::Io(m) => Error::Internal(m),
    }
}

/// A revealed value with the receipt of the entry that commits to it.
pub struct Revealed {
    pub field: String,
    pub opening: Opening,
    pub receipt: Receipt,
    /// The index of the logged `access` event.
    pub access_index: u64,
}

impl Ledger {
    async fn private<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Privacy) -> Result<T, PrivacyError> + Send + 'static,
    ) -> Result<T, Error> {
        let p = self.privacy.clone();
        tokio::task::spawn_blocking(move || f(&p))
            .await
            .map_err(|e| Error::Internal(format!("private store task: {e}")))?
            .map_err(privacy_error)
    }

    /// The id a user has in the log (see [`Privacy::user_id`]).
    pub async fn user_id(&self, id: &str) -> Result<String, Error> {
        let id = id.to_string();
        self.private(move |p| p.user_id(&id)).await
    }

    /// The id a user has in the log if it has one already (for searches:
    /// never makes a commitment).
    pub async fn known_user_id(&self, id: &str) -> Result<String, Error> {
        let id = id.to_string();
        self.private(move |p| match (p.actor_kind(), &p.store) {
            (Some(kind), Some(store)) if id != crate::audit::vocab::ADMIN_PRINCIPAL => {
                Ok(store.lookup(kind, &id)?.unwrap_or(id))
            }
            _ => Ok(id),
        })
        .await
    }

    /// Apply the privacy rules to a submitted event before it is prepared.
    pub async fn apply_privacy(
        &self,
        event: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        self.private(move |p| {
            let mut event = event;
            p.apply(&mut event).map(|()| event)
        })
        .await
    }

    /// Reveal the value entry `index` commits to at `field` (auditors and
    /// admins). The reveal is logged as an `access` event before the value
    /// is returned.
    pub async fn reveal(&self, token: &str, index: u64, field: &str) -> Result<Revealed, Error> {
        let caller = self.authenticate(token).await?;
        if !(caller.has(crate::audit::Role::Auditor) || caller.has(crate::audit::Role::Admin)) {
            return Err(Error::Forbidden(
                "revealing a private value needs the auditor or admin role".into(),
            ));
        }
        let path = FieldPath::parse(field).ok_or_else(|| {
            Error::bad(
                "bad_field",
                format!("{field:?} is neither actor.id nor a metadata path"),
            )
        })?;
        let log = self.log.clone();
        let bytes = tokio::task::spawn_blocking(move || log.entry(index))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let event: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Internal(format!("entry {index}: {e}")))?;
        let committed = path
            .get(&event)
            .and_then(|v| v.as_str())
            .filter(|s| crate::privacy::parse_leaf_form(s).is_some())
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "entry {index} holds no commitment at {field}: nothing to reveal"
                ))
            })?
            .to_string();
        let c = committed.clone();
        let opening = self
            .private(move |p| {
                p.store
                    .as_ref()
                    .ok_or_else(|| PrivacyError::UnknownCommitment(c.clone()))?
                    .reveal(&c)
            })
            .await?;
        let rec = Record::new(Action::Access, Ref::new("private_value", &committed))
            .meta(
                "viewer",
                serde_json::json!({"type": caller.principal.kind, "id": caller.principal.id}),
            )
            .meta("entry", index)
            .meta("field", field);
        let access = self.log.append(server_event(&rec)?).await?;
        let log = self.log.clone();
        let head = access.head.clone();
        let receipt = tokio::task::spawn_blocking(move || log.receipt_at(index, head))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        Ok(Revealed {
            field: field.to_string(),
            opening,
            receipt,
            access_index: access.index,
        })
    }

    /// Erase the private value of `subject` (`kind:value`; admins), or for
    /// retention (`by` None). The value and its salt are deleted first,
    /// then the erasure is logged with the commitment only.
    pub async fn erase(
        &self,
        token: Option<&str>,
        subject: &str,
    ) -> Result<(Tombstone, Receipt), Error> {
        let by = match token {
            Some(t) => {
                let caller = self.authenticate(t).await?;
                caller.require(crate::audit::Role::Admin)?;
                Some(caller.principal)
            }
            None => None,
        };
        if !subject.contains(':') {
            return Err(Error::bad(
                "bad_subject",
                "a subject is kind:value, for example user:alice",
            ));
        }
        let (s, reason) = (
            subject.to_string(),
            if by.is_some() { "request" } else { "retention" },
        );
        let t = self
            .private(move |p| match &p.store {
                Some(store) => store.erase(&s, reason),
                None => Err(PrivacyError::UnknownSubject(s)),
            })
            .await?;
        let receipt = self.log_erasure(&t, by.as_ref()).await?;
        Ok((t, receipt))
    }

    async fn log_erasure(&self, t: &Tombstone, by: Option<&Principal>) -> Result<Receipt, Error> {
        let mut rec = Record::new(Action::Erase, Ref::new("private_value", &t.commitment))
            .meta("kind", t.kind.as_str())
            .meta("reason", t.reason.as_str());
        if let Some(p) = by {
            rec = rec.meta(
                "requested_by",
                serde_json::json!({"type": p.kind, "id": p.id}),
            );
        }
        let receipt = self.log.append(server_event(&rec)?).await?;
        let (t, index) = (t.clone(), receipt.index);
        self.private(move |p| match &p.store {
            Some(store) => store.logged(&t, index),
            None => Ok(()),
        })
        .await?;
        Ok(receipt)
    }

    /// Log a reconciliation an auditor's tool made against another system
    /// (admins and auditors): a `reconcile` event with its counts, the tree
    /// size compared and who reported it.
    pub async fn record_reconciliation(
        &self,
        token: &str,
        source: &str,
        target: &str,
        counts: [(&str, u64); 3],
    ) -> Result<Receipt, Error> {
        let caller = self.authenticate(token).await?;
        if !(caller.has(crate::audit::Role::Admin) || caller.has(crate::audit::Role::Auditor)) {
            return Err(Error::Forbidden(
                "recording a reconciliation needs the admin or auditor role".into(),
            ));
        }
        if source != "mlflow" {
            return Err(Error::bad("bad_source", "the only source is mlflow"));
        }
        crate::audit::event::check_lineage_ref(source, target)
            .map_err(|e| Error::bad("bad_target", e.to_string()))?;
        let mut rec = Record::new(Action::Reconcile, Ref::new(source, target)).meta(
            "reported_by",
            serde_json::json!({"type": caller.principal.kind, "id": caller.principal.id}),
        );
        for (k, v) in counts {
            rec = rec.meta(k, v);
        }
        self.log.append(server_event(&rec)?).await
    }

    /// Log the erasures a crash interrupted (deleted, not yet logged).
    pub async fn finish_erasures(&self) -> Result<usize, Error> {
        let pending = self
            .private(|p| match &p.store {
                Some(store) => store.unlogged(),
                None => Ok(Vec::new()),
            })
            .await?;
        for t in &pending {
            self.log_erasure(t, None).await?;
        }
        Ok(pending.len())
    }

    /// Erase every private value not used for `max_age`; returns how many.
    pub async fn retain(&self, max_age: Duration) -> Result<usize, Error> {
        // A recorded last use can be up to the granularity older than the
        // real one: wait that much longer rather than erase a value in use.
        let cutoff = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_sub(max_age.as_secs())
            .saturating_sub(crate::privacy::LAST_USED_GRANULARITY);
        let old = self
            .private(move |p| match &p.store {
                Some(store) => store.unused_since(cutoff),
                None => Ok(Vec::new()),
            })
            .await?;
        let mut n = 0;
        for subject in old {
            match self.erase(None, &subject).await {
                Ok(_) => n += 1,
                // Erased meanwhile by a request.
                Err(Error::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

fn apply_registry(reg: &mut Tracked<registry::State>, index: u64, ev: &Event) {
    state::apply_registry(&mut reg.state, changes_mut(&mut reg.changes), index, ev);
    if !reg.dirty {
        reg.indexed = reg.indexed.max(index + 1);
    }
}

/// Prepare an event the server records as itself.
fn server_event(r: &Record) -> Result<Prepared, Error> {
    r.prepare(&Principal::server(), &now_rfc3339())
        .map_err(|e| Error::Internal(format!("server event: {e}")))
}
