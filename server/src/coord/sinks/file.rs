//! The Parquet file sink: exactly once by two phases. A file holds the changes of epochs
//! `first..=last` and is written under a hidden temporary name (`.part-<first>-<last>.parquet.tmp`)
//! and synced (prepare); the sink's progress (`last`) commits in RocksDB (commit); then the file
//! is renamed to `part-<first>-<last>.parquet` and the directory synced (finish). At start, a
//! temporary file at or below the committed progress is finished, one above it is deleted: after
//! a crash at any moment no partial file is visible and no epoch is in two files.
//!
//! With `partition_by`, one commit writes a file per distinct value of the partition columns,
//! under Hive-style directories (`col=value/…/part-<first>-<last>.parquet`, as Spark's
//! `partitionBy` writes them and pyarrow, DuckDB and Spark read them back); the two phases
//! cover all of them together.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{RecordBatch, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::parquet::arrow::ArrowWriter;
use freshet_common::{Datum, FileSinkConfig, PgError, SinkMode, SqlState};
use freshet_state::WriteBatch;
use tokio::sync::watch;

use super::{gather, io_error, progress_key, record_progress, wait_to_retry, SinkRuntime};
use crate::coord::subscriptions::EpochRows;
use crate::coord::engine::Engine;

/// A sink's loop: gathers committed epochs' changes from the changelog; writes a file once
/// enough rows or time gathered; retries with backoff while the destination fails.
pub(super) async fn run(
    engine: Arc<Engine>,
    rt: Arc<SinkRuntime>,
    cfg: FileSinkConfig,
    mut stopped: watch::Receiver<bool>,
) {
    let Some(view) = engine.dataflows.get(rt.def.from) else {
        rt.set_status("failed: its view is not running");
        return;
    };
    let layout = match Layout::new(&view.schema, &cfg) {
        Ok(l) => Arc::new(l),
        Err(e) => {
            rt.set_status(format!("failed: {e}"));
            return;
        }
    };
    let mut latest = engine.subscriptions.watch_latest();
    let mut pending: Vec<Arc<EpochRows>> = Vec::new();
    let mut pending_rows = 0u64;
    let mut pending_bytes = 0u64;
    let mut read_through = rt.committed.load(Ordering::SeqCst);
    let mut first_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        if *stopped.borrow() {
            return;
        }
        // Gather what committed since.
        for e in gather(&engine, &rt, &mut latest, &mut read_through) {
            pending_rows += e.rows.len() as u64;
            pending_bytes += e.rows.iter().map(|(r, _)| row_bytes(r)).sum::<u64>();
            pending.push(e);
        }
        if pending_rows > 0 && first_at.is_none() {
            first_at = Some(Instant::now());
        }
        if pending.is_empty() && read_through > rt.committed.load(Ordering::SeqCst) {
            // Epochs that did not change the view: nothing to write, progress to record
            // (unsynced: losing it only means reading them again).
            let _ = record_progress(&engine, &rt, read_through);
        }
        let due = pending_rows >= cfg.rollover_rows
            || cfg.rollover_bytes.is_some_and(|b| pending_bytes >= b)
            || first_at.is_some_and(|t| t.elapsed() >= Duration::from_millis(cfg.rollover_ms));
        if due {
            let first = rt.committed.load(Ordering::SeqCst) + 1;
            match commit_file(&engine, &rt, &cfg, &layout, first, read_through, &pending).await {
                Ok((rows, files)) => {
                    rt.rows.fetch_add(rows, Ordering::Relaxed);
                    rt.files.fetch_add(files, Ordering::Relaxed);
                    pending.clear();
                    pending_rows = 0;
                    pending_bytes = 0;
                    first_at = None;
                    backoff = Duration::from_millis(100);
                    rt.set_status("running");
                }
                Err(e) => {
                    if !wait_to_retry(&rt, &e, &mut backoff, &mut stopped).await {
                        return;
                    }
                    continue;
                }
            }
        }
        // Wait for the next epoch, the rollover deadline, or the end.
        let deadline = first_at.map(|t| t + Duration::from_millis(cfg.rollover_ms));
        tokio::select! {
            r = latest.changed() => if r.is_err() { return },
            _ = stopped.changed() => return,
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d.into()).await,
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
}

