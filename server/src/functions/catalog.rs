//! Catalog functions pg_dump and administration tools call: `acldefault` (an object kind's
//! built-in privileges for its owner, which pg_dump compares with the object's ACL), and
//! those where freshet has nothing to report: no standby (`pg_is_in_recovery`), no triggers,
//! no rules, no comments, no tablespace directories, conversions all visible. `pg_size_pretty`
//! as PostgreSQL writes sizes, `pg_typeof`, `pg_char_to_encoding`. Also `quote_literal` and `pg_options_to_table`, which pg_dump applies to
//! option lists.

use std::sync::Arc;

use datafusion::arrow;
use datafusion::arrow::array::{Array, AsArray, ListBuilder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{MemTable, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

/// A function of any arguments (of the given counts) answering one value.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Constant {
    name: &'static str,
    signature: Signature,
    value: ScalarValue,
}

impl ScalarUDFImpl for Constant {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(self.value.data_type())
    }

    fn invoke_with_args(&self, _: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(self.value.clone()))
    }
}

/// Registers the functions on `ctx`.
pub fn register(ctx: &SessionContext) {
    let text_null = ScalarValue::Utf8(None);
    for (name, arities, value) in [
        (
            "pg_is_in_recovery",
            vec![0],
            ScalarValue::Boolean(Some(false)),
        ),
        ("pg_get_triggerdef", vec![1, 2], text_null.clone()),
        ("pg_get_ruledef", vec![1, 2], text_null.clone()),
        // No object has a comment (`COMMENT ON` is refused).
        ("obj_description", vec![1, 2], text_null.clone()),
        ("col_description", vec![2], text_null.clone()),
        ("shobj_description", vec![2], text_null),
        // Conversions, operators, operator classes and families and text search objects
        // are all in pg_catalog, on the search path.
        ("pg_conversion_is_visible", vec![1], ScalarValue::Boolean(Some(true))),
        ("pg_operator_is_visible", vec![1], ScalarValue::Boolean(Some(true))),
        ("pg_opclass_is_visible", vec![1], ScalarValue::Boolean(Some(true))),
        ("pg_opfamily_is_visible", vec![1], ScalarValue::Boolean(Some(true))),
        ("pg_ts_config_is_visible", vec![1], ScalarValue::Boolean(Some(true))),
        ("pg_ts_dict_is_visible", vec![1], ScalarValue::Boolean(Some(true))),
        ("pg_ts_parser_is_visible", vec![1], ScalarValue::Boolean(Some(true))),
        ("pg_ts_template_is_visible", vec![1], ScalarValue::Boolean(Some(true))),
        // There are no extended statistics objects (freshet has no `CREATE STATISTICS`).
        ("pg_statistics_obj_is_visible", vec![1], ScalarValue::Boolean(Some(true))),
        ("pg_get_statisticsobjdef_columns", vec![1], ScalarValue::Utf8(None)),
        ("getdatabaseencoding", vec![0], ScalarValue::Utf8(Some("UTF8".to_owned()))),
        // Every tablespace is a default one (pg_default, pg_global).
        ("pg_tablespace_location", vec![1], ScalarValue::Utf8(Some(String::new()))),
    ] {
        let forms = arities
            .into_iter()
            .map(|n| {
                if n == 0 {
                    TypeSignature::Nullary
                } else {
                    TypeSignature::Any(n)
                }
            })
            .collect();
        ctx.register_udf(ScalarUDF::new_from_impl(Constant {
            name,
            signature: Signature::one_of(forms, Volatility::Stable),
            value,
        }));
    }
    ctx.register_udtf("pg_options_to_table", Arc::new(OptionsToTable));
    ctx.register_udf(ScalarUDF::new_from_impl(PgGetExpr {
        signature: Signature::one_of(
            vec![TypeSignature::Any(2), TypeSignature::Any(3)],
            Volatility::Stable,
        ),
    }));
    register_descriptive(ctx);
    // Array literals (`'{1,2}'::int[]`) are read through it.
    ctx.register_udf(freshet_sql::pg_array_in::PgArrayIn::udf().as_ref().clone());
    ctx.register_udf(freshet_sql::expand_array::PgExpandArray::udf());
    // The schemas searched, pg_catalog first (implicitly) when asked for, as PostgreSQL lists
    // them (pgcli reads its search path so).
    ctx.register_udf(super::unary_udf(
        "current_schemas",
        DataType::Boolean,
        DataType::List(Arc::new(datafusion::arrow::datatypes::Field::new_list_field(
            DataType::Utf8,
            true,
        ))),
        Volatility::Stable,
        |a| {
            let mut lists = datafusion::arrow::array::ListBuilder::new(
                datafusion::arrow::array::StringBuilder::new(),
            );
            for implicit in a.as_boolean().iter() {
                match implicit {
                    None => lists.append_null(),
                    Some(implicit) => {
                        if implicit {
                            lists.values().append_value("pg_catalog");
                        }
                        lists.values().append_value("public");
                        lists.append(true);
                    }
                }
            }
            Arc::new(lists.finish())
        },
    ));
    ctx.register_udf(super::unary_udf(
        "quote_literal",
        DataType::Utf8,
        DataType::Utf8,
        Volatility::Immutable,
        |a| {
            let quoted: datafusion::arrow::array::StringArray =
                a.as_string::<i32>().iter().map(|t| t.map(quote_literal)).collect();
            Arc::new(quoted)
        },
    ));
}

