//! The RocksDB store's leaf-hash index, written in key order, off the
//! append path.
//!
//! Leaf hashes are uniformly random. Put into a memtable one commit at a
//! time, each one searches the whole skip list from its top, a chain of
//! cache misses: that was about 40 % of the memtable inserts' cost on the
//! append path (docs/PERFORMANCE.md). So a commit only adds its leaf
//! hashes to an in-memory map, the tail. Every `batch` entries a worker
//! thread takes the tail, sorts it and puts it into `leaf_index` in key
//! order, where each insert starts from the one before it.
//!
//! Those puts skip the write-ahead log: the entries they index are
//! already durable, and their leaf hashes are level 0 of the tree. With
//! the last of them goes a marker, `leaf_index[""]` = `n`, which says that
//! every entry below `n` is in the column family. RocksDB writes a column
//! family's memtables out whole and in order, so after a crash it holds
//! some earlier state of itself, marker included, and [`recover`] indexes
//! the entries from the marker to the tree size again. A clean close
//! writes the tail and the memtables out, so the next open has nothing to
//! redo.
//!
//! A lookup reads the tail first, then the column family: the tail is
//! dropped only after the column family has it.

use super::rocks::{cf_of, engine};
use super::StoreError;
use crate::tree::Hash;
use rocksdb::{WriteBatch, WriteOptions, DB};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// The key of the marker: no leaf hash is empty.
pub const MARKER: &[u8] = b"";

/// Puts per write of a sorted run, and the writer's pause between two
/// writes: the sequencer's commits go through the same write queue, and
/// the writer shares the cores with them. Writes of 1,024 puts without a
/// pause took up to 3.8 ms under load, and at 5,000 appends/s there were
/// three times as many commits of 6.4 ms or more as without the writer
/// (docs/PERFORMANCE.md).
const PUTS_PER_WRITE: usize = 64;
const PAUSE: std::time::Duration = std::time::Duration::from_micros(100);

/// How far the tail may grow while the worker is still writing the
/// previous one before commits wait for it, in batches.
const MAX_TAIL_BATCHES: usize = 4;

type Tail = HashMap<Hash, u64>;

#[derive(Default)]
struct State {
    /// Entries from `taken_end` (or the marker) to `end`, not yet handed
    /// to the worker.
    current: Tail,
    /// The tree size `current` reaches.
    end: u64,
    /// The tail the worker is writing, and the tree size it reaches.
    taken: Option<(Arc<Tail>, u64)>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The worker waits here for a full tail or the stop.
    wake: Condvar,
    /// Commits wait here for the worker when the tail is too long.
    written: Condvar,
    batch: usize,
    /// Held by a test to keep the worker from writing.
    #[cfg(test)]
    gate: Mutex<()>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The tail of the leaf-hash index and the worker that writes it.
pub struct LeafTail {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl LeafTail {
    /// Start the worker for a column family that holds every entry below
    /// `size` (see [`recover`]).
    pub fn start(
        db: Arc<DB>,
        cf: &'static str,
        size: u64,
        batch: usize,
    ) -> Result<LeafTail, StoreError> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                end: size,
                ..State::default()
            }),
            wake: Condvar::new(),
            written: Condvar::new(),
            batch: batch.max(1),
            #[cfg(test)]
            gate: Mutex::new(()),
        });
        let s = shared.clone();
        let worker = std::thread::Builder::new()
            .name("leaf-index".into())
            .spawn(move || run(&s, &db, cf))
            .map_err(|e| StoreError::Engine(format!("starting the leaf index writer: {e}")))?;
        Ok(LeafTail {
            shared,
            worker: Some(worker),
        })
    }

    /// Add the leaf hashes of a commit of entries from `first` on, once it
    /// is durable. Waits for the worker if the tail is several batches
    /// long (a bulk fill faster than it).
    pub fn add(&self, first: u64, leaves: impl Iterator<Item = Hash>) {
        let mut st = self.shared.lock();
        let mut index = first;
        for h in leaves {
            st.current.insert(h, index);
            index += 1;
        }
        st.end = st.end.max(index);
        if st.current.len() >= self.shared.batch {
            self.shared.wake.notify_one();
        }
        // The writer takes `current` whenever it holds a batch, so this
        // waits only while it is busy (or has not woken) that long.
        while self.worker.is_some() && st.current.len() >= MAX_TAIL_BATCHES * self.shared.batch {
            st = self
                .shared
                .written
                .wait(st)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The index of a leaf hash still in the tail.
    pub fn get(&self, leaf: &Hash) -> Option<u64> {
        let st = self.shared.lock();
        st.current
            .get(leaf)
            .or_else(|| st.taken.as_ref().and_then(|(t, _)| t.get(leaf)))
            .copied()
    }

    /// Entries in the tail.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        let st = self.shared.lock();
        st.current.len() + st.taken.as_ref().map_or(0, |(t, _)| t.len())
    }

    /// Write the whole tail and stop the worker.
    pub fn stop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                tracing::error!("the leaf index writer panicked");
            }
        }
    }
}

