//! Tests of the store: snapshots, scans, format versions.

use super::*;

#[test]
fn another_format_version_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StateConfig::for_test()).unwrap();
    let mut b = WriteBatch::default();
    b.put(crate::meta_key(FORMAT_KEY), 7u32.to_be_bytes());
    store.write(b).unwrap();
    drop(store);
    // The handle is leaked (see `Store`); a second open of the same directory in this
    // process would fail on RocksDB's lock, so check a copy of the files instead.
    let copy = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(dir.path()).unwrap() {
        let f = f.unwrap();
        if f.file_name() != "LOCK" {
            std::fs::copy(f.path(), copy.path().join(f.file_name())).unwrap();
        }
    }
    let err = Store::open(copy.path(), &StateConfig::for_test()).unwrap_err().to_string();
    assert!(err.contains("version 7") && err.contains(&format!("version {FORMAT_VERSION}")), "{err}");
}

#[test]
fn write_is_visible_to_later_snapshots_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StateConfig::for_test()).unwrap();
    let before = store.snapshot();
    let mut b = WriteBatch::default();
    b.put(b"da1", b"x");
    b.put(b"da2", b"y");
    b.put(b"db1", b"z");
    store.write(b).unwrap();
    assert!(before.scan(b"da", b"", None, 10).unwrap().is_empty());
    let after = store.snapshot();
    let rows = after.scan(b"da", b"", None, 10).unwrap();
    assert_eq!(rows.len(), 2);
    let resumed = after.scan(b"da", &next_key(&rows[0].0), None, 10).unwrap();
    assert_eq!(&*resumed[0].0, b"da2");
    assert_eq!(store.last_key_with_prefix(b"da").unwrap().unwrap(), b"da2");
    let mut del = WriteBatch::default();
    Store::delete_prefix(&mut del, b"da");
    store.write(del).unwrap();
    assert!(store
        .snapshot()
        .scan(b"da", b"", None, 10)
        .unwrap()
        .is_empty());
    assert_eq!(
        store.snapshot().scan(b"db", b"", None, 10).unwrap().len(),
        1
    );
}

#[test]
fn reverse_scans_stay_in_their_prefix_and_below_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StateConfig::for_test()).unwrap();
    let mut b = WriteBatch::default();
    for k in [&b"oa"[..], b"ob1", b"ob2", b"ob3", b"oc"] {
        b.put(k, b"v");
    }
    store.write(b).unwrap();
    let s = store.snapshot();
    let keys =
        |rows: Entries| -> Vec<Vec<u8>> { rows.into_iter().map(|(k, _)| k.to_vec()).collect() };
    assert_eq!(
        keys(s.scan_reverse(b"ob", None, 10).unwrap()),
        vec![b"ob3".to_vec(), b"ob2".to_vec(), b"ob1".to_vec()]
    );
    assert_eq!(
        keys(s.scan_reverse(b"ob", Some(b"ob3"), 1).unwrap()),
        vec![b"ob2".to_vec()]
    );
    assert!(s.scan_reverse(b"ob", Some(b"ob1"), 10).unwrap().is_empty());
    assert!(s.scan_reverse(b"od", None, 10).unwrap().is_empty());
}

/// The representation `WriteBatch::rocksdb_rep` builds is byte for byte the one RocksDB
/// builds through its API, in every family and for every kind of write.
#[test]
fn rep_matches_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StateConfig::for_test()).unwrap();
    let fill = |b: &mut WriteBatch, range: bool| {
        for (i, first) in [b'd', b'o', b'a', b'l', b'm', b's', b'v', b'z', b'o']
            .into_iter()
            .enumerate()
        {
            let key = |n: u8| vec![first, n, i as u8];
            b.put(key(3), vec![7u8; 200 * i]);
            b.merge(key(1), counted(2, b"x"));
            b.delete(key(2));
            b.put(key(0), b"");
            if range && i % 2 == 0 {
                b.delete_range(key(0), key(9));
            }
        }
    };
    for range in [false, true] {
        let mut ours = WriteBatch::default();
        fill(&mut ours, range);
        let families = store.families;
        let rep = ours.rocksdb_rep(|k| families.id_of(k));
        let mut theirs = WriteBatch::default();
        fill(&mut theirs, range);
        let mut rb = rocksdb::WriteBatch::default();
        for (kind, key, value) in theirs.ordered() {
            let cf = families.of(key);
            match kind {
                WriteKind::Put => rb.put_cf(cf, key, value),
                WriteKind::Delete => rb.delete_cf(cf, key),
                WriteKind::Merge => rb.merge_cf(cf, key, value),
                WriteKind::DeleteRange => rb.delete_range_cf(cf, key, value),
            }
        }
        assert_eq!(rep, rb.data(), "range deletes: {range}");
    }
    // And RocksDB applies it.
    let mut b = WriteBatch::default();
    b.put(b"d\x01k", b"v");
    store.write(b).unwrap();
    assert_eq!(store.get(b"d\x01k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn merges_add_counts_and_keep_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StateConfig::for_test()).unwrap();
    let mut b = WriteBatch::default();
    b.put(b"k1", counted(2, b"row"));
    b.merge(b"k1", counted(3, b"row"));
    b.merge(b"k2", counted(1, b"other"));
    b.merge(b"k2", counted(4, b"other"));
    store.write(b).unwrap();
    let s = store.snapshot();
    assert_eq!(s.get(b"k1").unwrap().unwrap(), counted(5, b"row"));
    assert_eq!(s.get(b"k2").unwrap().unwrap(), counted(5, b"other"));
    let mut b = WriteBatch::default();
    b.merge(b"k1", counted(-5, b"row"));
    store.write(b).unwrap();
    assert_eq!(store.get(b"k1").unwrap().unwrap(), counted(0, b"row"));
}

#[test]
fn scan_prefixes_equals_a_scan_per_prefix_in_any_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), &StateConfig::for_test()).unwrap();
    let mut b = WriteBatch::default();
    for k in [&b"da1"[..], b"da2", b"da22", b"dc", b"dc\x00", b"de1", b"dz"] {
        b.put(k, k);
    }
    store.write(b).unwrap();
    let snap = store.snapshot();
    // Sorted, absent between present ones, nested, repeated, going back, past the end.
    let prefixes: Vec<&[u8]> = vec![
        b"d0", b"da", b"da2", b"da22", b"db", b"dc", b"dc", b"dd", b"de", b"da1", b"dz", b"dzz", b"d",
    ];
    let got = snap.scan_prefixes(&prefixes).unwrap();
    for (p, entries) in prefixes.iter().zip(got) {
        assert_eq!(entries, snap.scan_prefix(p).unwrap(), "prefix {:?}", String::from_utf8_lossy(p));
    }
}
