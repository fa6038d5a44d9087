//! Functions PostgreSQL writes without parentheses.

use datafusion::sql::sqlparser::ast;

/// PostgreSQL's parameterless SQL functions (`current_user`, `session_user`, `user`,
/// `current_role`, `current_catalog`, `localtimestamp`, `localtime`) become calls DataFusion
/// plans (the session registers them; the local ones are the statement's `now()` without its
/// time zone); sqlparser reads them as functions without an argument list, which DataFusion
/// takes for column names.
pub fn rewrite(sql: &str, stmts: &mut [ast::Statement]) {
    use std::ops::ControlFlow;
    const NAMES: [&str; 7] = [
        "current_user",
        "session_user",
        "user",
        "current_role",
        "current_catalog",
        "localtimestamp",
        "localtime",
    ];
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("user") && !lower.contains("current_") && !lower.contains("localtime") {
        return;
    }
    let call = |name: &str| {
        ast::Expr::Function(ast::Function {
            name: ast::ObjectName::from(vec![ast::Ident::new(name)]),
            uses_odbc_syntax: false,
            parameters: ast::FunctionArguments::None,
            args: ast::FunctionArguments::List(ast::FunctionArgumentList {
                duplicate_treatment: None,
                args: vec![],
                clauses: vec![],
            }),
            filter: None,
            null_treatment: None,
            over: None,
            within_group: vec![],
        })
    };
    for stmt in stmts.iter_mut() {
        // A bare call in a SELECT list is named as PostgreSQL names it (`current_user`).
        if let ast::Statement::Query(q) = stmt {
            if let ast::SetExpr::Select(sel) = q.body.as_mut() {
                for item in sel.projection.iter_mut() {
                    let ast::SelectItem::UnnamedExpr(e) = item else {
                        continue;
                    };
                    let name = match e {
                        ast::Expr::Function(f)
                            if matches!(f.args, ast::FunctionArguments::None) =>
                        {
                            match f.name.0.as_slice() {
                                [p] => p.as_ident().map(|i| i.value.to_ascii_lowercase()),
                                _ => None,
                            }
                        }
                        ast::Expr::Identifier(i) if i.quote_style.is_none() => {
                            Some(i.value.to_ascii_lowercase()).filter(|n| n == "current_role")
                        }
                        _ => None,
                    };
                    if let Some(n) = name.filter(|n| NAMES.contains(&n.as_str())) {
                        *item = ast::SelectItem::ExprWithAlias {
                            expr: e.clone(),
                            alias: ast::Ident::new(n),
                        };
                    }
                }
            }
        }
        let _ = ast::visit_expressions_mut(stmt, |e| {
            let name = match e {
                ast::Expr::Function(f) if matches!(f.args, ast::FunctionArguments::None) => {
                    match f.name.0.as_slice() {
                        [p] => p.as_ident().map(|i| i.value.to_ascii_lowercase()),
                        _ => None,
                    }
                }
                ast::Expr::Identifier(i) if i.quote_style.is_none() => {
                    Some(i.value.to_ascii_lowercase()).filter(|n| n == "current_role")
                }
                _ => None,
            };
            if let Some(n) = name.filter(|n| NAMES.contains(&n.as_str())) {
                let local = |t| ast::Expr::Cast {
                    kind: ast::CastKind::Cast,
                    expr: Box::new(call("now")),
                    data_type: t,
                    array: false,
                    format: None,
                };
                *e = match n.as_str() {
                    "user" => call("current_user"),
                    "localtimestamp" => {
                        local(ast::DataType::Timestamp(None, ast::TimezoneInfo::None))
                    }
                    "localtime" => local(ast::DataType::Time(None, ast::TimezoneInfo::None)),
                    _ => call(&n),
                };
            }
            ControlFlow::<()>::Continue(())
        });
    }
}
