//! UNNEST: each input row becomes one row per element of its list column(s), each carrying
//! the input row's weight. Stateless; runs DataFusion's `UnnestExec` over the delta with the
//! weights riding along as an extra column (repeated like any column not unnested).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::common::UnnestOptions;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::unnest::{ListUnnest, UnnestExec};
use datafusion::physical_plan::ExecutionPlan;

use crate::delta::Delta;

const WEIGHT: &str = "__freshet_weight";

/// The unnest of one plan node.
#[derive(Debug)]
pub struct UnnestOp {
    /// (input column, depth) of each list column unnested.
    pub lists: Vec<(usize, usize)>,
    /// Input columns of struct type flattened into their fields.
    pub structs: Vec<usize>,
    pub options: UnnestOptions,
    /// Output schema (without the weight column).
    pub schema: SchemaRef,
}

impl UnnestOp {
    pub fn describe(&self) -> String {
        format!("Unnest: lists={:?} structs={:?}", self.lists, self.structs)
    }

    /// The unnested rows of `d`.
    pub fn apply(&self, d: Delta) -> Result<Delta> {
        let mut fields: Vec<Field> = d
            .batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(WEIGHT, DataType::Int64, false));
        let in_schema = Arc::new(Schema::new(fields));
        let mut columns = d.batch.columns().to_vec();
        columns.push(Arc::new(Int64Array::from(d.weights)));
        let batch = RecordBatch::try_new(Arc::clone(&in_schema), columns)?;

        let mut out_fields: Vec<Field> = self
            .schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        out_fields.push(Field::new(WEIGHT, DataType::Int64, false));
        let out_schema = Arc::new(Schema::new(out_fields));
        let exec = UnnestExec::new(
            MemorySourceConfig::try_new_exec(&[vec![batch]], in_schema, None)?,
            self.lists
                .iter()
                .map(|&(index_in_input_schema, depth)| ListUnnest {
                    index_in_input_schema,
                    depth,
                })
                .collect(),
            self.structs.clone(),
            Arc::clone(&out_schema),
            self.options.clone(),
        )?;
        let stream = exec.execute(0, Arc::new(TaskContext::default()))?;
        // Pure computation over one in-memory batch: no I/O, no runtime needed.
        let batches =
            futures::executor::block_on(datafusion::physical_plan::common::collect(stream))?;
        let out = datafusion::arrow::compute::concat_batches(&out_schema, &batches)?;
        let width = out.num_columns() - 1;
        let weights = out
            .column(width)
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| DataFusionError::Internal("unnest lost the weights".into()))?;
        if weights.null_count() > 0 {
            return Err(DataFusionError::Internal("unnest lost the weights".into()));
        }
        let weights = weights.values().to_vec();
        let batch =
            RecordBatch::try_new(Arc::clone(&self.schema), out.columns()[..width].to_vec())?;
        Ok(Delta { batch, weights })
    }
}
