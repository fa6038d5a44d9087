"""DML write sets, transactions, statement depth limits and the Kafka property
allow-list, against the real server over TCP."""

import psycopg
import threading

import pytest
from psycopg import errors


def test_dml_changes_only_what_it_selects_and_explain_writes_nothing(freshet, postgres):
    script = [
        "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
        "INSERT INTO t VALUES (1,1),(2,2),(3,3),(4,4)",
        "DELETE FROM t WHERE false",
        "DELETE FROM t WHERE id > 100 AND false",
        "UPDATE t SET v = v + 1 WHERE false",
        "EXPLAIN DELETE FROM t WHERE id = 1",
        "EXPLAIN UPDATE t SET v = 0",
        "CREATE TABLE u (id INT, w INT)",
        "INSERT INTO u VALUES (2, 20), (3, 30), (3, 31)",
        "UPDATE t SET v = u.w FROM u WHERE t.id = u.id AND u.w < 31",
        "DELETE FROM t AS x USING u WHERE x.id = u.id AND u.w = 31",
        "UPDATE t SET v = (SELECT max(w) FROM u) WHERE id IN (SELECT id FROM u) OR id = 4",
        "DELETE FROM t WHERE NOT EXISTS (SELECT 1 FROM u WHERE u.id = t.id) AND id < 2",
    ]
    counts = {}
    with freshet.connect() as f, postgres.connect() as p:
        p.execute("DROP TABLE IF EXISTS t, u")
        for sql in script:
            fc = f.execute(sql)
            pc = p.execute(sql)
            if not sql.startswith("EXPLAIN"):
                counts[sql] = (fc.rowcount, pc.rowcount)
        for sql, (fr, pr) in counts.items():
            assert fr == pr, sql
        q = "SELECT id, v FROM t ORDER BY id"
        assert f.execute(q).fetchall() == p.execute(q).fetchall()
        p.execute("DROP TABLE t, u")


