//! SQL-level `PREPARE name [(types)] AS statement`, `EXECUTE name [(args)]` and
//! `DEALLOCATE [PREPARE] {name | ALL}` (pg_dump prepares its per-object queries). A prepared
//! statement is kept parsed; EXECUTE runs it with each `$n` replaced by its argument cast to
//! the declared type, as PostgreSQL evaluates the arguments before binding them.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast;
use freshet_common::{PgError, SqlState};
use freshet_sql::Parsed;

use super::{lock, Outcome, Session};

/// One session's SQL-prepared statements, by name.
#[derive(Default)]
pub(super) struct PreparedStatements {
    by_name: HashMap<String, Prepared>,
}

struct Prepared {
    types: Vec<ast::DataType>,
    statement: ast::Statement,
}

/// What a PREPARE / EXECUTE / DEALLOCATE came to.
pub(super) enum Expanded {
    /// Done: answer this.
    Done(Outcome),
    /// Run this statement instead (EXECUTE's).
    Run(Parsed),
}

fn command(tag: &'static str) -> Outcome {
    Outcome::Command { tag, rows: None }
}

fn missing(name: &str) -> PgError {
    PgError::new(
        SqlState("26000"),
        format!("prepared statement \"{name}\" does not exist"),
    )
}

impl Session {
    /// `Some` for PREPARE, EXECUTE and DEALLOCATE; `None` leaves `stmt` to the caller.
    pub(super) fn sql_prepared(&self, stmt: &Parsed) -> Option<Result<Expanded, PgError>> {
        let Parsed::Ast(stmt) = stmt else {
            return None;
        };
        match stmt {
            ast::Statement::Prepare {
                name,
                data_types,
                statement,
            } => Some(self.prepare(&statement_name(name), data_types, statement)),
            ast::Statement::Execute {
                name: Some(name),
                parameters,
                immediate: false,
                using,
                ..
            } if using.is_empty() => {
                let name = name.0.last()?.as_ident().map(statement_name)?;
                Some(self.execute_prepared(&name, parameters))
            }
            ast::Statement::Deallocate { name, .. } => Some(self.deallocate(name)),
            _ => None,
        }
    }

    fn prepare(
        &self,
        name: &str,
        types: &[ast::DataType],
        statement: &ast::Statement,
    ) -> Result<Expanded, PgError> {
        let mut prepared = lock(&self.prepared);
        if prepared.by_name.contains_key(name) {
            return Err(PgError::new(
                SqlState("42P05"),
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        prepared.by_name.insert(
            name.to_owned(),
            Prepared {
                types: types.to_vec(),
                statement: statement.clone(),
            },
        );
        Ok(Expanded::Done(command("PREPARE")))
    }

    fn execute_prepared(&self, name: &str, args: &[ast::Expr]) -> Result<Expanded, PgError> {
        let prepared = lock(&self.prepared);
        let p = prepared.by_name.get(name).ok_or_else(|| missing(name))?;
        let expected = p.types.len().max(placeholders(&p.statement));
        if args.len() != expected {
            return Err(PgError::new(
                SqlState::SYNTAX_ERROR,
                format!("wrong number of parameters for prepared statement \"{name}\""),
            )
            .with_detail(format!(
                "Expected {expected} parameters but got {}.",
                args.len()
            )));
        }
        let mut statement = p.statement.clone();
        let _ = ast::visit_expressions_mut(&mut statement, |e| {
            if let Some(n) = placeholder(e) {
                if let Some(arg) = args.get(n - 1) {
                    *e = match p.types.get(n - 1) {
                        Some(ty) => ast::Expr::Cast {
                            kind: ast::CastKind::Cast,
                            expr: Box::new(ast::Expr::Nested(Box::new(arg.clone()))),
                            data_type: ty.clone(),
                            array: false,
                            format: None,
                        },
                        None => ast::Expr::Nested(Box::new(arg.clone())),
                    };
                }
            }
            ControlFlow::<()>::Continue(())
        });
        Ok(Expanded::Run(Parsed::Ast(statement)))
    }

    fn deallocate(&self, name: &ast::Ident) -> Result<Expanded, PgError> {
        let mut prepared = lock(&self.prepared);
        // A name of ours, or one the client prepared over the protocol (psycopg deallocates
        // those with this statement): pgwire keeps those until the connection closes, so an
        // unknown name is not an error here.
        if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
            prepared.by_name.clear();
            return Ok(Expanded::Done(command("DEALLOCATE ALL")));
        }
        prepared.by_name.remove(&statement_name(name));
        Ok(Expanded::Done(command("DEALLOCATE")))
    }
}

/// A statement's name as PostgreSQL keeps it: unquoted names fold to lower case.
fn statement_name(name: &ast::Ident) -> String {
    match name.quote_style {
        Some(_) => name.value.clone(),
        None => name.value.to_lowercase(),
    }
}

/// `n` of a `$n` placeholder.
fn placeholder(e: &ast::Expr) -> Option<usize> {
    let ast::Expr::Value(v) = e else { return None };
    let ast::Value::Placeholder(p) = &v.value else {
        return None;
    };
    p.strip_prefix('$')?.parse().ok().filter(|n| *n > 0)
}

/// The highest `$n` in `stmt`.
fn placeholders(stmt: &ast::Statement) -> usize {
    let mut most = 0;
    let _ = ast::visit_expressions(stmt, |e| {
        most = most.max(placeholder(e).unwrap_or(0));
        ControlFlow::<()>::Continue(())
    });
    most
}
