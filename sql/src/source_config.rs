//! `CREATE SOURCE … WITH (…)` bound into a typed [`SourceConfig`]: every option known, every
//! value checked, once, at creation (the catalog persists the result, not the text).

use std::collections::BTreeMap;

use freshet_common::{
    KafkaSourceConfig, PgError, SourceConfig, SqlState, Startup, TimestampUnit,
    DEFAULT_IDLE_TIMEOUT_MS,
};

/// `22023`: a bad option value (source and sink DDL).
pub(crate) fn invalid(msg: impl Into<String>) -> PgError {
    PgError::new(SqlState::INVALID_PARAMETER_VALUE, msg)
}

/// Binds a source's `WITH (…)` options (keys lower-cased).
pub fn bind_source_config(mut o: BTreeMap<String, String>) -> Result<SourceConfig, PgError> {
    match o.remove("connector") {
        None => {}
        Some(c) if c.eq_ignore_ascii_case("kafka") => {}
        Some(c) => return Err(PgError::not_supported(format!("source connector '{c}'"))),
    }
    let (topic, bootstrap) =
        take_kafka_endpoint(&mut o, |k| invalid(format!("missing option \"{k}\"")))?;
    let timestamp_unit = match o.remove("timestamp.unit") {
        None => TimestampUnit::default(),
        Some(v) => TimestampUnit::parse(&v).ok_or_else(|| {
            invalid(format!(
                "invalid timestamp.unit \"{v}\": expected 'seconds', 'milliseconds' or 'microseconds'"
            ))
        })?,
    };
    let idle_timeout_ms = match o.remove("watermark.idle_timeout") {
        None => Some(DEFAULT_IDLE_TIMEOUT_MS),
        Some(v) => {
            let d = crate::subscribe::parse_duration(&v)?;
            (!d.is_zero()).then(|| (d.as_millis() as u64).max(1))
        }
    };
    let startup = startup(&mut o)?;
    let mut properties = Vec::new();
    for (k, v) in o {
        match k.strip_prefix("properties.") {
            Some(p) => properties.push((p.to_owned(), v)),
            None => return Err(invalid(format!("unknown option \"{k}\""))),
        }
    }
    Ok(SourceConfig::Kafka(KafkaSourceConfig {
        topic,
        bootstrap,
        startup,
        properties,
        timestamp_unit,
        idle_timeout_ms,
    }))
}

/// Takes `topic` and `properties.bootstrap.server` (or `…servers`) out of a source's or a
/// sink's options; `missing` words the error for the one absent or empty.
pub(crate) fn take_kafka_endpoint(
    o: &mut BTreeMap<String, String>,
    missing: impl Fn(&str) -> PgError,
) -> Result<(String, String), PgError> {
    let topic = o
        .remove("topic")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| missing("topic"))?;
    let bootstrap = o
        .remove("properties.bootstrap.server")
        .or_else(|| o.remove("properties.bootstrap.servers"))
        .filter(|b| !b.is_empty())
        .ok_or_else(|| missing("properties.bootstrap.server"))?;
    Ok((topic, bootstrap))
}

/// `scan.startup.mode` and `scan.startup.timestamp.millis`.
fn startup(o: &mut BTreeMap<String, String>) -> Result<Startup, PgError> {
    let mode = o.remove("scan.startup.mode").map(|m| m.to_ascii_lowercase());
    let mut timestamp = None;
    for k in ["scan.startup.timestamp.millis", "scan.startup.timestamp_millis"] {
        if let Some(v) = o.remove(k) {
            let t = v
                .parse::<i64>()
                .map_err(|_| invalid(format!("invalid value for {k}: \"{v}\"")))?;
            timestamp = Some(t);
        }
    }
    match (mode.as_deref(), timestamp) {
        (_, Some(t)) => Ok(Startup::Timestamp(t)),
        (None | Some("earliest"), None) => Ok(Startup::Earliest),
        (Some("latest"), None) => Ok(Startup::Latest),
        (Some("timestamp"), None) => Err(invalid(
            "scan.startup.mode 'timestamp' needs scan.startup.timestamp.millis",
        )),
        (Some(m), None) => Err(invalid(format!(
            "invalid scan.startup.mode \"{m}\": expected 'earliest' or 'latest'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use freshet_common::UserError;

    fn bind(pairs: &[(&str, &str)]) -> Result<KafkaSourceConfig, PgError> {
        let o = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        bind_source_config(o).map(|SourceConfig::Kafka(k)| k)
    }

    #[test]
    fn options() {
        let o = bind(&[
            ("connector", "kafka"),
            ("topic", "t"),
            ("properties.bootstrap.server", "127.0.0.1:1"),
            ("properties.fetch.max.bytes", "1000"),
            ("scan.startup.mode", "latest"),
            ("timestamp.unit", "ms"),
            ("watermark.idle_timeout", "1s"),
        ])
        .unwrap();
        assert_eq!(o.startup, Startup::Latest);
        assert_eq!(o.properties, vec![("fetch.max.bytes".into(), "1000".into())]);
        assert_eq!(o.timestamp_unit, TimestampUnit::Milliseconds);
        assert_eq!(o.idle_timeout_ms, Some(1000));
        let base = [("topic", "t"), ("properties.bootstrap.server", "x")];
        let o = bind(&base).unwrap();
        assert_eq!((o.startup, o.idle_timeout_ms), (Startup::Earliest, Some(DEFAULT_IDLE_TIMEOUT_MS)));
        let o = bind(&[base[0], base[1], ("scan.startup.timestamp.millis", "5")]).unwrap();
        assert_eq!(o.startup, Startup::Timestamp(5));
        let o = bind(&[base[0], base[1], ("watermark.idle_timeout", "0")]).unwrap();
        assert_eq!(o.idle_timeout_ms, None);
        let err = |pairs: &[(&str, &str)]| bind(pairs).unwrap_err();
        assert_eq!(err(&[("topic", "t")]).sqlstate(), SqlState::INVALID_PARAMETER_VALUE);
        assert_eq!(err(&[("connector", "pulsar")]).sqlstate(), SqlState::FEATURE_NOT_SUPPORTED);
        for bad in [
            ("scan.startup.mode", "middle"),
            ("timestamp.unit", "days"),
            ("watermark.idle_timeout", "soon"),
            ("scan.startup.timestamp.millis", "x"),
            ("tpoic", "t"),
        ] {
            let e = err(&[base[0], base[1], bad]);
            assert_eq!(e.sqlstate(), SqlState::INVALID_PARAMETER_VALUE, "{bad:?}: {e:?}");
        }
    }
}
