use super::*;
use crate::audit::event::prepare;
use crate::store::MemStore;
use crate::tree::{verify_consistency, verify_inclusion};

const ORIGIN: &str = "log.example/test";

fn signer() -> SignerKey {
    SignerKey::from_seed(KeyName::new(ORIGIN).unwrap(), [1u8; 32])
}

fn open(store: Arc<dyn Store>) -> Log {
    Log::open(
        store,
        signer(),
        LogConfig::new(ORIGIN),
        Arc::new(Metrics::default()),
    )
    .unwrap()
}

fn event(n: usize, id: Option<&str>) -> Prepared {
    let mut v = serde_json::json!({
        "action": "register",
        "actor": {"type": "service", "id": "ci"},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "model_version", "id": format!("m:v{n}")},
    });
    if let Some(id) = id {
        v["event_id"] = id.into();
    }
    prepare(v.to_string().as_bytes()).unwrap()
}

fn check_receipt(log: &Log, r: &Receipt) {
    let (cp, _) = Checkpoint::open(r.head.checkpoint.as_bytes(), ORIGIN, log.verifier()).unwrap();
    assert_eq!(cp.size, r.head.size);
    verify_inclusion(r.index, cp.size, &r.leaf_hash, &r.proof, &cp.root).unwrap();
    assert_eq!(crate::tree::leaf_hash(&r.canonical), r.leaf_hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_get_verifiable_receipts() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let log = Arc::new(open(store.clone()));
    assert_eq!(log.head().size, 0);
    let mut tasks = Vec::new();
    for n in 0..500 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            log.append(event(n, None)).await.unwrap()
        }));
    }
    let mut receipts = Vec::new();
    for t in tasks {
        receipts.push(t.await.unwrap());
    }
    let mut indexes: Vec<u64> = receipts.iter().map(|r| r.index).collect();
    indexes.sort();
    assert_eq!(indexes, (0..500).collect::<Vec<_>>());
    for r in &receipts {
        assert!(r.created);
        check_receipt(&log, r);
    }
    // Every head handed out is consistent with the final one.
    let last = log.head();
    for r in &receipts {
        let p = log.consistency_proof(r.head.size, last.size).unwrap();
        verify_consistency(r.head.size, last.size, &p, &r.head.root, &last.root).unwrap();
    }
    assert_eq!(log.metrics().appends.get(), 500);
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmission_is_idempotent_and_reuse_conflicts() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let log = Arc::new(open(store.clone()));
    let id = "018f4c1e-0000-7000-8000-000000000001";
    let a = log.append(event(1, Some(id))).await.unwrap();
    assert!(a.created);
    log.append(event(2, None)).await.unwrap();
    let again = log.append(event(1, Some(id))).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.index, a.index);
    assert_eq!(again.head.size, 2);
    check_receipt(&log, &again);
    let clash = log.append(event(99, Some(id))).await.unwrap_err();
    assert!(matches!(clash, Error::Conflict { index: 0 }));
    assert_eq!(log.head().size, 2);

    // The same id twice in flight at once: one leaf, the other a duplicate
    // or (for different content) a conflict; never two leaves.
    let id2 = "018f4c1e-0000-7000-8000-000000000002";
    let (x, y) = tokio::join!(
        log.append(event(5, Some(id2))),
        log.append(event(5, Some(id2)))
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.index, y.index);
    assert!(x.created ^ y.created);
    assert_eq!(log.head().size, 3);
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reads_state_and_refuses_other_identity() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let log = open(store.clone());
    for n in 0..37 {
        log.append(event(n, None)).await.unwrap();
    }
    let before = log.head();
    log.shutdown().await;
    let log = open(store.clone());
    let after = log.head();
    assert_eq!(after.size, 37);
    assert_eq!(after.checkpoint, before.checkpoint);
    let r = log.append(event(100, None)).await.unwrap();
    assert_eq!(r.index, 37);
    check_receipt(&log, &r);
    log.shutdown().await;

    // Another key, or another origin, cannot take over this store.
    let other = SignerKey::from_seed(KeyName::new(ORIGIN).unwrap(), [2u8; 32]);
    let m = Arc::new(Metrics::default());
    assert!(matches!(
        Log::open(store.clone(), other, LogConfig::new(ORIGIN), m.clone()),
        Err(OpenError::KeyMismatch { .. })
    ));
    let k = SignerKey::from_seed(KeyName::new("other.example/x").unwrap(), [1u8; 32]);
    assert!(matches!(
        Log::open(
            store.clone(),
            k,
            LogConfig::new("other.example/x"),
            m.clone()
        ),
        Err(OpenError::OriginMismatch { .. })
    ));
    assert!(matches!(
        Log::open(store, signer(), LogConfig::new("other.example/x"), m),
        Err(OpenError::KeyNameMismatch { .. })
    ));
}

