//! Running one classified statement: the dispatch from a [`Statement`] to what carries it out.

use std::sync::Arc;

use datafusion::common::ParamValues;
use freshet_common::PgError;
use freshet_sql::error::map_df_error;
use freshet_sql::{CopyFrom, CopyTo, CreateViewPlan, DmlPlan, SetValue, Statement};

use super::{lock, one_text_column, text_columns, written_outcome, Outcome, Session};

/// A command's outcome: its tag, no row count.
fn command(tag: &'static str) -> Outcome {
    Outcome::Command { tag, rows: None }
}

impl Session {
    pub(super) async fn execute_classified(
        &self,
        stmt: Statement,
        params: Option<ParamValues>,
    ) -> Result<Outcome, PgError> {
        match stmt {
            Statement::Query(stmt) => {
                if let Some(out) = self.point_select(&stmt, params.as_ref()).await? {
                    return Ok(out);
                }
                self.run_query(*stmt, params).await
            }
            Statement::Dml(plan) => self.dml(&plan, params).await,
            Statement::Insert(plan) => {
                let written = crate::query::insert::execute(
                    &self.engine,
                    self.statement_state(),
                    &plan,
                    params,
                    self.current_writes(),
                )
                .await?;
                Ok(written_outcome("INSERT", written))
            }
            Statement::ExplainDml(explain) => self.explain_dml(*explain, params).await,
            Statement::Truncate { table } => self.truncate(&table).await,
            Statement::CreateTable(plan) => self.create_table(plan).await,
            Statement::CreateIndex(plan) => self.create_index(plan).await,
            Statement::DropIndex { names, if_exists } => self.drop_indexes(&names, if_exists).await,
            Statement::DropTable {
                names,
                if_exists,
                cascade,
            } => self.drop_tables(&names, if_exists, cascade).await,
            Statement::CreateMaterializedView(plan) => self.create_view(&plan).await,
            Statement::DropMaterializedView {
                names,
                if_exists,
                cascade,
            } => self.drop_views(&names, if_exists, cascade).await,
            Statement::CreateView(plan) => self.create_plain_view(&plan).await,
            Statement::DropView {
                names,
                if_exists,
                cascade,
            } => self.drop_plain_views(&names, if_exists, cascade).await,
            Statement::ShowMaterializedViews => {
                let views = self.engine.catalog.views();
                let names = views.iter().map(|v| v.name.clone()).collect();
                Ok(one_text_column("name", names))
            }
            Statement::CopyFrom(opts) => self.copy_from(opts),
            Statement::CopyTo(plan) => self.copy_to(*plan, params).await,
            Statement::Flush => self.flush().await,
            Statement::Set { name, value } => self.set(&name, value),
            Statement::Reset { name } => {
                self.with_vars(|v| v.reset(name.as_deref()));
                Ok(command("RESET"))
            }
            Statement::Show { name } => self.show(&name),
            Statement::ShowTables => {
                let tables = self.engine.catalog.tables();
                let names = tables.iter().map(|t| t.name.clone()).collect();
                Ok(one_text_column("name", names))
            }
            Statement::CreateSource(plan) => {
                crate::coord::sources::create(&self.engine, plan, self.new_owner()).await?;
                Ok(command("CREATE SOURCE"))
            }
            Statement::DropSource {
                names,
                if_exists,
                cascade,
            } => self.drop_sources(&names, if_exists, cascade).await,
            Statement::ShowSources => {
                let (cols, rows) = crate::coord::sources::show(&self.engine);
                Ok(text_columns(&cols, rows))
            }
            Statement::ResetSource { name } => {
                crate::coord::sources::reset(&self.engine, &name).await?;
                Ok(command("ALTER SOURCE"))
            }
            Statement::Transaction {
                op,
                savepoint,
                isolation,
            } => self.transaction(op, savepoint, isolation).await,
            Statement::NoOp { tag } => Ok(command(tag)),
            Statement::LockShared { tables } => self.lock_shared(&tables),
            Statement::Subscribe(plan) => self.subscribe(&plan).await,
            Statement::DeclareSubscribe { cursor, plan } => {
                self.declare_subscribe(cursor, &plan).await
            }
            Statement::DeclareQuery {
                cursor,
                query,
                hold,
            } => self.declare_query(cursor, *query, hold, params).await,
            Statement::Move { cursor, count } => self.move_cursor(&cursor, count).await,
            Statement::Fetch {
                cursor,
                count,
                timeout,
            } => self.fetch(&cursor, count, timeout).await,
            Statement::CloseCursor { cursor } => self.close_cursor(cursor.as_deref()),
            Statement::CreateSink(plan) => {
                crate::coord::sinks::create(&self.engine, &plan, self.new_owner()).await?;
                Ok(command("CREATE SINK"))
            }
            Statement::DropSink { names, if_exists } => self.drop_sinks(&names, if_exists).await,
            Statement::ShowSinks => Ok(text_columns(
                crate::coord::sinks::SHOW_COLUMNS,
                crate::coord::sinks::show(&self.engine),
            )),
            Statement::Listen { channel } => self.listen(&channel),
            Statement::Unlisten { channel } => Ok(self.unlisten(channel.as_deref())),
            Statement::Notify { channel, payload } => Ok(self.notify(channel, payload)),
            Statement::Role(stmt) => {
                let tag = {
                    let _w = self.engine.begin_write().await;
                    crate::access::execute(&self.engine.catalog, &self.identity(), stmt)?
                };
                Ok(command(tag))
            }
            Statement::SetRole(role) => {
                let next = crate::access::set_role(
                    &self.engine.catalog,
                    &self.identity(),
                    role.as_deref(),
                )?;
                crate::functions::register_identity(&self.ctx, &next, &self.engine.catalog);
                *lock(&self.identity) = Arc::new(next);
                Ok(command("SET"))
            }
        }
    }

