//! Client authentication at startup: `trust` (loopback only) or SCRAM-SHA-256 against the
//! roles in the catalog (pgwire's SASL handler), with a bound on failed attempts per address.

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use freshet_catalog::Catalog;
use futures::Sink;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::scram::ScramAuth;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::{ClientInfo, ConnectionManager, PgWireConnectionState, METADATA_USER};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use crate::access::{Identity, SCRAM_ITERATIONS};
use crate::session::Session;

/// How clients prove who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthMode {
    /// Any client that can reach the (loopback) listener connects as the role it names; a
    /// name that is no role acts as a superuser.
    Trust,
    /// SCRAM-SHA-256 with a role's password.
    Scram,
}

/// The server's authentication: its mode, the roles, and recent failures.
#[derive(Debug)]
pub struct Auth {
    pub mode: AuthMode,
    catalog: Arc<Catalog>,
    /// Failed logins per client address in the current window.
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Failures an address may have per [`FAILURE_WINDOW`]; 0 for no bound.
    max_failures: u32,
    /// Connections per role, for their `CONNECTION LIMIT`.
    connections: Arc<crate::access::RoleConnections>,
}

/// The window failed logins are counted over.
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

impl Auth {
    pub fn new(mode: AuthMode, catalog: Arc<Catalog>, max_failures: u32) -> Arc<Auth> {
        Arc::new(Auth {
            mode,
            catalog,
            failures: Mutex::new(HashMap::new()),
            max_failures,
            connections: Arc::default(),
        })
    }

    /// Whether `addr` has used up its failed attempts.
    fn blocked(&self, addr: IpAddr) -> bool {
        if self.max_failures == 0 {
            return false;
        }
        let mut f = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match f.get(&addr) {
            Some((_, since)) if since.elapsed() >= FAILURE_WINDOW => {
                f.remove(&addr);
                false
            }
            Some((n, _)) => *n >= self.max_failures,
            None => false,
        }
    }

    fn failed(&self, addr: IpAddr, user: &str) {
        tracing::warn!(%addr, %user, "password authentication failed");
        let mut f = self.failures.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Addresses whose window passed are forgotten, so the map stays small.
        f.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
        f.entry(addr).or_insert((0, Instant::now())).0 += 1;
    }
}

/// The roles' SCRAM secrets, for pgwire. A role that does not exist, cannot log in or has no
/// password gets a made-up secret, so the exchange fails the same way for all of them.
#[derive(Debug)]
struct Secrets {
    catalog: Arc<Catalog>,
}

#[async_trait]
impl AuthSource for Secrets {
    async fn get_password(&self, login: &LoginInfo) -> PgWireResult<Password> {
        let role = login.user().and_then(|u| self.catalog.role(u));
        if let Some(r) = &role {
            if r.password.is_some() && !r.login {
                return Err(fatal("28000", format!("role \"{}\" is not permitted to log in", r.name)));
            }
        }
        match role.and_then(|r| r.password.clone()) {
            Some(s) => Ok(Password::new(Some(s.salt), s.salted_password)),
            None => {
                let salt: [u8; 16] = rand::random();
                let made_up: [u8; 32] = rand::random();
                Ok(Password::new(Some(salt.to_vec()), made_up.to_vec()))
            }
        }
    }
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message)))
}

/// One connection's startup: checks the login, then sets the session's identity.
pub struct Startup {
    session: Arc<Session>,
    auth: Arc<Auth>,
    manager: Arc<ConnectionManager>,
    sasl: SASLAuthStartupHandler<DefaultServerParameterProvider>,
    /// SASL messages the client has sent (the second is SCRAM's final one).
    sasl_messages: std::sync::atomic::AtomicU32,
}

