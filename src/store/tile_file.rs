//! The complete tiles of row 0 in one flat file, read with one `pread`.
//!
//! Every inclusion proof reads the nodes below the cached upper levels from
//! one row-0 tile: 510 hashes, 16 KiB, one value in `full_tiles`. When the
//! log's tile values outgrow the block cache (past a few million entries),
//! each of those reads is a RocksDB point read that misses the cache: an
//! index partition search, a `pread` of the block, its checksum, an insert
//! into the cache and an eviction. That made a proof at 100 M entries about
//! twice as slow as at 1 M (docs/PERFORMANCE.md). Here tile `t` is record
//! `t` of a file at a fixed offset, whatever the log's size, and a proof
//! reads only the part of it that holds its nodes.
//!
//! The file is a derived copy, never the truth: `full_tiles` (and the node
//! keys) stay the durable record, and a reader falls back to them for any
//! tile the file does not hold, or holds with a part that does not check.
//! A worker thread writes records in order, behind the commits that
//! complete their tiles, reading each value back from the store. Every
//! [`SYNC_EVERY`] records, and when it stops, it syncs the file and then
//! stores how many records are synced (the watermark). At open, everything
//! past the watermark is cut off and written again from the store: after a
//! crash at most [`SYNC_EVERY`] records, and for a log that has no file yet,
//! all of them, while proofs are served from the store meanwhile.
//!
//! A record is 16 KiB: nine chunks, each of hashes and their CRC-32C
//! (u32 LE), then zeros. A chunk's CRC covers the tile's number (u64 LE),
//! the chunk's place (u8) and its hashes, so a chunk read from the wrong
//! record or the wrong place does not check. Eight chunks hold the subtrees
//! of 32 leaves each (levels 0 to 4 of the tile, 62 hashes, level by
//! level); the ninth holds the levels above them (5 to 7, 14 hashes) and
//! sits in the middle, between subtrees 3 and 4. A path from a leaf to the
//! tile's root, all a proof needs from a tile, lies in one subtree and the
//! top: one read from the one to the other, 2.4 KiB to 8.4 KiB instead of
//! 16 KiB, and a CRC over the two chunks only.

// Where each level of a tile starts in its value (`full_tiles`), in
// hashes: 256 leaves' level first, the two children of the root last.
use super::rocks::TILE_LEVEL_START as LEVEL_START;
use super::{StoreError, TileFileStatus};
use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A tile's 510 hashes.
pub const TILE_BYTES: usize = 510 * 32;
/// One record: nine chunks, padding to 16 KiB (four whole pages).
pub const RECORD: usize = 16 << 10;

/// Where each of levels 0 to 4 starts in a subtree chunk, and each of
/// levels 5 to 7 in the top chunk, in hashes.
const SUB_START: [usize; 5] = [0, 32, 48, 56, 60];
const TOP_START: [usize; 3] = [0, 8, 12];
const SUB_HASHES: usize = 62;
const TOP_HASHES: usize = 14;
const SUB_CHUNK: usize = SUB_HASHES * 32 + 4;
const TOP_CHUNK: usize = TOP_HASHES * 32 + 4;
const CHUNKS: usize = 9;
/// The top chunk's place in the record: in the middle.
const TOP: usize = 4;

/// Where chunk `c` (in the record's order) starts.
const fn chunk_at(c: usize) -> usize {
    if c <= TOP {
        c * SUB_CHUNK
    } else {
        TOP * SUB_CHUNK + TOP_CHUNK + (c - TOP - 1) * SUB_CHUNK
    }
}

/// Chunk `c`'s length, with its CRC.
const fn chunk_len(c: usize) -> usize {
    if c == TOP {
        TOP_CHUNK
    } else {
        SUB_CHUNK
    }
}

/// The bytes of a record the chunks fill.
const USED: usize = chunk_at(CHUNKS - 1) + SUB_CHUNK;
const _: () = assert!(USED <= RECORD && SUB_HASHES == 32 + 16 + 8 + 4 + 2);
const _: () = assert!(8 * SUB_HASHES + TOP_HASHES == 510);

