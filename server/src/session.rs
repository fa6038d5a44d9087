//! A client session: its variables, its DataFusion context, and statement execution.
//!
//! Protocol-agnostic: the pgwire handlers in [`crate::pg`] turn [`Outcome`]s into messages.

mod authorize;
mod copy;
mod cursor;
mod ddl;
mod describe;
mod execute;
mod index;
mod notify;
mod params;
mod prepare;
mod query;
mod txn;
mod vars;

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ParamValues;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use freshet_common::PgError;
use freshet_sql::error::map_df_error;
use freshet_sql::{Parsed, Statement, TransactionOp};

use crate::coord::engine::Engine;
use crate::query::pending::StatementWrites;
pub use vars::SessionVars;

/// What a statement produced.
pub enum Outcome {
    /// Rows, streamed; `tag` is the command tag for DML with `RETURNING` (`INSERT 0`, …: the
    /// row count follows), `SELECT` when `None`.
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        tag: Option<&'static str>,
    },
    /// A command tag such as `CREATE TABLE`, with a row count for DML (`INSERT 0 3`).
    Command {
        tag: &'static str,
        rows: Option<u64>,
    },
    /// Transaction control; the protocol layer tracks the transaction status.
    Transaction(TransactionOp),
    /// `COPY … FROM STDIN` started: the client now sends data (see [`Session::copy_data`]).
    CopyIn { columns: usize, binary: bool },
    /// `COPY … TO STDOUT`: the protocol layer writes the rows as COPY data.
    CopyOut {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
        options: freshet_sql::CopyOptions,
    },
    /// `SUBSCRIBE` started: the protocol layer streams its rows as COPY data.
    Subscribe(Box<crate::coord::Subscription>),
}

/// The shape of a statement, known before it runs (extended protocol Describe).
#[derive(Debug, Clone)]
pub struct Described {
    /// Types of `$1..$n`, `None` where they cannot be inferred.
    pub params: Vec<Option<DataType>>,
    /// Result columns, `None` for statements that return no rows.
    pub schema: Option<SchemaRef>,
}

/// One client connection's session.
pub struct Session {
    engine: Arc<Engine>,
    ctx: SessionContext,
    vars: Arc<Mutex<SessionVars>>,
    /// The COPY FROM STDIN in progress, if any.
    copy: Mutex<Option<crate::query::CopyIn>>,
    /// The explicit transaction block this session is in, if any.
    block: Mutex<txn::Block>,
    /// While a statement runs inside a block: what it reads and stages.
    current: Mutex<Option<Arc<StatementWrites>>>,
    /// Open cursors.
    cursors: Mutex<cursor::Cursors>,
    /// LISTEN/NOTIFY state.
    notifier: Mutex<notify::Notifier>,
    /// When the running query's `statement_timeout` expires (its rows stream after
    /// `execute` returns, so the response stream ends them then).
    deadline: Mutex<Option<tokio::time::Instant>>,
    /// Who the session acts as (set when the login completes).
    identity: Mutex<Arc<crate::access::Identity>>,
    /// What the session took of each sequence (`currval`, `lastval`).
    sequences: Arc<crate::coord::sequences::SessionSequences>,
    /// This connection, counted against its role's `CONNECTION LIMIT`.
    role_slot: Mutex<Option<crate::access::RoleSlot>>,
    /// What the running statement has allocated (`crate::alloc`).
    statement_memory: Arc<crate::memory::StatementAccount>,
    /// SQL-level PREPAREd statements.
    prepared: Mutex<prepare::PreparedStatements>,
    /// What the session is doing, as `pg_stat_activity` shows it.
    activity: Arc<crate::coord::activity::Activity>,
}

/// The template's state with a memory pool of the session's own: the limit holds for each
/// statement (a session runs one at a time), for what it allocates (`statement`); operators
/// may reserve half of it, the rest being what their reservations do not cover (batches in
/// flight, sort keys, merge buffers, copies while a buffer moves). Every reservation also draws
/// on `budget`, shared by all sessions. Spill files, caches and object stores are shared.
fn own_memory(
    template: &SessionContext,
    budget: &Arc<crate::memory::ServerBudget>,
    statement: &Arc<crate::memory::StatementAccount>,
) -> datafusion::execution::SessionState {
    use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryLimit, MemoryPool, TrackConsumersPool};
    use datafusion::execution::runtime_env::RuntimeEnv;
    let state = template.state();
    let rt = state.runtime_env();
    let MemoryLimit::Finite(limit) = rt.memory_pool.memory_limit() else {
        return state;
    };
    let own: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
        GreedyMemoryPool::new(limit / 2),
        std::num::NonZeroUsize::new(3).expect("3 is not zero"),
    ));
    let pool: Arc<dyn MemoryPool> = Arc::new(crate::memory::BudgetedPool {
        inner: own,
        server: Arc::clone(budget),
        limit,
        statement: Arc::clone(statement),
    });
    let runtime = Arc::new(RuntimeEnv {
        memory_pool: pool,
        disk_manager: Arc::clone(&rt.disk_manager),
        cache_manager: Arc::clone(&rt.cache_manager),
        object_store_registry: Arc::clone(&rt.object_store_registry),
    });
    datafusion::execution::SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime)
        .build()
}

