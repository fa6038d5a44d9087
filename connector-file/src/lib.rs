//! freshet-connector-file: the Parquet file sink, exactly once by two phases
//! ([`freshet_connector::Protocol::TwoPhase`]). A file holds the changes of epochs
//! `first..=last` and is written under a hidden temporary name
//! (`.part-<first>-<last>.parquet.tmp`, by way of `.partial` while it is being written) and
//! synced (write); the sink's progress (`last`)
//! commits in RocksDB (the server's part); then the file is renamed to
//! `part-<first>-<last>.parquet` and the directory synced (finish). At start, a temporary file
//! at or below the committed progress is finished, one above it is deleted: after a crash at
//! any moment no partial file is visible and no epoch is in two files.
//!
//! With `partition_by`, one write makes a file per distinct value of the partition columns,
//! under Hive-style directories ([`layout`]); the two phases cover all of them together.

pub mod layout;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::parquet::arrow::ArrowWriter;
use freshet_common::{FileSinkConfig, PgError, SinkMode, SqlState};
use freshet_connector::{arrivals, Changes, Pending, Prepared, Protocol, SinkWriter};

pub use layout::{output_schema, Layout};

/// Writes a view's changes as Parquet files under `cfg.path`.
pub struct FileWriter {
    cfg: FileSinkConfig,
    dir: PathBuf,
    layout: Layout,
}

impl FileWriter {
    /// A writer of `cfg`'s files for a view of `view`'s columns; refuses partition columns
    /// the view lacks, names twice, or cannot name a directory by.
    pub fn new(view: &SchemaRef, cfg: &FileSinkConfig) -> Result<FileWriter, PgError> {
        Ok(FileWriter {
            layout: Layout::new(view, cfg)?,
            dir: PathBuf::from(&cfg.path),
            cfg: cfg.clone(),
        })
    }

    fn io_error(&self, e: &dyn std::fmt::Display) -> PgError {
        PgError::new(
            SqlState::IO_ERROR,
            format!("sink directory \"{}\": {e}", self.dir.display()),
        )
    }
}

impl SinkWriter for FileWriter {
    fn protocol(&self) -> Protocol {
        Protocol::TwoPhase
    }

    fn due(&self, p: &Pending) -> bool {
        p.rows >= self.cfg.rollover_rows
            || self.cfg.rollover_bytes.is_some_and(|b| p.bytes >= b)
            || p.since
                .is_some_and(|t| t.elapsed() >= Duration::from_millis(self.cfg.rollover_ms))
    }

    fn max_wait(&self) -> Option<Duration> {
        Some(Duration::from_millis(self.cfg.rollover_ms))
    }

    /// Writes and syncs the temporary files of the changes' epochs (one per partition).
    fn write(&self, changes: &Changes, _stop: &dyn Fn() -> bool) -> Result<Prepared, PgError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| self.io_error(&e))?;
        let batch = file_rows(&self.layout, changes).map_err(|e| self.io_error(&e))?;
        if batch.num_rows() == 0 {
            return Ok(Prepared::default());
        }
        let mut prepared = Prepared {
            rows: batch.num_rows() as u64,
            parts: Vec::new(),
        };
        let split = self.layout.split(&batch).map_err(|e| self.io_error(&e))?;
        for (sub, part) in split {
            match write_part(&self.dir.join(sub), &self.layout, changes, &part) {
                Ok(tmp) => prepared.parts.push(tmp),
                Err(e) => {
                    // A retry may cover more epochs: no temporary file of this range may
                    // outlive the failure (recovery would finish it beside the retry's).
                    self.discard(&prepared);
                    return Err(self.io_error(&e));
                }
            }
        }
        Ok(prepared)
    }

    /// Gives committed temporary files their final names, durably.
    fn finish(&self, prepared: &Prepared) -> Result<(), PgError> {
        for tmp in &prepared.parts {
            finish_file(&self.dir, tmp).map_err(|e| self.io_error(&e))?;
        }
        Ok(())
    }

    fn discard(&self, prepared: &Prepared) {
        for tmp in &prepared.parts {
            let _ = std::fs::remove_file(tmp);
        }
    }

    /// Finishes the temporary files the committed progress covers, deletes the others
    /// (prepared, never committed) — in the directory and its partition directories.
    fn recover(&self, committed: u64) -> Result<(), PgError> {
        recover_in(&self.dir, &self.dir, committed).map_err(|e| self.io_error(&e))
    }
}

/// Writes and syncs one temporary file in `dir`; returns its path. The file is written
/// under a name of its own and renamed to the temporary name once synced: a retry of the
/// same range replaces the temporary file whole, never truncates one the committed progress
/// may already cover.
fn write_part(
    dir: &Path,
    layout: &Layout,
    changes: &Changes,
    part: &RecordBatch,
) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = file_name(changes.first, changes.last);
    let partial = dir.join(format!(".{name}.partial"));
    let file = std::fs::File::create(&partial)?;
    let mut writer = ArrowWriter::try_new(file, Arc::clone(&layout.data), None)
        .map_err(std::io::Error::other)?;
    writer.write(part).map_err(std::io::Error::other)?;
    writer
        .into_inner()
        .map_err(std::io::Error::other)?
        .sync_all()?;
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::rename(&partial, &tmp)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(tmp)
}

