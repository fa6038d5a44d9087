//! `CREATE SINK`, `DROP SINK`, `SHOW SINKS`: RisingWave-compatible sink DDL, parsed like the
//! source statements:
//!
//! ```text
//! CREATE SINK [IF NOT EXISTS] name FROM relation
//!   WITH (connector = 'file', path = '/dir', [type = 'append-only' | 'changelog'],
//!         [force_append_only = 'true'], [rollover_rows = n], [rollover_seconds = n])
//!   [FORMAT PLAIN ENCODE PARQUET]
//! DROP SINK [IF EXISTS] name [, …]
//! SHOW SINKS
//! ```

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::tokenizer::Token;
use freshet_common::{FileSinkConfig, PgError, SinkConfig, SinkMode, SqlState};

use crate::words::{
    drop_targets,
    expect_end, expect_word, leading_words, object_name, parse_options, parser, syntax, word,
};

/// A parsed sink statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkStatement {
    Create(Box<CreateSinkPlan>),
    Drop { names: Vec<String>, if_exists: bool },
    Show,
}

/// A bound `CREATE SINK`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateSinkPlan {
    pub name: String,
    pub if_not_exists: bool,
    /// The view whose changes it writes.
    pub from: String,
    pub config: SinkConfig,
}

/// Parses `sql` when it is one of the sink statements; `None` otherwise.
pub fn parse_sink_statement(sql: &str) -> Option<Result<SinkStatement, PgError>> {
    let words = leading_words(sql, 2);
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["create", "sink"] => Some(parse_create(sql)),
        ["drop", "sink"] => Some(parse_drop(sql)),
        ["show", "sinks"] => Some(parse_show(sql)),
        _ => None,
    }
}

fn parse_show(sql: &str) -> Result<SinkStatement, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "show")?;
    expect_word(&mut p, "sinks")?;
    expect_end(&mut p)?;
    Ok(SinkStatement::Show)
}

fn parse_create(sql: &str) -> Result<SinkStatement, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "create")?;
    expect_word(&mut p, "sink")?;
    let if_not_exists = if word(&mut p, "if") {
        expect_word(&mut p, "not")?;
        expect_word(&mut p, "exists")?;
        true
    } else {
        false
    };
    let name = object_name(&p.parse_object_name(false).map_err(syntax)?)?;
    if word(&mut p, "as") {
        return Err(PgError::not_supported(
            "CREATE SINK … AS SELECT; create a materialized view and CREATE SINK … FROM it",
        ));
    }
    expect_word(&mut p, "from")?;
    let from = object_name(&p.parse_object_name(false).map_err(syntax)?)?;
    expect_word(&mut p, "with")?;
    let options = parse_options(&mut p)?;
    let encode = if word(&mut p, "format") {
        let format = ident_word(&mut p)?;
        expect_word(&mut p, "encode")?;
        let encode = ident_word(&mut p)?;
        if format != "plain" {
            return Err(PgError::not_supported(format!("sink FORMAT {}", format.to_uppercase())));
        }
        Some(encode)
    } else {
        None
    };
    expect_end(&mut p)?;
    let config = bind_config(options, encode.as_deref())?;
    Ok(SinkStatement::Create(Box::new(CreateSinkPlan {
        name,
        if_not_exists,
        from,
        config,
    })))
}

fn ident_word(p: &mut datafusion::sql::sqlparser::parser::Parser<'_>) -> Result<String, PgError> {
    match p.next_token().token {
        Token::Word(w) => Ok(w.value.to_ascii_lowercase()),
        t => Err(PgError::new(
            SqlState::SYNTAX_ERROR,
            format!("syntax error at or near \"{t}\""),
        )),
    }
}

fn invalid(msg: String) -> PgError {
    PgError::new(SqlState::INVALID_PARAMETER_VALUE, msg)
}

