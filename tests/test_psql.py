"""psql, the real client: meta-commands served from pg_catalog, and plain SQL."""
import subprocess


def psql(server, *args, input=None):
    out = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(server.port), "-U", "tester", "freshet",
                          "-v", "ON_ERROR_STOP=1", *args],
                         input=input, capture_output=True, text=True, timeout=60)
    return out


def test_psql_runs_sql(freshet):
    r = psql(freshet, "-c", "CREATE TABLE t1 (id INT PRIMARY KEY, v TEXT)",
             "-c", "INSERT INTO t1 VALUES (1, 'one'), (2, NULL)",
             "-A", "-t", "-c", "SELECT id, coalesce(v, 'null') FROM t1 ORDER BY id")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-2:] == ["1|one", "2|null"]


def test_psql_describe_commands(freshet):
    r = psql(freshet, "-c", "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer TEXT NOT NULL, amount NUMERIC(10,2))",
             "-c", "CREATE TABLE items (sku TEXT, qty INT)")
    assert r.returncode == 0, r.stderr
    dt = psql(freshet, "-c", "\\dt")
    assert dt.returncode == 0, dt.stderr
    assert "orders" in dt.stdout and "items" in dt.stdout and "table" in dt.stdout
    d = psql(freshet, "-c", "\\d orders")
    assert d.returncode == 0, d.stderr
    lines = d.stdout
    assert 'Table "public.orders"' in lines
    assert "customer" in lines and "text" in lines and "not null" in lines
    assert "bigint" in lines or "int8" in lines
    assert "numeric(10,2)" in lines
    d_all = psql(freshet, "-c", "\\d")
    assert d_all.returncode == 0, d_all.stderr
    assert "items" in d_all.stdout
    dn = psql(freshet, "-c", "\\dn")
    assert dn.returncode == 0 and "public" in dn.stdout, dn.stderr
    l = psql(freshet, "-c", "\\l")
    assert l.returncode == 0 and "freshet" in l.stdout, l.stderr


DESCRIBE_DDL = ("CREATE TABLE typed (id INT PRIMARY KEY, price NUMERIC(10,2), name VARCHAR(20), code CHAR(3), "
                "note VARCHAR, doc JSONB, tags TEXT[], ids BIGINT[], ts TIMESTAMPTZ, t TIMESTAMP, d DATE, "
                "tm TIME, iv INTERVAL, b BYTEA, f4 REAL, f8 DOUBLE PRECISION, s SMALLINT, ok BOOLEAN, "
                "n INTEGER NOT NULL)")


def column_section(out):
    """The column table of `\\d name`: the lines up to the first blank or footer line."""
    rows = []
    for line in out.splitlines()[3:]:
        if not line.strip() or not line.startswith(" ") or line.startswith("Indexes"):
            break
        rows.append([c.strip() for c in line.split("|")])
    return rows


def test_psql_describe_matches_postgres(freshet, postgres):
    """`\\d table` prints the same column names, types and nullability as PostgreSQL."""
    with postgres.connect() as pg:
        pg.execute("DROP TABLE IF EXISTS typed")
        pg.execute(DESCRIBE_DDL)
    ours = psql(freshet, "-c", DESCRIBE_DDL, "-c", "\\d typed")
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", "postgres",
                             "-c", "\\d typed"], capture_output=True, text=True, timeout=60)
    assert theirs.returncode == 0, theirs.stderr
    expected = column_section(theirs.stdout)
    assert len(expected) == 19
    assert column_section(ours.stdout.split("CREATE TABLE", 1)[1].split("\n", 1)[1]) == expected


def test_psql_error_reports_sqlstate(freshet):
    r = psql(freshet, "-v", "VERBOSITY=verbose", "-c", "SELECT * FROM no_such_table")
    assert r.returncode != 0
    assert "42P01" in r.stderr and 'relation "no_such_table" does not exist' in r.stderr


