"""Drivers and tools see freshet as they see PostgreSQL: the same schema and rows loaded into
both, then pgJDBC (DatabaseMetaData, ResultSet types, prepared statements, batches),
node-postgres and postgres.js, pg8000, and pgcli's completion queries run against each; their
transcripts must match line for line, except for the differences listed here (each must still
differ, so a fix shows up as a failure to update the list)."""
import json
import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from conftest import Freshet

CLIENTS = Path(__file__).parent / "clients"
NODE_DIR = Path.home() / ".cache/freshet/node"
JDBC_JAR = "/usr/share/java/postgresql.jar"

SCHEMA = [
    "CREATE TABLE customers (id int PRIMARY KEY, name varchar(40) NOT NULL, tier char(4), joined date, note text)",
    "CREATE TABLE orders (id bigint PRIMARY KEY, customer_id int NOT NULL, amount numeric(12,2), "
    "ratio double precision, small smallint, real_v real, paid boolean, placed timestamp, "
    "placed_tz timestamptz, wait interval, payload jsonb, raw bytea, tags text[], counts int[], plain numeric, "
    "ref uuid)",
    "CREATE INDEX orders_customer ON orders (customer_id)",
    "INSERT INTO customers VALUES (1, 'Ada', 'gold', '2026-01-02', 'first'), (2, 'Bob', 'sil', '2025-12-31', NULL)",
    "INSERT INTO orders VALUES (10, 1, 123.45, 0.5, 3, 1.25, true, '2026-11-01 10:00', '2026-11-01 10:00+02', "
    "'1 day 02:03:04', '{\"a\": [1, 2], \"b\": null}', '\\xdeadbeef', '{x,\"y z\"}', '{1,2,NULL}', 1.50, "
    "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11')",
    # After the rows: PostgreSQL's materialized view holds what its creation saw.
    "CREATE MATERIALIZED VIEW customer_totals AS SELECT c.id, c.name, count(*) AS n, sum(o.amount) AS total "
    "FROM customers c JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name",
    "CREATE VIEW gold_customers AS SELECT id, name, joined FROM customers WHERE tier = 'gold'",
]

# What still differs, and why (the README lists these too):
# `numeric` without a precision is numeric(38,10) here, so 1.50 reads 1.5000000000, and
# sum(numeric(12,2)) in a view is numeric(22,2) where PostgreSQL leaves it unconstrained.
JDBC_KNOWN = {
    "columns orders | COLUMN_NAME=plain",
    "columns customer_totals | COLUMN_NAME=total",
    "resultSet | plain",
}


@pytest.fixture(scope="module")
def pair(tmp_path_factory, postgres):
    """(freshet port, PostgreSQL port), both with database `freshet`, role `tester` and SCHEMA."""
    with postgres.connect() as pg:
        pg.execute("DROP DATABASE IF EXISTS freshet")
        pg.execute("CREATE DATABASE freshet")
        if not pg.execute("SELECT 1 FROM pg_roles WHERE rolname = 'tester'").fetchone():
            pg.execute("CREATE ROLE tester")
        # Other modules may have made it without these.
        pg.execute("ALTER ROLE tester SUPERUSER LOGIN")
    server = Freshet(tmp_path_factory.mktemp("drivers")).start()
    dsns = [server.dsn(), f"host=127.0.0.1 port={postgres.port} dbname=freshet user=tester"]
    for dsn in dsns:
        with psycopg.connect(dsn, autocommit=True) as c:
            for stmt in SCHEMA:
                c.execute(stmt)
    yield server.port, postgres.port
    server.stop()


def run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def known_differences(ours, theirs, known):
    """Lines that differ, minus the known ones; and the known ones that no longer differ."""
    ours_set, theirs_set = set(ours), set(theirs)
    differing = [l for l in ours if l not in theirs_set] + [l for l in theirs if l not in ours_set]
    unexpected = [l for l in differing if not any(l.startswith(k) for k in known)]
    fixed = [k for k in known if not any(l.startswith(k) for l in differing)]
    return unexpected, fixed


def test_pgjdbc_metadata_and_types(pair):
    outputs = [
        run(["java", "-cp", JDBC_JAR, str(CLIENTS / "Metadata.java"),
             f"jdbc:postgresql://127.0.0.1:{port}/freshet", "tester"]).splitlines()
        for port in pair
    ]
    ours, theirs = outputs
    unexpected, fixed = known_differences(ours, theirs, JDBC_KNOWN)
    assert not unexpected, "\n".join(unexpected)
    assert not fixed, f"no longer differ (update JDBC_KNOWN and the README): {fixed}"
    # The probes ran: keys, indexes and batch counts are there to compare.
    assert "primaryKeys orders | COLUMN_NAME=id KEY_SEQ=1 PK_NAME=orders_pkey" in ours
    assert any(l.startswith("indexInfo orders | INDEX_NAME=orders_customer") for l in ours)
    assert "batch insert [1, 1, 1]" in ours


