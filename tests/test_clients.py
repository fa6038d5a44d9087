"""psycopg 3: server-side prepared statements, types, SQLSTATEs, transactions, cancel."""
import datetime
import decimal
import threading

import psycopg
import pytest
from psycopg import errors


def test_prepared_statements_with_parameters(freshet):
    with freshet.connect() as conn:
        conn.execute("CREATE TABLE p (id INT PRIMARY KEY, name TEXT, price NUMERIC(10,2), at TIMESTAMP, ok BOOLEAN)")
        for i in range(20):
            conn.execute("INSERT INTO p VALUES (%s, %s, %s, %s, %s)",
                         (i, f"n{i}", decimal.Decimal(f"{i}.25"), datetime.datetime(2024, 1, 1, 12, i), i % 2 == 0),
                         prepare=True)
        cur = conn.execute("SELECT name, price, at, ok FROM p WHERE id = %s", (7,), prepare=True)
        assert cur.fetchall() == [("n7", decimal.Decimal("7.25"), datetime.datetime(2024, 1, 1, 12, 7), False)]
        # the same prepared statement again, with another value
        cur = conn.execute("SELECT name, price, at, ok FROM p WHERE id = %s", (8,), prepare=True)
        assert cur.fetchone()[0] == "n8"
        cur = conn.execute("SELECT count(*) FROM p WHERE id >= %s AND name <> %s", (10, "n15"), prepare=True)
        assert cur.fetchone() == (9,)
        # binary result format
        with conn.cursor(binary=True) as bc:
            bc.execute("SELECT id, name FROM p WHERE id < %s ORDER BY id", (3,))
            assert bc.fetchall() == [(0, "n0"), (1, "n1"), (2, "n2")]


def test_types_round_trip(freshet):
    with freshet.connect() as conn:
        row = conn.execute(
            "SELECT CAST(1 AS SMALLINT), 2, CAST(3 AS BIGINT), CAST(1.5 AS REAL), CAST(2.5 AS DOUBLE PRECISION), "
            "CAST('1.23' AS NUMERIC(5,2)), 'txt', DATE '2024-02-29', TIMESTAMP '2024-02-29 10:11:12', "
            "true, NULL").fetchone()
        assert row == (1, 2, 3, 1.5, 2.5, decimal.Decimal("1.23"), "txt", datetime.date(2024, 2, 29),
                       datetime.datetime(2024, 2, 29, 10, 11, 12), True, None)


