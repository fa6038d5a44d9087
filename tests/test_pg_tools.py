"""What pg_dump and administration tools send besides plain queries: SQL-level PREPARE /
EXECUTE / DEALLOCATE, set_config, LOCK ... IN ACCESS SHARE MODE, the session settings pg_dump
sets, `tableoid`, `"char"` casts, acldefault, pg_get_viewdef, quote_literal,
pg_options_to_table and the catalogs that are always empty. Each check runs against freshet
and against PostgreSQL, which must answer the same. And pg_dump itself: a schema-only dump of
freshet restores into PostgreSQL as the same tables, keys, indexes, defaults and views, and a
whole dump as the same rows."""

import subprocess

import psycopg
import pytest

from conftest import PG_BIN

SCHEMA = [
    "CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL)",
    "INSERT INTO t VALUES (1, 'one'), (2, 'two')",
    "CREATE MATERIALIZED VIEW mv AS SELECT name, count(*) AS n FROM t GROUP BY name",
    "CREATE TABLE docs (id int PRIMARY KEY, d jsonb)",
    "INSERT INTO docs VALUES (1, '{\"b\": 1, \"a\": {\"x\": [1, 2.50]}}'), (2, '[1, \"two\"]'), "
    "(3, NULL), (4, '\"two\"')",
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
    "SELECT ARRAY[1, 2]::text, ARRAY['a', 'b c', NULL, '', 'q\"']::text, ARRAY[true, false]::text",
    "SELECT '{3,4}'::int[]::text, ARRAY[ARRAY[1, 2], ARRAY[3, 4]]::text",
    # Interval and date/time input forms.
    "SELECT '1 day 02:03:04'::interval, INTERVAL 'P1DT2H', '@ 3 days ago'::interval",
    "SELECT '2h 30m'::interval, INTERVAL '-01:30', 'PT0.5S'::interval, '1.5 days'::interval",
    "SELECT 'tomorrow'::date - 'today'::date, 'yesterday'::timestamp < 'today'::timestamp",
    "SELECT 'now'::timestamptz IS NOT NULL, 'today'::date = current_date",
    # Read-only settings and catalog functions.
    "SELECT current_setting('max_index_keys'), current_setting('block_size')",
    "SHOW max_function_args",
    "SELECT pg_get_userbyid(999999)",
    "SELECT 'int4'::regtype::oid, 'pg_class'::regclass::oid, 'pg_namespace'::regclass::oid",
    "SELECT relname FROM pg_class WHERE oid = 'pg_class'::regclass",
    # jsonb: canonical text, operators, functions, bad input.
    "SELECT '{\"b\":1,\"a\":[1, 2.50,true,null],\"aa\":{}}'::jsonb::text, '1e2'::jsonb::text",
    "SELECT '-0'::jsonb::text, '[ ]'::jsonb::text, '{\"a\":1,\"a\":2}'::jsonb::text, '0.0015e3'::jsonb::text",
    "SELECT '{\"b\":1, \"a\":2}'::json::text, '{\"a\": {\"b\": [1, \"x\"]}}'::jsonb -> 'a'",
    "SELECT '{\"a\": {\"b\": [1, \"x\"]}, \"c\": \"s\", \"n\": null}'::jsonb ->> 'c', "
    "'{\"n\": null}'::jsonb -> 'n', '{\"n\": null}'::jsonb ->> 'n', "
    "'{\"a\": {\"b\": [1, \"x\"]}}'::jsonb #> '{a,b,1}', '{\"a\": {\"b\": [1, \"x\"]}}'::jsonb #>> '{a,b,0}'",
    "SELECT '[1,2,3]'::jsonb -> -1, '[1,2,3]'::jsonb -> 5, '[1,2,3]'::jsonb ->> 0",
    "SELECT '{\"a\":1,\"b\":[1,2]}'::jsonb @> '{\"b\":[2]}', '{\"a\":1}'::jsonb <@ '{\"a\":1,\"b\":2}', "
    "'[1,2]'::jsonb @> '1', '{\"a\":{\"b\":1}}'::jsonb @> '{\"a\":{}}'",
    "SELECT '{\"a\":1}'::jsonb ? 'a', '[\"k\"]'::jsonb ? 'k', '{\"a\":1,\"b\":2}'::jsonb ?| array['x','b'], "
    "'{\"a\":1,\"b\":2}'::jsonb ?& array['a','x']",
    "SELECT jsonb_typeof('[1]'::jsonb), jsonb_typeof('{}'), jsonb_typeof('\"s\"'), jsonb_array_length('[1,[2]]')",
    "SELECT 'not json'::jsonb",
    "SELECT '{\"a\" 1}'::jsonb",
    "SELECT jsonb_array_length('{}')",
    "SELECT id, d::text, d -> 'a', d ->> 'b', d @> '{\"b\": 1}', d ? 'two', jsonb_typeof(d) FROM docs ORDER BY id",
    "SELECT id FROM docs WHERE d -> 'a' -> 'x' ->> 1 = '2.50'",
    "INSERT INTO docs VALUES (9, 'not json')",
    "SELECT count(*) FROM docs",
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
        # A bare regtype / regclass literal is its OID here (PostgreSQL prints the name).
        assert c.execute("SELECT 'int4'::regtype, 'pg_class'::regclass").fetchone() == (23, 1259)
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


DUMPED = [
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer varchar(40) NOT NULL, "
    "amount numeric(12,2) DEFAULT 0, placed timestamptz DEFAULT now(), note text DEFAULT 'x''y', "
    "tags text[], flag boolean, payload jsonb, UNIQUE (customer, placed))",
    "CREATE TABLE lines (order_id bigint NOT NULL, n int NOT NULL, qty int DEFAULT 1, "
    "PRIMARY KEY (order_id, n))",
    "CREATE INDEX orders_placed ON orders (placed)",
    "CREATE TABLE ids (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
    "g bigint GENERATED ALWAYS AS IDENTITY, v text)",
    # Named so that restoring in name order would create the view on a view first.
    "CREATE MATERIALIZED VIEW b_per_customer AS "
    "SELECT customer, count(*) AS n, sum(amount) AS total FROM orders GROUP BY customer",
    "CREATE MATERIALIZED VIEW a_big AS SELECT customer, n FROM b_per_customer WHERE n > 1",
    # Views, a view on a view, and a materialized view over a view: named against the order
    # they must be created in.
    "CREATE VIEW z_paid AS SELECT id, customer, amount FROM orders WHERE amount > 0",
    "CREATE VIEW y_paid_per_customer AS SELECT customer, count(*) AS n FROM z_paid GROUP BY customer",
    "CREATE MATERIALIZED VIEW x_paid AS SELECT customer, n FROM y_paid_per_customer",
]

# The restored structure, read from PostgreSQL's own catalogs.
STRUCTURE = [
    "SELECT c.relname, c.relkind, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), "
    "a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity FROM pg_class c "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
    "LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum "
    "WHERE n.nspname = 'public' ORDER BY 1, 3",
    "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2",
    "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 2",
    "SELECT c.relname, s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmax, s.seqmin, "
    "pg_get_serial_sequence('ids', 'id') FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid "
    "ORDER BY 1",
]


def restore_target(postgres, *databases):
    """Empty databases in the PostgreSQL oracle, and the roles a dump of freshet names."""
    with postgres.connect() as c:
        for role in ("tester", "freshet"):
            try:
                c.execute(f"CREATE ROLE {role}")
            except psycopg.errors.DuplicateObject:
                pass
        for db in databases:
            c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {db}")


def restore_into(postgres, database, dump):
    """psql runs `dump` in `database` of the PostgreSQL oracle, stopping at the first error."""
    return subprocess.run(
        [str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
         "-p", str(postgres.port), "-U", "postgres", "-d", database],
        input=dump, capture_output=True, text=True, timeout=120)


def test_pg_dump_schema_only_restores_into_postgresql(freshet, postgres):
    with freshet.connect() as c:
        for s in DUMPED:
            c.execute(s)
        c.execute("INSERT INTO orders (id, customer) VALUES (1, 'a'), (2, 'b')")
    dump = subprocess.run(
        [str(PG_BIN / "pg_dump"), "--schema-only", "-h", "127.0.0.1", "-p", str(freshet.port),
         "-U", "tester", "freshet"], capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    assert "CREATE MATERIALIZED VIEW public.a_big" in dump.stdout
    # The view on a view comes after the view it reads, whatever their names.
    assert dump.stdout.index("public.b_per_customer AS") < dump.stdout.index("public.a_big AS")
    assert "CREATE VIEW public.z_paid AS" in dump.stdout
    assert dump.stdout.index("VIEW public.z_paid AS") < dump.stdout.index("VIEW public.y_paid_per_customer AS")
    assert dump.stdout.index("VIEW public.y_paid_per_customer AS") < dump.stdout.index("VIEW public.x_paid AS")
    restore_target(postgres, "dump_restored", "dump_direct")
    try:
        restore = restore_into(postgres, "dump_restored", dump.stdout)
        assert restore.returncode == 0, restore.stderr
        direct = f"host=127.0.0.1 port={postgres.port} dbname=dump_direct user=postgres"
        restored = f"host=127.0.0.1 port={postgres.port} dbname=dump_restored user=postgres"
        with psycopg.connect(direct, autocommit=True) as c:
            for s in DUMPED:
                c.execute(s)
            want = [c.execute(q).fetchall() for q in STRUCTURE]
        with psycopg.connect(restored, autocommit=True) as c:
            got = [c.execute(q).fetchall() for q in STRUCTURE]
        for q, g, w in zip(STRUCTURE, got, want):
            assert g == w, f"{q}\n  restored: {g}\n  direct:   {w}"
    finally:
        with postgres.connect() as c:
            for db in ("dump_restored", "dump_direct"):
                c.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


DATA = [
    "INSERT INTO orders VALUES (1, 'a', 10.50, '2026-01-02 03:04:05+00', E'tab\\there\\nline', "
    "'{x,\"y z\",NULL}', true, '{\"k\": [1, \"two\"]}'), "
    "(2, 'b\\c', NULL, '2026-06-01 00:00:00.5+02', NULL, NULL, NULL, NULL), "
    "(3, 'a', 2, '2026-01-03 00:00:00+00', '', '{}', false, 'null')",
    "INSERT INTO lines VALUES (1, 1, 3), (1, 2, DEFAULT), (3, 1, NULL)",
    "INSERT INTO ids (v) VALUES ('first'), ('second'), (NULL)",
]

# What a restored database must hold: the same rows as freshet's.
CONTENTS = [
    "SELECT * FROM orders ORDER BY id",
    "SELECT * FROM lines ORDER BY order_id, n",
    "SELECT * FROM ids ORDER BY id",
    "SELECT * FROM b_per_customer ORDER BY customer",
    "SELECT * FROM a_big ORDER BY customer",
    "SELECT nextval('ids_id_seq')",
]


def test_pg_dump_with_data_restores_into_postgresql(freshet, postgres):
    """A whole dump (pg_dump reads each table with COPY … TO STDOUT) restores into PostgreSQL
    as the same rows, views and sequence positions."""
    with freshet.connect() as c:
        for s in DUMPED + DATA:
            c.execute(s)
    dump = subprocess.run(
        [str(PG_BIN / "pg_dump"), "--exclude-schema=freshet_internal", "-h", "127.0.0.1",
         "-p", str(freshet.port), "-U", "tester", "freshet"],
        capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    assert "COPY public.orders (id, customer, amount, placed, note, tags, flag, payload) FROM stdin;" \
        in dump.stdout
    restore_target(postgres, "dump_data")
    # One table by pattern (`OPERATOR(pg_catalog.=) ANY (…)` in pg_dump's lookup).
    one = subprocess.run(
        [str(PG_BIN / "pg_dump"), "-t", "lin*", "-h", "127.0.0.1", "-p", str(freshet.port),
         "-U", "tester", "freshet"], capture_output=True, text=True, timeout=120)
    assert one.returncode == 0, one.stderr
    assert "COPY public.lines (order_id, n, qty) FROM stdin;" in one.stdout
    assert "orders" not in one.stdout
    try:
        restore = restore_into(postgres, "dump_data", dump.stdout)
        assert restore.returncode == 0, restore.stderr
        restored = f"host=127.0.0.1 port={postgres.port} dbname=dump_data user=postgres"
        with freshet.connect() as f, psycopg.connect(restored, autocommit=True) as p:
            for q in CONTENTS:
                got, want = p.execute(q).fetchall(), f.execute(q).fetchall()
                assert got == want, f"{q}\n  restored: {got}\n  freshet:  {want}"
                assert got, q
    finally:
        with postgres.connect() as c:
            c.execute("DROP DATABASE IF EXISTS dump_data WITH (FORCE)")


def test_pg_stat_activity_lists_the_live_sessions(freshet):
    """PostgreSQL's pg_stat_activity differs by nature (its own sessions, background
    workers); what it shows of client sessions is checked here against what they did."""
    from conftest import wait_for
    columns = ("pid, usename, application_name, state, query, backend_type, datname, "
               "client_addr, xact_start IS NOT NULL, backend_start <= now()")
    with freshet.connect() as watcher, psycopg.connect(freshet.dsn()) as worker:
        watcher.execute("SET application_name = 'watcher'")
        worker.execute("SELECT 41 + 1")  # opens a transaction block (psycopg's BEGIN)
        rows = watcher.execute(f"SELECT {columns} FROM pg_stat_activity ORDER BY backend_start").fetchall()
        by_pid = {r[0]: r for r in rows}
        assert set(by_pid) == {watcher.info.backend_pid, worker.info.backend_pid}, rows
        me = by_pid[watcher.info.backend_pid]
        assert me[1:4] == ("tester", "watcher", "active") and "pg_stat_activity" in me[4], me
        assert me[5:8] == ("client backend", "freshet", "127.0.0.1"), me
        other = by_pid[worker.info.backend_pid]
        assert other[3] == "idle in transaction" and "41 + 1" in other[4] and other[8], other
        assert all(r[9] for r in rows)
        worker.rollback()
        assert watcher.execute(
            "SELECT state, xact_start FROM pg_stat_activity WHERE pid = %s",
            (worker.info.backend_pid,)).fetchone() == ("idle", None)
        gone = worker.info.backend_pid
    # A closed session leaves the list (the server notices the close on its own time).
    with freshet.connect() as c:
        wait_for(lambda: c.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s",
                                   (gone,)).fetchone()[0] == 0, what="the closed session to leave")


def jsonb_client_round_trip(dsn):
    """jsonb through psycopg's adapters: typed parameters (text and binary), results in text
    and in binary (version byte), containment with a parameter."""
    from psycopg.types.json import Json, Jsonb
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE jp (id int PRIMARY KEY, d jsonb)")
        c.execute("INSERT INTO jp VALUES (%s, %s)", (1, Jsonb({"b": 1, "a": [1, 2.5]})))
        c.execute("INSERT INTO jp VALUES (%s, %s)", (2, Json({"x": None})))
        c.cursor(binary=True).execute("INSERT INTO jp VALUES (%s, %s)", (3, Jsonb(["s", {"k": "v"}])))
        return [
            c.execute("SELECT id, d, d::text FROM jp ORDER BY id").fetchall(),
            c.cursor(binary=True).execute("SELECT id, d FROM jp ORDER BY id").fetchall(),
            c.execute("SELECT %s::jsonb ->> 'a'", (Jsonb({"a": "z"}),)).fetchall(),
            c.execute("SELECT id FROM jp WHERE d @> %s ORDER BY id", (Jsonb({"b": 1}),)).fetchall(),
        ]


def test_jsonb_with_typed_parameters_and_binary_results_as_postgresql(freshet, pg_dsn):
    assert jsonb_client_round_trip(freshet.dsn()) == jsonb_client_round_trip(pg_dsn)


def test_show_all_lists_the_settings(freshet):
    """SHOW ALL (psql's \\dconfig and admin tools): PostgreSQL's list is its own, so the check
    is that ours names every setting SHOW answers, with the session's values."""
    with freshet.connect() as c:
        c.execute("SET application_name = 'lister'")
        cur = c.execute("SHOW ALL")
        assert [d.name for d in cur.description] == ["name", "setting", "description"]
        settings = {name: value for name, value, _ in cur.fetchall()}
        assert settings["application_name"] == "lister"
        assert settings["TimeZone"] == "UTC" and settings["DateStyle"] == "ISO, MDY"
        for name, value in settings.items():
            assert c.execute(f'SHOW "{name}"').fetchone()[0] == value, name
