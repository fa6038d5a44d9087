"""LISTEN / NOTIFY between sessions, and notifications of view changes, through psycopg's
notifies() (delivered while the listening connection is idle, as PostgreSQL does)."""

import json

import psycopg


def _notes(conn, timeout, n=None):
    return [(x.channel, x.payload) for x in conn.notifies(timeout=timeout, stop_after=n)]


def test_notify_between_sessions(freshet):
    a = freshet.connect()
    b = freshet.connect()
    a.execute("LISTEN ch")
    a.execute("LISTEN other")
    b.execute("NOTIFY ch, 'hello'")
    b.execute("NOTIFY nobody_listens, 'x'")
    assert _notes(a, 10, 1) == [("ch", "hello")]
    # A rolled-back block notifies nothing; a committed one once per distinct payload.
    b.execute("BEGIN")
    b.execute("NOTIFY ch, 'lost'")
    b.execute("ROLLBACK")
    with b.transaction():
        b.execute("NOTIFY ch, 'kept'")
        b.execute("NOTIFY ch, 'kept'")
        b.execute("NOTIFY other")
    assert sorted(_notes(a, 10, 2)) == [("ch", "kept"), ("other", "")]
    assert _notes(a, 0.3) == []
    a.execute("UNLISTEN ch")
    b.execute("NOTIFY ch, 'after'")
    b.execute("NOTIFY other, 'still'")
    assert _notes(a, 10, 1) == [("other", "still")]
    a.execute("UNLISTEN *")
    b.execute("NOTIFY other, 'gone'")
    assert _notes(a, 0.3) == []


def test_listen_on_a_view(freshet):
    c = freshet.connect()
    c.execute("CREATE TABLE t (id INT PRIMARY KEY, g INT)")
    c.execute("CREATE MATERIALIZED VIEW per_g AS SELECT g, count(*) AS n FROM t GROUP BY g")
    c.execute("CREATE MATERIALIZED VIEW untouched AS SELECT id FROM t WHERE g > 1000")
    a = freshet.connect()
    a.execute("LISTEN per_g")
    a.execute("LISTEN untouched")
    c.execute("INSERT INTO t VALUES (1, 1), (2, 1), (3, 2)")
    got = _notes(a, 10, 1)
    assert [ch for ch, _ in got] == ["per_g"]
    p = json.loads(got[0][1])
    assert (p["inserted"], p["deleted"]) == (2, 0) and p["epoch"] > 0
    c.execute("UPDATE t SET g = 2 WHERE id = 1")
    p2 = json.loads(_notes(a, 10, 1)[0][1])
    assert p2["epoch"] > p["epoch"]
    assert (p2["inserted"], p2["deleted"]) == (2, 2)  # both groups' rows replaced
    c.execute("UPDATE t SET g = g")  # changes nothing in the view: no notification
    assert _notes(a, 0.3) == []
    a.close()
    # The listener's connection is gone: writes go on.
    c.execute("INSERT INTO t VALUES (4, 4)")
    assert c.execute("SELECT count(*) FROM per_g").fetchone() == (3,)
