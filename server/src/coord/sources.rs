//! Sources: Kafka topics read into the dataflow with exactly-once state.
//!
//! Per source, a [`Reader`] (freshet-connector-kafka) reads and decodes messages on its own
//! threads and hands batches to an ingest task. The ingest task takes the writer lock and
//! commits, in ONE RocksDB write batch, the epoch the batch causes in every dependent view,
//! the offsets it takes each partition to (`'s' id 'p' partition` → start ++ next) and the
//! messages that could not be decoded (`'s' id 'e' partition offset`). After a crash the
//! reader resumes from the committed offsets, so nothing is lost or counted twice; broker-side
//! consumer-group offsets are never used.
//!
//! A new view over a source re-reads the source's committed offset ranges from the broker
//! (under the writer lock) as its backfill, so it equals a computation over every message the
//! source has consumed.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use freshet_catalog::{ColumnDef, SourceDef, DEFAULT_SCHEMA};
use freshet_common::{
    KafkaSourceConfig, PgError, Selection, SourceConfig, SourceFormat, SqlState, SqlType, TableId,
};
use freshet_connector::{
    decode_batch, BadMessage, CsvOptions, Decoder, Encoding, JsonOptions, SharedDecoder,
    SourceBatch, SourceReader, BEGINNING,
};
use freshet_connector_kafka::{replay, resolve_start, Reader, ReaderConfig};
use freshet_dataflow::EpochChanges;
use freshet_sql::CreateSourcePlan;
use freshet_state::{source_prefix, Snapshot, WriteBatch};
use tokio::sync::{mpsc, watch};

use crate::coord::engine::Engine;

pub mod positions;
mod clock;
pub mod watermark;
pub use positions::{read_gaps, reset, Gap};

/// How long DDL waits for the broker.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a re-read (backfill, ad-hoc SELECT) may go without progress.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long FLUSH waits for sources to catch up.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(300);
/// Most reader batches folded into one epoch.
const MAX_BATCHES_PER_EPOCH: usize = 16;

/// The running sources.
#[derive(Debug, Default)]
pub struct Sources {
    running: RwLock<HashMap<TableId, Arc<SourceRuntime>>>,
}

/// Per-partition progress: where the source started and the next offset to read.
pub type Progress = BTreeMap<i32, (i64, i64)>;

/// One running source.
#[derive(Debug)]
pub struct SourceRuntime {
    pub def: Arc<SourceDef>,
    pub opts: KafkaSourceConfig,
    /// Rows as decoded: payload columns, then INCLUDE columns.
    pub schema: SchemaRef,
    reader: Mutex<Option<Box<dyn SourceReader>>>,
    /// The reader's decoder: only the columns views read (see [`refresh_columns`]).
    decoder: Arc<SharedDecoder>,
    /// The committed progress (updated after each commit).
    committed: watch::Sender<Progress>,
    /// Bad messages recorded so far.
    errors: std::sync::atomic::AtomicU64,
    /// Why the last epoch failed to commit, while it keeps failing.
    stalled: Mutex<Option<String>>,
    /// Why the source stopped reading (a topic reset), until `ALTER SOURCE … RESET`.
    halted: Mutex<Option<String>>,
    /// Retention gaps recorded so far.
    gaps: std::sync::atomic::AtomicU64,
    /// Event time (`WATERMARK FOR`), as committed.
    watermarks: Mutex<Option<watermark::Watermarks>>,
}

impl SourceRuntime {
    /// The committed progress.
    pub fn progress(&self) -> Progress {
        self.committed.borrow().clone()
    }

