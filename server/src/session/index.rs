//! `CREATE INDEX` and `DROP INDEX` of a session.

use freshet_catalog::{IndexDef, TableDef};
use freshet_common::{Datum, PgError, SqlState};
use freshet_sql::CreateIndexPlan;
use freshet_state::{row_codec, table_prefix, WriteBatch};

use super::{Outcome, Session};
use crate::coord::engine::Engine;
use crate::error::user_error;
use crate::query::indexes::add_entries;

/// Bytes of entries written ahead, unsynced, while an index is built; the rest commit with
/// its definition.
const BUILD_STEP_BYTES: usize = 16 << 20;

impl Session {
    pub(super) async fn create_index(&self, plan: CreateIndexPlan) -> Result<Outcome, PgError> {
        let catalog = &self.engine.catalog;
        let _w = self.engine.begin_write().await;
        let Some(table) = catalog.table(&plan.table) else {
            if catalog.view(&plan.table).is_some() {
                return Err(PgError::not_supported(
                    "CREATE INDEX on a materialized view (reads by its key columns need none)",
                ));
            }
            if catalog.name_taken(&plan.table) {
                return Err(PgError::new(
                    SqlState::WRONG_OBJECT_TYPE,
                    format!("cannot create index on relation \"{}\"", plan.table),
                )
                .with_detail("Only tables can be indexed."));
            }
            return Err(user_error(freshet_catalog::Error::UndefinedTable(
                plan.table,
            )));
        };
        let columns = plan
            .columns
            .iter()
            .map(|c| {
                table.column_index(c).ok_or_else(|| {
                    PgError::new(
                        SqlState::UNDEFINED_COLUMN,
                        format!("column \"{c}\" does not exist"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let name = match plan.name {
            Some(n) => n,
            None => default_name(&self.engine.catalog, &plan.table, &plan.columns),
        };
        // Checked before building: a build whose definition then fails leaves entries behind.
        if catalog.index_name_taken(&name) {
            if plan.if_not_exists {
                return Ok(Outcome::Command {
                    tag: "CREATE INDEX",
                    rows: None,
                });
            }
            return Err(user_error(freshet_catalog::Error::DuplicateTable(name)));
        }
        let index = IndexDef {
            name,
            id: catalog.peek_next_id(),
            columns,
        };
        let engine = &self.engine;
        let entries = tokio::task::block_in_place(|| build(engine, &table, &index))
            .map_err(|e| PgError::internal(e))?;
        let id = index.id;
        if let Err(e) = catalog.create_index(&plan.table, index, plan.if_not_exists, entries) {
            let mut forget = WriteBatch::default();
            freshet_state::Store::delete_prefix(&mut forget, &table_prefix(id));
            engine
                .store
                .write_unsynced(forget)
                .map_err(PgError::internal)?;
            return Err(user_error(e));
        }
        Ok(Outcome::Command {
            tag: "CREATE INDEX",
            rows: None,
        })
    }

    pub(super) async fn drop_indexes(
        &self,
        names: &[String],
        if_exists: bool,
    ) -> Result<Outcome, PgError> {
        let _w = self.engine.begin_write().await;
        for name in names {
            self.engine
                .catalog
                .drop_index(name, if_exists)
                .map_err(user_error)?;
        }
        Ok(Outcome::Command {
            tag: "DROP INDEX",
            rows: None,
        })
    }
}

/// PostgreSQL's name for an unnamed index: `<table>_<columns>_idx`, then `…_idx1`, `…_idx2`
/// while taken.
fn default_name(catalog: &freshet_catalog::Catalog, table: &str, columns: &[String]) -> String {
    let base = format!("{table}_{}_idx", columns.join("_"));
    let taken = |n: &str| catalog.name_taken(n) || catalog.index_table(n).is_some();
    if !taken(&base) {
        return base;
    }
    (1..)
        .map(|i| format!("{base}{i}"))
        .find(|n| !taken(n))
        .expect("an unused name")
}

/// Indexes the rows `table` has (under the writer lock, so none change meanwhile): writes
/// the entries in steps under the index's not yet cataloged id, which a crash before the
/// catalog commit leaves to startup to delete, and returns the last step's, to commit with
/// the definition.
fn build(engine: &Engine, table: &TableDef, index: &IndexDef) -> freshet_state::Result<WriteBatch> {
    let mut batch = WriteBatch::default();
    engine
        .store
        .snapshot()
        .for_each_page(&table_prefix(table.id), 8192, |page| {
            let rows = page
                .iter()
                .map(|(k, v)| Ok((&k[..], row_codec::decode_row(v)?)))
                .collect::<freshet_state::Result<Vec<(&[u8], Vec<Datum>)>>>()?;
            add_entries(&mut batch, index, rows.iter().map(|(k, r)| (*k, &r[..])));
            if batch.bytes() >= BUILD_STEP_BYTES {
                engine.store.write_unsynced(std::mem::take(&mut batch))?;
            }
            Ok(())
        })?;
    Ok(batch)
}
