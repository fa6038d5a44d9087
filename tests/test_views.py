"""Incremental materialized views against PostgreSQL as the oracle.

Three NULL-heavy tables get random INSERT/UPDATE/DELETE batches (updates move rows between
groups; deletes target the current MIN/MAX rows). After every step each view's contents in
freshet must equal, as a multiset, what PostgreSQL computes from scratch for the same query.
"""
import decimal
import random
from collections import Counter

import psycopg
import pytest
from psycopg import errors

TABLES = [
    "CREATE TABLE t1 (id INT PRIMARY KEY, g INT, s TEXT, v INT, f DOUBLE PRECISION, n NUMERIC(10,2), b BOOLEAN)",
    "CREATE TABLE t2 (id INT PRIMARY KEY, g INT, w INT, label TEXT)",
    "CREATE TABLE t3 (k INT, x INT)",
]

VIEWS = {
    "filter": "SELECT id, v FROM t1 WHERE v > 10",
    "project": "SELECT id, v * 2 + 1 AS e, upper(s) AS us, n * 2 AS n2 FROM t1",
    "count_by": "SELECT g, count(*) AS c FROM t1 GROUP BY g",
    "sum_min_max": "SELECT g, sum(v) AS sv, min(v) AS mn, max(v) AS mx FROM t1 GROUP BY g",
    "avg_count": "SELECT g, avg(v) AS av, count(v) AS cv FROM t1 GROUP BY g",
    "global_agg": "SELECT count(*) AS c, sum(v) AS s, min(s) AS ms, max(s) AS xs FROM t1",
    "global_empty": "SELECT count(*) AS c, max(x) AS m, sum(x) AS s FROM t3 WHERE x > 1000000",
    "count_distinct": "SELECT g, count(DISTINCT v) AS cd FROM t1 GROUP BY g",
    "bool_aggs": "SELECT g, bool_and(b) AS ba, bool_or(b) AS bo FROM t1 GROUP BY g",
    "numeric_aggs": "SELECT g, sum(n) AS sn, min(n) AS mn, max(n) AS mx, avg(n) AS an FROM t1 GROUP BY g",
    "float_sum": "SELECT g, sum(f) AS sf, min(f) AS mf FROM t1 GROUP BY g",
    "text_min_max": "SELECT g, min(s) AS lo, max(s) AS hi FROM t1 GROUP BY g",
    "distinct_one": "SELECT DISTINCT g FROM t1",
    "distinct_two": "SELECT DISTINCT g, b FROM t1",
    "having": "SELECT g, count(*) AS c FROM t1 GROUP BY g HAVING count(*) > 1",
    "group_expr": "SELECT v % 3 AS m, count(*) AS c FROM t1 GROUP BY v % 3",
    "group_fn": "SELECT length(s) AS l, count(*) AS c FROM t1 GROUP BY length(s)",
    "agg_filter": "SELECT g, count(*) FILTER (WHERE v > 5) AS c, sum(v) FILTER (WHERE b) AS s FROM t1 GROUP BY g",
    "inner_join": "SELECT t1.id, t2.id AS id2, t1.v, t2.w FROM t1 JOIN t2 ON t1.g = t2.g",
    "left_join": "SELECT t1.id, t2.label FROM t1 LEFT JOIN t2 ON t1.g = t2.g",
    "right_join": "SELECT t1.id, t2.id AS id2 FROM t1 RIGHT JOIN t2 ON t1.g = t2.g",
    "full_join": "SELECT t1.id, t2.id AS id2 FROM t1 FULL JOIN t2 ON t1.g = t2.g",
    "join_residual": "SELECT t1.id, t2.id AS id2 FROM t1 JOIN t2 ON t1.g = t2.g AND t1.v < t2.w",
    "left_join_residual": "SELECT t1.id, t2.id AS id2 FROM t1 LEFT JOIN t2 ON t1.g = t2.g AND t1.v < t2.w",
    "full_join_residual": "SELECT t1.id, t2.id AS id2 FROM t1 FULL JOIN t2 ON t1.g = t2.g AND t2.w > 3",
    "theta_join": "SELECT t2.id, t3.k FROM t2, t3 WHERE t2.w > t3.x",
    "join_agg": "SELECT t2.label, count(*) AS c, sum(t1.v) AS s FROM t1 JOIN t2 ON t1.g = t2.g GROUP BY t2.label",
    "self_join": "SELECT a.id, b.id AS bid FROM t1 a JOIN t1 b ON a.g = b.g AND a.id < b.id",
    "three_way": "SELECT t1.id, t2.id AS id2, t3.x FROM t1 JOIN t2 ON t1.g = t2.g JOIN t3 ON t3.k = t2.id",
    "in_subquery": "SELECT id FROM t1 WHERE g IN (SELECT g FROM t2 WHERE w > 5)",
    "exists": "SELECT id FROM t1 WHERE EXISTS (SELECT 1 FROM t2 WHERE t2.g = t1.g AND t2.w > t1.v)",
    "not_exists": "SELECT id, g FROM t1 WHERE NOT EXISTS (SELECT 1 FROM t2 WHERE t2.g = t1.g)",
    "correlated_scalar": "SELECT id, (SELECT max(w) FROM t2 WHERE t2.g = t1.g) AS mw FROM t1",
    "union_all": "SELECT g FROM t1 UNION ALL SELECT g FROM t2",
    "union": "SELECT g FROM t1 UNION SELECT g FROM t2",
    "except": "SELECT g FROM t1 EXCEPT SELECT g FROM t2",
    "intersect": "SELECT g FROM t1 INTERSECT SELECT g FROM t2",
    "cte": "WITH x AS (SELECT g, sum(v) AS s FROM t1 GROUP BY g) SELECT x.g, x.s, t2.w FROM x JOIN t2 ON x.g = t2.g",
    "case_coalesce": "SELECT id, CASE WHEN v > 10 THEN 'hi' WHEN v IS NULL THEN 'null' ELSE 'lo' END AS c, "
                     "coalesce(s, 'none') AS s2 FROM t1",
    "no_pk_agg": "SELECT k, count(*) AS c, sum(x) AS s, min(x) AS mn FROM t3 GROUP BY k",
    "no_pk_rows": "SELECT k, x FROM t3 WHERE x IS NOT NULL",
    "constant": "SELECT 1 AS one, 'x' AS two",
    "agg_of_join_of_aggs": "SELECT a.g, a.c, b.c AS c2 FROM (SELECT g, count(*) AS c FROM t1 GROUP BY g) a "
                           "LEFT JOIN (SELECT g, count(*) AS c FROM t2 GROUP BY g) b ON a.g = b.g",
    "top_n": "SELECT id, v FROM t1 ORDER BY v DESC NULLS LAST, id LIMIT 5",
    "top_n_offset": "SELECT id, s FROM t1 ORDER BY s, id LIMIT 4 OFFSET 2",
    "top_n_groups": "SELECT g, count(*) AS c FROM t1 GROUP BY g ORDER BY count(*) DESC, g LIMIT 3",
    "row_number_top": "SELECT id, g, v FROM (SELECT id, g, v, row_number() OVER (PARTITION BY g ORDER BY v DESC, id) AS rn "
                      "FROM t1) q WHERE rn <= 2",
    "rank_top": "SELECT g, v, rk FROM (SELECT g, v, rank() OVER (PARTITION BY g ORDER BY v) AS rk FROM t1) q WHERE rk <= 2",
    "window_general": "SELECT id, sum(v) OVER (PARTITION BY g ORDER BY id) AS rs, count(*) OVER (PARTITION BY g) AS c, "
                      "lag(v) OVER (PARTITION BY g ORDER BY id) AS pv, dense_rank() OVER (ORDER BY s) AS dr FROM t1",
    "string_agg": "SELECT g, string_agg(s, ',' ORDER BY s) AS ss, length(string_agg(s, '')) AS unordered_len FROM t1 GROUP BY g",
    "array_agg": "SELECT g, array_agg(v ORDER BY id) AS av, array_agg(s ORDER BY s DESC NULLS LAST, id) AS sv FROM t1 GROUP BY g",
    "distinct_on": "SELECT DISTINCT ON (g) g, id, v FROM t1 ORDER BY g, v DESC NULLS LAST, id",
    "scalar_subquery": "SELECT id, v, (SELECT max(w) FROM t2) AS mw FROM t1 WHERE v > (SELECT avg(x) FROM t3)",
    "not_in": "SELECT id, g FROM t1 WHERE g NOT IN (SELECT g FROM t2 WHERE w > 3)",
    "not_in_nullable": "SELECT k, x FROM t3 WHERE x NOT IN (SELECT w FROM t2 WHERE label IS NOT NULL)",
}

