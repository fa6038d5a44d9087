//! `array_to_string` over catalog columns held as PostgreSQL's array text (`nspacl`,
//! `setconfig`: `'{a=UC/a,=U/a}'`), as psql's `\dn+` and `\drds` call it: the text is read
//! as the array it spells; arrays keep DataFusion's function. And `array_length`, NULL for an
//! empty array as in PostgreSQL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

#[derive(Debug)]
pub struct ArrayTextToString {
    inner: Arc<ScalarUDF>,
    signature: Signature,
}

impl ArrayTextToString {
    pub fn new(inner: Arc<ScalarUDF>) -> Self {
        ArrayTextToString {
            inner,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

same_as_inner!(ArrayTextToString);

fn text_array(args: &[DataType]) -> bool {
    matches!(
        args.first(),
        Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
    )
}

impl ScalarUDFImpl for ArrayTextToString {
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
        if text_array(args) {
            return Ok(vec![DataType::Utf8; args.len()]);
        }
        super::inner_coercion(&self.inner, args)
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if text_array(args) {
            Ok(DataType::Utf8)
        } else {
            self.inner.return_type(args)
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<_> = args.args.iter().map(|a| a.data_type()).collect();
        if !text_array(&types) {
            return self.inner.invoke_with_args(args);
        }
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let at = |a: &ArrayRef, row: usize| -> Option<String> {
            let texts = a.as_string::<i32>();
            let i = if a.len() == 1 { 0 } else { row };
            (!texts.is_null(i)).then(|| texts.value(i).to_owned())
        };
        let mut out = StringBuilder::new();
        for row in 0..rows {
            let (Some(array), Some(delimiter)) = (at(&arrays[0], row), at(&arrays[1], row)) else {
                out.append_null();
                continue;
            };
            let null_text = arrays.get(2).and_then(|a| at(a, row));
            let elements = freshet_sql::pg_array_in::parse(&array)
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            // As PostgreSQL: NULL elements are skipped unless a text for them is given.
            let parts: Vec<String> = elements
                .into_iter()
                .filter_map(|e| e.or_else(|| null_text.clone()))
                .collect();
            out.append_value(parts.join(&delimiter));
        }
        let out: ArrayRef = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// `array_length(a, dim)` as PostgreSQL's: NULL for an empty array, where DataFusion's says 0.
#[derive(Debug)]
pub struct ArrayLength {
    inner: Arc<ScalarUDF>,
}

impl ArrayLength {
    pub fn new(inner: Arc<ScalarUDF>) -> Self {
        ArrayLength { inner }
    }
}

same_as_inner!(ArrayLength);

impl ScalarUDFImpl for ArrayLength {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn coerce_types(&self, args: &[DataType]) -> Result<Vec<DataType>> {
        super::inner_coercion(&self.inner, args)
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::compute::kernels::{cmp, nullif};
        Ok(match self.inner.invoke_with_args(args)? {
            ColumnarValue::Scalar(v) if !v.is_null() && v == ScalarValue::new_zero(&v.data_type())? => {
                ColumnarValue::Scalar(ScalarValue::try_from(v.data_type())?)
            }
            ColumnarValue::Array(a) => {
                let zero = ScalarValue::new_zero(a.data_type())?.to_scalar()?;
                let empty = cmp::eq(&a, &zero)?;
                ColumnarValue::Array(nullif::nullif(&a, &empty)?)
            }
            scalar => scalar,
        })
    }
}
