"""SQLAlchemy's inspector, pandas' to_sql/read_sql_table and the catalogs they read (primary
keys, unique constraints, CREATE INDEX, correlated subqueries), each run against freshet and
against PostgreSQL, which must answer the same."""

import math

import psycopg
import pytest

sa = pytest.importorskip("sqlalchemy")
pd = pytest.importorskip("pandas")

SCHEMA = [
    "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, code text UNIQUE, "
    "price numeric(10,2), seen timestamp)",
    "CREATE TABLE pairs (a int, b int, note varchar(20), PRIMARY KEY (a, b))",
    "CREATE INDEX items_name_idx ON items (name)",
    "CREATE INDEX ON pairs (note, b)",
    "INSERT INTO items VALUES (1, 'one', 'A', 1.50, '2026-11-01 10:00'), (2, 'two', NULL, 20, NULL)",
    "CREATE MATERIALIZED VIEW cheap AS SELECT id, name FROM items WHERE price < 10",
    "CREATE VIEW dear AS SELECT id, name, price FROM items WHERE price >= 10",
]


@pytest.fixture
def pg_db(postgres):
    """A database of its own in the PostgreSQL oracle: other tests leave tables in `postgres`."""
    with postgres.connect() as c:
        c.execute("DROP DATABASE IF EXISTS orm_check")
        c.execute("CREATE DATABASE orm_check")
    dsn = f"host=127.0.0.1 port={postgres.port} dbname=orm_check user=postgres"
    yield dsn, f"postgres@127.0.0.1:{postgres.port}/orm_check"
    with postgres.connect() as c:
        c.execute("DROP DATABASE IF EXISTS orm_check WITH (FORCE)")


def inspect_all(url):
    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        out = {
            "tables": insp.get_table_names(),
            "views": insp.get_view_names(),
            "matviews": insp.get_materialized_view_names(),
        }
        for t in ["items", "pairs"]:
            out[t] = {
                "columns": [(c["name"], str(c["type"]), c["nullable"], c["default"])
                            for c in insp.get_columns(t)],
                "pk": insp.get_pk_constraint(t),
                "indexes": sorted(insp.get_indexes(t), key=lambda i: i["name"]),
                "uniques": insp.get_unique_constraints(t),
                "fks": insp.get_foreign_keys(t),
                "comment": insp.get_table_comment(t),
            }
        out["cheap"] = [(c["name"], str(c["type"])) for c in insp.get_columns("cheap")]
        out["dear"] = [(c["name"], str(c["type"])) for c in insp.get_columns("dear")]
        return out
    finally:
        engine.dispose()


def frame_round_trip(url):
    frame = pd.DataFrame({
        "a": [1.5, math.nan, 3.0],
        "b": ["x", None, "z"],
        "c": pd.to_datetime(["2026-01-01 10:00", None, "2026-01-03 00:00"]),
        "d": [1, 2, 3],
    })
    engine = sa.create_engine(url)
    try:
        frame.to_sql("frame", engine, index=True, if_exists="replace")
        frame.to_sql("frame", engine, index=True, if_exists="append")
        back = pd.read_sql_table("frame", engine).sort_values(["d", "index"]).reset_index(drop=True)
        query = pd.read_sql("SELECT d, count(*) AS n FROM frame GROUP BY d ORDER BY d", engine)
        indexes = sa.inspect(engine).get_indexes("frame")
        return back.to_dict("list"), query.to_dict("list"), indexes
    finally:
        engine.dispose()


