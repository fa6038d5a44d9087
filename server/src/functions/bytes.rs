//! `length(bytea)` and `octet_length(bytea)`: the number of bytes, as in PostgreSQL.
//! DataFusion's take only text, and type coercion would cast the bytes to text (failing on
//! bytes that are not UTF-8). Text arguments go to DataFusion's function.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int32Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug)]
pub struct ByteLength {
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl ByteLength {
    pub fn new(inner: Arc<ScalarUDF>) -> Self {
        ByteLength {
            inner,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

same_as_inner!(ByteLength);

fn bytes(args: &[DataType]) -> bool {
    matches!(
        args,
        [DataType::Binary | DataType::LargeBinary | DataType::BinaryView]
    )
}

impl ScalarUDFImpl for ByteLength {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        if bytes(args) {
            return Ok(args.to_vec());
        }
        super::inner_coercion(&self.inner, args)
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if bytes(args) {
            Ok(DataType::Int32)
        } else {
            self.inner.return_type(args)
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<_> = args.args.iter().map(|a| a.data_type()).collect();
        if !bytes(&types) {
            return self.inner.invoke_with_args(args);
        }
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let values = args.args[0].to_array(if scalar { 1 } else { args.number_rows })?;
        let values = datafusion::arrow::compute::cast(&values, &DataType::LargeBinary)?;
        let values = values.as_binary::<i64>();
        let out: ArrayRef = Arc::new(
            values
                .iter()
                .map(|b| b.map(|b| i32::try_from(b.len()).unwrap_or(i32::MAX)))
                .collect::<Int32Array>(),
        );
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}