# Views over views: name -> (query over freshet views, the same query inlined for PostgreSQL).
VIEWS_ON_VIEWS = {
    "vv_total": ("SELECT sum(c) AS total, count(*) AS groups FROM count_by",
                 "SELECT sum(c) AS total, count(*) AS groups FROM (SELECT g, count(*) AS c FROM t1 GROUP BY g) q"),
    "vv_big": ("SELECT g, sv FROM sum_min_max WHERE sv > 20",
               "SELECT g, sv FROM (SELECT g, sum(v) AS sv FROM t1 GROUP BY g) q WHERE sv > 20"),
}


def norm(v):
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float, decimal.Decimal)):
        f = float(v)
        # float sums differ in their last bits with the order of additions and retractions
        return 0.0 if abs(f) < 1e-9 else float(f"{f:.6g}")
    if isinstance(v, list):
        return tuple(norm(x) for x in v)
    return v


def rows(conn, sql):
    return Counter(tuple(norm(x) for x in r) for r in conn.execute(sql).fetchall())


class Data:
    """Random DML over the three tables, replayed on both servers."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.next_id = {"t1": 1, "t2": 1}

    def val(self, gen, null_pct=0.25):
        return None if self.rng.random() < null_pct else gen()

    def lit(self, v):
        if v is None:
            return "NULL"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return "'" + v.replace("'", "''") + "'"
        return str(v)

    def t1_row(self):
        i = self.next_id["t1"]
        self.next_id["t1"] += 1
        r = self.rng
        return (i, self.val(lambda: r.randint(0, 6)), self.val(lambda: r.choice(["a", "bb", "ccc", "dd", "e", ""])),
                self.val(lambda: r.randint(-5, 30)), self.val(lambda: round(r.uniform(-10, 10), 2)),
                self.val(lambda: decimal.Decimal(r.randint(-10000, 10000)) / 100), self.val(lambda: r.random() < 0.5))

    def t2_row(self):
        i = self.next_id["t2"]
        self.next_id["t2"] += 1
        r = self.rng
        return (i, self.val(lambda: r.randint(0, 6)), self.val(lambda: r.randint(0, 12)),
                self.val(lambda: r.choice(["x", "y", "z"])))

    def t3_row(self):
        r = self.rng
        return (self.val(lambda: r.randint(1, 8), 0.1), self.val(lambda: r.randint(0, 20)))

    def insert(self, table, rows):
        values = ", ".join("(" + ", ".join(self.lit(v) for v in row) + ")" for row in rows)
        return f"INSERT INTO {table} VALUES {values}"

    def step(self, pg):
        """A batch of 1-6 statements, chosen against PostgreSQL's current state."""
        r = self.rng
        stmts = []
        for _ in range(r.randint(1, 6)):
            kind = r.choice(["ins1", "ins1", "ins2", "ins3", "upd_group", "upd_val", "del_extreme", "del_some",
                             "upd2", "del2", "del3", "upd3"])
            if kind == "ins1":
                stmts.append(self.insert("t1", [self.t1_row() for _ in range(r.randint(1, 8))]))
            elif kind == "ins2":
                stmts.append(self.insert("t2", [self.t2_row() for _ in range(r.randint(1, 4))]))
            elif kind == "ins3":
                stmts.append(self.insert("t3", [self.t3_row() for _ in range(r.randint(1, 4))]))
            elif kind == "upd_group":  # moves rows between groups
                stmts.append(f"UPDATE t1 SET g = {self.lit(self.val(lambda: r.randint(0, 6)))} WHERE id % 7 = {r.randint(0, 6)}")
            elif kind == "upd_val":
                stmts.append(f"UPDATE t1 SET v = v + {r.randint(-5, 5)}, s = 'u' || coalesce(s, '') WHERE g = {r.randint(0, 6)}")
            elif kind == "del_extreme":  # delete the rows holding the current MIN or MAX of a group
                g = r.randint(0, 6)
                fn = r.choice(["min", "max"])
                ext = pg.execute(f"SELECT {fn}(v) FROM t1 WHERE g = {g}").fetchone()[0]
                if ext is not None:
                    stmts.append(f"DELETE FROM t1 WHERE g = {g} AND v = {ext}")
            elif kind == "del_some":
                stmts.append(f"DELETE FROM t1 WHERE id % 11 = {r.randint(0, 10)}")
            elif kind == "upd2":
                stmts.append(f"UPDATE t2 SET g = {r.randint(0, 6)}, w = {r.randint(0, 12)} WHERE id % 5 = {r.randint(0, 4)}")
            elif kind == "del2":
                stmts.append(f"DELETE FROM t2 WHERE id % 6 = {r.randint(0, 5)}")
            elif kind == "del3":
                stmts.append(f"DELETE FROM t3 WHERE x = {r.randint(0, 20)}")
            elif kind == "upd3":
                stmts.append(f"UPDATE t3 SET x = x + 1 WHERE k = {r.randint(1, 8)}")
        return stmts


