//! Errors of the state store.

/// Errors raised by the state store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB reported an error (IO, corruption, options).
    #[error("storage error: {0}")]
    RocksDb(#[from] rocksdb::Error),
    /// A stored value could not be decoded: corruption or a bug.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
}

/// Result with the state store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