@pytest.mark.parametrize("sql,exc", [
    ("SELEC 1", errors.SyntaxError),
    ("SELECT * FROM missing_table", errors.UndefinedTable),
    ("SELECT missing_col FROM (SELECT 1 AS a) s", errors.UndefinedColumn),
    ("SELECT 1/0", errors.DivisionByZero),
    ("SELECT CAST('abc' AS INT)", errors.InvalidTextRepresentation),
    ("SELECT 'bogus'::timestamp", errors.InvalidDatetimeFormat),
])
def test_user_mistakes_get_their_sqlstate(freshet, sql, exc):
    with freshet.connect() as conn:
        with pytest.raises(exc):
            conn.execute(sql)
        # the session is still usable
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_constraint_sqlstates(freshet):
    with freshet.connect() as conn:
        conn.execute("CREATE TABLE k (id INT PRIMARY KEY, v TEXT NOT NULL)")
        conn.execute("INSERT INTO k VALUES (1, 'a')")
        with pytest.raises(errors.UniqueViolation):
            conn.execute("INSERT INTO k VALUES (%s, %s)", (1, "b"))
        with pytest.raises(errors.NotNullViolation):
            conn.execute("INSERT INTO k (id) VALUES (2)")
        with pytest.raises(errors.DuplicateTable):
            conn.execute("CREATE TABLE k (id INT)")
        with pytest.raises(errors.FeatureNotSupported):
            conn.execute("CREATE TEMPORARY VIEW kv AS SELECT 1")
        # DELETE/UPDATE reading a subquery change exactly the rows it selects.
        conn.execute("INSERT INTO k VALUES (2, 'b'), (3, 'c')")
        cur = conn.execute("DELETE FROM k WHERE id IN (SELECT max(id) FROM k)")
        assert cur.rowcount == 1
        cur = conn.execute("UPDATE k SET v = 'x' WHERE EXISTS (SELECT 1 FROM k AS o WHERE o.id = 9)")
        assert cur.rowcount == 0
        assert conn.execute("SELECT id, v FROM k ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
        with pytest.raises(errors.NotNullViolation):
            conn.execute("UPDATE k SET v = NULL WHERE id = 2")
        with pytest.raises(errors.UniqueViolation):
            conn.execute("UPDATE k SET id = 1 WHERE id = 2")
        conn.execute("CREATE MATERIALIZED VIEW kmv AS SELECT count(*) AS n FROM k")
        with pytest.raises(errors.WrongObjectType):
            conn.execute("DELETE FROM kmv")
        conn.execute("DROP MATERIALIZED VIEW kmv")


def test_writes_visible_to_other_sessions(freshet):
    with freshet.connect() as a, freshet.connect() as b:
        a.execute("CREATE TABLE vis (x INT)")
        a.execute("INSERT INTO vis VALUES (1), (2)")
        assert b.execute("SELECT sum(x) FROM vis").fetchone() == (3,)


def test_non_autocommit_driver_flow(freshet):
    # psycopg's default mode wraps statements in BEGIN/COMMIT.
    with psycopg.connect(freshet.dsn()) as conn:
        conn.execute("CREATE TABLE tx (x INT)")
        conn.execute("INSERT INTO tx VALUES (%s)", (5,))
        conn.commit()
        assert conn.execute("SELECT x FROM tx").fetchall() == [(5,)]


def test_session_parameters(freshet):
    with freshet.connect() as conn:
        for name, value in [("application_name", "probe"), ("extra_float_digits", "3"),
                            ("DateStyle", "ISO, MDY"), ("TimeZone", "UTC"), ("search_path", "public"),
                            ("client_encoding", "UTF8"), ("standard_conforming_strings", "on")]:
            conn.execute(f"SET {name} = '{value}'")
            assert conn.execute(f"SHOW {name}").fetchone() == (value,)
        assert conn.execute("SELECT version()").fetchone()[0].startswith("PostgreSQL ")
        with pytest.raises(errors.UndefinedObject):
            conn.execute("SHOW no_such_setting")


@pytest.mark.parametrize("params", [None, (-1,)], ids=["simple", "extended"])
def test_cancel_request(freshet, params):
    with freshet.connect() as conn:
        conn.execute("CREATE TABLE big (x BIGINT)")
        conn.execute("INSERT INTO big SELECT value FROM generate_series(1, 2000) AS t(value)")
        timer = threading.Timer(0.5, conn.cancel)
        timer.start()
        # 8e9 rows streamed: far longer than the cancel delay. (An operator that computes
        # without yielding, e.g. a nested-loop join under an aggregate, keeps its core busy
        # after the cancel until it yields: DataFusion has no interrupt check inside it.)
        sql = "SELECT a.x, b.x, c.x FROM big a, big b, big c WHERE a.x + b.x + c.x <> "
        try:
            with pytest.raises(errors.QueryCanceled):
                if params is None:
                    conn.execute(sql + "-1")
                else:
                    conn.execute(sql + "%s", params)
        finally:
            timer.cancel()
        assert conn.execute("SELECT 1").fetchone() == (1,)
        # a cancel that arrives between statements affects nothing
        conn.cancel()
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (2000,)


@pytest.mark.parametrize("query", [
    "SELECT 1, 'x', 1.5",
    "SELECT count(*), count(v) AS \"n v\", max(v), sum(v) AS total FROM names_t",
    "SELECT id, v + 1, upper(s), s AS label, CAST(v AS BIGINT), lower(s) FROM names_t ORDER BY id LIMIT 1",
    "SELECT names_t.id, coalesce(s, 'none') FROM names_t",
    "SELECT * FROM names_t",
    "SELECT s, count(*) FROM names_t GROUP BY s",
    "SELECT id, id::text, id FROM names_t",
    "SELECT *, id FROM names_t",
    "SELECT 1 AS a, 2 AS a, 3 AS \"B\", count(*), count(*) FROM names_t",
    "SELECT * FROM generate_series(1, 3)",
    "SELECT * FROM generate_series(1, 3) AS g",
    "SELECT g FROM generate_series(1, 3) AS g",
    "SELECT x FROM generate_series(1, 3) AS g(x)",
    "SELECT localtimestamp, localtime, current_setting('DateStyle')",
])
def test_result_column_names_follow_postgres(freshet, postgres, query):
    """Clients see PostgreSQL's column names (`count`, `?column?`, …), not DataFusion's."""
    names = []
    for server in (freshet, postgres):
        with server.connect() as c:
            c.execute("DROP TABLE IF EXISTS names_t")
            c.execute("CREATE TABLE names_t (id INT PRIMARY KEY, v INT, s TEXT)")
            c.execute("INSERT INTO names_t VALUES (1, 2, 'a')")
            cur = c.execute(query)
            names.append([d.name for d in cur.description])
            c.execute("DROP TABLE names_t")
    assert names[0] == names[1]


VALUES = [
    # IS [NOT] DISTINCT FROM binds tighter than AND and OR.
    "SELECT v IS DISTINCT FROM 3 AND s IS NOT NULL, v IS NOT DISTINCT FROM 2 OR false "
    "FROM vals_t ORDER BY id",
    "SELECT id FROM vals_t WHERE v IS DISTINCT FROM 3 AND s = 'a' IS NOT TRUE ORDER BY id",
    "SELECT g, sum(g) OVER () FROM generate_series(1, 3) AS g ORDER BY g",
    "SELECT current_setting('DateStyle'), current_setting('no_such_setting', true), "
    "current_setting('client_encoding') FROM vals_t ORDER BY id",
    "SELECT localtimestamp IS NOT NULL, localtime IS NOT NULL, length(gen_random_uuid()::text)",
    # bytea input forms (hex and escape), assigned and cast, and byte lengths.
    "SELECT id, b, length(b), octet_length(b), md5(b), encode(b, 'hex') FROM vals_t ORDER BY id",
    "SELECT id FROM vals_t WHERE b = '\\xdeadbeef'",
    "SELECT '\\xDEADbeef'::bytea, 'a\\\\b\\001'::bytea, length('\\x0102 03'::bytea)",
    # to_char's template patterns (DataFusion's to_char copied them through as text).
    "SELECT to_char(ts, 'YYYY-MM-DD HH24:MI:SS.MS US, HH12 AM a.m., FMMonth Month MON Dy DAY FMDD') "
    "FROM (VALUES (TIMESTAMP '2026-11-01 14:05:09.123456'), (TIMESTAMP '2024-02-29 00:00:00'), "
    "(TIMESTAMP '1999-12-31 23:59:59.9')) AS v(ts) ORDER BY ts",
    "SELECT to_char(DATE '2024-02-29' + id, 'Y,YYY YY CC Q RM WW W IYYY-IW-ID IDDD DDD D J \"week\" \\\"') "
    "FROM vals_t ORDER BY id",
    "SELECT to_char(TIMESTAMPTZ '2026-11-01 14:05:09+00', 'YYYY-MM-DD HH24:MI TZ OF FF3'), "
    "to_char(NULL::timestamp, 'YYYY'), to_char(TIMESTAMP '2026-01-01', NULL)",
    # Timestamp and date input forms in casts, as in assignments.
    "SELECT '2026-11-01 10:00'::timestamp, '2026-12-01T00:00'::timestamp, "
    "CAST('2026-12-01 10:00:05.25' AS timestamp), '2026-12-01'::timestamp, "
    "'2026-12-01 10:00 +02'::timestamptz, '2026-12-01T10:00Z'::timestamptz, "
    "'2026-12-01 10:00'::date, NULL::text::timestamp",
    "SELECT id, (s || '-01-01 10:00')::timestamp FROM (VALUES (1, '2026'), (2, '1999')) AS v(id, s) ORDER BY id",
]


def test_values_follow_postgres(freshet, postgres):
    """Expressions PostgreSQL's clients write, answered as PostgreSQL answers them."""
    answers = []
    for server in (freshet, postgres):
        with server.connect() as c:
            c.execute("DROP TABLE IF EXISTS vals_t")
            c.execute("CREATE TABLE vals_t (id INT PRIMARY KEY, v INT, s TEXT, b BYTEA)")
            c.execute("INSERT INTO vals_t VALUES (1, 2, 'a', '\\xdeadbeef'), (2, 3, NULL, 'a\\000b'), "
                      "(3, NULL, 'c', NULL)")
            c.execute("UPDATE vals_t SET b = '\\x0102' WHERE id = 3")
            answers.append([c.execute(q).fetchall() for q in VALUES])
            c.execute("DROP TABLE vals_t")
    for q, got, expected in zip(VALUES, *answers):
        assert got == expected, f"{q}\nfreshet:  {got}\npostgres: {expected}"


def test_sqlalchemy_connects_and_catalogs_resolve_unqualified(freshet):
    """SQLAlchemy 2 (psycopg 3 dialect) connects with default engine options: its first
    connection reads pg_type by unqualified name and calls to_regtype, as drivers do."""
    import sqlalchemy as sa
    with freshet.connect() as conn:
        conn.execute("CREATE TABLE orm_t (id INT PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO orm_t VALUES (1, 'a'), (2, 'b')")
        conn.commit()
        assert conn.execute("SELECT rolname FROM pg_roles WHERE rolsuper").fetchall()
        assert conn.execute("SELECT to_regtype('integer'), to_regtype('hstore'), "
                            "to_regtype('text[]')").fetchone() == (23, None, 1009)
    engine = sa.create_engine(f"postgresql+psycopg://tester@127.0.0.1:{freshet.port}/freshet")
    try:
        with engine.connect() as c:
            rows = c.execute(sa.text("SELECT id, name FROM orm_t WHERE id > :i ORDER BY id"), {"i": 0})
            assert rows.fetchall() == [(1, "a"), (2, "b")]
            # Only the search path's relations: not freshet_internal's, not information_schema's.
            inspector = sa.inspect(c)
            assert inspector.get_table_names() == ["orm_t"]
            assert inspector.get_view_names() == []
    finally:
        engine.dispose()


def test_asyncpg_parameters_typed_by_their_casts(freshet, postgres):
    """asyncpg sends each parameter in the type the server describes: `$1::int` is an integer
    parameter, as in PostgreSQL (text before, which asyncpg refused to send an int as)."""
    import asyncio
    import datetime as dt
    import decimal

    import asyncpg

    queries = [
        ("SELECT $1::int + 1 AS v", [5]),
        ("SELECT $1::bigint * 2 AS v", [2**40]),
        ("SELECT $1::numeric(10,2) AS v", [decimal.Decimal("1.25")]),
        ("SELECT $1::date AS v", [dt.date(2026, 1, 2)]),
        ("SELECT $1::timestamp AS v", [dt.datetime(2026, 1, 2, 3, 4)]),
        ("SELECT $1::text || 'x' AS v", ["a"]),
        ("SELECT $1::float8 AS v, $2 AS w", [0.5, "b"]),
        ("SELECT $1::boolean AS v", [True]),
    ]

    async def run(**conn):
        c = await asyncpg.connect(**conn)
        try:
            return [[tuple(r) for r in await c.fetch(q, *args)] for q, args in queries]
        finally:
            await c.close()

    got = asyncio.run(run(host="127.0.0.1", port=freshet.port, user="tester", database="freshet"))
    want = asyncio.run(run(host="127.0.0.1", port=postgres.port, user="postgres", database="postgres"))
    assert got == want


def test_uuid_columns_casts_and_parameters(freshet, postgres):
    """uuid as PostgreSQL has it: any input form read, canonical text out, ordered as its bytes,
    `UUID` parameters and results in asyncpg (binary) and psycopg (text and binary), 22P02 for
    a malformed one."""
    import asyncio
    import uuid

    import asyncpg

    a, b = uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"), uuid.UUID("0aeebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
    setup = [
        "DROP TABLE IF EXISTS uu",
        "CREATE TABLE uu (id uuid PRIMARY KEY, v int)",
        "INSERT INTO uu VALUES ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', 1), "
        "('{0aeebc99-9c0b4ef8-bb6d6bb9-bd380a11}', 2), ('ffffffffffffffffffffffffffffffff', 3)",
    ]

    async def run(**conn):
        c = await asyncpg.connect(**conn)
        try:
            for s in setup:
                await c.execute(s)
            await c.execute("INSERT INTO uu VALUES ($1, $2)", uuid.UUID(int=5), 4)
            out = [tuple(r) for r in await c.fetch("SELECT id, v FROM uu ORDER BY id")]
            out += [tuple(r) for r in await c.fetch("SELECT v FROM uu WHERE id = $1", b)]
            out += [tuple(r) for r in await c.fetch("SELECT '{A0EEBC999C0B4EF8BB6D6BB9BD380A11}'::uuid AS uuid")]
            try:
                await c.fetch("SELECT v FROM uu WHERE id = $1", "not-a-uuid")
            except Exception as e:  # asyncpg checks it against the described uuid type
                out.append(type(e).__name__)
            try:
                await c.fetch("SELECT 'not-a-uuid'::uuid")
            except asyncpg.PostgresError as e:
                out.append(e.sqlstate)
            return out
        finally:
            await c.close()

    got = asyncio.run(run(host="127.0.0.1", port=freshet.port, user="tester", database="freshet"))
    want = asyncio.run(run(host="127.0.0.1", port=postgres.port, user="postgres", database="postgres"))
    assert got == want
    assert (a, 1) in got

    def psycopg_rows(conn):
        with conn:
            conn.execute("INSERT INTO uu VALUES (%s, 5)", [uuid.UUID(int=6)])
            text = conn.execute("SELECT id FROM uu WHERE id = %s", [a]).fetchall()
            binary = conn.cursor(binary=True).execute("SELECT id, v FROM uu WHERE v = 5").fetchall()
            with pytest.raises(errors.InvalidTextRepresentation):
                conn.execute("SELECT 'x'::uuid")
            return text, binary

    assert psycopg_rows(freshet.connect()) == psycopg_rows(postgres.connect())
