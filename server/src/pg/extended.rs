//! The extended query protocol: Parse (plan for Describe), Bind, Describe, Execute.

use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::into_pg_type;
use async_trait::async_trait;
use freshet_common::{PgError, SqlState};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::{command_response, encode, to_wire_error};
use crate::session::{Described, Outcome, Session};

/// A parsed and described statement, as the portal store keeps it.
#[derive(Debug, Clone)]
pub struct Prepared {
    stmt: freshet_sql::Parsed,
    described: Described,
}

/// An empty statement: what `Portal::default` needs before its fields are set.
impl Default for Prepared {
    fn default() -> Self {
        Self {
            stmt: freshet_sql::Parsed::Ours(freshet_sql::Statement::NoOp { tag: "" }),
            described: Described { params: Vec::new(), schema: None },
        }
    }
}

/// Parses and describes statements against the connection's session.
pub struct FreshetQueryParser {
    pub(crate) session: Arc<Session>,
}

#[async_trait]
impl QueryParser for FreshetQueryParser {
    type Statement = Arc<Prepared>;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut stmts = Session::parse(sql).map_err(to_wire_error)?;
        let stmt = match stmts.len() {
            0 => return Ok(None),
            1 => stmts.remove(0),
            _ => {
                return Err(to_wire_error(PgError::new(
                    SqlState::SYNTAX_ERROR,
                    "cannot insert multiple commands into a prepared statement",
                )))
            }
        };
        let described = self.session.describe(&stmt).await.map_err(to_wire_error)?;
        Ok(Some(Arc::new(Prepared { stmt, described })))
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        // A parameter whose type nothing determines is text, as in PostgreSQL.
        stmt.described
            .params
            .iter()
            .map(|p| match p {
                Some(dt) => into_pg_type(dt).or(Ok(Type::TEXT)),
                None => Ok(Type::TEXT),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        // A prepared FETCH returns its cursor's columns, whichever cursor that is now.
        let schema = match &stmt.stmt {
            freshet_sql::Parsed::Ours(freshet_sql::Statement::Fetch { cursor, .. }) => {
                self.session.cursor_schema(cursor)
            }
            _ => stmt.described.schema.clone(),
        };
        match &schema {
            Some(schema) => encode::fields(schema, format.unwrap_or(&Format::UnifiedText))
                .map_err(to_wire_error),
            None => Ok(vec![]),
        }
    }
}

/// `portal` with its `json` / `jsonb` parameters as text (binary jsonb without its version
/// byte), if it has any.
fn json_params_as_text(portal: &Portal<Arc<Prepared>>) -> Option<Portal<Arc<Prepared>>> {
    let types = &portal.statement.parameter_types;
    let json = |t: &Option<Type>| matches!(t, Some(t) if *t == Type::JSON || *t == Type::JSONB);
    if !types.iter().any(json) {
        return None;
    }
    let mut parameters = portal.parameters.clone();
    let mut text_types = types.clone();
    for (i, t) in types.iter().enumerate() {
        if !json(t) {
            continue;
        }
        let binary = portal.parameter_format.format_for(i) == pgwire::api::results::FieldFormat::Binary;
        if binary && *t == Some(Type::JSONB) {
            if let Some(Some(bytes)) = parameters.get_mut(i) {
                if bytes.first() == Some(&1) {
                    *bytes = bytes.slice(1..);
                }
            }
        }
        text_types[i] = Some(Type::TEXT);
    }
    let mut out = Portal::default();
    out.name = portal.name.clone();
    out.statement = Arc::new(pgwire::api::stmt::StoredStatement::new(
        portal.statement.id.clone(),
        Arc::clone(&portal.statement.statement),
        text_types,
    ));
    out.parameter_format = portal.parameter_format.clone();
    out.parameters = parameters;
    out.result_column_format = portal.result_column_format.clone();
    Some(out)
}

pub struct ExtendedHandler {
    pub session: Arc<Session>,
    pub parser: Arc<FreshetQueryParser>,
}

#[async_trait]
impl ExtendedQueryHandler for ExtendedHandler {
    type Statement = Arc<Prepared>;
    type QueryParser = FreshetQueryParser;

