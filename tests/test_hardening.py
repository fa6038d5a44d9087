"""Hardening: PostgreSQL's SQLSTATEs for user mistakes (PostgreSQL is the oracle), PostgreSQL's
arithmetic in ad-hoc queries and views alike, a memory limit per statement, statements of
clients that left, a ceiling on message size, and a full disk."""
import os
import shutil
import socket
import struct
import subprocess
import time

import psycopg
import pytest

from conftest import Freshet, wait_for

SETUP = [
    "CREATE TABLE t (id INT PRIMARY KEY, v INT)",
    "CREATE TABLE n (k INT PRIMARY KEY, i INT, b BIGINT, f DOUBLE PRECISION)",
    "INSERT INTO t VALUES (1, 1), (2, 2)",
    "INSERT INTO n VALUES (1, 2147483647, 9223372036854775807, 0), (2, -2147483648, -9223372036854775808, 2)",
]

# (statement, SQLSTATE PostgreSQL answers with); each is checked against PostgreSQL too.
CASES = [
    ("SELECT 'abc' ~ '('", "2201B"),
    ("SELECT 99999999999::int", "22003"),
    ("SELECT 70000::smallint", "22003"),
    ("INSERT INTO t VALUES (NULL, 1)", "23502"),
    ("SELECT sqrt(-1)", "2201F"),
    ("SELECT ln(0)", "2201E"),
    ("SELECT ln(-1)", "2201E"),
    ("SELECT log(10, 0)", "2201E"),
    ("SELECT power(0, -1)", "2201F"),
    ("SELECT power(-8, 0.5)", "2201F"),
    ("SELECT power(-2, 3)", None),
    ("SELECT substr('abc', 1, -1)", "22011"),
    ("SELECT * FROM generate_series(1, 10, 0)", "22023"),
    ("INSERT INTO t VALUES (3, 3, 3)", "42601"),
    ("SELECT sum(count(*)) FROM t", "42803"),
    ("SELECT * FROM t LIMIT -1", "2201W"),
    ("SELECT * FROM t OFFSET -1", "2201X"),
    ("SELECT 9223372036854775807 + 1", "22003"),
    ("SELECT -9223372036854775807 - 2", "22003"),
    ("SELECT 1.0 / 0.0", "22012"),
    ("SELECT 1 / 0", "22012"),
    ("SELECT 1 % 0", "22012"),
    ("SELECT i * i FROM n", "22003"),
    ("SELECT i + i FROM n", "22003"),
    ("SELECT b + 1 FROM n", "22003"),
    ("SELECT b * 2 FROM n", "22003"),
    ("SELECT i - (i + i) FROM n WHERE k = 2", "22003"),
    ("SELECT 1.0 / f FROM n", "22012"),
    ("SELECT sum(b) FROM n WHERE k = 1 OR k = 1", None),
    ("SELECT 1e308::float8 * 10", "22003"),
    ("SELECT f * 1e308 * 1e308 FROM n", "22003"),
    ("SELECT f + 1.7e308::float8 + 1.7e308::float8 FROM n", "22003"),
    ("SELECT 1e-300::float8 * 1e-300::float8", "22003"),
    ("SELECT (f + 1e-300) / 1e300::float8 FROM n WHERE k = 1", "22003"),
    ("SELECT 'infinity'::float8 + f FROM n", None),
    ("SELECT k FROM n ORDER BY b + b", "22003"),
    ("SELECT k FROM n WHERE i + i > 0", "22003"),
    ("SELECT length(lpad('x', 2000000000))", "54000"),
    ("SELECT length(repeat('xy', 1500000000))", "54000"),
    ("SELECT nope FROM t", "42703"),
    ("SELECT * FROM nope", "42P01"),
    ("SELECT nope(1)", "42883"),
    ("SELECT current_setting('no_such_setting')", "42704"),
    ("SELECT '\\xZZ'::bytea", "22023"),
    ("SELECT '\\x123'::bytea", "22023"),
    ("SELECT 'a\\b'::bytea", "22P02"),
    ("SELEC 1", "42601"),
]


def sqlstate(conn, sql):
    try:
        conn.execute(sql).fetchall()
        return None
    except psycopg.Error as e:
        return e.sqlstate