/// Where the hash at `slot` of a tile's value lies in the record: its
/// chunk, and its place in the chunk (in hashes).
const fn place(slot: usize) -> (usize, usize) {
    let mut level = 7;
    while LEVEL_START[level] > slot {
        level -= 1;
    }
    let j = slot - LEVEL_START[level];
    if level >= 5 {
        return (TOP, TOP_START[level - 5] + j);
    }
    let sub = j >> (5 - level);
    let chunk = if sub < TOP { sub } else { sub + 1 };
    (chunk, SUB_START[level] + (j & ((32 >> level) - 1)))
}

/// [`place`] of every slot, as byte offsets in the record, and chunks.
const PLACES: [(u16, u8); 510] = {
    let mut p = [(0u16, 0u8); 510];
    let mut s = 0;
    while s < 510 {
        let (c, at) = place(s);
        p[s] = ((chunk_at(c) + at * 32) as u16, c as u8);
        s += 1;
    }
    p
};

/// The CRC of chunk `c` of tile `t` with these hashes.
fn chunk_crc(t: u64, c: usize, hashes: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&t.to_le_bytes()), &[c as u8]);
    crc32c::crc32c_append(crc, hashes)
}

/// Whether chunk `c` of tile `t` checks, in `span`, the bytes of the
/// record from `from` on.
fn chunk_checks(t: u64, c: usize, span: &[u8], from: usize) -> bool {
    let at = chunk_at(c) - from;
    let n = chunk_len(c) - 4;
    match (span.get(at..at + n), span.get(at + n..at + n + 4)) {
        (Some(h), Some(crc)) => crc == chunk_crc(t, c, h).to_le_bytes(),
        _ => false,
    }
}

thread_local! {
    /// Each reading thread's buffer: no allocation per read.
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0u8; RECORD]);
}

/// Records written between two syncs: 256 KiB, 4,096 entries. The sync
/// shares the disk with the commits' WAL syncs, which wait behind it: at
/// 1,024 records (16 MiB, most of it still dirty) the sync held commits
/// for up to 120 ms at 5,000 appends/s (docs/PERFORMANCE.md). A crash
/// costs the next open at most this many records to write again.
pub const SYNC_EVERY: u64 = 16;

/// Where the file's tiles come from, and where its watermark is kept.
pub trait TileSource: Send + Sync + 'static {
    /// Tile `t` of row 0, complete: 510 hashes.
    fn tile(&self, t: u64) -> Result<Vec<u8>, StoreError>;
    /// The watermark: records below it are synced (0 if never stored).
    fn synced(&self) -> Result<u64, StoreError>;
    /// Store the watermark. It need not be durable at once: a watermark
    /// lost in a crash is an older one, and costs only records written
    /// again.
    fn set_synced(&self, n: u64) -> Result<(), StoreError>;
}

fn io(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Engine(format!("tile file: {what}: {e}"))
}

/// A record for tile `t` with these hashes.
fn record(t: u64, hashes: &[u8]) -> Result<Vec<u8>, StoreError> {
    if hashes.len() != TILE_BYTES {
        return Err(StoreError::Corrupt(format!(
            "tile {t} is {} bytes, not 510 hashes",
            hashes.len()
        )));
    }
    let mut r = vec![0u8; RECORD];
    for (h, &(at, _)) in hashes.chunks_exact(32).zip(PLACES.iter()) {
        let at = usize::from(at);
        r[at..at + 32].copy_from_slice(h);
    }
    for c in 0..CHUNKS {
        let (at, n) = (chunk_at(c), chunk_len(c) - 4);
        let crc = chunk_crc(t, c, &r[at..at + n]);
        r[at + n..at + n + 4].copy_from_slice(&crc.to_le_bytes());
    }
    Ok(r)
}

struct State {
    /// Tiles `[0, complete)` are complete in the store.
    complete: u64,
    stop: bool,
}

