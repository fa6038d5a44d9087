//! `pg_stat_activity`: a row per live session (client backends only), from the sessions'
//! [`crate::coord::activity::Activities`], with PostgreSQL 15's columns.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, AsArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;

use super::catalog_rows::CatalogRows;
use super::pg_attribute::{column, oid_at, read_all};
use crate::coord::engine::Engine;

#[derive(Debug)]
pub struct PgStatActivity {
    pub engine: Arc<Engine>,
    /// pg_database, for `datid`.
    pub database: Arc<dyn TableProvider>,
}

const TEXT: &[&str] = &[
    "datname",
    "usename",
    "application_name",
    "client_addr",
    "client_hostname",
    "wait_event_type",
    "wait_event",
    "state",
    "backend_xid",
    "backend_xmin",
    "query",
    "backend_type",
];

fn schema() -> SchemaRef {
    let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()));
    let f = |name: &str, t: DataType| Field::new(name, t, true);
    Arc::new(Schema::new(vec![
        f("datid", DataType::Int32),
        f("datname", DataType::Utf8),
        f("pid", DataType::Int32),
        f("leader_pid", DataType::Int32),
        f("usesysid", DataType::Int32),
        f("usename", DataType::Utf8),
        f("application_name", DataType::Utf8),
        f("client_addr", DataType::Utf8),
        f("client_hostname", DataType::Utf8),
        f("client_port", DataType::Int32),
        f("backend_start", ts()),
        f("xact_start", ts()),
        f("query_start", ts()),
        f("state_change", ts()),
        f("wait_event_type", DataType::Utf8),
        f("wait_event", DataType::Utf8),
        f("state", DataType::Utf8),
        f("backend_xid", DataType::Utf8),
        f("backend_xmin", DataType::Utf8),
        f("query_id", DataType::Int64),
        f("query", DataType::Utf8),
        f("backend_type", DataType::Utf8),
    ]))
}

#[async_trait]
impl CatalogRows for PgStatActivity {
    fn schema(&self) -> SchemaRef {
        schema()
    }

    async fn rows(&self, state: &dyn Session) -> Result<Vec<RecordBatch>> {
        let mut datid = None;
        for b in read_all(&self.database, state).await? {
            let (oid, name) = (
                column(&b, "oid")?,
                column(&b, "datname")?.as_string::<i32>(),
            );
            for i in 0..b.num_rows() {
                if name.value(i) == crate::DATABASE_NAME {
                    datid = oid_at(oid, i).map(|o| o as i32);
                }
            }
        }
        let roles = self.engine.catalog.roles();
        // Sessions still logging in are not listed.
        let sessions: Vec<_> = self
            .engine
            .activities
            .snapshot()
            .into_iter()
            .filter(|s| !s.state.is_empty())
            .collect();
        let n = sessions.len();
        let text = |name: &str| -> ArrayRef {
            let values: Vec<Option<String>> = sessions
                .iter()
                .map(|s| match name {
                    "datname" => Some(crate::DATABASE_NAME.to_owned()),
                    "usename" => Some(s.user.clone()),
                    "application_name" => Some(s.application_name.clone()),
                    "client_addr" => s.client.map(|c| c.ip().to_string()),
                    "state" => Some(s.state.to_owned()),
                    "query" => Some(s.query.clone()),
                    "backend_type" => Some("client backend".to_owned()),
                    _ => None,
                })
                .collect();
            Arc::new(StringArray::from(values))
        };
        let times =
            |f: &dyn Fn(&crate::coord::activity::ActivityState) -> Option<i64>| -> ArrayRef {
                Arc::new(
                    TimestampMicrosecondArray::from(sessions.iter().map(f).collect::<Vec<_>>())
                        .with_timezone("+00:00"),
                )
            };
        let schema = schema();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| match field.name().as_str() {
                "datid" => Arc::new(Int32Array::from(vec![datid; n])) as ArrayRef,
                "pid" => Arc::new(Int32Array::from_iter(sessions.iter().map(|s| Some(s.pid)))),
                "leader_pid" => Arc::new(Int32Array::from(vec![None; n])),
                "usesysid" => Arc::new(Int32Array::from_iter(sessions.iter().map(|s| {
                    roles
                        .iter()
                        .find(|r| r.name == s.user)
                        .map(|r| r.oid as i32)
                }))),
                "client_port" => Arc::new(Int32Array::from_iter(
                    sessions
                        .iter()
                        .map(|s| s.client.map(|c| i32::from(c.port()))),
                )),
                "backend_start" => times(&|s| Some(s.backend_start)),
                "xact_start" => times(&|s| s.xact_start),
                "query_start" => times(&|s| s.query_start),
                "state_change" => times(&|s| Some(s.state_change)),
                "query_id" => Arc::new(Int64Array::from(vec![None; n])),
                name if TEXT.contains(&name) => text(name),
                _ => Arc::new(StringArray::from(vec![None::<&str>; n])),
            })
            .collect();
        Ok(vec![RecordBatch::try_new(schema, columns)?])
    }
}
