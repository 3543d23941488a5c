//! The log: one sequencer thread that owns the tree's right edge and is the
//! only writer, plus the read paths every handler uses.
//!
//! Commit order for each batch (group commit):
//! 1. resolve resubmissions (event id already stored or repeated in the batch);
//! 2. extend a copy of the in-memory right edge with the new leaves (no reads);
//! 3. sign one checkpoint for the new size;
//! 4. write entries, nodes, indexes, size and checkpoint in one atomic
//!    `WriteBatch` with one fsync;
//! 5. only then publish the new head and answer every waiter.
//!
//! A failed commit is fatal for the in-memory state: every waiter in the
//! batch gets an error and the sequencer reloads its state from the store
//! with the same code that runs at start-up, so recovery is the normal path.
//! A checkpoint is signed only over a tree that extends the stored one, and
//! a signed checkpoint leaves the process only after it is durable, so the
//! published checkpoint never moves backwards or forks.

mod sequencer;

/// How an entry mentions an id in the lineage index.
pub use crate::store::Role as MentionRole;

use crate::audit::event::Prepared;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::note::{Checkpoint, KeyName, NoteError, SignerKey, VerifierKey};
use crate::store::{mention_key, Batch, EventId, MetaKey, NewEntry, Role, Store, StoreHashes};
use crate::tree::{self, Hash, HashReader, NodeId, RightEdge, TreeError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};

/// Limits and identity of a log.
#[derive(Clone, Debug)]
pub struct LogConfig {
    pub origin: String,
    /// Submissions waiting for the sequencer before appends get 503.
    pub queue_depth: usize,
    /// Most submissions in one group commit.
    pub max_batch: usize,
    /// Most bytes of entries waiting for the sequencer before appends get
    /// 503: with `queue_depth`, the bound on the queue's memory.
    pub queue_bytes: usize,
}

impl LogConfig {
    pub fn new(origin: &str) -> Self {
        LogConfig {
            origin: origin.to_string(),
            queue_depth: 16_384,
            max_batch: 4096,
            queue_bytes: 32 << 20,
        }
    }
}

/// A signed tree head the log has made durable and published.
#[derive(Debug)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
    /// The signed checkpoint note.
    pub checkpoint: String,
    /// The folds at the tree's right edge proofs at this size use (the
    /// log's own heads; a head read back from elsewhere holds none).
    pub edge: tree::EdgeFolds,
}

impl Head {
    /// The folds at the edge for a proof at `size`: this head's if it is
    /// of that size, else none.
    pub fn edge_at(&self, size: u64) -> &tree::EdgeFolds {
        static NONE: tree::EdgeFolds = tree::EdgeFolds::none();
        if self.edge.size() == size {
            &self.edge
        } else {
            &NONE
        }
    }
}

/// The answer to an append.
#[derive(Debug)]
pub struct Receipt {
    pub index: u64,
    pub event_id: uuid::Uuid,
    pub leaf_hash: Hash,
    /// False when an identical event was already in the log.
    pub created: bool,
    pub head: Arc<Head>,
    pub proof: Vec<Hash>,
    pub canonical: Arc<Vec<u8>>,
}

pub(crate) enum Job {
    Append(Submission),
    Stop,
}

pub(crate) struct Submission {
    /// What the store will write, built on the caller's task so the
    /// sequencer only orders and commits.
    entry: NewEntry,
    /// The client chose the event id: it may repeat a stored event.
    client_id: bool,
    reply: oneshot::Sender<Result<Committed, Error>>,
}

/// What the sequencer hands back: the proof is computed by the waiter from
/// `nodes` (memory), off the sequencer's critical path.
struct Committed {
    index: u64,
    created: bool,
    head: Arc<Head>,
    nodes: Arc<NodeMap>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the signing key's name {key} must equal the origin {origin}")]
    KeyNameMismatch { key: String, origin: String },
    #[error("this data directory holds the log {stored:?}, not {configured:?}")]
    OriginMismatch { stored: String, configured: String },
    #[error(
        "this data directory's log is signed by {stored}, not by the configured key {configured}"
    )]
    KeyMismatch { stored: String, configured: String },
    #[error("stored state is inconsistent: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error(transparent)]
    Tree(#[from] TreeError),
}