def test_transactions_commit_atomically_or_not_at_all(freshet):
    with freshet.connect() as setup:
        setup.execute("CREATE TABLE acct (id INT PRIMARY KEY, bal INT NOT NULL)")
        setup.execute("CREATE TABLE log (id INT, note TEXT)")
        setup.execute("INSERT INTO acct VALUES (1, 100), (2, 100), (3, 100)")
        setup.execute("CREATE MATERIALIZED VIEW total AS SELECT sum(bal) AS s, count(*) AS n FROM acct")
    a, b = freshet.connect(), freshet.connect()

    # ROLLBACK undoes every kind of write; the block read its own writes meanwhile.
    a.execute("BEGIN")
    a.execute("INSERT INTO acct VALUES (4, 1)")
    a.execute("UPDATE acct SET bal = bal - 10 WHERE id = 1")
    a.execute("DELETE FROM acct WHERE id = 2")
    a.execute("INSERT INTO log VALUES (1, 'x')")
    with a.cursor() as cur:
        with cur.copy("COPY log FROM STDIN") as copy:
            copy.write_row((2, "y"))
    assert a.execute("SELECT id, bal FROM acct ORDER BY id").fetchall() == [(1, 90), (3, 100), (4, 1)]
    assert a.execute("SELECT count(*) FROM log").fetchone() == (2,)
    # another session sees nothing of it
    assert b.execute("SELECT id, bal FROM acct ORDER BY id").fetchall() == [(1, 100), (2, 100), (3, 100)]
    a.execute("TRUNCATE log")
    assert a.execute("SELECT count(*) FROM log").fetchone() == (0,)
    a.execute("ROLLBACK")
    assert a.execute("SELECT id, bal FROM acct ORDER BY id").fetchall() == [(1, 100), (2, 100), (3, 100)]
    assert a.execute("SELECT count(*) FROM log").fetchone() == (0,)
    assert a.execute("SELECT s, n FROM total").fetchone() == (300, 3)

    # COMMIT applies everything at once, the view with it.
    a.execute("BEGIN")
    a.execute("UPDATE acct SET bal = bal - 30 WHERE id = 1")
    a.execute("UPDATE acct SET bal = bal + 30 WHERE id = 2")
    a.execute("INSERT INTO acct VALUES (4, 5)")
    a.execute("INSERT INTO log VALUES (3, 'moved')")
    assert b.execute("SELECT s, n FROM total").fetchone() == (300, 3)
    a.execute("COMMIT")
    assert b.execute("SELECT id, bal FROM acct ORDER BY id").fetchall() == [(1, 70), (2, 130), (3, 100), (4, 5)]
    assert b.execute("SELECT s, n FROM total").fetchone() == (305, 4)

    # An error fails the block: 25P02 until its end, and COMMIT then rolls back.
    a.execute("BEGIN")
    a.execute("INSERT INTO acct VALUES (5, 5)")
    with pytest.raises(errors.UniqueViolation):
        a.execute("INSERT INTO acct VALUES (1, 1)")
    with pytest.raises(errors.InFailedSqlTransaction):
        a.execute("SELECT 1")
    assert a.execute("COMMIT").statusmessage == "ROLLBACK"
    assert a.execute("SELECT count(*) FROM acct").fetchone() == (4,)

    # Savepoints: ROLLBACK TO undoes what followed and clears the failure; RELEASE keeps.
    a.execute("BEGIN")
    a.execute("INSERT INTO acct VALUES (6, 6)")
    a.execute("SAVEPOINT s1")
    a.execute("INSERT INTO acct VALUES (7, 7)")
    with pytest.raises(errors.NotNullViolation):
        a.execute("UPDATE acct SET bal = NULL WHERE id = 6")
    a.execute("ROLLBACK TO SAVEPOINT s1")
    a.execute("SAVEPOINT s2")
    a.execute("INSERT INTO acct VALUES (8, 8)")
    a.execute("RELEASE SAVEPOINT s2")
    with pytest.raises(errors.InvalidSavepointSpecification):
        a.execute("ROLLBACK TO SAVEPOINT s2")
    a.execute("ROLLBACK")
    a.execute("BEGIN")
    a.execute("INSERT INTO acct VALUES (6, 6)")
    a.execute("SAVEPOINT s1")
    a.execute("INSERT INTO acct VALUES (7, 7)")
    a.execute("ROLLBACK TO SAVEPOINT s1")
    a.execute("INSERT INTO acct VALUES (8, 8)")
    a.execute("COMMIT")
    assert b.execute("SELECT id FROM acct WHERE id > 5 ORDER BY id").fetchall() == [(6,), (8,)]

    # Two writers of the same row: the second waits for the first's row lock. In REPEATABLE
    # READ, once the first commits, the second gets 40001 and nothing of it is applied.
    a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    b.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    assert b.execute("SELECT bal FROM acct WHERE id = 3").fetchone() == (100,)
    a.execute("UPDATE acct SET bal = bal + 1 WHERE id = 3")
    outcome = []

    def second():
        try:
            b.execute("UPDATE acct SET bal = bal + 100 WHERE id = 3")
            b.execute("INSERT INTO log VALUES (4, 'lost')")
            b.execute("COMMIT")
            outcome.append("committed")
        except errors.SerializationFailure:
            outcome.append("40001")

    t = threading.Thread(target=second)
    t.start()
    t.join(timeout=0.5)
    assert t.is_alive(), "the second writer must wait for the first's row lock"
    a.execute("COMMIT")
    t.join(timeout=30)
    assert outcome == ["40001"]
    with pytest.raises(errors.InFailedSqlTransaction):
        b.execute("SELECT 1")
    b.execute("ROLLBACK")
    assert b.execute("SELECT bal FROM acct WHERE id = 3").fetchone() == (101,)
    assert b.execute("SELECT count(*) FROM log WHERE id = 4").fetchone() == (0,)
    # Snapshot reads in REPEATABLE READ: a block keeps reading what it began with; in READ
    # COMMITTED (the default) each statement reads the latest commit.
    b.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    assert b.execute("SELECT bal FROM acct WHERE id = 3").fetchone() == (101,)
    a.execute("UPDATE acct SET bal = 0 WHERE id = 3")
    assert b.execute("SELECT bal FROM acct WHERE id = 3").fetchone() == (101,)
    b.execute("COMMIT")
    assert b.execute("SELECT bal FROM acct WHERE id = 3").fetchone() == (0,)
    b.execute("BEGIN")
    assert b.execute("SELECT bal FROM acct WHERE id = 3").fetchone() == (0,)
    a.execute("UPDATE acct SET bal = 101 WHERE id = 3")
    assert b.execute("SELECT bal FROM acct WHERE id = 3").fetchone() == (101,)
    b.execute("COMMIT")

    # DDL: runs (and commits) in a block that has not written; refused once it has; a
    # ROLLBACK across DDL says that the DDL stays.
    a.execute("BEGIN")
    a.execute("CREATE TABLE d1 (x INT)")
    a.execute("INSERT INTO d1 VALUES (1)")
    with pytest.raises(errors.ActiveSqlTransaction):
        a.execute("CREATE TABLE d2 (x INT)")
    with pytest.raises(errors.FeatureNotSupported, match="DDL"):
        a.execute("ROLLBACK")
    a.execute("BEGIN")
    a.execute("CREATE TABLE d3 (x INT)")
    with pytest.raises(errors.FeatureNotSupported, match="DDL"):
        a.execute("ROLLBACK")
    assert b.execute("SELECT count(*) FROM d1").fetchone() == (0,)
    assert b.execute("SELECT count(*) FROM d3").fetchone() == (0,)
    a.close()
    b.close()