/// The functions that describe: sizes, encodings, functions' types, a value's type.
fn register_descriptive(ctx: &SessionContext) {
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::Int64Type;
    use super::unary_udf;
    let (int8, text) = (DataType::Int64, DataType::Utf8);
    ctx.register_udf(unary_udf("pg_size_pretty", int8.clone(), text.clone(), Volatility::Immutable, |a| {
        let out: StringArray = a.as_primitive::<Int64Type>().iter().map(|v| v.map(size_pretty)).collect();
        Arc::new(out)
    }));
    ctx.register_udf(unary_udf("pg_char_to_encoding", text.clone(), DataType::Int32, Volatility::Immutable, |a| {
        let out: Int32Array = a.as_string::<i32>().iter().map(|n| n.map(encoding_id)).collect();
        Arc::new(out)
    }));
    // `sql/src/by_oid.rs` gives these the function's type OIDs in place of its OID.
    // And `oid::regtype::text` reads the type's name as regtype prints it.
    for name in ["pg_get_function_result", "pg_regtype_text"] {
        ctx.register_udf(unary_udf(name, int8.clone(), text.clone(), Volatility::Stable, |a| {
            let out: StringArray = a.as_primitive::<Int64Type>().iter().map(|o| o.map(super::type_names::type_name)).collect();
            Arc::new(out)
        }));
    }
    for name in ["pg_get_function_arguments", "pg_get_function_identity_arguments"] {
        ctx.register_udf(unary_udf(name, text.clone(), text.clone(), Volatility::Stable, |a| {
            let out: StringArray = a
                .as_string::<i32>()
                .iter()
                .map(|v| {
                    let types = v?.split_whitespace();
                    let names = types.map(|o| o.parse().map_or_else(|_| o.to_owned(), super::type_names::type_name));
                    Some(names.collect::<Vec<_>>().join(", "))
                })
                .collect();
            Arc::new(out)
        }));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(PgTypeof {
        signature: Signature::any(1, Volatility::Immutable),
    }));
    // `oids::regtype[]` (pgcli's `proallargtypes::regtype[]`): the types' names.
    ctx.register_udf(super::type_names::regtypes());
}


/// `pg_get_expr(expr, relation [, pretty])`: our expressions (column defaults in pg_attrdef)
/// are stored as their SQL text; PostgreSQL's node trees in the static catalogs (`{…}`) are
/// not decoded and read as empty text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgGetExpr {
    signature: Signature,
}