def assert_views_match(f, p, step):
    for name, query in VIEWS.items():
        got, expected = rows(f, f"SELECT * FROM {name}"), rows(p, query)
        assert got == expected, f"step {step}: view {name} ({query})\nfreshet-only: {got - expected}\npostgres-only: {expected - got}"
    for name, (_, pg_query) in VIEWS_ON_VIEWS.items():
        got, expected = rows(f, f"SELECT * FROM {name}"), rows(p, pg_query)
        assert got == expected, f"step {step}: view {name}\nfreshet-only: {got - expected}\npostgres-only: {expected - got}"


def test_views_match_postgres_under_random_changes(freshet, postgres):
    data = Data(seed=20261124)
    with freshet.connect() as f, postgres.connect() as p:
        p.execute("DROP TABLE IF EXISTS t1, t2, t3")
        for ddl in TABLES:
            f.execute(ddl)
            p.execute(ddl)
        # Some rows before the views exist: creation backfills them.
        for stmt in [data.insert("t1", [data.t1_row() for _ in range(20)]),
                     data.insert("t2", [data.t2_row() for _ in range(6)]),
                     data.insert("t3", [data.t3_row() for _ in range(6)])]:
            f.execute(stmt)
            p.execute(stmt)
        for name, query in VIEWS.items():
            f.execute(f"CREATE MATERIALIZED VIEW {name} AS {query}")
        for name, (query, _) in VIEWS_ON_VIEWS.items():
            f.execute(f"CREATE MATERIALIZED VIEW {name} AS {query}")
        assert_views_match(f, p, "backfill")
        for step in range(60):
            for stmt in data.step(p):
                p.execute(stmt)
                f.execute(stmt)
            assert_views_match(f, p, step)
        # Emptying a table retracts everything; global aggregates keep their row.
        for stmt in ["TRUNCATE t3", "DELETE FROM t1"]:
            p.execute(stmt)
            f.execute(stmt)
        assert_views_match(f, p, "emptied")


