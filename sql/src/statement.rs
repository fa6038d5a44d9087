//! Parsing and classifying statements.

use datafusion::sql::sqlparser::ast::{
    self, Expr, ObjectType, Set, Value,
};
use freshet_common::{PgError, SqlState};

use crate::isolation::Isolation;
use crate::words::{ident, object_name};

/// A classified statement: what the server must do with it.
#[derive(Debug, Clone)]
pub enum Statement {
    /// Planned and run by DataFusion: SELECT, VALUES, INSERT, EXPLAIN.
    Query(Box<ast::Statement>),
    /// DELETE or UPDATE, planned as a read query whose rows the server writes.
    Dml(Box<crate::dml::DmlPlan>),
    /// `EXPLAIN [ANALYZE]` of a DELETE or UPDATE.
    ExplainDml(Box<crate::dml::ExplainDml>),
    /// `TRUNCATE [TABLE] name`.
    Truncate { table: String },
    /// `CREATE TABLE`.
    CreateTable(crate::create_table::CreateTablePlan),
    /// `CREATE INDEX`.
    CreateIndex(crate::index::CreateIndexPlan),
    /// `DROP INDEX`.
    DropIndex { names: Vec<String>, if_exists: bool },
    /// `DROP TABLE`.
    DropTable {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    /// `SET name = value` (and `SET TIME ZONE`).
    Set { name: String, value: SetValue },
    /// `RESET name`, or `RESET ALL` when `None`.
    Reset { name: Option<String> },
    /// `SHOW name`.
    Show { name: String },
    /// `SHOW TABLES`.
    ShowTables,
    /// `INSERT`, executed by the server.
    Insert(Box<crate::insert::InsertPlan>),
    /// Transaction control; `savepoint` names the savepoint of the savepoint statements.
    Transaction {
        op: TransactionOp,
        savepoint: Option<String>,
        /// `BEGIN ISOLATION LEVEL …`.
        isolation: Option<Isolation>,
    },
    /// Accepted and ignored, answered with this command tag (`DISCARD ALL`, `DEALLOCATE`).
    NoOp { tag: &'static str },
    /// `LOCK [TABLE] t, … IN ACCESS SHARE MODE` (what pg_dump takes): a block's reads already
    /// see one snapshot, so it checks the block and the tables and holds nothing.
    LockShared { tables: Vec<String> },
    /// `CREATE MATERIALIZED VIEW name [WITH (…)] AS query`, or `EXPLAIN CREATE …`.
    CreateMaterializedView(Box<CreateViewPlan>),
    /// `DROP MATERIALIZED VIEW`.
    DropMaterializedView {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    /// `CREATE [OR REPLACE] VIEW`.
    CreateView(Box<crate::plain_view::CreatePlainViewPlan>),
    /// `DROP VIEW`.
    DropView {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    /// `SHOW MATERIALIZED VIEWS`.
    ShowMaterializedViews,
    /// `FLUSH`: returns once every earlier write is reflected in every view.
    Flush,
    /// `COPY table [(columns)] FROM STDIN [WITH (…)]`.
    CopyFrom(crate::copy::CopyFrom),
    /// `COPY table [(columns)] TO STDOUT` or `COPY (query) TO STDOUT`.
    CopyTo(Box<crate::copy::CopyTo>),
    /// `CREATE SOURCE`.
    CreateSource(crate::source::CreateSourcePlan),
    /// `DROP SOURCE`.
    DropSource {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    /// `SHOW SOURCES`.
    ShowSources,
    /// `ALTER SOURCE name RESET`.
    ResetSource { name: String },
    /// `SUBSCRIBE …` or `COPY (SUBSCRIBE …) TO STDOUT`: changes streamed as COPY data.
    Subscribe(Box<crate::subscribe::SubscribePlan>),
    /// `DECLARE name CURSOR FOR SUBSCRIBE …`.
    DeclareSubscribe {
        cursor: String,
        plan: Box<crate::subscribe::SubscribePlan>,
    },
    /// `DECLARE name CURSOR [WITH HOLD] FOR query`.
    DeclareQuery {
        cursor: String,
        query: Box<ast::Statement>,
        /// `WITH HOLD`: the cursor outlives the transaction that declared it.
        hold: bool,
    },
    /// `MOVE … name`: skips rows of a cursor.
    Move {
        cursor: String,
        count: crate::cursor::FetchCount,
    },
    /// `FETCH … name [WITH (timeout = …)]`.
    Fetch {
        cursor: String,
        count: crate::cursor::FetchCount,
        timeout: Option<std::time::Duration>,
    },
    /// `CLOSE name`, or `CLOSE ALL` when `None`.
    CloseCursor { cursor: Option<String> },
    /// `CREATE SINK … FROM …`.
    CreateSink(Box<crate::sink::CreateSinkPlan>),
    /// `DROP SINK`.
    DropSink { names: Vec<String>, if_exists: bool },
    /// `SHOW SINKS`.
    ShowSinks,
    /// `LISTEN channel`.
    Listen { channel: String },
    /// `UNLISTEN channel`, or `UNLISTEN *` when `None`.
    Unlisten { channel: Option<String> },
    /// `NOTIFY channel [, 'payload']`.
    Notify { channel: String, payload: String },
    /// Role and privilege statements (`CREATE ROLE`, `GRANT`, …).
    Role(crate::role::RoleStatement),
    /// `SET ROLE name`; `None` for `SET ROLE NONE` / `RESET ROLE`.
    SetRole(Option<String>),
}

/// A bound `CREATE MATERIALIZED VIEW`.
#[derive(Debug, Clone)]
pub struct CreateViewPlan {
    pub name: String,
    pub if_not_exists: bool,
    /// Column names given after the view's name; empty for the query's own.
    pub columns: Vec<String>,
    pub query: Box<ast::Query>,
    /// The query as written.
    pub sql: String,
    /// `EXPLAIN CREATE …`: show the dataflow, create nothing.
    pub explain: bool,
    /// `WITH (retain_changes = '…')`: how long the view keeps each epoch's changes for
    /// subscribers resuming `AS OF` an epoch; `None` for the server's default.
    pub retain_changes: Option<std::time::Duration>,
    /// `EMIT ON WINDOW CLOSE`: each row appears once, when the watermark closes its window.
    pub emit_on_window_close: bool,
}

impl From<crate::source::SourceStatement> for Statement {
    fn from(s: crate::source::SourceStatement) -> Self {
        use crate::source::SourceStatement as S;
        match s {
            S::Create(p) => Statement::CreateSource(p),
            S::Drop {
                names,
                if_exists,
                cascade,
            } => Statement::DropSource {
                names,
                if_exists,
                cascade,
            },
            S::Show => Statement::ShowSources,
            S::Reset { name } => Statement::ResetSource { name },
        }
    }
}

impl From<crate::sink::SinkStatement> for Statement {
    fn from(s: crate::sink::SinkStatement) -> Self {
        use crate::sink::SinkStatement as S;
        match s {
            S::Create(p) => Statement::CreateSink(p),
            S::Drop { names, if_exists } => Statement::DropSink { names, if_exists },
            S::Show => Statement::ShowSinks,
        }
    }
}

impl From<crate::cursor::CursorStatement> for Statement {
    fn from(s: crate::cursor::CursorStatement) -> Self {
        use crate::cursor::CursorStatement as C;
        match s {
            C::DeclareQuery {
                cursor,
                query,
                hold,
            } => Statement::DeclareQuery {
                cursor,
                query,
                hold,
            },
            C::DeclareSubscribe { cursor, plan } => Statement::DeclareSubscribe { cursor, plan },
            C::Fetch {
                cursor,
                count,
                timeout,
            } => Statement::Fetch {
                cursor,
                count,
                timeout,
            },
            C::Move { cursor, count } => Statement::Move { cursor, count },
            C::Close { cursor } => Statement::CloseCursor { cursor },
        }
    }
}

/// The schema a DELETE's or UPDATE's read query names its target in: its tables carry each
/// row's store key as a hidden last column (the server provides it).
pub const DML_TARGET_SCHEMA: &str = "freshet_dml_target";

/// The value of a `SET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetValue {
    /// `DEFAULT` / `LOCAL`.
    Default,
    /// A literal, already unquoted.
    Value(String),
}

/// Transaction control statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionOp {
    Begin,
    Commit,
    Rollback,
    Savepoint,
    ReleaseSavepoint,
    RollbackToSavepoint,
}

/// Classifies one parsed statement.
pub fn classify(stmt: ast::Statement) -> Result<Statement, PgError> {
    use ast::Statement as S;
    Ok(match stmt {
        S::Flush {
            object_type: ast::FlushType::Tables,
            tables,
            ..
        } if tables.is_empty() => Statement::Flush,
        S::CreateView(cv) if cv.materialized => bind_create_mv(cv, false)?,
        S::Explain {
            statement,
            analyze: false,
            ..
        } if matches!(statement.as_ref(), S::CreateView(cv) if cv.materialized) => {
            let S::CreateView(cv) = *statement else {
                unreachable!("matched above")
            };
            bind_create_mv(cv, true)?
        }
        S::CreateView(cv) => Statement::CreateView(Box::new(crate::plain_view::bind(cv)?)),
        S::Drop {
            object_type: ObjectType::View,
            if_exists,
            names,
            cascade,
            ..
        } => Statement::DropView {
            names: names.iter().map(object_name).collect::<Result<_, _>>()?,
            if_exists,
            cascade,
        },
        S::Drop {
            object_type: ObjectType::MaterializedView,
            if_exists,
            names,
            cascade,
            ..
        } => Statement::DropMaterializedView {
            names: names.iter().map(object_name).collect::<Result<_, _>>()?,
            if_exists,
            cascade,
        },
        S::ShowViews {
            materialized: true, ..
        } => Statement::ShowMaterializedViews,
        S::Copy {
            source,
            to,
            target,
            options,
            legacy_options,
            ..
        } => match crate::copy::bind(source, to, target, options, legacy_options)? {
            crate::copy::CopyStatement::From(c) => Statement::CopyFrom(c),
            crate::copy::CopyStatement::To(c) => Statement::CopyTo(c),
        },
        S::Update(_) | S::Delete(_) => Statement::Dml(Box::new(
            crate::dml::bind_dml(&stmt, DML_TARGET_SCHEMA)?
                .ok_or_else(|| PgError::internal("DML statement not bound"))?,
        )),
        S::Explain {
            ref statement,
            analyze,
            ref options,
            ..
        } if matches!(
            statement.as_ref(),
            S::Update(_) | S::Delete(_) | S::Truncate(_)
        ) =>
        {
            let Some(plan) = crate::dml::bind_dml(statement, DML_TARGET_SCHEMA)? else {
                return Err(PgError::not_supported("EXPLAIN TRUNCATE"));
            };
            Statement::ExplainDml(Box::new(crate::dml::ExplainDml {
                plan,
                analyze: crate::dml::explain_analyzes(analyze, options.as_deref()),
            }))
        }
        S::Insert(ref ins) => Statement::Insert(Box::new(crate::insert::bind_insert(ins)?)),
        S::Explain {
            ref statement,
            analyze,
            ref options,
            ..
        } if matches!(statement.as_ref(), S::Insert(_))
            && crate::dml::explain_analyzes(analyze, options.as_deref()) =>
        {
            return Err(PgError::not_supported("EXPLAIN ANALYZE INSERT"));
        }
        S::Query(_) | S::Explain { .. } => Statement::Query(Box::new(stmt)),
        S::Truncate(ref t) => {
            let [target] = t.table_names.as_slice() else {
                return Err(PgError::not_supported("TRUNCATE of several tables"));
            };
            Statement::Truncate {
                table: object_name(&target.name)?,
            }
        }
        S::CreateTable(ct) => Statement::CreateTable(crate::create_table::bind_create_table(ct)?),
        S::Drop {
            object_type: ObjectType::Table,
            if_exists,
            names,
            cascade,
            ..
        } => Statement::DropTable {
            names: names.iter().map(object_name).collect::<Result<_, _>>()?,
            if_exists,
            cascade,
        },
        S::Drop {
            object_type: ObjectType::Index,
            if_exists,
            names,
            ..
        } => Statement::DropIndex {
            names: names.iter().map(object_name).collect::<Result<_, _>>()?,
            if_exists,
        },
        S::CreateIndex(ci) => Statement::CreateIndex(crate::index::bind_create_index(ci)?),
        S::Drop { object_type, .. } => {
            return Err(PgError::not_supported(format!("DROP {object_type}")))
        }
        S::Set(set) => classify_set(set)?,
        S::Reset(r) => match r.reset {
            ast::Reset::ConfigurationParameter(n)
                if matches!(n.0.as_slice(), [p] if p.as_ident().is_some_and(|i| i.value.eq_ignore_ascii_case("role"))) =>
            {
                Statement::SetRole(None)
            }
            reset => Statement::Reset {
                name: match reset {
                    ast::Reset::ALL => None,
                    ast::Reset::ConfigurationParameter(n) => Some(
                        n.0.iter()
                            .filter_map(|p| p.as_ident().map(|i| i.value.clone()))
                            .collect::<Vec<_>>()
                            .join("."),
                    ),
                },
            },
        },
        S::ShowVariable { variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect::<Vec<_>>()
                .join(" ");
            if name == "tables" {
                Statement::ShowTables
            } else {
                Statement::Show { name }
            }
        }
        S::ShowTables { .. } => Statement::ShowTables,
        S::StartTransaction { ref modes, .. } => Statement::Transaction {
            op: TransactionOp::Begin,
            savepoint: None,
            isolation: Isolation::of_modes(modes),
        },
        S::Commit { .. } => transaction(TransactionOp::Commit, None),
        S::Rollback {
            savepoint: Some(name),
            ..
        } => transaction(TransactionOp::RollbackToSavepoint, Some(&name)),
        S::Rollback { .. } => transaction(TransactionOp::Rollback, None),
        S::Savepoint { name } => transaction(TransactionOp::Savepoint, Some(&name)),
        S::ReleaseSavepoint { name } => transaction(TransactionOp::ReleaseSavepoint, Some(&name)),
        S::LISTEN { channel } => Statement::Listen {
            channel: ident(&channel),
        },
        S::UNLISTEN { channel } => Statement::Unlisten {
            channel: (channel.value != "*").then(|| ident(&channel)),
        },
        S::NOTIFY { channel, payload } => {
            let payload = payload.unwrap_or_default();
            if payload.len() >= 8000 {
                return Err(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    "payload string too long",
                ));
            }
            Statement::Notify {
                channel: ident(&channel),
                payload,
            }
        }
        S::Lock(lock) => classify_lock(lock)?,
        S::Discard { .. } => Statement::NoOp { tag: "DISCARD ALL" },
        S::Deallocate { .. } => Statement::NoOp { tag: "DEALLOCATE" },
        other => {
            let text = other.to_string();
            let head: Vec<&str> = text.split_whitespace().take(2).collect();
            return Err(PgError::not_supported(format!(
                "statement {}",
                head.join(" ").to_uppercase()
            )));
        }
    })
}

fn classify_lock(lock: ast::Lock) -> Result<Statement, PgError> {
    // Without IN … MODE, PostgreSQL's LOCK takes ACCESS EXCLUSIVE.
    match lock.lock_mode {
        Some(ast::LockTableMode::AccessShare) => Ok(Statement::LockShared {
            tables: lock.tables.iter().map(|t| lock_target(&t.name)).collect::<Result<_, _>>()?,
        }),
        mode => Err(PgError::not_supported(format!(
            "LOCK TABLE IN {} MODE (only ACCESS SHARE)",
            mode.map_or("ACCESS EXCLUSIVE".to_owned(), |m| m.to_string())
        ))),
    }
}

/// A relation to lock: ours by name, or `schema.name` in another schema (the system's:
/// `freshet_internal`, `pg_catalog`, `information_schema`).
fn lock_target(name: &ast::ObjectName) -> Result<String, PgError> {
    if let [schema, table] = name.0.as_slice() {
        let (Some(schema), Some(table)) = (schema.as_ident(), table.as_ident()) else {
            return object_name(name);
        };
        let fold = |i: &ast::Ident| match i.quote_style {
            Some(_) => i.value.clone(),
            None => i.value.to_lowercase(),
        };
        if fold(schema) != "public" {
            return Ok(format!("{}.{}", fold(schema), fold(table)));
        }
    }
    object_name(name)
}

fn classify_set(set: Set) -> Result<Statement, PgError> {
    match set {
        Set::SingleAssignment {
            variable, values, ..
        } => {
            let name = object_name(&variable)?.to_ascii_lowercase();
            let value = match values.as_slice() {
                [v] => set_value(v),
                many => SetValue::Value(
                    many.iter()
                        .map(|v| match set_value(v) {
                            SetValue::Value(s) => s,
                            SetValue::Default => "default".into(),
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            };
            Ok(Statement::Set { name, value })
        }
        Set::SetTimeZone { value, .. } => Ok(Statement::Set {
            name: "timezone".into(),
            value: set_value(&value),
        }),
        Set::SetNames { charset_name, .. } => Ok(Statement::Set {
            name: "client_encoding".into(),
            value: SetValue::Value(charset_name.value),
        }),
        Set::SetRole { role_name, .. } => Ok(Statement::SetRole(role_name.map(|r| ident(&r)))),
        Set::SetSessionAuthorization(a) if a.to_string().to_ascii_uppercase().ends_with("DEFAULT") => {
            Ok(Statement::SetRole(None))
        }
        Set::SetSessionAuthorization(_) => Err(PgError::not_supported("SET SESSION AUTHORIZATION")),
        Set::SetTransaction { modes, session, .. } => Ok(match Isolation::of_modes(&modes) {
            Some(level) => Statement::Set {
                name: if session {
                    "default_transaction_isolation".into()
                } else {
                    "transaction_isolation".into()
                },
                value: SetValue::Value(level.name().into()),
            },
            None => Statement::NoOp { tag: "SET" },
        }),
        Set::SetSessionParam(_) => Ok(Statement::NoOp { tag: "SET" }),
        other => Err(PgError::not_supported(format!("{other}"))),
    }
}

fn set_value(e: &Expr) -> SetValue {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => {
                SetValue::Value(s.clone())
            }
            Value::Number(n, _) => SetValue::Value(n.to_string()),
            Value::Boolean(b) => SetValue::Value(if *b { "on".into() } else { "off".into() }),
            other => SetValue::Value(other.to_string()),
        },
        Expr::Identifier(i)
            if i.value.eq_ignore_ascii_case("default") || i.value.eq_ignore_ascii_case("local") =>
        {
            SetValue::Default
        }
        Expr::Identifier(i) => SetValue::Value(i.value.clone()),
        other => SetValue::Value(other.to_string()),
    }
}

fn transaction(op: TransactionOp, savepoint: Option<&ast::Ident>) -> Statement {
    Statement::Transaction {
        op,
        savepoint: savepoint.map(ident),
        isolation: None,
    }
}

fn bind_create_mv(cv: ast::CreateView, explain: bool) -> Result<Statement, PgError> {
    if cv.or_replace || cv.or_alter {
        return Err(PgError::not_supported(
            "CREATE OR REPLACE MATERIALIZED VIEW",
        ));
    }
    let name = object_name(&cv.name)?;
    let columns = cv.columns.iter().map(|c| ident(&c.name)).collect();
    let sql = cv.query.to_string();
    let mut retain_changes = None;
    let mut emit_on_window_close = false;
    let options = match cv.options {
        ast::CreateTableOptions::None => vec![],
        ast::CreateTableOptions::With(o) => o,
        other => {
            return Err(PgError::not_supported(format!(
                "materialized view options {other}"
            )))
        }
    };
    for o in options {
        let ast::SqlOption::KeyValue { key, value } = o else {
            return Err(PgError::not_supported(format!("materialized view option {o}")));
        };
        let text = match &value {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::Number(s, _) => s.clone(),
                other => other.to_string(),
            },
            other => other.to_string(),
        };
        match ident(&key).as_str() {
            "retain_changes" => {
                retain_changes = Some(crate::subscribe::parse_duration(&text)?);
            }
            crate::emit::OPTION => {
                if !text.eq_ignore_ascii_case(crate::emit::ON_WINDOW_CLOSE)
                    && !text.eq_ignore_ascii_case("on_update")
                {
                    return Err(PgError::new(
                        SqlState::INVALID_PARAMETER_VALUE,
                        format!(
                            "invalid value for materialized view option \"emit\": \"{text}\" \
                             (on_update or on_window_close)"
                        ),
                    ));
                }
                emit_on_window_close = text.eq_ignore_ascii_case(crate::emit::ON_WINDOW_CLOSE);
            }
            k => {
                return Err(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("unrecognized materialized view option \"{k}\""),
                ))
            }
        }
    }
    Ok(Statement::CreateMaterializedView(Box::new(CreateViewPlan {
        name,
        if_not_exists: cv.if_not_exists,
        columns,
        query: cv.query,
        sql,
        explain,
        retain_changes,
        emit_on_window_close,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast_parse::parse;

    fn one(sql: &str) -> Result<Statement, PgError> {
        let mut v = parse(sql)?;
        assert_eq!(v.len(), 1);
        classify(v.remove(0))
    }

    #[test]
    fn bad_sql_is_a_syntax_error() {
        assert_eq!(one("SELEC 1").unwrap_err().sqlstate, SqlState::SYNTAX_ERROR);
    }

    #[test]
    fn set_and_show() {
        assert!(
            matches!(one("SET TIME ZONE 'UTC'").unwrap(), Statement::Set { ref name, .. } if name == "timezone")
        );
        assert!(
            matches!(one("SET extra_float_digits = 3").unwrap(), Statement::Set { value: SetValue::Value(ref v), .. } if v == "3")
        );
        assert!(
            matches!(one("RESET statement_timeout").unwrap(), Statement::Reset { name: Some(ref n) } if n == "statement_timeout")
        );
        assert!(
            matches!(one("RESET ALL").unwrap(), Statement::Reset { name: None })
        );
        assert!(matches!(one("SHOW TABLES").unwrap(), Statement::ShowTables));
        assert!(
            matches!(one("SHOW search_path").unwrap(), Statement::Show { ref name } if name == "search_path")
        );
    }
}
