//! The types of a statement's parameters (`$1..$n`), inferred as PostgreSQL infers them where
//! DataFusion leaves them open.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::logical_expr::expr::{Cast, ScalarFunction, TryCast};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use freshet_common::{PgError, SqlType};
use freshet_sql::error::map_df_error;
use freshet_sql::types::sql_type_of;

/// The types of `$1..$n` in `plan`, `None` where they cannot be inferred. A parameter
/// DataFusion leaves untyped takes the scalar type it is cast to (`$1::int`), and the array
/// type of what it is searched for (`relkind = ANY($1)`: `"char"[]`, read as text[]), as
/// PostgreSQL infers them.
pub(super) fn param_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, PgError> {
    let types = plan.get_parameter_types().map_err(|e| map_df_error(&e))?;
    let mut params: Vec<Option<DataType>> = (1..=types.len())
        .map(|i| types.get(&format!("${i}")).cloned().flatten())
        .collect();
    if params.iter().any(Option::is_none) {
        let _ = plan.apply_with_subqueries(|node| {
            let schema = input_schema(node);
            node.apply_expressions(|e| {
                e.apply(|e| {
                    if let Some((id, ty)) = inferred(e, &schema) {
                        if let Some(slot @ None) = slot(&mut params, &id) {
                            *slot = Some(ty);
                        }
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            })
        });
    }
    mark_uuids(plan, &mut params);
    Ok(params)
}

/// Parameters compared with or inserted into a `uuid` column, marked as uuid (see
/// `pg::extended::is_uuid_param`): clients then send them as uuid, the server reads them as
/// the text it holds.
fn mark_uuids(plan: &LogicalPlan, params: &mut [Option<DataType>]) {
    use datafusion::logical_expr::{BinaryExpr, DmlStatement, WriteOp};
    let uuid_field = |f: &Field| sql_type_of(f) == Some(SqlType::Uuid);
    let mut mark = |p: &Expr| {
        let Expr::Placeholder(p) = strip(p) else {
            return;
        };
        if let Some(slot) = slot(params, &p.id) {
            *slot = Some(DataType::FixedSizeBinary(16));
        }
    };
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::Dml(DmlStatement {
            op: WriteOp::Insert(_),
            target,
            input,
            ..
        }) = node
        {
            let target = target.schema();
            if let LogicalPlan::Projection(p) = input.as_ref() {
                for e in &p.expr {
                    let name = e.schema_name().to_string();
                    if !target.field_with_name(&name).is_ok_and(|f| uuid_field(f)) {
                        continue;
                    }
                    // `VALUES ($1, …)`: the projection reads the rows' columns.
                    match (strip(e), p.input.as_ref()) {
                        (Expr::Column(c), LogicalPlan::Values(v)) => {
                            if let Ok(i) = v.schema.index_of_column(c) {
                                v.values
                                    .iter()
                                    .filter_map(|row| row.get(i))
                                    .for_each(&mut mark);
                            }
                        }
                        _ => mark(e),
                    }
                }
            }
        }
        let schema = input_schema(node);
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::BinaryExpr(BinaryExpr { left, right, .. }) = e {
                    for (value, other) in [(left, right), (right, left)] {
                        if other.to_field(&schema).is_ok_and(|(_, f)| uuid_field(&f)) {
                            mark(value);
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
}

/// The type of parameter `id` (`$n`).
fn slot<'a>(params: &'a mut [Option<DataType>], id: &str) -> Option<&'a mut Option<DataType>> {
    let n: usize = id.strip_prefix('$')?.parse().ok()?;
    params.get_mut(n.checked_sub(1)?)
}

/// `e` without the aliases and casts around it.
fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        Expr::Cast(Cast { expr, .. }) | Expr::TryCast(TryCast { expr, .. }) => strip(expr),
        other => other,
    }
}

/// The columns `node`'s expressions may name: its inputs' together.
fn input_schema(node: &LogicalPlan) -> DFSchema {
    let mut schema = DFSchema::empty();
    for input in node.inputs() {
        schema.merge(input.schema());
    }
    schema
}

/// The placeholder `e` types and the type it gives it, if `e` is one PostgreSQL infers from.
fn inferred(e: &Expr, schema: &DFSchema) -> Option<(String, DataType)> {
    match e {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            let Expr::Placeholder(p) = expr.as_ref() else {
                return None;
            };
            // Not arrays: asyncpg would then introspect `int4[]` with a query whose own
            // `$1::oid[]` it would describe the same way.
            (!field.data_type().is_nested()).then(|| (p.id.clone(), field.data_type().clone()))
        }
        // `x = ANY($1)`: an array of x's type.
        Expr::ScalarFunction(ScalarFunction { func, args })
            if func.name() == "array_has" && args.len() == 2 =>
        {
            let Expr::Placeholder(p) = &args[0] else {
                return None;
            };
            let element = args[1].get_type(schema).ok()?;
            let scalar = !element.is_nested() && element != DataType::Null;
            scalar.then(|| {
                let list = DataType::List(Arc::new(Field::new_list_field(element, true)));
                (p.id.clone(), list)
            })
        }
        _ => None,
    }
}
