//! The `freshet` binary.

use clap::Parser;
use freshet_server::config::ServerOpts;
use freshet_server::server::Server;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// mimalloc: view maintenance allocates many small, short-lived buffers per row, where
/// glibc's malloc spent ~15% of the CPU (consolidating free chunks). Large blocks are charged
/// to the statement that allocates them (`freshet_server::alloc`).
#[global_allocator]
static GLOBAL: freshet_server::alloc::Tracking<mimalloc::MiMalloc> =
    freshet_server::alloc::Tracking(mimalloc::MiMalloc);

fn main() -> anyhow::Result<()> {
    no_transparent_huge_pages();
    let opts = ServerOpts::parse();
    freshet_server::alloc::install_tracer();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Statements are planned and run, and views lowered, on these threads: their stacks are
    // sized for the deepest statement the parser lets through (`freshet_sql::limits`).
    let stack = freshet_sql::limits::STATEMENT_STACK_BYTES;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("freshet")
        .thread_stack_size(stack)
        .build()?;
    // Startup (rebuilding views) and the accept loop run on a thread of the same size.
    std::thread::Builder::new()
        .name("freshet-main".into())
        .stack_size(stack)
        .spawn(move || runtime.block_on(run(opts)))?
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// Turns transparent huge pages off for this process: memory the allocator gives back and
/// takes again was faulted in as 2 MiB pages, each zeroed whole however little of it was
/// used — 8 % of the server's CPU in kernel page clearing when Kafka batches are decoded
/// (Nexmark q7, 1M events; 0.2 % without). RocksDB's guidance is the same.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl with PR_SET_THP_DISABLE reads only its integer arguments.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

async fn run(opts: ServerOpts) -> anyhow::Result<()> {
    let server = Server::open(&opts).await?;
    let listener = TcpListener::bind(opts.listen).await?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data_dir = %opts.data_dir.display(), "listening; connect with: psql -h {} -p {} freshet", addr.ip(), addr.port());
    if let Some(path) = &opts.port_file {
        std::fs::write(path, addr.port().to_string())?;
    }
    server.serve(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
