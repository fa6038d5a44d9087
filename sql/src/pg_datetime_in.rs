//! Casts of text to `timestamp`, `timestamptz` and `date` that read PostgreSQL's input forms
//! ([`crate::pg_input`]): `'2026-11-01 10:00'::timestamp`, `'2026-12-01T00:00'`,
//! `'2026-12-01 10:00 +02'::timestamptz`. Arrow's cast wants seconds and refuses them.
//! [`crate::text_casts::TextCasts`] puts [`PgDateTimeIn`] in place of such casts.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Date32Builder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{Result, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use freshet_common::{PgError, SqlState};

/// Text to a timestamp (microseconds, with or without a zone) or a date.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgDateTimeIn {
    signature: Signature,
    gives: DataType,
}

impl PgDateTimeIn {
    /// The function for casts of text to `to`, if it is a timestamp or a date.
    pub fn for_target(to: &DataType) -> Option<(Arc<ScalarUDF>, DataType)> {
        let gives = match to {
            DataType::Timestamp(_, tz) => DataType::Timestamp(TimeUnit::Microsecond, tz.clone()),
            DataType::Date32 => DataType::Date32,
            _ => return None,
        };
        let udf = ScalarUDF::new_from_impl(PgDateTimeIn {
            signature: Signature::any(1, Volatility::Immutable),
            gives: gives.clone(),
        });
        Some((Arc::new(udf), gives))
    }

    fn pg_name(&self) -> &'static str {
        match &self.gives {
            DataType::Timestamp(_, Some(_)) => "timestamp with time zone",
            DataType::Timestamp(_, None) => "timestamp without time zone",
            _ => "date",
        }
    }
}

impl ScalarUDFImpl for PgDateTimeIn {
    fn name(&self) -> &str {
        match &self.gives {
            DataType::Timestamp(_, Some(_)) => "pg_timestamptz_in",
            DataType::Timestamp(_, None) => "pg_timestamp_in",
            _ => "pg_date_in",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(self.gives.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let values = args.args[0].to_array(if scalar { 1 } else { args.number_rows })?;
        let text = datafusion::arrow::compute::cast(&values, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let bad = |s: &str| {
            DataFusionError::External(Box::new(PgError::new(
                // invalid_datetime_format, as PostgreSQL's datetime input says.
                SqlState("22007"),
                format!("invalid input syntax for type {}: \"{s}\"", self.pg_name()),
            )))
        };
        let out: ArrayRef = match &self.gives {
            DataType::Timestamp(_, tz) => {
                let with_zone = tz.is_some();
                let mut b = TimestampMicrosecondBuilder::with_capacity(text.len());
                for s in text.iter() {
                    match s {
                        Some(s) => b.append_value(
                            crate::pg_input::parse_timestamp(s, with_zone).ok_or_else(|| bad(s))?,
                        ),
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish().with_timezone_opt(tz.clone()))
            }
            _ => {
                let mut b = Date32Builder::with_capacity(text.len());
                for s in text.iter() {
                    match s {
                        Some(s) => {
                            b.append_value(crate::pg_input::parse_date(s).ok_or_else(|| bad(s))?)
                        }
                        None => b.append_null(),
                    }
                }
                Arc::new(b.finish())
            }
        };
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}
