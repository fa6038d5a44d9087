"""Views (`CREATE VIEW`): named queries read at each use, side by side with PostgreSQL.

The same statements run in freshet and in a PostgreSQL database of their own: every query
must give the same rows, every statement the same outcome (its SQLSTATE, or success), after
DML, with views on views, a materialized view over views, CREATE OR REPLACE, DROP with
dependents, and in freshet after a kill -9. Privileges follow PostgreSQL's rule: a reader
needs SELECT on the view; the view reads what is under it as its owner.
"""
import psycopg
import pytest

SETUP = [
    "CREATE TABLE t (id int PRIMARY KEY, g text, v int)",
    "CREATE TABLE u (id int PRIMARY KEY, t_id int, w numeric(10,2))",
    "INSERT INTO t VALUES (1, 'a', 5), (2, 'a', 12), (3, 'b', 7), (4, NULL, -1)",
    "INSERT INTO u VALUES (10, 1, 1.50), (11, 2, 20), (12, 2, 0.25), (13, 9, 3)",
    "CREATE VIEW pos AS SELECT id, g, v * 2 AS dv FROM t WHERE v > 0",
    "CREATE VIEW per_g (grp, total, n) AS SELECT g, sum(dv), count(*) FROM pos GROUP BY g",
    "CREATE VIEW joined AS SELECT pos.id, pos.g, u.w FROM pos JOIN u ON u.t_id = pos.id",
    "CREATE VIEW now_ish AS SELECT id, v, v > 6 AS big FROM t",
    "CREATE MATERIALIZED VIEW kept AS SELECT grp, total, n FROM per_g WHERE total > 0",
]

QUERIES = [
    "SELECT * FROM pos ORDER BY id",
    "SELECT * FROM per_g ORDER BY grp",
    "SELECT grp, total FROM per_g WHERE grp = 'a'",
    "SELECT id, w FROM joined ORDER BY id, w",
    "SELECT count(*), sum(w) FROM joined",
    "SELECT p.id, t.v FROM pos p JOIN t ON t.id = p.id WHERE p.dv > 10 ORDER BY 1",
    "SELECT id FROM pos ORDER BY dv DESC LIMIT 2",
    "SELECT * FROM (SELECT g, max(dv) AS m FROM pos GROUP BY g) x ORDER BY g",
    "SELECT id FROM t WHERE id IN (SELECT id FROM pos WHERE g = 'a') ORDER BY id",
    "SELECT * FROM now_ish WHERE big ORDER BY id",
    "SELECT * FROM kept ORDER BY grp",
    "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = 'public' AND c.relkind IN ('v', 'm') ORDER BY 1",
    "SELECT table_name, check_option FROM information_schema.views "
    "WHERE table_schema = 'public' ORDER BY 1",
    "SELECT table_name, table_type FROM information_schema.tables "
    "WHERE table_schema = 'public' AND table_name IN ('pos', 't') ORDER BY 1",
    "SELECT viewname, definition LIKE '%FROM%' FROM pg_views WHERE schemaname = 'public' ORDER BY 1",
    "SELECT matviewname, ispopulated, hasindexes FROM pg_matviews WHERE schemaname = 'public'",
    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
    "WHERE attrelid = 'joined'::regclass AND attnum > 0 ORDER BY attnum",
]

CHANGES = [
    "INSERT INTO t VALUES (5, 'b', 30), (6, 'c', 1)",
    "UPDATE t SET v = -v WHERE id = 2",
    "DELETE FROM t WHERE id = 3",
    "UPDATE u SET t_id = 5 WHERE id = 13",
]

# Statements whose outcome (SQLSTATE or success) must be PostgreSQL's.
OUTCOMES = [
    "CREATE VIEW pos AS SELECT 1 AS x",
    "CREATE VIEW t AS SELECT 1 AS x",
    "CREATE OR REPLACE VIEW t AS SELECT 1 AS x",
    "CREATE VIEW bad AS SELECT nope FROM t",
    "CREATE VIEW bad AS SELECT * FROM missing",
    "CREATE VIEW dup AS SELECT id, id FROM t",
    "CREATE VIEW toomany (a, b, c, d) AS SELECT id, v FROM t",
    "CREATE OR REPLACE VIEW pos AS SELECT id, g FROM t",
    "CREATE OR REPLACE VIEW pos AS SELECT id, v AS g, v * 2 AS dv FROM t",
    "CREATE OR REPLACE VIEW pos AS SELECT id, g, v * 2 AS dv2 FROM t",
    "CREATE OR REPLACE VIEW now_ish AS SELECT id, v, v > 6 AS big, g FROM t",
    "DROP TABLE t",
    "DROP VIEW pos",
    "DROP VIEW t",
    "DROP TABLE pos",
    "DROP MATERIALIZED VIEW pos",
    "DROP VIEW kept",
    "DROP VIEW missing",
    "DROP VIEW IF EXISTS missing",
    "DROP VIEW IF EXISTS t",
    "CREATE VIEW partial (x) AS SELECT id, v FROM t",
    "DROP VIEW partial",
]