pub struct Log {
    store: Arc<dyn Store>,
    /// Bytes of entries queued for the sequencer, and the most allowed.
    queued: Arc<std::sync::atomic::AtomicUsize>,
    queue_bytes: usize,
    origin: String,
    verifier: VerifierKey,
    head: watch::Receiver<Arc<Head>>,
    tx: mpsc::Sender<Job>,
    healthy: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The durable state the sequencer works from, loaded from the store.
struct State {
    edge: RightEdge,
    head: Arc<Head>,
}

/// Load state from the store: the same code at start-up and after a failed
/// commit. Reads the right edge's nodes and the stored checkpoint; writes
/// only the first checkpoint of a brand-new log.
fn load_state(store: &dyn Store, signer: &SignerKey, origin: &str) -> Result<State, OpenError> {
    let size = store.tree_size()?;
    let edge = RightEdge::load(size, &StoreHashes(store))?;
    let signed = match store.checkpoint()? {
        Some(cp) => String::from_utf8(cp)
            .map_err(|_| OpenError::Corrupt("checkpoint is not UTF-8".into()))?,
        None if size == 0 => {
            let signed = Checkpoint::new(origin, 0, tree::empty_root()).sign(signer)?;
            store.commit(&Batch {
                first_index: 0,
                entries: &[],
                nodes: &[],
                checkpoint: signed.as_bytes(),
            })?;
            signed
        }
        None => return Err(OpenError::Corrupt("entries but no checkpoint".into())),
    };
    let (cp, _) = Checkpoint::open(signed.as_bytes(), origin, &signer.verifier())?;
    if cp.size != size || cp.root != edge.root() {
        return Err(OpenError::Corrupt(format!(
            "stored checkpoint (size {}) does not match the stored tree (size {size})",
            cp.size
        )));
    }
    Ok(State {
        head: Arc::new(Head {
            size,
            root: cp.root,
            checkpoint: signed,
            edge: tree::EdgeFolds::of(&edge),
        }),
        edge,
    })
}

impl Log {
    /// Open a log on `store`, checking that the store belongs to this origin
    /// and key, and start the sequencer thread.
    pub fn open(
        store: Arc<dyn Store>,
        signer: SignerKey,
        config: LogConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Log, OpenError> {
        let origin = config.origin.clone();
        if signer.name().as_str() != origin {
            return Err(OpenError::KeyNameMismatch {
                key: signer.name().to_string(),
                origin,
            });
        }
        KeyName::new(&origin)?;
        let vkey = signer.verifier().to_string();
        match store.get_meta(MetaKey::Origin)? {
            None => store.put_meta(MetaKey::Origin, origin.as_bytes())?,
            Some(o) if o != origin.as_bytes() => {
                return Err(OpenError::OriginMismatch {
                    stored: String::from_utf8_lossy(&o).into_owned(),
                    configured: origin,
                })
            }
            Some(_) => {}
        }
        match store.get_meta(MetaKey::VerifierKey)? {
            None => store.put_meta(MetaKey::VerifierKey, vkey.as_bytes())?,
            Some(v) if v != vkey.as_bytes() => {
                return Err(OpenError::KeyMismatch {
                    stored: String::from_utf8_lossy(&v).into_owned(),
                    configured: vkey,
                })
            }
            Some(_) => {}
        }
        let state = load_state(store.as_ref(), &signer, &origin)?;
        metrics.tree_size.set(state.head.size as i64);
        let (head_tx, head_rx) = watch::channel(state.head.clone());
        let (tx, rx) = mpsc::channel(config.queue_depth.max(1));
        let healthy = Arc::new(AtomicBool::new(true));
        let queued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seq = sequencer::Sequencer {
            queued: queued.clone(),
            store: store.clone(),
            signer: signer.clone(),
            origin: origin.clone(),
            max_batch: config.max_batch.max(1),
            state,
            head_tx,
            healthy: healthy.clone(),
            metrics: metrics.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("sequencer".into())
            .spawn(move || seq.run(rx))
            .map_err(|e| OpenError::Corrupt(format!("cannot start the sequencer: {e}")))?;
        Ok(Log {
            store,
            queued,
            queue_bytes: config.queue_bytes.max(MAX_ENTRY),
            origin,
            verifier: signer.verifier(),
            head: head_rx,
            tx,
            healthy,
            metrics,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn verifier(&self) -> &VerifierKey {
        &self.verifier
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// False after a storage failure the sequencer could not recover from.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// The latest published (durable, signed) tree head.
    pub fn head(&self) -> Arc<Head> {
        self.head.borrow().clone()
    }

    /// Follow the published head as it changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Head>> {
        self.head.clone()
    }

    /// Append a prepared event; resolves once it is durable and covered by a
    /// signed checkpoint, or with the original index for an identical
    /// resubmission.
    pub async fn append(&self, prepared: Prepared) -> Result<Receipt, Error> {
        if prepared.client_id {
            // Fast path for resubmissions; the sequencer checks again.
            if let Some(r) = self.existing(&prepared)? {
                return Ok(r);
            }
        }
        let client_id = prepared.client_id;
        let event_id = prepared.event_id();
        let entry = new_entry(prepared);
        let canonical = entry.bytes.clone();
        let leaf_hash = entry.leaf_hash;
        let len = entry.bytes.len();
        // The queue's memory is bounded in bytes as well as in entries; the
        // sequencer gives the bytes back once it has taken the entry.
        if self.queued.fetch_add(len, Ordering::SeqCst) + len > self.queue_bytes {
            self.queued.fetch_sub(len, Ordering::SeqCst);
            self.metrics.overloaded.inc();
            return Err(Error::Overloaded);
        }
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job::Append(Submission {
            entry,
            client_id,
            reply,
        })) {
            Ok(()) => {}
            Err(e) => {
                self.queued.fetch_sub(len, Ordering::SeqCst);
                return Err(match e {
                    mpsc::error::TrySendError::Full(_) => {
                        self.metrics.overloaded.inc();
                        Error::Overloaded
                    }
                    mpsc::error::TrySendError::Closed(_) => {
                        Error::Unavailable("the log is shutting down".into())
                    }
                });
            }
        }
        let c = rx
            .await
            .map_err(|_| Error::Unavailable("the log is shutting down".into()))??;
        let reader = Overlay {
            nodes: &c.nodes,
            store: self.store.as_ref(),
        };
        let proof = tree::inclusion_plan(c.index, c.head.size)?.fetch_at(&reader, &c.head.edge)?;
        Ok(Receipt {
            index: c.index,
            event_id,
            leaf_hash,
            created: c.created,
            head: c.head,
            proof,
            canonical,
        })
    }

    /// A fresh receipt for an event whose id is already stored, a conflict if
    /// its content differs, or `None` if the id is new.
    fn existing(&self, p: &Prepared) -> Result<Option<Receipt>, Error> {
        let head = self.head();
        let Some(index) = self.store.find_event(p.event_id().as_bytes())? else {
            return Ok(None);
        };
        if index >= head.size {
            return Ok(None); // stored but not yet published: let the sequencer answer
        }
        let stored = self.store.entry(index)?;
        if stored != p.canonical {
            self.metrics.conflicts.inc();
            return Err(Error::Conflict { index });
        }
        self.metrics.duplicates.inc();
        let proof = tree::inclusion_plan(index, head.size)?
            .fetch_at(&StoreHashes(self.store.as_ref()), &head.edge)?;
        Ok(Some(Receipt {
            index,
            event_id: p.event_id(),
            leaf_hash: p.leaf_hash,
            created: false,
            head,
            proof,
            canonical: Arc::new(stored),
        }))
    }

    /// Stop accepting appends, let the sequencer finish what is queued, and
    /// wait for it to exit.
    pub async fn shutdown(&self) {
        let _ = self.tx.send(Job::Stop).await;
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }

    // ---- reads: all bounded by the published head ----

    fn check_size(&self, size: u64, what: &str) -> Result<Arc<Head>, Error> {
        let head = self.head();
        if size > head.size {
            return Err(Error::bad(
                "beyond_tree",
                format!("{what} {size} is beyond the tree size {}", head.size),
            ));
        }
        Ok(head)
    }

    /// Entry bytes at `index` (below the published size).
    pub fn entry(&self, index: u64) -> Result<Vec<u8>, Error> {
        let head = self.head();
        if index >= head.size {
            return Err(Error::NotFound(format!(
                "no entry {index}: the tree size is {}",
                head.size
            )));
        }
        Ok(self.store.entry(index)?)
    }

    /// Entries `[start, end)`, clipped to the published size.
    pub fn entries(&self, start: u64, end: u64) -> Result<Vec<Vec<u8>>, Error> {
        let size = self.head().size;
        let end = end.min(size);
        if start >= end {
            return Ok(Vec::new());
        }
        Ok(self.store.entries(start, end)?)
    }

    /// The published index of the entry with this leaf hash.
    pub fn find_leaf(&self, leaf: &Hash) -> Result<Option<u64>, Error> {
        let size = self.head().size;
        Ok(self.store.find_leaf(leaf)?.filter(|i| *i < size))
    }

    pub fn find_event(&self, id: &EventId) -> Result<Option<u64>, Error> {
        let size = self.head().size;
        Ok(self.store.find_event(id)?.filter(|i| *i < size))
    }

    /// A receipt for the entry at `index` against `head`, a checkpoint this
    /// log published (for instance one cosigned by witnesses).
    pub fn receipt_at(&self, index: u64, head: Arc<Head>) -> Result<Receipt, Error> {
        if index >= head.size {
            return Err(Error::NotFound(format!(
                "entry {index} is not in the checkpoint of size {}",
                head.size
            )));
        }
        let canonical = self.store.entry(index)?;
        let event_id = crate::audit::Event::from_canonical(&canonical)
            .map_err(|e| Error::Internal(format!("entry {index}: {e}")))?
            .event_id;
        let (leaf_hash, proof) = self.leaf_and_inclusion_proof(index, head.size)?;
        Ok(Receipt {
            index,
            event_id,
            leaf_hash,
            created: false,
            head,
            proof,
            canonical: Arc::new(canonical),
        })
    }

    /// Inclusion proof for `index` in the tree of `size` (≤ published size).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, Error> {
        Ok(self.leaf_and_inclusion_proof(index, size)?.1)
    }

    /// The leaf hash at `index` and its inclusion proof in the tree of
    /// `size`, in one batched read (the leaf hash is the level-0 node).
    pub fn leaf_and_inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<(Hash, Vec<Hash>), Error> {
        self.check_size(size, "tree_size")?;
        if size == 0 {
            return Err(Error::bad(
                "empty_tree",
                "tree_size 0 has no inclusion proofs",
            ));
        }
        if index >= size {
            return Err(Error::bad(
                "index_out_of_range",
                format!("index {index} is not below tree_size {size}"),
            ));
        }
        let plan = tree::inclusion_plan(index, size)?;
        let head = self.head();
        let edge = head.edge_at(size);
        let mut ids = plan.node_ids_at(edge);
        ids.push(NodeId::new(0, index));
        let mut hashes = StoreHashes(self.store.as_ref()).read_hashes(&ids)?;
        let leaf = hashes
            .pop()
            .ok_or_else(|| Error::Internal(format!("leaf hash {index} missing")))?;
        Ok((leaf, plan.assemble_at(&hashes, edge)?))
    }

    /// Consistency proof between two published sizes, 1 ≤ old ≤ new.
    pub fn consistency_proof(&self, old: u64, new: u64) -> Result<Vec<Hash>, Error> {
        self.check_size(new, "new_size")?;
        if old == 0 {
            return Err(Error::bad("empty_tree", "old_size must be at least 1"));
        }
        if old > new {
            return Err(Error::bad(
                "bad_range",
                format!("old_size {old} is greater than new_size {new}"),
            ));
        }
        let head = self.head();
        Ok(tree::consistency_plan(old, new)?
            .fetch_at(&StoreHashes(self.store.as_ref()), head.edge_at(new))?)
    }

    /// Hashes at tree `level`, indexes `[start, start + count)`, all below the
    /// published size (the caller checks that they are complete).
    pub fn node_range(&self, level: u8, start: u64, count: u64) -> Result<Vec<Hash>, Error> {
        Ok(self.store.node_range(level, start, start + count)?)
    }

    /// Published entries that mention `kind:id` (as subject or in
    /// `related`), from index `from` on, in log order, at most `limit`.
    pub fn mentions(
        &self,
        kind: &str,
        id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Role)>, Error> {
        let size = self.head().size;
        let mut page = self.store.mentions(&mention_key(kind, id), from, limit)?;
        page.retain(|(i, _)| *i < size);
        Ok(page)
    }

    /// Published entries that mention `kind:id` in `role`, from `from` on,
    /// at most `limit`: one range read.
    pub fn mentions_as(
        &self,
        kind: &str,
        id: &str,
        role: Role,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, Error> {
        let size = self.head().size;
        let mut page = self
            .store
            .mentions_as(&mention_key(kind, id), role, from, limit)?;
        page.retain(|i| *i < size);
        Ok(page)
    }

    /// The last published entry before `before` that mentions `kind:id`
    /// in `role`.
    pub fn last_mention(
        &self,
        kind: &str,
        id: &str,
        role: Role,
        before: u64,
    ) -> Result<Option<u64>, Error> {
        let before = before.min(self.head().size);
        Ok(self
            .store
            .last_mention(&mention_key(kind, id), role, before)?)
    }

    /// Memory the storage engine reports, for metrics.
    pub fn storage_memory(&self) -> crate::store::MemoryUsage {
        self.store.memory()
    }

    pub fn tile_file(&self) -> Option<crate::store::TileFileStatus> {
        self.store.tile_file()
    }
}

/// The largest entry, which the byte budget must always admit.
const MAX_ENTRY: usize = crate::audit::event::MAX_ENTRY_BYTES;

/// The store's view of a prepared event: its bytes, leaf hash, id and
/// index keys (the subject, each `related` link, actor, action, month).
fn new_entry(p: Prepared) -> NewEntry {
    let mentions = p
        .event
        .index_keys()
        .into_iter()
        .map(|(r, subject)| {
            let role = if subject {
                Role::Subject
            } else {
                Role::Related
            };
            (mention_key(&r.kind, &r.id), role)
        })
        .collect();
    NewEntry {
        event_id: *p.event_id().as_bytes(),
        leaf_hash: p.leaf_hash,
        bytes: Arc::new(p.canonical),
        mentions,
    }
}

/// A batch's new nodes and the edge before it, by position.
type NodeMap = rustc_hash::FxHashMap<NodeId, Hash>;

/// Node hashes from the batch in memory, falling back to the store (only
/// resubmitted old entries need the fallback).
struct Overlay<'a> {
    nodes: &'a NodeMap,
    store: &'a dyn Store,
}

impl HashReader for Overlay<'_> {
    fn read_hashes(&self, ids: &[NodeId]) -> Result<Vec<Hash>, TreeError> {
        let mut out: Vec<Option<Hash>> = ids.iter().map(|id| self.nodes.get(id).copied()).collect();
        let missing: Vec<NodeId> = ids
            .iter()
            .zip(&out)
            .filter(|(_, h)| h.is_none())
            .map(|(id, _)| *id)
            .collect();
        if !missing.is_empty() {
            let mut got = StoreHashes(self.store).read_hashes(&missing)?.into_iter();
            for slot in out.iter_mut().filter(|h| h.is_none()) {
                *slot = got.next();
            }
        }
        out.into_iter()
            .zip(ids)
            .map(|(h, id)| {
                h.ok_or(TreeError::MissingNode {
                    level: id.level,
                    index: id.index,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
