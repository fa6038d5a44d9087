"""What pg_dump and administration tools send besides plain queries: SQL-level PREPARE /
EXECUTE / DEALLOCATE, set_config, LOCK ... IN ACCESS SHARE MODE, the session settings pg_dump
sets, `tableoid`, `"char"` casts, acldefault, pg_get_viewdef, quote_literal,
pg_options_to_table and the catalogs that are always empty. Each check runs against freshet
and against PostgreSQL, which must answer the same."""

import psycopg
import pytest

SCHEMA = [
    "CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL)",
    "INSERT INTO t VALUES (1, 'one'), (2, 'two')",
    "CREATE MATERIALIZED VIEW mv AS SELECT name, count(*) AS n FROM t GROUP BY name",
]


@pytest.fixture
def pg_dsn(postgres):
    """A database of its own in the PostgreSQL oracle."""
    with postgres.connect() as c:
        c.execute("DROP DATABASE IF EXISTS tools_check")
        c.execute("CREATE DATABASE tools_check")
    yield f"host=127.0.0.1 port={postgres.port} dbname=tools_check user=postgres"
    with postgres.connect() as c:
        c.execute("DROP DATABASE IF EXISTS tools_check WITH (FORCE)")


def outcome(conn, sql):
    """Rows, or the SQLSTATE of the error (the transaction, if any, is rolled back)."""
    try:
        cur = psycopg.ClientCursor(conn)
        cur.execute(sql)
        return cur.fetchall() if cur.description else cur.statusmessage
    except psycopg.Error as e:
        if not conn.autocommit:
            conn.rollback()
        return e.sqlstate


CHECKS = [
    # SQL-level prepared statements.
    "PREPARE q(int) AS SELECT id, name FROM t WHERE id = $1",
    "EXECUTE q(2)",
    "EXECUTE q('1')",
    "PREPARE q(int) AS SELECT 1",
    "EXECUTE q(1, 2)",
    "EXECUTE nosuch(1)",
    "PREPARE two(text, int) AS SELECT $1 || '-' || $2",
    "EXECUTE two('a', 7)",
    "DEALLOCATE q",
    "EXECUTE q(1)",
    "DEALLOCATE PREPARE two",
    "PREPARE r AS SELECT count(*) FROM t",
    "PREPARE \"Mixed\" AS SELECT 'quoted'",
    "PREPARE Upper AS SELECT 'folded'",
    "EXECUTE upper",
    "EXECUTE \"Mixed\"",
    "EXECUTE mixed",
    "DEALLOCATE ALL",
    "EXECUTE r",
    # set_config and the settings pg_dump makes.
    "SELECT set_config('application_name', 'dumper', false)",
    "SELECT current_setting('application_name')",
    "SELECT set_config('application_name', 'again', true)",
    "SET lock_timeout = 0",
    "SET row_security = off",
    "SHOW row_security",
    "SET row_security = maybe",
    "SET synchronize_seqscans TO off",
    "SHOW synchronize_seqscans",
    "SET idle_in_transaction_session_timeout = 0",
    # LOCK outside a transaction block.
    "LOCK TABLE t IN ACCESS SHARE MODE",
    # System columns, catalog types and functions.
    "SELECT c.tableoid = (SELECT oid FROM pg_class WHERE relname = 'pg_class') FROM pg_class c WHERE c.relname = 't'",
    "SELECT n.tableoid = 'pg_namespace'::regclass, nspname FROM pg_namespace n WHERE nspname = 'public'",
    "SELECT tableoid = 'pg_catalog.pg_class'::regclass FROM pg_class WHERE relname = 'mv'",
    "SELECT 'r'::\"char\", CASE WHEN 1 = 1 THEN 'S'::\"char\" ELSE 'r'::\"char\" END",
    "SELECT relkind FROM pg_class WHERE relname = 't' AND relkind = 'r'::\"char\"",
    "SELECT quote_literal('O''Reilly'), quote_literal('a\\b'), quote_literal(NULL)",
    "SELECT option_name, option_value FROM pg_options_to_table(ARRAY['a=1', 'b=x=y']) ORDER BY 1",
    "SELECT count(*) FROM pg_options_to_table(NULL)",
    "SELECT count(*) FROM pg_transform",
    "SELECT label, provider, classoid, objoid, objsubid FROM pg_catalog.pg_seclabels",
    "SELECT evtname, array_to_string(evttags, ',') FROM pg_event_trigger",
    "SELECT count(*) FROM pg_publication_rel WHERE prattrs IS NOT NULL",
    "SELECT pg_is_in_recovery()",
    # Arrays in their text form.
    "SELECT '{1, 2,NULL}'::int[], '{}'::text[], '{\"a b\",c,\"NULL\"}'::text[]",
    "SELECT ARRAY[1, 2] = '{1,2}'::int[], option_name FROM pg_options_to_table('{k=v}'::text[])",
    "SELECT '1,2'::int[]",
    "SELECT '{1,,2}'::int[]",
]