def test_views_survive_restart_without_recompute(freshet):
    with freshet.connect() as c:
        c.execute("CREATE TABLE r (id INT PRIMARY KEY, g INT, v INT)")
        c.execute("INSERT INTO r SELECT value AS id, value % 10 AS g, value AS v FROM generate_series(1, 1000) AS t(value)")
        c.execute("CREATE MATERIALIZED VIEW rv AS SELECT g, count(*) AS c, max(v) AS m FROM r GROUP BY g")
        c.execute("CREATE MATERIALIZED VIEW rv2 AS SELECT sum(c) AS total FROM rv")
        before = sorted(c.execute("SELECT * FROM rv").fetchall())
    freshet.kill9()
    freshet.start()
    with freshet.connect() as c:
        # Startup re-plans the views from their SQL and reads no table rows, view rows or
        # operator state: nothing is recomputed. (The counter does count reads: see below.)
        metric = "SELECT value FROM freshet_internal.metrics WHERE name = 'state_entries_read_at_startup'"
        assert c.execute(metric).fetchone() == (0,)
        total = "SELECT value FROM freshet_internal.metrics WHERE name = 'state_entries_read'"
        assert c.execute(total).fetchone() == (0,)
        assert sorted(c.execute("SELECT * FROM rv").fetchall()) == before
        assert c.execute(total).fetchone()[0] >= 10
        assert c.execute("SELECT * FROM rv2").fetchone() == (1000,)
        # and maintenance continues from the persisted state
        c.execute("DELETE FROM r WHERE v = 1000")
        assert c.execute("SELECT c, m FROM rv WHERE g = 0").fetchone() == (99, 990)
        assert c.execute("SELECT * FROM rv2").fetchone() == (999,)


def test_failed_epoch_leaves_no_trace_in_cached_state(freshet):
    # Operators cache their state in memory, written through to each epoch's batch. An epoch
    # that fails in a later view must not leave the earlier views' caches ahead of the store.
    with freshet.connect() as c:
        c.execute("CREATE TABLE f (id INT PRIMARY KEY, g INT, v INT)")
        c.execute("CREATE TABLE names (g INT PRIMARY KEY, name TEXT)")
        c.execute("INSERT INTO names VALUES (1, 'one'), (2, 'two')")
        c.execute("INSERT INTO f VALUES (1, 1, 10), (2, 2, 20)")
        c.execute("CREATE MATERIALIZED VIEW fa AS SELECT g, count(*) AS c, sum(v) AS s, min(v) AS lo FROM f GROUP BY g")
        c.execute("CREATE MATERIALIZED VIEW fj AS SELECT n.name, count(*) AS c FROM f JOIN names n ON f.g = n.g GROUP BY n.name")
        # fails (21000) once two groups have two rows: its scalar subquery returns both
        c.execute("CREATE MATERIALIZED VIEW fz AS SELECT (SELECT g FROM fa WHERE c >= 2) AS x")
        with pytest.raises(psycopg.Error) as e:
            c.execute("INSERT INTO f VALUES (3, 1, 5), (5, 2, 6)")
        assert e.value.sqlstate == "21000"
        c.execute("DROP MATERIALIZED VIEW fz")
        c.execute("INSERT INTO f VALUES (4, 1, 7)")
        assert sorted(c.execute("SELECT * FROM fa").fetchall()) == [(1, 2, 17, 7), (2, 1, 20, 20)]
        assert sorted(c.execute("SELECT * FROM fj").fetchall()) == [("one", 2), ("two", 1)]
        assert c.execute("SELECT count(*) FROM f").fetchone() == (3,)


