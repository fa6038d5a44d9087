//! `CREATE SOURCE`, `DROP SOURCE`, `SHOW SOURCES`: RisingWave-compatible source DDL.
//!
//! sqlparser knows none of these, so they are parsed here with its tokenizer and parser
//! primitives (the generic dialect, which reads `STRUCT<…>` column types):
//!
//! ```text
//! CREATE SOURCE [IF NOT EXISTS] name ( column type, … [, WATERMARK FOR column AS column [- INTERVAL '…']] )
//!   [INCLUDE partition|offset|timestamp|key [AS name] [, …]] …
//!   WITH ( key = 'value', … )
//!   FORMAT PLAIN ENCODE JSON | FORMAT JSON | FORMAT PLAIN ENCODE CSV [( delimiter = ',', without_header = true )]
//! ```

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::ColumnOption;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use freshet_common::{
    IncludeKind, PgError, SourceConfig, SourceFormat, SqlState, SqlType, WatermarkDef,
};

use crate::source_config::{bind_source_config, invalid};
use crate::types::bind_type;
use crate::words::{
    drop_targets,
    expect_end, expect_only, expect_word, ident, leading_words, object_name, parse_options,
    parser, syntax, word,
};

/// A parsed source statement.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceStatement {
    Create(CreateSourcePlan),
    Drop {
        names: Vec<String>,
        if_exists: bool,
        cascade: bool,
    },
    Show,
    /// `ALTER SOURCE name RESET`: read a reset topic anew.
    Reset { name: String },
}

/// A bound `CREATE SOURCE`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateSourcePlan {
    pub name: String,
    pub if_not_exists: bool,
    /// The payload's columns, in declaration order.
    pub columns: Vec<(String, SqlType)>,
    /// Metadata columns, after the payload's.
    pub include: Vec<(IncludeKind, String)>,
    /// `WITH (…)`, bound.
    pub config: SourceConfig,
    pub format: SourceFormat,
    /// `WATERMARK FOR …`, if given.
    pub watermark: Option<WatermarkDef>,
    /// The statement as written.
    pub sql: String,
}

/// Parses `sql` when it is one of the source statements; `None` otherwise.
pub fn parse_source_statement(sql: &str) -> Option<Result<SourceStatement, PgError>> {
    let words = leading_words(sql, 2);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["create", "source"] => Some(parse_create(sql)),
        ["drop", "source"] => Some(parse_drop(sql)),
        ["alter", "source"] => Some(parse_alter(sql)),
        ["show", "sources"] => Some(expect_only(sql, 2).map(|()| SourceStatement::Show)),
        _ => None,
    }
}

