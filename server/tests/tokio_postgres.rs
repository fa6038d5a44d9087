//! tokio-postgres against the real binary: prepared statements with typed parameters.

use freshet_testkit::{Launch, Server};

fn start() -> Server {
    Launch::new(env!("CARGO_BIN_EXE_freshet"))
        .start()
        .expect("start freshet")
}

#[tokio::test]
async fn prepared_statements_with_parameters() {
    let server = start();
    let (client, conn) = tokio_postgres::connect(&server.dsn("rust"), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    client
        .batch_execute("CREATE TABLE kv (k BIGINT PRIMARY KEY, v TEXT, f DOUBLE PRECISION)")
        .await
        .unwrap();
    let insert = client
        .prepare("INSERT INTO kv VALUES ($1, $2, $3)")
        .await
        .unwrap();
    for i in 0..10i64 {
        let n = client
            .execute(&insert, &[&i, &format!("v{i}"), &(i as f64 / 2.0)])
            .await
            .unwrap();
        assert_eq!(n, 1);
    }
    let select = client
        .prepare("SELECT v, f FROM kv WHERE k > $1 ORDER BY k")
        .await
        .unwrap();
    let rows = client.query(&select, &[&6i64]).await.unwrap();
    let got: Vec<(String, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        vec![("v7".into(), 3.5), ("v8".into(), 4.0), ("v9".into(), 4.5)]
    );
    let upd = client
        .execute("UPDATE kv SET v = $1 WHERE k = $2", &[&"changed", &3i64])
        .await
        .unwrap();
    assert_eq!(upd, 1);
    let row = client
        .query_one("SELECT v FROM kv WHERE k = $1", &[&3i64])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "changed");
    let err = client
        .execute(&insert, &[&1i64, &"dup", &0.0f64])
        .await
        .unwrap_err();
    assert_eq!(err.code().unwrap().code(), "23505");
    // simple protocol too
    let msgs = client
        .simple_query("SELECT count(*) FROM kv")
        .await
        .unwrap();
    let count = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
        _ => None,
    });
    assert_eq!(count.as_deref(), Some("10"));
}
