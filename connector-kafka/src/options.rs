//! The `WITH (…)` options of a Kafka source.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
    /// `timestamp.unit`: what a JSON number for a TIMESTAMP column counts.
    pub timestamp_unit: crate::numbers::TimestampUnit,
}

/// Which librdkafka properties a client may set through `properties.*`.
///
/// By default only connection, security and tuning properties on [`ALLOWED`] pass; anything
/// that would load code (`plugin.library.paths`, `ssl.engine.location`, `ssl.providers`), run a
/// command (`sasl.kerberos.kinit.cmd`) or read a server file (`*.location`, keytabs) is refused
/// before librdkafka sees it. File paths are allowed inside `files_dir` when the server sets
/// one; `allow_any` (a server option) lifts the list altogether.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PropertyPolicy {
    /// Pass every property through unchecked.
    pub allow_any: bool,
    /// The directory `*.location` and keytab paths must be inside, if any.
    pub files_dir: Option<PathBuf>,
}

/// librdkafka consumer properties any client may set: connection, security and tuning.
pub const ALLOWED: &[&str] = &[
    "allow.auto.create.topics",
    "api.version.fallback.ms",
    "api.version.request",
    "api.version.request.timeout.ms",
    "broker.address.family",
    "broker.address.ttl",
    "broker.version.fallback",
    "check.crcs",
    "client.dns.lookup",
    "client.id",
    "client.rack",
    "connections.max.idle.ms",
    "enable.ssl.certificate.verification",
    "fetch.error.backoff.ms",
    "fetch.max.bytes",
    "fetch.message.max.bytes",
    "fetch.min.bytes",
    "fetch.queue.backoff.ms",
    "fetch.wait.max.ms",
    "isolation.level",
    "max.in.flight",
    "max.in.flight.requests.per.connection",
    "max.partition.fetch.bytes",
    "message.max.bytes",
    "metadata.max.age.ms",
    "metadata.recovery.strategy",
    "queued.max.messages.kbytes",
    "queued.min.messages",
    "receive.message.max.bytes",
    "reconnect.backoff.max.ms",
    "reconnect.backoff.ms",
    "retry.backoff.max.ms",
    "retry.backoff.ms",
    "sasl.kerberos.min.time.before.relogin",
    "sasl.kerberos.principal",
    "sasl.kerberos.service.name",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.oauthbearer.client.id",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.extensions",
    "sasl.oauthbearer.method",
    "sasl.oauthbearer.scope",
    "sasl.oauthbearer.token.endpoint.url",
    "sasl.password",
    "sasl.username",
    "security.protocol",
    "socket.connection.setup.timeout.ms",
    "socket.keepalive.enable",
    "socket.nagle.disable",
    "socket.receive.buffer.bytes",
    "socket.send.buffer.bytes",
    "socket.timeout.ms",
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.cipher.suites",
    "ssl.curves.list",
    "ssl.endpoint.identification.algorithm",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl.keystore.password",
    "ssl.sigalgs.list",
    "topic.metadata.propagation.max.ms",
    "topic.metadata.refresh.fast.interval.ms",
    "topic.metadata.refresh.interval.ms",
    "topic.metadata.refresh.sparse",
];

/// librdkafka producer properties a sink's `properties.*` may set, beyond the connection and
/// security ones sources may ([`ALLOWED`]).
pub const PRODUCER_ALLOWED: &[&str] = &[
    "batch.num.messages",
    "batch.size",
    "compression.codec",
    "compression.level",
    "compression.type",
    "delivery.timeout.ms",
    "linger.ms",
    "message.send.max.retries",
    "message.timeout.ms",
    "queue.buffering.max.kbytes",
    "queue.buffering.max.messages",
    "queue.buffering.max.ms",
    "request.timeout.ms",
    "retries",
];

/// Properties naming a file the broker client reads: allowed inside the policy's directory.
fn names_file(property: &str) -> bool {
    property.ends_with(".location") && property != "ssl.engine.location"
        || property == "sasl.kerberos.keytab"
}

impl PropertyPolicy {
    /// [`PropertyPolicy::check`] for a sink's producer, which may also set producer tuning
    /// properties ([`PRODUCER_ALLOWED`]); the idempotence and acknowledgement
    /// settings exactly-once rests on are the sink's own.
    pub fn check_producer(&self, property: &str, value: &str) -> Result<()> {
        if matches!(property, "enable.idempotence" | "acks" | "request.required.acks" | "transactional.id") {
            return Err(Error::Forbidden(format!(
                "option \"properties.{property}\" is set by the sink itself (exactly-once depends on it)"
            )));
        }
        if PRODUCER_ALLOWED.contains(&property) {
            return Ok(());
        }
        self.check(property, value)
    }

    /// Checks one `properties.*` option (without the prefix) against the policy.
    pub fn check(&self, property: &str, value: &str) -> Result<()> {
        if self.allow_any || ALLOWED.contains(&property) {
            return Ok(());
        }
        if names_file(property) {
            if let Some(dir) = &self.files_dir {
                if inside(dir, Path::new(value)) {
                    return Ok(());
                }
                return Err(Error::Forbidden(format!(
                    "option \"properties.{property}\" must name a file inside the server's \
                     Kafka files directory"
                )));
            }
        }
        Err(Error::Forbidden(format!(
            "option \"properties.{property}\" is not allowed: only connection, security and \
             tuning properties may be set (the server option --kafka-allow-any-property lifts \
             this)"
        )))
    }
}

