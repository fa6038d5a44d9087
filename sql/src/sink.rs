//! `CREATE SINK`, `DROP SINK`, `SHOW SINKS`: RisingWave-compatible sink DDL, parsed like the
//! source statements:
//!
//! ```text
//! CREATE SINK [IF NOT EXISTS] name FROM relation
//!   WITH (connector = 'file', path = '/dir', [type = 'append-only' | 'changelog'],
//!         [force_append_only = 'true'], [rollover_rows = n], [rollover_seconds = n],
//!         [rollover_bytes = n], [partition_by = 'col, …'])
//!   [FORMAT PLAIN ENCODE PARQUET]
//! CREATE SINK [IF NOT EXISTS] name FROM relation
//!   WITH (connector = 'kafka', topic = 't', properties.bootstrap.server = 'host:port',
//!         [primary_key = 'col, …'], [properties.<librdkafka property> = …])
//!   [FORMAT PLAIN | UPSERT | DEBEZIUM ENCODE JSON [(force_append_only = 'true')]]
//! DROP SINK [IF EXISTS] name [, …]
//! SHOW SINKS
//! ```

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::tokenizer::Token;
use freshet_common::{
    FileSinkConfig, KafkaSinkConfig, KafkaSinkFormat, PgError, SinkConfig, SinkMode, SqlState,
};

use crate::source_config::invalid;
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
    let mut options = parse_options(&mut p)?;
    let format = if word(&mut p, "format") {
        let format = ident_word(&mut p)?;
        expect_word(&mut p, "encode")?;
        let encode = ident_word(&mut p)?;
        if matches!(p.peek_token().token, Token::LParen) {
            // FORMAT … ENCODE … (options): RisingWave puts force_append_only and the like here.
            for (k, v) in parse_options(&mut p)? {
                options.insert(k, v);
            }
        }
        Some((format, encode))
    } else {
        None
    };
    expect_end(&mut p)?;
    let config = match options.get("connector").map(String::as_str) {
        Some("kafka") => bind_kafka(options, format)?,
        _ => {
            let encode = match &format {
                Some((f, _)) if f != "plain" => {
                    return Err(PgError::not_supported(format!(
                        "file sinks with FORMAT {}",
                        f.to_uppercase()
                    )))
                }
                Some((_, e)) => Some(e.as_str()),
                None => None,
            };
            bind_config(options, encode)?
        }
    };
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

