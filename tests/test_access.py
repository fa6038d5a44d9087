"""Who may connect and what they may do: SCRAM-SHA-256 logins from psql, psycopg, asyncpg,
pgJDBC and node-postgres (right and wrong passwords, over TLS with verify-full too), the bound on
failed logins, and privileges: each role x statement x object compared with what PostgreSQL
answers for the same roles and grants, plus what PostgreSQL has no counterpart for (sources,
SUBSCRIBE, sinks)."""
import asyncio
import os
import re
import subprocess
from pathlib import Path

import psycopg
import pytest

from conftest import Freshet, wait_for
from test_tls import make_certs

SUPER_PW = "bootstrap secret"
NODE_DIR = Path.home() / ".cache/freshet/node"
JDBC_JAR = "/usr/share/java/postgresql.jar"


def scram_server(tmp_path, **env):
    return Freshet(tmp_path, env={"FRESHET_AUTH": "scram", "FRESHET_SUPERUSER_PASSWORD": SUPER_PW,
                                  **env}).start()


def dsn(server, user, password, host="127.0.0.1", extra=""):
    return f"host={host} port={server.port} dbname=freshet user='{user}' password='{password}' {extra}"


def sqlstate_of(fn):
    try:
        fn()
    except psycopg.Error as e:
        return e.sqlstate
    return None


