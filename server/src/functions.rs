//! SQL functions PostgreSQL clients call that DataFusion lacks, and bounds on the ones whose
//! result size a caller chooses.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    create_udf, ColumnarValue, Documentation, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::SessionContext;
use freshet_common::{PgError, SqlState};

/// `PartialEq`, `Eq` and `Hash` for a function that wraps DataFusion's of the same name
/// (`inner`): two are the same when they wrap the same function.
macro_rules! same_as_inner {
    ($t:ty) => {
        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.inner.name() == other.inner.name()
            }
        }

        impl Eq for $t {}

        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.inner.name().hash(state);
            }
        }
    };
}

/// The argument types DataFusion's function `inner` takes `args` as (what a wrapper that
/// handles some argument types itself coerces the others to).
fn inner_coercion(inner: &ScalarUDF, args: &[DataType]) -> Result<Vec<DataType>> {
    let fields: Vec<_> = args
        .iter()
        .map(|t| Arc::new(datafusion::arrow::datatypes::Field::new("a", t.clone(), true)))
        .collect();
    Ok(
        datafusion::logical_expr::type_coercion::functions::fields_with_udf(&fields, inner)?
            .iter()
            .map(|f| f.data_type().clone())
            .collect(),
    )
}

mod array_text;
mod bytes;
mod catalog;
pub(crate) use catalog::view_definition;
mod format;
pub mod sizes;

pub use catalog::register_with_catalog;
mod to_char;
mod type_names;

/// Registers our functions on `ctx`, and guards on built-ins ([`Guard`]); `max_result` bounds
/// the bytes one value of `lpad`, `rpad` or `repeat` may take.
pub fn register(ctx: &SessionContext, max_result: usize) {
    let version = format!(
        "PostgreSQL {} (freshet {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
        crate::SERVER_VERSION,
        env!("CARGO_PKG_VERSION")
    );
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| {
            Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
                version.clone(),
            ))))
        }),
    ));
    ctx.register_udf(create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(|args: &[ColumnarValue]| {
            let names = ColumnarValue::values_to_arrays(args)?;
            let names = names[0].as_string::<i32>();
            let oids: datafusion::arrow::array::Int32Array =
                names.iter().map(|n| n.and_then(type_oid)).collect();
            Ok(if matches!(args[0], ColumnarValue::Scalar(_)) {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&oids, 0)?)
            } else {
                ColumnarValue::Array(Arc::new(oids))
            })
        }),
    ));
    // Every type, collation and function lives in pg_catalog, which is on every search path.
    for name in [
        "pg_collation_is_visible",
        "pg_type_is_visible",
        "pg_function_is_visible",
    ] {
        ctx.register_udf(create_udf(
            name,
            vec![DataType::Int64],
            DataType::Boolean,
            Volatility::Stable,
            Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true))))),
        ));
    }
    for f in freshet_sql::session_window::functions() {
        ctx.register_udwf(f);
    }
    ctx.register_udf(ScalarUDF::new_from_impl(JsonBuildObject {
        signature: Signature::variadic_any(Volatility::Immutable),
    }));
    if let Ok(inner) = ctx.udf("array_to_string") {
        ctx.register_udf(ScalarUDF::new_from_impl(array_text::ArrayTextToString::new(inner)));
    }
    if let Ok(inner) = ctx.udf("array_length") {
        ctx.register_udf(ScalarUDF::new_from_impl(array_text::ArrayLength::new(inner)));
    }
    for name in ["length", "octet_length"] {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(bytes::ByteLength::new(inner)));
        }
    }
    catalog::register(ctx);
    format::register(ctx);
    ctx.register_udf(freshet_sql::pg_uuid::PgUuidIn::udf());
    for udf in freshet_sql::jsonb_build::udfs() {
        ctx.register_udf(udf);
    }
    for udf in freshet_sql::jsonb_functions::JsonbFn::named() {
        ctx.register_udf(udf.as_ref().clone());
    }
    if let Ok(inner) = ctx.udf("to_char") {
        ctx.register_udf(ScalarUDF::new_from_impl(to_char::ToChar::new(inner)));
    }
    // PostgreSQL's name for a random (version 4) UUID.
    if let Ok(uuid) = ctx.udf("uuid") {
        ctx.register_udf(freshet_sql::pg_uuid::GenRandomUuid::udf(uuid));
    }
    if let Ok(sum) = ctx.udaf("sum") {
        ctx.register_udaf(datafusion::logical_expr::AggregateUDF::new_from_impl(
            freshet_sql::checked_sum::CheckedSum::new(sum),
        ));
    }
    for (name, guard) in [
        ("lpad", Guard::Padded(max_result)),
        ("rpad", Guard::Padded(max_result)),
        ("repeat", Guard::Repeated(max_result)),
        ("ln", Guard::Logarithm),
        ("log", Guard::Logarithm),
        ("log10", Guard::Logarithm),
        ("log2", Guard::Logarithm),
        ("power", Guard::Power),
        ("pow", Guard::Power),
    ] {
        if let Ok(inner) = ctx.udf(name) {
            ctx.register_udf(ScalarUDF::new_from_impl(Guarded { inner, guard }));
        }
    }
}