def test_drivers_transactions_and_savepoints(freshet):
    """psycopg's own transaction handling: implicit BEGIN, nested blocks as savepoints."""
    with psycopg.connect(freshet.dsn()) as conn:
        conn.execute("CREATE TABLE r (x INT PRIMARY KEY)")
        conn.commit()
        conn.execute("INSERT INTO r VALUES (1)")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM r").fetchone() == (0,)
        conn.rollback()
        with conn.transaction():
            conn.execute("INSERT INTO r VALUES (1)")
            with pytest.raises(errors.UniqueViolation):
                with conn.transaction():
                    conn.execute("INSERT INTO r VALUES (2)")
                    conn.execute("INSERT INTO r VALUES (1)")
            conn.execute("INSERT INTO r VALUES (3)")
        conn.commit()
        assert conn.execute("SELECT x FROM r ORDER BY x").fetchall() == [(1,), (3,)]
        conn.commit()


def test_deep_statements_are_answered_or_refused_never_crash(freshet):
    with freshet.connect() as conn:
        conn.execute("CREATE TABLE k (k INT PRIMARY KEY, v INT)")
        conn.execute("INSERT INTO k SELECT * FROM (VALUES (1, 1), (2, 2), (700, 3)) AS x(a, b)")
        plus = "SELECT " + "+".join(["1"] * 1376)
        assert conn.execute(plus).fetchone() == (1376,)
        ors = " OR ".join(f"k = {i}" for i in range(1493))
        assert conn.execute(f"SELECT count(*) FROM k WHERE {ors}").fetchone() == (3,)
        conn.execute(f"DELETE FROM k WHERE ({ors}) AND v = 3")
        assert conn.execute("SELECT count(*) FROM k").fetchone() == (2,)
        union = " UNION ALL ".join(["SELECT 1 AS x"] * 1000)
        assert conn.execute(f"SELECT count(*) FROM ({union}) AS u").fetchone() == (1000,)
        view_ors = " OR ".join(f"k = {i}" for i in range(419))
        conn.execute(f"CREATE MATERIALIZED VIEW kv AS SELECT k, v FROM k WHERE {view_ors}")
        conn.execute("INSERT INTO k VALUES (3, 3)")
        assert conn.execute("SELECT count(*) FROM kv").fetchone() == (3,)
        for sql in ("SELECT " + "+".join(["1"] * 200_000),
                    " UNION ALL ".join(["SELECT 1"] * 5000),
                    "SELECT count(*) FROM k WHERE " + " OR ".join(f"k = {i}" for i in range(30_000))):
            with pytest.raises(errors.StatementTooComplex):
                conn.execute(sql)
        assert conn.execute("SELECT count(*) FROM kv").fetchone() == (3,)
    assert freshet.alive()


def test_kafka_properties_that_load_code_are_refused(freshet, tmp_path):
    lib = tmp_path / "x.so"
    lib.write_bytes(b"")
    with freshet.connect() as conn:
        for prop, value in [("plugin.library.paths", str(lib)),
                            ("sasl.kerberos.kinit.cmd", "touch /tmp/freshet-pwned"),
                            ("ssl.ca.location", "/etc/passwd"),
                            ("ssl.engine.location", str(lib))]:
            with pytest.raises(errors.InsufficientPrivilege, match=prop.replace(".", r"\.")):
                conn.execute(
                    f"CREATE SOURCE s (x INT) WITH (connector = 'kafka', topic = 't', "
                    f"properties.bootstrap.server = '127.0.0.1:1', properties.{prop} = '{value}') "
                    f"FORMAT PLAIN ENCODE JSON")
        assert conn.execute("SELECT 1").fetchone() == (1,)
