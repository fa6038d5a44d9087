//! LISTEN / NOTIFY between sessions, and notifications of view changes: a session listening
//! on a channel named like a materialized view (or table) gets one notification per committed
//! epoch that changed it, its payload `{"epoch": …, "inserted": …, "deleted": …}`.
//!
//! Each connection owns an unbounded queue of notifications that its connection loop
//! (`pg/serve.rs`) delivers while the session is idle; payloads are small, and a connection
//! that never reads them is one whose socket is gone.

use std::collections::HashMap;
use std::sync::Mutex;

use freshet_common::TableId;
use freshet_dataflow::{Dataflows, EpochChanges};
use tokio::sync::mpsc::UnboundedSender;

/// One notification as the client receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The notifying session's process id (0 for view changes).
    pub pid: i32,
    pub channel: String,
    pub payload: String,
}

/// Who listens on what.
#[derive(Debug, Default)]
pub struct Listeners {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Channel → listening sessions.
    channels: HashMap<String, HashMap<u64, UnboundedSender<Notification>>>,
    /// Channels that name a relation: its changes are notified on them.
    relations: HashMap<TableId, String>,
}

impl Listeners {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Session `session` listens on `channel` (a no-op if it already does). `relation`: the
    /// view or table the channel names, whose changes then get notified on it.
    pub fn listen(
        &self,
        dataflows: &Dataflows,
        session: u64,
        tx: &UnboundedSender<Notification>,
        channel: &str,
        relation: Option<TableId>,
    ) {
        let mut inner = self.inner();
        inner
            .channels
            .entry(channel.to_owned())
            .or_default()
            .insert(session, tx.clone());
        if let Some(rel) = relation {
            if !inner.relations.contains_key(&rel) {
                inner.relations.insert(rel, channel.to_owned());
                dataflows.observe(rel, true);
            }
        }
    }

    /// Session `session` stops listening on `channel`, or on every channel when `None`.
    pub fn unlisten(&self, dataflows: &Dataflows, session: u64, channel: Option<&str>) {
        let mut inner = self.inner();
        let names: Vec<String> = match channel {
            Some(c) => vec![c.to_owned()],
            None => inner.channels.keys().cloned().collect(),
        };
        for name in names {
            let emptied = match inner.channels.get_mut(&name) {
                Some(l) => {
                    l.remove(&session);
                    l.is_empty()
                }
                None => false,
            };
            if emptied {
                inner.channels.remove(&name);
                let rels: Vec<TableId> = inner
                    .relations
                    .iter()
                    .filter(|(_, c)| **c == name)
                    .map(|(r, _)| *r)
                    .collect();
                for rel in rels {
                    inner.relations.remove(&rel);
                    dataflows.observe(rel, false);
                }
            }
        }
    }

    /// `NOTIFY channel, payload` (committed): every listener of `channel` gets it.
    pub fn notify(&self, pid: i32, channel: &str, payload: &str) {
        let inner = self.inner();
        if let Some(listeners) = inner.channels.get(channel) {
            for tx in listeners.values() {
                let _ = tx.send(Notification {
                    pid,
                    channel: channel.to_owned(),
                    payload: payload.to_owned(),
                });
            }
        }
    }

    /// After epoch `epoch` commits: one notification per listened relation it changed.
    pub fn publish(&self, epoch: u64, changes: &EpochChanges) {
        let inner = self.inner();
        if inner.relations.is_empty() {
            return;
        }
        for (rel, channel) in &inner.relations {
            let Some(rows) = changes.tables.get(rel).filter(|r| !r.is_empty()) else {
                continue;
            };
            // Consolidated: a row that left and came back is no change.
            let mut net: HashMap<Vec<u8>, i64> = HashMap::with_capacity(rows.len());
            for (row, w) in rows {
                let mut k = Vec::new();
                freshet_state::key_codec::encode_key(row, &mut k);
                *net.entry(k).or_insert(0) += w;
            }
            let inserted: i64 = net.values().map(|w| (*w).max(0)).sum();
            let deleted: i64 = net.values().map(|w| (-*w).max(0)).sum();
            if inserted == 0 && deleted == 0 {
                continue;
            }
            let payload = format!(
                "{{\"epoch\": {epoch}, \"inserted\": {inserted}, \"deleted\": {deleted}}}"
            );
            if let Some(listeners) = inner.channels.get(channel) {
                for tx in listeners.values() {
                    let _ = tx.send(Notification {
                        pid: 0,
                        channel: channel.clone(),
                        payload: payload.clone(),
                    });
                }
            }
        }
    }
}