/// Writes, commits and finishes the files of epochs `first..=last`: (rows, files).
async fn commit_file(
    engine: &Arc<Engine>,
    rt: &Arc<SinkRuntime>,
    cfg: &FileSinkConfig,
    layout: &Arc<Layout>,
    first: u64,
    last: u64,
    changes: &[Arc<EpochRows>],
) -> Result<(u64, u64), PgError> {
    let dir = PathBuf::from(&cfg.path);
    let (layout2, changes2, dir2) = (Arc::clone(layout), changes.to_vec(), dir.clone());
    let prepared = tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir2)?;
        prepare(&dir2, &layout2, first, last, &changes2)
    })
    .await
    .map_err(|e| PgError::new(SqlState::INTERNAL_ERROR, e.to_string()))?
    .map_err(|e| io_error(&dir, &e))?;
    // Commit: the progress, durably.
    let mut batch = WriteBatch::default();
    batch.put(progress_key(rt.def.id), last.to_be_bytes());
    let store = engine.store.clone();
    tokio::task::spawn_blocking(move || {
        store.write_unsynced(batch)?;
        store.sync_wal()
    })
    .await
    .map_err(|e| PgError::new(SqlState::INTERNAL_ERROR, e.to_string()))?
    .map_err(|e| PgError::new(SqlState::IO_ERROR, format!("committing sink progress: {e}")))?;
    rt.committed.store(last, Ordering::SeqCst);
    engine
        .changelogs
        .pin(&engine.dataflows, rt.def.from, rt.def.id, last, 0);
    let Some(prepared) = prepared else {
        return Ok((0, 0));
    };
    let counts = (prepared.rows, prepared.files.len() as u64);
    let dir2 = dir.clone();
    tokio::task::spawn_blocking(move || finish(&dir2, &prepared))
        .await
        .map_err(|e| PgError::new(SqlState::INTERNAL_ERROR, e.to_string()))?
        .map_err(|e| io_error(&dir, &e))?;
    Ok(counts)
}

/// How a sink's rows go into files: the columns it writes, and which of them name the
/// directories (`partition_by`) instead of being written inside the files.
pub(in crate::coord) struct Layout {
    mode: SinkMode,
    /// Every output column (a changelog's two columns first).
    schema: SchemaRef,
    /// Positions in `schema` of the partition columns, in `partition_by`'s order.
    partition: Vec<usize>,
    /// The columns inside each file: `schema` without the partition columns.
    data: SchemaRef,
}

impl Layout {
    /// The layout of `cfg`'s files for a view of `view`'s columns; refuses partition columns
    /// the view lacks, names twice, or cannot name a directory by.
    pub(in crate::coord) fn new(view: &SchemaRef, cfg: &FileSinkConfig) -> Result<Layout, PgError> {
        let schema = output_schema(view, cfg.mode);
        let offset = schema.fields().len() - view.fields().len();
        let mut partition = Vec::new();
        for name in &cfg.partition_by {
            let at = view
                .fields()
                .iter()
                .position(|f| f.name() == name)
                .or_else(|| {
                    let lower = name.to_lowercase();
                    view.fields().iter().position(|f| *f.name() == lower)
                })
                .ok_or_else(|| {
                    PgError::new(
                        SqlState::UNDEFINED_COLUMN,
                        format!("column \"{name}\" named in partition_by is not a column of the sink's view"),
                    )
                })?;
            let field = view.field(at);
            if !partition_type(field.data_type()) {
                return Err(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!(
                        "partition_by column \"{name}\" is of a type whose values cannot name directories"
                    ),
                ));
            }
            if partition.contains(&(offset + at)) {
                return Err(PgError::new(
                    SqlState::INVALID_PARAMETER_VALUE,
                    format!("partition_by names column \"{name}\" twice"),
                ));
            }
            partition.push(offset + at);
        }
        if !partition.is_empty() && partition.len() == view.fields().len() {
            return Err(PgError::new(
                SqlState::INVALID_PARAMETER_VALUE,
                "partition_by cannot name every column of the view: the files would hold none",
            ));
        }
        let data = Arc::new(Schema::new(
            schema
                .fields()
                .iter()
                .enumerate()
                .filter(|(i, _)| !partition.contains(i))
                .map(|(_, f)| f.as_ref().clone())
                .collect::<Vec<_>>(),
        ));
        Ok(Layout {
            mode: cfg.mode,
            schema,
            partition,
            data,
        })
    }

    /// `batch` (of every output column) split by the partition columns' values: each part's
    /// directory (relative, empty without partitions) and its rows' data columns.
    fn split(&self, batch: &RecordBatch) -> std::io::Result<Vec<(PathBuf, RecordBatch)>> {
        if self.partition.is_empty() {
            return Ok(vec![(PathBuf::new(), batch.clone())]);
        }
        let options = FormatOptions::default();
        let formatters = self
            .partition
            .iter()
            .map(|&i| ArrayFormatter::try_new(batch.column(i).as_ref(), &options))
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        // Column names escaped once; per row, its directory built in one reused buffer (a
        // map entry is allocated per partition, not per row).
        let names: Vec<String> = self
            .partition
            .iter()
            .map(|&i| hive_escape(self.schema.field(i).name()))
            .collect();
        let mut parts: std::collections::BTreeMap<String, Vec<u32>> = Default::default();
        let (mut dir, mut value) = (String::new(), String::new());
        for row in 0..batch.num_rows() {
            dir.clear();
            for ((f, &i), name) in formatters.iter().zip(&self.partition).zip(&names) {
                value.clear();
                if !batch.column(i).is_null(row) {
                    use std::fmt::Write;
                    let _ = write!(value, "{}", f.value(row));
                }
                if !dir.is_empty() {
                    dir.push('/');
                }
                dir.push_str(name);
                dir.push('=');
                dir.push_str(&partition_value(&value));
            }
            match parts.get_mut(&dir) {
                Some(rows) => rows.push(row as u32),
                None => {
                    parts.insert(dir.clone(), vec![row as u32]);
                }
            }
        }
        let data_columns: Vec<usize> = (0..self.schema.fields().len())
            .filter(|i| !self.partition.contains(i))
            .collect();
        parts
            .into_iter()
            .map(|(dir, rows)| {
                let indices = UInt32Array::from(rows);
                let columns = data_columns
                    .iter()
                    .map(|&c| take(batch.column(c).as_ref(), &indices, None))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(std::io::Error::other)?;
                let part = RecordBatch::try_new(Arc::clone(&self.data), columns)
                    .map_err(std::io::Error::other)?;
                Ok((PathBuf::from(dir), part))
            })
            .collect()
    }
}

