//! Correlated scalar subqueries that are not aggregates, as PostgreSQL runs them.
//!
//! PostgreSQL accepts `(SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid)` and
//! fails only when a row of the outer query finds more than one row (21000). DataFusion
//! decorrelates only subqueries that are aggregates and refuses the rest, which is what
//! SQLAlchemy's inspector, psql and JDBC metadata send. [`ScalarSubqueryRows`] makes such a
//! subquery an aggregate of [`SingleValue`]: NULL over no rows, the value over one, 21000 over
//! more, then DataFusion decorrelates it as any other aggregate.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, UInt64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::format_state_name;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Expr, LogicalPlan, LogicalPlanBuilder, Signature,
    Subquery, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use freshet_common::{PgError, SqlState};

/// Rewrites correlated scalar subqueries that are not aggregates into [`SingleValue`]
/// aggregates.
#[derive(Debug, Default)]
pub struct ScalarSubqueryRows;

impl AnalyzerRule for ScalarSubqueryRows {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|p| {
            p.map_expressions(|e| {
                e.transform_up(|e| match e {
                    Expr::ScalarSubquery(sq) if needs_single_value(&sq) => {
                        Ok(Transformed::yes(Expr::ScalarSubquery(single_value(sq)?)))
                    }
                    e => Ok(Transformed::no(e)),
                })
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "pg_scalar_subquery_rows"
    }
}

/// A correlated subquery DataFusion would refuse: no aggregate on top (under projections,
/// aliases and sorts), and not known to give at most one row.
fn needs_single_value(sq: &Subquery) -> bool {
    if sq.outer_ref_columns.is_empty() || sq.subquery.schema().fields().len() != 1 {
        return false;
    }
    if sq.subquery.max_rows().is_some_and(|n| n <= 1) {
        return false;
    }
    let mut plan = sq.subquery.as_ref();
    loop {
        match plan {
            LogicalPlan::Projection(p) => plan = p.input.as_ref(),
            LogicalPlan::SubqueryAlias(a) => plan = a.input.as_ref(),
            LogicalPlan::Sort(s) => plan = s.input.as_ref(),
            LogicalPlan::Aggregate(_) => return false,
            LogicalPlan::Filter(f) if matches!(f.input.as_ref(), LogicalPlan::Aggregate(_)) => {
                return false
            }
            _ => return true,
        }
    }
}

fn single_value(sq: Subquery) -> Result<Subquery> {
    let field = sq.subquery.schema().field(0).clone();
    let name = field.name().clone();
    // `SELECT e FROM …` becomes `SELECT single_value(e) FROM …`, so the aggregate sits right
    // above the correlated filter, where DataFusion's decorrelation looks for it.
    let (input, arg) = match sq.subquery.as_ref() {
        LogicalPlan::Projection(p) if p.expr.len() == 1 => {
            (Arc::clone(&p.input), p.expr[0].clone().unalias())
        }
        other => {
            let (qualifier, f) = other.schema().qualified_field(0);
            (
                Arc::new(other.clone()),
                Expr::Column(Column::new(qualifier.cloned(), f.name())),
            )
        }
    };
    let udaf = Arc::new(AggregateUDF::new_from_impl(SingleValue::new()));
    let agg = Expr::AggregateFunction(AggregateFunction::new_udf(
        udaf,
        vec![arg],
        false,
        None,
        vec![],
        None,
    ));
    let plan = LogicalPlanBuilder::from(input)
        .aggregate(Vec::<Expr>::new(), vec![agg.alias(name.clone())])?
        .project(vec![Expr::Column(Column::from_name(name))])?
        .build()?;
    let mut outer_ref_columns = vec![];
    plan.apply_with_subqueries(|p| {
        p.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::OuterReferenceColumn(..) = e {
                    if !outer_ref_columns.contains(e) {
                        outer_ref_columns.push(e.clone());
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(Subquery {
        subquery: Arc::new(plan),
        outer_ref_columns,
        spans: sq.spans,
    })
}

/// The one value of its group: NULL when there is no row, 21000 when there are two.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SingleValue {
    signature: Signature,
}

impl SingleValue {
    pub fn new() -> SingleValue {
        SingleValue {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl Default for SingleValue {
    fn default() -> Self {
        Self::new()
    }
}

fn too_many_rows() -> DataFusionError {
    DataFusionError::External(Box::new(PgError::new(
        SqlState::CARDINALITY_VIOLATION,
        "more than one row returned by a subquery used as an expression",
    )))
}

impl AggregateUDFImpl for SingleValue {
    fn name(&self) -> &str {
        "single_value"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types[0].clone())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(SingleAcc {
            value: ScalarValue::try_from(args.return_field.data_type())?,
            rows: 0,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Arc::new(Field::new(
                format_state_name(args.name, "value"),
                args.return_field.data_type().clone(),
                true,
            )),
            Arc::new(Field::new(
                format_state_name(args.name, "rows"),
                DataType::UInt64,
                false,
            )),
        ])
    }
}

#[derive(Debug)]
struct SingleAcc {
    value: ScalarValue,
    rows: u64,
}

impl SingleAcc {
    fn add(&mut self, values: &ArrayRef, index: usize, rows: u64) -> Result<()> {
        self.rows += rows;
        if self.rows > 1 {
            return Err(too_many_rows());
        }
        self.value = ScalarValue::try_from_array(values, index)?;
        Ok(())
    }
}

impl Accumulator for SingleAcc {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values[0].len() {
            0 => Ok(()),
            1 => self.add(&values[0], 0, 1),
            _ => Err(too_many_rows()),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let rows = states[1].as_primitive::<UInt64Type>();
        for i in 0..rows.len() {
            let n = rows.value(i);
            if n > 0 {
                self.add(&states[0], i, n)?;
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![
            self.value.clone(),
            ScalarValue::UInt64(Some(self.rows)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.value.clone())
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.value.size() - std::mem::size_of_val(&self.value)
    }
}