/// The rows the files hold for `changes`, in the layout's columns: every change with its
/// epoch and diff (changelog), or each arrival as many times as it arrived (append-only
/// views never retract; forced sinks drop retractions).
fn file_rows(layout: &Layout, changes: &Changes) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let columns: Vec<ArrayRef> = match layout.mode {
        SinkMode::Changelog => {
            let epochs: Int64Array = changes.epochs.iter().map(|&e| e as i64).collect();
            let diffs = Int64Array::from(changes.diffs.clone());
            let mut c: Vec<ArrayRef> = vec![Arc::new(epochs), Arc::new(diffs)];
            c.extend(changes.rows.columns().iter().cloned());
            c
        }
        SinkMode::AppendOnly | SinkMode::ForceAppendOnly => {
            arrivals(&changes.rows, &changes.diffs)?.columns().to_vec()
        }
    };
    let rows = columns.first().map_or(0, |c| c.len());
    RecordBatch::try_new_with_options(
        Arc::clone(&layout.schema),
        columns,
        &datafusion::arrow::array::RecordBatchOptions::new().with_row_count(Some(rows)),
    )
}

/// The final name of the file of epochs `first..=last`.
fn file_name(first: u64, last: u64) -> String {
    format!("part-{first:020}-{last:020}.parquet")
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
        if name.starts_with(".part-") && name.ends_with(".parquet.partial") {
            std::fs::remove_file(&path)?;
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
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn view() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    /// An append-only writer into `dir`, partitioned by `partition_by`.
    fn writer(dir: &Path, partition_by: Vec<String>) -> FileWriter {
        let cfg = FileSinkConfig {
            path: dir.to_string_lossy().into_owned(),
            mode: SinkMode::AppendOnly,
            rollover_rows: 1000,
            rollover_ms: 1000,
            rollover_bytes: None,
            partition_by,
        };
        FileWriter::new(&view(), &cfg).unwrap()
    }

    fn rows(ids: Vec<i64>, names: Vec<&str>) -> RecordBatch {
        RecordBatch::try_new(
            view(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .unwrap()
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn files_appear_only_when_finished_and_recovery_settles_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path(), vec![]);
        let rows = rows(vec![1, 2, 3], vec!["a", "b", "c"]);
        let changes = |first, last| Changes {
            first,
            last,
            rows: rows.clone(),
            epochs: vec![first, first, last],
            // Row 2 arrives twice; row 3 is a retraction a forced sink would drop.
            diffs: vec![1, 2, -1],
        };
        let p = w.write(&changes(1, 2), &|| false).unwrap();
        assert_eq!(p.rows, 3);
        assert_eq!(files(dir.path()), vec![".part-00000000000000000001-00000000000000000002.parquet.tmp"]);
        w.finish(&p).unwrap();
        let name = "part-00000000000000000001-00000000000000000002.parquet";
        assert_eq!(files(dir.path()), vec![name]);
        let file = std::fs::File::open(dir.path().join(name)).unwrap();
        let read: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let ids: Vec<i64> = read[0]
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .values()
            .to_vec();
        assert_eq!(ids, vec![1, 2, 2]);
        // A crash after two writes, with the progress committed through the first of them.
        let a = w.write(&changes(3, 4), &|| false).unwrap();
        let b = w.write(&changes(5, 6), &|| false).unwrap();
        assert_eq!((a.parts.len(), b.parts.len()), (1, 1));
        // A retry of the first range replaces its temporary file; a write cut short by the
        // crash left a partial file.
        assert_eq!(w.write(&changes(3, 4), &|| false).unwrap().parts, a.parts);
        let partial = ".part-00000000000000000007-00000000000000000008.parquet.partial";
        std::fs::write(dir.path().join(partial), b"half").unwrap();
        w.recover(4).unwrap();
        assert_eq!(
            files(dir.path()),
            vec![
                name.to_owned(),
                "part-00000000000000000003-00000000000000000004.parquet".to_owned()
            ]
        );
    }

    #[test]
    fn a_write_that_fails_part_way_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path(), vec!["name".into()]);
        // Partition "b" cannot be a directory: a file has its name.
        std::fs::write(dir.path().join("name=b"), b"").unwrap();
        let rows = rows(vec![1, 2], vec!["a", "b"]);
        let changes = Changes {
            first: 1,
            last: 1,
            rows,
            epochs: vec![1, 1],
            diffs: vec![1, 1],
        };
        assert!(w.write(&changes, &|| false).is_err());
        assert_eq!(files(&dir.path().join("name=a")), Vec::<String>::new());
    }
}