/// A store whose commits wait until the test lets them through.
struct GatedStore {
    inner: MemStore,
    gate: std::sync::Mutex<std::sync::mpsc::Receiver<()>>,
    entered: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
}

impl Store for GatedStore {
    fn tree_size(&self) -> Result<u64, crate::store::StoreError> {
        self.inner.tree_size()
    }
    fn checkpoint(&self) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
        self.inner.checkpoint()
    }
    fn commit(&self, batch: &Batch<'_>) -> Result<(), crate::store::StoreError> {
        if !batch.entries.is_empty() {
            let _ = self.entered.lock().unwrap().send(());
            let _ = self.gate.lock().unwrap().recv();
        }
        self.inner.commit(batch)
    }
    fn entries(&self, s: u64, e: u64) -> Result<Vec<Vec<u8>>, crate::store::StoreError> {
        self.inner.entries(s, e)
    }
    fn nodes(&self, ids: &[NodeId]) -> Result<Vec<Option<Hash>>, crate::store::StoreError> {
        self.inner.nodes(ids)
    }
    fn node_range(&self, l: u8, s: u64, e: u64) -> Result<Vec<Hash>, crate::store::StoreError> {
        self.inner.node_range(l, s, e)
    }
    fn find_leaf(&self, h: &Hash) -> Result<Option<u64>, crate::store::StoreError> {
        self.inner.find_leaf(h)
    }
    fn find_events(&self, ids: &[EventId]) -> Result<Vec<Option<u64>>, crate::store::StoreError> {
        self.inner.find_events(ids)
    }
    fn mentions_as(
        &self,
        prefix: &[u8],
        role: crate::store::Role,
        from: u64,
        limit: usize,
    ) -> Result<Vec<u64>, crate::store::StoreError> {
        self.inner.mentions_as(prefix, role, from, limit)
    }
    fn last_mention(
        &self,
        prefix: &[u8],
        role: crate::store::Role,
        before: u64,
    ) -> Result<Option<u64>, crate::store::StoreError> {
        self.inner.last_mention(prefix, role, before)
    }
    fn put_mentions(
        &self,
        items: &[(u64, Vec<u8>, crate::store::Role)],
    ) -> Result<(), crate::store::StoreError> {
        self.inner.put_mentions(items)
    }
    fn get_meta(
        &self,
        k: crate::store::MetaKey,
    ) -> Result<Option<Vec<u8>>, crate::store::StoreError> {
        self.inner.get_meta(k)
    }
    fn put_meta(&self, k: crate::store::MetaKey, v: &[u8]) -> Result<(), crate::store::StoreError> {
        self.inner.put_meta(k, v)
    }
    fn state_records(&self) -> Result<Vec<crate::store::StoredRecord>, crate::store::StoreError> {
        self.inner.state_records()
    }
    fn put_state(
        &self,
        header: &[u8],
        records: &[crate::store::StateRecord],
        replace_all: bool,
    ) -> Result<(), crate::store::StoreError> {
        self.inner.put_state(header, records, replace_all)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_answers_overloaded() {
    let (open_gate, gate) = std::sync::mpsc::channel();
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let store: Arc<dyn Store> = Arc::new(GatedStore {
        inner: MemStore::new(),
        gate: std::sync::Mutex::new(gate),
        entered: std::sync::Mutex::new(entered_tx),
    });
    let mut cfg = LogConfig::new(ORIGIN);
    cfg.queue_depth = 2;
    let log = Arc::new(Log::open(store, signer(), cfg, Arc::new(Metrics::default())).unwrap());
    // The first append holds the sequencer inside commit.
    let first = tokio::spawn({
        let log = log.clone();
        async move { log.append(event(0, None)).await }
    });
    tokio::task::spawn_blocking(move || entered.recv().unwrap())
        .await
        .unwrap();
    // Two more fill the queue; the next is refused at once.
    let queued: Vec<_> = (1..3)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(event(n, None)).await })
        })
        .collect();
    while log.tx.capacity() > 0 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(
        log.append(event(9, None)).await,
        Err(Error::Overloaded)
    ));
    assert_eq!(log.metrics().overloaded.get(), 1);
    // Let everything through: the queued ones are appended, none lost.
    for _ in 0..3 {
        open_gate.send(()).unwrap();
    }
    assert_eq!(first.await.unwrap().unwrap().index, 0);
    for q in queued {
        q.await.unwrap().unwrap();
    }
    assert_eq!(log.head().size, 3);
    // Group commit: the two that waited behind the first shared one batch,
    // one fsync and one checkpoint.
    assert_eq!(log.metrics().batches.get(), 2);
    drop(open_gate);
    log.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_paths_check_bounds() {
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    let log = open(store);
    for n in 0..10 {
        log.append(event(n, None)).await.unwrap();
    }
    assert!(log.inclusion_proof(0, 0).is_err());
    assert!(log.inclusion_proof(10, 10).is_err());
    assert!(log.inclusion_proof(0, 11).is_err());
    assert!(log.consistency_proof(0, 5).is_err());
    assert!(log.consistency_proof(6, 5).is_err());
    assert!(log.consistency_proof(5, 11).is_err());
    assert!(log.consistency_proof(5, 5).unwrap().is_empty());
    assert!(matches!(log.entry(10), Err(Error::NotFound(_))));
    assert_eq!(log.entries(8, 100).unwrap().len(), 2);
    log.shutdown().await;
}