def test_kill9_during_dml_stream_keeps_views_exact(freshet):
    """kill -9 while a client streams DML: after restart every view equals its recompute."""
    import threading
    with freshet.connect() as c:
        c.execute("CREATE TABLE k (id INT PRIMARY KEY, g INT, v INT)")
        c.execute("CREATE MATERIALIZED VIEW kv AS SELECT g, count(*) AS c, sum(v) AS s, min(v) AS mn FROM k GROUP BY g")
        c.execute("CREATE MATERIALIZED VIEW kj AS SELECT a.id, b.id AS bid FROM k a JOIN k b ON a.g = b.g AND a.id + 1 = b.id")
    stop = threading.Event()

    def writer():
        i = 0
        try:
            with freshet.connect() as w:
                while not stop.is_set():
                    i += 1
                    w.execute(f"INSERT INTO k VALUES ({i}, {i % 7}, {i})")
                    if i % 3 == 0:
                        w.execute(f"DELETE FROM k WHERE id = {i - 2}")
                    if i % 5 == 0:
                        w.execute(f"UPDATE k SET g = g + 1 WHERE id = {i - 1}")
        except psycopg.Error:
            pass

    t = threading.Thread(target=writer)
    t.start()
    import time
    with freshet.connect() as c:
        deadline = time.monotonic() + 60
        seen = 0
        while seen < 150 and time.monotonic() < deadline:
            c.execute("FLUSH")
            seen = c.execute("SELECT count(*) FROM k").fetchone()[0]
    freshet.kill9()
    stop.set()
    t.join()
    freshet.start()
    with freshet.connect() as c:
        assert rows(c, "SELECT * FROM kv") == rows(c, "SELECT g, count(*), sum(v), min(v) FROM k GROUP BY g")
        assert rows(c, "SELECT * FROM kj") == rows(c, "SELECT a.id, b.id FROM k a JOIN k b ON a.g = b.g AND a.id + 1 = b.id")
        # every committed statement survived: in this stream the row count only ever drops by
        # the one DELETE right after an INSERT, so it never falls more than 1 below any count
        # seen before
        assert seen >= 150
        assert c.execute("SELECT count(*) FROM k").fetchone()[0] >= seen - 1


@pytest.mark.parametrize("query,construct", [
    ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r", "WITH RECURSIVE"),
    ("SELECT v, count(*) FROM t GROUP BY ROLLUP (v)", "GROUPING SETS"),
    ("SELECT id, random() FROM t", "random"),
    ("SELECT id, now() FROM t", "now"),
    # the text of a timestamptz follows the session's time zone
    ("SELECT id, to_char(CAST(s AS TIMESTAMPTZ), 'YYYY-MM-DD HH24') FROM t", "to_char"),
    ("SELECT sum(v + (SELECT max(v) FROM t)) FROM t", "scalar subquery"),
    ("SELECT string_agg(s, v::text) FROM t", "non-constant delimiter"),
])
def test_unsupported_view_shapes_are_refused(freshet, query, construct):
    with freshet.connect() as c:
        c.execute("CREATE TABLE t (id INT PRIMARY KEY, v INT, s TEXT)")
        with pytest.raises(errors.FeatureNotSupported) as e:
            c.execute(f"CREATE MATERIALIZED VIEW bad AS {query}")
        assert construct in str(e.value)
        # nothing half-created
        assert c.execute("SHOW MATERIALIZED VIEWS").fetchall() == []