def test_psql_materialized_views(freshet):
    r = psql(freshet, "-c", "CREATE TABLE sales (id INT PRIMARY KEY, region TEXT, amount NUMERIC(10,2))",
             "-c", "CREATE MATERIALIZED VIEW by_region AS SELECT region, count(*) AS n, sum(amount) AS total "
                   "FROM sales GROUP BY region")
    assert r.returncode == 0, r.stderr
    dm = psql(freshet, "-c", "\\dm")
    assert dm.returncode == 0, dm.stderr
    assert "by_region" in dm.stdout and "materialized view" in dm.stdout
    assert "sales" not in dm.stdout
    d = psql(freshet, "-c", "\\d by_region")
    assert d.returncode == 0, d.stderr
    assert 'Materialized view "public.by_region"' in d.stdout
    rows = [l.split("|") for l in d.stdout.splitlines() if l.count("|") >= 4]
    types = {c[0].strip(): c[1].strip() for c in rows[1:]}
    assert types == {"region": "text", "n": "bigint", "total": "numeric(20,2)"}
    # \dt lists tables only
    dt = psql(freshet, "-c", "\\dt")
    assert "sales" in dt.stdout and "by_region" not in dt.stdout


def test_psql_meta_commands_of_a_working_database(freshet):
    """The `\\d` family and its neighbours run (ON_ERROR_STOP) and show what the database holds."""
    r = psql(freshet, "-c", "CREATE TABLE sized (id INT PRIMARY KEY, v TEXT)",
             "-c", "INSERT INTO sized SELECT i, repeat('x', 50) FROM generate_series(1, 1000) AS g(i)",
             "-c", "CREATE MATERIALIZED VIEW sized_count AS SELECT count(*) AS n FROM sized")
    assert r.returncode == 0, r.stderr
    outputs = {}
    for cmd in ["\\d+ sized", "\\du", "\\df", "\\dfS abs", "\\dT", "\\dp", "\\dt+", "\\l+",
                "\\di+", "\\dm+", "\\dc", "\\do", "\\dF", "\\db", "\\dd", "\\dAc", "\\dAf",
                "\\dn+", "\\drds", "\\dO", "\\dAp", "\\deu", "\\dX", "\\dx", "\\dy", "\\dL"]:
        out = psql(freshet, "-c", cmd)
        assert out.returncode == 0, f"{cmd}: {out.stderr}"
        outputs[cmd] = out.stdout
    assert 'Table "public.sized"' in outputs["\\d+ sized"] and "Storage" in outputs["\\d+ sized"]
    assert "sized_pkey" in outputs["\\d+ sized"]
    assert "List of functions" in outputs["\\df"]
    assert "double precision" in outputs["\\dfS abs"]
    assert "sized" in outputs["\\dt+"] and ("bytes" in outputs["\\dt+"] or "kB" in outputs["\\dt+"])
    assert "freshet" in outputs["\\l+"]
    assert "sized_count" in outputs["\\dm+"]
    assert "=U/" in outputs["\\dn+"]  # the schema's privileges, read from its ACL text
    assert "btarraycmp" in outputs["\\dAp"]  # pg_amproc.amproc is a function, named by \\dAp
    assert "plpgsql" in outputs["\\dx"] and "plpgsql" in outputs["\\dL"]
    # \dconfig lists what differs from the defaults, as the session set it.
    conf = psql(freshet, "-c", "SET statement_timeout = '5s'", "-c", "\\dconfig")
    assert conf.returncode == 0, conf.stderr
    assert any(line.split("|")[0].strip() == "statement_timeout" and line.split("|")[1].strip() == "5s"
               for line in conf.stdout.splitlines() if "|" in line), conf.stdout
    plus = psql(freshet, "-c", "\\dconfig+ *timeout*")
    assert plus.returncode == 0 and "lock_timeout" in plus.stdout, plus.stderr
