//! The epoch runner's own thread, against a real RocksDB store: epochs commit in order with
//! their numbers, the post-commit hook sees each once after its writes are readable, and
//! what the hook stages commits with the epoch.

use std::sync::{Arc, Mutex};

use freshet_dataflow::runner::{CommitHook, Durability, EpochRunner};
use freshet_dataflow::{Dataflows, EpochChanges};
use freshet_state::{StateConfig, Store, WriteBatch};

struct Recorder {
    store: Store,
    seen: Mutex<Vec<(u64, bool)>>,
}

impl CommitHook for Recorder {
    fn stage(&self, epoch: u64, _changes: &EpochChanges, batch: &mut WriteBatch) {
        batch.put(format!("staged/{epoch}").into_bytes(), b"1".to_vec());
    }

    fn committed(&self, epoch: u64, _changes: &EpochChanges) {
        let key = format!("staged/{epoch}").into_bytes();
        let visible = self.store.get(&key).expect("read").is_some();
        self.seen.lock().expect("lock").push((epoch, visible));
    }
}

#[test]
fn epochs_commit_in_order_on_the_runner_thread() {
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
            runner
                .commit(batch, EpochChanges::default(), Durability::Synced)
                .await
                .expect("commit");
        }
        runner.idle().await;
    });
    assert_eq!(runner.epoch(), 10);
    assert_eq!(
        *hook.seen.lock().expect("lock"),
        vec![(8, true), (9, true), (10, true)]
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