def test_node_postgres_and_postgres_js(pair):
    env = {**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules"), "TZ": "UTC"}
    ours, theirs = [
        json.loads(run(["node", str(CLIENTS / "drivers.js"), "127.0.0.1", str(port), "tester"], env=env))
        for port in pair
    ]
    # Known: numeric without precision (see JDBC_KNOWN); `$1::int + 1` is bigint here (integer
    # literals are int8), so node-postgres reads it as a string.
    assert ours["pg"]["rows"][0].pop("plain") == "1.5000000000"
    assert theirs["pg"]["rows"][0].pop("plain") == "1.50"
    assert (ours["pg"]["typed"][0].pop("n"), theirs["pg"]["typed"][0].pop("n")) == ("42", 42)
    assert ours == theirs


def test_pg8000(pair):
    import pg8000.native
    results = []
    for port in pair:
        c = pg8000.native.Connection("tester", host="127.0.0.1", port=port, database="freshet")
        out = {
            "rows": c.run("SELECT id, amount, placed, placed_tz, wait, payload, raw, tags, counts "
                          "FROM orders WHERE customer_id = :c ORDER BY id", c=1),
            "columns": [(col["name"], col["type_oid"]) for col in c.columns],
            "params": c.run("SELECT CAST(:a AS int) + 0, CAST(:b AS text), CAST(:c AS date)",
                            a=5, b=None, c="2026-02-03"),
            "view": c.run("SELECT id, name, n, total FROM customer_totals ORDER BY id"),
            "uuid": c.run("SELECT id, ref FROM orders WHERE ref = :r",
                          r=uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")),
        }
        c.run("START TRANSACTION")
        c.run("INSERT INTO customers (id, name) VALUES (:i, :n)", i=90, n="pg8000")
        out["insert_count"] = c.row_count
        c.run("ROLLBACK")
        out["after_rollback"] = c.run("SELECT count(*) FROM customers WHERE id = 90")
        try:
            c.run("SELECT 1/0")
        except pg8000.native.DatabaseError as e:
            out["error"] = e.args[0]["C"]
        c.close()
        results.append(out)
    ours, theirs = results
    # Known: integer literals are bigint here (`CAST(:a AS int) + 0`), numeric as in JDBC_KNOWN.
    assert ours["params"][0][1:] == theirs["params"][0][1:]
    assert ours["params"][0][0] == theirs["params"][0][0] == 5
    assert ours.pop("params") and theirs.pop("params")
    assert ours == theirs


PGCLI_PROBE = """
import json, sys
from pgcli.pgexecute import PGExecute
e = PGExecute(database="freshet", user="tester", password=None, host="127.0.0.1",
              port=int(sys.argv[1]), dsn=None)
public = lambda rows: sorted([list(r) for r in rows if r[0] == "public"])
print(json.dumps({
    "search_path": e.search_path(),
    "schemata": sorted(s for s in e.schemata() if s == "public"),
    "tables": public(e.tables()),
    "views": public(e.views()),
    "table_columns": public(e.table_columns()),
    "view_columns": public(e.view_columns()),
    "foreignkeys": list(e.foreignkeys()),
    "datatypes": list(e.datatypes()),
    "databases": [d for d in e.databases() if d == "freshet"],
    # Function completion: names, argument names, types and modes, return type, kind.
    "functions": sorted(([f.schema_name, f.func_name, f.arg_names, f.arg_types, f.arg_modes,
                          f.return_type, f.is_aggregate, f.is_window, f.is_set_returning,
                          f.arg_defaults]
                         for f in e.functions()
                         if f.schema_name == "public"
                         or f.func_name in ("abs", "format", "jsonb_each", "count", "lower")),
                        key=json.dumps),
}))
"""


def test_pgcli_completion_queries(pair):
    # pgcli is Debian's, on the system Python (it imports psycopg 3 from there).
    ours, theirs = [json.loads(run(["/usr/bin/python3", "-c", PGCLI_PROBE, str(port)])) for port in pair]
    assert ["public", "customer_totals", "name", "character varying", False, None] in ours["view_columns"]
    assert ["public", "orders", "wait", "interval", False, None] in ours["table_columns"]
    assert ["pg_catalog", "jsonb_each", ["from_json", "key", "value"], ["jsonb", "text", "jsonb"],
            ["i", "o", "o"], "record", False, False, True, []] in ours["functions"]
    assert ours == theirs
