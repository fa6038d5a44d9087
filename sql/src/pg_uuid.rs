//! `uuid`: held as its canonical text (lower-case hex, 8-4-4-4-12), which sorts, groups and
//! joins as PostgreSQL's 16 bytes do. Input in every form PostgreSQL reads (upper case,
//! braces, no hyphens, a hyphen after any group of four digits); `'…'::uuid` casts become
//! [`PgUuidIn`], which checks and canonicalizes and marks its result as `uuid`;
//! `gen_random_uuid()` is [`GenRandomUuid`].

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use freshet_common::{PgError, SqlState};

use crate::types::PG_TYPE_METADATA_KEY;

/// `text` as a canonical uuid, or PostgreSQL's `22P02`.
pub fn canonical(text: &str) -> Result<String, PgError> {
    let invalid = || {
        PgError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("invalid input syntax for type uuid: \"{text}\""),
        )
    };
    let body = text.trim();
    let body = match body.strip_prefix('{') {
        Some(inner) => inner.strip_suffix('}').ok_or_else(invalid)?,
        None => body,
    };
    let mut digits = String::with_capacity(32);
    let mut previous_hyphen = true;
    for c in body.chars() {
        if c == '-' {
            // After a whole group of four digits only, never two in a row or at the end.
            if previous_hyphen || digits.len() % 4 != 0 {
                return Err(invalid());
            }
            previous_hyphen = true;
        } else if c.is_ascii_hexdigit() {
            digits.push(c.to_ascii_lowercase());
            previous_hyphen = false;
        } else {
            return Err(invalid());
        }
    }
    if digits.len() != 32 || previous_hyphen {
        return Err(invalid());
    }
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &digits[..8],
        &digits[8..12],
        &digits[12..16],
        &digits[16..20],
        &digits[20..]
    ))
}

/// The 16 bytes of a canonical uuid (binary format on the wire).
pub fn bytes(canonical: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = canonical.bytes().filter(|b| *b != b'-').collect();
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        *out.get_mut(i)? = u8::from_str_radix(s, 16).ok()?;
    }
    Some(out)
}

/// The field of a uuid value.
pub fn uuid_field(name: &str) -> Field {
    Field::new(name, DataType::Utf8, true).with_metadata(HashMap::from([(
        PG_TYPE_METADATA_KEY.to_owned(),
        "uuid".to_owned(),
    )]))
}

/// `pg_uuid_in(text)`: what `'…'::uuid` becomes.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgUuidIn {
    signature: Signature,
}

impl PgUuidIn {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(PgUuidIn {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for PgUuidIn {
    fn name(&self) -> &str {
        "pg_uuid_in"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(uuid_field(self.name())))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let texts = args.args[0].to_array(args.number_rows)?;
        let out: StringArray = texts
            .as_string::<i32>()
            .iter()
            .map(|t| t.map(canonical).transpose())
            .collect::<Result<_, PgError>>()
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let out: ArrayRef = Arc::new(out);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// `gen_random_uuid()`: DataFusion's `uuid()` (version 4), typed uuid.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GenRandomUuid {
    inner: Arc<ScalarUDF>,
}

impl GenRandomUuid {
    pub fn udf(inner: Arc<ScalarUDF>) -> ScalarUDF {
        ScalarUDF::new_from_impl(GenRandomUuid { inner })
    }
}

impl ScalarUDFImpl for GenRandomUuid {
    fn name(&self) -> &str {
        "gen_random_uuid"
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn return_field_from_args(&self, _args: ReturnFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(uuid_field(self.name())))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_form_postgresql_reads() {
        let want = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for text in [
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
        ] {
            assert_eq!(canonical(text).unwrap(), want, "{text}");
        }
        for bad in [
            "",
            "a0eebc99",
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
            "-a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "a0eeb-c999c0b4ef8bb6d6bb9bd380a11",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11-",
            "{a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "g0eebc999c0b4ef8bb6d6bb9bd380a11",
        ] {
            assert_eq!(
                canonical(bad).unwrap_err().sqlstate,
                SqlState::INVALID_TEXT_REPRESENTATION,
                "{bad}"
            );
        }
        assert_eq!(bytes(want).unwrap()[..3], [0xa0, 0xee, 0xbc]);
    }
}
