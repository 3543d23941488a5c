//! One conformance suite that every store implementation runs.

use super::*;
use crate::tree::{self, RightEdge};

fn entry(i: u64) -> NewEntry {
    let bytes = format!("{{\"n\":{i}}}").into_bytes();
    // Ids out of index order (a store may write a batch's keys in key
    // order), and distinct.
    let mut event_id = [0u8; 16];
    event_id[..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9_7f4a_7c15).to_be_bytes());
    event_id[8..].copy_from_slice(&i.to_be_bytes());
    NewEntry {
        leaf_hash: tree::leaf_hash(&bytes),
        bytes: std::sync::Arc::new(bytes),
        event_id,
        // Every entry mentions its parity as subject; every third also a
        // shared id as related.
        mentions: {
            let mut m = vec![(
                mention_key("parity", if i.is_multiple_of(2) { "even" } else { "odd" }),
                Role::Subject,
            )];
            if i.is_multiple_of(3) {
                m.push((mention_key("shared", "x"), Role::Related));
            }
            // One id mentioned both ways: as subject every fifth entry, in
            // `related` by every other entry.
            if i.is_multiple_of(5) {
                m.push((mention_key("mixed", "m"), Role::Subject));
            } else if i.is_multiple_of(2) {
                m.push((mention_key("mixed", "m"), Role::Related));
            }
            m
        },
    }
}

/// Append `n` entries in one commit, the way the sequencer does.
fn append(store: &dyn Store, edge: &mut RightEdge, n: u64) {
    let first = edge.size();
    let entries: Vec<NewEntry> = (first..first + n).map(entry).collect();
    let mut nodes = Vec::new();
    for e in &entries {
        edge.push(e.leaf_hash, &mut nodes);
    }
    let cp = format!("checkpoint {}", edge.size());
    store
        .commit(&Batch {
            first_index: first,
            entries: &entries,
            nodes: &nodes,
            checkpoint: cp.as_bytes(),
        })
        .unwrap();
}

/// Check the mentions of `prefix` in `role` from each of `froms`, in
/// pages of each of `limits`, and the last before each, against `all`.
pub fn check_mentions(
    store: &dyn Store,
    prefix: &[u8],
    role: Role,
    all: &[u64],
    froms: impl IntoIterator<Item = u64>,
    limits: &[usize],
) {
    for from in froms {
        for &limit in limits {
            let want: Vec<u64> = all
                .iter()
                .copied()
                .filter(|i| *i >= from)
                .take(limit)
                .collect();
            assert_eq!(
                store.mentions_as(prefix, role, from, limit).unwrap(),
                want,
                "{role:?} from {from}, {limit}"
            );
        }
        let before = all.iter().copied().filter(|i| *i < from).max();
        assert_eq!(
            store.last_mention(prefix, role, from).unwrap(),
            before,
            "{role:?} before {from}"
        );
    }
}

