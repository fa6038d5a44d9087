//! What the kernel says about a process: CPU time, resident memory; and a directory's size.

use std::path::Path;

/// User + system CPU seconds the process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name (which may contain spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks: f64 = fields
        .get(11)
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
    Ok(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc_sysconf(2) }; // _SC_CLK_TCK
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

extern "C" {
    #[link_name = "sysconf"]
    fn libc_sysconf(name: i32) -> i64;
}

/// (current, peak) resident set size of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

/// Total size of the files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The files under `dir` by kind, in bytes: RocksDB's table files (`.sst`), write-ahead logs
/// (`.log`), its info logs (`LOG*`) and everything else.
pub fn dir_kinds(dir: &Path) -> [(&'static str, u64); 4] {
    let mut kinds = [("table files", 0), ("WAL", 0), ("info logs", 0), ("other", 0)];
    let mut walk = vec![dir.to_path_buf()];
    while let Some(d) = walk.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                walk.push(e.path());
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            let k = if name.ends_with(".sst") {
                0
            } else if name.ends_with(".log") {
                1
            } else if name.starts_with("LOG") {
                2
            } else {
                3
            };
            kinds[k].1 += m.len();
        }
    }
    kinds
}
