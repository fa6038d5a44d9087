//! Text to `bytea` as PostgreSQL casts it: `'\xdeadbeef'::bytea` is four bytes (Arrow's cast
//! keeps the text's ten), `'a\000b'::bytea` three.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `pg_bytea_in(text)`: PostgreSQL's input forms ([`crate::pg_input::parse_bytea`]).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgBytea {
    signature: Signature,
}

impl PgBytea {
    pub fn input() -> Arc<ScalarUDF> {
        Arc::new(ScalarUDF::new_from_impl(PgBytea {
            signature: Signature::any(1, Volatility::Immutable),
        }))
    }
}

impl ScalarUDFImpl for PgBytea {
    fn name(&self) -> &str {
        "pg_bytea_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Binary)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let values = args.args[0].to_array(if scalar { 1 } else { args.number_rows })?;
        let text = datafusion::arrow::compute::cast(&values, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let mut out = BinaryBuilder::with_capacity(text.len(), text.value_data().len());
        for s in text.iter() {
            match s {
                Some(s) => out.append_value(
                    crate::pg_input::parse_bytea(s)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?,
                ),
                None => out.append_null(),
            }
        }
        let out: ArrayRef = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}
