//! Role and privilege statements, parsed here (PostgreSQL's grammar, including role
//! membership grants, which sqlparser does not read):
//!
//! ```text
//! CREATE ROLE | USER name [ [WITH] option … ]
//! ALTER ROLE | USER name [WITH] option …
//! DROP ROLE | USER [IF EXISTS] name [, …]
//! GRANT { privilege [, …] | ALL [PRIVILEGES] } ON { [TABLE] name [, …] | ALL TABLES IN SCHEMA public | SCHEMA public } TO grantee [, …]
//! REVOKE { privilege [, …] | ALL [PRIVILEGES] } ON … FROM grantee [, …] [CASCADE | RESTRICT]
//! GRANT role [, …] TO role [, …]        REVOKE role [, …] FROM role [, …]
//! ```
//!
//! option: `SUPERUSER | LOGIN | CREATEROLE | CREATEDB | INHERIT` (and their `NO…`),
//! `CONNECTION LIMIT n`, `[ENCRYPTED] PASSWORD 'secret' | PASSWORD NULL`, `IN ROLE r, …`,
//! `ROLE r, …`; grantee: `PUBLIC | [GROUP] name | CURRENT_USER | SESSION_USER | CURRENT_ROLE`.

use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use freshet_common::{PgError, SqlState};

use crate::words::{expect_end, expect_word, leading_words, object_name, parser, syntax, word};

/// A parsed role or privilege statement.
#[derive(Debug, Clone, PartialEq)]
pub enum RoleStatement {
    Create { name: String, options: RoleOptions },
    Alter { name: String, options: RoleOptions },
    Drop { names: Vec<String>, if_exists: bool },
    Grant(GrantPlan),
    Revoke(GrantPlan),
    /// `GRANT role TO member`: `members` become members of `roles`.
    GrantMembership { roles: Vec<Grantee>, members: Vec<Grantee> },
    RevokeMembership { roles: Vec<Grantee>, members: Vec<Grantee> },
}

/// Role attributes a statement sets (`None`: left as is, or PostgreSQL's default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleOptions {
    pub superuser: Option<bool>,
    pub login: Option<bool>,
    pub create_role: Option<bool>,
    pub create_db: Option<bool>,
    pub inherit: Option<bool>,
    pub connection_limit: Option<i32>,
    /// `Some(None)`: `PASSWORD NULL`.
    pub password: Option<Option<String>>,
    /// `IN ROLE`: roles the new role becomes a member of.
    pub in_role: Vec<String>,
    /// `ROLE` / `USER`: roles that become members of the new role.
    pub members: Vec<String>,
}

/// `GRANT`/`REVOKE` of privileges on objects.
#[derive(Debug, Clone, PartialEq)]
pub struct GrantPlan {
    /// Privilege names, upper-case; empty for `ALL`.
    pub privileges: Vec<String>,
    pub on: GrantOn,
    pub grantees: Vec<Grantee>,
}

/// What a grant is on.
#[derive(Debug, Clone, PartialEq)]
pub enum GrantOn {
    /// Tables, views and sources by name.
    Relations(Vec<String>),
    /// `ALL TABLES IN SCHEMA public`: every table, view and source.
    AllInSchema,
    /// `SCHEMA public`.
    Schema,
}

/// Who receives a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grantee {
    Public,
    Role(String),
    CurrentUser,
    SessionUser,
}

/// Parses `sql` when it is a role or privilege statement; `None` otherwise.
pub fn parse_role_statement(sql: &str) -> Option<Result<RoleStatement, PgError>> {
    let words = leading_words(sql, 2);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["create", kind @ ("role" | "user")] => Some(parse_create(sql, *kind == "user")),
        ["alter", "role" | "user"] => Some(parse_alter(sql)),
        ["drop", "role" | "user"] => Some(parse_drop(sql)),
        ["grant", _] => Some(parse_grant(sql, true)),
        ["revoke", _] => Some(parse_grant(sql, false)),
        _ => None,
    }
}

fn parse_create(sql: &str, user: bool) -> Result<RoleStatement, PgError> {
    let mut p = parser(sql)?;
    p.next_token();
    p.next_token();
    let name = role_name(&mut p)?;
    let mut options = role_options(&mut p)?;
    if user && options.login.is_none() {
        options.login = Some(true);
    }
    expect_end(&mut p)?;
    Ok(RoleStatement::Create { name, options })
}