def test_sqlstates_match_postgres(freshet, postgres):
    conn = freshet.connect()
    pg = postgres.connect()
    pg.execute("DROP TABLE IF EXISTS t, n")
    for s in SETUP:
        conn.execute(s)
        pg.execute(s)
    mismatches = []
    for sql, expected in CASES:
        got, oracle = sqlstate(conn, sql), sqlstate(pg, sql)
        assert oracle == expected, f"PostgreSQL answers {sql!r} with {oracle}, the test says {expected}"
        if got != oracle:
            mismatches.append((sql, oracle, got))
    assert mismatches == [], "statement, PostgreSQL's SQLSTATE, freshet's:\n" + "\n".join(map(str, mismatches))
    # The server kept serving, and nothing changed.
    assert conn.execute("SELECT * FROM t ORDER BY id").fetchall() == [(1, 1), (2, 2)]


def test_views_and_ad_hoc_queries_agree_on_arithmetic(freshet):
    """An expression a view cannot evaluate for a row leaves that row out of the view and is
    recorded; the same expression ad hoc fails the statement with the same SQLSTATE."""
    conn = freshet.connect()
    conn.execute("CREATE TABLE a (k INT PRIMARY KEY, i INT, f DOUBLE PRECISION)")
    conn.execute("INSERT INTO a VALUES (1, 2147483647, 0), (2, 5, 2)")
    conn.execute("CREATE MATERIALIZED VIEW va AS SELECT k, i * i AS sq, 1 / f AS inv FROM a")
    conn.execute("CREATE MATERIALIZED VIEW vb AS SELECT k, i * i AS sq FROM a")
    conn.execute("CREATE MATERIALIZED VIEW vc AS SELECT k, (f + 1) * 1e308 * 10 AS big FROM a")
    assert conn.execute("SELECT * FROM va").fetchall() == [(2, 25, 0.5)]
    assert conn.execute("SELECT * FROM vb").fetchall() == [(2, 25)]
    assert conn.execute("SELECT * FROM vc").fetchall() == []
    errors = conn.execute("SELECT error FROM freshet_internal.view_errors WHERE view = 'va'").fetchall()
    assert len(errors) == 1, errors
    errors = conn.execute("SELECT error FROM freshet_internal.view_errors WHERE view = 'vc'").fetchall()
    assert len(errors) == 2 and all("out of range" in e for (e,) in errors), errors
    for sql, state in [
        ("SELECT i * i FROM a WHERE k = 1", "22003"),
        ("SELECT 1 / f FROM a WHERE k = 1", "22012"),
        ("SELECT (f + 1) * 1e308 * 10 FROM a", "22003"),
    ]:
        with pytest.raises(psycopg.Error) as e:
            conn.execute(sql)
        assert e.value.sqlstate == state, (sql, e.value.sqlstate)


def rss_peak_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_until_ready(sock):
    """Reads backend messages up to ReadyForQuery."""
    buf = b""
    while True:
        while len(buf) >= 5:
            kind, length = buf[:1], struct.unpack("!i", buf[1:5])[0]
            if len(buf) < 1 + length:
                break
            buf = buf[1 + length:]
            if kind == b"Z":
                return
        chunk = sock.recv(4096)
        assert chunk, "connection closed during startup"
        buf += chunk


def raw_session(port):
    """A connection past startup, speaking the protocol by hand."""
    raw = socket.create_connection(("127.0.0.1", port))
    params = b"user\0tester\0database\0freshet\0\0"
    raw.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    read_until_ready(raw)
    return raw


def assert_ended_with(raw, sqlstate):
    """The server answers with one error carrying `sqlstate` and closes the connection."""
    answer = b""
    raw.settimeout(10)
    while True:
        chunk = raw.recv(4096)
        if not chunk:
            break
        answer += chunk
    assert answer[:1] == b"E" and sqlstate in answer, answer
    raw.close()


