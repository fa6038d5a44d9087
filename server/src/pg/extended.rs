//! The extended query protocol: Parse (plan for Describe), Bind, Describe, Execute.

use std::sync::Arc;

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
    pub(super) described: Described,
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
                Some(dt) if super::params::is_uuid_param(dt) => Ok(Type::UUID),
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

    /// As pgwire's, except that a statement with parameters and no result columns is
    /// described as PostgreSQL describes it — ParameterDescription, then NoData — not with an
    /// empty RowDescription (pgJDBC then counts no rows for a batched INSERT).
    async fn on_describe<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::extendedquery::Describe,
    ) -> PgWireResult<()>
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
        use futures::SinkExt;
        use pgwire::api::store::Entry;
        use pgwire::messages::data::{NoData, ParameterDescription};
        if message.target_type == b'S' {
            let name = message.name.as_deref().unwrap_or(pgwire::api::DEFAULT_NAME);
            if let Some(Entry::Value(stmt)) = client.portal_store().get_statement(name) {
                let described = self.do_describe_statement(client, &stmt).await?;
                if !described.fields.is_empty() {
                    return pgwire::api::query::send_describe_response(client, &described).await;
                }
                let oids = described.parameters.iter().map(|t| t.oid()).collect();
                client
                    .send(PgWireBackendMessage::ParameterDescription(
                        ParameterDescription::new(oids),
                    ))
                    .await?;
                client.send(PgWireBackendMessage::NoData(NoData::new())).await?;
                return Ok(());
            }
        }
        self._on_describe(client, message).await
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
        let params = super::params::decode(portal)?;
        let prepared = &portal.statement.statement;
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
pub(super) fn param_error(e: PgWireError) -> PgWireError {
    match e {
        PgWireError::UserError(_) => e,
        other => to_wire_error(PgError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("invalid parameter value: {other}"),
        )),
    }
}