impl Session {
    /// A new session over `engine`, cloning the server's template DataFusion state; its
    /// statements' memory also counts against `budget`, shared by all sessions.
    pub fn new(
        engine: Arc<Engine>,
        template: &SessionContext,
        budget: &Arc<crate::memory::ServerBudget>,
        user: Option<&str>,
        app: Option<&str>,
        notifications: Option<tokio::sync::mpsc::UnboundedSender<crate::coord::notify::Notification>>,
    ) -> Self {
        let statement_memory = Arc::default();
        let ctx = SessionContext::new_with_state(own_memory(template, budget, &statement_memory));
        let mut vars = SessionVars::default();
        if let Some(app) = app {
            vars.set("application_name", app.to_owned());
        }
        if let Some(user) = user {
            vars.set("session_authorization", user.to_owned());
        }
        let vars = Arc::new(Mutex::new(vars));
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            vars::CurrentSetting::new(Arc::clone(&vars)),
        ));
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            vars::SetConfig::new(Arc::clone(&vars)),
        ));
        let activity = engine.activities.register();
        Self {
            engine,
            ctx,
            vars,
            copy: Mutex::new(None),
            block: Mutex::new(txn::Block::default()),
            current: Mutex::new(None),
            cursors: Mutex::new(cursor::Cursors::default()),
            notifier: Mutex::new(notify::Notifier::new(notifications)),
            deadline: Mutex::new(None),
            identity: Mutex::new(Arc::new(crate::access::Identity::nobody())),
            sequences: Arc::default(),
            role_slot: Mutex::new(None),
            statement_memory,
            prepared: Mutex::default(),
            activity,
        }
    }

    /// What the session is doing (`pg_stat_activity`).
    pub fn activity(&self) -> &crate::coord::activity::Activity {
        &self.activity
    }

    /// Sets who the session acts as.
    pub fn set_identity(&self, identity: crate::access::Identity) {
        self.with_vars(|v| v.set("session_authorization", identity.session_user.clone()));
        crate::functions::register_identity(&self.ctx, &identity, &self.engine.catalog);
        crate::coord::sequences::register(&self.ctx, &self.engine, &self.sequences, &identity);
        self.activity.logged_in(&identity.session_user);
        *lock(&self.identity) = Arc::new(identity);
    }

    /// Keeps this connection counted against its role until the session ends.
    pub fn hold_role_slot(&self, slot: Option<crate::access::RoleSlot>) {
        *lock(&self.role_slot) = slot;
    }

    /// The owner of objects the session creates.
    fn new_owner(&self) -> String {
        self.identity().owner_for_new(&self.engine.catalog)
    }

    /// Who the session acts as.
    pub fn identity(&self) -> Arc<crate::access::Identity> {
        Arc::clone(&lock(&self.identity))
    }

    /// Parses `sql` into its statements.
    pub fn parse(sql: &str) -> Result<Vec<Parsed>, PgError> {
        freshet_sql::parse_statements(sql)
    }

    /// Runs one statement. A bug that panics while it runs becomes an XX000 error for this
    /// statement; the connection and the server carry on (a statement's writes commit in
    /// one batch at its end, so a panic before that leaves no trace).
    pub async fn execute(
        &self,
        stmt: Parsed,
        params: Option<ParamValues>,
    ) -> Result<Outcome, PgError> {
        use futures::FutureExt;
        let query = match &stmt {
            Parsed::Ast(s) => s.to_string(),
            Parsed::Ours(s) => format!("{s:?}"),
        };
        let app = || {
            self.with_vars(|v| v.show("application_name"))
                .map(|(_, value)| value)
                .unwrap_or_default()
        };
        self.activity.statement_started(query, app(), self.block().is_open());
        let result = std::panic::AssertUnwindSafe(self.execute_inner(stmt, params))
            .catch_unwind()
            .await;
        let (open, failed) = {
            let block = self.block();
            (block.is_open(), block.check_not_failed(false).is_err())
        };
        self.activity.statement_ended(app(), open, failed);
        match result {
            Ok(r) => r,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                tracing::error!(panic = %what, "statement panicked");
                Err(PgError::new(
                    freshet_common::SqlState::INTERNAL_ERROR,
                    format!("internal error: freshet hit a bug running this statement ({what})"),
                ))
            }
        }
    }

    async fn execute_inner(
        &self,
        stmt: Parsed,
        params: Option<ParamValues>,
    ) -> Result<Outcome, PgError> {
        let stmt = match self.sql_prepared(&stmt) {
            None => stmt,
            Some(Ok(prepare::Expanded::Run(stmt))) => stmt,
            Some(Ok(prepare::Expanded::Done(outcome))) => return Ok(outcome),
            Some(Err(e)) => {
                self.block().fail();
                return Err(e);
            }
        };
        let stmt = match freshet_sql::classify_parsed(stmt) {
            Ok(stmt) => stmt,
            Err(e) => {
                self.block().fail();
                return Err(e);
            }
        };
        if let Statement::Transaction {
            op,
            savepoint,
            isolation,
        } = stmt
        {
            let result = self.transaction(op, savepoint, isolation).await;
            if result.is_err() {
                // As in PostgreSQL, a savepoint statement that fails fails the block.
                self.block().fail();
            }
            return result;
        }
        let ddl = is_ddl(&stmt);
        let writes = {
            let checked = {
                let block = self.block();
                block.check_not_failed(false).and_then(|()| {
                    if ddl {
                        block.check_ddl_allowed()
                    } else {
                        Ok(())
                    }
                })
            };
            if let Err(e) = checked {
                self.block().fail();
                return Err(e);
            }
            // READ COMMITTED: each statement of a block reads the latest commit.
            let level = self.block().isolation();
            let fresh = match level {
                Some(freshet_sql::Isolation::ReadCommitted) => Some(
                    self.engine
                        .read_snapshot()
                        .await
                        .map_err(|e| map_df_error(&e))?,
                ),
                _ => None,
            };
            self.block().statement_writes(fresh)
        };
        *self.current() = writes.clone();
        let result = match self.authorize(&stmt) {
            Ok(()) => self.execute_classified(stmt, params).await,
            Err(e) => Err(e),
        };
        *self.current() = None;
        // DDL committed: a block reads on from after it, with every contents log folded
        // (views are read over the block's writes from this snapshot).
        let after_ddl = if ddl && result.is_ok() && self.block().is_open() {
            let folded = self.engine.read_snapshot().await;
            Some(folded.unwrap_or_else(|_| self.engine.store.snapshot()))
        } else {
            None
        };
        self.statement_done(writes.as_deref(), after_ddl, result.is_ok());
        result
    }

    /// Ends a statement of the block (if one is open): a success adds its staged writes, a
    /// failure fails the block; DDL, which committed, moves the block to a new snapshot.
    fn statement_done(
        &self,
        writes: Option<&StatementWrites>,
        after_ddl: Option<freshet_state::Snapshot>,
        ok: bool,
    ) {
        let mut block = self.block();
        if !ok {
            block.fail();
            return;
        }
        if let Some(w) = writes {
            block.merge(w.take_staged(), w.take_based_on());
        }
        if let Some(snapshot) = after_ddl {
            block.ddl_ran(snapshot);
        }
    }

    fn block(&self) -> std::sync::MutexGuard<'_, txn::Block> {
        self.block
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the running statement of a block reads and stages (`None` outside a block).
    fn current_writes(&self) -> Option<Arc<StatementWrites>> {
        self.current().clone()
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<Arc<StatementWrites>>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn with_vars<T>(&self, f: impl FnOnce(&mut SessionVars) -> T) -> T {
        let mut guard = self
            .vars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

/// The error of a query stopped by `statement_timeout`.
pub fn statement_timeout() -> PgError {
    PgError::new(
        freshet_common::SqlState::QUERY_CANCELED,
        "canceling statement due to statement timeout",
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}


fn text_schema(col: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(col, DataType::Utf8, true)]))
}

