//! Cursors and SUBSCRIBE in a session. `SUBSCRIBE` streams as COPY data (see
//! `pg/subscribe.rs`). A cursor reads a query's rows (`DECLARE … CURSOR FOR query`: the query
//! runs over the snapshot of its DECLARE, and each FETCH pulls the next rows of its stream), or
//! a subscription's changes (`DECLARE … CURSOR FOR SUBSCRIBE`, as in Materialize: a FETCH
//! waits for the next epoch when nothing is ready). A cursor closes when the transaction
//! block that declared it ends, unless it is `WITH HOLD` and the block commits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use freshet_common::{PgError, SqlState};
use freshet_sql::error::map_df_error;
use freshet_sql::{ast, FetchCount, SubscribePlan};
use futures::StreamExt;

use super::{Outcome, Session};
use crate::coord::Subscription;

/// A session's open cursors, by name.
#[derive(Default)]
pub struct Cursors(HashMap<String, Cursor>);

struct Cursor {
    schema: SchemaRef,
    /// Taken out while a FETCH or MOVE reads it.
    rows: Option<Rows>,
    /// `WITH HOLD`: kept when its block commits.
    hold: bool,
    /// Declared outside a block, or in a block that committed: kept until CLOSE or the end
    /// of the session (only `WITH HOLD` cursors get there).
    committed: bool,
}

enum Rows {
    Subscription(Box<Subscription>),
    Query {
        stream: SendableRecordBatchStream,
        /// The rows of the last batch read that no FETCH has returned yet.
        pending: Option<RecordBatch>,
    },
}