/// Types whose values name a directory readably (Hive's partition column types).
fn partition_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Date32
            | DataType::Timestamp(_, _)
            | DataType::Decimal128(_, _)
    )
}

/// A partition value as a directory name: Hive's escaping; NULL and the empty string are
/// Hive's default partition.
fn partition_value(v: &str) -> String {
    if v.is_empty() {
        "__HIVE_DEFAULT_PARTITION__".into()
    } else {
        hive_escape(v)
    }
}

/// Hive's `escapePathName`: control characters and `"#%'*/:=?\{[]^` and DEL as `%XX`.
fn hive_escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c.is_ascii_control() || "\"#%'*/:=?\\{[]^".contains(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// About what a row takes in memory, uncompressed (for `rollover_bytes`).
fn row_bytes(row: &[Datum]) -> u64 {
    fn datum(d: &Datum) -> u64 {
        match d {
            Datum::Null => 1,
            Datum::Text(s) => 4 + s.len() as u64,
            Datum::Bytes(b) => 4 + b.len() as u64,
            Datum::Decimal(_) | Datum::Interval { .. } => 16,
            Datum::List(l) => 4 + l.iter().map(datum).sum::<u64>(),
            _ => 8,
        }
    }
    row.iter().map(datum).sum()
}

/// The columns a sink writes.
pub(super) fn output_schema(view: &SchemaRef, mode: SinkMode) -> SchemaRef {
    match mode {
        SinkMode::Changelog => {
            let mut fields = vec![
                Field::new("freshet_epoch", DataType::Int64, false),
                Field::new("freshet_diff", DataType::Int64, false),
            ];
            fields.extend(view.fields().iter().map(|f| f.as_ref().clone()));
            Arc::new(Schema::new(fields))
        }
        _ => Arc::clone(view),
    }
}

/// The rows a file holds for `changes`.
fn file_rows(mode: SinkMode, changes: &[Arc<EpochRows>]) -> Vec<Vec<Datum>> {
    let mut out = Vec::new();
    for e in changes {
        for (row, w) in &e.rows {
            match mode {
                SinkMode::Changelog => {
                    let mut r = vec![Datum::Int64(e.epoch as i64), Datum::Int64(*w)];
                    r.extend(row.iter().cloned());
                    out.push(r);
                }
                // Append-only views never retract; forced sinks drop retractions.
                SinkMode::AppendOnly | SinkMode::ForceAppendOnly => {
                    for _ in 0..(*w).max(0) {
                        out.push(row.clone());
                    }
                }
            }
        }
    }
    out
}

/// The final name of the file of epochs `first..=last`.
fn file_name(first: u64, last: u64) -> String {
    format!("part-{first:020}-{last:020}.parquet")
}

/// Temporary files written and synced for epochs `first..=last` (phase one).
pub(in crate::coord) struct Prepared {
    pub files: Vec<PathBuf>,
    pub rows: u64,
}

/// Prepare: writes and syncs the temporary files of epochs `first..=last` (one per partition);
/// `None` when they hold no rows.
pub(in crate::coord) fn prepare(
    dir: &Path,
    layout: &Layout,
    first: u64,
    last: u64,
    changes: &[Arc<EpochRows>],
) -> std::io::Result<Option<Prepared>> {
    let rows = file_rows(layout.mode, changes);
    if rows.is_empty() {
        return Ok(None);
    }
    let columns: Vec<usize> = (0..layout.schema.fields().len()).collect();
    let batch: RecordBatch =
        freshet_sql::df_convert::rows_to_batch(&rows, &layout.schema, &columns)
            .map_err(std::io::Error::other)?;
    let mut files = Vec::new();
    for (sub, part) in layout.split(&batch)? {
        let at = dir.join(sub);
        std::fs::create_dir_all(&at)?;
        let tmp = at.join(format!(".{}.tmp", file_name(first, last)));
        let file = std::fs::File::create(&tmp)?;
        let mut writer = ArrowWriter::try_new(file, Arc::clone(&layout.data), None)
            .map_err(std::io::Error::other)?;
        writer.write(&part).map_err(std::io::Error::other)?;
        writer
            .into_inner()
            .map_err(std::io::Error::other)?
            .sync_all()?;
        files.push(tmp);
    }
    Ok(Some(Prepared {
        files,
        rows: rows.len() as u64,
    }))
}

/// Finish: gives committed temporary files their final names, durably (phase three).
pub(in crate::coord) fn finish(root: &Path, prepared: &Prepared) -> std::io::Result<()> {
    for tmp in &prepared.files {
        finish_file(root, tmp)?;
    }
    Ok(())
}

/// Renames one committed temporary file and syncs its directory and those above it up to
/// `root` (a partition directory may be new).
fn finish_file(root: &Path, tmp: &Path) -> std::io::Result<()> {
    let name = tmp
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix('.'))
        .and_then(|n| n.strip_suffix(".tmp"))
        .ok_or_else(|| std::io::Error::other(format!("not a sink file: {}", tmp.display())))?;
    let mut dir = tmp.parent().unwrap_or(Path::new("."));
    std::fs::rename(tmp, dir.join(name))?;
    loop {
        std::fs::File::open(dir)?.sync_all()?;
        if dir == root {
            return Ok(());
        }
        match dir.parent() {
            Some(up) if up.starts_with(root) => dir = up,
            _ => return Ok(()),
        }
    }
}