/// What a built-in function is checked for before it runs, where DataFusion would answer
/// what PostgreSQL refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Guard {
    /// `f(text, n, …)` builds n characters (counted as a byte each: the bound is on the
    /// common case); more than this many bytes is refused (54000, as PostgreSQL past its 1 GB
    /// value limit) before anything is allocated.
    Padded(usize),
    /// `repeat(text, n)`: n times the text, bounded as above.
    Repeated(usize),
    /// Logarithms of zero or negative numbers fail (2201E) instead of giving -inf or NaN.
    Logarithm,
    /// `power(0, negative)` and `power(negative, non-integer)` fail (2201F).
    Power,
}

/// A built-in function behind a [`Guard`].
#[derive(Debug)]
struct Guarded {
    inner: Arc<ScalarUDF>,
    guard: Guard,
}

impl PartialEq for Guarded {
    fn eq(&self, other: &Self) -> bool {
        self.inner.name() == other.inner.name() && self.guard == other.guard
    }
}

impl Eq for Guarded {}

impl std::hash::Hash for Guarded {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
        self.guard.hash(state);
    }
}

/// A function of one argument of type `input`, computed a column at a time by `f`: a scalar
/// in, a scalar out.
pub(crate) fn unary_udf(
    name: &str,
    input: DataType,
    output: DataType,
    volatility: Volatility,
    f: impl Fn(&ArrayRef) -> ArrayRef + Send + Sync + 'static,
) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        name,
        vec![input],
        output,
        volatility,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let out = f(&arrays[0]);
            Ok(match args[0] {
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?),
                ColumnarValue::Array(_) => ColumnarValue::Array(out),
            })
        }),
    )
}

fn refuse(state: SqlState, msg: String) -> DataFusionError {
    DataFusionError::External(Box::new(PgError::new(state, msg)))
}

/// The `i`-th argument as float64 values.
fn floats(args: &[ColumnarValue], i: usize, rows: usize) -> Result<Option<ArrayRef>> {
    let Some(arg) = args.get(i) else {
        return Ok(None);
    };
    Ok(Some(datafusion::arrow::compute::cast(
        &arg.to_array(rows)?,
        &DataType::Float64,
    )?))
}

