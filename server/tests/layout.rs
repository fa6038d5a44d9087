//! Honest layouts, against the real binary: a data directory of another store format version,
//! and a view whose stored dataflow fingerprint differs from how its SQL is planned now, are
//! refused at start with a message that says so — never opened and silently misread.

use std::path::Path;
use std::process::{Command, Stdio};

use freshet_testkit::{Launch, Server};
use std::time::{Duration, Instant};

/// Starts freshet on `data`.
fn start(data: &Path) -> Server {
    Launch::new(env!("CARGO_BIN_EXE_freshet"))
        .data_dir(data)
        .start()
        .expect("start freshet")
}

/// Runs freshet on `data` expecting it to refuse to start; returns what it printed.
fn refused(data: &Path) -> String {
    use std::io::Read;
    let mut child = Command::new(env!("CARGO_BIN_EXE_freshet"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run freshet");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("freshet started on a data directory it must refuse");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "freshet exited cleanly instead of refusing");
    let mut out = String::new();
    child.stderr.take().unwrap().read_to_string(&mut out).unwrap();
    out
}

/// Changes the stored data directory in a process of its own (the store's handle lives as long
/// as the process that opens it).
fn tamper(data: &Path, what: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tamper_helper", "--ignored", "--quiet"])
        .env("FRESHET_TAMPER_DIR", data)
        .env("FRESHET_TAMPER", what)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn other_format_versions_and_changed_dataflows_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data);
    let (client, conn) = tokio_postgres::connect(
        &server.dsn("rust"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute(
            "CREATE TABLE t (g INT, v INT); INSERT INTO t VALUES (1, 2);
             CREATE MATERIALIZED VIEW s AS SELECT g, sum(v) AS total FROM t GROUP BY g",
        )
        .await
        .unwrap();
    drop(client);
    server.kill();

    // The untouched directory opens again.
    start(&data).kill();

    tamper(&data, "fingerprint");
    let msg = refused(&data);
    assert!(msg.contains("materialized view s") && msg.contains("fingerprint"), "{msg}");

    tamper(&data, "version");
    let msg = refused(&data);
    assert!(
        msg.contains("format version 7")
            && msg.contains(&format!("version {}", freshet_state::FORMAT_VERSION)),
        "{msg}"
    );
}

/// Run by [`tamper`] in a process of its own.
#[test]
#[ignore]
fn tamper_helper() {
    let (Ok(dir), Ok(what)) = (
        std::env::var("FRESHET_TAMPER_DIR"),
        std::env::var("FRESHET_TAMPER"),
    ) else {
        return;
    };
    let config = freshet_state::StateConfig::for_test();
    let store = freshet_state::Store::open(&Path::new(&dir).join("state"), &config).unwrap();
    let mut batch = freshet_state::WriteBatch::default();
    match what.as_str() {
        "fingerprint" => {
            let prefix = freshet_state::meta_key(b"view/");
            for (k, v) in store.snapshot().scan_prefix(&prefix).unwrap() {
                let mut def: serde_json::Value = serde_json::from_slice(&v).unwrap();
                def["fingerprint"] = serde_json::json!(12345);
                batch.put(&k, serde_json::to_vec(&def).unwrap());
            }
        }
        "version" => batch.put(freshet_state::meta_key(b"format_version"), 7u32.to_be_bytes()),
        other => panic!("unknown tampering {other}"),
    }
    store.write(batch).unwrap();
    store.sync_wal().unwrap();
}
