//! Errors of the layers below the server as PostgreSQL errors.

use freshet_common::PgError;

/// A catalog error as the client sees it: its SQLSTATE and message.
pub(crate) fn user_error(e: freshet_catalog::Error) -> PgError {
    use freshet_common::UserError;
    PgError::new(e.sqlstate(), e.to_string())
}