def test_memory_limit_disconnects_and_message_size(tmp_path):
    server = Freshet(tmp_path, env={"FRESHET_QUERY_MEMORY_MB": "64", "FRESHET_MEMORY_MB": "32",
                                    "FRESHET_MAX_MESSAGE_MB": "1",
                                    "FRESHET_MAX_BUFFERED_MESSAGES_MB": "1"}).start()
    try:
        conn = server.connect()
        # The first statement maps code and catalog pages in once; what follows is the
        # statements' own memory.
        conn.execute("SELECT count(*), max(length(repeat('w', 100) || x::text)) "
                     "FROM generate_series(1, 100000) AS g(x)").fetchone()
        limit_mib = 64

        def grown_mib(base):
            return (rss_peak_kb(server.proc.pid) - base) / 1024

        # Aggregates that would hold ~640 MB (10× the limit) fail with 53200, and the server's
        # peak memory grows by less than the limit + 35 %: what statements allocate is
        # counted, not only what DataFusion's operators reserve (array_agg reserved a tenth
        # of what it held). Release builds stay within + 0 % (design note on statement
        # memory); this debug build has been seen at up to 1.25× for string_agg.
        for query in ["SELECT length(string_agg(repeat('x', 2000), ',')) FROM generate_series(1, 320000)",
                      "SELECT cardinality(array_agg(repeat('q', 100) || x::text)) "
                      "FROM generate_series(1, 6000000) AS g(x)",
                      "SELECT count(DISTINCT repeat('z', 50) || x::text) FROM generate_series(1, 6000000) AS g(x)"]:
            base = rss_peak_kb(server.proc.pid)
            with pytest.raises(psycopg.Error) as e:
                conn.execute(query)
            assert e.value.sqlstate == "53200", e.value
            grown = grown_mib(base)
            assert grown < limit_mib * 1.35, f"peak RSS grew by {grown:.0f} MiB under a {limit_mib} MiB limit: {query}"
        # A sort over ten times the limit spills to disk and answers (its spill files read
        # back by at most four threads). Release builds stay within the limit + 20 % (see the
        # design note on statement memory); this debug build is held to twice the limit.
        base = rss_peak_kb(server.proc.pid)
        row = conn.execute("""SELECT max(r), min(x) FROM (
                                SELECT x, row_number() OVER (ORDER BY p || x::text DESC) AS r
                                FROM (SELECT x, repeat('y', 100) AS p
                                      FROM generate_series(1, 6000000) AS g(x)) s) w""").fetchone()
        assert row == (6000000, 1), row
        grown = grown_mib(base)
        assert grown < limit_mib * 2, f"peak RSS grew by {grown:.0f} MiB under a {limit_mib} MiB limit"
        assert not list((tmp_path / "data" / "spill").rglob("*.arrow")), "spill files left behind"

        # A client that leaves stops its statement.
        victim = server.connect()
        pid = victim.info.backend_pid
        sock = socket.socket(fileno=os.dup(victim.pgconn.socket))
        victim.pgconn.send_query(b"SELECT count(*) FROM generate_series(1, 100000000000)")
        idle = cpu_seconds(server.proc.pid)
        time.sleep(0.5)  # let it run: it is meant to be busy
        assert cpu_seconds(server.proc.pid) - idle > 0.2, "the statement did not run"
        sock.shutdown(socket.SHUT_RDWR)
        sock.close()
        victim.pgconn.finish()
        time.sleep(1.0)
        before = cpu_seconds(server.proc.pid)
        time.sleep(1.0)
        assert cpu_seconds(server.proc.pid) - before < 0.3, f"backend {pid}'s statement still runs"

        # A message announcing more than the limit ends that connection with 54000 at once.
        raw = raw_session(server.port)
        raw.sendall(b"Q" + struct.pack("!i", 1_000_000_000) + b"SELECT ")
        assert_ended_with(raw, b"54000")
        # Large messages being received share a server-wide budget (1 MiB here): while one
        # connection is sending a 1 MiB message, another starting one is refused with 53400.
        def hold():
            h = raw_session(server.port)
            h.sendall(b"Q" + struct.pack("!i", 1 << 20) + b"SELECT ")
            return h
        holders = [hold()]

        def second_refused():
            # If a second's header was read before the holder's, the holder was the one
            # refused: start holding again.
            holders[0].setblocking(False)
            try:
                holders[0].recv(4096)
                holders[0].close()
                holders[0] = hold()
                return False
            except BlockingIOError:
                holders[0].setblocking(True)
            second = raw_session(server.port)
            second.sendall(b"Q" + struct.pack("!i", 1 << 20) + b"SELECT ")
            second.settimeout(0.5)
            try:
                first = second.recv(4096)
            except socket.timeout:  # accepted: the holder's header was not read yet
                second.close()
                return False
            rest = b""
            while chunk := second.recv(4096):
                rest += chunk
            second.close()
            assert first[:1] == b"E" and b"53400" in first + rest, first + rest
            return True
        wait_for(second_refused, timeout=30, what="a second large message to be refused")
        holders[0].close()
        # Messages under the limit work; the server is fine.
        big = "SELECT length('" + "x" * 900_000 + "')"
        assert len(big) < 1 << 20
        assert conn.execute(big).fetchone() == (900_000,)
        # A COPY is held until it ends, within the statement memory limit (64 MiB here):
        # ~100 MB of rows fail with 54000 and write nothing.
        copier = server.connect()
        copier.autocommit = True
        copier.execute("CREATE TABLE big_copy (id INT PRIMARY KEY, s TEXT)")
        with pytest.raises(psycopg.Error) as e:
            with copier.cursor().copy("COPY big_copy FROM STDIN") as cp:
                for i in range(100_000):
                    cp.write_row((i, "y" * 1000))
        assert e.value.sqlstate == "54000", e.value
        assert copier.execute("SELECT count(*) FROM big_copy").fetchone() == (0,)
        with copier.cursor().copy("COPY big_copy FROM STDIN") as cp:
            for i in range(1000):
                cp.write_row((i, "y" * 1000))
        assert copier.execute("SELECT count(*) FROM big_copy").fetchone() == (1000,)
    finally:
        server.stop()