def test_view_lifecycle(freshet):
    with freshet.connect() as c:
        c.execute("CREATE TABLE base (id INT PRIMARY KEY, v INT)")
        c.execute("CREATE MATERIALIZED VIEW a AS SELECT v, count(*) AS c FROM base GROUP BY v")
        c.execute("CREATE MATERIALIZED VIEW b AS SELECT sum(c) AS s FROM a")
        with pytest.raises(errors.DuplicateTable):
            c.execute("CREATE MATERIALIZED VIEW a AS SELECT 1")
        c.execute("CREATE MATERIALIZED VIEW IF NOT EXISTS a AS SELECT 1")
        with pytest.raises(errors.DependentObjectsStillExist):
            c.execute("DROP MATERIALIZED VIEW a")
        with pytest.raises(errors.DependentObjectsStillExist):
            c.execute("DROP TABLE base")
        assert [r[0] for r in c.execute("SHOW MATERIALIZED VIEWS").fetchall()] == ["a", "b"]
        plan = "\n".join(r[0] for r in c.execute("EXPLAIN CREATE MATERIALIZED VIEW e AS SELECT v, count(*) FROM base WHERE v > 1 GROUP BY v").fetchall())
        assert "Aggregate" in plan and "Filter" in plan and "Scan: base" in plan
        # The root aggregate keeps its state in the view's rows; under HAVING it cannot (a
        # group can lose its row and keep its state).
        assert "Contents: one entry per group" in plan
        having = "\n".join(r[0] for r in c.execute("EXPLAIN CREATE MATERIALIZED VIEW e AS SELECT v, count(*) FROM base GROUP BY v HAVING count(*) > 1").fetchall())
        assert "Aggregate" in having and "Contents: one entry per group" not in having
        c.execute("DROP MATERIALIZED VIEW a CASCADE")
        assert c.execute("SHOW MATERIALIZED VIEWS").fetchall() == []
        c.execute("DROP MATERIALIZED VIEW IF EXISTS a")
        with pytest.raises(errors.UndefinedTable):
            c.execute("DROP MATERIALIZED VIEW a")
        c.execute("CREATE MATERIALIZED VIEW a2 AS SELECT v FROM base")
        c.execute("DROP TABLE base CASCADE")
        assert c.execute("SHOW MATERIALIZED VIEWS").fetchall() == []
        assert c.execute("FLUSH").statusmessage == "FLUSH"


def test_metrics_say_where_rocksdb_memory_is(freshet):
    query = "SELECT name, value FROM freshet_internal.metrics WHERE name LIKE 'rocksdb%'"
    with freshet.connect() as c:
        before = dict(c.execute(query).fetchall())
        assert set(before) == {
            "rocksdb_memtable_bytes", "rocksdb_table_reader_bytes", "rocksdb_block_cache_bytes",
            "rocksdb_block_cache_pinned_bytes", "rocksdb_table_files",
        }
        c.execute("CREATE TABLE m (id BIGINT PRIMARY KEY, s TEXT)")
        c.execute("INSERT INTO m SELECT value, repeat('x', 100) FROM generate_series(1, 20000) AS t(value)")
        after = dict(c.execute(query).fetchall())
        # 20,000 rows of ~100 bytes sit in a memtable until flushed.
        assert after["rocksdb_memtable_bytes"] > before["rocksdb_memtable_bytes"] + 1_000_000
        assert all(v >= 0 for v in after.values())


def test_contents_log_budget_bounds_all_views_together(tmp_path):
    """The contents log budget (1 MiB here) bounds the logs of all aggregate views together
    (they share one memtable sized to it): two views each logging ~0.6-1 MB, under the budget
    alone but over it together, are folded without any reader asking."""
    from conftest import Freshet

    server = Freshet(tmp_path, env={"FRESHET_CONTENTS_LOG_MB": "1"}).start()
    try:
        with server.connect() as c:
            c.execute("CREATE TABLE t (id INT PRIMARY KEY, g INT, v INT)")
            for name in ("va", "vb"):
                c.execute(f"CREATE MATERIALIZED VIEW {name} AS SELECT g, count(*) AS n, "
                          "sum(v) AS s, min(v) AS lo, max(v) AS hi FROM t GROUP BY g")
            over_budget = ("SELECT value FROM freshet_internal.metrics "
                           "WHERE name = 'contents_log_folds_over_budget'")
            before = c.execute(over_budget).fetchone()[0]
            # 9,000 changed groups of 70-110 logged bytes per view, in three epochs.
            for lo in (0, 3000, 6000):
                c.execute("INSERT INTO t SELECT value, value + 0, value % 997 "
                          f"FROM generate_series({lo}, {lo + 2999}) AS s(value)")
            assert c.execute(over_budget).fetchone()[0] > before
            expected = sorted((i, 1, i % 997, i % 997, i % 997) for i in range(9000))
            for name in ("va", "vb"):
                assert sorted(c.execute(f"SELECT g, n, s, lo, hi FROM {name}").fetchall()) == expected
    finally:
        server.stop()