/// Whether `path`, resolved, lies inside `dir`, resolved (both must exist).
fn inside(dir: &Path, path: &Path) -> bool {
    match (dir.canonicalize(), path.canonicalize()) {
        (Ok(dir), Ok(path)) => path.starts_with(dir),
        _ => false,
    }
}

impl KafkaOptions {
    /// Reads the options of `CREATE SOURCE … WITH (…)`, with every `properties.*` option
    /// checked against `policy`.
    pub fn from_with(
        options: &BTreeMap<String, String>,
        policy: &PropertyPolicy,
    ) -> Result<KafkaOptions> {
        let mut topic = None;
        let mut bootstrap = None;
        let mut mode = None;
        let mut timestamp = None;
        let mut timestamp_unit = crate::numbers::TimestampUnit::default();
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
                "timestamp.unit" => {
                    timestamp_unit = crate::numbers::TimestampUnit::parse(v).ok_or_else(|| {
                        Error::Options(format!(
                            "invalid timestamp.unit \"{v}\": expected 'seconds', 'milliseconds' or 'microseconds'"
                        ))
                    })?
                }
                // Event time, read by the server (the source's watermark).
                "watermark.idle_timeout" => {}
                "scan.startup.timestamp.millis" | "scan.startup.timestamp_millis" => {
                    timestamp =
                        Some(v.parse::<i64>().map_err(|_| {
                            Error::Options(format!("invalid value for {k}: \"{v}\""))
                        })?)
                }
                _ => match k.strip_prefix("properties.") {
                    Some(p) => {
                        policy.check(p, v)?;
                        properties.push((p.to_owned(), v.clone()))
                    }
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
            timestamp_unit,
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
        let o = KafkaOptions::from_with(
            &with(&[
                ("connector", "kafka"),
                ("topic", "t"),
                ("properties.bootstrap.server", "127.0.0.1:1"),
                ("properties.fetch.max.bytes", "1000"),
                ("scan.startup.mode", "latest"),
            ]),
            &PropertyPolicy::default(),
        )
        .unwrap();
        assert_eq!(o.startup, Startup::Latest);
        assert_eq!(
            o.properties,
            vec![("fetch.max.bytes".into(), "1000".into())]
        );
        assert!(
            KafkaOptions::from_with(&with(&[("topic", "t")]), &PropertyPolicy::default()).is_err()
        );
        assert!(matches!(
            KafkaOptions::from_with(
                &with(&[("connector", "pulsar")]),
                &PropertyPolicy::default()
            ),
            Err(Error::Unsupported(_))
        ));
        let o = KafkaOptions::from_with(
            &with(&[
                ("topic", "t"),
                ("properties.bootstrap.server", "x"),
                ("scan.startup.timestamp.millis", "5"),
            ]),
            &PropertyPolicy::default(),
        )
        .unwrap();
        assert_eq!(o.startup, Startup::Timestamp(5));
    }

    #[test]
    fn properties_that_load_code_or_read_files_are_refused() {
        let base = [("topic", "t"), ("properties.bootstrap.server", "x")];
        let strict = PropertyPolicy::default();
        for (k, v) in [
            ("properties.plugin.library.paths", "/tmp/x.so"),
            ("properties.ssl.engine.location", "/tmp/x.so"),
            ("properties.ssl.providers", "legacy"),
            ("properties.sasl.kerberos.kinit.cmd", "touch /tmp/pwned"),
            ("properties.ssl.ca.location", "/etc/passwd"),
            ("properties.sasl.kerberos.keytab", "/etc/krb5.keytab"),
            ("properties.interceptor.whatever", "x"),
        ] {
            let mut o = with(&base);
            o.insert(k.into(), v.into());
            assert!(
                matches!(
                    KafkaOptions::from_with(&o, &strict),
                    Err(Error::Forbidden(_))
                ),
                "{k} passed"
            );
            let any = PropertyPolicy {
                allow_any: true,
                files_dir: None,
            };
            assert!(KafkaOptions::from_with(&o, &any).is_ok(), "{k} refused");
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let files = PropertyPolicy {
            allow_any: false,
            files_dir: Some(dir.path().to_owned()),
        };
        let mut o = with(&base);
        o.insert(
            "properties.ssl.ca.location".into(),
            ca.display().to_string(),
        );
        assert!(KafkaOptions::from_with(&o, &files).is_ok());
        o.insert(
            "properties.ssl.ca.location".into(),
            format!("{}/../../etc/passwd", dir.path().display()),
        );
        assert!(matches!(
            KafkaOptions::from_with(&o, &files),
            Err(Error::Forbidden(_))
        ));
        o.remove("properties.ssl.ca.location");
        o.insert(
            "properties.plugin.library.paths".into(),
            ca.display().to_string(),
        );
        assert!(matches!(
            KafkaOptions::from_with(&o, &files),
            Err(Error::Forbidden(_))
        ));
    }
}