/// The schema of a result of text columns.
fn text_columns_schema(cols: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        cols.iter()
            .map(|c| Field::new(*c, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// A result of text columns.
fn text_columns(cols: &[&str], rows: Vec<Vec<Option<String>>>) -> Outcome {
    let schema = text_columns_schema(cols);
    let arrays: Vec<datafusion::arrow::array::ArrayRef> = (0..cols.len())
        .map(|i| {
            Arc::new(StringArray::from(
                rows.iter()
                    .map(|r| r.get(i).cloned().flatten())
                    .collect::<Vec<_>>(),
            )) as _
        })
        .collect();
    let batch = RecordBatch::try_new(Arc::clone(&schema), arrays);
    let stream = futures::stream::iter(vec![batch.map_err(Into::into)]);
    Outcome::Rows {
        schema: Arc::clone(&schema),
        stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        tag: None,
    }
}

fn one_text_column(col: &str, values: Vec<String>) -> Outcome {
    let schema = text_schema(col);
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![Arc::new(StringArray::from(values))],
    );
    let stream = futures::stream::iter(vec![batch.map_err(Into::into)]);
    Outcome::Rows {
        schema: Arc::clone(&schema),
        stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        tag: None,
    }
}

/// The result schema of `plan` with PostgreSQL's column names (`count`, `?column?`, …).
fn pg_schema(plan: &LogicalPlan) -> SchemaRef {
    let arrow = plan.schema().as_arrow();
    let names = freshet_sql::names::pg_output_names(plan);
    let fields: Vec<datafusion::arrow::datatypes::Field> = arrow
        .fields()
        .iter()
        .zip(names)
        .enumerate()
        .map(|(i, (f, n))| {
            let f = f.as_ref().clone().with_name(n);
            // A cast to text is text, whatever PostgreSQL type its operand had (DataFusion
            // keeps the operand's field metadata through a cast: `jsonb_col::text`).
            if cast_to_text(plan, i) {
                f.with_metadata(Default::default())
            } else {
                f
            }
        })
        .collect();
    Arc::new(datafusion::arrow::datatypes::Schema::new_with_metadata(
        fields,
        arrow.metadata().clone(),
    ))
}

/// Whether output column `i` of `plan` is a cast to a text type.
fn cast_to_text(plan: &LogicalPlan, i: usize) -> bool {
    use datafusion::logical_expr::Expr;
    let mut plan = plan;
    // Sorts and limits keep their input's columns.
    let p = loop {
        match plan {
            LogicalPlan::Projection(p) => break p,
            LogicalPlan::Sort(s) => plan = &s.input,
            LogicalPlan::Limit(l) => plan = &l.input,
            _ => return false,
        }
    };
    let mut e = p.expr.get(i);
    while let Some(Expr::Alias(a)) = e {
        e = Some(a.expr.as_ref());
    }
    matches!(
        e,
        Some(Expr::Cast(c)) if matches!(
            c.field.data_type(),
            datafusion::arrow::datatypes::DataType::Utf8
                | datafusion::arrow::datatypes::DataType::Utf8View
                | datafusion::arrow::datatypes::DataType::LargeUtf8
        )
    )
}

/// The outcome of DML: its command tag with the rows changed, or its `RETURNING` rows.
fn written_outcome(tag: &'static str, written: crate::query::insert::Written) -> Outcome {
    match written.returned {
        None => Outcome::Command {
            tag,
            rows: Some(written.rows),
        },
        Some((schema, batch)) => {
            let stream = futures::stream::iter(vec![Ok(batch)]);
            Outcome::Rows {
                schema: Arc::clone(&schema),
                stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
                tag: Some(if tag == "INSERT" { "INSERT 0" } else { tag }),
            }
        }
    }
}

/// Whether `stmt` changes the catalog (DDL commits when it runs, in a block too).
fn is_ddl(stmt: &Statement) -> bool {
    match stmt {
        Statement::CreateMaterializedView(plan) => !plan.explain,
        s => matches!(
            s,
            Statement::CreateTable(_)
                | Statement::DropTable { .. }
                | Statement::CreateIndex(_)
                | Statement::DropIndex { .. }
                | Statement::DropMaterializedView { .. }
                | Statement::CreateView(_)
                | Statement::DropView { .. }
                | Statement::CreateSource(_)
                | Statement::DropSource { .. }
                | Statement::ResetSource { .. }
                | Statement::CreateSink(_)
                | Statement::DropSink { .. }
                | Statement::Role(_)
        ),
    }
}

/// The plan `EXPLAIN` of a DELETE or UPDATE shows: its read query's.
async fn explain_plan(
    state: &datafusion::execution::SessionState,
    explain: &freshet_sql::ExplainDml,
    params: Option<ParamValues>,
) -> Result<LogicalPlan, PgError> {
    let plan = crate::query::dml::plan_read(state, &explain.plan, params).await?;
    datafusion::logical_expr::LogicalPlanBuilder::from(plan)
        .explain(false, false)
        .and_then(|b| b.build())
        .map_err(|e| map_df_error(&e))
}
