//! Join sides read from their table instead of kept as join state.
//!
//! A join input that is a table's rows, filtered and projected (a chain of `Filter` and
//! `Project` over a `Scan`), joined on columns that are a prefix of the table's primary key,
//! is already stored in join-key order: the table itself. Such a side keeps no state of its
//! own; the rows of one join key are the table's rows under that primary-key prefix, put
//! through the side's filters and projections when they are read. Nothing is written for
//! the side's changes (the table's own write is the state change), so a large table joined
//! on its key costs no second copy, no write per change and no backfill of its rows.
//!
//! The epoch's snapshot is the state before the epoch, so the table it holds is the side's
//! previous state, as the delta rule needs. A backfill is different: the table is already
//! whole in its snapshot while the other input is fed in steps. There the table side's own
//! rows are not fed to the join at all (when both sides read tables, one side's: see
//! [`JoinOp::backfill_skips`]): every row of the other side meets the whole table once,
//! which is the join.
//!
//! Only sides whose unmatched rows never appear in the output qualify (both of an inner join,
//! either of a semi join, the right of a left or anti join, the left of a right join): their
//! rows reach the output only through the keys the other side touches. An inner join, and a
//! semi join fed its left side, read both of their sides from tables (see [`table_sides`]).

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::PhysicalExpr;
use freshet_common::{Datum, TableId};
use freshet_state::{key_codec, row_codec, table_prefix, Entries, WriteBatch};

use super::join::{JoinKind, JoinOp, Rows};
use super::Node;
use crate::columnar::ColumnsBuilder;
use crate::delta::consolidate;
use crate::epoch::{state_err, EpochChanges, EpochCtx};

/// How a table is stored in key order: by its primary key, or through a `CREATE INDEX`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableKey {
    /// The index (`None`: the table's own rows, by primary key).
    pub index: Option<TableId>,
    /// Its columns (table column indexes), in key order.
    pub columns: Vec<usize>,
}

/// A join side read from its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSide {
    pub relation: TableId,
    /// Read through this index's entries (`None`: by the table's primary key).
    pub index: Option<TableId>,
    /// For each key column the join keys fix, in key order: the join key giving it.
    pub key_order: Vec<usize>,
    /// The keys fix the whole primary key: a key has at most one row.
    pub unique: bool,
    /// The side filters the table's rows.
    pub filtered: bool,
}

impl TableSide {
    /// Where the rows (or index entries) of join key `key` (the key values' row encoding)
    /// start.
    fn prefix(&self, key: &[u8]) -> Result<Vec<u8>> {
        let values = row_codec::decode_row(key).map_err(state_err)?;
        let ordered: Vec<Datum> = self
            .key_order
            .iter()
            .map(|&k| values.get(k).cloned().unwrap_or(Datum::Null))
            .collect();
        let mut prefix = table_prefix(self.index.unwrap_or(self.relation));
        key_codec::encode_key(&ordered, &mut prefix);
        Ok(prefix)
    }
}

