//! What a client may pass to librdkafka through `properties.*`: the policy sources and sinks
//! are checked against.

use std::path::{Path, PathBuf};

use crate::{Error, Result};

use freshet_common::KafkaSourceConfig;

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

/// Checks every `properties.*` option of a source against `policy`.
pub fn check_source(config: &KafkaSourceConfig, policy: &PropertyPolicy) -> Result<()> {
    config.properties.iter().try_for_each(|(k, v)| policy.check(k, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> KafkaSourceConfig {
        KafkaSourceConfig {
            topic: "t".into(),
            bootstrap: "x".into(),
            startup: freshet_common::Startup::Earliest,
            properties: pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            timestamp_unit: Default::default(),
            idle_timeout_ms: None,
        }
    }

    #[test]
    fn properties_that_load_code_or_read_files_are_refused() {
        let strict = PropertyPolicy::default();
        assert!(check_source(&with(&[("fetch.max.bytes", "1000")]), &strict).is_ok());
        for (k, v) in [
            ("plugin.library.paths", "/tmp/x.so"),
            ("ssl.engine.location", "/tmp/x.so"),
            ("ssl.providers", "legacy"),
            ("sasl.kerberos.kinit.cmd", "touch /tmp/pwned"),
            ("ssl.ca.location", "/etc/passwd"),
            ("sasl.kerberos.keytab", "/etc/krb5.keytab"),
            ("interceptor.whatever", "x"),
        ] {
            let o = with(&[(k, v)]);
            assert!(matches!(check_source(&o, &strict), Err(Error::Forbidden(_))), "{k} passed");
            let any = PropertyPolicy {
                allow_any: true,
                files_dir: None,
            };
            assert!(check_source(&o, &any).is_ok(), "{k} refused");
        }
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "x").unwrap();
        let files = PropertyPolicy {
            allow_any: false,
            files_dir: Some(dir.path().to_owned()),
        };
        let ca = ca.display().to_string();
        assert!(check_source(&with(&[("ssl.ca.location", &ca)]), &files).is_ok());
        let outside = format!("{}/../../etc/passwd", dir.path().display());
        assert!(matches!(
            check_source(&with(&[("ssl.ca.location", &outside)]), &files),
            Err(Error::Forbidden(_))
        ));
        assert!(matches!(
            check_source(&with(&[("plugin.library.paths", &ca)]), &files),
            Err(Error::Forbidden(_))
        ));
    }
}
