//! The simple query protocol.

use std::sync::Arc;

use async_trait::async_trait;
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::Response;
use pgwire::api::{ClientInfo, ClientPortalStore};
use std::fmt::Debug;

use futures::Sink;
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;

use super::copy_out::CopyOut;
use super::{command_response, encode, error_info};
use crate::session::{Outcome, Session};

pub struct SimpleHandler {
    pub session: Arc<Session>,
}

#[async_trait]
impl SimpleQueryHandler for SimpleHandler {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmts = match Session::parse(query) {
            Ok(s) => s,
            Err(e) => return Ok(vec![Response::Error(Box::new(error_info(e)))]),
        };
        let mut steps = Vec::with_capacity(stmts.len());
        let mut failed = None;
        // Like PostgreSQL: statements run in order and the first error ends the string.
        for stmt in stmts {
            match self.session.execute(stmt, None).await {
                // Alone in its query string (its parser sees to that): streamed from here.
                Ok(Outcome::Subscribe(sub)) => {
                    return Ok(vec![super::subscribe::stream_copy(client, sub).await?]);
                }
                Ok(Outcome::CopyOut {
                    schema,
                    stream,
                    options,
                }) => match CopyOut::new(&schema, stream, options) {
                    // First in its query string: written from here, as it streams.
                    Ok(copy) if steps.is_empty() => {
                        let deadline = self.session.take_deadline();
                        let r = copy.send(client, deadline).await?;
                        let error = matches!(r, Response::Error(_));
                        steps.push(Step::Sent(r));
                        if error {
                            break;
                        }
                    }
                    // After other statements: pgwire writes it after their responses.
                    Ok(copy) => steps.push(Step::Copy(copy)),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                },
                Ok(o) => steps.push(Step::Outcome(o)),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        // The last await: see encode::cancel_signal.
        let cancel = encode::cancel_signal(&*client, self.session.take_deadline()).await;
        let mut out = Vec::with_capacity(steps.len() + 1);
        for step in steps {
            match step {
                Step::Sent(r) => out.push(r),
                Step::Copy(copy) => out.push(copy.into_response()),
                Step::Outcome(outcome) => match respond(outcome, cancel.clone()) {
                    Ok(r) => out.push(r),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                },
            }
        }
        if let Some(e) = failed {
            out.push(Response::Error(Box::new(error_info(e))));
        }
        Ok(out)
    }
}

/// One statement's part of the answer to a query string.
enum Step {
    Outcome(Outcome),
    /// Already written to the client; this finishes it.
    Sent(Response),
    Copy(CopyOut),
}

fn respond(
    outcome: Outcome,
    cancel: Option<encode::CancelSignal>,
) -> Result<Response, freshet_common::PgError> {
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
    let mut resp = encode::query_response(&schema, stream, &Format::UnifiedText, cancel)?;
    if let Some(tag) = tag {
        resp.set_command_tag(tag);
    }
    Ok(Response::Query(resp))
}