impl Guarded {
    fn check(&self, args: &[ColumnarValue], rows: usize) -> Result<()> {
        match self.guard {
            Guard::Padded(max) | Guard::Repeated(max) => {
                let n = largest(args, 1)?.unwrap_or(0).max(0) as u128;
                let bytes = match self.guard {
                    Guard::Repeated(_) => n * longest_text(args, 0)? as u128,
                    _ => n,
                };
                if bytes > max as u128 {
                    return Err(refuse(
                        SqlState::PROGRAM_LIMIT_EXCEEDED,
                        format!(
                            "requested length too large: {}() would build a value of up to {bytes} bytes (limit {max} bytes, --query-memory-mb)",
                            self.inner.name()
                        ),
                    ));
                }
            }
            Guard::Logarithm => {
                for i in 0..args.len() {
                    let Some(a) = floats(args, i, rows)? else { continue };
                    let a = a.as_primitive::<Float64Type>();
                    for v in a.iter().flatten() {
                        if v == 0.0 {
                            return Err(refuse(
                                SqlState::INVALID_ARGUMENT_FOR_LOGARITHM,
                                "cannot take logarithm of zero".into(),
                            ));
                        }
                        if v < 0.0 {
                            return Err(refuse(
                                SqlState::INVALID_ARGUMENT_FOR_LOGARITHM,
                                "cannot take logarithm of a negative number".into(),
                            ));
                        }
                    }
                }
            }
            Guard::Power => {
                let (Some(b), Some(e)) = (floats(args, 0, rows)?, floats(args, 1, rows)?) else {
                    return Ok(());
                };
                let (b, e) = (b.as_primitive::<Float64Type>(), e.as_primitive::<Float64Type>());
                for i in 0..b.len().max(e.len()) {
                    let bi = if b.len() == 1 { 0 } else { i };
                    let ei = if e.len() == 1 { 0 } else { i };
                    if b.is_null(bi) || e.is_null(ei) {
                        continue;
                    }
                    let (x, y) = (b.value(bi), e.value(ei));
                    if x == 0.0 && y < 0.0 {
                        return Err(refuse(
                            SqlState::INVALID_ARGUMENT_FOR_POWER_FUNCTION,
                            "zero raised to a negative power is undefined".into(),
                        ));
                    }
                    if x < 0.0 && y.fract() != 0.0 {
                        return Err(refuse(
                            SqlState::INVALID_ARGUMENT_FOR_POWER_FUNCTION,
                            "a negative number raised to a non-integer power yields a complex result".into(),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

/// The largest of the `i`-th argument's values, as i64.
fn largest(args: &[ColumnarValue], i: usize) -> Result<Option<i64>> {
    let Some(arg) = args.get(i) else {
        return Ok(None);
    };
    let values = arg.to_array(1)?;
    let values = datafusion::arrow::compute::cast(&values, &DataType::Int64)?;
    Ok(datafusion::arrow::compute::max(values.as_primitive::<Int64Type>()))
}

/// The longest text of the `i`-th argument, in bytes.
fn longest_text(args: &[ColumnarValue], i: usize) -> Result<usize> {
    let Some(arg) = args.get(i) else {
        return Ok(0);
    };
    let values = datafusion::arrow::compute::cast(&arg.to_array(1)?, &DataType::Utf8)?;
    let s = values.as_string::<i32>();
    Ok((0..s.len())
        .filter(|&j| s.is_valid(j))
        .map(|j| s.value(j).len())
        .max()
        .unwrap_or(0))
}

impl ScalarUDFImpl for Guarded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        self.check(&args.args, args.number_rows.max(1))?;
        self.inner.invoke_with_args(args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// Registers on a session's `ctx` the functions that answer for its user: `current_user`,
/// `session_user`, `current_role`, `current_catalog`, `has_table_privilege` and
/// `has_schema_privilege` (replacing datafusion-pg-catalog's, which always say yes).
pub fn register_identity(
    ctx: &SessionContext,
    who: &crate::access::Identity,
    catalog: &Arc<freshet_catalog::Catalog>,
) {
    for (name, value) in [
        ("current_user", who.current_user.clone()),
        ("current_role", who.current_user.clone()),
        ("session_user", who.session_user.clone()),
        ("current_catalog", crate::DATABASE_NAME.to_owned()),
    ] {
        ctx.register_udf(create_udf(
            name,
            vec![],
            DataType::Utf8,
            Volatility::Stable,
            Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(value.clone()))))),
        ));
    }
    for schema in [false, true] {
        ctx.register_udf(ScalarUDF::new_from_impl(HasPrivilege {
            who: who.clone(),
            catalog: Arc::clone(catalog),
            schema,
            signature: Signature::one_of(
                vec![
                    datafusion::logical_expr::TypeSignature::String(2),
                    datafusion::logical_expr::TypeSignature::String(3),
                ],
                Volatility::Stable,
            ),
        }));
    }
}

/// `has_table_privilege([user,] table, privileges)` / `has_schema_privilege([user,] schema,
/// privileges)`: whether the user holds any of the comma-separated privileges.
#[derive(Debug)]
struct HasPrivilege {
    who: crate::access::Identity,
    catalog: Arc<freshet_catalog::Catalog>,
    schema: bool,
    signature: Signature,
}

impl PartialEq for HasPrivilege {
    fn eq(&self, other: &Self) -> bool {
        self.schema == other.schema && self.who == other.who
    }
}

impl Eq for HasPrivilege {}

impl std::hash::Hash for HasPrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.schema.hash(state);
        self.who.current_user.hash(state);
    }
}

impl HasPrivilege {
    fn check(&self, user: Option<&str>, object: &str, privileges: &str) -> Result<bool> {
        use freshet_catalog::Privileges;
        let who = match user {
            Some(u) => {
                if self.catalog.role(u).is_none() {
                    return Err(pg(PgError::new(
                        SqlState::UNDEFINED_OBJECT,
                        format!("role \"{u}\" does not exist"),
                    )));
                }
                crate::access::Identity::login(u, false)
            }
            None => self.who.clone(),
        };
        let mut wants = Vec::new();
        for p in privileges.split(',') {
            let p = p.trim();
            let p = p
                .strip_suffix(" WITH GRANT OPTION")
                .or_else(|| p.strip_suffix(" with grant option"))
                .unwrap_or(p);
            wants.push(Privileges::from_name(p.trim()).ok_or_else(|| {
                pg(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("unrecognized privilege type: \"{p}\""),
                ))
            })?);
        }
        if self.schema {
            if object != freshet_catalog::DEFAULT_SCHEMA {
                return Ok(object == "pg_catalog" || object == "information_schema")
                    .map(|known| known && wants.iter().any(|w| *w == Privileges::USAGE));
            }
            return Ok(wants.iter().any(|w| {
                *w == Privileges::USAGE || (*w == Privileges::CREATE && who.require_create(&self.catalog).is_ok())
            }));
        }
        let name = object.strip_prefix("public.").unwrap_or(object);
        let name = match name.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
            Some(quoted) => quoted.replace("\"\"", "\""),
            None => name.to_lowercase(),
        };
        let Some(access) = self.catalog.object_access(&name) else {
            // System catalogs are readable by everyone.
            if object.starts_with("pg_catalog.") || object.starts_with("information_schema.") {
                return Ok(wants.contains(&Privileges::SELECT));
            }
            return Err(pg(PgError::new(
                SqlState::UNDEFINED_TABLE,
                format!("relation \"{object}\" does not exist"),
            )));
        };
        Ok(wants.iter().any(|w| who.has(&self.catalog, &access, *w)))
    }
}

fn pg(e: PgError) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

impl ScalarUDFImpl for HasPrivilege {
    fn name(&self) -> &str {
        if self.schema {
            "has_schema_privilege"
        } else {
            "has_table_privilege"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use datafusion::arrow::array::BooleanBuilder;
        let n = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?
            .into_iter()
            .map(|a| datafusion::arrow::compute::cast(&a, &DataType::Utf8))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let strings: Vec<_> = arrays.iter().map(|a| a.as_string::<i32>()).collect();
        let mut out = BooleanBuilder::with_capacity(n);
        for row in 0..n {
            let vals: Vec<Option<&str>> = strings
                .iter()
                .map(|s| (!s.is_null(row)).then(|| s.value(row)))
                .collect();
            let result = match vals.as_slice() {
                [Some(o), Some(p)] => Some(self.check(None, o, p)?),
                [Some(u), Some(o), Some(p)] => Some(self.check(Some(u), o, p)?),
                _ => None,
            };
            out.append_option(result);
        }
        let array: ArrayRef = Arc::new(out.finish());
        if args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?));
        }
        Ok(ColumnarValue::Array(array))
    }
}

