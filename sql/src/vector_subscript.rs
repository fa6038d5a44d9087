//! [`VectorSubscripts`]: subscripts of `int2vector` and `oidvector` columns (`pg_index.indkey`,
//! `indoption`, `indclass`) count from 0, as in PostgreSQL (pgJDBC reads
//! `indoption[ordinal - 1]`); the lists that hold them count from 1 like every array.

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{lit, Expr, ExprSchemable, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;

use crate::types::PG_TYPE_METADATA_KEY;

#[derive(Debug, Default)]
pub struct VectorSubscripts;

impl AnalyzerRule for VectorSubscripts {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        crate::plan_rewrite::rewrite_expressions(plan, from_zero)
    }

    fn name(&self) -> &str {
        "pg_vector_subscripts"
    }
}

fn from_zero(e: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = &e else {
        return Ok(Transformed::no(e));
    };
    if func.name() != "array_element" || args.len() != 2 {
        return Ok(Transformed::no(e));
    }
    let vector = args[0].to_field(schema).is_ok_and(|(_, f)| {
        f.metadata()
            .get(PG_TYPE_METADATA_KEY)
            .is_some_and(|k| k == "int2vector" || k == "oidvector")
    });
    if !vector {
        return Ok(Transformed::no(e));
    }
    let index = match &args[1] {
        Expr::Literal(ScalarValue::Int64(Some(i)), _) => lit(i + 1),
        other => other.clone() + lit(1i64),
    };
    Ok(Transformed::yes(Expr::ScalarFunction(
        ScalarFunction::new_udf(func.clone(), vec![args[0].clone(), index]),
    )))
}