@pytest.fixture
def pg_views(postgres):
    with postgres.connect() as c:
        c.execute("DROP DATABASE IF EXISTS views_check WITH (FORCE)")
        c.execute("CREATE DATABASE views_check")
    dsn = f"host=127.0.0.1 port={postgres.port} dbname=views_check user=postgres"
    yield dsn
    with postgres.connect() as c:
        c.execute("DROP DATABASE IF EXISTS views_check WITH (FORCE)")


def outcome(conn, sql):
    try:
        cur = conn.execute(sql)
        return "ok", cur.fetchall() if cur.description else None
    except psycopg.Error as e:
        return e.sqlstate, None


def answers(conn):
    return [(q, outcome(conn, q)) for q in QUERIES]


def test_views_read_like_postgresql_through_changes_replace_and_drop(freshet, pg_views):
    with freshet.connect() as f, psycopg.connect(pg_views, autocommit=True) as p:
        for s in SETUP:
            f.execute(s)
            p.execute(s)

        def same(what):
            f.execute("FLUSH")
            p.execute("REFRESH MATERIALIZED VIEW kept")  # PostgreSQL's is a snapshot
            got, want = answers(f), answers(p)
            for (q, g), (_, w) in zip(got, want):
                assert g == w, f"{what}: {q}\n  freshet:    {g}\n  postgresql: {w}"

        same("created")
        for s in CHANGES:
            f.execute(s)
            p.execute(s)
            same(s)
        # pg_get_viewdef gives back a query PostgreSQL runs to the same rows.
        viewdef = f.execute("SELECT pg_get_viewdef('per_g'::regclass)").fetchone()[0]
        assert "public.pos" in viewdef and viewdef.rstrip().endswith(";")
        assert p.execute(viewdef.rstrip().rstrip(";")).fetchall() == p.execute(
            "SELECT * FROM per_g").fetchall()
        for s in OUTCOMES:
            got, want = outcome(f, s)[0], outcome(p, s)[0]
            assert got == want, f"{s}: freshet {got}, postgresql {want}"
        same("after the outcomes")
        # CASCADE drops the views and the materialized view over them, in both.
        for conn in (f, p):
            conn.execute("DROP VIEW pos CASCADE")
        for name in ("pos", "per_g", "joined", "kept"):
            assert outcome(f, f"SELECT * FROM {name}")[0] == "42P01"
        assert f.execute("SELECT * FROM now_ish ORDER BY id").fetchall() == p.execute(
            "SELECT * FROM now_ish ORDER BY id").fetchall()


def test_views_outlive_a_crash_and_keep_their_materialized_readers_maintained(freshet):
    with freshet.connect() as c:
        for s in SETUP:
            c.execute(s)
        c.execute("FLUSH")
        before = [c.execute(q).fetchall() for q in QUERIES[:11]]
    freshet.kill9()
    freshet.start()
    with freshet.connect() as c:
        assert [c.execute(q).fetchall() for q in QUERIES[:11]] == before
        c.execute("INSERT INTO t VALUES (7, 'a', 100)")
        c.execute("FLUSH")
        assert c.execute("SELECT total, n FROM kept WHERE grp = 'a'").fetchone() == (234, 3)
        assert c.execute("SELECT total, n FROM per_g WHERE grp = 'a'").fetchone() == (234, 3)


def test_a_view_reads_as_its_owner_and_needs_select_on_itself(freshet):
    with freshet.connect() as c:
        c.execute("CREATE TABLE secret (id int PRIMARY KEY, note text)")
        c.execute("INSERT INTO secret VALUES (1, 'x'), (2, 'y')")
        c.execute("CREATE VIEW open_ids AS SELECT id FROM secret")
        c.execute("CREATE ROLE reader LOGIN")
        c.execute("CREATE ROLE maker LOGIN")
        c.execute("GRANT CREATE ON SCHEMA public TO maker")
    reader = freshet.dsn().replace("user=tester", "user=reader")
    maker = freshet.dsn().replace("user=tester", "user=maker")
    with psycopg.connect(reader, autocommit=True) as r:
        with pytest.raises(psycopg.Error) as e:
            r.execute("SELECT * FROM open_ids")
        assert e.value.sqlstate == "42501" and "view open_ids" in str(e.value)
    with freshet.connect() as c:
        c.execute("GRANT SELECT ON open_ids TO reader")
    with psycopg.connect(reader, autocommit=True) as r:
        # The view's owner may read the table; the reader needs nothing on it.
        assert r.execute("SELECT id FROM open_ids ORDER BY id").fetchall() == [(1,), (2,)]
        with pytest.raises(psycopg.Error) as e:
            r.execute("SELECT * FROM secret")
        assert e.value.sqlstate == "42501"
        with pytest.raises(psycopg.Error) as e:
            r.execute("DROP VIEW open_ids")
        assert e.value.sqlstate == "42501"
    with psycopg.connect(maker, autocommit=True) as m:
        # A view whose owner may not read the table cannot be read through, by anyone.
        m.execute("CREATE VIEW peek AS SELECT note FROM secret")
        with pytest.raises(psycopg.Error) as e:
            m.execute("SELECT * FROM peek")
        assert e.value.sqlstate == "42501" and "table secret" in str(e.value)
    with freshet.connect() as c:
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT * FROM peek")
        assert e.value.sqlstate == "42501"
