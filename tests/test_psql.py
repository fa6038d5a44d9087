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
    assert "numeric" in lines  # pg_catalog has no typmod yet: numeric(10,2) shows as numeric
    d_all = psql(freshet, "-c", "\\d")
    assert d_all.returncode == 0, d_all.stderr
    assert "items" in d_all.stdout
    dn = psql(freshet, "-c", "\\dn")
    assert dn.returncode == 0 and "public" in dn.stdout, dn.stderr
    l = psql(freshet, "-c", "\\l")
    assert l.returncode == 0 and "freshet" in l.stdout, l.stderr


def test_psql_error_reports_sqlstate(freshet):
    r = psql(freshet, "-v", "VERBOSITY=verbose", "-c", "SELECT * FROM no_such_table")
    assert r.returncode != 0
    assert "42P01" in r.stderr and 'relation "no_such_table" does not exist' in r.stderr
