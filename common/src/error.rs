//! The one SQLSTATE contract: every user-facing error can say its SQLSTATE, detail and hint.

use std::fmt;

/// A PostgreSQL SQLSTATE code (five characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SqlState(pub &'static str);

impl SqlState {
    pub const SUCCESSFUL_COMPLETION: SqlState = SqlState("00000");
    pub const UNABLE_TO_CONNECT: SqlState = SqlState("08001");
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState("22023");
    pub const DATA_EXCEPTION: SqlState = SqlState("22000");
    pub const INVALID_DATETIME_FORMAT: SqlState = SqlState("22007");
    pub const NUMERIC_VALUE_OUT_OF_RANGE: SqlState = SqlState("22003");
    pub const DIVISION_BY_ZERO: SqlState = SqlState("22012");
    pub const INVALID_REGULAR_EXPRESSION: SqlState = SqlState("2201B");
    pub const INVALID_ARGUMENT_FOR_LOGARITHM: SqlState = SqlState("2201E");
    pub const INVALID_ARGUMENT_FOR_POWER_FUNCTION: SqlState = SqlState("2201F");
    pub const INVALID_ROW_COUNT_IN_LIMIT: SqlState = SqlState("2201W");
    pub const INVALID_ROW_COUNT_IN_OFFSET: SqlState = SqlState("2201X");
    pub const SUBSTRING_ERROR: SqlState = SqlState("22011");
    pub const INVALID_TEXT_REPRESENTATION: SqlState = SqlState("22P02");
    pub const INVALID_BINARY_REPRESENTATION: SqlState = SqlState("22P03");
    pub const NULL_VALUE_NOT_ALLOWED: SqlState = SqlState("22004");
    pub const DATETIME_FIELD_OVERFLOW: SqlState = SqlState("22008");
    pub const CHARACTER_NOT_IN_REPERTOIRE: SqlState = SqlState("22021");
    pub const BAD_COPY_FILE_FORMAT: SqlState = SqlState("22P04");
    pub const CARDINALITY_VIOLATION: SqlState = SqlState("21000");
    pub const NOT_NULL_VIOLATION: SqlState = SqlState("23502");
    pub const UNIQUE_VIOLATION: SqlState = SqlState("23505");
    pub const CHECK_VIOLATION: SqlState = SqlState("23514");
    pub const INVALID_TRANSACTION_STATE: SqlState = SqlState("25000");
    pub const ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25001");
    pub const IN_FAILED_SQL_TRANSACTION: SqlState = SqlState("25P02");
    pub const NO_ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25P01");
    pub const INVALID_CURSOR_STATE: SqlState = SqlState("24000");
    pub const INVALID_CURSOR_NAME: SqlState = SqlState("34000");
    pub const DUPLICATE_CURSOR: SqlState = SqlState("42P03");
    pub const SERIALIZATION_FAILURE: SqlState = SqlState("40001");
    pub const DEPENDENT_OBJECTS_STILL_EXIST: SqlState = SqlState("2BP01");
    pub const SYNTAX_ERROR: SqlState = SqlState("42601");
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState("42501");
    pub const TOO_MANY_CONNECTIONS: SqlState = SqlState("53300");
    pub const UNDEFINED_COLUMN: SqlState = SqlState("42703");
    pub const UNDEFINED_FUNCTION: SqlState = SqlState("42883");
    pub const UNDEFINED_TABLE: SqlState = SqlState("42P01");
    pub const UNDEFINED_OBJECT: SqlState = SqlState("42704");
    pub const INVALID_SCHEMA_NAME: SqlState = SqlState("3F000");
    pub const RESERVED_NAME: SqlState = SqlState("42939");
    pub const OBJECT_IN_USE: SqlState = SqlState("55006");
    pub const DUPLICATE_OBJECT: SqlState = SqlState("42710");
    pub const INVALID_GRANT_OPERATION: SqlState = SqlState("0LP01");
    pub const INVALID_AUTHORIZATION: SqlState = SqlState("28000");
    pub const INVALID_PASSWORD: SqlState = SqlState("28P01");
    pub const DUPLICATE_TABLE: SqlState = SqlState("42P07");
    pub const DUPLICATE_COLUMN: SqlState = SqlState("42701");
    pub const AMBIGUOUS_COLUMN: SqlState = SqlState("42702");
    pub const DATATYPE_MISMATCH: SqlState = SqlState("42804");
    pub const WRONG_OBJECT_TYPE: SqlState = SqlState("42809");
    pub const GROUPING_ERROR: SqlState = SqlState("42803");
    pub const INVALID_TABLE_DEFINITION: SqlState = SqlState("42P16");
    pub const INVALID_COLUMN_REFERENCE: SqlState = SqlState("42P10");
    pub const UNDEFINED_PARAMETER: SqlState = SqlState("42P02");
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState("55000");
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState("54000");
    pub const CONFIGURATION_LIMIT_EXCEEDED: SqlState = SqlState("53400");
    pub const STATEMENT_TOO_COMPLEX: SqlState = SqlState("54001");
    pub const QUERY_CANCELED: SqlState = SqlState("57014");
    pub const IO_ERROR: SqlState = SqlState("58030");
    pub const DISK_FULL: SqlState = SqlState("53100");
    pub const OUT_OF_MEMORY: SqlState = SqlState("53200");
    pub const DATA_CORRUPTED: SqlState = SqlState("XX001");
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");

