//! Errors of the state store.

use freshet_common::{PgError, SqlState, UserError};

/// Errors raised by the state store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB reported an error (IO, corruption, options).
    #[error("{}", rocksdb_message(.0))]
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

impl Error {
    /// Whether the file system the data directory is on is full.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::RocksDb(e) if is_no_space(e))
    }

    /// The error as a client sees it.
    pub fn to_pg(&self) -> PgError {
        PgError::new(self.sqlstate(), self.to_string())
    }
}

fn is_no_space(e: &rocksdb::Error) -> bool {
    let s = e.as_ref();
    s.contains("No space left on device") || s.contains("NoSpace")
}

/// RocksDB's message, except for a full disk: RocksDB names the file it failed to write,
/// which clients have no business seeing.
fn rocksdb_message(e: &rocksdb::Error) -> String {
    if is_no_space(e) {
        "could not write to the data directory: no space left on device".to_owned()
    } else {
        format!("storage error: {e}")
    }
}

impl UserError for Error {
    fn sqlstate(&self) -> SqlState {
        match self {
            e if e.is_disk_full() => SqlState::DISK_FULL,
            Error::RocksDb(_) => SqlState::IO_ERROR,
            Error::Corrupt(_) => SqlState::DATA_CORRUPTED,
            Error::FormatVersion { .. } => SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
        }
    }

    fn hint(&self) -> Option<String> {
        self.is_disk_full().then(|| {
            "Free disk space: writes resume by themselves once there is room.".to_owned()
        })
    }
}

impl From<Error> for PgError {
    fn from(e: Error) -> PgError {
        let pg = e.to_pg();
        match e.hint() {
            Some(h) => pg.with_hint(h),
            None => pg,
        }
    }
}

/// Result with the state store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
