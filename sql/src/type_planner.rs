//! Type names of PostgreSQL's catalogs that DataFusion's SQL planner does not know.
//!
//! `"char"` (the one-byte type of `relkind`, `contype`, `deptype`, …) reads as text, as the
//! catalog columns it is compared with are text; everything else goes to
//! datafusion-pg-catalog's planner (`regclass`, `oid`, `pg_catalog.int4`, …).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast::DataType as SqlDataType;
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;

#[derive(Debug, Default)]
pub struct PgTypePlanner {
    catalog: PgOidTypePlanner,
}

impl TypePlanner for PgTypePlanner {
    fn plan_type_field(&self, sql_type: &SqlDataType) -> Result<Option<Arc<Field>>> {
        if is_quoted_char(sql_type) {
            return Ok(Some(Arc::new(Field::new("", DataType::Utf8, true))));
        }
        self.catalog.plan_type_field(sql_type)
    }
}

/// `"char"` or `pg_catalog."char"` — quoted, so not the SQL `CHAR` type.
fn is_quoted_char(sql_type: &SqlDataType) -> bool {
    let SqlDataType::Custom(name, args) = sql_type else {
        return false;
    };
    let last = name.0.last().and_then(|p| p.as_ident());
    args.is_empty()
        && last.is_some_and(|i| i.value == "char" && i.quote_style == Some('"'))
        && (name.0.len() == 1
            || name.0[0]
                .as_ident()
                .is_some_and(|s| s.value.eq_ignore_ascii_case("pg_catalog")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn cast_type(sql: &str) -> SqlDataType {
        let mut p = Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .unwrap();
        match p.parse_expr().unwrap() {
            datafusion::sql::sqlparser::ast::Expr::Cast { data_type, .. } => data_type,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quoted_char_is_text_and_the_rest_goes_on() {
        let planner = PgTypePlanner::default();
        for sql in [r#"'r'::"char""#, r#"'r'::pg_catalog."char""#] {
            let field = planner.plan_type_field(&cast_type(sql)).unwrap().unwrap();
            assert_eq!(field.data_type(), &DataType::Utf8, "{sql}");
        }
        assert!(planner
            .plan_type_field(&cast_type("'x'::regclass"))
            .unwrap()
            .is_some());
        assert!(planner
            .plan_type_field(&cast_type("'x'::mytype"))
            .unwrap()
            .is_none());
    }
}
