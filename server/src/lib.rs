//! freshet-server: the server binary's library.
//!
//! Owns the pgwire front end ([`pg`]), sessions and statement execution ([`session`]), the
//! engine shared by all sessions ([`engine`]), DataFusion's view of our tables ([`query`]),
//! the coordinator's subscriptions ([`coord`]),
//! SQL functions PostgreSQL clients expect ([`functions`]), materialized view lifecycle
//! ([`views`]), Kafka sources ([`sources`]) and the listener ([`server`]).
//! It is the only crate that builds a tokio runtime, parses the CLI or imports pgwire.

pub mod access;
pub mod alloc;
pub mod config;
pub mod coord;
pub mod error;
pub mod functions;
pub mod memory;
pub mod pg;
pub mod query;
pub mod server;
pub mod session;

/// The one database (catalog) name.
pub const DATABASE_NAME: &str = "freshet";

/// The PostgreSQL version we report; drivers parse it (`server_version`, `version()`) and
/// tools adapt their queries to it. PostgreSQL 15 is what freshet is checked against (its
/// differential tests' oracle), and pg_dump refuses a server newer than itself.
pub const SERVER_VERSION: &str = "15.18";
/// `server_version_num` for [`SERVER_VERSION`].
pub const SERVER_VERSION_NUM: &str = "150018";
