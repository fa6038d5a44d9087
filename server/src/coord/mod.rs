//! The coordinator: what sequences work across sessions. Today: subscriptions, fed after each
//! epoch commits.

pub mod subscribe;
pub mod subscriptions;

pub use subscribe::Subscription;
pub use subscriptions::Subscriptions;