impl Rows {
    /// The next rows, at most `max`; for a subscription, waiting (until `deadline`) when
    /// none is ready.
    async fn next(
        &mut self,
        max: usize,
        deadline: Option<Instant>,
    ) -> Result<Vec<RecordBatch>, PgError> {
        if max == 0 {
            return Ok(vec![]);
        }
        let (stream, pending) = match self {
            Rows::Subscription(sub) => {
                return Ok(sub.next_batch(max, deadline).await?.into_iter().collect())
            }
            Rows::Query { stream, pending } => (stream, pending),
        };
        let mut out = Vec::new();
        let mut n = 0;
        while n < max {
            let batch = match pending.take() {
                Some(b) => b,
                None => match stream.next().await {
                    Some(b) => b.map_err(|e| map_df_error(&e))?,
                    None => break,
                },
            };
            let want = max - n;
            if batch.num_rows() > want {
                out.push(batch.slice(0, want));
                *pending = Some(batch.slice(want, batch.num_rows() - want));
                n = max;
            } else {
                n += batch.num_rows();
                out.push(batch);
            }
        }
        Ok(out)
    }
}

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
    pub(super) async fn declare_subscribe(
        &self,
        cursor: String,
        plan: &SubscribePlan,
    ) -> Result<Outcome, PgError> {
        self.check_declare(&cursor, false)?;
        let sub = Subscription::start(&self.engine, plan, &self.statement_state()).await?;
        let schema = Arc::clone(&sub.schema);
        Ok(self.add_cursor(cursor, schema, Rows::Subscription(Box::new(sub)), false))
    }

    /// `DECLARE name CURSOR [WITH HOLD] FOR query`: the query starts now, over the statement's
    /// snapshot; FETCH reads on.
    pub(super) async fn declare_query(
        &self,
        cursor: String,
        query: ast::Statement,
        hold: bool,
        params: Option<ParamValues>,
    ) -> Result<Outcome, PgError> {
        self.check_declare(&cursor, hold)?;
        let rows = match self.point_select(&query, params.as_ref()).await? {
            Some(rows) => rows,
            None => self.run_query(query, params).await?,
        };
        // The query's rows are read by later statements, not timed by this one's timeout.
        self.take_deadline();
        let Outcome::Rows { schema, stream, .. } = rows else {
            return Err(PgError::not_supported(
                "a cursor over a statement that returns no rows",
            ));
        };
        let rows = Rows::Query {
            stream,
            pending: None,
        };
        Ok(self.add_cursor(cursor, schema, rows, hold))
    }

    fn check_declare(&self, cursor: &str, hold: bool) -> Result<(), PgError> {
        if !hold && !self.block().is_open() {
            return Err(PgError::new(
                SqlState::NO_ACTIVE_SQL_TRANSACTION,
                "DECLARE CURSOR can only be used in transaction blocks",
            ));
        }
        if self.cursors().0.contains_key(cursor) {
            return Err(PgError::new(
                SqlState::DUPLICATE_CURSOR,
                format!("cursor \"{cursor}\" already exists"),
            ));
        }
        Ok(())
    }

    fn add_cursor(&self, name: String, schema: SchemaRef, rows: Rows, hold: bool) -> Outcome {
        let committed = !self.block().is_open();
        self.cursors().0.insert(
            name,
            Cursor {
                schema,
                rows: Some(rows),
                hold,
                committed,
            },
        );
        Outcome::Command {
            tag: "DECLARE CURSOR",
            rows: None,
        }
    }

    /// `FETCH [count | ALL] name [WITH (timeout = …)]`: the next rows. From a subscription,
    /// what is ready; when nothing is, it waits for at least one row (at most `timeout`).
    pub(super) async fn fetch(
        &self,
        cursor: &str,
        count: FetchCount,
        timeout: Option<Duration>,
    ) -> Result<Outcome, PgError> {
        let schema = self
            .cursor_schema(cursor)
            .ok_or_else(|| no_cursor(cursor))?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let batches = self.read_cursor(cursor, count, deadline).await?;
        let stream = RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter(batches.into_iter().map(Ok)),
        );
        Ok(Outcome::Rows {
            schema,
            stream: Box::pin(stream),
            tag: Some("FETCH"),
        })
    }

    /// `MOVE [count | ALL] name`: skips rows of a query's cursor.
    pub(super) async fn move_cursor(
        &self,
        cursor: &str,
        count: FetchCount,
    ) -> Result<Outcome, PgError> {
        let subscribed = matches!(
            self.cursors().0.get(cursor),
            Some(Cursor {
                rows: Some(Rows::Subscription(_)),
                ..
            })
        );
        if subscribed {
            return Err(PgError::not_supported("MOVE on a SUBSCRIBE cursor"));
        }
        let batches = self.read_cursor(cursor, count, None).await?;
        let moved = batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        Ok(Outcome::Command {
            tag: "MOVE",
            rows: Some(moved as u64),
        })
    }

    /// The next `count` rows of `cursor`, which is out of the map meanwhile.
    async fn read_cursor(
        &self,
        cursor: &str,
        count: FetchCount,
        deadline: Option<Instant>,
    ) -> Result<Vec<RecordBatch>, PgError> {
        let mut rows = {
            let mut cursors = self.cursors();
            let c = cursors.0.get_mut(cursor).ok_or_else(|| no_cursor(cursor))?;
            c.rows.take().ok_or_else(|| {
                PgError::new(
                    SqlState::INVALID_CURSOR_STATE,
                    format!("cursor \"{cursor}\" is in use"),
                )
            })?
        };
        let max = match count {
            FetchCount::All => usize::MAX,
            FetchCount::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let result = rows.next(max, deadline).await;
        if let Some(c) = self.cursors().0.get_mut(cursor) {
            c.rows = Some(rows);
        }
        result
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

    /// The block that declared cursors ended: a commit keeps its `WITH HOLD` cursors, and
    /// every other cursor it declared closes.
    pub(super) fn end_block_cursors(&self, committed: bool) {
        self.cursors().0.retain(|_, c| {
            if c.committed {
                return true;
            }
            c.committed = committed && c.hold;
            c.committed
        });
    }

    /// The columns `FETCH … cursor` returns, if the cursor exists.
    pub fn cursor_schema(&self, cursor: &str) -> Option<SchemaRef> {
        self.cursors().0.get(cursor).map(|c| Arc::clone(&c.schema))
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