/// The oid of a type by any of its PostgreSQL names (`to_regtype`); `None` for types freshet
/// does not have (`hstore`, …).
fn type_oid(name: &str) -> Option<i32> {
    let name = name.trim().trim_start_matches("pg_catalog.").to_ascii_lowercase();
    let (base, array) = match name.strip_suffix("[]") {
        Some(b) => (b.trim(), true),
        None => (name.as_str(), false),
    };
    let (oid, array_oid) = match base {
        "bool" | "boolean" => (16, 1000),
        "bytea" => (17, 1001),
        "char" => (18, 1002),
        "name" => (19, 1003),
        "int8" | "bigint" => (20, 1016),
        "int2" | "smallint" => (21, 1005),
        "int4" | "integer" | "int" => (23, 1007),
        "text" => (25, 1009),
        "oid" => (26, 1028),
        "json" => (114, 199),
        "float4" | "real" => (700, 1021),
        "float8" | "double precision" => (701, 1022),
        "bpchar" | "character" => (1042, 1014),
        "varchar" | "character varying" => (1043, 1015),
        "date" => (1082, 1182),
        "time" | "time without time zone" => (1083, 1183),
        "timestamp" | "timestamp without time zone" => (1114, 1115),
        "timestamptz" | "timestamp with time zone" => (1184, 1185),
        "interval" => (1186, 1187),
        "numeric" | "decimal" => (1700, 1231),
        "uuid" => (2950, 2951),
        "jsonb" => (3802, 3807),
        _ => return None,
    };
    Some(if array { array_oid } else { oid })
}

