//! The epoch runner, against a real RocksDB store: epochs commit in order with their numbers,
//! small ones on the submitter's thread and large ones on the runner's own, the post-commit
//! hook sees each once after its writes are readable, and what the hook stages commits with
//! the epoch.

use std::sync::{Arc, Mutex};

use freshet_common::{Datum, TableId};
use freshet_dataflow::runner::{CommitHook, Durability, EpochRunner, INLINE_ROWS};
use freshet_dataflow::{Dataflows, EpochChanges};
use freshet_state::{StateConfig, Store, WriteBatch};

struct Recorder {
    store: Store,
    /// (epoch, its staged write readable, committed on the runner's thread)
    seen: Mutex<Vec<(u64, bool, bool)>>,
}

impl CommitHook for Recorder {
    fn stage(&self, epoch: u64, _changes: &EpochChanges, batch: &mut WriteBatch) {
        batch.put(format!("staged/{epoch}").into_bytes(), b"1".to_vec());
    }

    fn committed(&self, epoch: u64, _changes: &EpochChanges) {
        let key = format!("staged/{epoch}").into_bytes();
        let visible = self.store.get(&key).expect("read").is_some();
        let on_runner = std::thread::current().name() == Some("freshet-epochs");
        self.seen.lock().expect("lock").push((epoch, visible, on_runner));
    }
}

#[test]
fn epochs_commit_in_order_small_ones_inline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &StateConfig::for_test()).expect("store");
    let runner = EpochRunner::start(store.clone(), Arc::new(Dataflows::default()), 7, 1 << 20)
        .expect("runner");
    let hook = Arc::new(Recorder {
        store: store.clone(),
        seen: Mutex::default(),
    });
    runner.set_hook(hook.clone());
    futures::executor::block_on(async {
        for i in 0..3u8 {
            let mut batch = WriteBatch::default();
            batch.put(vec![b'k', i], vec![i]);
            // The second epoch changes more rows than run inline (of a table no view reads).
            let mut changes = EpochChanges::default();
            let rows = if i == 1 { INLINE_ROWS + 1 } else { 1 };
            changes.add(TableId(1), (0..rows).map(|_| vec![Datum::Null]), 1);
            runner
                .commit(batch, changes, Durability::Synced)
                .await
                .expect("commit");
        }
        runner.idle().await;
    });
    assert_eq!(runner.epoch(), 10);
    assert_eq!(
        *hook.seen.lock().expect("lock"),
        vec![(8, true, false), (9, true, true), (10, true, false)]
    );
    for i in 0..3u8 {
        assert_eq!(store.get(&[b'k', i]).expect("read"), Some(vec![i]));
    }
    let number = store
        .get(&freshet_state::changelog::epoch_key())
        .expect("read")
        .expect("epoch number stored");
    assert_eq!(number, 10u64.to_be_bytes().to_vec());
}