def test_server_wide_query_memory(tmp_path):
    """Statements of all sessions share --query-memory-total-mb: one that fits its session's
    limit is refused with 53200 while another session holds most of the total, other clients
    are served meanwhile, and it runs once the holder is gone."""
    server = Freshet(tmp_path, env={"FRESHET_QUERY_MEMORY_MB": "768",
                                    "FRESHET_QUERY_MEMORY_TOTAL_MB": "300"}).start()
    # ~80 MB of text: with the partial strings of two partitions and the result's copy, it
    # allocates about twice that at its peak.
    agg = "SELECT length(string_agg(repeat('x', 1000), ',')) FROM generate_series(1, 80000)"
    try:
        conn = server.connect()
        conn.autocommit = True

        def metric(name):
            return conn.execute("SELECT value FROM freshet_internal.metrics "
                                "WHERE name = %s", (name,)).fetchone()[0]

        def reserved():
            return metric("query_memory_reserved_bytes")
        assert conn.execute(agg).fetchone() == (80000 * 1001 - 1,)
        assert reserved() == 0
        # The holder's sorted rows (~120 MB; a sort reserves twice its rows: ~240 MiB, within
        # its own limit) stay held while it stops reading them.
        holder = raw_session(server.port)
        sql = ("SELECT repeat('y', 300) || x::text AS p FROM generate_series(1, 390000) AS g(x) "
               "ORDER BY p").encode()
        holder.sendall(b"Q" + struct.pack("!i", 4 + len(sql) + 1) + sql + b"\0")
        # Until it has sorted (its reservation stops growing at ~283 MiB), not only begun to.
        seen = []

        def settled():
            seen.append(reserved())
            time.sleep(0.2)  # readings apart in time: the reservation has stopped growing
            return seen[-1] > 230 << 20 and seen[-3:] == [seen[-1]] * 3
        wait_for(settled, timeout=60, what="the holder's sort to reserve")
        assert metric("query_memory_allocated_bytes") > 200 << 20
        with pytest.raises(psycopg.Error) as e:
            conn.execute(agg)
        assert e.value.sqlstate == "53200", e.value
        assert "query-memory-total-mb" in str(e.value), e.value
        other = server.connect()
        assert other.execute("SELECT 1").fetchone() == (1,)
        holder.close()
        wait_for(lambda: reserved() == 0, timeout=60, what="the holder's memory to return")
        assert conn.execute(agg).fetchone() == (80000 * 1001 - 1,)
        other.close()
    finally:
        server.stop()


def test_a_client_that_stops_reading_costs_bounded_memory(tmp_path):
    """Results stream with backpressure: a client that asks for ~10 GB of rows and reads none
    holds the server at a bounded size while others are served."""
    server = Freshet(tmp_path).start()
    try:
        conn = server.connect()
        before = rss_kb(server.proc.pid)
        holder = raw_session(server.port)
        sql = b"SELECT repeat('x', 1000) FROM generate_series(1, 10000000)"
        holder.sendall(b"Q" + struct.pack("!i", 4 + len(sql) + 1) + sql + b"\0")
        assert holder.recv(65536)  # rows are coming
        # Its rows fill the socket buffers, then it waits: the server stops growing.
        samples = []
        for _ in range(5):
            assert conn.execute("SELECT 1").fetchone() == (1,)
            samples.append(rss_kb(server.proc.pid))
            time.sleep(0.5)  # sample the server's size over time while the holder waits
        grown = (max(samples) - before) / 1024
        assert grown < 200, f"RSS grew by {grown:.0f} MiB for a client that reads nothing"
        # The statement was waiting, not finished: more rows come when the client reads.
        got = 0
        while got < 10 << 20:
            got += len(holder.recv(1 << 20))
        holder.close()
    finally:
        server.stop()


