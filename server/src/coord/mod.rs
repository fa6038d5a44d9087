//! The coordinator: what sequences work across sessions. Today: subscriptions, fed after each
//! epoch commits, and the changelogs views keep for subscribers starting from a past epoch.

pub mod changelog;
pub mod subscribe;
pub mod subscriptions;

pub use changelog::Changelogs;
pub use subscribe::Subscription;
pub use subscriptions::Subscriptions;
