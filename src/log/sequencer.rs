//! The sequencer thread: drains the queue into batches and commits each with
//! one write, one fsync and one signed checkpoint.

use super::{load_state, Committed, Head, Job, NodeMap, State, Submission};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::note::{Checkpoint, SignerKey};
use crate::store::{Batch, EventId, NewEntry, Store};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{mpsc, watch};

/// Cap on the bytes of entries in one batch.
const MAX_BATCH_BYTES: usize = 32 << 20;

pub(super) struct Sequencer {
    /// Bytes of queued entries, given back as they are taken.
    pub queued: Arc<std::sync::atomic::AtomicUsize>,
    pub store: Arc<dyn Store>,
    pub signer: SignerKey,
    pub origin: String,
    pub max_batch: usize,
    pub state: State,
    pub head_tx: watch::Sender<Arc<Head>>,
    pub healthy: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
}

/// How one submission in a batch is answered.
enum Outcome {
    /// A new leaf at `first_index + pos`.
    New(usize),
    /// Identical to the stored entry at this index.
    Stored(u64),
    /// Identical to the new leaf at this position of the same batch.
    SameAsNew(usize),
    /// The id is taken by different content at this index.
    Conflict(u64),
}

impl Sequencer {
    pub fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        loop {
            let first = if self.healthy.load(Ordering::Relaxed) {
                rx.blocking_recv()
            } else {
                // The store failed: probe it until a durable write works
                // again, refusing appends meanwhile.
                self.recover();
                match recv_for(&mut rx, RECOVERY_POLL) {
                    Wait::Job(j) => Some(j),
                    Wait::Nothing => continue,
                    Wait::Closed => None,
                }
            };
            let mut batch = match first {
                Some(Job::Append(s)) if self.healthy.load(Ordering::Relaxed) => vec![s],
                Some(Job::Append(s)) => {
                    self.queued.fetch_sub(s.entry.bytes.len(), Ordering::SeqCst);
                    fail_all(
                        vec![s],
                        "storage is failing; nothing was written, retry later",
                    );
                    continue;
                }
                Some(Job::Stop) | None => break,
            };
            let mut bytes = batch[0].entry.bytes.len();
            let mut stop = false;
            while batch.len() < self.max_batch && bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(Job::Append(s)) => {
                        bytes += s.entry.bytes.len();
                        batch.push(s);
                    }
                    Ok(Job::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.queued.fetch_sub(bytes, Ordering::SeqCst);
            self.process(batch);
            if stop {
                break;
            }
        }
        // Dropping `rx` fails any submission still queued.
    }