fn big(n: usize) -> Prepared {
    let v = serde_json::json!({
        "action": "register",
        "actor": {"type": "service", "id": "ci"},
        "timestamp": "2025-05-05T14:03:00Z",
        "subject": {"type": "model_version", "id": format!("m:v{n}")},
        "metadata": {"blob": "x".repeat(60_000)},
    });
    prepare(v.to_string().as_bytes()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_is_bounded_in_bytes() {
    let (open_gate, gate) = std::sync::mpsc::channel();
    let (entered_tx, entered) = std::sync::mpsc::channel();
    let store: Arc<dyn Store> = Arc::new(GatedStore {
        inner: MemStore::new(),
        gate: std::sync::Mutex::new(gate),
        entered: std::sync::Mutex::new(entered_tx),
    });
    let mut cfg = LogConfig::new(ORIGIN);
    // Room for two 60 KB entries, however many the queue could count.
    cfg.queue_bytes = 130_000;
    let log = Arc::new(Log::open(store, signer(), cfg, Arc::new(Metrics::default())).unwrap());
    let first = tokio::spawn({
        let log = log.clone();
        async move { log.append(big(0)).await }
    });
    tokio::task::spawn_blocking(move || entered.recv().unwrap())
        .await
        .unwrap();
    // The first was taken by the sequencer: its bytes are free again.
    let queued: Vec<_> = (1..3)
        .map(|n| {
            let log = log.clone();
            tokio::spawn(async move { log.append(big(n)).await })
        })
        .collect();
    while log.queued.load(Ordering::SeqCst) < 120_000 {
        tokio::task::yield_now().await;
    }
    assert!(matches!(log.append(big(9)).await, Err(Error::Overloaded)));
    for _ in 0..3 {
        open_gate.send(()).unwrap();
    }
    first.await.unwrap().unwrap();
    for q in queued {
        q.await.unwrap().unwrap();
    }
    assert_eq!(log.head().size, 3);
    assert_eq!(log.queued.load(Ordering::SeqCst), 0);
    // With the queue drained, a big entry is welcome again.
    open_gate.send(()).unwrap();
    log.append(big(10)).await.unwrap();
    drop(open_gate);
    log.shutdown().await;
}