    fn query_parser(&self) -> Arc<Self::QueryParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo
            + ClientPortalStore
            + futures::Sink<PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: std::fmt::Debug,
        PgWireError: From<<C as futures::Sink<PgWireBackendMessage>>::Error>,
    {
        // JSON parameters arrive as text: arrow-pg cannot decode them (binary jsonb has a
        // version byte first).
        let json_as_text = json_params_as_text(portal);
        let portal = json_as_text.as_ref().unwrap_or(portal);
        let prepared = &portal.statement.statement;
        // A parameter whose type nothing determines is text (as described to the client):
        // decoded as anything else, or left untyped, arrow-pg drops a NULL of it from the
        // list, shifting every later parameter.
        let text = datafusion::arrow::datatypes::DataType::Utf8;
        let mut inferred: Vec<Option<&datafusion::arrow::datatypes::DataType>> = prepared
            .described
            .params
            .iter()
            .map(|p| Some(p.as_ref().unwrap_or(&text)))
            .collect();
        // A number, boolean, date or timestamp the client sent typed (psycopg 3 sends a Python int as int2,
        // int4 or int8 by its size) where we expect text: decoded as the client's type, then
        // cast to text, instead of refused.
        let natively: Vec<usize> = (0..inferred.len())
            .filter(|&i| {
                inferred[i] == Some(&text)
                    && portal
                        .statement
                        .parameter_types
                        .get(i)
                        .and_then(|t| t.as_ref())
                        .is_some_and(|t| {
                            matches!(
                                *t,
                                Type::INT2
                                    | Type::INT4
                                    | Type::INT8
                                    | Type::FLOAT4
                                    | Type::FLOAT8
                                    | Type::NUMERIC
                                    | Type::BOOL
                                    | Type::DATE
                                    | Type::TIMESTAMP
                                    | Type::TIMESTAMPTZ
                            )
                        })
            })
            .collect();
        for &i in &natively {
            inferred[i] = None;
        }
        let params = if portal.parameter_len() > 0 {
            let mut values = deserialize_parameters(portal, &inferred).map_err(param_error)?;
            if let datafusion::common::ParamValues::List(list) = &mut values {
                for &i in &natively {
                    if let Some(p) = list.get_mut(i) {
                        p.value = p.value.cast_to(&text).map_err(|e| {
                            to_wire_error(freshet_sql::error::map_df_error(&e))
                        })?;
                    }
                }
            }
            let decoded = match &values {
                datafusion::common::ParamValues::List(l) => l.len(),
                datafusion::common::ParamValues::Map(m) => m.len(),
            };
            if decoded != portal.parameter_len() {
                return Err(to_wire_error(PgError::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    "a parameter of this type cannot be NULL here",
                )
                .with_hint("Give the parameter a type the server knows, e.g. text.")));
            }
            Some(values)
        } else {
            None
        };
        let outcome = self
            .session
            .execute(prepared.stmt.clone(), params)
            .await
            .map_err(to_wire_error)?;
        if let freshet_sql::Parsed::Ours(
            freshet_sql::Statement::DeclareQuery { cursor, .. }
            | freshet_sql::Statement::DeclareSubscribe { cursor, .. },
        ) = &prepared.stmt
        {
            // As in PostgreSQL, a cursor is also a portal: clients (psycopg 3's server-side
            // cursors) describe it by name.
            client.portal_store().put_portal(Arc::new(cursor_portal(cursor)));
        }
        let outcome = match outcome {
            Outcome::Subscribe(sub) => return super::subscribe::stream_copy(client, sub).await,
            Outcome::CopyOut {
                schema,
                stream,
                options,
            } => {
                let copy = super::copy_out::CopyOut::new(&schema, stream, options)
                    .map_err(to_wire_error)?;
                return copy.send(client, self.session.take_deadline()).await;
            }
            other => other,
        };
        if let Some(r) = command_response(&outcome) {
            return Ok(r);
        }
        let Outcome::Rows {
            schema,
            stream,
            tag,
        } = outcome
        else {
            unreachable!("non-row outcomes answered above")
        };
        // The last await: see encode::cancel_signal.
        let cancel = encode::cancel_signal(&*client, self.session.take_deadline()).await;
        let mut resp =
            encode::query_response(&schema, stream, &portal.result_column_format, cancel)
                .map_err(to_wire_error)?;
        if let Some(tag) = tag {
            resp.set_command_tag(tag);
        }
        Ok(Response::Query(resp))
    }
}

/// The protocol-level portal of a SQL cursor: described as its FETCH is, executed as
/// `FETCH ALL` from it.
fn cursor_portal(cursor: &str) -> Portal<Arc<Prepared>> {
    let fetch = Prepared {
        stmt: freshet_sql::Parsed::Ours(freshet_sql::Statement::Fetch {
            cursor: cursor.to_owned(),
            count: freshet_sql::FetchCount::All,
            timeout: None,
        }),
        described: Described {
            params: Vec::new(),
            schema: None,
        },
    };
    let mut portal = Portal::default();
    portal.name = cursor.to_owned();
    portal.statement = Arc::new(pgwire::api::stmt::StoredStatement::new(
        String::new(),
        Arc::new(fetch),
        Vec::new(),
    ));
    portal
}

/// Bad parameter bytes are the client's mistake: 22P02, never XX000.
fn param_error(e: PgWireError) -> PgWireError {
    match e {
        PgWireError::UserError(_) => e,
        other => to_wire_error(PgError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("invalid parameter value: {other}"),
        )),
    }
}
