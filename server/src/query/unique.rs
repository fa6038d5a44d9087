//! `UNIQUE` constraints, kept as indexes of their own.
//!
//! Each constraint has an id from the catalog and, under it (keyspace `d`, like a table), one
//! entry per row whose constrained columns are all non-NULL: key = those values' memcomparable
//! encoding, value = the row's store key. Entries are staged with the rows they index (in the
//! statement's write set, so a transaction block's reads, rollbacks and conflict checks cover
//! them too) and commit in the same write batch. A row violates the constraint when an entry
//! for its values is visible and holds another row's key.

use freshet_catalog::{TableDef, UniqueDef};
use freshet_common::{Datum, PgError, SqlState};
use freshet_sql::error::map_df_error;
use freshet_state::{key_codec, table_prefix};

use super::pending::{Pending, StatementWrites, WriteSet};
use super::write::display_datum;

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
    for u in &def.uniques {
        if let Some(ikey) = old.and_then(|r| index_key(u, r)) {
            staged.insert(
                ikey,
                Pending {
                    table: u.id,
                    row: None,
                },
            );
        }
    }
    for u in &def.uniques {
        if let Some(ikey) = new.and_then(|r| index_key(u, r)) {
            staged.insert(
                ikey,
                Pending {
                    table: u.id,
                    row: Some(key.to_vec()),
                },
            );
        }
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
    .with_detail(format!(
        "Key ({})=({}) already exists.",
        cols.join(", "),
        vals.join(", ")
    ))
}