/// After a restart: finishes the temporary files the committed progress covers, deletes the
/// others (prepared, never committed) — in `root` and its partition directories.
pub(super) fn recover(root: &Path, committed: u64) -> std::io::Result<()> {
    recover_in(root, root, committed)
}

fn recover_in(root: &Path, dir: &Path, committed: u64) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if entry.file_type()?.is_dir() {
            // Partition directories are `col=value`.
            if name.contains('=') && !name.starts_with('.') {
                recover_in(root, &path, committed)?;
            }
            continue;
        }
        let Some(range) = name
            .strip_prefix(".part-")
            .and_then(|n| n.strip_suffix(".parquet.tmp"))
        else {
            continue;
        };
        let last = range
            .split_once('-')
            .and_then(|(_, l)| l.parse::<u64>().ok());
        match last {
            Some(last) if last <= committed => finish_file(root, &path)?,
            _ => std::fs::remove_file(&path)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_directories_escape_as_hive_does() {
        assert_eq!(partition_value("fr"), "fr");
        assert_eq!(partition_value(""), "__HIVE_DEFAULT_PARTITION__");
        assert_eq!(partition_value("a/b=c"), "a%2Fb%3Dc");
        assert_eq!(
            partition_value("2026-12-03 10:00:00"),
            "2026-12-03 10%3A00%3A00"
        );
        assert_eq!(partition_value("x\ny%"), "x%0Ay%25");
        assert_eq!(partition_value("é"), "é");
    }
}