struct Shared {
    file: File,
    /// Records `[0, ready)` are written: a read below it needs no lock.
    ready: AtomicU64,
    state: Mutex<State>,
    wake: Condvar,
    /// Reads of a record that failed its check: the first is logged, all
    /// are counted (not on every proof's log line).
    failed: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The file and its writer.
pub struct TileFile {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
}

impl TileFile {
    /// Open (or create) the file at `path` for a log whose row 0 has
    /// `complete` complete tiles, cut it to its synced part, and start the
    /// worker that writes the rest from `source`.
    pub fn open(
        path: &Path,
        source: Arc<dyn TileSource>,
        complete: u64,
    ) -> Result<TileFile, StoreError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io("open", e))?;
        let whole = file.metadata().map_err(|e| io("stat", e))?.len() / RECORD as u64;
        let ready = source.synced()?.min(whole).min(complete);
        // Whatever lies past the watermark may be a write the crash cut
        // short: it is written again.
        file.set_len(ready * RECORD as u64)
            .map_err(|e| io("truncate", e))?;
        let shared = Arc::new(Shared {
            file,
            ready: AtomicU64::new(ready),
            state: Mutex::new(State {
                complete,
                stop: false,
            }),
            wake: Condvar::new(),
            failed: AtomicU64::new(0),
        });
        let s = shared.clone();
        let worker = std::thread::Builder::new()
            .name("tile-file".into())
            .spawn(move || run(&s, source.as_ref(), ready))
            .map_err(|e| io("starting the writer", e))?;
        Ok(TileFile {
            shared,
            worker: Some(worker),
        })
    }

    /// Tiles `[0, complete)` of row 0 are now complete in the store.
    pub fn completed(&self, complete: u64) {
        let mut st = self.shared.lock();
        if complete > st.complete {
            st.complete = complete;
            self.shared.wake.notify_one();
        }
    }

    /// How many records are written and can be read.
    pub fn ready(&self) -> u64 {
        self.shared.ready.load(Ordering::Acquire)
    }

    /// Tile `t`'s 510 hashes, in the order of its value in `full_tiles`,
    /// if the file holds an intact record of it; `None` sends the reader
    /// to the store.
    pub fn read(&self, t: u64) -> Option<Vec<u8>> {
        self.read_span(
            t,
            0,
            CHUNKS - 1,
            |_| true,
            |span| {
                let mut out = Vec::with_capacity(TILE_BYTES);
                for &(at, _) in &PLACES {
                    let at = usize::from(at);
                    out.extend_from_slice(&span[at..at + 32]);
                }
                out
            },
        )
    }

    /// The hashes at `slots` (places in the tile's value, each below 510)
    /// of tile `t`, in that order, if the file holds them intact: one read
    /// of the chunks from the first that holds one of them to the last,
    /// and only their chunks checked. `None` sends the reader to the store.
    pub fn read_slots(&self, t: u64, slots: &[usize]) -> Option<Vec<[u8; 32]>> {
        let places: Vec<(usize, usize)> = slots
            .iter()
            .map(|&s| {
                PLACES
                    .get(s)
                    .map(|&(at, c)| (usize::from(at), usize::from(c)))
            })
            .collect::<Option<_>>()?;
        let lo = places.iter().map(|p| p.1).min()?;
        let hi = places.iter().map(|p| p.1).max()?;
        let mut need = [false; CHUNKS];
        for p in &places {
            need[p.1] = true;
        }
        let from = chunk_at(lo);
        self.read_span(
            t,
            lo,
            hi,
            |c| need[c],
            |span| {
                places
                    .iter()
                    .map(|&(at, _)| {
                        let mut h = [0u8; 32];
                        h.copy_from_slice(&span[at - from..at - from + 32]);
                        h
                    })
                    .collect()
            },
        )
    }

    /// Read chunks `lo..=hi` of tile `t` in one `pread`, check those
    /// `check` names, and hand `f` the bytes read (from chunk `lo`'s
    /// start).
    fn read_span<R>(
        &self,
        t: u64,
        lo: usize,
        hi: usize,
        check: impl Fn(usize) -> bool,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Option<R> {
        if t >= self.ready() || lo > hi || hi >= CHUNKS {
            return None;
        }
        let (from, to) = (chunk_at(lo), chunk_at(hi) + chunk_len(hi));
        let at = t.checked_mul(RECORD as u64)?.checked_add(from as u64)?;
        let got = BUF.with(|b| {
            let mut buf = b.try_borrow_mut().ok()?;
            let span = &mut buf[..to - from];
            let read = self.shared.file.read_exact_at(span, at);
            if read.is_ok()
                && (lo..=hi)
                    .filter(|&c| check(c))
                    .all(|c| chunk_checks(t, c, span, from))
            {
                return Some(Ok(f(span)));
            }
            Some(Err(read.err()))
        });
        match got {
            Some(Ok(r)) => Some(r),
            Some(Err(error)) => {
                if self.shared.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::error!(
                        tile = t,
                        error = ?error,
                        "a record of the tile file does not check: its tiles are read from the \
                         store instead (delete the file, server stopped, to have it written again)"
                    );
                }
                None
            }
            None => None,
        }
    }

    /// Write what is complete, sync, store the watermark, stop the worker.
    pub fn stop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }

    /// How many records are written, and how many tiles are complete.
    pub fn progress(&self) -> (u64, u64) {
        let complete = self.shared.lock().complete;
        (self.ready(), complete)
    }

    /// Records written, tiles complete, and failed checks.
    pub fn status(&self) -> TileFileStatus {
        let (records, complete) = self.progress();
        TileFileStatus {
            records,
            complete,
            failed_checks: self.shared.failed.load(Ordering::Relaxed),
        }
    }

    /// Wait until every complete tile is written, up to `limit`.
    pub fn wait_written(&self, limit: std::time::Duration) -> bool {
        let until = std::time::Instant::now() + limit;
        loop {
            let (ready, complete) = self.progress();
            if ready >= complete {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

impl Drop for TileFile {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sync the file and store the watermark; on failure keep the old one.
fn sync(shared: &Shared, source: &dyn TileSource, ready: u64, synced: &mut u64) {
    if ready == *synced {
        return;
    }
    let done = shared
        .file
        .sync_data()
        .map_err(|e| io("sync", e))
        .and_then(|()| source.set_synced(ready));
    match done {
        Ok(()) => *synced = ready,
        Err(e) => tracing::warn!(error = %e, "tile file: watermark not advanced"),
    }
}

/// The worker: write records from `ready` up to the complete tiles, in
/// order; sync every [`SYNC_EVERY`]; on stop, sync and return. A failed
/// read or write is retried after a pause (readers use the store
/// meanwhile).
fn run(shared: &Shared, source: &dyn TileSource, mut ready: u64) {
    let mut synced = ready;
    loop {
        let complete = {
            let mut st = shared.lock();
            while !st.stop && st.complete <= ready {
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.stop {
                break;
            }
            st.complete
        };
        while ready < complete {
            if ready.is_multiple_of(64) && shared.lock().stop {
                break;
            }
            let written = source.tile(ready).and_then(|hashes| {
                let r = record(ready, &hashes)?;
                shared
                    .file
                    .write_all_at(&r, ready * RECORD as u64)
                    .map_err(|e| io("write", e))
            });
            if let Err(e) = written {
                tracing::warn!(tile = ready, error = %e, "tile file: record not written");
                std::thread::sleep(std::time::Duration::from_secs(1));
                break;
            }
            ready += 1;
            shared.ready.store(ready, Ordering::Release);
            if ready - synced >= SYNC_EVERY {
                sync(shared, source, ready, &mut synced);
            }
        }
    }
    sync(shared, source, ready, &mut synced);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Tiles whose hashes are their number's bytes, a watermark in memory,
    /// and failures on demand.
    #[derive(Default)]
    struct Fake {
        synced: Mutex<u64>,
        fail_from: Mutex<Option<u64>>,
        reads: AtomicU64,
    }

    fn hashes(t: u64) -> Vec<u8> {
        (0..TILE_BYTES)
            .map(|i| (t as usize * 7 + i) as u8)
            .collect()
    }

    impl TileSource for Fake {
        fn tile(&self, t: u64) -> Result<Vec<u8>, StoreError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            match *self.fail_from.lock().unwrap() {
                Some(f) if t >= f => Err(StoreError::Engine("down".into())),
                _ => Ok(hashes(t)),
            }
        }
        fn synced(&self) -> Result<u64, StoreError> {
            Ok(*self.synced.lock().unwrap())
        }
        fn set_synced(&self, n: u64) -> Result<(), StoreError> {
            *self.synced.lock().unwrap() = n;
            Ok(())
        }
    }

    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn records_are_written_behind_the_commits_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiles");
        let fake = Arc::new(Fake::default());
        let f = TileFile::open(&path, fake.clone(), 0).unwrap();
        assert_eq!(f.read(0), None, "nothing is complete yet");
        f.completed(3);
        assert!(f.wait_written(WAIT));
        for t in 0..3 {
            assert_eq!(f.read(t), Some(hashes(t)));
        }
        assert_eq!(f.read(3), None, "tile 3 is not complete");
        f.completed(2); // never backwards
        f.completed(5);
        assert!(f.wait_written(WAIT));
        assert_eq!(f.read(4), Some(hashes(4)));
        drop(f);
        assert_eq!(*fake.synced.lock().unwrap(), 5, "the stop syncs");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 5 * RECORD as u64);
    }

    #[test]
    fn a_damaged_record_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiles");
        let fake = Arc::new(Fake::default());
        drop({
            let f = TileFile::open(&path, fake.clone(), 4).unwrap();
            assert!(f.wait_written(WAIT));
            f
        });
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        // A flipped bit in tile 1's hashes, and tile 2 written where tile 3
        // belongs (its CRC is right, its number is not).
        let mut b = [0u8; 1];
        File::open(&path)
            .unwrap()
            .read_exact_at(&mut b, RECORD as u64 + 100)
            .unwrap();
        file.write_all_at(&[b[0] ^ 4], RECORD as u64 + 100).unwrap();
        file.write_all_at(&record(2, &hashes(2)).unwrap(), 3 * RECORD as u64)
            .unwrap();
        let f = TileFile::open(&path, fake.clone(), 4).unwrap();
        assert_eq!(f.read(0), Some(hashes(0)));
        assert_eq!(f.read(1), None);
        assert_eq!(f.read(2), Some(hashes(2)));
        assert_eq!(f.read(3), None);
        assert_eq!(f.read(3), None);
        assert_eq!(
            f.status(),
            TileFileStatus {
                records: 4,
                complete: 4,
                failed_checks: 3
            }
        );
    }

    /// The slots of the nodes a proof of leaf `i` of a tile reads in it:
    /// the sibling on each of its levels.
    fn path(i: usize) -> Vec<usize> {
        (0..8).map(|l| LEVEL_START[l] + ((i >> l) ^ 1)).collect()
    }

    #[test]
    fn the_layout_places_every_hash_once_and_a_path_in_two_chunks() {
        let mut used = vec![false; RECORD];
        for (s, &(at, c)) in PLACES.iter().enumerate() {
            let (at, c) = (usize::from(at), usize::from(c));
            // Inside its chunk, before the chunk's CRC.
            assert!(
                at >= chunk_at(c) && at + 32 <= chunk_at(c) + chunk_len(c) - 4,
                "slot {s}"
            );
            for b in &mut used[at..at + 32] {
                assert!(!*b, "slot {s} overlaps another");
                *b = true;
            }
        }
        assert_eq!(used.iter().filter(|b| **b).count(), TILE_BYTES);
        for i in 0..256 {
            let mut chunks: Vec<u8> = path(i).iter().map(|&s| PLACES[s].1).collect();
            chunks.sort();
            chunks.dedup();
            let sub = i / 32;
            let want = if sub < TOP { sub } else { sub + 1 } as u8;
            assert_eq!(
                chunks,
                vec![want.min(TOP as u8), want.max(TOP as u8)],
                "leaf {i}"
            );
        }
    }

    #[test]
    fn a_proof_reads_only_its_chunks_and_gets_the_tiles_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let path_ = dir.path().join("tiles");
        let fake = Arc::new(Fake::default());
        let f = TileFile::open(&path_, fake.clone(), 3).unwrap();
        assert!(f.wait_written(WAIT));
        let h = hashes(1);
        let at = |s: usize| -> [u8; 32] { h[s * 32..s * 32 + 32].try_into().unwrap() };
        for s in 0..510 {
            assert_eq!(f.read_slots(1, &[s]), Some(vec![at(s)]), "slot {s}");
        }
        for i in [0, 31, 32, 127, 128, 200, 255] {
            let p = path(i);
            assert_eq!(
                f.read_slots(1, &p),
                Some(p.iter().map(|&s| at(s)).collect::<Vec<_>>()),
                "leaf {i}"
            );
        }
        // Slots of two subtrees and the top, out of order, repeated.
        let mixed = [300, 5, 509, 250, 5];
        assert_eq!(
            f.read_slots(1, &mixed),
            Some(mixed.iter().map(|&s| at(s)).collect::<Vec<_>>())
        );
        assert_eq!(f.read_slots(1, &[510]), None, "no such slot");
        assert_eq!(f.read_slots(3, &[0]), None, "tile 3 is not complete");
        // A flipped bit in subtree 0 of tile 1: what lies in it does not
        // check, nor does the whole tile; other chunks still read.
        let file = OpenOptions::new()
            .write(true)
            .read(true)
            .open(&path_)
            .unwrap();
        let byte = RECORD as u64 + 40;
        let mut b = [0u8; 1];
        file.read_exact_at(&mut b, byte).unwrap();
        file.write_all_at(&[b[0] ^ 1], byte).unwrap();
        assert_eq!(f.read_slots(1, &[1]), None);
        assert_eq!(f.read_slots(1, &path(0)), None);
        assert_eq!(f.read(1), None);
        assert_eq!(
            f.read_slots(1, &path(40)),
            Some(path(40).iter().map(|&s| at(s)).collect())
        );
        assert_eq!(
            f.read_slots(1, &path(255)),
            Some(path(255).iter().map(|&s| at(s)).collect())
        );
        assert_eq!(f.read(0), Some(hashes(0)));
        assert_eq!(f.read(2), Some(hashes(2)));
        assert_eq!(f.status().failed_checks, 3);
    }

    #[test]
    fn what_lies_past_the_watermark_is_written_again_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiles");
        let fake = Arc::new(Fake::default());
        drop({
            let f = TileFile::open(&path, fake.clone(), 6).unwrap();
            assert!(f.wait_written(WAIT));
            f
        });
        // A crash after tile 2's sync: the watermark says 2, and the
        // records past it are zeros, as a file extended but not written.
        *fake.synced.lock().unwrap() = 2;
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(&vec![0u8; 4 * RECORD], 2 * RECORD as u64)
            .unwrap();
        let before = fake.reads.load(Ordering::Relaxed);
        let f = TileFile::open(&path, fake.clone(), 6).unwrap();
        assert!(f.wait_written(WAIT));
        for t in 0..6 {
            assert_eq!(f.read(t), Some(hashes(t)), "tile {t}");
        }
        assert_eq!(
            fake.reads.load(Ordering::Relaxed) - before,
            4,
            "only the tiles past the watermark are read again"
        );
    }

    #[test]
    fn a_file_longer_than_the_log_or_its_watermark_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiles");
        std::fs::write(&path, vec![7u8; 3 * RECORD + 5]).unwrap();
        let fake = Arc::new(Fake::default());
        *fake.synced.lock().unwrap() = 9;
        let f = TileFile::open(&path, fake.clone(), 2).unwrap();
        // The watermark (9) is past the file's three whole records, and
        // those past the log's two complete tiles.
        assert_eq!(f.ready(), 2);
        assert!(f.wait_written(WAIT));
        // Records 0 and 1 were trusted by the watermark but are garbage:
        // they fail their check and the reader goes to the store.
        assert_eq!(f.read(0), None);
        drop(f);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * RECORD as u64);
    }

    #[test]
    fn a_failing_source_is_retried_and_readers_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tiles");
        let fake = Arc::new(Fake::default());
        *fake.fail_from.lock().unwrap() = Some(1);
        let f = TileFile::open(&path, fake.clone(), 3).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(f.ready(), 1);
        assert_eq!(f.read(1), None);
        *fake.fail_from.lock().unwrap() = None;
        assert!(f.wait_written(WAIT));
        assert_eq!(f.read(2), Some(hashes(2)));
    }
}
