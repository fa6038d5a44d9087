//! Transaction isolation levels as freshet runs them.

use datafusion::sql::sqlparser::ast;

/// The isolation levels freshet runs: PostgreSQL's READ UNCOMMITTED is READ COMMITTED (as in
/// PostgreSQL), and SERIALIZABLE runs as REPEATABLE READ (snapshot isolation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    RepeatableRead,
}

impl Isolation {
    /// The level a `transaction_isolation` value names.
    pub fn parse(value: &str) -> Option<Isolation> {
        match value.trim().to_ascii_lowercase().as_str() {
            "read committed" | "read uncommitted" => Some(Isolation::ReadCommitted),
            "repeatable read" | "serializable" => Some(Isolation::RepeatableRead),
            _ => None,
        }
    }

    /// The level among transaction modes (`ISOLATION LEVEL …`), if any.
    pub fn of_modes(modes: &[ast::TransactionMode]) -> Option<Isolation> {
        use ast::TransactionIsolationLevel as L;
        modes.iter().rev().find_map(|m| match m {
            ast::TransactionMode::IsolationLevel(L::ReadUncommitted | L::ReadCommitted) => {
                Some(Isolation::ReadCommitted)
            }
            ast::TransactionMode::IsolationLevel(_) => Some(Isolation::RepeatableRead),
            _ => None,
        })
    }

    /// As PostgreSQL's `transaction_isolation` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Isolation::ReadCommitted => "read committed",
            Isolation::RepeatableRead => "repeatable read",
        }
    }
}