    /// UPDATE / DELETE: by key when the plan allows, else through its read query.
    async fn dml(&self, plan: &DmlPlan, params: Option<ParamValues>) -> Result<Outcome, PgError> {
        let point =
            crate::query::point::write(&self.engine, self.current_writes(), plan, params.as_ref())
                .await?;
        if let Some(written) = point {
            return Ok(written_outcome(plan.kind.tag(), written));
        }
        let written = crate::query::dml::execute(
            &self.engine,
            self.statement_state(),
            plan,
            params,
            self.current_writes(),
        )
        .await?;
        Ok(written_outcome(plan.kind.tag(), written))
    }

    async fn truncate(&self, table: &str) -> Result<Outcome, PgError> {
        let def = crate::query::dml::target_table(&self.engine, table, "truncate")?;
        match self.current_writes() {
            // In a block: the deletion of every row it sees, staged.
            Some(block) => {
                let plan = freshet_sql::dml::delete_all(&def.name, freshet_sql::DML_TARGET_SCHEMA);
                crate::query::dml::execute(
                    &self.engine,
                    self.statement_state(),
                    &plan,
                    None,
                    Some(block),
                )
                .await?;
            }
            None => {
                crate::query::truncate(&self.engine, &def)
                    .await
                    .map_err(|e| map_df_error(&e))?;
            }
        }
        Ok(command("TRUNCATE TABLE"))
    }

    /// CREATE MATERIALIZED VIEW, or its EXPLAIN (the dataflow's plan as text).
    async fn create_view(&self, plan: &CreateViewPlan) -> Result<Outcome, PgError> {
        let state = self.statement_state();
        match crate::coord::views::create(&self.engine, &state, plan).await? {
            Some(text) => Ok(one_text_column(
                "QUERY PLAN",
                text.lines().map(str::to_owned).collect(),
            )),
            None => Ok(command("CREATE MATERIALIZED VIEW")),
        }
    }

    /// COPY … TO STDOUT: the rows of its query, to be written as COPY data. As in PostgreSQL,
    /// the table form does not read materialized views (`COPY (SELECT …) TO` does).
    async fn copy_to(&self, plan: CopyTo, params: Option<ParamValues>) -> Result<Outcome, PgError> {
        if let Some(name) = &plan.relation {
            if self.engine.catalog.view(name).is_some() {
                return Err(PgError::new(
                    freshet_common::SqlState::WRONG_OBJECT_TYPE,
                    format!("cannot copy from materialized view \"{name}\""),
                )
                .with_hint("Try the COPY (SELECT ...) TO variant."));
            }
        }
        let rows = match self.point_select(&plan.query, params.as_ref()).await? {
            Some(rows) => rows,
            None => self.run_query(*plan.query, params).await?,
        };
        let Outcome::Rows { schema, stream, .. } = rows else {
            return Err(PgError::not_supported("COPY of a statement that returns no rows"));
        };
        Ok(Outcome::CopyOut {
            schema,
            stream,
            options: plan.options,
        })
    }

    fn copy_from(&self, opts: CopyFrom) -> Result<Outcome, PgError> {
        let copy = crate::query::CopyIn::start(&self.engine, opts)?;
        let columns = copy.columns.len();
        let binary = copy.opts.options.format == freshet_sql::CopyFormat::Binary;
        *lock(&self.copy) = Some(copy);
        Ok(Outcome::CopyIn { columns, binary })
    }

    async fn flush(&self) -> Result<Outcome, PgError> {
        // Epochs commit with the statements that cause them: once the writer lock is free,
        // every earlier write is reflected in every view. Contents logs are folded too, so the
        // views' entries are whole in the store.
        {
            let mut w = self.engine.begin_write().await;
            self.engine
                .fold_for_read(&mut w)
                .map_err(|e| map_df_error(&e))?;
        }
        // Sources: until everything in their topics when FLUSH started is committed.
        crate::coord::sources::flush(&self.engine).await?;
        Ok(command("FLUSH"))
    }

    fn set(&self, name: &str, value: SetValue) -> Result<Outcome, PgError> {
        if name.eq_ignore_ascii_case("transaction_isolation") {
            // This block's level (PostgreSQL ignores it outside a block).
            if let SetValue::Value(v) = &value {
                let level = freshet_sql::Isolation::parse(v).ok_or_else(|| {
                    PgError::new(
                        freshet_common::SqlState("22023"),
                        format!("invalid value for parameter \"{name}\": \"{v}\""),
                    )
                })?;
                self.block().set_isolation(level)?;
            }
            return Ok(command("SET"));
        }
        self.with_vars(|v| v.apply_set(name, value))?;
        Ok(command("SET"))
    }

    fn show(&self, name: &str) -> Result<Outcome, PgError> {
        if name.eq_ignore_ascii_case("all") {
            let rows = self
                .with_vars(|v| v.all())
                .into_iter()
                .map(|(k, v)| vec![Some(k), Some(v), Some(String::new())])
                .collect();
            return Ok(super::text_columns(&SHOW_ALL, rows));
        }
        if name.eq_ignore_ascii_case("transaction_isolation") {
            let level = self.block().isolation().map(|i| i.name().to_owned());
            let value = match level {
                Some(l) => l,
                None => {
                    self.with_vars(|v| v.show("default_transaction_isolation"))?
                        .1
                }
            };
            return Ok(one_text_column(name, vec![value]));
        }
        let (col, value) = self.with_vars(|v| v.show(name))?;
        Ok(one_text_column(&col, vec![value]))
    }
}

/// `SHOW ALL`'s columns, as PostgreSQL names them.
pub(super) const SHOW_ALL: [&str; 3] = ["name", "setting", "description"];