fn parse_alter(sql: &str) -> Result<RoleStatement, PgError> {
    let mut p = parser(sql)?;
    p.next_token();
    p.next_token();
    let name = grantee(&mut p)?;
    let name = match name {
        Grantee::Role(n) => n,
        Grantee::Public => return Err(PgError::not_supported("ALTER ROLE PUBLIC")),
        // Resolved by the caller: these words are kept as the role names they stand for.
        Grantee::CurrentUser => "current_user".into(),
        Grantee::SessionUser => "session_user".into(),
    };
    if word(&mut p, "rename") || word(&mut p, "set") || word(&mut p, "reset") {
        return Err(PgError::not_supported(
            "ALTER ROLE other than changing its attributes",
        ));
    }
    let options = role_options(&mut p)?;
    if options.in_role.len() + options.members.len() > 0 {
        return Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            "syntax error: use GRANT role TO member to change memberships",
        ));
    }
    expect_end(&mut p)?;
    Ok(RoleStatement::Alter { name, options })
}

fn parse_drop(sql: &str) -> Result<RoleStatement, PgError> {
    let mut p = parser(sql)?;
    p.next_token();
    p.next_token();
    let if_exists = if word(&mut p, "if") {
        expect_word(&mut p, "exists")?;
        true
    } else {
        false
    };
    let names = comma_list(&mut p, role_name)?;
    expect_end(&mut p)?;
    Ok(RoleStatement::Drop { names, if_exists })
}

fn role_options(p: &mut Parser<'_>) -> Result<RoleOptions, PgError> {
    let mut o = RoleOptions::default();
    word(p, "with");
    loop {
        let Token::Word(w) = p.peek_token().token else {
            break;
        };
        let kw = w.value.to_ascii_lowercase();
        let flag = |o: &mut RoleOptions, name: &str, v: bool| -> bool {
            let slot = match name {
                "superuser" => &mut o.superuser,
                "login" => &mut o.login,
                "createrole" => &mut o.create_role,
                "createdb" => &mut o.create_db,
                "inherit" => &mut o.inherit,
                _ => return false,
            };
            *slot = Some(v);
            true
        };
        p.next_token();
        if flag(&mut o, &kw, true) || kw.strip_prefix("no").is_some_and(|k| flag(&mut o, k, false)) {
            continue;
        }
        match kw.as_str() {
            "replication" | "noreplication" | "bypassrls" | "nobypassrls" => {}
            "connection" => {
                expect_word(p, "limit")?;
                let n = signed_int(p)?;
                o.connection_limit = Some(n);
            }
            "encrypted" | "password" => {
                if kw == "encrypted" {
                    expect_word(p, "password")?;
                }
                o.password = Some(match p.next_token().token {
                    Token::SingleQuotedString(s) => Some(s),
                    Token::Word(w) if w.value.eq_ignore_ascii_case("null") => None,
                    t => {
                        return Err(PgError::new(
                            SqlState::SYNTAX_ERROR,
                            format!("syntax error at or near \"{t}\""),
                        ))
                    }
                });
            }
            "valid" => return Err(PgError::not_supported("VALID UNTIL")),
            "in" => {
                if !word(p, "role") {
                    expect_word(p, "group")?;
                }
                o.in_role.extend(comma_list(p, role_name)?);
            }
            "role" | "user" => o.members.extend(comma_list(p, role_name)?),
            "admin" => return Err(PgError::not_supported("ADMIN option of CREATE ROLE")),
            "sysid" => {
                p.next_token();
            }
            other => {
                return Err(PgError::new(
                    SqlState::SYNTAX_ERROR,
                    format!("syntax error at or near \"{other}\""),
                ))
            }
        }
    }
    Ok(o)
}

fn signed_int(p: &mut Parser<'_>) -> Result<i32, PgError> {
    let neg = p.consume_token(&Token::Minus);
    match p.next_token().token {
        Token::Number(n, _) => n
            .parse::<i32>()
            .map(|v| if neg { -v } else { v })
            .map_err(|_| PgError::new(SqlState::SYNTAX_ERROR, format!("invalid number {n}"))),
        t => Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            format!("syntax error at or near \"{t}\""),
        )),
    }
}

