//! How a session plans and runs queries: the DataFusion state of a statement (time zone,
//! identity, sequences) and its read snapshot, point queries answered without planning,
//! `statement_timeout`, and `EXPLAIN` of DELETE/UPDATE.

use std::sync::Arc;

use datafusion::arrow::array::{Array, UInt64Array};
use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use freshet_common::PgError;
use freshet_sql::ast;
use freshet_sql::error::map_df_error;

use super::{explain_plan, lock, pg_schema, statement_timeout, Outcome, Session};
use crate::query::StatementSnapshot;

impl Session {
    /// `EXPLAIN [ANALYZE]` of a DELETE or UPDATE: the plan of its read query. Only ANALYZE
    /// runs the statement.
    pub(super) async fn explain_dml(
        &self,
        explain: freshet_sql::ExplainDml,
        params: Option<ParamValues>,
    ) -> Result<Outcome, PgError> {
        crate::query::dml::dml_target(&self.engine, &explain.plan)?;
        if explain.analyze {
            crate::query::dml::execute(
                &self.engine,
                self.statement_state(),
                &explain.plan,
                params.clone(),
                self.current_writes(),
            )
            .await?;
        }
        let state = self.statement_state();
        let plan = explain_plan(&state, &explain, params).await?;
        let schema = pg_schema(&plan);
        let state = self.with_snapshot(state, &plan).await?;
        let stream = DataFrame::new(state, plan)
            .execute_stream()
            .await
            .map_err(|e| map_df_error(&e))?;
        Ok(Outcome::Rows {
            schema,
            stream,
            tag: None,
        })
    }

    /// The DataFusion state a statement is planned with: the session's time zone. Its read
    /// snapshot comes once planned ([`Session::with_snapshot`]).
    pub(super) fn statement_state(&self) -> datafusion::execution::SessionState {
        let mut state = self.ctx.state();
        let tz = self.with_vars(|v| v.datafusion_time_zone());
        state.config_mut().options_mut().execution.time_zone = tz;
        state
            .config_mut()
            .set_extension(Arc::new(crate::access::StatementIdentity {
                identity: crate::access::Identity::clone(&self.identity()),
                catalog: Arc::clone(&self.engine.catalog),
            }));
        state
            .config_mut()
            .set_extension(Arc::clone(&self.sequences));
        // Read only when a statement scans pg_settings.
        let vars = Arc::clone(&self.vars);
        state
            .config_mut()
            .set_extension(Arc::new(crate::query::pg_settings::SessionSettings(Box::new(
                move || lock(&vars).settings(),
            ))));
        state
    }

    /// Gives the planned statement `plan` its read snapshot: the latest commit, in which
    /// every aggregate view it reads has its contents log folded (see
    /// [`Engine::read_snapshot`]); statements reading no such view never wait for a fold.
    pub(super) async fn with_snapshot(
        &self,
        mut state: datafusion::execution::SessionState,
        plan: &LogicalPlan,
    ) -> Result<datafusion::execution::SessionState, PgError> {
        if let Some(block) = self.current_writes() {
            // In a block: its snapshot, with its pending writes laid over.
            let snapshot = Arc::clone(&block.snapshot);
            state.config_mut().set_extension(block);
            state
                .config_mut()
                .set_extension(Arc::new(StatementSnapshot(snapshot)));
            return Ok(state);
        }
        let snapshot = if crate::query::reads_logged_view(plan) {
            self.engine
                .read_snapshot()
                .await
                .map_err(|e| map_df_error(&e))?
        } else {
            self.engine.store.snapshot()
        };
        state
            .config_mut()
            .set_extension(Arc::new(StatementSnapshot(Arc::new(snapshot))));
        Ok(state)
    }

    pub(super) async fn plan(
        &self,
        stmt: ast::Statement,
    ) -> Result<(datafusion::execution::SessionState, LogicalPlan), PgError> {
        let state = self.statement_state();
        let plan = crate::query::plan_statement(&state, stmt).await?;
        Ok((state, plan))
    }

    /// A query that names its rows by key, answered from the store without planning
    /// (`query/point.rs`); `None` for every other query.
    pub(super) async fn point_select(
        &self,
        stmt: &ast::Statement,
        params: Option<&ParamValues>,
    ) -> Result<Option<Outcome>, PgError> {
        let Some(shape) = freshet_sql::point::point_select(stmt) else {
            return Ok(None);
        };
        let block = self.current_writes();
        let found = crate::query::point::select(
            &self.engine,
            &self.identity(),
            block.as_deref(),
            &shape,
            params,
        )
        .await?;
        Ok(found.map(|(schema, batch)| {
            let stream = futures::stream::iter(vec![Ok(batch)]);
            Outcome::Rows {
                schema: Arc::clone(&schema),
                stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
                tag: None,
            }
        }))
    }