    /// The five-character code.
    pub fn code(&self) -> &'static str {
        self.0
    }
}

/// Implemented by every error that can reach a client.
///
/// `Display` gives the primary message in PostgreSQL style: lower case, no trailing period,
/// identifiers double-quoted.
pub trait UserError: fmt::Display {
    /// The SQLSTATE the client sees.
    fn sqlstate(&self) -> SqlState;
    /// An optional full-sentence detail.
    fn detail(&self) -> Option<String> {
        None
    }
    /// An optional full-sentence hint.
    fn hint(&self) -> Option<String> {
        None
    }
}

/// A ready-made user-facing error: a SQLSTATE with its message, detail and hint.
///
/// Lower layers that run inside DataFusion (table sinks, scans) return this boxed inside
/// DataFusion's `External` variant; the server finds it again when it maps the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    /// The SQLSTATE.
    pub sqlstate: SqlState,
    /// Primary message.
    pub message: String,
    /// Optional detail sentence.
    pub detail: Option<String>,
    /// Optional hint sentence.
    pub hint: Option<String>,
    /// The database object the error is about, as PostgreSQL names it in the error's own
    /// fields (what drivers expose as `e.table`, `e.constraint`, …).
    pub object: Option<Box<ErrorObject>>,
}

/// The schema, table, column and constraint fields of an error (PostgreSQL's `s`, `t`, `c`,
/// `n` fields; a constraint violation fills them as PostgreSQL does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorObject {
    pub schema: Option<String>,
    pub table: Option<String>,
    pub column: Option<String>,
    pub constraint: Option<String>,
}

impl PgError {
    /// An error with a SQLSTATE and a primary message.
    pub fn new(sqlstate: SqlState, message: impl Into<String>) -> Self {
        Self {
            sqlstate,
            message: message.into(),
            detail: None,
            hint: None,
            object: None,
        }
    }

    /// Adds a detail sentence.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a hint sentence.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Names the table (in schema `public`) the error is about.
    pub fn on_table(mut self, table: &str) -> Self {
        let o = self.object.get_or_insert_with(Default::default);
        o.schema = Some("public".to_owned());
        o.table = Some(table.to_owned());
        self
    }

    /// Names the column of the error's table.
    pub fn on_column(mut self, column: &str) -> Self {
        self.object.get_or_insert_with(Default::default).column = Some(column.to_owned());
        self
    }

    /// Names the constraint the error is about.
    pub fn on_constraint(mut self, constraint: &str) -> Self {
        self.object.get_or_insert_with(Default::default).constraint = Some(constraint.to_owned());
        self
    }

    /// `0A000` naming the unsupported construct.
    pub fn not_supported(what: impl fmt::Display) -> Self {
        Self::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!("{what} is not supported"),
        )
    }

    /// `XX000`: a bug of ours; the message says so.
    pub fn internal(what: impl fmt::Display) -> Self {
        Self::new(SqlState::INTERNAL_ERROR, format!("internal error: {what}"))
    }
}

impl fmt::Display for PgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for PgError {}

impl UserError for PgError {
    fn sqlstate(&self) -> SqlState {
        self.sqlstate
    }
    fn detail(&self) -> Option<String> {
        self.detail.clone()
    }
    fn hint(&self) -> Option<String> {
        self.hint.clone()
    }
}
