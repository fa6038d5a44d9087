//! What of a relation's columns a view reads — down to the fields of struct columns, so a
//! source decodes only those (`("user").name` needs one field of a 38-field struct).
//!
//! Nested fields are tracked where a scan feeds expressions directly: a projection, an
//! aggregate or filters over the scan. Anywhere else every scanned column counts as read
//! whole.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::scalar::ScalarValue;
use freshet_common::{Selection, TableId};

use crate::ops::Node;

impl Node {
    /// What this node's scans of `relation` read, in the relation's column numbers.
    pub fn selection_read(&self, relation: TableId, out: &mut Selection) {
        let exprs: Vec<&Arc<dyn PhysicalExpr>> = match self {
            Node::Project { exprs, .. } => exprs.iter().collect(),
            Node::Aggregate { op, .. } => {
                let mut e: Vec<&Arc<dyn PhysicalExpr>> = op.group.iter().collect();
                for a in &op.aggs {
                    e.extend(a.arg.iter().chain(&a.filter));
                    e.extend(a.order.iter().map(|o| &o.expr));
                }
                e
            }
            _ => vec![],
        };
        if matches!(self, Node::Project { .. } | Node::Aggregate { .. }) {
            // Through filters down to a scan of `relation`?
            let mut below = self.children()[0];
            let mut predicates = Vec::new();
            while let Node::Filter { input, predicate } = below {
                predicates.push(predicate);
                below = input;
            }
            if let Node::Scan {
                relation: r,
                projection,
                ..
            } = below
            {
                if *r == relation {
                    let mut used = Selection::default();
                    for e in exprs.into_iter().chain(predicates) {
                        expr_reads(e, &mut used);
                    }
                    for c in used.columns() {
                        let (Some(sel), Some(&col)) = (used.get(c), projection.get(c)) else {
                            continue;
                        };
                        let mut one = Selection::default();
                        one_column(&mut one, col, sel, &mut Vec::new());
                        out.merge(one);
                    }
                    return;
                }
            }
        }
        if let Node::Scan {
            relation: r,
            projection,
            ..
        } = self
        {
            if *r == relation {
                projection.iter().for_each(|&c| out.add_column(c));
            }
        }
        for c in self.children() {
            c.selection_read(relation, out);
        }
    }
}

impl Node {
    /// The columns this node's scans of `relation` take (table column → Arrow type).
    pub fn scanned_fields(&self, relation: TableId) -> BTreeMap<usize, DataType> {
        let mut out = BTreeMap::new();
        self.scanned_fields_into(relation, &mut out);
        out
    }

    fn scanned_fields_into(&self, relation: TableId, out: &mut BTreeMap<usize, DataType>) {
        if let Node::Scan {
            relation: r,
            projection,
            schema,
            ..
        } = self
        {
            if *r == relation {
                for (&c, f) in projection.iter().zip(schema.fields()) {
                    out.insert(c, f.data_type().clone());
                }
            }
        }
        for c in self.children() {
            c.scanned_fields_into(relation, out);
        }
    }
}

/// Adds `sel` (what is read of one column) as column `col` of `out`.
fn one_column(
    out: &mut Selection,
    col: usize,
    sel: &freshet_common::Selected,
    path: &mut Vec<String>,
) {
    match sel {
        freshet_common::Selected::All => out.add_path(col, path),
        freshet_common::Selected::Fields(fields) => {
            for (name, f) in fields {
                path.push(name.clone());
                one_column(out, col, f, path);
                path.pop();
            }
        }
    }
}

/// The input columns `e` reads: `get_field` chains over a column read one field.
fn expr_reads(e: &Arc<dyn PhysicalExpr>, out: &mut Selection) {
    if let Some((col, path)) = field_path(e) {
        out.add_path(col, &path);
        return;
    }
    if let Some(c) = e.downcast_ref::<Column>() {
        out.add_column(c.index());
        return;
    }
    for child in e.children() {
        expr_reads(child, out);
    }
}

/// `get_field(get_field(col, 'a'), 'b')` → (col, [a, b]).
fn field_path(e: &Arc<dyn PhysicalExpr>) -> Option<(usize, Vec<String>)> {
    let f = e.downcast_ref::<ScalarFunctionExpr>()?;
    if f.name() != "get_field" || f.args().len() != 2 {
        return None;
    }
    let name = match f.args()[1].downcast_ref::<Literal>()?.value() {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.clone(),
        _ => return None,
    };
    let base = &f.args()[0];
    let (col, mut path) = match base.downcast_ref::<Column>() {
        Some(c) => (c.index(), Vec::new()),
        None => field_path(base)?,
    };
    path.push(name);
    Some((col, path))
}