def test_contents_log_folds_keep_aggregate_views_exact(tmp_path):
    """An aggregate view logs each epoch's changed groups in one entry and folds them into the
    groups' own entries: when the log passes its budget (1 MiB here), before a statement
    reads, and before the next epoch once a failed epoch or a restart lost the cache that held
    the groups. After each, the view equals the recompute."""
    from conftest import Freshet

    server = Freshet(tmp_path, env={"FRESHET_CONTENTS_LOG_MB": "1"}).start()
    rows = {}

    def expected():
        groups = {}
        for g, v in rows.values():
            n, s, lo, hi = groups.get(g, (0, 0, v, v))
            groups[g] = (n + 1, s + v, min(lo, v), max(hi, v))
        return sorted((g, *agg) for g, agg in groups.items())

    def insert(c, lo, hi):
        c.execute("INSERT INTO t SELECT value, value % 40000, value % 997 "
                  f"FROM generate_series({lo}, {hi}) AS s(value)")
        rows.update({i: (i % 40000, i % 997) for i in range(lo, hi + 1)})

    def folds(c):
        return dict(c.execute("SELECT name, value FROM freshet_internal.metrics "
                              "WHERE name LIKE 'contents_log_folds%'").fetchall())

    view = "SELECT g, n, s, lo, hi FROM tg"
    try:
        with server.connect() as c:
            c.execute("CREATE TABLE t (id INT PRIMARY KEY, g INT, v INT)")
            c.execute("CREATE MATERIALIZED VIEW tg AS SELECT g, count(*) AS n, sum(v) AS s, "
                      "min(v) AS lo, max(v) AS hi FROM t GROUP BY g")
            plan = "\n".join(r[0] for r in c.execute(
                "EXPLAIN CREATE MATERIALIZED VIEW x AS SELECT g, count(*) FROM t GROUP BY g"))
            assert "Contents log" in plan
            # ~100k changed groups of ~80 logged bytes: several times the budget, no reader.
            for k in range(20):
                insert(c, k * 5000, k * 5000 + 4999)
            assert folds(c)["contents_log_folds_over_budget"] >= 3
            assert sorted(c.execute(view).fetchall()) == expected()
            # Two groups reaching four rows make the dependent view fail its epoch (21000: its
            # scalar subquery returns both): the cache is dropped, and the groups only the log
            # holds are folded before the next epoch.
            c.execute("CREATE MATERIALIZED VIEW fz AS SELECT (SELECT g FROM tg WHERE n >= 4) AS x")
            insert(c, 100000, 100099)
            lost = folds(c)["contents_log_folds_after_loss"]
            insert(c, 100100, 100199)  # logged, not read before the failure
            with pytest.raises(psycopg.Error) as e:
                # groups 7 and 8 had three rows
                c.execute("INSERT INTO t VALUES (200000, 7, 1), (200001, 8, 1)")
            assert e.value.sqlstate == "21000"
            c.execute("DROP MATERIALIZED VIEW fz")
            insert(c, 100200, 100299)
            assert folds(c)["contents_log_folds_after_loss"] == lost + 1
            assert sorted(c.execute(view).fetchall()) == expected()
            # Logged and never read: kill -9, then the restarted server folds what the log holds.
            c.execute("DELETE FROM t WHERE id < 300")
            for i in range(300):
                rows.pop(i)
            insert(c, 100300, 100399)
        server.kill9()
        server.start()
        with server.connect() as c:
            metric = "SELECT value FROM freshet_internal.metrics WHERE name = 'state_entries_read_at_startup'"
            assert c.execute(metric).fetchone() == (0,)
            assert sorted(c.execute(view).fetchall()) == expected()
            insert(c, 100400, 100499)
            assert sorted(c.execute(view).fetchall()) == expected()
    finally:
        server.stop()


