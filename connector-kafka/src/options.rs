//! The `WITH (…)` options of a Kafka source.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// Where a new source starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Startup {
    Earliest,
    Latest,
    /// The first message at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

/// A Kafka source's connection options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaOptions {
    pub topic: String,
    pub bootstrap: String,
    pub startup: Startup,
    /// `properties.*` options other than the bootstrap servers, passed to librdkafka as is.
    pub properties: Vec<(String, String)>,
}

impl KafkaOptions {
    /// Reads the options of `CREATE SOURCE … WITH (…)`.
    pub fn from_with(options: &BTreeMap<String, String>) -> Result<KafkaOptions> {
        let mut topic = None;
        let mut bootstrap = None;
        let mut mode = None;
        let mut timestamp = None;
        let mut properties = Vec::new();
        for (k, v) in options {
            match k.as_str() {
                "connector" => {
                    if !v.eq_ignore_ascii_case("kafka") {
                        return Err(Error::Unsupported(format!("connector '{v}'")));
                    }
                }
                "topic" => topic = Some(v.clone()),
                "properties.bootstrap.server" | "properties.bootstrap.servers" => {
                    bootstrap = Some(v.clone())
                }
                "scan.startup.mode" => mode = Some(v.to_ascii_lowercase()),
                "scan.startup.timestamp.millis" | "scan.startup.timestamp_millis" => {
                    timestamp =
                        Some(v.parse::<i64>().map_err(|_| {
                            Error::Options(format!("invalid value for {k}: \"{v}\""))
                        })?)
                }
                _ => match k.strip_prefix("properties.") {
                    Some(p) => properties.push((p.to_owned(), v.clone())),
                    None => return Err(Error::Options(format!("unknown option \"{k}\""))),
                },
            }
        }
        let startup = match (mode.as_deref(), timestamp) {
            (_, Some(t)) => Startup::Timestamp(t),
            (None | Some("earliest"), None) => Startup::Earliest,
            (Some("latest"), None) => Startup::Latest,
            (Some("timestamp"), None) => {
                return Err(Error::Options(
                    "scan.startup.mode 'timestamp' needs scan.startup.timestamp.millis".into(),
                ))
            }
            (Some(m), None) => {
                return Err(Error::Options(format!(
                    "invalid scan.startup.mode \"{m}\": expected 'earliest' or 'latest'"
                )))
            }
        };
        Ok(KafkaOptions {
            topic: topic.ok_or_else(|| Error::Options("missing option \"topic\"".into()))?,
            bootstrap: bootstrap.ok_or_else(|| {
                Error::Options("missing option \"properties.bootstrap.server\"".into())
            })?,
            startup,
            properties,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn options() {
        let o = KafkaOptions::from_with(&with(&[
            ("connector", "kafka"),
            ("topic", "t"),
            ("properties.bootstrap.server", "127.0.0.1:1"),
            ("properties.fetch.max.bytes", "1000"),
            ("scan.startup.mode", "latest"),
        ]))
        .unwrap();
        assert_eq!(o.startup, Startup::Latest);
        assert_eq!(
            o.properties,
            vec![("fetch.max.bytes".into(), "1000".into())]
        );
        assert!(KafkaOptions::from_with(&with(&[("topic", "t")])).is_err());
        assert!(matches!(
            KafkaOptions::from_with(&with(&[("connector", "pulsar")])),
            Err(Error::Unsupported(_))
        ));
        let o = KafkaOptions::from_with(&with(&[
            ("topic", "t"),
            ("properties.bootstrap.server", "x"),
            ("scan.startup.timestamp.millis", "5"),
        ]))
        .unwrap();
        assert_eq!(o.startup, Startup::Timestamp(5));
    }
}