impl Startup {
    pub fn new(session: Arc<Session>, auth: Arc<Auth>, manager: Arc<ConnectionManager>) -> Self {
        let mut scram = ScramAuth::new(Arc::new(Secrets {
            catalog: Arc::clone(&auth.catalog),
        }));
        scram.set_iterations(SCRAM_ITERATIONS as usize);
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.server_version = crate::SERVER_VERSION.to_owned();
        let sasl = SASLAuthStartupHandler::new(Arc::new(parameters))
            .with_scram(scram)
            .with_connection_manager(Arc::clone(&manager));
        Self {
            session,
            auth,
            manager,
            sasl,
            sasl_messages: std::sync::atomic::AtomicU32::new(0),
        }
    }
}

impl Startup {
    /// Counts the connection against `user`'s `CONNECTION LIMIT` for the session's life
    /// (53300 past it).
    fn admit(&self, user: &str) -> PgWireResult<()> {
        let slot = self
            .auth
            .connections
            .admit(&self.auth.catalog, user)
            .map_err(|e| fatal(e.sqlstate.0, e.message))?;
        self.session.hold_role_slot(slot);
        Ok(())
    }
}

/// Trusted logins: pgwire's no-authentication startup.
struct TrustStartup {
    manager: Arc<ConnectionManager>,
}

#[async_trait]
impl NoopStartupHandler for TrustStartup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.manager))
    }

    /// pgwire's no-authentication startup reports its own `server_version`; ours follows it
    /// before ReadyForQuery, and clients keep the last value of a parameter.
    async fn post_startup<C>(&self, client: &mut C, _message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use futures::SinkExt;
        client
            .send(PgWireBackendMessage::ParameterStatus(
                pgwire::messages::startup::ParameterStatus::new(
                    "server_version".to_owned(),
                    crate::SERVER_VERSION.to_owned(),
                ),
            ))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let addr = client.socket_addr().ip();
        if let PgWireFrontendMessage::Startup(ref startup) = message {
            let Some(user) = startup.parameters.get(METADATA_USER).filter(|u| !u.is_empty()) else {
                return Err(fatal("28000", "no PostgreSQL user name specified in startup packet".into()));
            };
            if self.auth.blocked(addr) {
                return Err(fatal(
                    "28000",
                    format!("too many failed authentication attempts from {addr}; try again later"),
                ));
            }

            if self.auth.mode == AuthMode::Trust {
                let role = self.auth.catalog.role(user);
                if role.as_ref().is_some_and(|r| !r.login) {
                    return Err(fatal("28000", format!("role \"{user}\" is not permitted to log in")));
                }
                self.admit(user)?;
                self.session.set_identity(Identity::login(user, role.is_none()));
                let trust = TrustStartup {
                    manager: Arc::clone(&self.manager),
                };
                trust.on_startup(client, message).await?;
                self.session.activity().set_pid(client.pid_and_secret_key().0);
                return Ok(());
            }
        }
        if self.auth.mode == AuthMode::Trust {
            return Ok(());
        }
        let user = client.metadata().get(METADATA_USER).cloned().unwrap_or_default();
        // The client's final SCRAM message: once its proof checks, pgwire answers with
        // AuthenticationOk and ReadyForQuery, so the role's CONNECTION LIMIT is checked first
        // (and the place given back if the proof fails).
        if matches!(message, PgWireFrontendMessage::PasswordMessageFamily(_))
            && self
                .sasl_messages
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                == 1
        {
            self.admit(&user)?;
        }
        match self.sasl.on_startup(client, message).await {
            Err(PgWireError::InvalidPassword(_)) => {
                self.session.hold_role_slot(None);
                self.auth.failed(addr, &user);
                Err(fatal("28P01", format!("password authentication failed for user \"{user}\"")))
            }
            Err(e @ (PgWireError::InvalidScramMessage(_) | PgWireError::UnsupportedSASLAuthMethod(_) | PgWireError::InvalidSASLState)) => {
                self.auth.failed(addr, &user);
                Err(fatal("28000", e.to_string()))
            }
            Err(e) => Err(e),
            Ok(()) => {
                if matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
                    self.session.set_identity(Identity::login(&user, false));
                    self.session.activity().set_pid(client.pid_and_secret_key().0);
                }
                Ok(())
            }
        }
    }
}
