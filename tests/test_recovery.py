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