    /// Bad messages recorded so far.
    pub fn error_count(&self) -> u64 {
        self.errors.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Retention gaps recorded so far.
    pub fn gap_count(&self) -> u64 {
        self.gaps.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The watermark now (micros) and each partition's largest event time and idleness;
    /// `None` for a source without `WATERMARK FOR`.
    pub fn watermarks(&self) -> Option<(Option<i64>, Vec<(i32, Option<i64>, bool)>)> {
        let g = lock(&self.watermarks);
        let w = g.as_ref()?;
        Some((w.at(std::time::Instant::now()), w.partition_maxima()))
    }

    /// Broker status and last seen high watermarks.
    pub fn status(&self) -> (String, BTreeMap<i32, i64>) {
        if let Some(h) = lock(&self.halted).as_ref() {
            return (
                format!("halted: {h}; views keep what they hold; ALTER SOURCE {} RESET reads the topic anew", self.def.name),
                BTreeMap::new(),
            );
        }
        let st = lock(&self.reader).as_ref().map(|r| r.status());
        let marks = st
            .as_ref()
            .map(|s| s.high_watermarks.clone())
            .unwrap_or_default();
        let text = if let Some(e) = lock(&self.stalled).as_ref() {
            format!("stalled: {e}")
        } else {
            match st.and_then(|s| s.error) {
                Some(e) => format!("broker unreachable, retrying: {e}"),
                None => "running".to_owned(),
            }
        };
        (text, marks)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Sources {
    pub fn get(&self, id: TableId) -> Option<Arc<SourceRuntime>> {
        self.read().get(&id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<SourceRuntime>> {
        let mut v: Vec<_> = self.read().values().cloned().collect();
        v.sort_by_key(|s| s.def.id);
        v
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TableId, Arc<SourceRuntime>>> {
        self.running
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TableId, Arc<SourceRuntime>>> {
        self.running
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The Arrow schema of a source's rows (every column nullable: any field may be missing).
pub fn source_schema(def: &SourceDef) -> Schema {
    Schema::new(
        def.columns
            .iter()
            .map(|c| freshet_sql::types::arrow_field(&c.name, &c.ty, true))
            .collect::<Vec<_>>(),
    )
}

/// A decoder of what `selection` reads of the payload (all of it when `None`).
/// The event-time column of a source with a watermark is always decoded.
fn decoder_for(def: &SourceDef, schema: &SchemaRef, selection: Option<Selection>) -> Decoder {
    let d = decoder(def, schema);
    match selection {
        Some(mut s) => {
            if let Some(c) = watermark::column(def).filter(|&c| c < def.payload_columns().len()) {
                s.add_column(c);
            }
            d.with_selection(s)
        }
        None => d,
    }
}

/// Points the source's reader at the columns its views (or its subscribers: all) read now.
/// Call under the writer lock after views over it are created or dropped, or subscribers
/// come or go: batches decoded with the old column set are
/// decoded again at commit.
pub fn refresh_columns(engine: &Engine, id: TableId) {
    if let Some(rt) = engine.sources.get(id) {
        // A subscriber of the source itself reads every column.
        let selection =
            (!engine.dataflows.is_observed(id)).then(|| engine.dataflows.selection_read(id));
        let d = decoder_for(&rt.def, &rt.schema, selection);
        if d.selection() != rt.decoder.get().1.selection() {
            tracing::debug!(source = %rt.def.name, selection = ?d.selection(), "decoding columns");
            rt.decoder.set(d);
        }
    }
}

/// [`refresh_columns`] for every source.
pub fn refresh_all_columns(engine: &Engine) {
    for rt in engine.sources.all() {
        refresh_columns(engine, rt.def.id);
    }
}

fn decoder(def: &SourceDef, schema: &SchemaRef) -> Decoder {
    let payload = Arc::new(Schema::new(
        schema.fields()[..def.payload_columns().len()].to_vec(),
    ));
    let encoding = match def.format {
        SourceFormat::Json => {
            let raw_json_columns = def
                .payload_columns()
                .iter()
                .enumerate()
                .filter(|(_, c)| c.ty == SqlType::Jsonb)
                .map(|(i, _)| i)
                .collect();
            let SourceConfig::Kafka(k) = &def.config;
            Encoding::Json(JsonOptions {
                timestamp_unit: k.timestamp_unit,
                raw_json_columns,
            })
        }
        SourceFormat::Csv { delimiter, header } => Encoding::Csv(CsvOptions { delimiter, header }),
    };
    Decoder::new(encoding, payload, def.include.clone(), Arc::clone(schema))
}

/// The source's Kafka configuration, its `properties.*` checked against the server's policy
/// (checked again at each start: the policy is a server option and may have tightened).
fn kafka_options(engine: &Engine, def: &SourceDef) -> Result<KafkaSourceConfig, PgError> {
    let SourceConfig::Kafka(k) = &def.config;
    freshet_connector_kafka::check_source(k, &engine.kafka_policy).map_err(|e| {
        let state = match e {
            freshet_connector_kafka::Error::Forbidden(_) => SqlState::INSUFFICIENT_PRIVILEGE,
            _ => SqlState::INVALID_PARAMETER_VALUE,
        };
        PgError::new(state, e.to_string())
    })?;
    Ok(k.clone())
}

fn progress_key(id: TableId, partition: i32) -> Vec<u8> {
    let mut k = source_prefix(id);
    k.push(b'p');
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn progress_value(start: i64, next: i64) -> [u8; 16] {
    let mut v = [0; 16];
    v[..8].copy_from_slice(&start.to_be_bytes());
    v[8..].copy_from_slice(&next.to_be_bytes());
    v
}

fn error_key(id: TableId, partition: i32, offset: i64) -> Vec<u8> {
    let mut k = source_prefix(id);
    k.push(b'e');
    k.extend_from_slice(&partition.to_be_bytes());
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

/// A bad message as stored: error length (u32 BE), error, payload prefix.
fn error_value(b: &BadMessage) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + b.error.len() + b.payload.len());
    v.extend_from_slice(&(b.error.len() as u32).to_be_bytes());
    v.extend_from_slice(b.error.as_bytes());
    v.extend_from_slice(&b.payload);
    v
}

pub(crate) fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes(b.try_into().unwrap_or_default())
}

pub(crate) fn be_i64(b: &[u8]) -> i64 {
    i64::from_be_bytes(b.try_into().unwrap_or_default())
}

/// A source's committed progress as of `snapshot`.
pub fn read_progress(snapshot: &Snapshot, id: TableId) -> Result<Progress, PgError> {
    let mut prefix = source_prefix(id);
    prefix.push(b'p');
    let mut out = Progress::new();
    for (k, v) in snapshot.scan_prefix(&prefix).map_err(state_error)? {
        if k.len() == prefix.len() + 4 && v.len() == 16 {
            out.insert(
                be_i32(&k[prefix.len()..]),
                (be_i64(&v[..8]), be_i64(&v[8..])),
            );
        }
    }
    Ok(out)
}

/// One recorded bad message: partition, offset, error, payload prefix.
pub type ErrorRecord = (i32, i64, String, Vec<u8>);

/// A source's recorded bad messages as of `snapshot`.
pub fn read_errors(snapshot: &Snapshot, id: TableId) -> Result<Vec<ErrorRecord>, PgError> {
    let mut prefix = source_prefix(id);
    prefix.push(b'e');
    let mut out = Vec::new();
    for (k, v) in snapshot.scan_prefix(&prefix).map_err(state_error)? {
        if k.len() != prefix.len() + 12 || v.len() < 4 {
            continue;
        }
        let n = (be_i32(&v[..4]) as u32 as usize).min(v.len() - 4);
        out.push((
            be_i32(&k[prefix.len()..prefix.len() + 4]),
            be_i64(&k[prefix.len() + 4..]),
            String::from_utf8_lossy(&v[4..4 + n]).into_owned(),
            v[4 + n..].to_vec(),
        ));
    }
    Ok(out)
}

fn state_error(e: freshet_state::Error) -> PgError {
    e.into()
}

fn internal(e: impl std::fmt::Display) -> PgError {
    PgError::new(SqlState::INTERNAL_ERROR, e.to_string())
}

/// Rejects column types the decoder cannot fill yet: JSONB is taken as a top-level column
/// only (any JSON value, kept as its text), not inside structs or arrays; no uuid.
fn check_type(name: &str, ty: &SqlType) -> Result<(), PgError> {
    fn nested(name: &str, ty: &SqlType) -> Result<(), PgError> {
        match ty {
            SqlType::Jsonb => Err(PgError::not_supported(format!(
                "JSONB inside a struct or array of a source (column \"{name}\")"
            ))),
            // The decoder would keep a message's text as written, not canonical.
            SqlType::Uuid => Err(PgError::not_supported(format!(
                "a uuid column in a source (column \"{name}\"; declare it text)"
            ))),
            SqlType::Array(t) => nested(name, t),
            SqlType::Struct(fields) => fields.iter().try_for_each(|(_, t)| nested(name, t)),
            _ => Ok(()),
        }
    }
    match ty {
        SqlType::Jsonb => Ok(()),
        other => nested(name, other),
    }
}

/// `CREATE SOURCE`: validate, resolve the start offsets against the broker, persist the
/// definition with its initial progress in one write, start reading.
pub async fn create(
    engine: &Arc<Engine>,
    plan: CreateSourcePlan,
    owner: String,
) -> Result<(), PgError> {
    if matches!(plan.format, SourceFormat::Csv { .. }) {
        if let Some((name, ty)) = plan
            .columns
            .iter()
            .find(|(_, t)| matches!(t, SqlType::Struct(_) | SqlType::Array(_) | SqlType::Jsonb))
        {
            return Err(PgError::not_supported(format!(
                "a {} column in an ENCODE CSV source (column \"{name}\")",
                ty.pg_name()
            )));
        }
    }
    if plan.columns.is_empty() {
        return Err(PgError::new(
            SqlState::INVALID_TABLE_DEFINITION,
            "a source needs at least one payload column",
        ));
    }
    let mut columns = Vec::new();
    for (name, ty) in &plan.columns {
        check_type(name, ty)?;
        columns.push(ColumnDef::new(name.clone(), ty.clone(), false));
    }
    for (kind, name) in &plan.include {
        columns.push(ColumnDef::new(name.clone(), kind.sql_type(), false));
    }
    for (i, c) in columns.iter().enumerate() {
        if columns[..i].iter().any(|o| o.name == c.name) {
            return Err(PgError::new(
                SqlState::DUPLICATE_COLUMN,
                format!("column \"{}\" specified more than once", c.name),
            ));
        }
    }
    let mut def = SourceDef {
        id: TableId(0),
        schema: DEFAULT_SCHEMA.to_owned(),
        name: plan.name.clone(),
        columns,
        include: plan.include.iter().map(|(k, _)| *k).collect(),
        config: plan.config.clone(),
        format: plan.format.clone(),
        watermark: plan.watermark.clone(),
        sql: plan.sql.clone(),
        owner,
        acl: Vec::new(),
    };
    let opts = kafka_options(engine, &def)?;
    let _w = engine.begin_write().await;
    if engine.catalog.name_taken(&def.name) {
        if plan.if_not_exists && engine.catalog.source(&def.name).is_some() {
            return Ok(());
        }
        return Err(PgError::new(
            SqlState::DUPLICATE_TABLE,
            format!("relation \"{}\" already exists", def.name),
        ));
    }
    let start = {
        let o = opts.clone();
        tokio::task::spawn_blocking(move || resolve_start(&o, BROKER_TIMEOUT))
            .await
            .map_err(internal)?
            .map_err(|e| {
                PgError::new(
                    SqlState::UNABLE_TO_CONNECT,
                    format!(
                        "cannot read topic \"{}\" from Kafka at {}: {e}",
                        opts.topic, opts.bootstrap
                    ),
                )
            })?
    };
    def.id = engine.catalog.peek_next_id();
    let mut batch = WriteBatch::default();
    for (&p, &o) in &start {
        batch.put(progress_key(def.id, p), progress_value(o, o));
    }
    let def = engine
        .catalog
        .create_source(def, batch)
        .map_err(crate::error::user_error)?;
    let progress = start.into_iter().map(|(p, o)| (p, (o, o))).collect();
    start_runtime(engine, def, progress, 0, None)?;
    Ok(())
}

/// Starts every persisted source from its committed progress.
pub fn start_all(engine: &Arc<Engine>) -> anyhow::Result<()> {
    for def in engine.catalog.sources() {
        let snapshot = engine.store.snapshot();
        let progress = read_progress(&snapshot, def.id).map_err(|e| anyhow::anyhow!("{e}"))?;
        let errors = read_errors(&snapshot, def.id)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .len() as u64;
        let halt = positions::read_halt(&snapshot, def.id).map_err(|e| anyhow::anyhow!("{e}"))?;
        start_runtime(engine, def, progress, errors, halt).map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}

/// Starts a source's reader and ingest task; a halted source (`halt`) reads nothing.
fn start_runtime(
    engine: &Arc<Engine>,
    def: Arc<SourceDef>,
    progress: Progress,
    errors: u64,
    halt: Option<String>,
) -> Result<(), PgError> {
    let opts = kafka_options(engine, &def)?;
    let schema = Arc::new(source_schema(&def));
    let positions: BTreeMap<i32, i64> = progress.iter().map(|(&p, &(_, n))| (p, n)).collect();
    let (tx, rx) = mpsc::channel::<SourceBatch>(2);
    let selection = engine.dataflows.selection_read(def.id);
    let shared = SharedDecoder::new(decoder_for(&def, &schema, Some(selection)));
    let reader: Option<Box<dyn SourceReader>> = match halt {
        Some(_) => None,
        None => Some(Box::new(
            Reader::spawn(
                &opts,
                Arc::clone(&shared),
                positions,
                ReaderConfig::default(),
                move |b| tx.blocking_send(b).is_ok(),
            )
            .map_err(|e| PgError::new(SqlState::UNABLE_TO_CONNECT, e.to_string()))?,
        )),
    };
    let snapshot = engine.store.snapshot();
    let gaps = positions::read_gaps(&snapshot, def.id)?.len() as u64;
    let watermarks = watermark::Watermarks::load(&def, &snapshot)?;
    let (committed, _) = watch::channel(progress);
    let rt = Arc::new(SourceRuntime {
        def,
        opts,
        schema,
        reader: Mutex::new(reader),
        decoder: shared,
        committed,
        errors: std::sync::atomic::AtomicU64::new(errors),
        stalled: Mutex::new(None),
        halted: Mutex::new(halt),
        gaps: std::sync::atomic::AtomicU64::new(gaps),
        watermarks: Mutex::new(watermarks),
    });
    engine.sources.write().insert(rt.def.id, Arc::clone(&rt));
    tokio::spawn(ingest(Arc::clone(engine), rt, rx));
    Ok(())
}

/// Commits the reader's batches, one epoch per group of batches that are ready.
async fn ingest(engine: Arc<Engine>, rt: Arc<SourceRuntime>, mut rx: mpsc::Receiver<SourceBatch>) {
    let id = rt.def.id;
    while let Some(first) = clock::next(&engine, &rt, &mut rx).await {
        let mut group = vec![first];
        while group.len() < MAX_BATCHES_PER_EPOCH {
            match rx.try_recv() {
                Ok(b) => group.push(b),
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut w = engine.begin_write().await;
            // Dropped meanwhile: its keys are gone and must stay gone.
            if engine.sources.get(id).is_none_or(|r| !Arc::ptr_eq(&r, &rt)) {
                return;
            }
            // Batches decoded before the views' columns changed: decode them again.
            let (version, current) = rt.decoder.get();
            for b in group.iter_mut().filter(|b| b.version != version) {
                let again = decode_batch(&current, std::mem::take(&mut b.raw));
                (b.batch, b.origins, b.bad, b.raw, b.version) =
                    (again.batch, again.origins, again.bad, again.raw, version);
            }
            let mut progress = rt.progress();
            let mut batch = WriteBatch::default();
            let mut changes = EpochChanges::default();
            let mut bad = 0u64;
            let (mut gaps, mut halt) = (0u64, None);
            let mut rows = Vec::new();
            let mut marks = lock(&rt.watermarks).clone();
            let mut late = Vec::new();
            let now = std::time::Instant::now();
            for b in &group {
                // A partition read "from its beginning" starts where its first message was, so
                // a later re-read can tell when retention has removed messages since.
                for m in &b.raw {
                    let e = progress
                        .entry(m.partition)
                        .or_insert((BEGINNING, BEGINNING));
                    if e.1 == BEGINNING {
                        e.0 = m.offset;
                        e.1 = m.offset;
                    }
                }
                for (&p, &n) in &b.next {
                    let e = progress.entry(p).or_insert((BEGINNING, BEGINNING));
                    e.1 = e.1.max(n);
                }
                for m in &b.bad {
                    batch.put(error_key(id, m.partition, m.offset), error_value(m));
                    bad += 1;
                }
                if !b.problems.is_empty() {
                    let (g, h) = positions::record(id, &b.problems, &mut batch);
                    gaps += g;
                    halt = halt.or(h);
                }
                let mut admitted = b.batch.clone();
                if let Some(m) = marks.as_mut() {
                    let arrived = b.raw.iter().map(|m| m.partition);
                    match m.admit(&mut admitted, &b.origins, arrived, now) {
                        Ok(l) => late.extend(l),
                        Err(e) => tracing::error!(source = %rt.def.name, error = %e, "event time"),
                    }
                }
                if let Some(r) = admitted {
                    rows.push(r);
                }
            }
            for (&p, &(s, n)) in &progress {
                batch.put(progress_key(id, p), progress_value(s, n));
            }
            if let Some(m) = &marks {
                m.stage(id, &late, &mut batch);
                let before = lock(&rt.watermarks).as_ref().and_then(|m| m.current());
                if let Some(w) = m.current().filter(|&w| Some(w) != before) {
                    changes.watermarks.insert(id, w);
                }
            }
            changes.appends.insert(id, rows);
            match engine.commit(&mut w, batch, changes).await {
                Ok(()) => {
                    rt.errors
                        .fetch_add(bad, std::sync::atomic::Ordering::Relaxed);
                    rt.gaps
                        .fetch_add(gaps, std::sync::atomic::Ordering::Relaxed);
                    *lock(&rt.stalled) = None;
                    if marks.is_some() {
                        *lock(&rt.watermarks) = marks;
                    }
                    rt.committed.send_replace(progress);
                    if let Some(h) = halt {
                        tracing::error!(source = %rt.def.name, reason = %h, "source halted");
                        *lock(&rt.halted) = Some(h);
                        // The reader stopped itself after reporting the reset.
                        drop(lock(&rt.reader).take());
                    }
                    break;
                }
                Err(e) => {
                    // A view cannot take these rows (e.g. division by zero in its query):
                    // nothing commits; retry so the status shows it until the view is fixed
                    // or dropped.
                    let msg = freshet_sql::error::map_df_error(&e).to_string();
                    if lock(&rt.stalled).is_none() {
                        tracing::error!(source = %rt.def.name, error = %msg, "epoch failed");
                    }
                    *lock(&rt.stalled) = Some(msg);
                    drop(w);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// `FLUSH` for sources: waits until each has committed every message that was in its topic
/// when FLUSH started. A source whose broker cannot be reached is skipped (its status says so).
pub async fn flush(engine: &Engine) -> Result<(), PgError> {
    for rt in engine.sources.all() {
        let marks = {
            let rt = Arc::clone(&rt);
            tokio::task::spawn_blocking(move || {
                lock(&rt.reader)
                    .as_ref()
                    .map(|r| r.log_bounds(Duration::from_secs(5)))
            })
            .await
            .map_err(internal)?
        };
        let marks = match marks {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::warn!(source = %rt.def.name, error = %e, "FLUSH skips an unreachable source");
                continue;
            }
            None => continue,
        };
        let mut rx = rt.committed.subscribe();
        let done = |p: &Progress| {
            marks.iter().all(|(part, &(low, high))| {
                let next = p.get(part).map_or(BEGINNING, |&(_, n)| n);
                high <= low || next >= high
            })
        };
        let deadline = tokio::time::Instant::now() + FLUSH_TIMEOUT;
        loop {
            let step = tokio::time::timeout(Duration::from_secs(1), rx.wait_for(&done)).await;
            match step {
                Ok(_) => break, // caught up, or dropped meanwhile
                Err(_) => {
                    if let Some(e) = lock(&rt.stalled).clone() {
                        return Err(PgError::new(
                            SqlState::QUERY_CANCELED,
                            format!("FLUSH: source \"{}\" is stalled: {e}", rt.def.name),
                        ));
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(PgError::new(
                            SqlState::QUERY_CANCELED,
                            format!(
                                "FLUSH timed out waiting for source \"{}\" to catch up",
                                rt.def.name
                            ),
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// Re-reads what `id` has committed as of `snapshot`: every message it accepted, in each
/// partition's [start, next), decoding what `selection` reads (all when `None`).
pub async fn replay_committed(
    engine: &Engine,
    snapshot: &Snapshot,
    id: TableId,
    selection: Option<Selection>,
) -> Result<Vec<RecordBatch>, PgError> {
    let rt = engine
        .sources
        .get(id)
        .ok_or_else(|| internal(format!("source {id} is not running")))?;
    let ranges = read_progress(snapshot, id)?;
    let skip: std::collections::HashSet<(i32, i64)> = read_errors(snapshot, id)?
        .into_iter()
        .map(|(p, o, _, _)| (p, o))
        .collect();
    let late: HashMap<(i32, i64), i64> = watermark::read_late(snapshot, id)?
        .into_iter()
        .map(|(p, o, _, w)| ((p, o), w))
        .collect();
    let dec = decoder_for(&rt.def, &rt.schema, selection);
    let opts = rt.opts.clone();
    let read = tokio::task::spawn_blocking(move || replay(&opts, &dec, &ranges, &skip, REPLAY_TIMEOUT))
        .await
        .map_err(internal)?
        .map_err(|e| {
            let state = match e {
                freshet_connector_kafka::Error::Gone(_) => {
                    SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE
                }
                _ => SqlState::UNABLE_TO_CONNECT,
            };
            PgError::new(state, format!("re-reading source \"{}\": {e}", rt.def.name))
        })?;
    let mut out = Vec::with_capacity(read.len());
    for (b, origins) in read {
        out.extend(watermark::drop_late(&rt.def, &late, b, &origins)?);
    }
    Ok(out)
}

/// Forgets dropped sources (the catalog already deleted their keys): their ingest tasks stop
/// at their next batch. Call under the writer lock, then [`stop`] the result after releasing
/// it (a reader may be waiting for its ingest task, which may be waiting for the lock).
pub fn detach(engine: &Engine, ids: &[TableId]) -> Vec<Arc<SourceRuntime>> {
    let mut running = engine.sources.write();
    ids.iter().filter_map(|id| running.remove(id)).collect()
}

/// Stops the readers of detached sources.
pub async fn stop(detached: Vec<Arc<SourceRuntime>>) {
    for rt in detached {
        let reader = lock(&rt.reader).take();
        if let Some(r) = reader {
            let _ = tokio::task::spawn_blocking(move || r.stop()).await;
        }
    }
}

/// Columns of `SHOW SOURCES`.
pub const SHOW_COLUMNS: &[&str] = &[
    "name",
    "topic",
    "partitions",
    "offsets",
    "lag",
    "errors",
    "status",
    "gaps",
];

/// `SHOW SOURCES`: one summary row per source.
pub fn show(engine: &Engine) -> (&'static [&'static str], Vec<Vec<Option<String>>>) {
    let rows = engine
        .sources
        .all()
        .iter()
        .map(|rt| {
            let progress = rt.progress();
            let (status, marks) = rt.status();
            let consumed: i64 = progress.values().map(|&(_, n)| n.max(0)).sum();
            let lag = positions::lag(&progress, &marks);
            vec![
                Some(rt.def.name.clone()),
                Some(rt.opts.topic.clone()),
                Some(progress.len().max(marks.len()).to_string()),
                Some(consumed.to_string()),
                lag.map(|l| l.to_string()),
                Some(rt.error_count().to_string()),
                Some(status),
                Some(rt.gap_count().to_string()),
            ]
        })
        .collect();
    (SHOW_COLUMNS, rows)
}
