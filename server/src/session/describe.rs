//! Describing a statement without running it (the extended protocol's Describe): parameter
//! types and result columns.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::logical_expr::LogicalPlan;
use freshet_common::PgError;
use freshet_sql::{ast, Parsed, Statement};

use super::params::param_types;
use super::{explain_plan, pg_schema, text_columns_schema, text_schema, Described, Session};

impl Session {
    /// Plans a statement without running it: parameter types and result columns.
    pub async fn describe(&self, stmt: &Parsed) -> Result<Described, PgError> {
        match freshet_sql::classify_parsed(stmt.clone())? {
            Statement::Query(stmt) => {
                let (_, plan) = self.plan(*stmt).await?;
                let params = param_types(&plan)?;
                let schema = match &plan {
                    LogicalPlan::Dml(_) => None,
                    p => Some(pg_schema(p)),
                };
                Ok(Described { params, schema })
            }
            Statement::Insert(plan) => {
                let def =
                    crate::query::dml::target_table(&self.engine, &plan.table, "insert into")?;
                // Parameter types as DataFusion infers them for the plain INSERT (from the
                // target columns).
                let params = match stmt {
                    Parsed::Ast(ast::Statement::Insert(ins)) => {
                        let mut plain = ins.clone();
                        plain.on = None;
                        plain.returning = None;
                        plain.source = plan.source.clone();
                        match self.plan(ast::Statement::Insert(plain)).await {
                            Ok((_, lp)) => param_types(&lp)?,
                            // Forms DataFusion does not plan: the source's own inference.
                            Err(_) => match &plan.source {
                                Some(q) => {
                                    let (_, lp) =
                                        self.plan(ast::Statement::Query(q.clone())).await?;
                                    param_types(&lp)?
                                }
                                None => Vec::new(),
                            },
                        }
                    }
                    _ => Vec::new(),
                };
                let schema = match &plan.returning {
                    Some(items) => Some(crate::query::insert::returning_schema(
                        &self.statement_state(),
                        &def,
                        &plan.alias,
                        items,
                    )?),
                    None => None,
                };
                Ok(Described { params, schema })
            }
            Statement::ExplainDml(explain) => {
                crate::query::dml::dml_target(&self.engine, &explain.plan)?;
                let state = self.statement_state();
                let plan = explain_plan(&state, &explain, None).await?;
                Ok(Described {
                    params: param_types(&plan)?,
                    schema: Some(pg_schema(&plan)),
                })
            }
            Statement::Dml(plan) => {
                let def = crate::query::dml::dml_target(&self.engine, &plan)?;
                let state = self.statement_state();
                let lp = crate::query::dml::plan_read(&state, &plan, None).await?;
                let schema = match &plan.returning {
                    Some(items) => Some(crate::query::insert::returning_schema(
                        &state,
                        &def,
                        &plan.alias,
                        items,
                    )?),
                    None => None,
                };
                Ok(Described {
                    params: param_types(&lp)?,
                    schema,
                })
            }
            Statement::Show { name } if name.eq_ignore_ascii_case("all") => Ok(Described {
                params: vec![],
                schema: Some(text_columns_schema(&super::execute::SHOW_ALL)),
            }),
            Statement::Show { name } => {
                let (col, _) = self.with_vars(|v| v.show(&name))?;
                Ok(Described {
                    params: vec![],
                    schema: Some(text_schema(&col)),
                })
            }
            Statement::ShowSources => Ok(Described {
                params: vec![],
                schema: Some({
                    let cols = crate::coord::sources::SHOW_COLUMNS;
                    Arc::new(Schema::new(
                        cols.iter()
                            .map(|c| Field::new(*c, DataType::Utf8, true))
                            .collect::<Vec<_>>(),
                    ))
                }),
            }),
            Statement::ShowSinks => Ok(Described {
                params: vec![],
                schema: Some(Arc::new(Schema::new(
                    crate::coord::sinks::SHOW_COLUMNS
                        .iter()
                        .map(|c| Field::new(*c, DataType::Utf8, true))
                        .collect::<Vec<_>>(),
                ))),
            }),
            Statement::ShowTables | Statement::ShowMaterializedViews => Ok(Described {
                params: vec![],
                schema: Some(text_schema("name")),
            }),
            Statement::CreateMaterializedView(p) if p.explain => Ok(Described {
                params: vec![],
                schema: Some(text_schema("QUERY PLAN")),
            }),
            // The cursor's query decides the parameters; DECLARE itself returns no rows.
            Statement::DeclareQuery { query, .. } => {
                let (_, plan) = self.plan(*query).await?;
                Ok(Described {
                    params: param_types(&plan)?,
                    schema: None,
                })
            }
            Statement::Fetch { cursor, .. } => Ok(Described {
                params: vec![],
                schema: Some(self.cursor_schema(&cursor).ok_or_else(|| {
                    PgError::new(
                        freshet_common::SqlState::INVALID_CURSOR_NAME,
                        format!("cursor \"{cursor}\" does not exist"),
                    )
                })?),
            }),
            _ => Ok(Described {
                params: vec![],
                schema: None,
            }),
        }
    }
}