impl ScalarUDFImpl for PgGetExpr {
    fn name(&self) -> &str {
        "pg_get_expr"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let exprs = args.args[0].to_array(args.number_rows)?;
        let texts = datafusion::arrow::compute::cast(&exprs, &DataType::Utf8)?;
        let out: datafusion::arrow::array::StringArray = texts
            .as_string::<i32>()
            .iter()
            .map(|t| t.map(|t| if t.starts_with('{') { "" } else { t }))
            .collect();
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(out))
        })
    }
}

/// `quote_literal(text)` as PostgreSQL writes it: quotes doubled, and with backslashes
/// doubled under an `E` prefix.

/// PostgreSQL's number for an encoding name (`pg_char_to_encoding`), -1 for an unknown one.
fn encoding_id(name: &str) -> i32 {
    let name: String = name.chars().filter(|c| *c != '_' && *c != '-').collect();
    match name.to_ascii_uppercase().as_str() {
        "SQLASCII" => 0,
        "EUCJP" => 1,
        "UTF8" | "UNICODE" => 6,
        "LATIN1" => 8,
        "WIN1252" => 24,
        _ => -1,
    }
}

/// `pg_typeof(x)`: the name of `x`'s type, as `regtype` prints it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct PgTypeof {
    signature: Signature,
}

impl ScalarUDFImpl for PgTypeof {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let field = &args.arg_fields[0];
        let name = match field.data_type() {
            DataType::Null => "unknown".to_owned(),
            _ => match freshet_sql::types::sql_type_of(field) {
                Some(t) => {
                    let name = t.pg_name();
                    // The type, not its modifiers: numeric(10,2) is numeric.
                    match name.split_once('(') {
                        Some((base, rest)) => format!("{base}{}", rest.split_once(')').map_or("", |(_, r)| r)),
                        None => name,
                    }
                }
                None => "unknown".to_owned(),
            },
        };
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))))
    }
}

/// A size in bytes as PostgreSQL's `pg_size_pretty` writes it: bytes below 10 kB, else the
/// first of kB, MB, GB, TB, PB in which it is below 20 * 1024 - 1 halves, rounded half away
/// from zero.
fn size_pretty(size: i64) -> String {
    if size.abs() < 10 * 1024 {
        return format!("{size} bytes");
    }
    let half_rounded = |x: i64| (x + if x < 0 { -1 } else { 1 }) / 2;
    // In halves of the unit: one extra bit kept for the rounding.
    let mut halves = size / (1 << 9);
    let units = ["kB", "MB", "GB", "TB"];
    for unit in units {
        if halves.abs() < 20 * 1024 - 1 {
            return format!("{} {unit}", half_rounded(halves));
        }
        halves /= 1 << 10;
    }
    format!("{} PB", half_rounded(halves))
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_as_postgresql_writes_them() {
        for (size, want) in [
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (10_485_247, "10239 kB"),
            (10_485_248, "10 MB"),
            (10_485_760, "10 MB"),
            (-123_456_789, "-118 MB"),
            (1 << 50, "1024 TB"),
            (i64::MAX, "8192 PB"),
        ] {
            assert_eq!(super::size_pretty(size), want, "{size}");
        }
    }

    #[test]
    fn encodings_by_name() {
        assert_eq!(super::encoding_id("UTF8"), 6);
        assert_eq!(super::encoding_id("sql_ascii"), 0);
        assert_eq!(super::encoding_id("nope"), -1);
    }
}

pub(super) fn quote_literal(text: &str) -> String {
    let body = text.replace('\'', "''");
    if body.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    }
}

/// `acldefault(kind, owner)`: the privileges an object of `kind` has when no GRANT or REVOKE
/// ran (PostgreSQL's, for the server version freshet reports), as aclitems.
#[derive(Debug)]
struct AclDefault {
    signature: Signature,
    catalog: Arc<freshet_catalog::Catalog>,
}

impl PartialEq for AclDefault {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.catalog, &other.catalog)
    }
}

impl Eq for AclDefault {}

impl std::hash::Hash for AclDefault {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.catalog).hash(state);
    }
}