/// Check every read against what was written.
fn check_contents(store: &dyn Store, size: u64) {
    // The upper levels, however an engine reads them, are the levels'
    // complete nodes, as one range read each gives them.
    for min in [0u8, 1, 3, 8, 9] {
        let want: Vec<Vec<Hash>> = (min..64)
            .map(|l| size >> l)
            .take_while(|&n| n > 0)
            .enumerate()
            .map(|(i, n)| store.node_range(min + i as u8, 0, n).unwrap())
            .collect();
        assert_eq!(
            store.upper_levels(min, size).unwrap(),
            want,
            "from level {min} at {size}"
        );
    }
    // The lineage index: every mention, in log order, paged.
    let even: Vec<u64> = (0..size).filter(|i| i % 2 == 0).collect();
    let got = store
        .mentions(&mention_key("parity", "even"), 0, usize::MAX)
        .unwrap();
    assert_eq!(got.iter().map(|m| m.0).collect::<Vec<_>>(), even);
    assert!(got.iter().all(|m| m.1 == Role::Subject));
    let shared: Vec<u64> = (0..size).filter(|i| i % 3 == 0).collect();
    let mut paged = Vec::new();
    let mut from = 0;
    loop {
        let page = store
            .mentions(&mention_key("shared", "x"), from, 7)
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7 && page.iter().all(|m| m.1 == Role::Related));
        from = page.last().unwrap().0 + 1;
        paged.extend(page.iter().map(|m| m.0));
    }
    assert_eq!(paged, shared);
    // A prefix of another id is not that id.
    assert!(store
        .mentions(&mention_key("parity", "eve"), 0, 10)
        .unwrap()
        .is_empty());
    assert!(store
        .mentions(&mention_key("shared", "x"), size, 10)
        .unwrap()
        .is_empty());
    // Both roles, merged in log order; one role alone; the last before.
    let mixed = mention_key("mixed", "m");
    let want: Vec<(u64, Role)> = (0..size)
        .filter_map(|i| {
            if i % 5 == 0 {
                Some((i, Role::Subject))
            } else if i % 2 == 0 {
                Some((i, Role::Related))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(store.mentions(&mixed, 0, usize::MAX).unwrap(), want);
    assert_eq!(
        store.mentions(&mixed, 3, 4).unwrap(),
        want.iter()
            .copied()
            .filter(|m| m.0 >= 3)
            .take(4)
            .collect::<Vec<_>>()
    );
    let subjects: Vec<u64> = (0..size).filter(|i| i % 5 == 0).collect();
    assert_eq!(
        store
            .mentions_as(&mixed, Role::Subject, 0, usize::MAX)
            .unwrap(),
        subjects
    );
    for before in [0, 1, 5, 6, size / 2, size, size + 10] {
        let want = subjects.iter().copied().filter(|i| *i < before).max();
        assert_eq!(
            store.last_mention(&mixed, Role::Subject, before).unwrap(),
            want,
            "before {before}"
        );
    }
    assert_eq!(
        store
            .last_mention(&mention_key("mixed", "n"), Role::Subject, size)
            .unwrap(),
        None
    );
    // From every index, in pages of one and of three, and the last before
    // every index: a store may keep a commit's mentions of one id together,
    // and these start and end inside such a group.
    if size <= 300 {
        let related: Vec<u64> = (0..size).filter(|i| i % 5 != 0 && i % 2 == 0).collect();
        for (role, all) in [(Role::Subject, &subjects), (Role::Related, &related)] {
            check_mentions(store, &mixed, role, all, 0..=size, &[1, 3]);
        }
    }

    assert_eq!(store.tree_size().unwrap(), size);
    assert_eq!(
        store.checkpoint().unwrap().unwrap(),
        format!("checkpoint {size}").into_bytes()
    );
    let all = store.entries(0, size).unwrap();
    for (i, bytes) in all.iter().enumerate() {
        let e = entry(i as u64);
        assert_eq!(bytes, &*e.bytes);
        assert_eq!(store.entry(i as u64).unwrap(), *e.bytes);
        assert_eq!(store.find_leaf(&e.leaf_hash).unwrap(), Some(i as u64));
        assert_eq!(store.find_event(&e.event_id).unwrap(), Some(i as u64));
    }
    assert!(store.entries(0, size + 1).is_err());
    assert_eq!(store.find_leaf(&tree::leaf_hash(b"absent")).unwrap(), None);
    let ids: Vec<EventId> = (0..size + 2).map(|i| entry(i).event_id).collect();
    let found = store.find_events(&ids).unwrap();
    for (i, f) in found.iter().enumerate() {
        let want = if (i as u64) < size {
            Some(i as u64)
        } else {
            None
        };
        assert_eq!(*f, want);
    }
    // Roots and proofs from stored nodes agree with a fresh in-memory build.
    let mut edge = RightEdge::empty();
    let mut nodes = Vec::new();
    for i in 0..size {
        edge.push(entry(i).leaf_hash, &mut nodes);
    }
    let reader = StoreHashes(store);
    assert_eq!(tree::root(size, &reader).unwrap(), edge.root());
    // Every complete node, read one by one and all at once.
    let ids: Vec<NodeId> = nodes.iter().map(|(id, _)| *id).collect();
    let want: Vec<Option<Hash>> = nodes.iter().map(|(_, h)| Some(*h)).collect();
    assert_eq!(store.nodes(&ids).unwrap(), want);
    for (id, h) in nodes.iter().step_by(7) {
        assert_eq!(store.nodes(&[*id]).unwrap(), vec![Some(*h)], "{id:?}");
        assert_eq!(
            store.node_range(id.level, id.index, id.index + 1).unwrap(),
            vec![*h]
        );
    }
    assert_eq!(RightEdge::load(size, &reader).unwrap(), edge);
    // Level-0 range reads are leaf hashes; every stored level is a range.
    if size > 0 {
        let leaves = store.node_range(0, 0, size).unwrap();
        assert_eq!(leaves[size as usize - 1], entry(size - 1).leaf_hash);
        let level1 = store.node_range(1, 0, size / 2).unwrap();
        for (i, h) in level1.iter().enumerate() {
            assert_eq!(*h, tree::node_hash(&leaves[2 * i], &leaves[2 * i + 1]));
        }
        assert!(store.node_range(0, 0, size + 1).is_err());
    }
    let missing = store
        .nodes(&[NodeId::new(0, size), NodeId::new(40, 0)])
        .unwrap();
    assert_eq!(missing, vec![None, None]);
}

/// The derived state's records: put, replaced, deleted and all dropped,
/// each write with the header.
fn check_state_records(store: &dyn Store) {
    let rec = |k: &str, v: Option<&str>| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec()));
    let list = |store: &dyn Store| -> Vec<(String, String)> {
        store
            .state_records()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
            .collect()
    };
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert!(store.state_records().unwrap().is_empty());
    store
        .put_state(
            b"h1",
            &[rec("b\0two", Some("2")), rec("a\0one", Some("1"))],
            false,
        )
        .unwrap();
    assert_eq!(list(store), pairs(&[("a\0one", "1"), ("b\0two", "2")]));
    assert_eq!(
        store.get_meta(MetaKey::DerivedState).unwrap().unwrap(),
        b"h1"
    );
    // Only what is named changes; a missing key deleted is no error.
    store
        .put_state(
            b"h2",
            &[
                rec("a\0one", Some("1'")),
                rec("b\0two", None),
                rec("c", None),
            ],
            false,
        )
        .unwrap();
    assert_eq!(list(store), pairs(&[("a\0one", "1'")]));
    assert_eq!(
        store.get_meta(MetaKey::DerivedState).unwrap().unwrap(),
        b"h2"
    );
    store
        .put_state(b"h3", &[rec("z", Some("26"))], true)
        .unwrap();
    assert_eq!(list(store), pairs(&[("z", "26")]));
    assert_eq!(
        store.get_meta(MetaKey::DerivedState).unwrap().unwrap(),
        b"h3"
    );
}