BLOCK = [
    "BEGIN",
    "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    "LOCK TABLE t IN ACCESS SHARE MODE",
    "LOCK TABLE public.t, t IN ACCESS SHARE MODE",
    "SELECT count(*) FROM t",
    "COMMIT",
    "BEGIN",
    "LOCK TABLE mv IN ACCESS SHARE MODE",
    "ROLLBACK",
    "BEGIN",
    "LOCK TABLE nosuch IN ACCESS SHARE MODE",
    "ROLLBACK",
]


def run_all(dsn):
    with psycopg.connect(dsn, autocommit=True) as c:
        for s in SCHEMA:
            c.execute(s)
        if "tools_check" in dsn:
            # PostgreSQL's materialized view is not maintained; freshet's is.
            c.execute("REFRESH MATERIALIZED VIEW mv")
        checks = [(s, outcome(c, s)) for s in CHECKS]
    with psycopg.connect(dsn) as c:
        c.autocommit = True
        block = []
        for s in BLOCK:
            block.append((s, outcome(c, s)))
    return checks + block


def test_tool_statements_and_catalog_functions_as_postgresql(freshet, pg_dsn):
    got = run_all(freshet.dsn())
    want = run_all(pg_dsn)
    diffs = [(s, g, w) for (s, g), (_, w) in zip(got, want) if g != w]
    assert not diffs, "\n".join(f"{s}\n  freshet: {g!r}\n  postgres: {w!r}" for s, g, w in diffs)


def test_freshet_answers_for_its_own_catalog(freshet):
    with freshet.connect() as c:
        for s in SCHEMA:
            c.execute(s)
        owner, *acl = c.execute(
            "SELECT r.rolname, acldefault('r', c.relowner), acldefault('n', c.relowner), "
            "acldefault('f', c.relowner) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE c.relname = 't'").fetchone()
        assert acl == [[f"{owner}=arwdDxt/{owner}"], [f"{owner}=UC/{owner}"],
                       [f"=X/{owner}", f"{owner}=X/{owner}"]]
        with pytest.raises(psycopg.Error) as e:
            c.execute("SELECT acldefault('q', 10)")
        assert e.value.sqlstate == "22023"
        # pg_get_viewdef: the definition with our relations qualified, as pg_dump wants it.
        (viewdef,) = c.execute(
            "SELECT pg_catalog.pg_get_viewdef(c.oid) FROM pg_class c WHERE c.relname = 'mv'"
        ).fetchone()
        assert "count(*)" in viewdef.lower() and "public.t" in viewdef and viewdef.endswith(";")
        # A lock_timeout other than 0 would not be honoured: refused, not ignored.
        with pytest.raises(psycopg.Error) as e:
            c.execute("SET lock_timeout = '1s'")
        assert e.value.sqlstate == "0A000"
        assert c.execute("SHOW lock_timeout").fetchone()[0] == "0"
        # LOCK modes other than ACCESS SHARE would not be honoured either.
        c.autocommit = False
        with pytest.raises(psycopg.Error) as e:
            c.execute("LOCK TABLE t IN EXCLUSIVE MODE")
        assert e.value.sqlstate == "0A000"
        c.rollback()