/// (PUBLIC's privileges, the owner's) of each object kind.
fn default_privileges(kind: &str) -> Option<(&'static str, &'static str)> {
    Some(match kind {
        "c" | "p" => ("", ""),
        "r" => ("", "arwdDxt"),
        "s" => ("", "rwU"),
        "d" => ("Tc", "CTc"),
        "f" => ("X", "X"),
        "l" | "T" => ("U", "U"),
        "L" => ("", "rw"),
        "n" => ("", "UC"),
        "t" => ("", "C"),
        "F" | "S" => ("", "U"),
        _ => return None,
    })
}

impl ScalarUDFImpl for AclDefault {
    fn name(&self) -> &str {
        "acldefault"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Utf8,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let kinds = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let kinds = kinds.as_string::<i32>();
        let owners = datafusion::arrow::compute::cast(&arrays[1], &DataType::Int64)?;
        let owners = owners.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let roles = self.catalog.roles();
        let mut out = ListBuilder::new(StringBuilder::new());
        for i in 0..kinds.len().max(owners.len()) {
            let (k, o) = (
                if kinds.len() == 1 { 0 } else { i },
                if owners.len() == 1 { 0 } else { i },
            );
            if kinds.is_null(k) || owners.is_null(o) {
                out.append(false);
                continue;
            }
            let Some((public, owner_privileges)) = default_privileges(kinds.value(k)) else {
                return Err(datafusion::error::DataFusionError::External(Box::new(
                    freshet_common::PgError::new(
                        freshet_common::SqlState("22023"),
                        format!("unrecognized object type abbreviation: {}", kinds.value(k)),
                    ),
                )));
            };
            let oid = owners.value(o);
            let owner = roles
                .iter()
                .find(|r| i64::from(r.oid) == oid)
                .map_or_else(|| oid.to_string(), |r| freshet_catalog::quote_role(&r.name));
            if !public.is_empty() {
                out.values().append_value(format!("={public}/{owner}"));
            }
            if !owner_privileges.is_empty() {
                out.values()
                    .append_value(format!("{owner}={owner_privileges}/{owner}"));
            }
            out.append(true);
        }
        let out: datafusion::arrow::array::ArrayRef = Arc::new(out.finish());
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// Registers `acldefault` and `freshet_view_definition`, which read `catalog`.
pub fn register_with_catalog(ctx: &SessionContext, catalog: &Arc<freshet_catalog::Catalog>) {
    // pg_get_userbyid(oid): our roles' names (PostgreSQL's "unknown (OID=n)" for others).
    let roles = Arc::clone(catalog);
    ctx.register_udf(datafusion::logical_expr::create_udf(
        "pg_get_userbyid",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let all = roles.roles();
            let oids = ColumnarValue::values_to_arrays(args)?;
            let names: datafusion::arrow::array::StringArray = oids[0]
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .iter()
                .map(|oid| {
                    let oid = oid?;
                    Some(all.iter().find(|r| i64::from(r.oid) == oid).map_or_else(
                        || format!("unknown (OID={oid})"),
                        |r| r.name.clone(),
                    ))
                })
                .collect();
            Ok(match &args[0] {
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&names, 0)?),
                ColumnarValue::Array(_) => ColumnarValue::Array(Arc::new(names)),
            })
        }),
    ));
    ctx.register_udf(ScalarUDF::new_from_impl(AclDefault {
        signature: Signature::any(2, Volatility::Stable),
        catalog: Arc::clone(catalog),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(ViewDefinition {
        signature: Signature::any(1, Volatility::Stable),
        catalog: Arc::clone(catalog),
    }));
}

/// `freshet_view_definition(name)`: what `pg_get_viewdef` answers for one of our views (the
/// SQL rewrites its calls into this one), the defining query as written with the relations
/// it reads qualified by their schema (dumps run with an empty search path), ending in `;`.
#[derive(Debug)]
struct ViewDefinition {
    signature: Signature,
    catalog: Arc<freshet_catalog::Catalog>,
}

impl PartialEq for ViewDefinition {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.catalog, &other.catalog)
    }
}