pub fn run(store: &dyn Store) {
    assert_eq!(store.tree_size().unwrap(), 0);
    assert_eq!(store.checkpoint().unwrap(), None);
    assert_eq!(store.get_meta(MetaKey::Origin).unwrap(), None);
    store.put_meta(MetaKey::Origin, b"log.example/x").unwrap();
    assert_eq!(
        store.get_meta(MetaKey::Origin).unwrap().unwrap(),
        b"log.example/x"
    );
    check_state_records(store);

    // A new log stores its first (empty-tree) checkpoint with an empty batch.
    store
        .commit(&Batch {
            first_index: 0,
            entries: &[],
            nodes: &[],
            checkpoint: b"checkpoint 0",
        })
        .unwrap();
    check_contents(store, 0);

    let mut edge = RightEdge::empty();
    for n in [1, 1, 2, 5, 64, 200, 3, 700] {
        append(store, &mut edge, n);
        check_contents(store, edge.size());
    }

    // A batch that does not continue the log is refused and changes nothing.
    let size = edge.size();
    let stray = [entry(size + 5)];
    let err = store.commit(&Batch {
        first_index: size + 5,
        entries: &stray,
        nodes: &[],
        checkpoint: b"bad",
    });
    assert!(matches!(err, Err(StoreError::NotContiguous(_))));
    check_contents(store, size);

    // An empty batch stores a new checkpoint only.
    store
        .commit(&Batch {
            first_index: size,
            entries: &[],
            nodes: &[],
            checkpoint: format!("checkpoint {size}").as_bytes(),
        })
        .unwrap();
    check_contents(store, size);
}

#[test]
fn mem_store_conforms() {
    run(&MemStore::new());
}