/// `json_build_object(key, value, …)`: a JSON object of the pairs (as `json` text), values
/// as JSON numbers, booleans, strings or null.
#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonBuildObject {
    signature: Signature,
}

impl ScalarUDFImpl for JsonBuildObject {
    fn name(&self) -> &str {
        "json_build_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.len() % 2 != 0 {
            return Err(pg(PgError::new(
                SqlState::INVALID_PARAMETER_VALUE,
                "argument list must have even number of elements",
            )));
        }
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if scalar { 1 } else { args.number_rows };
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let mut out = datafusion::arrow::array::StringBuilder::new();
        for row in 0..rows {
            // PostgreSQL's spacing: {"a" : 1, "b" : "x"}
            let mut text = String::from("{");
            for (i, pair) in arrays.chunks(2).enumerate() {
                let at = |a: &ArrayRef| if a.len() == 1 { 0 } else { row };
                let key = ScalarValue::try_from_array(&pair[0], at(&pair[0]))?;
                if key.is_null() {
                    return Err(pg(PgError::new(
                        SqlState::INVALID_PARAMETER_VALUE,
                        "null value not allowed for object key",
                    )));
                }
                let value = ScalarValue::try_from_array(&pair[1], at(&pair[1]))?;
                if i > 0 {
                    text.push_str(", ");
                }
                text.push_str(&serde_json::Value::String(scalar_text(&key)).to_string());
                text.push_str(" : ");
                text.push_str(&json_value(&value).to_string());
            }
            text.push('}');
            out.append_value(text);
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

fn scalar_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) | ScalarValue::Utf8View(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

fn json_value(v: &ScalarValue) -> serde_json::Value {
    use serde_json::Value;
    if v.is_null() {
        return Value::Null;
    }
    match v {
        ScalarValue::Boolean(Some(b)) => Value::Bool(*b),
        ScalarValue::Int8(Some(n)) => Value::from(*n),
        ScalarValue::Int16(Some(n)) => Value::from(*n),
        ScalarValue::Int32(Some(n)) => Value::from(*n),
        ScalarValue::Int64(Some(n)) => Value::from(*n),
        ScalarValue::UInt8(Some(n)) => Value::from(*n),
        ScalarValue::UInt16(Some(n)) => Value::from(*n),
        ScalarValue::UInt32(Some(n)) => Value::from(*n),
        ScalarValue::UInt64(Some(n)) => Value::from(*n),
        ScalarValue::Float32(Some(f)) => serde_json::Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        ScalarValue::Float64(Some(f)) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
        ScalarValue::Decimal128(Some(_), _, _) => {
            serde_json::from_str(&v.to_string()).unwrap_or_else(|_| Value::String(v.to_string()))
        }
        other => Value::String(scalar_text(other)),
    }
}
