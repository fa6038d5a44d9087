//! Scalar subqueries that give an OID column of the catalogs, such as the ones
//! datafusion-pg-catalog writes for `'int4'::regtype` or `'pg_class'::regclass`: their
//! column carries datafusion-pg-catalog's OID metadata, which DataFusion loses on the way to
//! the physical plan ("Schema field unallowed change", XX000). The subquery gives the plain
//! integer (`oid + 0`), as the `tableoid` rewrite does; the value is the same. (A name that
//! finds nothing gives NULL, where PostgreSQL says the relation or type does not exist.)

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::logical_expr::{lit, Expr, LogicalPlan, LogicalPlanBuilder, Subquery};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct PlainOidSubqueries;

impl AnalyzerRule for PlainOidSubqueries {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            let rewritten = p.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::ScalarSubquery(sq) if carries_metadata(&sq) => {
                        Ok(Transformed::yes(Expr::ScalarSubquery(plain(sq)?)))
                    }
                    e => Ok(Transformed::no(e)),
                })
            })?;
            if rewritten.transformed {
                rewritten.map_data(|p| p.recompute_schema())
            } else {
                Ok(rewritten)
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "pg_plain_oid_subqueries"
    }
}

/// A one-column integer subquery whose column carries metadata.
fn carries_metadata(sq: &Subquery) -> bool {
    let fields = sq.subquery.schema().fields();
    fields.len() == 1
        && fields[0].data_type().is_signed_integer()
        && !fields[0].metadata().is_empty()
}

fn plain(sq: Subquery) -> Result<Subquery> {
    let (qualifier, field) = sq.subquery.schema().qualified_field(0);
    let column = Expr::Column(Column::new(qualifier.cloned(), field.name()));
    let name = field.name().clone();
    // Nullable, as a subquery's value is (a name that finds nothing gives no row): OIDs are
    // never negative, so `nullif(…, -1)` is the value itself, typed as nullable.
    let (zero, minus_one) = (
        ScalarValue::new_zero(field.data_type())?,
        ScalarValue::new_negative_one(field.data_type())?,
    );
    let plain = datafusion::functions::expr_fn::nullif(column + lit(zero), lit(minus_one));
    let plan = LogicalPlanBuilder::from(sq.subquery.as_ref().clone())
        .project(vec![plain.alias(name)])?
        .build()?;
    Ok(Subquery {
        subquery: Arc::new(plan),
        ..sq
    })
}