#[test]
fn rocks_store_conforms_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let size = {
        let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
        run(&store);
        store.tree_size().unwrap()
    };
    let store = RocksStore::open(dir.path(), &RocksOptions::default()).unwrap();
    check_contents(&store, size);
    assert_eq!(
        store.get_meta(MetaKey::Origin).unwrap().unwrap(),
        b"log.example/x"
    );
    assert_eq!(
        store.state_records().unwrap(),
        vec![(b"z".to_vec(), b"26".to_vec())]
    );
    assert_eq!(
        store.get_meta(MetaKey::DerivedState).unwrap().unwrap(),
        b"h3"
    );
}

#[test]
fn the_upper_levels_in_memory_conform_over_either_store() {
    for min_level in [0, 2, 8] {
        let mem: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemStore::new());
        run(&UpperLevels::open(mem, min_level).unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let size = {
        let rocks: std::sync::Arc<dyn Store> =
            std::sync::Arc::new(RocksStore::open(dir.path(), &RocksOptions::default()).unwrap());
        let cached = UpperLevels::open(rocks, 1).unwrap();
        run(&cached);
        assert!(cached.cached() > 0);
        cached.tree_size().unwrap()
    };
    // Reopened, the cache is loaded from the store.
    let rocks: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(RocksStore::open(dir.path(), &RocksOptions::default()).unwrap());
    let cached = UpperLevels::open(rocks, 1).unwrap();
    assert_eq!(
        cached.cached() as u64,
        (1..64).map(|l| size >> l).sum::<u64>()
    );
    check_contents(&cached, size);
}

#[test]
fn the_upper_levels_catch_up_with_a_commit_they_did_not_see() {
    let inner: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemStore::new());
    let cached = UpperLevels::open(inner.clone(), 1).unwrap();
    let mut edge = RightEdge::empty();
    append(&cached, &mut edge, 5);
    // A commit that reached the store without the cache seeing it (as
    // when a commit reports failure but was durable).
    append(inner.as_ref(), &mut edge, 40);
    append(&cached, &mut edge, 30);
    check_contents(&cached, edge.size());
    assert_eq!(
        cached.cached() as u64,
        (1..64).map(|l| edge.size() >> l).sum::<u64>()
    );
}

#[test]
fn a_faulty_store_without_faults_conforms() {
    let inner: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemStore::new());
    run(&fault::FaultyStore::new(inner));
}

#[test]
fn the_upper_levels_hold_the_nodes_at_the_right_edge_below_them() {
    for min_level in [2, 8] {
        let inner: std::sync::Arc<dyn Store> = std::sync::Arc::new(MemStore::new());
        let cached = UpperLevels::open(inner.clone(), min_level).unwrap();
        let mut edge = RightEdge::empty();
        let mut all = Vec::new();
        let check = |cached: &UpperLevels, size: u64, all: &mut Vec<(NodeId, Hash)>| {
            let mut e = RightEdge::empty();
            all.clear();
            for i in 0..size {
                e.push(entry(i).leaf_hash, all);
            }
            let start = (size >> min_level) << min_level;
            let mut held = 0;
            for (id, h) in all.iter() {
                let want = (id.level < min_level && id.index << id.level >= start).then_some(*h);
                assert_eq!(cached.edge_node(id), want, "{id:?} at {size}");
                held += usize::from(want.is_some());
            }
            // Under the partial node of `min_level`: every complete node.
            let under = size - start;
            let expect: u64 = (0..min_level).map(|l| under >> l).sum();
            assert_eq!(held as u64, expect, "at {size}");
        };
        // Batches inside the partial node, ending on its end, and past it.
        for n in [1, 2, 1, 3, 250, 6, 256, 1, 700, 300] {
            append(&cached, &mut edge, n);
            check(&cached, edge.size(), &mut all);
            check_contents(&cached, edge.size());
        }
        // A commit the cache did not see, then one it did: what it holds
        // is right (a node it lacks is read from the store).
        append(inner.as_ref(), &mut edge, 5);
        append(&cached, &mut edge, 2);
        check_contents(&cached, edge.size());
        // Reopened: loaded from the store.
        let reopened = UpperLevels::open(inner, min_level).unwrap();
        check(&reopened, edge.size(), &mut all);
    }
}