/// `GRANT …` / `REVOKE …`: on objects, or role membership when there is no `ON`.
fn parse_grant(sql: &str, grant: bool) -> Result<RoleStatement, PgError> {
    let mut p = parser(sql)?;
    p.next_token();
    if !grant && word(&mut p, "grant") {
        return Err(PgError::not_supported("GRANT OPTION"));
    }
    if !grant && word(&mut p, "admin") {
        return Err(PgError::not_supported("ADMIN OPTION"));
    }
    // Privileges (or role names): words up to ON / TO / FROM.
    let mut items = Vec::new();
    loop {
        match p.next_token().token {
            Token::Word(w) if w.quote_style.is_none() => {
                let v = w.value.to_ascii_lowercase();
                if v == "all" {
                    word(&mut p, "privileges");
                    items.push(String::new());
                } else {
                    items.push(w.value);
                }
            }
            Token::Word(w) => items.push(w.value),
            t => {
                return Err(PgError::new(
                    SqlState::SYNTAX_ERROR,
                    format!("syntax error at or near \"{t}\""),
                ))
            }
        }
        if p.consume_token(&Token::LParen) {
            return Err(PgError::not_supported("column privileges"));
        }
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    let to = if grant { "to" } else { "from" };
    if word(&mut p, "on") {
        let privileges = privilege_names(&items)?;
        let on = if word(&mut p, "schema") {
            schema_names(&mut p)?;
            GrantOn::Schema
        } else if word(&mut p, "all") {
            if !word(&mut p, "tables") {
                return Err(PgError::not_supported("GRANT ON ALL other than ALL TABLES"));
            }
            expect_word(&mut p, "in")?;
            expect_word(&mut p, "schema")?;
            schema_names(&mut p)?;
            GrantOn::AllInSchema
        } else {
            for kind in ["sequence", "database", "function", "procedure", "routine", "type", "domain", "language", "foreign", "large", "tablespace", "parameter"] {
                if word(&mut p, kind) {
                    return Err(PgError::not_supported(format!(
                        "GRANT ON {}",
                        kind.to_uppercase()
                    )));
                }
            }
            word(&mut p, "table");
            GrantOn::Relations(comma_list(&mut p, |p| {
                object_name(&p.parse_object_name(false).map_err(syntax)?)
            })?)
        };
        expect_word(&mut p, to)?;
        let grantees = comma_list(&mut p, grantee)?;
        if grant && word(&mut p, "with") {
            return Err(PgError::not_supported("WITH GRANT OPTION"));
        }
        if word(&mut p, "granted") {
            return Err(PgError::not_supported("GRANTED BY"));
        }
        if !grant && !word(&mut p, "cascade") {
            word(&mut p, "restrict");
        }
        expect_end(&mut p)?;
        let plan = GrantPlan {
            privileges,
            on,
            grantees,
        };
        return Ok(if grant {
            RoleStatement::Grant(plan)
        } else {
            RoleStatement::Revoke(plan)
        });
    }
    expect_word(&mut p, to)?;
    let members = comma_list(&mut p, grantee)?;
    if word(&mut p, "with") {
        return Err(PgError::not_supported("WITH ADMIN OPTION"));
    }
    if !grant && !word(&mut p, "cascade") {
        word(&mut p, "restrict");
    }
    expect_end(&mut p)?;
    let roles = items
        .into_iter()
        .map(|r| {
            if r.is_empty() {
                Err(PgError::new(SqlState::SYNTAX_ERROR, "syntax error at or near \"ALL\""))
            } else {
                Ok(Grantee::Role(r))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(if grant {
        RoleStatement::GrantMembership { roles, members }
    } else {
        RoleStatement::RevokeMembership { roles, members }
    })
}

/// Upper-case privilege names; empty for ALL. Unknown names are PostgreSQL's syntax error.
fn privilege_names(items: &[String]) -> Result<Vec<String>, PgError> {
    if items.iter().any(String::is_empty) {
        return Ok(Vec::new());
    }
    items
        .iter()
        .map(|i| {
            let u = i.to_ascii_uppercase();
            match u.as_str() {
                "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "TRUNCATE" | "REFERENCES"
                | "TRIGGER" | "CREATE" | "USAGE" => Ok(u),
                "TEMPORARY" | "TEMP" | "CONNECT" | "EXECUTE" | "MAINTAIN" | "SET" => {
                    Err(PgError::not_supported(format!("privilege {u}")))
                }
                _ => Err(PgError::new(
                    SqlState::SYNTAX_ERROR,
                    format!("unrecognized privilege type \"{i}\""),
                )),
            }
        })
        .collect()
}

fn schema_names(p: &mut Parser<'_>) -> Result<(), PgError> {
    for s in comma_list(p, role_name)? {
        if s != crate::DEFAULT_SCHEMA_NAME {
            return Err(PgError::new(
                SqlState::INVALID_SCHEMA_NAME,
                format!("schema \"{s}\" does not exist"),
            ));
        }
    }
    Ok(())
}

fn grantee(p: &mut Parser<'_>) -> Result<Grantee, PgError> {
    word(p, "group");
    match p.next_token().token {
        Token::Word(w) if w.quote_style.is_none() => {
            Ok(match w.value.to_ascii_lowercase().as_str() {
                "public" => Grantee::Public,
                "current_user" | "current_role" => Grantee::CurrentUser,
                "session_user" => Grantee::SessionUser,
                v => Grantee::Role(v.to_owned()),
            })
        }
        Token::Word(w) => Ok(Grantee::Role(w.value)),
        t => Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            format!("syntax error at or near \"{t}\""),
        )),
    }
}

/// A role name: an identifier (folded to lower case unless quoted).
fn role_name(p: &mut Parser<'_>) -> Result<String, PgError> {
    match p.next_token().token {
        Token::Word(w) if w.quote_style.is_none() => Ok(w.value.to_ascii_lowercase()),
        Token::Word(w) => Ok(w.value),
        t => Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            format!("syntax error at or near \"{t}\""),
        )),
    }
}