impl Drop for LeafTail {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The worker: take the tail when it is a batch long (or all of it at the
/// stop), write it, drop it; retry a failed write until it succeeds or
/// the store closes.
fn run(shared: &Shared, db: &DB, cf: &str) {
    loop {
        let (tail, end) = {
            let mut st = shared.lock();
            loop {
                if let Some((t, end)) = &st.taken {
                    break (t.clone(), *end);
                }
                if st.current.len() >= shared.batch || (st.stop && !st.current.is_empty()) {
                    let t = Arc::new(std::mem::take(&mut st.current));
                    let end = st.end;
                    st.taken = Some((t, end));
                    continue;
                }
                if st.stop {
                    return;
                }
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        };
        let mut run: Vec<(Hash, u64)> = tail.iter().map(|(h, i)| (*h, *i)).collect();
        #[cfg(test)]
        let _gate = shared.gate.lock().unwrap_or_else(|e| e.into_inner());
        match write_sorted(db, cf, &mut run, end, PAUSE) {
            Ok(()) => {
                shared.lock().taken = None;
                shared.written.notify_all();
            }
            Err(e) => {
                tracing::error!(error = %e, "writing the leaf index failed; retrying");
                let st = shared.lock();
                if st.stop {
                    // Left to the next open, which indexes from the marker.
                    return;
                }
                drop(
                    shared
                        .wake
                        .wait_timeout(st, std::time::Duration::from_secs(1)),
                );
            }
        }
    }
}

/// Put `leaves` into the column family in key order, without the
/// write-ahead log, and then the marker: every entry below `end` is in.
/// Waits `pause` between two writes.
pub fn write_sorted(
    db: &DB,
    cf: &str,
    leaves: &mut [(Hash, u64)],
    end: u64,
    pause: std::time::Duration,
) -> Result<(), StoreError> {
    let handle = cf_of(db, cf)?;
    leaves.sort_unstable();
    let mut wo = WriteOptions::default();
    wo.disable_wal(true);
    let mut chunks = leaves.chunks(PUTS_PER_WRITE).peekable();
    loop {
        let mut wb = WriteBatch::default();
        let chunk = chunks.next();
        for (h, i) in chunk.unwrap_or_default() {
            wb.put_cf(handle, h, i.to_be_bytes());
        }
        let last = chunks.peek().is_none();
        if last {
            wb.put_cf(handle, MARKER, end.to_be_bytes());
        }
        db.write_opt(wb, &wo).map_err(engine)?;
        if last {
            return Ok(());
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// The tree size the column family's marker says it holds every entry
/// below. A column family without one was written by a version that put
/// every leaf hash in the commit's own batch, so it holds the whole tree.
pub fn marker(db: &DB, cf: &str, tree_size: u64) -> Result<Option<u64>, StoreError> {
    let handle = cf_of(db, cf)?;
    match db.get_pinned_cf(handle, MARKER).map_err(engine)? {
        Some(v) => {
            let a: [u8; 8] = v[..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("leaf index marker is not 8 bytes".into()))?;
            let m = u64::from_be_bytes(a);
            if m > tree_size {
                return Err(StoreError::Corrupt(format!(
                    "the leaf index reaches {m}, beyond the tree size {tree_size}"
                )));
            }
            Ok(Some(m))
        }
        None => Ok(None),
    }
}

/// Make the column family hold every entry below `tree_size`, durably:
/// index the entries from its marker on (their leaf hashes from `leaves`,
/// which reads level 0 of the tree), or, for a column family without a
/// marker, write one. Returns how many entries were indexed again.
pub fn recover(
    db: &DB,
    cf: &str,
    tree_size: u64,
    leaves: impl FnOnce(u64, u64) -> Result<Vec<Hash>, StoreError>,
) -> Result<u64, StoreError> {
    let from = match marker(db, cf, tree_size)? {
        Some(m) => m,
        None => {
            let handle = cf_of(db, cf)?;
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            db.put_cf_opt(handle, MARKER, tree_size.to_be_bytes(), &wo)
                .map_err(engine)?;
            return Ok(0);
        }
    };
    if from == tree_size {
        return Ok(0);
    }
    let hashes = leaves(from, tree_size)?;
    if hashes.len() as u64 != tree_size - from {
        return Err(StoreError::Corrupt(format!(
            "level 0 has {} of the leaves {from}..{tree_size}",
            hashes.len()
        )));
    }
    let mut run: Vec<(Hash, u64)> = hashes.into_iter().zip(from..).collect();
    write_sorted(db, cf, &mut run, tree_size, std::time::Duration::ZERO)?;
    let handle = cf_of(db, cf)?;
    db.flush_cf(handle).map_err(engine)?;
    Ok(tree_size - from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    const CF: &str = "leaf_index";

    fn leaf(i: u64) -> Hash {
        crate::tree::leaf_hash(&i.to_be_bytes())
    }

    /// A commit faster than the worker waits once the tail is four batches
    /// long, and goes on when the worker has written.
    #[test]
    fn commits_wait_for_the_writer_when_the_tail_is_four_batches_long() {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = Arc::new(DB::open_cf(&opts, dir.path(), [CF]).unwrap());
        const BATCH: u64 = 50;
        const TOTAL: u64 = 10 * BATCH;
        let tail = Arc::new(LeafTail::start(db.clone(), CF, 0, BATCH as usize).unwrap());
        // The worker may take a batch but not write it.
        let gate = tail.shared.gate.lock().unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let adder = {
            let tail = tail.clone();
            std::thread::spawn(move || {
                for i in 0..TOTAL {
                    tail.add(i, std::iter::once(leaf(i)));
                    done_tx.send(i + 1).unwrap();
                }
            })
        };
        // Adds go on until they stop for half a second.
        let mut added = 0;
        while let Ok(n) = done_rx.recv_timeout(Duration::from_millis(500)) {
            added = n;
            assert!(n < TOTAL, "all {TOTAL} entries added past a blocked writer");
        }
        // The commit that made the tail four batches long is the one
        // waiting. The worker holds what it took before: one batch, or up
        // to four if it woke late.
        assert!(
            (4 * BATCH - 1..8 * BATCH).contains(&added),
            "{added} commits returned with the writer blocked"
        );
        let held = tail.len() as u64;
        assert!(held == added + 1 && held <= 8 * BATCH, "a tail of {held}");
        // Every entry added so far is found, from the tail.
        for i in 0..added {
            assert_eq!(tail.get(&leaf(i)), Some(i));
        }
        // Let the worker write: the commits go on to the end.
        drop(gate);
        while added < TOTAL {
            added = done_rx
                .recv_timeout(Duration::from_secs(10))
                .expect("commits still wait with the writer free");
        }
        adder.join().unwrap();
        let mut tail = Arc::into_inner(tail).unwrap();
        tail.stop();
        assert_eq!(marker(&db, CF, TOTAL).unwrap(), Some(TOTAL));
        let cf = db.cf_handle(CF).unwrap();
        for i in 0..TOTAL {
            let v = db.get_cf(cf, leaf(i)).unwrap().unwrap();
            assert_eq!(v, i.to_be_bytes());
        }
    }
}