def same(a, b):
    """Equal, NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b or (pd.isna(a) and pd.isna(b) if not isinstance(a, (list, dict)) else False)


@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_inspector_and_pandas_match_postgres(freshet, pg_db, driver):
    pytest.importorskip(driver)
    with freshet.connect() as f, psycopg.connect(pg_db[0], autocommit=True) as p:
        for conn in (f, p):
            for s in ["DROP MATERIALIZED VIEW IF EXISTS cheap", "DROP TABLE IF EXISTS items",
                      "DROP TABLE IF EXISTS pairs", "DROP TABLE IF EXISTS frame"]:
                conn.execute(s)
            for s in SCHEMA:
                conn.execute(s)
    ours = f"postgresql+{driver}://tester@127.0.0.1:{freshet.port}/freshet"
    theirs = f"postgresql+{driver}://{pg_db[1]}"
    got, expected = inspect_all(ours), inspect_all(theirs)
    for key in expected:
        assert got[key] == expected[key], f"{key}\nfreshet:  {got[key]}\npostgres: {expected[key]}"
    got, expected = frame_round_trip(ours), frame_round_trip(theirs)
    assert same(got, expected), f"\nfreshet:  {got}\npostgres: {expected}"


CATALOG_QUERIES = [
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    "SELECT c.relname, c.relkind, c.relhasindex FROM pg_class c JOIN pg_namespace n "
    "ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1",
    "SELECT conname, contype, conkey, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE conrelid = 'items'::regclass ORDER BY 1",
    "SELECT c.relname, i.indisunique, i.indisprimary, array_to_string(i.indkey, ' '), "
    "pg_get_indexdef(i.indexrelid), pg_get_indexdef(i.indexrelid, 1, true) "
    "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE i.indrelid IN ('items'::regclass, 'pairs'::regclass) ORDER BY 1",
    # Correlated subqueries that are not aggregates: NULL over no rows, the value over one.
    "SELECT i.id, (SELECT p.name FROM items p WHERE p.id = i.id + 1) FROM items i ORDER BY 1",
    "SELECT i.id FROM items i WHERE i.name = (SELECT p.name FROM items p WHERE p.id = i.id) ORDER BY 1",
]


def test_catalogs_list_keys_and_indexes_like_postgres(freshet, pg_db):
    with freshet.connect() as f, psycopg.connect(pg_db[0], autocommit=True) as p:
        for conn in (f, p):
            for s in ["DROP MATERIALIZED VIEW IF EXISTS cheap", "DROP TABLE IF EXISTS items",
                      "DROP TABLE IF EXISTS pairs", "DROP TABLE IF EXISTS frame"]:
                conn.execute(s)
            for s in SCHEMA:
                conn.execute(s)
        for q in CATALOG_QUERIES:
            got = f.execute(q).fetchall()
            expected = p.execute(q).fetchall()
            # Index OIDs differ; everything shown is by name.
            assert got == expected, f"{q}\nfreshet:  {got}\npostgres: {expected}"
        # The same mistakes get the same SQLSTATEs.
        for bad in [
            "SELECT i.id, (SELECT p.name FROM items p WHERE p.id >= i.id AND p.id = p.id) FROM items i WHERE i.id = 1",
            "CREATE INDEX items_name_idx ON items (id)",
            "CREATE INDEX ON items (nope)",
            "CREATE INDEX ON missing (a)",
            "CREATE INDEX ON cheap (id)",
            "DROP INDEX items_pkey",
            "DROP INDEX nope",
            "DROP INDEX items",
        ]:
            states = []
            for conn in (f, p):
                try:
                    conn.execute(bad)
                    states.append(None)
                except psycopg.Error as e:
                    states.append(e.sqlstate)
            refused = {"CREATE INDEX ON cheap (id)": None, "SELECT i.id, (SELECT": "21000"}
            allowed = [v for k, v in refused.items() if bad.startswith(k)]
            assert states[0] == states[1] or (states[0] == "0A000" and states[1] in allowed), \
                f"{bad}: freshet {states[0]}, postgres {states[1]}"
        # Indexes survive a restart; DROP INDEX and DROP TABLE remove them.
        f.execute("CREATE INDEX IF NOT EXISTS items_name_idx ON items (name)")
    freshet.kill9()
    freshet.start()
    with freshet.connect() as f:
        names = lambda: [r[0] for r in f.execute(
            "SELECT indexname FROM pg_indexes ORDER BY 1").fetchall()]
        assert names() == ["items_code_key", "items_name_idx", "items_pkey", "pairs_note_b_idx", "pairs_pkey"]
        f.execute("DROP INDEX items_name_idx")
        f.execute("DROP INDEX IF EXISTS items_name_idx")
        f.execute("DROP MATERIALIZED VIEW cheap")
        f.execute("DROP TABLE pairs")
        assert names() == ["items_code_key", "items_pkey"]
        f.execute("CREATE INDEX ON items (name)")
        f.execute("CREATE INDEX ON items (name)")
        assert names() == ["items_code_key", "items_name_idx", "items_name_idx1", "items_pkey"]