fn comma_list<T>(
    p: &mut Parser<'_>,
    mut item: impl FnMut(&mut Parser<'_>) -> Result<T, PgError>,
) -> Result<Vec<T>, PgError> {
    let mut out = vec![item(p)?];
    while p.consume_token(&Token::Comma) {
        out.push(item(p)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(sql: &str) -> Result<RoleStatement, PgError> {
        parse_role_statement(sql).expect("a role statement")
    }

    #[test]
    fn roles_and_grants_parse() {
        let RoleStatement::Create { name, options } =
            parse("CREATE ROLE Bi WITH LOGIN PASSWORD 'p w' CONNECTION LIMIT 5 IN ROLE readers").unwrap()
        else {
            panic!()
        };
        assert_eq!(name, "bi");
        assert_eq!(options.login, Some(true));
        assert_eq!(options.password, Some(Some("p w".into())));
        assert_eq!(options.connection_limit, Some(5));
        assert_eq!(options.in_role, vec!["readers".to_owned()]);
        let RoleStatement::Create { options, .. } = parse("CREATE USER \"Al\" NOSUPERUSER").unwrap() else {
            panic!()
        };
        assert_eq!((options.login, options.superuser), (Some(true), Some(false)));
        assert_eq!(
            parse("GRANT SELECT, insert ON TABLE t, public.u TO bi, PUBLIC").unwrap(),
            RoleStatement::Grant(GrantPlan {
                privileges: vec!["SELECT".into(), "INSERT".into()],
                on: GrantOn::Relations(vec!["t".into(), "u".into()]),
                grantees: vec![Grantee::Role("bi".into()), Grantee::Public],
            })
        );
        assert_eq!(
            parse("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM bi CASCADE").unwrap(),
            RoleStatement::Revoke(GrantPlan {
                privileges: vec![],
                on: GrantOn::AllInSchema,
                grantees: vec![Grantee::Role("bi".into())],
            })
        );
        assert_eq!(
            parse("GRANT readers TO alice, bob").unwrap(),
            RoleStatement::GrantMembership {
                roles: vec![Grantee::Role("readers".into())],
                members: vec![Grantee::Role("alice".into()), Grantee::Role("bob".into())],
            }
        );
        assert!(parse("GRANT CREATE ON SCHEMA public TO bi").is_ok());
        assert_eq!(parse("GRANT SELECT (a) ON t TO bi").unwrap_err().sqlstate.code(), "0A000");
        assert_eq!(parse("GRANT FLY ON t TO bi").unwrap_err().sqlstate.code(), "42601");
        assert_eq!(parse("GRANT USAGE ON SCHEMA other TO bi").unwrap_err().sqlstate.code(), "3F000");
    }
}