    fn process(&mut self, mut batch: Vec<Submission>) {
        let first = self.state.edge.size();
        let outcomes = match self.resolve(&batch) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "resolving resubmissions failed");
                return fail_all(batch, "storage read failed");
            }
        };
        // The new entries' mentions move to the store's batch: from here on
        // a submission is only answered.
        let entries: Vec<NewEntry> = batch
            .iter_mut()
            .zip(&outcomes)
            .filter(|(_, o)| matches!(o, Outcome::New(_)))
            .map(|(s, _)| NewEntry {
                bytes: s.entry.bytes.clone(),
                leaf_hash: s.entry.leaf_hash,
                event_id: s.entry.event_id,
                mentions: std::mem::take(&mut s.entry.mentions),
            })
            .collect();

        // Old edge nodes plus every node this batch creates: all a new
        // leaf's inclusion proof needs.
        // Tree positions, not input: a fast hash is safe here.
        let edge_nodes = self.state.edge.nodes();
        let mut overlay: NodeMap = NodeMap::with_capacity_and_hasher(
            edge_nodes.len() + 2 * entries.len(),
            Default::default(),
        );
        overlay.extend(edge_nodes.iter().copied());
        let head = if entries.is_empty() {
            self.state.head.clone()
        } else {
            let started = Instant::now();
            let mut edge = self.state.edge.clone();
            let mut nodes = Vec::with_capacity(entries.len() * 2);
            for e in &entries {
                edge.push(e.leaf_hash, &mut nodes);
            }
            // The root, and the folds at the edge proofs at this size use.
            let folds = crate::tree::EdgeFolds::of(&edge);
            let root = folds.root();
            let signed = match Checkpoint::new(&self.origin, edge.size(), root).sign(&self.signer) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "signing failed");
                    return fail_all(batch, "signing failed");
                }
            };
            let committed = self.store.commit(&Batch {
                first_index: first,
                entries: &entries,
                nodes: &nodes,
                checkpoint: signed.as_bytes(),
            });
            if let Err(e) = committed {
                // The batch may or may not be on disk, and what the store
                // shows may not be durable: trust nothing until a durable
                // write succeeds again (`recover`), then reload from it.
                tracing::error!(error = %e, "commit failed; refusing appends until the store recovers");
                self.metrics.commit_failures.inc();
                self.healthy.store(false, Ordering::Relaxed);
                return fail_all(
                    batch,
                    "the write did not complete; retry with the same event_id",
                );
            }
            self.metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.batches.inc();
            self.metrics.batch_size.observe(entries.len() as f64);
            self.metrics.appends.inc_by(entries.len() as u64);
            self.metrics.tree_size.set(edge.size() as i64);
            overlay.extend(nodes);
            let head = Arc::new(Head {
                size: edge.size(),
                root,
                checkpoint: signed,
                edge: folds,
            });
            self.state = State {
                edge,
                head: head.clone(),
            };
            self.head_tx.send_replace(head.clone());
            head
        };

        let nodes = Arc::new(overlay);
        for (sub, outcome) in batch.into_iter().zip(outcomes) {
            let answer = match outcome {
                Outcome::New(pos) => Ok((first + pos as u64, true)),
                Outcome::SameAsNew(pos) => Ok((first + pos as u64, false)),
                Outcome::Stored(index) => Ok((index, false)),
                Outcome::Conflict(index) => Err(Error::Conflict { index }),
            };
            let reply = answer.map(|(index, created)| {
                if !created {
                    self.metrics.duplicates.inc();
                }
                Committed {
                    index,
                    created,
                    head: head.clone(),
                    nodes: nodes.clone(),
                }
            });
            if reply.is_err() {
                self.metrics.conflicts.inc();
            }
            // The waiter may have gone away (client disconnected); the
            // event is durable regardless.
            let _ = sub.reply.send(reply);
        }
    }

    /// Decide for each submission whether it is new, a resubmission of a
    /// stored or same-batch event, or a conflict. Only client-chosen ids can
    /// repeat; server-assigned UUIDv7s are never looked up.
    fn resolve(&self, batch: &[Submission]) -> Result<Vec<Outcome>, crate::store::StoreError> {
        let client: Vec<EventId> = batch
            .iter()
            .filter(|s| s.client_id)
            .map(|s| s.entry.event_id)
            .collect();
        let mut found = if client.is_empty() {
            Vec::new()
        } else {
            self.store.find_events(&client)?
        }
        .into_iter();
        let mut in_batch: HashMap<EventId, (usize, usize)> = HashMap::new(); // id -> (pos, batch slot)
        let mut out = Vec::with_capacity(batch.len());
        let mut next_pos = 0usize;
        for (slot, s) in batch.iter().enumerate() {
            let id = s.entry.event_id;
            if s.client_id {
                if let Some(index) = found.next().flatten() {
                    let stored = self.store.entry(index)?;
                    out.push(if stored == *s.entry.bytes {
                        Outcome::Stored(index)
                    } else {
                        Outcome::Conflict(index)
                    });
                    continue;
                }
                if let Some(&(pos, first_slot)) = in_batch.get(&id) {
                    out.push(if batch[first_slot].entry.bytes == s.entry.bytes {
                        Outcome::SameAsNew(pos)
                    } else {
                        Outcome::Conflict(self.state.edge.size() + pos as u64)
                    });
                    continue;
                }
            }
            in_batch.insert(id, (next_pos, slot));
            out.push(Outcome::New(next_pos));
            next_pos += 1;
        }
        Ok(out)
    }

    /// After a failed commit: ask the store to recover, then make one
    /// durable write of what it holds (the stored size and checkpoint, an
    /// empty batch). Once that succeeds, everything the store shows is
    /// durable, and the state is reloaded from it with the start-up code, so
    /// an index a failed batch may have taken is never given out twice.
    fn recover(&mut self) {
        let probe = || -> Result<(), crate::store::StoreError> {
            self.store.recover()?;
            let size = self.store.tree_size()?;
            let checkpoint = self
                .store
                .checkpoint()?
                .ok_or_else(|| crate::store::StoreError::Corrupt("no checkpoint".into()))?;
            self.store.commit(&Batch {
                first_index: size,
                entries: &[],
                nodes: &[],
                checkpoint: &checkpoint,
            })
        };
        match probe() {
            Ok(()) => self.reload(),
            Err(e) => tracing::warn!(error = %e, "the store is still failing"),
        }
    }

    /// Reload from the store, which is the truth.
    fn reload(&mut self) {
        match load_state(self.store.as_ref(), &self.signer, &self.origin) {
            Ok(state) => {
                if state.head.size != self.state.head.size {
                    self.head_tx.send_replace(state.head.clone());
                }
                self.metrics.tree_size.set(state.head.size as i64);
                self.state = state;
                self.healthy.store(true, Ordering::Relaxed);
                tracing::info!("the store recovered; appends resume");
            }
            Err(e) => {
                tracing::error!(error = %e, "reload after a failed commit failed");
                self.healthy.store(false, Ordering::Relaxed);
            }
        }
    }
}

/// How often a failing store is probed.
const RECOVERY_POLL: std::time::Duration = std::time::Duration::from_millis(250);

enum Wait {
    Job(Job),
    Nothing,
    Closed,
}

/// The next job, waiting at most `limit` (the sequencer is a plain thread).
fn recv_for(rx: &mut mpsc::Receiver<Job>, limit: std::time::Duration) -> Wait {
    let deadline = Instant::now() + limit;
    loop {
        match rx.try_recv() {
            Ok(j) => return Wait::Job(j),
            Err(mpsc::error::TryRecvError::Disconnected) => return Wait::Closed,
            Err(mpsc::error::TryRecvError::Empty) if Instant::now() >= deadline => {
                return Wait::Nothing
            }
            Err(mpsc::error::TryRecvError::Empty) => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
        }
    }
}

fn fail_all(batch: Vec<Submission>, why: &str) {
    for s in batch {
        let _ = s.reply.send(Err(Error::Unavailable(why.to_string())));
    }
}