impl Eq for ViewDefinition {}

impl std::hash::Hash for ViewDefinition {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.catalog).hash(state);
    }
}

impl ScalarUDFImpl for ViewDefinition {
    fn name(&self) -> &str {
        "freshet_view_definition"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let names = ColumnarValue::values_to_arrays(&args.args)?;
        let names = datafusion::arrow::compute::cast(&names[0], &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let out: datafusion::arrow::array::StringArray = names
            .iter()
            .map(|n| view_definition(&self.catalog, n?))
            .collect();
        let out: datafusion::arrow::array::ArrayRef = Arc::new(out);
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// What `pg_get_viewdef` gives for the view or materialized view `name`.
pub(crate) fn view_definition(catalog: &freshet_catalog::Catalog, name: &str) -> Option<String> {
    let sql = match catalog.view(name) {
        Some(v) => v.sql.clone(),
        None => catalog.plain_view(name)?.sql.clone(),
    };
    Some(format!(" {};", qualified(catalog, &sql)))
}

/// `sql` with each unqualified name of one of our relations (not a CTE's) as `public.name`;
/// `sql` itself where it does not parse.
fn qualified(catalog: &freshet_catalog::Catalog, sql: &str) -> String {
    use datafusion::sql::sqlparser::ast;
    use std::ops::ControlFlow;
    let Ok(mut stmts) = datafusion::sql::sqlparser::parser::Parser::parse_sql(
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
        sql,
    ) else {
        return sql.trim().trim_end_matches(';').to_owned();
    };
    let mut ctes = Vec::new();
    let _ = ast::visit_statements(&stmts, |s| {
        if let ast::Statement::Query(q) = s {
            if let Some(with) = &q.with {
                ctes.extend(with.cte_tables.iter().map(|c| c.alias.name.value.clone()));
            }
        }
        ControlFlow::<()>::Continue(())
    });
    let _ = ast::visit_relations_mut(&mut stmts, |name| {
        if let [ast::ObjectNamePart::Identifier(id)] = name.0.as_slice() {
            let n = &id.value;
            let ours = catalog.name_taken(n);
            if ours && !ctes.contains(n) {
                name.0.insert(
                    0,
                    ast::ObjectNamePart::Identifier(ast::Ident::new(
                        freshet_catalog::DEFAULT_SCHEMA,
                    )),
                );
            }
        }
        ControlFlow::<()>::Continue(())
    });
    stmts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `pg_options_to_table(options)`: the `name=value` entries of an options array as
/// `(option_name, option_value)` rows. pg_dump applies it to the options columns of foreign
/// data wrappers, servers, user mappings, foreign tables and columns, which freshet has none
/// of: a column argument is always NULL there, so it yields no rows.
#[derive(Debug)]
struct OptionsToTable;

impl TableFunctionImpl for OptionsToTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let entries: Vec<String> = match args.exprs() {
            [Expr::Literal(value, _)] => option_entries(value)?,
            [Expr::Column(_) | Expr::OuterReferenceColumn(..)] => Vec::new(),
            _ => {
                return Err(DataFusionError::External(Box::new(
                    freshet_common::PgError::not_supported("pg_options_to_table of an expression"),
                )))
            }
        };
        let (mut names, mut values) = (StringBuilder::new(), StringBuilder::new());
        for entry in &entries {
            let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
            names.append_value(name);
            values.append_value(value);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("option_name", DataType::Utf8, true),
            Field::new("option_value", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(names.finish()), Arc::new(values.finish())],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

/// The text entries of a literal options array; none for NULL.
fn option_entries(value: &ScalarValue) -> Result<Vec<String>> {
    if value.is_null() {
        return Ok(Vec::new());
    }
    let ScalarValue::List(list) = value else {
        return Err(DataFusionError::Plan(
            "pg_options_to_table expects a text array".into(),
        ));
    };
    let items = arrow::compute::cast(&list.value(0), &DataType::Utf8)?;
    Ok(items
        .as_string::<i32>()
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect())
}