def test_staged_min_max_values_are_in_state_before_a_retraction(tmp_path):
    """MIN/MAX arrivals of an aggregate view ride in its contents log (staged) until a fold
    writes them into the aggregate's state. An epoch that retracts a value must see them: it
    folds first and runs again. Staged values logged before a kill -9 are folded at restart,
    and an occurrence staged after a restart never takes the place of one staged before it
    (its id carries the epoch's sequence number, not only a per-process counter)."""
    from conftest import Freshet

    server = Freshet(tmp_path).start()
    view = "SELECT g, lo, hi, n FROM m ORDER BY g"

    def retraction_folds(c):
        return c.execute("SELECT value FROM freshet_internal.metrics "
                         "WHERE name = 'contents_log_folds_for_retractions'").fetchone()[0]

    try:
        with server.connect() as c:
            c.execute("CREATE TABLE t (id INT PRIMARY KEY, g INT, v INT)")
            c.execute("CREATE MATERIALIZED VIEW m AS SELECT g, min(v) AS lo, max(v) AS hi, "
                      "count(*) AS n FROM t GROUP BY g")
            # The first occurrence this process stages: counter 0; folded for the reader.
            c.execute("INSERT INTO t VALUES (10, 2, 3)")
            assert c.execute(view).fetchall() == [(2, 3, 3, 1)]
        server.stop()
        server.start()
        with server.connect() as c:
            # Counter 0 again after the restart, in another epoch; no reader before the DELETE.
            c.execute("INSERT INTO t VALUES (11, 2, 3)")
            for i, v in enumerate([5, 7, 9]):
                c.execute(f"INSERT INTO t VALUES ({i}, 1, {v})")
            before = retraction_folds(c)
            c.execute("DELETE FROM t WHERE id IN (0, 10)")  # group 1's MIN, one of group 2's 3s
            assert retraction_folds(c) == before + 1
            assert c.execute(view).fetchall() == [(1, 7, 9, 2), (2, 3, 3, 1)]
            c.execute("DELETE FROM t WHERE id = 2")  # group 1's MAX
            assert c.execute(view).fetchall() == [(1, 7, 7, 1), (2, 3, 3, 1)]
            # Staged, never read, then kill -9: the restarted server folds the log first.
            c.execute("INSERT INTO t VALUES (20, 3, 1)")
            c.execute("INSERT INTO t VALUES (21, 3, 2)")
        server.kill9()
        server.start()
        with server.connect() as c:
            c.execute("DELETE FROM t WHERE id = 20")
            assert c.execute(view).fetchall() == [(1, 7, 7, 1), (2, 3, 3, 1), (3, 2, 2, 1)]
            c.execute("DELETE FROM t WHERE id IN (1, 21)")
            assert c.execute(view).fetchall() == [(2, 3, 3, 1)]
    finally:
        server.stop()


def test_a_row_a_view_cannot_evaluate_does_not_fail_the_write(freshet):
    """A write whose row one view cannot evaluate commits; that view leaves the row out and
    records it, every other view has it, and a later delete of the row leaves no trace."""
    c = freshet.connect()
    c.execute("CREATE TABLE d (id INT PRIMARY KEY, x INT)")
    c.execute("CREATE MATERIALIZED VIEW inv AS SELECT id, 100 / x AS q FROM d")
    c.execute("CREATE MATERIALIZED VIEW cnt AS SELECT count(*) AS n, sum(x) AS s FROM d")
    c.execute("CREATE MATERIALIZED VIEW j AS SELECT a.id, b.x FROM d a JOIN d b ON 100 / a.x = b.x")
    c.execute("CREATE MATERIALIZED VIEW top AS SELECT id FROM d ORDER BY 100 / x LIMIT 2")
    c.execute("INSERT INTO d VALUES (1, 4), (2, 0), (3, 5), (25, 25)")
    assert sorted(c.execute("SELECT * FROM inv").fetchall()) == [(1, 25), (3, 20), (25, 4)]
    assert c.execute("SELECT n, s FROM cnt").fetchone() == (4, 34)
    assert sorted(c.execute("SELECT * FROM j").fetchall()) == [(1, 25), (25, 4)]
    assert sorted(c.execute("SELECT * FROM top").fetchall()) == [(3,), (25,)]  # 20 and 4
    errs = c.execute("SELECT view, weight FROM freshet_internal.view_errors ORDER BY view").fetchall()
    assert errs == [("inv", 1), ("j", 1), ("top", 1)], errs
    assert "(2, 0)" in c.execute("SELECT row FROM freshet_internal.view_errors WHERE view = 'inv'").fetchone()[0]
    c.execute("DELETE FROM d WHERE id = 2")  # its retraction fails the same way: left out too
    assert sorted(c.execute("SELECT * FROM inv").fetchall()) == [(1, 25), (3, 20), (25, 4)]
    assert c.execute("SELECT n, s FROM cnt").fetchone() == (3, 34)
    assert sorted(c.execute("SELECT * FROM j").fetchall()) == [(1, 25), (25, 4)]
    c.execute("DROP MATERIALIZED VIEW inv")
    c.execute("DROP MATERIALIZED VIEW j")
    c.execute("DROP MATERIALIZED VIEW top")
    assert c.execute("SELECT count(*) FROM freshet_internal.view_errors").fetchone() == (0,)
