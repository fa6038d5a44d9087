//! What each session is doing, for `pg_stat_activity`: every session registers its
//! [`Activity`] and updates it as statements start and end; the catalog reads the live ones.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};

/// One session's state as `pg_stat_activity` shows it.
#[derive(Debug, Clone)]
pub struct ActivityState {
    /// The backend process ID clients were given at startup (`BackendKeyData`).
    pub pid: i32,
    pub user: String,
    pub application_name: String,
    pub client: Option<SocketAddr>,
    /// Microseconds since 1970-01-01 UTC.
    pub backend_start: i64,
    pub xact_start: Option<i64>,
    pub query_start: Option<i64>,
    pub state_change: i64,
    /// `active`, `idle`, `idle in transaction`, `idle in transaction (aborted)`; empty
    /// before the login completes.
    pub state: &'static str,
    pub query: String,
}

/// A session's activity, updated by the session and read by the catalog.
#[derive(Debug)]
pub struct Activity {
    state: Mutex<ActivityState>,
}

fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

impl Activity {
    fn update(&self, f: impl FnOnce(&mut ActivityState)) {
        f(&mut self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub fn set_pid(&self, pid: i32) {
        self.update(|s| s.pid = pid);
    }

    pub fn set_client(&self, client: SocketAddr) {
        self.update(|s| s.client = Some(client));
    }

    /// The login completed as `user`: the session is idle.
    pub fn logged_in(&self, user: &str) {
        self.update(|s| {
            s.user = user.to_owned();
            s.state = "idle";
            s.state_change = now_micros();
        });
    }

    /// A statement starts (`in_block`: inside a transaction block already open).
    pub fn statement_started(&self, query: String, application_name: String, in_block: bool) {
        let now = now_micros();
        self.update(|s| {
            s.query = query;
            s.application_name = application_name;
            s.query_start = Some(now);
            s.state_change = now;
            s.state = "active";
            if !in_block || s.xact_start.is_none() {
                s.xact_start = Some(now);
            }
        });
    }

    /// The statement ended; the session is idle, in its block (`failed`: the block failed)
    /// or outside any.
    pub fn statement_ended(&self, application_name: String, in_block: bool, failed: bool) {
        self.update(|s| {
            s.application_name = application_name;
            s.state_change = now_micros();
            s.state = match (in_block, failed) {
                (false, _) => "idle",
                (true, false) => "idle in transaction",
                (true, true) => "idle in transaction (aborted)",
            };
            if !in_block {
                s.xact_start = None;
            }
        });
    }
}

/// The activities of the live sessions.
#[derive(Debug, Default)]
pub struct Activities {
    all: Mutex<Vec<Weak<Activity>>>,
}

impl Activities {
    /// A new session's activity, listed for as long as the session holds it.
    pub fn register(&self) -> Arc<Activity> {
        let now = now_micros();
        let activity = Arc::new(Activity {
            state: Mutex::new(ActivityState {
                pid: 0,
                user: String::new(),
                application_name: String::new(),
                client: None,
                backend_start: now,
                xact_start: None,
                query_start: None,
                state_change: now,
                state: "",
                query: String::new(),
            }),
        });
        let mut all = self
            .all
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|a| a.strong_count() > 0);
        all.push(Arc::downgrade(&activity));
        activity
    }

    /// The live sessions' states, in the order they connected.
    pub fn snapshot(&self) -> Vec<ActivityState> {
        let all = self
            .all
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.iter()
            .filter_map(Weak::upgrade)
            .map(|a| {
                a.state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_listed_while_they_live() {
        let all = Activities::default();
        let a = all.register();
        let b = all.register();
        a.logged_in("alice");
        a.statement_started("BEGIN".into(), "app".into(), false);
        a.statement_ended("app".into(), true, false);
        b.statement_started("SELECT 1".into(), String::new(), false);
        let states = all.snapshot();
        assert_eq!(states.len(), 2);
        assert_eq!(
            (states[0].user.as_str(), states[0].state),
            ("alice", "idle in transaction")
        );
        assert!(states[0].xact_start.is_some());
        assert_eq!(
            (states[1].state, states[1].query.as_str()),
            ("active", "SELECT 1")
        );
        drop(b);
        assert_eq!(all.snapshot().len(), 1);
    }
}
