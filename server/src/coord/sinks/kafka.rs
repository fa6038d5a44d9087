//! The Kafka sink's checks against its view and the server's property policy; the writer
//! itself (messages that carry their place in the output, read back after a restart) is
//! `freshet_connector_kafka::KafkaWriter`.

use freshet_common::{KafkaSinkConfig, KafkaSinkFormat, PgError, SqlState};
use freshet_dataflow::MaterializedView;

use super::retracting_view;
use crate::coord::engine::Engine;

/// Checks a Kafka sink's options against its view and the server's property policy; returns
/// the key columns' positions.
pub(super) fn check(
    engine: &Engine,
    cfg: &KafkaSinkConfig,
    view: &MaterializedView,
    from: &str,
) -> Result<Vec<usize>, PgError> {
    for (k, v) in &cfg.properties {
        engine.kafka_policy.check_producer(k, v).map_err(|e| {
            let state = match e {
                freshet_connector_kafka::Error::Forbidden(_) => SqlState::INSUFFICIENT_PRIVILEGE,
                _ => SqlState::INVALID_PARAMETER_VALUE,
            };
            PgError::new(state, e.to_string())
        })?;
    }
    if cfg.format == KafkaSinkFormat::Plain && !cfg.force_append_only && !view.is_append_only() {
        return Err(retracting_view(
            from,
            "FORMAT UPSERT or DEBEZIUM with a primary_key",
        ));
    }
    cfg.primary_key
        .iter()
        .map(|c| {
            view.schema
                .fields()
                .iter()
                .position(|f| f.name() == c)
                .ok_or_else(|| {
                    PgError::new(
                        SqlState::UNDEFINED_COLUMN,
                        format!("column \"{c}\" of primary_key does not exist in \"{from}\""),
                    )
                })
        })
        .collect()
}