fn parse_create(sql: &str) -> Result<SourceStatement, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "create")?;
    expect_word(&mut p, "source")?;
    let if_not_exists = if word(&mut p, "if") {
        expect_word(&mut p, "not")?;
        expect_word(&mut p, "exists")?;
        true
    } else {
        false
    };
    let name = object_name(&p.parse_object_name(false).map_err(syntax)?)?;
    p.expect_token(&Token::LParen).map_err(syntax)?;
    let mut columns = Vec::new();
    let mut watermark_clause = None;
    loop {
        if is_watermark_clause(&p) {
            if watermark_clause.is_some() {
                return Err(PgError::not_supported("more than one WATERMARK on a source"));
            }
            watermark_clause = Some(parse_watermark(&mut p)?);
            if !p.consume_token(&Token::Comma) {
                break;
            }
            continue;
        }
        let col = p.parse_column_def().map_err(syntax)?;
        if let Some(opt) = col
            .options
            .iter()
            .find(|o| !matches!(o.option, ColumnOption::Null))
        {
            return Err(PgError::not_supported(format!(
                "column option {} on a source column",
                opt.option
            )));
        }
        let cname = ident(&col.name);
        if columns.iter().any(|(n, _)| *n == cname) {
            return Err(duplicate(&cname));
        }
        columns.push((cname, bind_type(&col.data_type)?));
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen).map_err(syntax)?;
    let mut include = Vec::new();
    while word(&mut p, "include") {
        loop {
            let kind = match p.next_token().token {
                Token::Word(w) => IncludeKind::from_keyword(&w.value)
                    .ok_or_else(|| PgError::not_supported(format!("INCLUDE {}", w.value)))?,
                t => {
                    return Err(PgError::new(
                        SqlState::SYNTAX_ERROR,
                        format!("syntax error at or near \"{t}\""),
                    ))
                }
            };
            let cname = if word(&mut p, "as") {
                ident(&p.parse_identifier().map_err(syntax)?)
            } else {
                format!("_kafka_{}", kind.keyword())
            };
            if columns.iter().any(|(n, _)| *n == cname) || include.iter().any(|(_, n)| *n == cname)
            {
                return Err(duplicate(&cname));
            }
            include.push((kind, cname));
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
    }
    expect_word(&mut p, "with")?;
    let options = parse_options(&mut p)?;
    let format = parse_format(&mut p)?;
    expect_end(&mut p)?;
    let config = bind_source_config(options)?;
    let watermark = match watermark_clause {
        Some((column, delay_micros)) => {
            let ty = columns
                .iter()
                .find(|(n, _)| *n == column)
                .map(|(_, t)| t.clone())
                .or_else(|| {
                    include
                        .iter()
                        .find(|(_, n)| *n == column)
                        .map(|(k, _)| k.sql_type())
                })
                .ok_or_else(|| {
                    PgError::new(
                        SqlState::UNDEFINED_COLUMN,
                        format!("column \"{column}\" named in WATERMARK does not exist"),
                    )
                })?;
            if !matches!(ty, SqlType::Timestamp | SqlType::TimestampTz) {
                return Err(PgError::new(
                    SqlState::DATATYPE_MISMATCH,
                    format!(
                        "WATERMARK column \"{column}\" must be timestamp or timestamp with time zone, not {}",
                        ty.pg_name()
                    ),
                ));
            }
            Some(WatermarkDef {
                column,
                delay_micros,
            })
        }
        None => None,
    };
    Ok(SourceStatement::Create(CreateSourcePlan {
        name,
        if_not_exists,
        columns,
        include,
        config,
        format,
        watermark,
        sql: sql.trim().trim_end_matches(';').trim_end().to_owned(),
    }))
}

/// Whether the column list goes on with `WATERMARK FOR` (a column may be named `watermark`).
fn is_watermark_clause(p: &Parser<'_>) -> bool {
    let is = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.value.eq_ignore_ascii_case(w));
    is(&p.peek_nth_token_ref(0).token, "watermark") && is(&p.peek_nth_token_ref(1).token, "for")
}

/// `WATERMARK FOR column AS column [- INTERVAL '…']` → (column, delay in microseconds).
fn parse_watermark(p: &mut Parser<'_>) -> Result<(String, i64), PgError> {
    use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr};
    expect_word(p, "watermark")?;
    expect_word(p, "for")?;
    let column = ident(&p.parse_identifier().map_err(syntax)?);
    expect_word(p, "as")?;
    let expr = p.parse_expr().map_err(syntax)?;
    let unsupported = || {
        PgError::not_supported(format!(
            "WATERMARK expression {expr}: only {column} or {column} - INTERVAL '…' is supported"
        ))
    };
    let names_column = |e: &Expr| matches!(e, Expr::Identifier(i) if ident(i) == column);
    let delay = match &expr {
        e if names_column(e) => 0,
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Minus,
            right,
        } if names_column(left) => crate::window_tvf::interval_micros(right)?.ok_or_else(unsupported)?,
        _ => return Err(unsupported()),
    };
    Ok((column, delay))
}

fn duplicate(name: &str) -> PgError {
    PgError::new(
        SqlState::DUPLICATE_COLUMN,
        format!("column \"{name}\" specified more than once"),
    )
}