def jdbc(server, user, password):
    """current_user through pgJDBC, or the SQLSTATE it failed with."""
    src = Path(__file__).parent / "clients" / "Login.java"
    out = subprocess.run(["java", "-cp", JDBC_JAR, str(src),
                          f"jdbc:postgresql://127.0.0.1:{server.port}/freshet", user, password],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def node(server, user, password):
    """current_user through node-postgres, or the SQLSTATE it failed with."""
    src = Path(__file__).parent / "clients" / "login.js"
    out = subprocess.run(["node", str(src), "127.0.0.1", str(server.port), user, password],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def asyncpg_login(server, user, password):
    import asyncpg

    async def run():
        try:
            conn = await asyncpg.connect(host="127.0.0.1", port=server.port, user=user,
                                         password=password, database="freshet")
        except asyncpg.PostgresError as e:
            return e.sqlstate
        try:
            return await conn.fetchval("SELECT current_user")
        finally:
            await conn.close()
    return asyncio.run(run())


def psql_login(server, user, password):
    out = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(server.port), "-U", user,
                          "-d", "freshet", "-tAc", "SELECT current_user", "-v", "VERBOSITY=verbose"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PGPASSWORD": password})
    if out.returncode == 0:
        return out.stdout.strip()
    # libpq prints "FATAL:  28P01: password authentication failed …" with VERBOSITY verbose
    # only after login; before it, the message alone: map it.
    if "password authentication failed" in out.stderr:
        return "28P01"
    if "not permitted to log in" in out.stderr or "too many failed" in out.stderr:
        return "28000"
    raise AssertionError(out.stderr)


def psycopg_login(server, user, password, extra=""):
    try:
        with psycopg.connect(dsn(server, user, password, extra=extra), autocommit=True) as c:
            return c.execute("SELECT current_user").fetchone()[0]
    except psycopg.OperationalError as e:
        msg = str(e)
        if "password authentication failed" in msg:
            return "28P01"
        if "not permitted to log in" in msg or "too many failed" in msg:
            return "28000"
        raise


CLIENTS = {"psql": psql_login, "psycopg": psycopg_login, "asyncpg": asyncpg_login,
           "pgjdbc": jdbc, "node-postgres": node}


def test_scram_logins_from_every_client(tmp_path):
    server = scram_server(tmp_path, FRESHET_MAX_AUTH_FAILURES="0")
    try:
        with psycopg.connect(dsn(server, "freshet", SUPER_PW), autocommit=True) as su:
            su.execute("CREATE ROLE app LOGIN PASSWORD 'app pw'")
            su.execute("CREATE ROLE nologin PASSWORD 'np'")
            su.execute("CREATE USER \"Mixed Case\" PASSWORD 'mc'")
            assert su.execute("SELECT current_user, session_user").fetchone() == ("freshet", "freshet")
        for name, login in CLIENTS.items():
            assert login(server, "app", "app pw") == "app", name
            assert login(server, "app", "wrong") == "28P01", name
            assert login(server, "ghost", "app pw") == "28P01", name
            assert login(server, "nologin", "np") == "28000", name
        assert psycopg_login(server, "Mixed Case", "mc") == "Mixed Case"
        # A password change takes effect at the next login; the old one stops working.
        with psycopg.connect(dsn(server, "app", "app pw"), autocommit=True) as c:
            c.execute("ALTER ROLE app PASSWORD 'new pw'")
        assert psycopg_login(server, "app", "app pw") == "28P01"
        assert psycopg_login(server, "app", "new pw") == "app"
        # No password in the server's log, failed logins are there with their user.
        log = re.sub(r"\x1b\[[0-9;]*m", "", (tmp_path / "server.log").read_text())
        assert "wrong" not in log and "app pw" not in log and SUPER_PW not in log
        assert "password authentication failed" in log and "user=ghost" in log
    finally:
        server.stop()


def test_scram_over_tls_verify_full(tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certs(certs)
    server = scram_server(tmp_path, FRESHET_TLS_CERT=str(certs / "server.pem"),
                          FRESHET_TLS_KEY=str(certs / "server.key"))
    try:
        tls = f"sslmode=verify-full sslrootcert={certs / 'ca.pem'}"
        with psycopg.connect(dsn(server, "freshet", SUPER_PW, host="localhost", extra=tls),
                             autocommit=True) as c:
            assert c.pgconn.ssl_in_use
            assert c.execute("SELECT current_user").fetchone() == ("freshet",)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(dsn(server, "freshet", "nope", host="localhost", extra=tls))
    finally:
        server.stop()


def test_failed_logins_are_bounded_per_address(tmp_path):
    server = scram_server(tmp_path, FRESHET_MAX_AUTH_FAILURES="3")
    try:
        for _ in range(3):
            assert psycopg_login(server, "freshet", "guess") == "28P01"
        # The address is refused for the rest of the window, even with the right password.
        with pytest.raises(psycopg.OperationalError, match="too many failed authentication"):
            psycopg.connect(dsn(server, "freshet", SUPER_PW))
    finally:
        server.stop()


def test_role_connection_limit(tmp_path):
    """A role's CONNECTION LIMIT holds over SCRAM logins (53300 past it, as PostgreSQL says
    it); a connection that ends frees its place; superusers are not bound."""
    server = scram_server(tmp_path)
    try:
        admin = psycopg.connect(dsn(server, "freshet", SUPER_PW), autocommit=True)
        admin.execute("CREATE ROLE limited LOGIN PASSWORD 'pw' CONNECTION LIMIT 2")
        first = psycopg.connect(dsn(server, "limited", "pw"))
        second = psycopg.connect(dsn(server, "limited", "pw"))
        with pytest.raises(psycopg.OperationalError, match='too many connections for role "limited"'):
            psycopg.connect(dsn(server, "limited", "pw"))
        first.close()
        # A wrong password is still a wrong password, and takes no place.
        assert psycopg_login(server, "limited", "nope") == "28P01"

        def place():  # the server notices the close soon after, not at once
            try:
                return psycopg.connect(dsn(server, "limited", "pw"))
            except psycopg.OperationalError as e:
                assert "too many connections" in str(e), e
                return None
        third = wait_for(place, timeout=30, what="the closed connection's place")
        assert third.execute("SELECT current_user").fetchone() == ("limited",)
        admin.execute("ALTER ROLE limited CONNECTION LIMIT -1")
        more = [psycopg.connect(dsn(server, "limited", "pw")) for _ in range(3)]
        supers = [psycopg.connect(dsn(server, "freshet", SUPER_PW)) for _ in range(3)]
        for c in [second, third, *more, *supers]:
            c.close()
    finally:
        server.stop()


def test_no_file_system_reach_from_sql(freshet, tmp_path):
    """No statement a client sends reads or writes the server's files: not as a superuser,
    not as another role (file sinks, the one way out, are for superusers)."""
    secret = tmp_path / "secret.csv"
    secret.write_text("1,2\n")
    out = tmp_path / "out.csv"
    statements = [
        f"CREATE EXTERNAL TABLE x (a INT, b INT) STORED AS TEXTFILE LOCATION '{secret}'",
        f"COPY fs_t FROM '{secret}'",
        "COPY fs_t FROM PROGRAM 'id'",
        f"COPY fs_t TO '{out}'",
        f"COPY (SELECT 1) TO '{out}'",
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT pg_read_file('{secret}')",
        f"SELECT lo_import('{secret}')",
    ]
    with freshet.connect() as su:
        su.execute("CREATE TABLE fs_t (a INT PRIMARY KEY)")
        su.execute("CREATE ROLE fs_user LOGIN")
        su.execute("GRANT ALL ON fs_t TO fs_user")
        su.commit()
    for user in ("tester", "fs_user"):
        with psycopg.connect(f"host=127.0.0.1 port={freshet.port} dbname=freshet user={user}",
                             autocommit=True) as c:
            for sql in statements:
                state = sqlstate_of(lambda: c.execute(sql))
                assert state in {"0A000", "42883", "42601", "42P01"}, (user, sql, state)
            assert c.execute("SELECT count(*) FROM fs_t").fetchone() == (0,)
    assert not out.exists()


def test_scram_needs_a_password_to_start(tmp_path):
    data = tmp_path / "data"
    out = subprocess.run([os.environ.get("FRESHET_BIN") or str(
        Path.home() / ".cache/freshet/target/debug/freshet"), "--listen", "127.0.0.1:0",
        "--data-dir", str(data), "--auth", "scram"], capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "FRESHET_SUPERUSER_PASSWORD"})
    assert out.returncode != 0 and "FRESHET_SUPERUSER_PASSWORD" in out.stderr
    out = subprocess.run([os.environ.get("FRESHET_BIN") or str(
        Path.home() / ".cache/freshet/target/debug/freshet"), "--listen", "0.0.0.0:0",
        "--data-dir", str(data), "--auth", "trust"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "loopback" in out.stderr


# --- privileges, differential against PostgreSQL -------------------------------------------

ROLES = ["reader", "writer", "creator", "member", "outsider", "admin"]

SETUP = [
    "CREATE ROLE reader LOGIN",
    "CREATE ROLE writer LOGIN",
    "CREATE ROLE creator LOGIN",
    "CREATE ROLE member LOGIN",
    "CREATE ROLE outsider LOGIN",
    "CREATE ROLE admin LOGIN CREATEROLE",
    "CREATE TABLE t (a int PRIMARY KEY, b int)",
    "INSERT INTO t VALUES (1, 1), (2, 2)",
    "CREATE TABLE open_t (a int PRIMARY KEY)",
    "CREATE MATERIALIZED VIEW v AS SELECT count(*) AS n FROM t",
    "GRANT SELECT ON t, v TO reader",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON t TO writer",
    "GRANT INSERT ON open_t TO PUBLIC",
    "GRANT CREATE ON SCHEMA public TO creator",
    "GRANT reader TO member",
]

# (statement, object kind) in the order every role runs them; {r} is the role's name.
STATEMENTS = [
    ("SELECT count(*) FROM t", "table"),
    ("SELECT b FROM t WHERE a = 1", "table"),
    ("SELECT n FROM v", "view"),
    ("INSERT INTO t VALUES (10 + length('{r}'), 0)", "table"),
    ("INSERT INTO open_t VALUES (length('{r}'))", "table"),
    ("SELECT * FROM open_t", "table"),
    ("UPDATE t SET b = b + 1 WHERE a = 1", "table"),
    ("UPDATE t SET b = 5", "table"),
    ("DELETE FROM t WHERE a = 99", "table"),
    ("DELETE FROM t WHERE a = 10 + length('{r}') RETURNING a", "table"),
    ("TRUNCATE open_t", "table"),
    ("CREATE TABLE own_{r} (a int PRIMARY KEY)", "schema"),
    ("CREATE MATERIALIZED VIEW mv_{r} AS SELECT count(*) AS n FROM t", "schema"),
    ("GRANT SELECT ON t TO outsider", "table"),
    ("DROP MATERIALIZED VIEW v", "view"),
    ("DROP TABLE t", "table"),
    ("CREATE ROLE made_by_{r}", "role"),
    ("SELECT has_table_privilege('t', 'SELECT'), has_table_privilege('t', 'INSERT'), "
     "has_table_privilege('v', 'SELECT'), has_table_privilege('open_t', 'INSERT')", "function"),
]


def run_matrix(connect):
    outcomes = {}
    for role in ROLES:
        with connect(role) as c:
            for stmt, _ in STATEMENTS:
                sql = stmt.format(r=role)
                try:
                    cur = c.execute(sql)
                    rows = cur.fetchall() if cur.description else None
                    outcomes[(role, stmt)] = ("ok", rows)
                except psycopg.Error as e:
                    outcomes[(role, stmt)] = (e.sqlstate, None)
    return outcomes


def test_privilege_matrix_matches_postgres(freshet, postgres):
    pg_db = "access_matrix"
    with postgres.connect() as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {pg_db}")
        for r in ROLES + [f"made_by_{r}" for r in ROLES]:
            admin.execute(f"DROP ROLE IF EXISTS {r}")
        admin.execute(f"CREATE DATABASE {pg_db}")
    pg_dsn = f"host=127.0.0.1 port={postgres.port} dbname={pg_db}"
    with psycopg.connect(f"{pg_dsn} user=postgres", autocommit=True) as su:
        for s in SETUP:
            su.execute(s)
    with freshet.connect() as su:
        for s in SETUP:
            su.execute(s)
    theirs = run_matrix(lambda r: psycopg.connect(f"{pg_dsn} user={r}", autocommit=True))
    ours = run_matrix(lambda r: psycopg.connect(
        f"host=127.0.0.1 port={freshet.port} dbname=freshet user={r}", autocommit=True))
    differ = {k: (ours[k], theirs[k]) for k in theirs if ours[k] != theirs[k]}
    assert not differ, differ
    # The matrix exercised both answers for every kind of object.
    kinds = {kind: {ours[(r, s)][0] for r in ROLES for s, k in STATEMENTS if k == kind}
             for _, kind in STATEMENTS}
    for kind in ["table", "view", "schema", "role"]:
        assert "ok" in kinds[kind] and "42501" in kinds[kind], (kind, kinds[kind])
    with postgres.connect() as admin:
        admin.execute(f"DROP DATABASE {pg_db}")
        for r in ROLES + [f"made_by_{r}" for r in ROLES]:
            admin.execute(f"DROP ROLE IF EXISTS {r}")


def test_catalogs_tell_the_truth(freshet, postgres):
    with freshet.connect() as c:
        for s in SETUP:
            c.execute(s)
        c.execute("GRANT UPDATE ON t TO reader")
        c.execute("REVOKE UPDATE ON t FROM reader")
        ours = set(c.execute(
            "SELECT grantee, table_name, privilege_type FROM information_schema.table_privileges "
            "WHERE grantee <> 'freshet'").fetchall())
        assert ours == {("reader", "t", "SELECT"), ("reader", "v", "SELECT"),
                        ("writer", "t", "SELECT"), ("writer", "t", "INSERT"),
                        ("writer", "t", "UPDATE"), ("writer", "t", "DELETE"),
                        ("PUBLIC", "open_t", "INSERT")}
        # Each role sees the grants it gives or holds (through its roles too), and PUBLIC's,
        # as in PostgreSQL.
        seen = {}
        for role in ("member", "outsider", "writer"):
            with psycopg.connect(f"host=127.0.0.1 port={freshet.port} dbname=freshet user={role}") as r:
                seen[role] = set(r.execute(
                    "SELECT grantee, table_name, privilege_type "
                    "FROM information_schema.table_privileges").fetchall())
        assert seen["member"] == {("reader", "t", "SELECT"), ("reader", "v", "SELECT"),
                                  ("PUBLIC", "open_t", "INSERT")}, seen
        assert seen["outsider"] == {("PUBLIC", "open_t", "INSERT")}, seen
        assert ("writer", "t", "DELETE") in seen["writer"] and len(seen["writer"]) == 5, seen
        acl = c.execute("SELECT relacl FROM pg_catalog.pg_class WHERE relname = 't'").fetchone()[0]
        assert acl == ["freshet=arwdDxt/freshet", "reader=r/freshet", "writer=arwd/freshet"]
        members = c.execute(
            "SELECT b.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b "
            "ON m.roleid = b.oid JOIN pg_catalog.pg_roles r ON m.member = r.oid "
            "WHERE r.rolname = 'member'").fetchall()
        assert members == [("reader",)]
        assert c.execute("SELECT has_table_privilege('member', 't', 'SELECT'), "
                         "has_table_privilege('member', 't', 'INSERT')").fetchone() == (True, False)
        # Dropping a role that holds privileges is refused until they are revoked.
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            c.execute("DROP ROLE reader")
        c.execute("REVOKE ALL ON t, v FROM reader")
        c.execute("DROP ROLE reader")
        assert c.execute("SELECT count(*) FROM pg_catalog.pg_auth_members").fetchone() == (0,)
    # psql's \du and \dp show roles, attributes, memberships and grants.
    def psql(cmd):
        out = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-p", str(freshet.port), "-U",
                              "tester", "freshet", "-c", cmd], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout
    du = psql("\\du")
    assert "freshet" in du and "Superuser" in du and "writer" in du
    dp = psql("\\dp")
    assert "writer=arwd/freshet" in dp and "=a/freshet" in dp


def test_reads_without_a_scan_check_privileges(freshet, kafka, tmp_path):
    """Sources, SUBSCRIBE, sinks and materialized view definitions: no PostgreSQL counterpart."""
    kafka.create_topic("events", 1)
    p = kafka.producer()
    p.produce("events", b'{"id": 1}')
    p.flush()
    with freshet.connect() as su:
        su.execute("CREATE ROLE bi LOGIN")
        su.execute(f"CREATE SOURCE ev (id BIGINT) WITH (connector = 'kafka', topic = 'events', "
                   f"properties.bootstrap.server = '{kafka.bootstrap}', "
                   f"scan.startup.mode = 'earliest') FORMAT PLAIN ENCODE JSON")
        su.execute("CREATE TABLE t (a int PRIMARY KEY)")
        su.execute("CREATE MATERIALIZED VIEW v AS SELECT count(*) AS n FROM t")
        su.execute("FLUSH")
    bi = psycopg.connect(f"host=127.0.0.1 port={freshet.port} dbname=freshet user=bi",
                         autocommit=True)
    with bi:
        for sql in ["SELECT * FROM ev", "SUBSCRIBE v", "DECLARE c CURSOR FOR SUBSCRIBE v",
                    "CREATE MATERIALIZED VIEW mine AS SELECT * FROM ev",
                    "DROP SOURCE ev", "ALTER SOURCE ev RESET"]:
            assert sqlstate_of(lambda: bi.execute(sql)) == "42501", sql
        with freshet.connect() as su:
            su.execute("GRANT SELECT ON ev, v TO bi")
            su.execute("GRANT CREATE ON SCHEMA public TO bi")
        assert bi.execute("SELECT id FROM ev").fetchall() == [(1,)]
        # With CREATE and SELECT: a view of its own over the source, owned by bi.
        bi.execute("CREATE MATERIALIZED VIEW mine AS SELECT id FROM ev")
        assert bi.execute("SELECT * FROM mine").fetchall() == [(1,)]
        # Sinks write files on the server: superusers only.
        assert sqlstate_of(lambda: bi.execute(
            f"CREATE SINK s FROM v WITH (connector = 'file', path = '{tmp_path}/sink')")) == "42501"
        bi.execute("BEGIN")
        bi.execute("DECLARE c CURSOR FOR SUBSCRIBE v")
        assert len(bi.execute("FETCH 1 c WITH (timeout = '30s')").fetchall()) == 1
        bi.execute("COMMIT")
        owner = bi.execute("SELECT r.rolname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_roles r "
                           "ON c.relowner = r.oid WHERE c.relname = 'mine'").fetchone()
        assert owner == ("bi",)


def test_set_role_and_role_statements(freshet):
    with freshet.connect() as c:
        c.execute("CREATE ROLE analyst LOGIN")
        c.execute("CREATE ROLE readers")
        c.execute("GRANT readers TO analyst")
        c.execute("CREATE TABLE t (a int PRIMARY KEY)")
        c.execute("GRANT SELECT ON t TO readers")
        # Already-hashed passwords (psql's \password) cannot become our secret: refused.
        assert sqlstate_of(lambda: c.execute(
            "ALTER ROLE analyst PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$a2V5:c2Vydg=='")) == "0A000"
        assert sqlstate_of(lambda: c.execute("CREATE ROLE analyst")) == "42710"
        assert sqlstate_of(lambda: c.execute("DROP ROLE ghost")) == "42704"
        c.execute("DROP ROLE IF EXISTS ghost")
        assert sqlstate_of(lambda: c.execute("GRANT analyst TO readers")) == "0LP01"
        assert sqlstate_of(lambda: c.execute("CREATE ROLE pg_mine")) == "42939"
        assert sqlstate_of(lambda: c.execute("GRANT SELECT ON nope TO analyst")) == "42P01"
        assert sqlstate_of(lambda: c.execute("GRANT SELECT ON t TO ghost")) == "42704"
    with psycopg.connect(f"host=127.0.0.1 port={freshet.port} dbname=freshet user=analyst",
                         autocommit=True) as a:
        assert a.execute("SELECT count(*) FROM t").fetchone() == (0,)
        a.execute("SET ROLE readers")
        assert a.execute("SELECT current_user, session_user").fetchone() == ("readers", "analyst")
        assert a.execute("SELECT count(*) FROM t").fetchone() == (0,)
        a.execute("RESET ROLE")
        assert a.execute("SELECT current_user").fetchone() == ("analyst",)
        assert sqlstate_of(lambda: a.execute("SET ROLE freshet")) == "42501"
        assert sqlstate_of(lambda: a.execute("CREATE ROLE x")) == "42501"
        # A role may change its own password, nothing else about itself.
        a.execute("ALTER ROLE analyst PASSWORD 'mine'")
        assert sqlstate_of(lambda: a.execute("ALTER ROLE analyst SUPERUSER")) == "42501"
