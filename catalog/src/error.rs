//! Catalog errors, each with its SQLSTATE.

use freshet_common::{SqlState, UserError};

/// Errors of catalog operations.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `CREATE` of a name that exists.
    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),
    /// A name that does not exist.
    #[error("table \"{0}\" does not exist")]
    UndefinedTable(String),
    /// Two columns with one name.
    #[error("column \"{0}\" specified more than once")]
    DuplicateColumn(String),
    /// A primary key over a type we cannot key by.
    #[error("data type {1} of column \"{0}\" cannot be part of a primary key")]
    UnkeyableType(String, String),
    /// `CREATE ROLE` of a name that exists.
    #[error("role \"{0}\" already exists")]
    DuplicateRole(String),
    /// A role name that does not exist.
    #[error("role \"{0}\" does not exist")]
    UndefinedRole(String),
    /// `DROP ROLE` of a role that owns objects or holds privileges.
    #[error("role \"{0}\" cannot be dropped because some objects depend on it ({1})")]
    RoleInUse(String, String),
    /// A membership grant that would make a role a member of itself.
    #[error("role \"{0}\" is a member of role \"{1}\"")]
    CircularMembership(String, String),
    /// `DROP INDEX` of a name that is no index.
    #[error("index \"{0}\" does not exist")]
    UndefinedIndex(String),
    /// `DROP INDEX` of a relation that is not an index.
    #[error("\"{0}\" is not an index")]
    NotAnIndex(String),
    /// `DROP INDEX` of the index a constraint is enforced through.
    #[error("cannot drop index {0} because constraint {0} on table {1} requires it")]
    IndexRequired(String, String),
    /// `DROP INDEX` of an index a materialized view reads through.
    #[error("cannot drop index {0} because other objects depend on it (materialized view {1})")]
    IndexInUse(String, String),
    /// The store failed.
    #[error(transparent)]
    State(#[from] freshet_state::Error),
    /// A definition failed to (de)serialize.
    #[error("corrupt catalog entry: {0}")]
    Decode(#[source] serde_json::Error),
    /// A persisted value has the wrong shape.
    #[error("corrupt catalog entry")]
    Corrupt,
}

/// Result with the catalog's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl UserError for Error {
    fn sqlstate(&self) -> SqlState {
        match self {
            Error::DuplicateTable(_) => SqlState::DUPLICATE_TABLE,
            Error::UndefinedTable(_) => SqlState::UNDEFINED_TABLE,
            Error::DuplicateColumn(_) => SqlState::DUPLICATE_COLUMN,
            Error::UnkeyableType(..) => SqlState::FEATURE_NOT_SUPPORTED,
            Error::DuplicateRole(_) => SqlState::DUPLICATE_OBJECT,
            Error::UndefinedRole(_) => SqlState::UNDEFINED_OBJECT,
            Error::RoleInUse(..) => SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
            Error::CircularMembership(..) => SqlState::INVALID_GRANT_OPERATION,
            Error::UndefinedIndex(_) => SqlState::UNDEFINED_OBJECT,
            Error::NotAnIndex(_) => SqlState::WRONG_OBJECT_TYPE,
            Error::IndexRequired(..) | Error::IndexInUse(..) => {
                SqlState::DEPENDENT_OBJECTS_STILL_EXIST
            }
            Error::State(e) => e.sqlstate(),
            Error::Decode(_) | Error::Corrupt => SqlState::INTERNAL_ERROR,
        }
    }
}