/// `( key = value, … )` where keys may be dotted (`properties.bootstrap.server`).
/// `FORMAT PLAIN ENCODE JSON`, `FORMAT JSON`, `FORMAT PLAIN ENCODE CSV (…)`.
fn parse_format(p: &mut Parser<'_>) -> Result<SourceFormat, PgError> {
    expect_word(p, "format")?;
    let format = match p.next_token().token {
        Token::Word(w) => w.value.to_ascii_lowercase(),
        t => {
            return Err(PgError::new(
                SqlState::SYNTAX_ERROR,
                format!("syntax error at or near \"{t}\""),
            ))
        }
    };
    let encode = match format.as_str() {
        "json" => "json".to_owned(),
        "csv" => "csv".to_owned(),
        "plain" => {
            expect_word(p, "encode")?;
            match p.next_token().token {
                Token::Word(w) => w.value.to_ascii_lowercase(),
                t => {
                    return Err(PgError::new(
                        SqlState::SYNTAX_ERROR,
                        format!("syntax error at or near \"{t}\""),
                    ))
                }
            }
        }
        other => {
            return Err(PgError::not_supported(format!(
                "FORMAT {}",
                other.to_ascii_uppercase()
            )))
        }
    };
    let opts = if p.peek_token().token == Token::LParen {
        parse_options(p)?
    } else {
        BTreeMap::new()
    };
    match encode.as_str() {
        "json" => {
            if let Some(k) = opts.keys().next() {
                return Err(invalid(format!("unknown ENCODE JSON option \"{k}\"")));
            }
            Ok(SourceFormat::Json)
        }
        "csv" => {
            let mut delimiter = b',';
            let mut header = false;
            for (k, v) in &opts {
                match k.as_str() {
                    "delimiter" => match v.as_bytes() {
                        [d] => delimiter = *d,
                        _ => {
                            return Err(invalid(
                                "CSV delimiter must be a single one-byte character",
                            ))
                        }
                    },
                    "without_header" => header = !parse_bool(k, v)?,
                    "header" => header = parse_bool(k, v)?,
                    other => return Err(invalid(format!("unknown ENCODE CSV option \"{other}\""))),
                }
            }
            Ok(SourceFormat::Csv { delimiter, header })
        }
        other => Err(PgError::not_supported(format!(
            "ENCODE {}",
            other.to_ascii_uppercase()
        ))),
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, PgError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" | "yes" => Ok(true),
        "false" | "off" | "0" | "no" => Ok(false),
        _ => Err(invalid(format!(
            "option \"{key}\" requires a Boolean value"
        ))),
    }
}

/// `ALTER SOURCE name RESET`, the only ALTER SOURCE there is.
fn parse_alter(sql: &str) -> Result<SourceStatement, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "alter")?;
    expect_word(&mut p, "source")?;
    let name = object_name(&p.parse_object_name(false).map_err(syntax)?)?;
    if !word(&mut p, "reset") {
        return Err(PgError::not_supported(
            "ALTER SOURCE other than ALTER SOURCE name RESET",
        ));
    }
    expect_end(&mut p)?;
    Ok(SourceStatement::Reset { name })
}

