//! One connection's message loop: pgwire's, plus asynchronous notifications (LISTEN) sent
//! while the session is idle — pgwire's own loop only ever waits on the socket, so it could
//! deliver them only with a query's response.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::response::{NotificationResponse, TransactionStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::codec::{Framed, FramedParts};

use super::coalesce::Coalesced;
use super::extended::Prepared;
use super::limit::{Budget, Limited, TooLarge};
use super::ConnectionHandlers;
use crate::coord::notify::Notification;

/// A client that has not finished starting up in this long is dropped (as in pgwire).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves `socket` with `handlers` until the client leaves; `notes` are its session's
/// notifications.
/// What the server settled for a connection before serving it.
pub struct Terms {
    /// Largest message the client may send (bytes).
    pub max_message: usize,
    /// Large messages being received, all connections together.
    pub budget: Arc<Budget>,
    /// Within `--max-connections`; otherwise the client gets 53300 after its startup.
    pub admitted: bool,
    /// TLS, when the server has a certificate.
    pub tls: Option<pgwire::tokio::TlsAcceptor>,
    /// Refuse clients from other hosts that do not use TLS (when there is TLS).
    pub tls_required_remote: bool,
}

pub async fn serve(
    socket: TcpStream,
    handlers: Arc<ConnectionHandlers>,
    mut notes: UnboundedReceiver<Notification>,
    terms: Terms,
) -> std::io::Result<()> {
    let Terms {
        max_message,
        budget,
        admitted,
        tls,
        tls_required_remote,
    } = terms;
    let remote = !socket.peer_addr()?.ip().is_loopback();
    // A second handle on the socket, to notice the client leaving while a statement runs.
    let std_socket = socket.into_std()?;
    let watch = TcpStream::from_std(std_socket.try_clone()?)?;
    let socket = TcpStream::from_std(std_socket)?;
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let negotiated = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        s = negotiate_tls::<Arc<Prepared>>(socket, tls.clone()) => s?,
    };
    let Some(mut socket) = negotiated else {
        return Ok(());
    };
    let encrypted = !matches!(socket.get_ref(), pgwire::tokio::server::MaybeTls::Plain(_));
    if tls.is_some() && tls_required_remote && remote && !encrypted {
        fatal(
            &mut socket,
            "28000",
            "connections from other hosts must use TLS (sslmode=require)".into(),
        )
        .await;
        return Ok(());
    }
    // Messages past `max_message` bytes are refused from their header on.
    let parts = socket.into_parts();
    // Responses go out in one write each (see coalesce.rs).
    let limited = Limited::new(Coalesced::new(parts.io), max_message, budget, &parts.read_buf)?;
    let mut limited_parts = FramedParts::new(limited, parts.codec);
    limited_parts.read_buf = parts.read_buf;
    limited_parts.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(limited_parts);
    // The concrete handlers (PgWireServerHandlers hides their types, which the codec needs).
    let startup = handlers.startup_handler();
    let simple = Arc::new(super::simple::SimpleHandler {
        session: Arc::clone(&handlers.session),
    });
    let extended = Arc::new(super::extended::ExtendedHandler {
        session: Arc::clone(&handlers.session),
        parser: Arc::clone(&handlers.parser),
    });
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup | PgWireConnectionState::AuthenticationInProgress
        );
        // Notifications wait while a transaction block is open, as in PostgreSQL.
        let idle = !starting
            && matches!(socket.state(), PgWireConnectionState::ReadyForQuery)
            && matches!(socket.transaction_status(), TransactionStatus::Idle);
        // A block left open and idle too long ends the connection, as in PostgreSQL.
        let in_block = !starting
            && matches!(socket.state(), PgWireConnectionState::ReadyForQuery)
            && !matches!(socket.transaction_status(), TransactionStatus::Idle);
        let idle_limit = in_block
            .then(|| handlers.session.idle_in_transaction_timeout())
            .flatten();
        let msg = tokio::select! {
            _ = &mut startup_timeout, if starting => None,
            () = sleep_or_never(idle_limit) => {
                fatal(
                    &mut socket,
                    "25P03",
                    "terminating connection due to idle-in-transaction timeout".into(),
                )
                .await;
                break;
            }
            m = socket.next() => m,
            Some(n) = notes.recv(), if idle => {
                socket
                    .send(PgWireBackendMessage::NotificationResponse(NotificationResponse::new(
                        n.pid, n.channel, n.payload,
                    )))
                    .await?;
                continue;
            }
        };
        let msg = match msg {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                if let Some(t) = too_large(&e) {
                    fatal(&mut socket, t.sqlstate(), t.to_string()).await;
                }
                break;
            }
            None => break,
        };
        // A Terminate means the client is leaving: close at once (asyncpg waits for it).
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        if !admitted && matches!(msg, PgWireFrontendMessage::Startup(_)) {
            fatal(&mut socket, "53300", "sorry, too many clients already".into()).await;
            break;
        }
        let is_extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        let processed = tokio::select! {
            r = process_message(
                msg,
                &mut socket,
                Arc::clone(&startup),
                Arc::clone(&simple),
                Arc::clone(&extended),
                Arc::clone(&copy),
                Arc::clone(&cancel),
            ) => r,
            () = gone(&watch) => {
                // Nobody will read the answer: stop the statement (dropping it stops its
                // execution; a write not yet committed is not committed), as PostgreSQL
                // does with client_connection_check_interval.
                tracing::debug!("client left during a statement: statement stopped");
                break;
            }
        };
        if let Err(e) = processed {
            if starting {
                // A failed login ends the connection: the error is FATAL, with no
                // ReadyForQuery after it (asyncpg and libpq expect the close).
                let mut info = ErrorInfo::from(e);
                info.severity = "FATAL".into();
                let _ = socket
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await;
                break;
            }
            process_error(&mut socket, e, is_extended).await?;
        }
    }
    Ok(())
}

/// Resolves when the peer has closed the connection (or reset it). Bytes the client has
/// already sent (pipelined messages) hide a close behind them: then it never resolves.
async fn gone(watch: &TcpStream) {
    let mut b = [0u8; 1];
    match watch.peek(&mut b).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// The limit a message broke, when that is why reading failed.
fn too_large(e: &PgWireError) -> Option<&TooLarge> {
    match e {
        PgWireError::IoError(io) => io.get_ref()?.downcast_ref::<TooLarge>(),
        _ => None,
    }
}

/// Sleeps `d`, or forever when there is none.
async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Sends a FATAL error before the connection is closed (a failed send changes nothing then).
async fn fatal<S>(socket: &mut S, sqlstate: &str, message: String)
where
    S: futures::Sink<PgWireBackendMessage> + Unpin,
{
    let info = ErrorInfo::new("FATAL".into(), sqlstate.into(), message);
    let _ = socket
        .send(PgWireBackendMessage::ErrorResponse(info.into()))
        .await;
}
