"""Cursors over queries (`DECLARE … CURSOR [WITH HOLD] FOR query`, FETCH, MOVE, CLOSE) as
psycopg's and psycopg2's server-side cursors use them: each check runs against freshet and
against PostgreSQL, which must answer the same."""

import psycopg
import psycopg2
import pytest

SCHEMA = [
    "CREATE TABLE items (id int PRIMARY KEY, name text, price numeric(8,2), seen timestamp)",
    "INSERT INTO items SELECT i, 'item ' || i, i * 1.25, TIMESTAMP '2026-01-01 00:00:00' "
    "+ (i || ' hours')::interval FROM generate_series(1, 2500) AS g(i)",
    "CREATE MATERIALIZED VIEW tens AS SELECT id / 10 AS ten, count(*) AS n, sum(price) AS total "
    "FROM items GROUP BY id / 10",
]


@pytest.fixture
def both(freshet, postgres):
    with postgres.connect() as c:
        c.execute("DROP DATABASE IF EXISTS cursor_check WITH (FORCE)")
        c.execute("CREATE DATABASE cursor_check")
    pg = f"host=127.0.0.1 port={postgres.port} dbname=cursor_check user=postgres"
    for dsn in (freshet.dsn(), pg):
        with psycopg.connect(dsn, autocommit=True) as c:
            for s in SCHEMA:
                c.execute(s)
    return {"freshet": freshet.dsn(), "postgres": pg}


def psycopg3_named(dsn):
    out = []
    with psycopg.connect(dsn) as conn:
        with conn.cursor(name="c1") as cur:
            cur.execute("SELECT id, name, price FROM items WHERE id > %s ORDER BY id", (2400,))
            out.append([d.name for d in cur.description])
            out.append(cur.fetchmany(3))
            out.append(cur.fetchone())
            cur.scroll(5)
            out.append(cur.fetchmany(2))
            out.append(len(cur.fetchall()))
            out.append(cur.fetchone())
        with conn.cursor(name="c2", binary=True) as cur:
            cur.itersize = 7
            cur.execute("SELECT ten, n, total FROM tens ORDER BY ten")
            out.append(sum(1 for _ in cur))
        conn.commit()
    # WITH HOLD, declared outside a transaction block, read after it.
    with psycopg.connect(dsn, autocommit=True) as conn:
        with conn.cursor(name="held", withhold=True) as cur:
            cur.execute("SELECT id, seen FROM items WHERE id <= 5 ORDER BY id")
            out.append(cur.fetchall())
    return out


def psycopg2_named(dsn):
    out = []
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor("p2")
        cur.itersize = 100
        cur.execute("SELECT id, name FROM items WHERE id % 7 = 0 ORDER BY id")
        rows = list(cur)
        out.append((len(rows), rows[:2], rows[-1]))
        cur.close()
        cur = conn.cursor("p3")
        cur.execute("SELECT ten, n FROM tens WHERE ten < 3 ORDER BY ten")
        out.append(cur.fetchmany(2))
        out.append(cur.fetchall())
        cur.close()
        conn.commit()
    finally:
        conn.close()
    return out


SQL_SESSION = [
    "BEGIN",
    "DECLARE c CURSOR FOR SELECT id, name FROM items WHERE id <= 20 ORDER BY id",
    "FETCH 3 FROM c",
    "FETCH NEXT FROM c",
    "MOVE FORWARD 4 IN c",
    "FETCH c",
    "FETCH FORWARD 100 FROM c",
    "FETCH ALL FROM c",
    "MOVE ALL IN c",
    "CLOSE c",
    "DECLARE h CURSOR WITH HOLD FOR SELECT ten, n FROM tens WHERE ten BETWEEN 5 AND 9 ORDER BY ten",
    "FETCH 2 h",
    "COMMIT",
    "FETCH ALL h",
    "CLOSE h",
    "BEGIN",
    "DECLARE gone CURSOR WITH HOLD FOR SELECT 1",
    "ROLLBACK",
]

SQL_ERRORS = [
    "DECLARE nope CURSOR FOR SELECT 1",
    "FETCH 1 FROM nosuch",
    "CLOSE nosuch",
    "FETCH ALL gone",
]


def run_sql(dsn):
    out = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in SQL_SESSION:
            cur = conn.execute(sql)
            rows = cur.fetchall() if cur.description else None
            out.append((sql, cur.statusmessage, rows))
        for sql in SQL_ERRORS:
            try:
                conn.execute(sql)
                out.append((sql, "no error"))
            except psycopg.Error as e:
                out.append((sql, e.sqlstate))
        conn.execute("BEGIN")
        conn.execute("DECLARE d CURSOR FOR SELECT id FROM items ORDER BY id")
        try:
            conn.execute("DECLARE d CURSOR FOR SELECT 1")
            out.append("no error")
        except psycopg.Error as e:
            out.append(e.sqlstate)
        conn.execute("ROLLBACK")
    return out


def test_cursors_scan_forward_only(freshet):
    """Backward fetches are refused as PostgreSQL refuses them on a NO SCROLL cursor (it
    allows some on cursors declared without either word; freshet's cursors are NO SCROLL)."""
    with freshet.connect() as conn:
        conn.execute("BEGIN")
        conn.execute("DECLARE d CURSOR FOR SELECT 1")
        for sql in ["FETCH PRIOR FROM d", "MOVE BACKWARD 1 IN d", "FETCH ABSOLUTE 1 FROM d"]:
            with pytest.raises(psycopg.Error) as e:
                conn.execute(sql)
            assert e.value.sqlstate == "55000", sql
            conn.execute("ROLLBACK")
            conn.execute("BEGIN")
            conn.execute("DECLARE d CURSOR FOR SELECT 1")
        with pytest.raises(psycopg.Error) as e:
            conn.execute("DECLARE s SCROLL CURSOR FOR SELECT 1")
        assert e.value.sqlstate == "0A000"


@pytest.mark.parametrize("client", [psycopg3_named, psycopg2_named, run_sql])
def test_cursors_as_postgresql(both, client):
    got, want = client(both["freshet"]), client(both["postgres"])
    for g, w in zip(got, want):
        assert g == w
    assert len(got) == len(want)