/// The sides of a join that can be read from their tables: `left` and `right` are the
/// join's inputs, `keys` how a relation is stored in key order (none for views and
/// sources; the primary key first). `semi_left`: the left side of a semi join qualifies
/// (views created before it did keep it as state); `semi_both`: both sides of a semi join
/// may be read from tables, when its left side filters its table and its right side is not
/// a filtered table joined on its whole key (the left is then what a backfill feeds).
pub fn table_sides(
    left: &Node,
    right: &Node,
    op: &JoinOp,
    semi_left: bool,
    semi_both: bool,
    keys: &dyn Fn(TableId) -> Vec<TableKey>,
) -> [Option<TableSide>; 2] {
    let allowed = match op.kind {
        JoinKind::Inner => [true, true],
        JoinKind::LeftSemi => [semi_left, true],
        JoinKind::Left | JoinKind::LeftAnti => [false, true],
        JoinKind::Right => [true, false],
        JoinKind::Full | JoinKind::NullAwareAnti => [false, false],
    };
    let types = |node: &Node, keys: &[Arc<dyn PhysicalExpr>]| {
        let schema = node.schema();
        keys.iter()
            .map(|k| k.data_type(&schema).ok())
            .collect::<Option<Vec<DataType>>>()
    };
    let (Some(lt), Some(rt)) = (types(left, &op.left_keys), types(right, &op.right_keys)) else {
        return [None, None];
    };
    // The probing side's key values must encode as the table's do: the same types.
    if lt != rt || op.left_keys.is_empty() {
        return [None, None];
    }
    let sides = [(left, &op.left_keys), (right, &op.right_keys)];
    let mut found = [0, 1].map(|i| {
        if !allowed[i] || op.expiry.sides[i].is_some() {
            return None;
        }
        table_side(sides[i].0, sides[i].1, keys)
    });
    // Other kinds than inner read both sides' rows of a key whose right rows change: in a
    // backfill, a side fed in steps and read from its table would find its later steps'
    // rows there already. A semi join whose left side alone is fed (its right side whole
    // in its table) reads only the right's rows, so it may read both from tables; it does
    // when its left side filters its table and its right is no filtered table joined on its
    // key (TPC-H Q4: a quarter's orders fed, each order's late lineitems read by key, where
    // feeding every late lineitem to find them cost 60× PostgreSQL). Otherwise a semi join
    // reads its left side's table (the larger input, as a restricted aggregate's is) and
    // keeps the right as state; other kinds keep one side.
    let both = semi_both
        && op.kind == JoinKind::LeftSemi
        && matches!(&found, [Some(l), Some(r)] if l.filtered && !(r.filtered && r.unique));
    if op.kind != JoinKind::Inner && found.iter().all(Option::is_some) && !both {
        found[1] = None;
    }
    found
}

fn table_side(
    node: &Node,
    join_keys: &[Arc<dyn PhysicalExpr>],
    keys: &dyn Fn(TableId) -> Vec<TableKey>,
) -> Option<TableSide> {
    let mut relation = None;
    let mut columns = Vec::with_capacity(join_keys.len());
    for k in join_keys {
        let c = k.downcast_ref::<Column>()?.index();
        let (r, column) = table_column(node, c)?;
        if relation.is_some_and(|x| x != r) {
            return None;
        }
        relation = Some(r);
        columns.push(column);
    }
    let relation = relation?;
    // The first key whose leading columns the join keys fix exactly, each once.
    keys(relation).into_iter().find_map(|key| {
        let leading = key.columns.get(..columns.len())?;
        let key_order = leading
            .iter()
            .map(|p| columns.iter().position(|c| c == p))
            .collect::<Option<Vec<_>>>()?;
        Some(TableSide {
            relation,
            index: key.index,
            unique: key.index.is_none() && key_order.len() == key.columns.len(),
            filtered: filtered(node),
            key_order,
        })
    })
}

/// Whether a filter lies in the chain of filters and projections `node` is.
fn filtered(node: &Node) -> bool {
    match node {
        Node::Filter { .. } => true,
        Node::Project { input, .. } => filtered(input),
        _ => false,
    }
}

/// The table and its column behind output column `c` of `node`, when `node` is a chain of
/// filters and projections over a scan and `c` a plain column all the way down.
fn table_column(node: &Node, c: usize) -> Option<(TableId, usize)> {
    match node {
        Node::Scan {
            relation,
            projection,
            ..
        } => Some((*relation, *projection.get(c)?)),
        Node::Filter { input, .. } => table_column(input, c),
        Node::Project { input, exprs, .. } => {
            let col = exprs.get(c)?.downcast_ref::<Column>()?;
            table_column(input, col.index())
        }
        _ => None,
    }
}

impl JoinOp {
    /// The side (0 left, 1 right) read from its table, if side byte `side` is one.
    pub(super) fn table_side(&self, side: u8) -> Option<&TableSide> {
        match side {
            b'l' => self.tables[0].as_ref(),
            b'r' => self.tables[1].as_ref(),
            _ => None,
        }
    }

    /// Whether either side is read from its table.
    pub fn reads_tables(&self) -> bool {
        self.tables.iter().any(Option::is_some)
    }