/// `DROP SOURCE [IF EXISTS] name [, …] [CASCADE | RESTRICT]`.
fn parse_drop(sql: &str) -> Result<SourceStatement, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "drop")?;
    expect_word(&mut p, "source")?;
    let (names, if_exists) = drop_targets(&mut p)?;
    let cascade = word(&mut p, "cascade");
    if !cascade {
        word(&mut p, "restrict");
    }
    expect_end(&mut p)?;
    Ok(SourceStatement::Drop {
        names,
        if_exists,
        cascade,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(sql: &str) -> CreateSourcePlan {
        match parse_source_statement(sql).unwrap().unwrap() {
            SourceStatement::Create(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_tweets_source_parses() {
        let p = create(
            r#"CREATE SOURCE tweets (
                id BIGINT, text VARCHAR, lang VARCHAR, created_at VARCHAR,
                "user" STRUCT<id BIGINT, name VARCHAR, screen_name VARCHAR, followers_count BIGINT>,
                entities STRUCT<hashtags STRUCT<text VARCHAR, indices BIGINT[]>[]>,
                retweet_count BIGINT
            )
            INCLUDE partition AS kafka_partition, offset AS kafka_offset, timestamp AS kafka_ts, key AS kafka_key
            WITH (
                connector = 'kafka', topic = 'tweets',
                properties.bootstrap.server = '127.0.0.1:9092',
                scan.startup.mode = 'earliest'
            ) FORMAT PLAIN ENCODE JSON;"#,
        );
        assert_eq!(p.name, "tweets");
        assert_eq!(p.columns.len(), 7);
        assert_eq!(p.columns[4].0, "user");
        let SqlType::Struct(user) = &p.columns[4].1 else {
            panic!("{:?}", p.columns[4].1)
        };
        assert_eq!(user[1], ("name".to_owned(), SqlType::Varchar(None)));
        let SqlType::Struct(ent) = &p.columns[5].1 else {
            panic!()
        };
        assert!(
            matches!(&ent[0].1, SqlType::Array(inner) if matches!(inner.as_ref(), SqlType::Struct(_)))
        );
        assert_eq!(p.include.len(), 4);
        assert_eq!(p.include[3], (IncludeKind::Key, "kafka_key".to_owned()));
        let SourceConfig::Kafka(k) = &p.config;
        assert_eq!(k.bootstrap, "127.0.0.1:9092");
        assert_eq!(k.startup, freshet_common::Startup::Earliest);
        assert_eq!(p.format, SourceFormat::Json);
    }

    #[test]
    fn csv_and_other_forms() {
        let p = create(
            "create source if not exists s (a int) \
             with (connector='kafka', topic='t', properties.bootstrap.server='b') \
             format plain encode csv (delimiter = ';', without_header = 'false')",
        );
        assert!(p.if_not_exists);
        assert_eq!(
            p.format,
            SourceFormat::Csv {
                delimiter: b';',
                header: true
            }
        );
        let p = create(
            "CREATE SOURCE s (a int) WITH (topic='t', properties.bootstrap.server='b') FORMAT JSON",
        );
        assert_eq!(p.format, SourceFormat::Json);
        let err = parse_source_statement("CREATE SOURCE s (a int) WITH (topic='t') FORMAT AVRO")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.sqlstate, SqlState::FEATURE_NOT_SUPPORTED);
        let err = parse_source_statement("CREATE SOURCE s (a int, a int) WITH () FORMAT JSON")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.sqlstate, SqlState::DUPLICATE_COLUMN);
        let err = parse_source_statement("CREATE SOURCE s (a int) FORMAT JSON")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.sqlstate, SqlState::SYNTAX_ERROR);
    }

    #[test]
    fn alter_reset() {
        assert_eq!(
            parse_source_statement("ALTER SOURCE ev RESET;").unwrap().unwrap(),
            SourceStatement::Reset { name: "ev".into() }
        );
        let err = parse_source_statement("ALTER SOURCE ev RENAME TO x")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.sqlstate, SqlState::FEATURE_NOT_SUPPORTED);
    }

    #[test]
    fn drop_and_show() {
        assert!(matches!(
            parse_source_statement("DROP SOURCE IF EXISTS a, b CASCADE;").unwrap().unwrap(),
            SourceStatement::Drop { names, if_exists: true, cascade: true } if names == ["a", "b"]
        ));
        assert!(matches!(
            parse_source_statement("show sources").unwrap().unwrap(),
            SourceStatement::Show
        ));
        assert!(parse_source_statement("select 1").is_none());
        assert!(parse_source_statement("create table source (a int)").is_none());
    }
}
