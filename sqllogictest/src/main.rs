//! Runs `.slt` files against the real `freshet` binary over TCP, in the simple and the
//! extended query protocol, each mode against a fresh server with its own data directory.
//!
//! Prints `N passed, M failed` and exits non-zero when any file fails.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Parser;
use sqllogictest::Runner;
use sqllogictest_engines::postgres::{PostgresConfig, PostgresExtended, PostgresSimple};

#[derive(Debug, Parser)]
#[command(about = "run sqllogictest files against the freshet binary")]
struct Opts {
    /// The freshet binary to start.
    #[arg(long, env = "FRESHET_BIN")]
    freshet_bin: PathBuf,
    /// Protocol modes to run: simple, extended or both.
    #[arg(long, default_value = "both")]
    mode: String,
    /// .slt files or directories holding them.
    #[arg(default_value = "sqllogictest")]
    paths: Vec<PathBuf>,
}

/// A freshet server started for one mode; killed on drop.
struct ServerProcess(freshet_testkit::Server);

impl ServerProcess {
    fn start(bin: &Path) -> anyhow::Result<Self> {
        freshet_testkit::Launch::new(bin)
            .env("RUST_LOG", "warn")
            .start()
            .map(Self)
    }

    fn config(&self) -> PostgresConfig {
        let mut c = PostgresConfig::new();
        c.host("127.0.0.1")
            .port(self.0.port())
            .user("slt")
            .dbname("freshet");
        c
    }
}

fn collect(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            entries.sort();
            out.extend(collect(&entries));
        } else if p.extension().is_some_and(|e| e == "slt") {
            out.push(p.clone());
        }
    }
    out
}

async fn run_file(mode: &str, config: PostgresConfig, file: &Path) -> anyhow::Result<()> {
    match mode {
        "simple" => {
            let mut runner = Runner::new(move || {
                let c = config.clone();
                async move { PostgresSimple::connect(c).await }
            });
            runner.run_file_async(file).await?;
        }
        _ => {
            let mut runner = Runner::new(move || {
                let c = config.clone();
                async move { PostgresExtended::connect(c).await }
            });
            runner.run_file_async(file).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let files = collect(&opts.paths);
    if files.is_empty() {
        bail!("no .slt files found");
    }
    let modes: Vec<&str> = match opts.mode.as_str() {
        "both" => vec!["simple", "extended"],
        m => vec![m],
    };
    let (mut passed, mut failed) = (0, 0);
    for mode in modes {
        let server = ServerProcess::start(&opts.freshet_bin)?;
        for file in &files {
            match run_file(mode, server.config(), file).await {
                Ok(()) => {
                    passed += 1;
                    println!("ok     [{mode}] {}", file.display());
                }
                Err(e) => {
                    failed += 1;
                    println!("FAILED [{mode}] {}\n{e:#}", file.display());
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}
