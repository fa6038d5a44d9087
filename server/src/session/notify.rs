//! LISTEN, UNLISTEN and NOTIFY in a session. A NOTIFY inside a transaction block is sent when
//! the block commits, and dropped when it rolls back, as in PostgreSQL; duplicates within one
//! block are sent once.

use std::sync::atomic::{AtomicU64, Ordering};

use freshet_common::PgError;
use tokio::sync::mpsc::UnboundedSender;

use super::{Outcome, Session};
use crate::coord::notify::Notification;

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A session's side of notifications: its id, where its notifications go, and the NOTIFYs
/// of its open block.
#[derive(Debug, Default)]
pub struct Notifier {
    pub id: u64,
    tx: Option<UnboundedSender<Notification>>,
    pending: Vec<(String, String)>,
}

impl Notifier {
    /// A session's notifier delivering to `tx` (none: this session cannot LISTEN).
    pub fn new(tx: Option<UnboundedSender<Notification>>) -> Self {
        Self {
            id: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
            tx,
            pending: Vec::new(),
        }
    }
}

impl Session {
    pub(super) fn listen(&self, channel: &str) -> Result<Outcome, PgError> {
        let n = self.notifier();
        let Some(tx) = &n.tx else {
            return Err(PgError::not_supported("LISTEN on this connection"));
        };
        let relation = self
            .engine
            .catalog
            .view(channel)
            .map(|v| v.id)
            .or_else(|| self.engine.catalog.table(channel).map(|t| t.id));
        self.engine
            .listeners
            .listen(&self.engine.dataflows, n.id, tx, channel, relation);
        Ok(Outcome::Command {
            tag: "LISTEN",
            rows: None,
        })
    }

    pub(super) fn unlisten(&self, channel: Option<&str>) -> Outcome {
        let id = self.notifier().id;
        self.engine
            .listeners
            .unlisten(&self.engine.dataflows, id, channel);
        Outcome::Command {
            tag: "UNLISTEN",
            rows: None,
        }
    }

    pub(super) fn notify(&self, channel: String, payload: String) -> Outcome {
        if self.block().is_open() {
            let mut n = self.notifier();
            if !n.pending.contains(&(channel.clone(), payload.clone())) {
                n.pending.push((channel, payload));
            }
        } else {
            let pid = self.notifier().id as i32;
            self.engine.listeners.notify(pid, &channel, &payload);
        }
        Outcome::Command {
            tag: "NOTIFY",
            rows: None,
        }
    }

    /// The block ended: its NOTIFYs go out if it committed.
    pub(super) fn block_ended(&self, committed: bool) {
        let (pid, pending) = {
            let mut n = self.notifier();
            (n.id as i32, std::mem::take(&mut n.pending))
        };
        if committed {
            for (channel, payload) in pending {
                self.engine.listeners.notify(pid, &channel, &payload);
            }
        }
    }

    fn notifier(&self) -> std::sync::MutexGuard<'_, Notifier> {
        self.notifier
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let id = self.notifier().id;
        self.engine
            .listeners
            .unlisten(&self.engine.dataflows, id, None);
        // A session that ends inside a block ends the block: its row locks go.
        if let Some(owner) = self.block().owner() {
            self.engine.row_locks.release(owner);
        }
    }
}
