"""Durability: kill -9 right after committed writes loses nothing."""


def test_kill9_after_committed_insert_keeps_everything(freshet):
    with freshet.connect() as conn:
        conn.execute("CREATE TABLE d1 (id INT PRIMARY KEY, v TEXT)")
        conn.execute("CREATE TABLE d2 (x INT)")
        for i in range(50):
            conn.execute("INSERT INTO d1 VALUES (%s, %s)", (i, f"v{i}"))
        conn.execute("INSERT INTO d2 VALUES (1), (1), (2)")
        conn.execute("UPDATE d1 SET v = 'changed' WHERE id < 5")
        conn.execute("DELETE FROM d1 WHERE id >= 45")
    freshet.kill9()
    freshet.start()
    with freshet.connect() as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT v) FROM d1").fetchone() == (45, 41)
        assert conn.execute("SELECT v FROM d1 WHERE id = 3").fetchone() == ("changed",)
        assert sorted(conn.execute("SELECT x FROM d2").fetchall()) == [(1,), (1,), (2,)]
        # row ids continue after restart: no overwrite of old rows
        conn.execute("INSERT INTO d2 VALUES (3)")
        assert conn.execute("SELECT count(*) FROM d2").fetchone() == (4,)
        names = [r[0] for r in conn.execute("SHOW TABLES").fetchall()]
        assert names == ["d1", "d2"]


def test_kill9_during_a_stepped_backfill_leaves_nothing_behind(freshet):
    """A view's backfill runs in steps whose state reaches the store before the view exists;
    killed mid-way, the restarted server has no such view, and creating it again counts each
    row once (nothing the killed backfill wrote survives). Progress is visible meanwhile. A
    view whose backfill completed keeps its whole state through a kill -9."""
    import threading

    import psycopg

    from conftest import wait_for

    view = "SELECT g, count(*) AS n, sum(id) AS s, max(pad) AS m FROM big GROUP BY g"
    with freshet.connect() as conn:
        conn.execute("CREATE TABLE big (id BIGINT PRIMARY KEY, g INT, pad TEXT)")
        # ~65 MB of rows: several backfill steps of 16 MB
        for lo in range(0, 300_000, 50_000):
            conn.execute("INSERT INTO big SELECT i, i % 97, repeat('x', 200) || i "
                         f"FROM generate_series({lo}, {lo + 49_999}) AS s(i)")
        expected = sorted(conn.execute(view).fetchall())
        failed = []

        def create():
            try:
                with freshet.connect() as c:
                    c.execute(f"CREATE MATERIALIZED VIEW agg AS {view}")
            except psycopg.Error as e:
                failed.append(e)

        t = threading.Thread(target=create)
        t.start()
        progress = wait_for(lambda: conn.execute(
            "SELECT view, steps, rows_read FROM freshet_internal.backfills "
            "WHERE steps >= 2 AND rows_read < 300000").fetchone(), timeout=120,
            what="two backfill steps (the first one's writes in the store)")
        assert progress[0] == "agg"
    freshet.kill9()
    t.join()
    assert failed, "the backfill finished before the kill"
    freshet.start()
    with freshet.connect() as conn:
        assert "agg" not in [r[0] for r in conn.execute("SHOW MATERIALIZED VIEWS").fetchall()]
        conn.execute(f"CREATE MATERIALIZED VIEW agg AS {view}")
        assert sorted(conn.execute("SELECT * FROM agg").fetchall()) == expected
        assert conn.execute("SELECT count(*) FROM freshet_internal.backfills").fetchone() == (0,)
        conn.execute("INSERT INTO big VALUES (-1, 5, 'y')")
        got = dict((r[0], r[1:]) for r in conn.execute("SELECT * FROM agg").fetchall())
        want = dict((r[0], r[1:]) for r in conn.execute(view).fetchall())
        assert got == want
        # Contents written by every step (a row each), not rewritten by the last one.
        conn.execute("CREATE MATERIALIZED VIEW rows_of_g AS SELECT id, g FROM big WHERE g < 50")
    # The steps before the last bypass the write-ahead log: a view that exists survives a
    # kill -9 right after, with all its state.
    freshet.kill9()
    freshet.start()
    with freshet.connect() as conn:
        conn.execute("DELETE FROM big WHERE id % 3 = 0")
        got = sorted(conn.execute("SELECT * FROM agg").fetchall())
        assert got == sorted(conn.execute(view).fetchall())
        got = conn.execute("SELECT count(*), sum(id) FROM rows_of_g").fetchone()
        assert got == conn.execute("SELECT count(*), sum(id) FROM big WHERE g < 50").fetchone()
