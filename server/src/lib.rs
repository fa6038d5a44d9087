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
pub mod engine;
pub mod functions;
pub mod pg;
pub mod query;
pub mod sequences;
pub mod server;
pub mod session;
pub mod sources;
pub mod views;

/// The PostgreSQL version we report; drivers parse it (`server_version`, `version()`).
pub const SERVER_VERSION: &str = "16.6";
/// `server_version_num` for [`SERVER_VERSION`].
pub const SERVER_VERSION_NUM: &str = "160006";