    /// A query, within `statement_timeout` (57014): planning here, its rows as they stream
    /// ([`Session::take_deadline`]). Only reads are timed: a write is never cut off between
    /// its commit and its acknowledgement.
    pub(super) async fn run_query(
        &self,
        stmt: ast::Statement,
        params: Option<ParamValues>,
    ) -> Result<Outcome, PgError> {
        let Some(account) = self.statement_memory.begin() else {
            return self.run_query_timed(stmt, params).await;
        };
        let outcome = account
            .charged(Box::pin(self.run_query_timed(stmt, params)))
            .await?;
        let limit = match self.ctx.runtime_env().memory_pool.memory_limit() {
            datafusion::execution::memory_pool::MemoryLimit::Finite(n) => n,
            _ => usize::MAX,
        };
        Ok(match outcome {
            Outcome::Rows { schema, stream, tag } => Outcome::Rows {
                schema,
                stream: crate::memory::produce_rows(stream, account, limit),
                tag,
            },
            other => other,
        })
    }

    async fn run_query_timed(
        &self,
        stmt: ast::Statement,
        params: Option<ParamValues>,
    ) -> Result<Outcome, PgError> {
        let Some(limit) = self.with_vars(|v| v.timeout("statement_timeout")) else {
            return self.run_query_untimed(stmt, params).await;
        };
        let deadline = tokio::time::Instant::now() + limit;
        *lock(&self.deadline) = Some(deadline);
        match tokio::time::timeout_at(deadline, self.run_query_untimed(stmt, params)).await {
            Ok(r) => r,
            Err(_) => Err(statement_timeout()),
        }
    }

    /// Waits (two seconds at most) until the session's earlier statements have given back
    /// their memory: a failed statement's operators run on spawned tasks, which release
    /// their reservations only once their cancellation is processed — possibly after the
    /// client has sent its next statement, which would otherwise find the session's limit
    /// taken by a statement that is over.
    async fn settle_memory(&self) {
        let pool = Arc::clone(&self.ctx.runtime_env().memory_pool);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while pool.reserved() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    }

    /// When the rows of the query just run must be done by (`statement_timeout`).
    pub fn take_deadline(&self) -> Option<tokio::time::Instant> {
        lock(&self.deadline).take()
    }

    /// The session's `idle_in_transaction_session_timeout`, if set.
    pub fn idle_in_transaction_timeout(&self) -> Option<std::time::Duration> {
        self.with_vars(|v| v.timeout("idle_in_transaction_session_timeout"))
    }

    pub(super) async fn run_query_untimed(
        &self,
        stmt: ast::Statement,
        params: Option<ParamValues>,
    ) -> Result<Outcome, PgError> {
        self.settle_memory().await;
        let (state, mut plan) = self.plan(stmt).await?;
        if let Some(params) = params {
            plan = plan
                .with_param_values(params)
                .map_err(|e| map_df_error(&e))?;
        }
        let state = self.with_snapshot(state, &plan).await?;
        let dml_tag = match &plan {
            LogicalPlan::Dml(dml) => Some(match dml.op {
                WriteOp::Insert(_) => "INSERT",
                _ => return Err(PgError::not_supported(format!("{}", dml.op))),
            }),
            _ => None,
        };
        let schema = pg_schema(&plan);
        let df = DataFrame::new(state, plan);
        match dml_tag {
            Some(tag) => {
                let batches = df.collect().await.map_err(|e| map_df_error(&e))?;
                let rows = batches
                    .first()
                    .and_then(|b| {
                        b.column(0)
                            .as_any()
                            .downcast_ref::<UInt64Array>()
                            .map(|a| a.value(0))
                    })
                    .unwrap_or(0);
                Ok(Outcome::Command {
                    tag,
                    rows: Some(rows),
                })
            }
            None => {
                let stream = crate::memory::on_query_runtime(df.execute_stream())
                    .await
                    .map_err(|e| map_df_error(&e))?;
                Ok(Outcome::Rows {
                    schema,
                    stream,
                    tag: None,
                })
            }
        }
    }
}