def test_disk_full_is_53100_and_writes_resume(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400m", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    server = None
    try:
        server = Freshet(mnt).start()
        conn = server.connect()
        conn.execute("CREATE TABLE big (id INT PRIMARY KEY, pad TEXT)")
        conn.execute("CREATE MATERIALIZED VIEW bn AS SELECT count(*) AS n FROM big")
        # Leave a little room, then write past it.
        filler = mnt / "filler"
        free = shutil.disk_usage(mnt).free
        with open(filler, "wb") as f:
            f.write(b"\0" * max(0, free - (6 << 20)))
        failed = None
        n = 0
        for i in range(2000):
            try:
                conn.execute("INSERT INTO big VALUES (%s, repeat('x', 100000))", (i,))
                n += 1
            except psycopg.Error as e:
                failed = e
                break
        assert failed is not None, "the disk never filled"
        assert failed.sqlstate == "53100", (failed.sqlstate, str(failed))
        assert str(mnt) not in str(failed) and "/" not in failed.diag.message_primary, str(failed)
        # Reads of tables go on. (Reading an aggregate view first writes the epochs its contents
        # log holds into its rows, so that read may wait for space too.)
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (n,)
        assert sqlstate(conn, "SELECT n FROM bn") in (None, "53100")
        filler.unlink()

        def write():
            try:
                conn.execute("INSERT INTO big VALUES (100000, 'after')")
                return True
            except psycopg.Error as e:
                assert e.sqlstate == "53100", e
                return False
        wait_for(write, timeout=60, what="writes to resume once space is back")
        assert conn.execute("SELECT n FROM bn").fetchone() == (n + 1,)
        conn.close()
        server.stop()
        server.start()
        conn = server.connect()
        assert conn.execute("SELECT n FROM bn").fetchone() == (n + 1,)
        assert conn.execute("SELECT count(*) FROM big").fetchone() == (n + 1,)
    finally:
        if server:
            server.stop()
        subprocess.run(["umount", "-l", str(mnt)])


def test_timeouts_and_connection_limit(tmp_path):
    """statement_timeout stops a query while it plans or streams (57014) and the session goes
    on; idle_in_transaction_session_timeout ends a connection left in a block (25P03);
    max_connections answers one client too many with 53300."""
    server = Freshet(tmp_path, env={"FRESHET_MAX_CONNECTIONS": "3"}).start()
    try:
        conn = server.connect()
        conn.execute("SET statement_timeout = '300ms'")
        assert conn.execute("SHOW statement_timeout").fetchone() == ("300ms",)
        for sql in ["SELECT count(*) FROM generate_series(1, 100000000000)",
                    "SELECT x FROM generate_series(1, 100000000000) AS g(x)"]:
            started = time.monotonic()
            with pytest.raises(psycopg.errors.QueryCanceled) as e:
                conn.execute(sql).fetchall()
            assert "statement timeout" in str(e.value)
            assert time.monotonic() - started < 10
        assert conn.execute("SELECT 1").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SET statement_timeout = 'soon'")
        conn.execute("RESET statement_timeout")

        raw = raw_session(server.port)
        for q in [b"SET idle_in_transaction_session_timeout = 300\0", b"BEGIN\0"]:
            raw.sendall(b"Q" + struct.pack("!i", 4 + len(q)) + q)
            read_until_ready(raw)
        assert_ended_with(raw, b"25P03")

        conns = [conn]
        while (c := try_connect(server)) is not None:
            conns.append(c)
            assert len(conns) <= 3, "more connections than max_connections"
        assert len(conns) == 3
        with pytest.raises(psycopg.OperationalError) as e:
            server.connect()
        assert "too many clients" in str(e.value)
        conns.pop().close()
        again = wait_for(lambda: try_connect(server), timeout=30, what="a slot to free up")
        assert again.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.stop()


def try_connect(server):
    try:
        return server.connect()
    except psycopg.OperationalError:
        return None