/// Binds `WITH (…)` into a typed configuration: every option known, every value checked.
fn bind_config(mut o: BTreeMap<String, String>, encode: Option<&str>) -> Result<SinkConfig, PgError> {
    let connector = o
        .remove("connector")
        .ok_or_else(|| invalid("a sink needs the option connector (for example 'file')".into()))?;
    match connector.as_str() {
        "file" | "fs" => {}
        "kafka" => return Err(PgError::not_supported("sinks with connector 'kafka'")),
        other => return Err(invalid(format!("unknown sink connector \"{other}\""))),
    }
    if let Some(e) = encode.filter(|e| *e != "parquet") {
        return Err(PgError::not_supported(format!(
            "file sinks with ENCODE {}",
            e.to_uppercase()
        )));
    }
    let path = o
        .remove("path")
        .or_else(|| o.remove("fs.path"))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| invalid("a file sink needs the option path (a directory)".into()))?;
    let force = match o.remove("force_append_only") {
        Some(v) => parse_bool("force_append_only", &v)?,
        None => false,
    };
    let mode = match o.remove("type").as_deref() {
        None | Some("append-only") | Some("append_only") if force => SinkMode::ForceAppendOnly,
        None | Some("append-only") | Some("append_only") => SinkMode::AppendOnly,
        Some("changelog") | Some("debezium") if !force => SinkMode::Changelog,
        Some("changelog") | Some("debezium") => {
            return Err(invalid("force_append_only contradicts type = 'changelog'".into()))
        }
        Some(other) => return Err(invalid(format!("unknown sink type \"{other}\""))),
    };
    let rollover_rows = match o.remove("rollover_rows") {
        Some(v) => positive("rollover_rows", &v)?,
        None => 100_000,
    };
    let rollover_ms = match o.remove("rollover_seconds") {
        Some(v) => {
            let s: f64 = v
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s < 1e9)
                .ok_or_else(|| invalid(format!("rollover_seconds must be a positive number, not \"{v}\"")))?;
            (s * 1000.0).ceil() as u64
        }
        None => 10_000,
    };
    if o.contains_key("partition_by") {
        return Err(PgError::not_supported("file sink option partition_by"));
    }
    if let Some(k) = o.keys().next() {
        return Err(invalid(format!("unknown file sink option \"{k}\"")));
    }
    Ok(SinkConfig::File(FileSinkConfig {
        path,
        mode,
        rollover_rows,
        rollover_ms,
    }))
}

fn parse_bool(key: &str, v: &str) -> Result<bool, PgError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        _ => Err(invalid(format!("{key} must be true or false, not \"{v}\""))),
    }
}

fn positive(key: &str, v: &str) -> Result<u64, PgError> {
    v.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| invalid(format!("{key} must be a positive integer, not \"{v}\"")))
}

fn parse_drop(sql: &str) -> Result<SinkStatement, PgError> {
    let mut p = parser(sql)?;
    expect_word(&mut p, "drop")?;
    expect_word(&mut p, "sink")?;
    let (names, if_exists) = drop_targets(&mut p)?;
    expect_end(&mut p)?;
    Ok(SinkStatement::Drop { names, if_exists })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(sql: &str) -> Result<CreateSinkPlan, PgError> {
        match parse_sink_statement(sql).unwrap()? {
            SinkStatement::Create(p) => Ok(*p),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn binds_options() {
        let p = create(
            "CREATE SINK s FROM v WITH (connector = 'file', path = '/tmp/x', rollover_rows = 10) FORMAT PLAIN ENCODE PARQUET",
        )
        .unwrap();
        let SinkConfig::File(f) = p.config;
        assert_eq!((f.path.as_str(), f.mode, f.rollover_rows), ("/tmp/x", SinkMode::AppendOnly, 10));
        let p = create("CREATE SINK s FROM v WITH (connector = 'file', path = 'd', type = 'changelog')").unwrap();
        let SinkConfig::File(f) = p.config;
        assert_eq!(f.mode, SinkMode::Changelog);
        for (sql, state) in [
            ("CREATE SINK s FROM v WITH (path = 'd')", "22023"),
            ("CREATE SINK s FROM v WITH (connector = 'file')", "22023"),
            ("CREATE SINK s FROM v WITH (connector = 'file', path = 'd', bogus = 1)", "22023"),
            ("CREATE SINK s FROM v WITH (connector = 'file', path = 'd', rollover_rows = 0)", "22023"),
            ("CREATE SINK s FROM v WITH (connector = 'kafka', topic = 't')", "0A000"),
            ("CREATE SINK s AS SELECT 1", "0A000"),
            ("CREATE SINK s FROM v WITH (connector = 'file', path = 'd') FORMAT PLAIN ENCODE JSON", "0A000"),
        ] {
            assert_eq!(create(sql).unwrap_err().sqlstate.code(), state, "{sql}");
        }
    }
}
