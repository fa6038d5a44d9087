//! `tableoid`, the system column every PostgreSQL relation has (the OID of the relation a row
//! comes from), and `'pg_class'::regclass` naming a catalog without its schema. pg_dump reads
//! `tableoid` from every catalog it lists and matches it against `pg_depend.classid` and
//! `'pg_class'::regclass`; DataFusion has no system columns, so each reference becomes the
//! relation's OID as pg_class numbers it — one numbering for all three.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use datafusion_pg_catalog::pg_catalog::PG_CATALOG_TABLES;

/// Whether `sql` may name `tableoid` (a cheap test before parsing for it).
pub fn mentions_tableoid(lower_sql: &str) -> bool {
    lower_sql.contains("tableoid")
}

/// `'pg_class'::regclass` → `'pg_catalog.pg_class'::regclass` for every unqualified name of a
/// catalog relation: PostgreSQL searches `pg_catalog` before the search path, whatever the
/// search path is (pg_dump empties it). `None` when nothing changes.
pub fn qualify_catalog_regclass(sql: &str) -> Option<String> {
    if !sql.to_ascii_lowercase().contains("regclass") {
        return None;
    }
    let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut changed = false;
    for i in 0..tokens.len() {
        let Token::SingleQuotedString(name) = &tokens[i] else {
            continue;
        };
        if name.contains('.') || !is_catalog_relation(name) || !casts_to_regclass(&tokens[i + 1..])
        {
            continue;
        }
        tokens[i] = Token::SingleQuotedString(format!("pg_catalog.{name}"));
        changed = true;
    }
    changed.then(|| tokens.iter().map(ToString::to_string).collect())
}

/// Whether the tokens after a literal are `::regclass` or `::pg_catalog.regclass`.
fn casts_to_regclass(rest: &[Token]) -> bool {
    let mut words = rest.iter().filter(|t| !matches!(t, Token::Whitespace(_)));
    if !matches!(words.next(), Some(Token::DoubleColon)) {
        return false;
    }
    let is = |t: Option<&Token>, w: &str| matches!(t, Some(Token::Word(x)) if x.value.eq_ignore_ascii_case(w));
    let first = words.next();
    if is(first, "regclass") {
        return true;
    }
    is(first, "pg_catalog")
        && matches!(words.next(), Some(Token::Period))
        && is(words.next(), "regclass")
}

fn is_catalog_relation(name: &str) -> bool {
    PG_CATALOG_TABLES
        .iter()
        .any(|t| t.eq_ignore_ascii_case(name))
}

/// Replaces every `tableoid` (bare when its SELECT reads one relation, or qualified by a
/// relation's name or alias) with that relation's OID.
pub fn rewrite_tableoid(stmt: &mut ast::Statement) {
    let mut visitor = TableOid { changed: false };
    let _ = stmt.visit(&mut visitor);
}

struct TableOid {
    changed: bool,
}

impl VisitorMut for TableOid {
    type Break = ();

    // After the query's subqueries: a correlated `outer.tableoid` inside one is left to the
    // SELECT that names `outer`.
    fn post_visit_query(&mut self, query: &mut ast::Query) -> ControlFlow<()> {
        self.changed |= rewrite_set_expr(&mut query.body);
        ControlFlow::Continue(())
    }
}

fn rewrite_set_expr(body: &mut ast::SetExpr) -> bool {
    match body {
        ast::SetExpr::Select(select) => rewrite_select(select),
        ast::SetExpr::SetOperation { left, right, .. } => {
            let l = rewrite_set_expr(left);
            rewrite_set_expr(right) | l
        }
        _ => false,
    }
}

/// (alias or name, qualified name) of each relation a SELECT reads.
fn relations(select: &ast::Select) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |factor: &ast::TableFactor| {
        if let ast::TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } = factor
        {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|p| p.as_ident().map(|i| i.value.clone()))
                .collect();
            let Some(last) = parts.last() else { return };
            let qualified = match parts.as_slice() {
                [one] if is_catalog_relation(one) => format!("pg_catalog.{one}"),
                [one] => one.clone(),
                [.., schema, rel] => format!("{schema}.{rel}"),
                [] => return,
            };
            let visible = alias
                .as_ref()
                .map_or(last.clone(), |a| a.name.value.clone());
            out.push((visible, qualified));
        }
    };
    for t in &select.from {
        add(&t.relation);
        t.joins.iter().for_each(|j| add(&j.relation));
    }
    out
}

