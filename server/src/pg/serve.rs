//! One connection's message loop: pgwire's, plus asynchronous notifications (LISTEN) sent
//! while the session is idle — pgwire's own loop only ever waits on the socket, so it could
//! deliver them only with a query's response.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, PgWireConnectionState, PgWireServerHandlers};
use pgwire::messages::response::{NotificationResponse, TransactionStatus};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;

use super::extended::Prepared;
use super::ConnectionHandlers;
use crate::coord::notify::Notification;

/// A client that has not finished starting up in this long is dropped (as in pgwire).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Serves `socket` with `handlers` until the client leaves; `notes` are its session's
/// notifications.
pub async fn serve(
    socket: TcpStream,
    handlers: Arc<ConnectionHandlers>,
    mut notes: UnboundedReceiver<Notification>,
) -> std::io::Result<()> {
    let startup_timeout = tokio::time::sleep(STARTUP_TIMEOUT);
    tokio::pin!(startup_timeout);
    let negotiated = tokio::select! {
        _ = &mut startup_timeout => return Ok(()),
        s = negotiate_tls::<Arc<Prepared>>(socket, None) => s?,
    };
    let Some(mut socket) = negotiated else {
        return Ok(());
    };
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
        let msg = tokio::select! {
            _ = &mut startup_timeout, if starting => None,
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
        let Some(Ok(msg)) = msg else {
            break;
        };
        // A Terminate means the client is leaving: close at once (asyncpg waits for it).
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        if let Err(e) = process_message(
            msg,
            &mut socket,
            Arc::clone(&startup),
            Arc::clone(&simple),
            Arc::clone(&extended),
            Arc::clone(&copy),
            Arc::clone(&cancel),
        )
        .await
        {
            process_error(&mut socket, e, is_extended).await?;
        }
    }
    Ok(())
}
