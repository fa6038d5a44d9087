//! `COPY … FROM STDIN` of a session: its data held until the COPY ends, then inserted.

use freshet_common::{PgError, SqlState};

use super::Session;

impl Session {
    /// Data of the COPY in progress.
    /// The COPY is held in memory until it ends, within the statement memory limit
    /// (`--query-memory-mb`); past it the rest is dropped and the COPY fails with 54000.
    pub fn copy_data(&self, data: &[u8]) {
        use datafusion::execution::memory_pool::MemoryLimit;
        let limit = match self.ctx.runtime_env().memory_pool.memory_limit() {
            MemoryLimit::Finite(n) => n,
            _ => usize::MAX,
        };
        if let Some(c) = self
            .copy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_mut()
        {
            if c.overflowed || c.data.len().saturating_add(data.len()) > limit {
                c.overflowed = true;
                c.data = Vec::new();
                return;
            }
            c.data.extend_from_slice(data);
        }
    }

    /// Ends the COPY in progress: inserts everything it received (`fail` discards it).
    /// Returns the number of rows.
    pub async fn copy_done(&self, fail: bool) -> Result<u64, PgError> {
        let copy = self
            .copy
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match copy {
            Some(c) if c.overflowed && !fail => Err(PgError::new(
                SqlState::PROGRAM_LIMIT_EXCEEDED,
                "COPY data exceeds the memory one statement may use (--query-memory-mb); \
                 split it into several COPY statements",
            )),
            Some(c) if !fail => {
                let writes = self.block().statement_writes(None);
                let result = c
                    .finish(&self.engine, self.statement_state(), writes.clone())
                    .await;
                self.statement_done(writes.as_deref(), None, result.is_ok());
                result
            }
            _ => Ok(0),
        }
    }
}
