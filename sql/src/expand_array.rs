//! `information_schema._pg_expandarray(array)`: PostgreSQL's set-returning function of an
//! array's elements with their positions, `(x, n)` — what pgJDBC's DatabaseMetaData
//! (`getPrimaryKeys`, `getIndexInfo`, `getBestRowIdentifier`) calls on `pg_index.indkey`.
//! A call becomes `unnest(pg_expandarray(array))`: [`PgExpandArray`] makes the list of
//! `(x, n)` pairs and `unnest` the rows, so several calls in one select list advance in
//! lockstep and `(…).n` / `(keys).x` read the pair's fields, as in PostgreSQL.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array, ListArray, StructArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Fields};
use datafusion::common::{exec_err, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::sql::sqlparser::ast;

/// Whether `lower` (a statement in lower case) may call it.
pub fn mentions(lower: &str) -> bool {
    lower.contains("_pg_expandarray")
}

/// Every `[information_schema.]_pg_expandarray(a)` in `stmt` as `unnest(pg_expandarray(a))`.
pub fn rewrite(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Function(f) = e {
            let named = f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("_pg_expandarray"));
            let schema_ok = f.name.0.len() == 1
                || f.name.0[0]
                    .as_ident()
                    .is_some_and(|s| s.value.eq_ignore_ascii_case("information_schema"));
            if named && schema_ok {
                *e = unnest_of(f, "pg_expandarray");
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `unnest(list(args))`: the call `f` with its function renamed `list`, its list's elements
/// as rows (how a set-returning function in a select list is planned).
pub(crate) fn unnest_of(f: &ast::Function, list: &str) -> ast::Expr {
    let mut inner = f.clone();
    inner.name = ast::ObjectName::from(vec![ast::Ident::new(list)]);
    let mut outer = f.clone();
    outer.name = ast::ObjectName::from(vec![ast::Ident::new("unnest")]);
    outer.args = ast::FunctionArguments::List(ast::FunctionArgumentList {
        duplicate_treatment: None,
        args: vec![ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(
            ast::Expr::Function(inner),
        ))],
        clauses: vec![],
    });
    ast::Expr::Function(outer)
}

/// `pg_expandarray(array)`: the list of `(x, n)` — each element and its position from 1.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgExpandArray {
    signature: Signature,
}

impl PgExpandArray {
    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(PgExpandArray {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }

    fn pair(element: &DataType) -> Fields {
        Fields::from(vec![
            Field::new("x", element.clone(), true),
            Field::new("n", DataType::Int32, false),
        ])
    }
}

impl ScalarUDFImpl for PgExpandArray {
    fn name(&self) -> &str {
        "pg_expandarray"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match &args[0] {
            DataType::List(f) => Ok(DataType::List(Arc::new(Field::new_list_field(
                DataType::Struct(Self::pair(f.data_type())),
                true,
            )))),
            other => exec_err!("_pg_expandarray takes an array, not {other}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let arrays = args.args[0].to_array(args.number_rows)?;
        let Some(lists) = arrays.as_list_opt::<i32>() else {
            return exec_err!("_pg_expandarray takes an array, not {}", arrays.data_type());
        };
        let offsets = lists.offsets();
        let positions: Int32Array = (0..lists.len())
            .flat_map(|i| {
                let len = offsets[i + 1] - offsets[i];
                1..=len
            })
            .collect();
        let start = offsets[0] as usize;
        let end = offsets[lists.len()] as usize;
        let elements = lists.values().slice(start, end - start);
        let fields = Self::pair(elements.data_type());
        let pairs = StructArray::try_new(
            fields.clone(),
            vec![elements, Arc::new(positions) as ArrayRef],
            None,
        )?;
        let rebased = OffsetBuffer::new(offsets.iter().map(|o| o - offsets[0]).collect());
        let out = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Struct(fields), true)),
            rebased,
            Arc::new(pairs),
            lists.nulls().cloned(),
        )?;
        Ok(if scalar {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(Arc::new(out))
        })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn calls_become_unnest_of_pairs() {
        let sql = "SELECT (information_schema._pg_expandarray(i.indkey)).n, _pg_expandarray(k) AS keys FROM i";
        let mut stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        super::rewrite(&mut stmts[0]);
        assert_eq!(
            stmts[0].to_string(),
            "SELECT (unnest(pg_expandarray(i.indkey))).n, unnest(pg_expandarray(k)) AS keys FROM i"
        );
    }
}