/// Binds `WITH (…)` into a typed configuration: every option known, every value checked.
fn bind_config(mut o: BTreeMap<String, String>, encode: Option<&str>) -> Result<SinkConfig, PgError> {
    let connector = o
        .remove("connector")
        .ok_or_else(|| invalid("a sink needs the option connector (for example 'file')"))?;
    match connector.as_str() {
        "file" | "fs" => {}
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
        .ok_or_else(|| invalid("a file sink needs the option path (a directory)"))?;
    let force = match o.remove("force_append_only") {
        Some(v) => parse_bool("force_append_only", &v)?,
        None => false,
    };
    let mode = match o.remove("type").as_deref() {
        None | Some("append-only") | Some("append_only") if force => SinkMode::ForceAppendOnly,
        None | Some("append-only") | Some("append_only") => SinkMode::AppendOnly,
        Some("changelog") | Some("debezium") if !force => SinkMode::Changelog,
        Some("changelog") | Some("debezium") => {
            return Err(invalid("force_append_only contradicts type = 'changelog'"))
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
    let rollover_bytes = match o.remove("rollover_bytes") {
        Some(v) => Some(positive("rollover_bytes", &v)?),
        None => None,
    };
    let partition_by = match o.remove("partition_by") {
        Some(v) => {
            let cols: Vec<String> = v.split(',').map(|c| c.trim().to_owned()).collect();
            if cols.iter().any(String::is_empty) {
                return Err(invalid(format!(
                    "partition_by must name columns separated by commas, not \"{v}\""
                )));
            }
            cols
        }
        None => Vec::new(),
    };
    if let Some(k) = o.keys().next() {
        return Err(invalid(format!("unknown file sink option \"{k}\"")));
    }
    Ok(SinkConfig::File(FileSinkConfig {
        path,
        mode,
        rollover_rows,
        rollover_ms,
        rollover_bytes,
        partition_by,
    }))
}

/// Binds a Kafka sink's `WITH (…)` and `FORMAT … ENCODE JSON`.
fn bind_kafka(
    mut o: BTreeMap<String, String>,
    format: Option<(String, String)>,
) -> Result<SinkConfig, PgError> {
    o.remove("connector");
    let (topic, bootstrap) = crate::source_config::take_kafka_endpoint(&mut o, |k| {
        invalid(format!("a Kafka sink needs the option {k}"))
    })?;
    let force_append_only = match o.remove("force_append_only") {
        Some(v) => parse_bool("force_append_only", &v)?,
        None => false,
    };
    let primary_key: Vec<String> = match o.remove("primary_key") {
        Some(v) => v
            .split(',')
            .map(|c| c.trim().to_ascii_lowercase())
            .filter(|c| !c.is_empty())
            .collect(),
        None => Vec::new(),
    };
    // FORMAT decides; without it, the legacy `type` option does (RisingWave's both).
    let kind = match (&format, o.remove("type")) {
        (Some((f, _)), _) => f.clone(),
        (None, Some(t)) => t.to_ascii_lowercase().replace('_', "-"),
        (None, None) => "plain".to_owned(),
    };
    let format_kind = match kind.as_str() {
        "plain" | "append-only" => KafkaSinkFormat::Plain,
        "upsert" => KafkaSinkFormat::Upsert,
        "debezium" => KafkaSinkFormat::Debezium,
        other => return Err(PgError::not_supported(format!("Kafka sinks with FORMAT {}", other.to_uppercase()))),
    };
    if let Some((_, e)) = format.as_ref().filter(|(_, e)| e != "json") {
        return Err(PgError::not_supported(format!("Kafka sinks with ENCODE {}", e.to_uppercase())));
    }
    if format_kind != KafkaSinkFormat::Plain && primary_key.is_empty() {
        return Err(invalid(format!(
            "a {} Kafka sink needs the option primary_key (its key columns, comma-separated)",
            kind.to_uppercase()
        )));
    }
    if format_kind != KafkaSinkFormat::Plain && force_append_only {
        return Err(invalid("force_append_only applies to FORMAT PLAIN only"));
    }
    let mut properties = Vec::new();
    let mut unknown = None;
    for (k, v) in o {
        match k.strip_prefix("properties.") {
            Some(p) => properties.push((p.to_owned(), v)),
            None => unknown = unknown.or(Some(k)),
        }
    }
    if let Some(k) = unknown {
        return Err(invalid(format!("unknown Kafka sink option \"{k}\"")));
    }
    Ok(SinkConfig::Kafka(KafkaSinkConfig {
        topic,
        bootstrap,
        properties,
        format: format_kind,
        force_append_only,
        primary_key,
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
        let SinkConfig::File(f) = p.config else { panic!() };
        assert_eq!((f.path.as_str(), f.mode, f.rollover_rows), ("/tmp/x", SinkMode::AppendOnly, 10));
        assert_eq!((f.rollover_bytes, f.partition_by.len()), (None, 0));
        let p = create("CREATE SINK s FROM v WITH (connector = 'file', path = 'd', partition_by = ' a ,b', rollover_bytes = 5)").unwrap();
        let SinkConfig::File(f) = p.config else { panic!() };
        assert_eq!((f.rollover_bytes, f.partition_by), (Some(5), vec!["a".to_owned(), "b".to_owned()]));
        let p = create("CREATE SINK s FROM v WITH (connector = 'file', path = 'd', type = 'changelog')").unwrap();
        let SinkConfig::File(f) = p.config else { panic!() };
        assert_eq!(f.mode, SinkMode::Changelog);
        let p = create(
            "CREATE SINK s FROM v WITH (connector = 'kafka', topic = 't', properties.bootstrap.server = 'h:1', \
             primary_key = 'a, B', properties.linger.ms = '5') FORMAT UPSERT ENCODE JSON",
        )
        .unwrap();
        let SinkConfig::Kafka(k) = p.config else { panic!() };
        assert_eq!(
            (k.topic.as_str(), k.bootstrap.as_str(), k.format, k.primary_key.clone(), k.properties.clone()),
            ("t", "h:1", KafkaSinkFormat::Upsert, vec!["a".to_owned(), "b".to_owned()], vec![("linger.ms".to_owned(), "5".to_owned())])
        );
        let p = create(
            "CREATE SINK s FROM v WITH (connector = 'kafka', topic = 't', properties.bootstrap.server = 'h:1') \
             FORMAT PLAIN ENCODE JSON (force_append_only = 'true')",
        )
        .unwrap();
        let SinkConfig::Kafka(k) = p.config else { panic!() };
        assert!(k.force_append_only && k.format == KafkaSinkFormat::Plain);
        for (sql, state) in [
            ("CREATE SINK s FROM v WITH (path = 'd')", "22023"),
            ("CREATE SINK s FROM v WITH (connector = 'file')", "22023"),
            ("CREATE SINK s FROM v WITH (connector = 'file', path = 'd', bogus = 1)", "22023"),
            ("CREATE SINK s FROM v WITH (connector = 'file', path = 'd', rollover_rows = 0)", "22023"),
            ("CREATE SINK s FROM v WITH (connector = 'kafka', topic = 't')", "22023"),
            ("CREATE SINK s FROM v WITH (connector = 'kafka', topic = 't', properties.bootstrap.server = 'h:1') FORMAT UPSERT ENCODE JSON", "22023"),
            ("CREATE SINK s FROM v WITH (connector = 'kafka', topic = 't', properties.bootstrap.server = 'h:1') FORMAT PLAIN ENCODE AVRO", "0A000"),
            ("CREATE SINK s FROM v WITH (connector = 'kafka', topic = 't', properties.bootstrap.server = 'h:1', nope = 1)", "22023"),
            ("CREATE SINK s AS SELECT 1", "0A000"),
            ("CREATE SINK s FROM v WITH (connector = 'file', path = 'd') FORMAT PLAIN ENCODE JSON", "0A000"),
        ] {
            assert_eq!(create(sql).unwrap_err().sqlstate.code(), state, "{sql}");
        }
    }
}
