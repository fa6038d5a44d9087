//! The PostgreSQL wire protocol front end (pgwire): startup, simple and extended query,
//! cancel. Turns [`crate::session::Outcome`]s into protocol messages.

pub mod auth;
mod coalesce;
mod copy_out;
mod encode;
mod extended;
mod params;
pub mod limit;
mod serve;
mod simple;
mod subscribe;
mod text;
pub mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use freshet_common::PgError;
use futures::{Sink, SinkExt};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::results::{CopyResponse, Response, Tag};
use pgwire::api::ClientInfo;
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use pgwire::error::PgWireResult;
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::PgWireBackendMessage;
use std::fmt::Debug;

use crate::session::{Outcome, Session};
use freshet_sql::TransactionOp;

pub use extended::FreshetQueryParser;
pub use serve::{serve, Terms};

/// The handlers of one connection. Built per accepted socket, so `session` is this
/// connection's own.
pub struct ConnectionHandlers {
    pub(crate) session: Arc<Session>,
    pub(crate) parser: Arc<FreshetQueryParser>,
    pub(crate) manager: Arc<ConnectionManager>,
    pub(crate) auth: Arc<auth::Auth>,
}

impl ConnectionHandlers {
    /// Handlers for a new connection with `session`.
    pub fn new(
        session: Arc<Session>,
        manager: Arc<ConnectionManager>,
        auth: Arc<auth::Auth>,
    ) -> Arc<Self> {
        let parser = Arc::new(FreshetQueryParser {
            session: Arc::clone(&session),
        });
        Arc::new(Self {
            session,
            parser,
            manager,
            auth,
        })
    }
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        Arc::new(simple::SimpleHandler {
            session: Arc::clone(&self.session),
        })
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        Arc::new(extended::ExtendedHandler {
            session: Arc::clone(&self.session),
            parser: Arc::clone(&self.parser),
        })
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::new(auth::Startup::new(
            Arc::clone(&self.session),
            Arc::clone(&self.auth),
            Arc::clone(&self.manager),
        ))
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::new(DefaultCancelHandler::new(Arc::clone(&self.manager)))
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        Arc::new(CopyInHandler {
            session: Arc::clone(&self.session),
        })
    }
}

/// Receives the data of `COPY … FROM STDIN` into the session's pending COPY.
struct CopyInHandler {
    session: Arc<Session>,
}

#[async_trait]
impl CopyHandler for CopyInHandler {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.session.copy_data(&copy_data.data);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let n = self.session.copy_done(false).await.map_err(to_wire_error)?;
        let tag = Tag::new("COPY").with_rows(n as usize);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _ = self.session.copy_done(true).await;
        to_wire_error(PgError::new(
            freshet_common::SqlState::QUERY_CANCELED,
            format!("COPY from stdin failed: {}", fail.message),
        ))
    }
}

/// Our error as the client sees it: never `ApiError` (which pgwire reports as XX000).
pub(crate) fn to_wire_error(e: PgError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e)))
}

pub(crate) fn error_info(e: PgError) -> ErrorInfo {
    let mut info = ErrorInfo::new("ERROR".to_owned(), e.sqlstate.code().to_owned(), e.message);
    info.detail = e.detail;
    info.hint = e.hint;
    if let Some(o) = e.object {
        info.schema = o.schema;
        info.table = o.table;
        info.column = o.column;
        info.constraint = o.constraint;
    }
    info
}

/// The protocol response for a non-row outcome.
pub(crate) fn command_response(outcome: &Outcome) -> Option<Response> {
    match outcome {
        Outcome::Rows { .. } | Outcome::Subscribe(_) | Outcome::CopyOut { .. } => None,
        Outcome::Command { tag, rows } => Some(Response::Execution(match (*tag, rows) {
            ("INSERT", Some(n)) => Tag::new("INSERT").with_oid(0).with_rows(*n as usize),
            (t, Some(n)) => Tag::new(t).with_rows(*n as usize),
            (t, None) => Tag::new(t),
        })),
        Outcome::CopyIn { columns, binary } => Some(Response::CopyIn(CopyResponse::new(
            i8::from(*binary),
            *columns,
            futures::stream::empty(),
        ))),
        Outcome::Transaction(op) => Some(match op {
            TransactionOp::Begin => Response::TransactionStart(Tag::new("BEGIN")),
            TransactionOp::Commit => Response::TransactionEnd(Tag::new("COMMIT")),
            TransactionOp::Rollback => Response::TransactionEnd(Tag::new("ROLLBACK")),
            TransactionOp::Savepoint => Response::Execution(Tag::new("SAVEPOINT")),
            TransactionOp::ReleaseSavepoint => Response::Execution(Tag::new("RELEASE")),
            TransactionOp::RollbackToSavepoint => Response::Execution(Tag::new("ROLLBACK")),
        }),
    }
}