    /// In a backfill, the side whose rows the join does not take (see the module's text).
    /// When both sides read tables, the other side's rows each look this one up: a semi
    /// join's left side is fed; for an inner join the side that filters its table (fewer
    /// rows to look up with), else the side with one row per key is looked up (the cheaper
    /// read), else the right one.
    pub(super) fn backfill_skips(&self) -> Option<usize> {
        match &self.tables {
            // A semi join reading both sides' tables is fed its left side (see
            // `table_sides`).
            [Some(_), Some(_)] if self.kind == JoinKind::LeftSemi => Some(1),
            [Some(l), Some(r)] if l.filtered != r.filtered => Some(usize::from(l.filtered)),
            [Some(l), Some(r)] if l.unique && !r.unique => Some(0),
            [_, Some(_)] => Some(1),
            [Some(_), None] => Some(0),
            [None, None] => None,
        }
    }

    /// The rows of side `i` for each of `keys` (join keys' row encodings), read from its
    /// table under the snapshot and put through `input`, the side's filters and projections.
    pub(super) fn read_table_side(
        &self,
        i: usize,
        input: &Node,
        keys: &[&Vec<u8>],
        ctx: &EpochCtx<'_>,
    ) -> Result<Vec<Rows>> {
        let Some(side) = &self.tables[i] else {
            return Ok(vec![Rows::new(); keys.len()]);
        };
        // In key order, for one iterator; what is read is split by join key again below.
        let mut wanted: Vec<Vec<u8>> =
            keys.iter().map(|k| side.prefix(k)).collect::<Result<_>>()?;
        wanted.sort_unstable();
        // A key that is the whole primary key names one row: a point read, which the
        // files' bloom filters answer for files without it (a seek looks into every file
        // waiting in level 0). Otherwise a scan of the prefix.
        let stored: Vec<Box<[u8]>> = match side.index {
            None if side.unique => ctx
                .snapshot
                .multi_get(&wanted)
                .map_err(state_err)?
                .into_iter()
                .flatten()
                .map(Vec::into_boxed_slice)
                .collect(),
            None => flat_values(ctx.snapshot.scan_prefixes(&wanted).map_err(state_err)?),
            Some(_) => {
                // Index entries hold the rows' store keys.
                let entries = flat_values(ctx.snapshot.scan_prefixes(&wanted).map_err(state_err)?);
                ctx.snapshot
                    .multi_get(&entries)
                    .map_err(state_err)?
                    .into_iter()
                    .flatten()
                    .map(Vec::into_boxed_slice)
                    .collect()
            }
        };
        let mut out = vec![Rows::new(); keys.len()];
        if stored.is_empty() {
            return Ok(out);
        }
        // Straight into the columns the side's scans take; each row counts once.
        let mut columns = ColumnsBuilder::new(&input.scanned_fields(side.relation));
        for v in &stored {
            columns.push(v)?;
        }
        let mut changes = EpochChanges::default();
        changes.appends.insert(side.relation, vec![columns.finish()?]);
        // Rows the side cannot evaluate were recorded when they arrived; they are left out
        // again here, unrecorded.
        let mut scratch = WriteBatch::default();
        let mut side_ctx = EpochCtx::new(ctx.snapshot, &mut scratch, false);
        let Some(delta) = input.eval(&changes, &mut side_ctx)? else {
            return Ok(out);
        };
        let keys_exprs = if i == 0 {
            &self.left_keys
        } else {
            &self.right_keys
        };
        let mut split = self.split(Some(&delta), keys_exprs)?;
        for (n, key) in keys.iter().enumerate() {
            if let Some(found) = split.by_key.remove(*key) {
                out[n] = consolidate(found)
                    .into_iter()
                    .map(|(_, row, w)| (row, w))
                    .collect();
            }
        }
        Ok(out)
    }
}

/// The values of pages of entries, in order.
fn flat_values(pages: Vec<Entries>) -> Vec<Box<[u8]>> {
    pages.into_iter().flatten().map(|(_, v)| v).collect()
}
