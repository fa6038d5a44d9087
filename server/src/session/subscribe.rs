//! SUBSCRIBE in a session: streamed as COPY data (see `pg/subscribe.rs`), or read through a
//! cursor (`DECLARE … CURSOR FOR SUBSCRIBE`, `FETCH`, `CLOSE`) inside a transaction block, as
//! in Materialize. Cursors close when the block ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use freshet_common::{PgError, SqlState};
use freshet_sql::{FetchCount, SubscribePlan};

use super::{Outcome, Session};
use crate::coord::Subscription;

/// A session's open cursors: each one's columns, and its subscription (taken out while a
/// FETCH waits on it).
#[derive(Default)]
pub struct Cursors(HashMap<String, (SchemaRef, Option<Box<Subscription>>)>);

impl Session {
    /// `SUBSCRIBE …` / `COPY (SUBSCRIBE …) TO STDOUT`: the protocol layer streams it.
    pub(super) async fn subscribe(&self, plan: &SubscribePlan) -> Result<Outcome, PgError> {
        if self.block().is_open() {
            return Err(PgError::new(
                SqlState::ACTIVE_SQL_TRANSACTION,
                "SUBSCRIBE cannot run inside a transaction block; use DECLARE … CURSOR FOR SUBSCRIBE",
            ));
        }
        let sub = Subscription::start(&self.engine, plan, &self.statement_state()).await?;
        Ok(Outcome::Subscribe(Box::new(sub)))
    }

    /// `DECLARE name CURSOR FOR SUBSCRIBE …`.
    pub(super) async fn declare(&self, cursor: String, plan: &SubscribePlan) -> Result<Outcome, PgError> {
        if !self.block().is_open() {
            return Err(PgError::new(
                SqlState::NO_ACTIVE_SQL_TRANSACTION,
                "DECLARE CURSOR can only be used in transaction blocks",
            ));
        }
        if self.cursors().0.contains_key(&cursor) {
            return Err(PgError::new(
                SqlState::DUPLICATE_CURSOR,
                format!("cursor \"{cursor}\" already exists"),
            ));
        }
        let sub = Subscription::start(&self.engine, plan, &self.statement_state()).await?;
        self.cursors()
            .0
            .insert(cursor, (Arc::clone(&sub.schema), Some(Box::new(sub))));
        Ok(Outcome::Command {
            tag: "DECLARE CURSOR",
            rows: None,
        })
    }

    /// `FETCH [count | ALL] name [WITH (timeout = …)]`: what is ready; when nothing is,
    /// waits for at least one row (at most `timeout`).
    pub(super) async fn fetch(
        &self,
        cursor: &str,
        count: FetchCount,
        timeout: Option<Duration>,
    ) -> Result<Outcome, PgError> {
        let (schema, sub) = {
            let mut cursors = self.cursors();
            let Some((schema, slot)) = cursors.0.get_mut(cursor) else {
                return Err(no_cursor(cursor));
            };
            let sub = slot.take().ok_or_else(|| {
                PgError::new(
                    SqlState::INVALID_CURSOR_STATE,
                    format!("cursor \"{cursor}\" is in use"),
                )
            })?;
            (Arc::clone(schema), sub)
        };
        let mut sub = sub;
        let max = match count {
            FetchCount::All => usize::MAX,
            FetchCount::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let deadline = timeout.map(|t| Instant::now() + t);
        let result = if max == 0 {
            Ok(None)
        } else {
            sub.next_batch(max, deadline).await
        };
        if let Some((_, slot)) = self.cursors().0.get_mut(cursor) {
            *slot = Some(sub);
        }
        let batches = match result? {
            Some(b) => vec![Ok(b)],
            None => vec![],
        };
        let stream = RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter(batches),
        );
        Ok(Outcome::Rows {
            schema,
            stream: Box::pin(stream),
            tag: Some("FETCH"),
        })
    }

    /// `CLOSE name` / `CLOSE ALL`.
    pub(super) fn close_cursor(&self, cursor: Option<&str>) -> Result<Outcome, PgError> {
        let mut cursors = self.cursors();
        match cursor {
            Some(name) => {
                cursors.0.remove(name).ok_or_else(|| no_cursor(name))?;
            }
            None => cursors.0.clear(),
        }
        Ok(Outcome::Command {
            tag: "CLOSE CURSOR",
            rows: None,
        })
    }

    /// Closes every cursor: the transaction block they belong to ended.
    pub(super) fn close_cursors(&self) {
        self.cursors().0.clear();
    }

    /// The columns `FETCH … cursor` returns, if the cursor exists.
    pub fn cursor_schema(&self, cursor: &str) -> Option<SchemaRef> {
        self.cursors().0.get(cursor).map(|(s, _)| Arc::clone(s))
    }

    fn cursors(&self) -> std::sync::MutexGuard<'_, Cursors> {
        self.cursors
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn no_cursor(name: &str) -> PgError {
    PgError::new(
        SqlState::INVALID_CURSOR_NAME,
        format!("cursor \"{name}\" does not exist"),
    )
}
