//! The coordinator: what sequences work across sessions. Today: subscriptions, fed after each
//! epoch commits; the changelogs views keep for subscribers starting from a past epoch and for
//! sinks; the sinks, which write those changes out; the dataflows of `SUBSCRIBE (query)`; and
//! the epochs that apply temporal filters as time passes.

pub mod activity;
pub mod backfills;
pub mod changelog;
pub mod dependents;
pub mod engine;
pub mod locks;
pub mod notify;
pub mod sequences;
pub mod sinks;
pub mod sources;
pub mod subscribe;
pub mod subscriptions;
pub mod timers;
pub mod transient;
pub mod views;

pub use changelog::Changelogs;
pub use subscribe::Subscription;
pub use subscriptions::Subscriptions;
