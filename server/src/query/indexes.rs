//! The entries of a table's indexes: its `UNIQUE` constraints and its `CREATE INDEX`es.
//!
//! Each index has an id from the catalog and, under it (keyspace `d`, like a table), entries
//! whose value is a row's store key:
//! - a `UNIQUE` constraint keeps one entry per row whose constrained columns are all
//!   non-NULL, keyed by those values' memcomparable encoding; a row violates the constraint
//!   when an entry for its values is visible and holds another row's key;
//! - a `CREATE INDEX` keeps one entry per row, NULLs included, keyed by the values' encoding
//!   followed by the row's key (after the table prefix), so equal values keep one entry per
//!   row, in row-key order.
//!
//! Entries are staged with the rows they index (in the statement's write set, so a
//! transaction block's reads, rollbacks and conflict checks cover them too) and commit in the
//! same write batch. Scans read an index's entries by ranges of its leading column and then
//! the rows they name (`scan.rs`).

use freshet_catalog::{IndexDef, TableDef, UniqueDef};
use freshet_common::{Datum, PgError, SqlState, TableId};
use freshet_sql::error::map_df_error;
use freshet_state::{key_codec, table_prefix, WriteBatch};

use super::pending::{Pending, StatementWrites, WriteSet};
use super::write::display_datum;

/// Length of a table prefix (keyspace byte and id) at the start of every row's store key.
const TABLE_PREFIX_LEN: usize = 9;

/// The index key of `row` in `u`; `None` when a constrained value is NULL (never a conflict).
fn index_key(u: &UniqueDef, row: &[Datum]) -> Option<Vec<u8>> {
    let values: Vec<Datum> = u.columns.iter().map(|&c| row[c].clone()).collect();
    if values.iter().any(Datum::is_null) {
        return None;
    }
    let mut key = table_prefix(u.id);
    key_codec::encode_key(&values, &mut key);
    Some(key)
}

/// The first constraint of `def` that `row`, stored at `key`, would violate as the statement
/// sees it (`staged`: its own writes so far).
pub fn conflict<'a>(
    writes: &StatementWrites,
    staged: &WriteSet,
    def: &'a TableDef,
    key: &[u8],
    row: &[Datum],
) -> Result<Option<&'a UniqueDef>, PgError> {
    for u in &def.uniques {
        let Some(ikey) = index_key(u, row) else {
            continue;
        };
        let holder = writes
            .visible_row(staged, &ikey)
            .map_err(|e| map_df_error(&e))?;
        if holder.is_some_and(|h| h != key) {
            return Ok(Some(u));
        }
    }
    Ok(None)
}

/// Stages the index changes of the row at `key` going from `old` to `new`: `old`'s entries
/// removed, `new`'s added. Check [`conflict`] first.
pub fn stage(
    staged: &mut WriteSet,
    def: &TableDef,
    key: &[u8],
    old: Option<&[Datum]>,
    new: Option<&[Datum]>,
) {
    // Per index, the old entry goes before the new one is put (they may be the same key).
    let mut set = |ikey: Vec<u8>, table, row: Option<&[u8]>| {
        let row = row.map(<[u8]>::to_vec);
        staged.insert(ikey, Pending { table, row });
    };
    for u in &def.uniques {
        if let Some(ikey) = old.and_then(|r| index_key(u, r)) {
            set(ikey, u.id, None);
        }
        if let Some(ikey) = new.and_then(|r| index_key(u, r)) {
            set(ikey, u.id, Some(key));
        }
    }
    for i in &def.indexes {
        if let Some(old) = old {
            set(entry_key(i.id, &i.columns, key, old), i.id, None);
        }
        if let Some(new) = new {
            set(entry_key(i.id, &i.columns, key, new), i.id, Some(key));
        }
    }
}

/// The entry of `row`, stored at `key`, in the `CREATE INDEX` of id `index` over `columns`.
pub fn entry_key(index: TableId, columns: &[usize], key: &[u8], row: &[Datum]) -> Vec<u8> {
    let values: Vec<Datum> = columns.iter().map(|&c| row[c].clone()).collect();
    let mut out = table_prefix(index);
    key_codec::encode_key(&values, &mut out);
    out.extend_from_slice(&key[TABLE_PREFIX_LEN.min(key.len())..]);
    out
}

/// Adds the entries of `rows` (store key and row) in `index` to `batch`: how `CREATE INDEX`
/// indexes the rows a table already has.
pub fn add_entries<'a>(
    batch: &mut WriteBatch,
    index: &IndexDef,
    rows: impl IntoIterator<Item = (&'a [u8], &'a [Datum])>,
) {
    for (key, row) in rows {
        batch.put(entry_key(index.id, &index.columns, key, row), key);
    }
}

/// PostgreSQL's error for `row` violating `u`.
pub fn violation(def: &TableDef, u: &UniqueDef, row: &[Datum]) -> PgError {
    let cols: Vec<&str> = u
        .columns
        .iter()
        .map(|&c| def.columns[c].name.as_str())
        .collect();
    let vals: Vec<String> = u.columns.iter().map(|&c| display_datum(&row[c])).collect();
    PgError::new(
        SqlState::UNIQUE_VIOLATION,
        format!(
            "duplicate key value violates unique constraint \"{}\"",
            u.name
        ),
    )
    .on_table(&def.name)
    .on_constraint(&u.name)
    .with_detail(format!(
        "Key ({})=({}) already exists.",
        cols.join(", "),
        vals.join(", ")
    ))
}