/// `(SELECT <oid of schema.relation>)`. The OID is computed (`+ 0`) so that it carries no
/// field metadata of pg_class's `oid`: DataFusion's subquery decorrelation otherwise fails on
/// the changed field.
fn relation_oid(qualified: &str) -> Option<ast::Expr> {
    let (schema, rel) = qualified.split_once('.').unwrap_or(("public", qualified));
    let sql = format!(
        "(SELECT toid_c.oid + 0 AS tableoid FROM pg_catalog.pg_class AS toid_c \
         JOIN pg_catalog.pg_namespace AS toid_n ON toid_c.relnamespace = toid_n.oid \
         WHERE toid_n.nspname = '{}' AND toid_c.relname = '{}')",
        schema.replace('\'', "''"),
        rel.replace('\'', "''")
    );
    datafusion::sql::sqlparser::parser::Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

fn rewrite_select(select: &mut ast::Select) -> bool {
    let rels = relations(select);
    if rels.is_empty() {
        return false;
    }
    let mut changed = false;
    let mut replace = |e: &mut ast::Expr| {
        let target = match e {
            ast::Expr::Identifier(id)
                if id.value.eq_ignore_ascii_case("tableoid") && rels.len() == 1 =>
            {
                Some(rels[0].1.clone())
            }
            ast::Expr::CompoundIdentifier(parts)
                if parts.len() == 2 && parts[1].value.eq_ignore_ascii_case("tableoid") =>
            {
                rels.iter()
                    .find(|(visible, _)| visible.eq_ignore_ascii_case(&parts[0].value))
                    .map(|(_, q)| q.clone())
            }
            _ => None,
        };
        if let Some(oid) = target.and_then(|q| relation_oid(&q)) {
            *e = oid;
            changed = true;
        }
        ControlFlow::<()>::Continue(())
    };
    for item in &mut select.projection {
        // A bare `tableoid` keeps its name: clients find result columns by name.
        if let ast::SelectItem::UnnamedExpr(e) = item {
            let name = match e {
                ast::Expr::Identifier(id) => Some(id.clone()),
                ast::Expr::CompoundIdentifier(parts) => parts.last().cloned(),
                _ => None,
            };
            if let Some(alias) = name.filter(|n| n.value.eq_ignore_ascii_case("tableoid")) {
                *item = ast::SelectItem::ExprWithAlias {
                    expr: e.clone(),
                    alias,
                };
            }
        }
        let _ = ast::visit_expressions_mut(item, &mut replace);
    }
    if let Some(w) = &mut select.selection {
        let _ = ast::visit_expressions_mut(w, &mut replace);
    }
    for t in &mut select.from {
        for j in &mut t.joins {
            let _ = ast::visit_expressions_mut(&mut j.join_operator, &mut replace);
        }
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualifies_unqualified_catalog_names_only() {
        let out = qualify_catalog_regclass(
            "SELECT 1 WHERE classid = 'pg_class'::regclass AND x = 't'::regclass AND y = 'pg_proc'::pg_catalog.regclass AND z = 'pg_class'",
        )
        .unwrap();
        assert!(out.contains("'pg_catalog.pg_class'::regclass"), "{out}");
        assert!(out.contains("'t'::regclass"), "{out}");
        assert!(
            out.contains("'pg_catalog.pg_proc'::pg_catalog.regclass"),
            "{out}"
        );
        assert!(out.ends_with("z = 'pg_class'"), "{out}");
        assert!(qualify_catalog_regclass("SELECT 'pg_class'").is_none());
    }

    #[test]
    fn tableoid_names_the_relation_of_its_select() {
        let mut stmts = datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT c.tableoid, tableoid FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT n.tableoid FROM pg_namespace n)",
        )
        .unwrap();
        let mut visitor = TableOid { changed: false };
        let _ = stmts[0].visit(&mut visitor);
        let sql = stmts[0].to_string();
        assert!(visitor.changed);
        assert!(
            !sql.contains("c.tableoid") && !sql.contains("n.tableoid"),
            "{sql}"
        );
        assert_eq!(
            sql.matches("toid_c.relname = 'pg_class'").count(),
            2,
            "{sql}"
        );
        assert!(sql.contains("toid_c.relname = 'pg_namespace'"), "{sql}");
    }
}

/// `pg_get_viewdef(oid [, pretty])` → `freshet_view_definition(<the relation's name>)`: the
/// definition lives in freshet's catalog under the view's name; the name comes from pg_class
/// (a relation of `public`), so the OID numbering is pg_class's own.
pub fn rewrite_viewdef(stmt: &mut ast::Statement) {
    let _ = ast::visit_expressions_mut(stmt, |e| {
        if let ast::Expr::Function(f) = e {
            let is_viewdef = f
                .name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .is_some_and(|i| i.value.eq_ignore_ascii_case("pg_get_viewdef"));
            let ast::FunctionArguments::List(list) = &f.args else {
                return ControlFlow::<()>::Continue(());
            };
            if let (true, Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(oid)))) =
                (is_viewdef, list.args.first())
            {
                let sql = format!(
                    "freshet_view_definition((SELECT vd_c.relname FROM pg_catalog.pg_class AS vd_c \
                     JOIN pg_catalog.pg_namespace AS vd_n ON vd_n.oid = vd_c.relnamespace \
                     WHERE vd_n.nspname = 'public' AND vd_c.oid = ({oid})))"
                );
                if let Ok(replacement) =
                    datafusion::sql::sqlparser::parser::Parser::new(&PostgreSqlDialect {})
                        .try_with_sql(&sql)
                        .and_then(|mut p| p.parse_expr())
                {
                    *e = replacement;
                }
            }
        }
        ControlFlow::<()>::Continue(())
    });
}
