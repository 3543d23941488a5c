//! The complete tiles of row 0 in one flat file, read with one `pread`.
//!
//! Every inclusion proof reads the nodes below the cached upper levels from
//! one row-0 tile: 510 hashes, 16 KiB, one value in `full_tiles`. When the
//! log's tile values outgrow the block cache (past a few million entries),
//! each of those reads is a RocksDB point read that misses the cache: an
//! index partition search, a `pread` of the block, its checksum, an insert
//! into the cache and an eviction. That made a proof at 100 M entries about
//! twice as slow as at 1 M (docs/PERFORMANCE.md). Here tile `t` is record
//! `t` of a file at a fixed offset: one `pread` of 16 KiB and a CRC-32C,
//! whatever the log's size.
//!
//! The file is a derived copy, never the truth: `full_tiles` (and the node
//! keys) stay the durable record, and a reader falls back to them for any
//! tile the file does not hold, or holds with a record that does not check.
//! A worker thread writes records in order, behind the commits that
//! complete their tiles, reading each value back from the store. Every
//! [`SYNC_EVERY`] records, and when it stops, it syncs the file and then
//! stores how many records are synced (the watermark). At open, everything
//! past the watermark is cut off and written again from the store: after a
//! crash at most [`SYNC_EVERY`] records, and for a log that has no file yet,
//! all of them, while proofs are served from the store meanwhile.
//!
//! A record: the tile's 510 hashes (16,320 bytes), the tile's number
//! (u64 LE), the CRC-32C of both (u32 LE), zeros to 16 KiB.

use super::{StoreError, TileFileStatus};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

/// A tile's 510 hashes.
pub const TILE_BYTES: usize = 510 * 32;
/// One record: the hashes, the tile's number, the CRC, padding to 16 KiB
/// (four whole pages).
pub const RECORD: usize = 16 << 10;
const NUMBER_AT: usize = TILE_BYTES;
const CRC_AT: usize = TILE_BYTES + 8;

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
    r[..TILE_BYTES].copy_from_slice(hashes);
    r[NUMBER_AT..CRC_AT].copy_from_slice(&t.to_le_bytes());
    let crc = crc32c::crc32c(&r[..CRC_AT]);
    r[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    Ok(r)
}

/// Whether `r` is a whole, intact record of tile `t`.
fn checks(t: u64, r: &[u8]) -> bool {
    r.len() == RECORD
        && r[NUMBER_AT..CRC_AT] == t.to_le_bytes()
        && r[CRC_AT..CRC_AT + 4] == crc32c::crc32c(&r[..CRC_AT]).to_le_bytes()
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

    /// Tile `t`'s 510 hashes, if the file holds an intact record of it;
    /// `None` sends the reader to the store.
    pub fn read(&self, t: u64) -> Option<Vec<u8>> {
        if t >= self.ready() {
            return None;
        }
        let mut r = vec![0u8; RECORD];
        let at = t.checked_mul(RECORD as u64)?;
        let read = self.shared.file.read_exact_at(&mut r, at);
        if read.is_ok() && checks(t, &r) {
            r.truncate(TILE_BYTES);
            return Some(r);
        }
        if self.shared.failed.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::error!(
                tile = t,
                error = ?read.err(),
                "a record of the tile file does not check: its tiles are read from the \
                 store instead (delete the file, server stopped, to have it written again)"
            );
        }
        None
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
