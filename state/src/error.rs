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
    /// The data directory holds another layout version.
    #[error(
        "data directory {dir} holds store format version {found}; this freshet reads and writes \
         version {expected} only: start it on a new data directory, or the freshet that wrote this one"
    )]
    FormatVersion { dir: String, found: u32, expected: u32 },
}

/// Result with the state store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
