"""Point statements — SELECT, UPDATE and DELETE naming one key — are answered from the store
without planning a query; they must answer exactly as PostgreSQL does.

Random point statements (literals and parameters, extended and simple protocol, inside and
outside transactions, overflowing arithmetic) run on freshet and PostgreSQL side by side;
each statement's rows, row count or SQLSTATE must agree, and so must point reads of the
views over the tables (compared with their defining query computed by PostgreSQL).
"""

import random

import psycopg

TABLES = [
    "CREATE TABLE p (id INT PRIMARY KEY, name TEXT, n BIGINT, s SMALLINT, flag BOOLEAN)",
    "CREATE TABLE p2 (a INT, b VARCHAR(8), v INT, PRIMARY KEY (b, a))",
]
# view name -> (definition, what PostgreSQL computes for a point read of it)
VIEWS = {
    "pv": "SELECT id, name, n FROM p",
    "pagg": "SELECT s, count(*) AS c, sum(n) AS total FROM p GROUP BY s",
    "p2v": "SELECT b, a, v FROM p2",
}


def _run(conn, sql, params=None, simple=False):
    """(rows or rowcount, SQLSTATE) of one statement."""
    cur = psycopg.ClientCursor(conn) if simple else conn.cursor()
    try:
        cur.execute(sql, params)
        rows = sorted(cur.fetchall(), key=repr) if cur.description else cur.rowcount
        return rows, None
    except psycopg.Error as e:
        return None, e.sqlstate


def _statement(rng):
    k = lambda: rng.randrange(1, 25)  # noqa: E731
    b = lambda: rng.choice(["x", "y", "zz", "long-key"])  # noqa: E731
    return rng.choice([
        lambda: ("UPDATE p SET n = n + %s WHERE id = %s", (rng.randrange(-9, 10), k())),
        lambda: (f"UPDATE p SET n = n - {rng.randrange(100)} WHERE id = {k()}", None),
        lambda: (f"UPDATE p SET s = s * {rng.choice([2, 10, 300, 9000])} WHERE id = {k()}", None),
        lambda: ("UPDATE p SET n = n * %s WHERE id = %s", (rng.choice([-1, 1000, 3_000_000_000]), k())),
        lambda: (f"UPDATE p2 SET v = v * 70000 + 1 WHERE a = {k()} AND b = 'x'", None),
        lambda: (f"UPDATE p SET s = (s + 1) * 2 - {rng.randrange(5)}, n = 7 WHERE id = {k()}", None),
        lambda: ("UPDATE p SET name = %s, flag = %s WHERE id = %s",
                 (rng.choice(["a", "b", None]), rng.random() < 0.5, k())),
        lambda: (f"UPDATE p x SET n = x.n * 3 WHERE x.id = {k()}", None),
        lambda: ("DELETE FROM p WHERE id = %s", (k(),)),
        lambda: (f"DELETE FROM p WHERE {k()} = id", None),
        lambda: (f"INSERT INTO p VALUES ({k()}, 'new', {rng.randrange(50)}, {rng.randrange(5)}, true) "
                 "ON CONFLICT DO NOTHING", None),
        lambda: ("UPDATE p2 SET v = v - 1 WHERE a = %s AND b = %s", (k(), b())),
        lambda: (f"UPDATE p2 SET v = {rng.randrange(9)} WHERE b = '{b()}' AND a = {k()}", None),
        lambda: ("DELETE FROM p2 WHERE b = %s AND a = %s", (b(), k())),
        lambda: (f"INSERT INTO p2 VALUES ({k()}, '{b()}', 1) ON CONFLICT DO NOTHING", None),
        lambda: ("UPDATE p SET n = n + 1 WHERE id = %s AND name = 'a'", (k(),)),  # not a key: general path
    ])()


def _reads(rng):
    k = rng.randrange(1, 25)
    bk = rng.choice(["x", "y", "zz", "long-key"])
    same = [
        ("SELECT name, n, s, flag FROM p WHERE id = %s", (k,)),
        (f"SELECT * FROM p WHERE id = {k}", None),
        ("SELECT v AS value, a FROM p2 WHERE a = %s AND b = %s", (k, bk)),
        ("SELECT * FROM p WHERE id = %s", (None,)),
    ]
    views = [
        # (freshet's point read, PostgreSQL's computation of it, parameters)
        ("SELECT name, n FROM pv WHERE id = %s",
         f"SELECT name, n FROM ({VIEWS['pv']}) v WHERE id = %s", (k,)),
        (f"SELECT total, c FROM pagg WHERE s = {k % 5}",
         f"SELECT total, c FROM ({VIEWS['pagg']}) v WHERE s = {k % 5}", None),
        ("SELECT * FROM p2v WHERE b = %s", f"SELECT * FROM ({VIEWS['p2v']}) v WHERE b = %s", (bk,)),
        ("SELECT v FROM p2v WHERE b = %s AND a = %s",
         f"SELECT v FROM ({VIEWS['p2v']}) v WHERE b = %s AND a = %s", (bk, k)),
    ]
    return same, views


def test_point_statements_match_postgres(freshet, postgres):
    rng = random.Random(20261203)
    with freshet.connect() as f, postgres.connect() as p:
        p.execute("DROP TABLE IF EXISTS p, p2")
        for ddl in TABLES:
            f.execute(ddl)
            p.execute(ddl)
        for name, q in VIEWS.items():
            f.execute(f"CREATE MATERIALIZED VIEW {name} AS {q}")
        for conn in (f, p):
            conn.execute("INSERT INTO p SELECT i, 'r' || i, i * 10, i % 5, i % 2 = 0 "
                         "FROM generate_series(1, 20) AS g(i)")
            conn.execute("INSERT INTO p2 SELECT i, b, i FROM generate_series(1, 20) AS g(i), "
                         "(VALUES ('x'), ('y'), ('zz')) AS t(b)")
        errors = 0
        for step in range(400):
            in_block = rng.random() < 0.25
            if in_block:
                f.execute("BEGIN")
                p.execute("BEGIN")
            for _ in range(rng.randrange(1, 4) if in_block else 1):
                sql, params = _statement(rng)
                simple = params is None and rng.random() < 0.5
                got, want = _run(f, sql, params, simple), _run(p, sql, params)
                assert got == want, f"step {step}: {sql} {params}: freshet {got}, PostgreSQL {want}"
                errors += want[1] is not None
                if want[1] is not None:
                    break
                same, views = _reads(rng)
                for sql, params in same:
                    got, want = _run(f, sql, params), _run(p, sql, params)
                    assert got == want, f"step {step}: {sql} {params}: freshet {got}, PostgreSQL {want}"
                if not in_block:
                    for ours, theirs, params in views:
                        got, want = _run(f, ours, params), _run(p, theirs, params)
                        assert got == want, f"step {step}: {ours} {params}: freshet {got}, PostgreSQL {want}"
            if in_block:
                end = "COMMIT" if rng.random() < 0.6 else "ROLLBACK"
                f.execute(end)
                p.execute(end)
        assert errors > 5, "the run should include overflows"
        for table in ("p", "p2"):
            got = _run(f, f"SELECT * FROM {table}")
            assert got == _run(p, f"SELECT * FROM {table}")
